//! The upgrade to history (sql/0006_history.sql) on a database filled by the previous release
//! (main at 11f856c, schema version 5): several syncs written with the old write path (one model_snapshots row per model per sync),
//! with content changes, volatile-only moves, a model removed and back, a failed source with
//! partial rows, skipped sources, a Hugging Face window and an interrupted sync. After the
//! migration every sync reads back through the model_snapshots view: identically for every
//! source that succeeded in it, and as its last known state for the others (the contract of
//! DESIGN.md §8, which the old table did not follow), and the catalog of 0007 (model_catalog, what
//! the read API and Redis read) is each source's latest state. Then the binary syncs on top of it.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::current_catalog::assert_catalog_is_snapshot;
use common::legacy::{finish_sync, mark_orphans_interrupted, write_snapshot_rows};
use common::{read_fixture, BinaryEnv, FixtureServer, TestDb};
use model_lens_sync::config::DatabaseConfig;
use model_lens_sync::model::{Model, Source};
use model_lens_sync::report::{SourceStatus, Trigger};
use model_lens_sync::sources::parse_payload;
use model_lens_sync::store::{connect_pool, migrations, syncs, Database};
use serde_json::Value;

fn parse(source: Source, body: &[u8]) -> Vec<Model> {
    let page = parse_payload(source, body).expect("a fixture parses");
    assert!(page.rejects.is_empty(), "{source}: {:?}", page.rejects);
    page.models
}

fn hf_records() -> Vec<Value> {
    serde_json::from_slice(&read_fixture("hf_models.json")).unwrap()
}

fn hf(records: &[Value]) -> Vec<Model> {
    parse(Source::HuggingFace, &serde_json::to_vec(records).unwrap())
}

fn aa(records_changed: bool) -> Vec<Model> {
    let mut document: Value = serde_json::from_slice(&read_fixture("aa_models.json")).unwrap();
    if records_changed {
        for (index, record) in document["data"].as_array_mut().unwrap().iter_mut().enumerate() {
            if index % 3 == 0 {
                record["median_output_tokens_per_second"] = Value::from(100 + index);
            }
        }
    }
    parse(Source::ArtificialAnalysis, &serde_json::to_vec(&document).unwrap())
}

/// The models as a parser that did not read `price_tiers`, `status` and `expires_on` stored them.
fn without_newer_columns(models: &[Model]) -> Vec<Model> {
    models
        .iter()
        .cloned()
        .map(|mut model| {
            model.price_tiers = None;
            model.status = None;
            model.expires_on = None;
            model
        })
        .collect()
}

/// One old sync: what each source stored, and how it ended.
struct OldSync {
    sources: Vec<(Source, SourceStatus, Vec<Model>)>,
    interrupted: bool,
}

async fn write_old_sync(database: &Database, client: &mut tokio_postgres::Client, sync: OldSync) -> i64 {
    let plan: Vec<(Source, SourceStatus, Option<String>)> = sync
        .sources
        .iter()
        .map(|(source, status, _)| {
            let planned = if *status == SourceStatus::Skipped {
                SourceStatus::Skipped
            } else {
                SourceStatus::Running
            };
            (*source, planned, None)
        })
        .collect();
    let owner_token = syncs::SyncFence::new_token();
    let (sync_id, started_at) = syncs::create_sync(database, Trigger::Cli, &plan, &owner_token)
        .await
        .unwrap();
    for (_, _, models) in &sync.sources {
        // Two pages when there is enough, as the old writer committed them.
        for page in models.chunks(models.len().div_ceil(2).max(1)) {
            write_snapshot_rows(client, sync_id, started_at, page).await;
        }
    }
    if !sync.interrupted {
        let ended: Vec<(&str, &str)> = sync
            .sources
            .iter()
            .filter(|(_, status, _)| *status != SourceStatus::Skipped)
            .map(|(source, status, _)| (source.as_str(), status.as_str()))
            .collect();
        let status = model_lens_sync::report::SyncStatus::from_sources(sync.sources.iter().map(|(_, s, _)| *s));
        finish_sync(client, sync_id, &ended, status.as_str()).await;
    }
    sync_id
}

/// Every row of model_snapshots, as JSON per (sync, source), keyed by (provider, model_id).
type Rows = BTreeMap<(i64, String), BTreeMap<(String, String), Value>>;

async fn all_rows(client: &tokio_postgres::Client) -> Rows {
    let mut rows: Rows = BTreeMap::new();
    for row in client
        .query(
            "SELECT s.sync_id, s.source, s.provider, s.model_id, row_to_json(s)::jsonb FROM model_snapshots s",
            &[],
        )
        .await
        .unwrap()
    {
        rows.entry((row.get(0), row.get(1)))
            .or_default()
            .insert((row.get(2), row.get(3)), row.get(4));
    }
    rows
}

/// What model_snapshots must show for each sync and source after the migration, from the old
/// rows: for each key, its row of the latest sync M ≤ N that has one, unless a sync of the
/// source that succeeded after M (up to N) lacked it. For a source that succeeded in N that is
/// exactly N's rows; for one that failed or was skipped, its last known state, stamped with N.
fn expected_rows(old: &Rows, statuses: &BTreeMap<(i64, String), String>, started: &BTreeMap<i64, Value>) -> Rows {
    let mut expected: Rows = BTreeMap::new();
    for (sync_id, source) in statuses.keys() {
        let mut shown = BTreeMap::new();
        let mut keys: BTreeSet<&(String, String)> = BTreeSet::new();
        for ((m, s), rows) in old {
            if s == source && m <= sync_id {
                keys.extend(rows.keys());
            }
        }
        for key in keys {
            let latest = old
                .iter()
                .filter(|((m, s), rows)| s == source && m <= sync_id && rows.contains_key(key))
                .map(|((m, _), _)| *m)
                .max()
                .unwrap();
            let gone = statuses
                .iter()
                .any(|((m, s), status)| s == source && *m > latest && m <= sync_id && status == "success");
            if gone {
                continue;
            }
            let mut row = old[&(latest, source.clone())][key].clone();
            row["sync_id"] = Value::from(*sync_id);
            row["synced_at"] = started[sync_id].clone();
            shown.insert(key.clone(), row);
        }
        if !shown.is_empty() {
            expected.insert((*sync_id, source.clone()), shown);
        }
    }
    expected
}

#[tokio::test]
async fn a_database_of_the_previous_release_reads_back_after_the_upgrade() {
    let db = TestDb::create().await;
    let database = connect_pool(&db.url, &DatabaseConfig::default()).unwrap();
    migrations::migrate_up_to(&database, 5).await.unwrap();
    let mut client = db.client().await;

    let models_dev_old = parse(Source::ModelsDev, &read_fixture("modelsdev_api_2025-11.json"));
    let models_dev_new = parse(Source::ModelsDev, &read_fixture("modelsdev_api.json"));
    let openrouter = parse(Source::OpenRouter, &read_fixture("openrouter_models.json"));
    let hf_all = hf_records();
    let hf_first: Vec<Value> = hf_all[..300].to_vec();
    // The second listing: downloads move for every 10th model, the content of every 25th
    // changes, ten are gone and ten are new.
    let mut hf_second: Vec<Value> = hf_all[..290].to_vec();
    for (index, record) in hf_second.iter_mut().enumerate() {
        if index % 10 == 0 {
            record["downloads"] = Value::from(record["downloads"].as_i64().unwrap_or(0) + 5);
        }
        if index % 25 == 1 {
            record["sha"] = Value::from(format!("changed-{index}"));
        }
    }
    hf_second.extend_from_slice(&hf_all[300..310]);
    // A failed models.dev with partial rows, one of them repriced.
    let mut partial = models_dev_new[..100].to_vec();
    partial[7].input_price_per_mtok = Some("123.45".parse().unwrap());
    partial[7].raw = partial[7].raw.replacen('{', r#"{"repriced":true,"#, 1);
    let mut hf_back = hf_second.clone();
    hf_back.extend_from_slice(&hf_all[290..300]);
    let mut hf_moved: Vec<Value> = hf_back[..50].to_vec();
    for record in &mut hf_moved {
        record["likes"] = Value::from(record["likes"].as_i64().unwrap_or(0) + 1);
    }

    use SourceStatus::{Failed, Skipped, Success};
    let old_syncs = vec![
        OldSync {
            sources: vec![
                (Source::ModelsDev, Success, models_dev_old.clone()),
                (Source::OpenRouter, Success, openrouter.clone()),
                (Source::HuggingFace, Success, hf(&hf_first)),
                (Source::ArtificialAnalysis, Success, aa(false)),
            ],
            interrupted: false,
        },
        OldSync {
            sources: vec![
                (Source::ModelsDev, Success, models_dev_new.clone()),
                (Source::OpenRouter, Success, openrouter.clone()),
                (Source::HuggingFace, Success, hf(&hf_second)),
                (Source::ArtificialAnalysis, Success, aa(true)),
            ],
            interrupted: false,
        },
        OldSync {
            sources: vec![
                (Source::ModelsDev, Failed, partial),
                (Source::OpenRouter, Skipped, Vec::new()),
                // A window of the first 100 (max_models).
                (Source::HuggingFace, Success, hf(&hf_second[..100])),
                (Source::ArtificialAnalysis, Success, aa(true)),
            ],
            interrupted: false,
        },
        // Rows of a release whose parsers did not read tiers, statuses or expiry dates yet
        // (the database went through it): the same records, fewer columns.
        OldSync {
            sources: vec![
                (Source::ModelsDev, Success, without_newer_columns(&models_dev_new)),
                (Source::OpenRouter, Success, without_newer_columns(&openrouter)),
                (Source::HuggingFace, Success, hf(&hf_back)),
                (Source::ArtificialAnalysis, Skipped, Vec::new()),
            ],
            interrupted: false,
        },
        // Killed while Hugging Face was writing: its partial rows stay, the next start marks
        // the sync interrupted and its sources failed.
        OldSync {
            sources: vec![
                (Source::ModelsDev, Failed, Vec::new()),
                (Source::OpenRouter, Failed, Vec::new()),
                (Source::HuggingFace, Failed, hf(&hf_moved)),
                (Source::ArtificialAnalysis, Skipped, Vec::new()),
            ],
            interrupted: true,
        },
    ];
    for old_sync in old_syncs {
        write_old_sync(&database, &mut client, old_sync).await;
    }
    assert_eq!(mark_orphans_interrupted(&client).await, [5]);

    let before = all_rows(&client).await;
    let statuses: BTreeMap<(i64, String), String> = client
        .query("SELECT sync_id, source, status FROM model_sync_sources", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    let started: BTreeMap<i64, Value> = client
        .query("SELECT id, to_json(started_at)::jsonb FROM model_syncs", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let old_total: i64 = db.count("SELECT count(*) FROM model_snapshots").await;

    let applied = migrations::migrate(&database).await.unwrap();
    assert_eq!(applied, ["0006_history.sql", "0007_catalog_indexes.sql"]);
    let after = all_rows(&client).await;
    // The catalog (0007, on the converted history) is each source's state as of the latest
    // sync, the interrupted one: its current versions with the current volatile values (the
    // likes that sync moved included).
    for source in Source::ALL {
        assert!(
            assert_catalog_is_snapshot(&db, 5, source.as_str()).await > 0,
            "{source}"
        );
    }

    // Every source that succeeded in a sync reads back identically, every column.
    let mut identical = 0;
    for ((sync_id, source), status) in &statuses {
        let key = (*sync_id, source.clone());
        if status == "success" {
            assert_eq!(after.get(&key), before.get(&key), "sync {sync_id} {source}");
            identical += before.get(&key).map_or(0, |rows| rows.len());
        }
    }
    assert!(identical > 9000, "{identical}");
    // And every sync and source reads back as the contract says, failed and skipped included.
    let expected = expected_rows(&before, &statuses, &started);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the (sync, source) pairs with rows"
    );
    for (key, rows) in &expected {
        assert_eq!(&after[key], rows, "{key:?}");
    }
    // Nothing else moved: the counts, versions and series are what the old rows say.
    assert_eq!(
        db.count("SELECT sum(snapshot_rows)::bigint FROM model_sync_sources")
            .await,
        old_total
    );
    assert_eq!(db.count("SELECT count(*) FROM model_changes").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM model_volatile_series WHERE key_id IN (SELECT id FROM model_keys WHERE source = 'artificial_analysis')")
            .await,
        4,
        "the AA models whose median_* moved in sync 2"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE end_reason = 'out_of_window' AND source = 'huggingface'")
            .await,
        10 + 200,
        "closed by the complete listing of sync 2 and by the window of sync 3"
    );

    // The binary syncs on top: models.dev and OpenRouter serve what the latest old sync held,
    // so nothing changed (the converted versions are compared by content once and hashed).
    // The models whose records this release reads into more columns get a new version
    // silently: an upgrade writes no change row.
    let reread: i64 = [&models_dev_new, &openrouter]
        .iter()
        .flat_map(|models| models.iter())
        .filter(|model| model.price_tiers.is_some() || model.status.is_some() || model.expires_on.is_some())
        .count() as i64;
    assert!(reread > 0, "the fixtures have tiers, statuses or expiry dates");
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .source("huggingface", "enabled", "false")
        .unset("ARTIFICIAL_ANALYSIS_API_KEY");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(db.count("SELECT count(*) FROM model_changes").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_from_sync = 6")
            .await,
        reread,
        "a silent version for each model read into more columns, none for the others"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM model_versions WHERE valid_to_sync = 6 AND end_reason = 'replaced'
                AND source IN ('models_dev', 'openrouter')"
        )
        .await,
        reread
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_keys WHERE source IN ('models_dev', 'openrouter') AND closed_as IS NULL AND content_hash IS NULL")
            .await,
        0
    );
    for source in ["models_dev", "openrouter"] {
        let rows = after[&(4, source.to_string())].len() as i64;
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM model_snapshots WHERE sync_id = 6 AND source = '{source}'"
            ))
            .await,
            rows
        );
    }
    let again = env.run(&["sync"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(db.count("SELECT count(*) FROM model_changes").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_from_sync >= 7")
            .await,
        0
    );
}
