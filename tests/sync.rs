//! The `sync`, `syncs` and `migrate` commands through the real binary, against a real
//! PostgreSQL and a local server that serves the recorded payloads.

mod common;

use common::capture::Running;
use common::{
    fixture_records, huggingface_items, lock_holder, wait_until, BinaryEnv, FixtureServer, ScriptedServer, TestDb,
};

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];
const HF_PATH: &str = "/api/models";

async fn rows(db: &TestDb, sync_id: i64, source: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM model_snapshots WHERE sync_id = {sync_id} AND source = '{source}'"
    ))
    .await
}

#[tokio::test]
async fn all_four_sources_are_stored_exactly_and_each_sync_is_a_new_snapshot() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server).source("huggingface", "page_size", "1000");

    let first = env.run(&["sync"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    for source in SOURCES {
        assert!(first.stdout.contains(source), "summary lists {source}: {first:?}");
        assert_eq!(rows(&db, 1, source).await, fixture_records(source), "rows of {source}");
    }
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "success");
    assert_eq!(db.count("SELECT count(*) FROM model_rejects").await, 0);
    let summed = db.count("SELECT models_stored FROM model_syncs WHERE id = 1").await;
    assert_eq!(summed, SOURCES.iter().map(|s| fixture_records(s)).sum::<i64>());
    let source_rows = db
        .count("SELECT count(*) FROM model_sync_sources WHERE sync_id = 1 AND status = 'success' AND models_fetched = models_stored AND http_requests > 0 AND bytes > 0")
        .await;
    assert_eq!(source_rows, 4);

    // Exact money: OpenRouter per-token strings become per-million numerics without rounding.
    let exact = db
        .text(
            "SELECT input_price_per_mtok::text || ' ' || output_price_per_mtok::text || ' ' ||
                cache_read_price_per_mtok::text || ' ' || cache_write_price_per_mtok::text
           FROM model_snapshots WHERE source = 'openrouter' AND model_id = 'anthropic/claude-opus-4.7-fast'",
        )
        .await;
    assert_eq!(exact, "30 150 3 37.5");
    // "-1" means a variable price: NULL in the column, kept in the raw record.
    let variable = db
        .count(
            "SELECT count(*) FROM model_snapshots WHERE source = 'openrouter' AND input_price_per_mtok IS NULL
               AND data->'pricing'->>'prompt' = '-1'",
        )
        .await;
    assert_eq!(variable, 3);
    // models.dev ids may contain '/', prices are already per million.
    let models_dev = db
        .text(
            "SELECT provider || ' ' || input_price_per_mtok::text || ' ' || output_price_per_mtok::text
           FROM model_snapshots WHERE source = 'models_dev' AND model_id = 'MiniMax-M1' AND provider = '302ai'",
        )
        .await;
    assert_eq!(models_dev, "302ai 0.132 1.254");
    let with_slash = db
        .count("SELECT count(*) FROM model_snapshots WHERE source = 'models_dev' AND model_id LIKE '%/%'")
        .await;
    assert!(with_slash > 1000, "{with_slash}");
    // The raw record is kept whole.
    let raw = db.text("SELECT data->>'canonical_slug' FROM model_snapshots WHERE source = 'openrouter' AND model_id = 'anthropic/claude-opus-4.7-fast'",
    )
    .await;
    assert_eq!(raw, "anthropic/claude-4.7-opus-fast-20260512");
    let intelligence = db
        .text(
            "SELECT intelligence_index::text FROM model_snapshots WHERE source = 'artificial_analysis'
           AND model_id = '49e70a38-4ac1-4659-b490-09b2c7ff21d6'",
        )
        .await;
    assert_eq!(intelligence, "5.1");

    let second = env.run(&["sync"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    for source in SOURCES {
        assert_eq!(rows(&db, 2, source).await, fixture_records(source));
    }
    let unchanged = db
        .count(
            "SELECT count(*) FROM model_snapshots a JOIN model_snapshots b
                ON b.sync_id = 2 AND a.source = b.source AND a.provider = b.provider AND a.model_id = b.model_id
             WHERE a.sync_id = 1 AND a.content_hash = b.content_hash",
        )
        .await;
    assert_eq!(
        unchanged,
        SOURCES.iter().map(|s| fixture_records(s)).sum::<i64>(),
        "same payloads, same hashes"
    );

    let history = env.run(&["syncs", "--json", "--limit", "5"]).await;
    assert_eq!(history.code, 0, "{history:?}");
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["id"], 2);
    assert_eq!(history[0]["sources"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn hugging_face_follows_link_pages_and_honours_max_models() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .source("huggingface", "page_size", "100")
        .source("huggingface", "max_models", "250")
        .source("models_dev", "enabled", "false")
        .source("openrouter", "enabled", "false")
        .unset("ARTIFICIAL_ANALYSIS_API_KEY");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(rows(&db, 1, "huggingface").await, 250);
    assert_eq!(
        db.count("SELECT http_requests FROM model_sync_sources WHERE sync_id = 1 AND source = 'huggingface'")
            .await,
        3
    );
    // The first 250 of the listing, in order: the top of the sorted listing is what was asked.
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&common::read_fixture("hf_models.json")).unwrap();
    let last_expected = expected[249]["id"].as_str().unwrap().to_string();
    let found = db
        .count(&format!(
            "SELECT count(*) FROM model_snapshots WHERE model_id = '{last_expected}'"
        ))
        .await;
    assert_eq!(found, 1);
    let skipped = db.text("SELECT status || ': ' || error FROM model_sync_sources WHERE sync_id = 1 AND source = 'artificial_analysis'",
    )
    .await;
    assert_eq!(skipped, "skipped: no ARTIFICIAL_ANALYSIS_API_KEY set");

    // The whole listing across 25 pages.
    let all = env
        .clone()
        .source("huggingface", "max_models", "0")
        .run(&["sync"])
        .await;
    assert_eq!(all.code, 0, "{all:?}");
    assert_eq!(rows(&db, 2, "huggingface").await, fixture_records("huggingface"));
    assert_eq!(
        db.count("SELECT http_requests FROM model_sync_sources WHERE sync_id = 2 AND source = 'huggingface'")
            .await,
        25
    );
}

#[tokio::test]
async fn a_failing_source_fails_alone_and_the_others_are_stored() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .source("openrouter", "base_url", &server.base_url("status500"))
        .source("openrouter", "max_retries", "2")
        .source("models_dev", "base_url", &server.base_url("garbage"));
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 1, "partial → exit 1: {run:?}");
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "partial");
    let openrouter = db
        .text(
            "SELECT status || ' ' || http_requests || ' ' || error FROM model_sync_sources WHERE source = 'openrouter'",
        )
        .await;
    assert!(openrouter.starts_with("failed 3 "), "{openrouter}");
    assert!(openrouter.contains("500"), "{openrouter}");
    let models_dev = db
        .text("SELECT status || ' ' || error FROM model_sync_sources WHERE source = 'models_dev'")
        .await;
    assert!(
        models_dev.starts_with("failed ") && models_dev.contains("not valid JSON"),
        "{models_dev}"
    );
    assert_eq!(rows(&db, 1, "openrouter").await, 0);
    assert_eq!(rows(&db, 1, "huggingface").await, fixture_records("huggingface"));
    assert_eq!(
        rows(&db, 1, "artificial_analysis").await,
        fixture_records("artificial_analysis")
    );
    assert!(run.stdout.contains("failed"), "{run:?}");

    // Every source failing is a failed sync: exit 2.
    let env = env
        .source("huggingface", "base_url", &server.base_url("status404"))
        .source("artificial_analysis", "base_url", &server.base_url("status404"));
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 2").await, "failed");
}

#[tokio::test]
async fn transient_errors_are_retried_and_retry_after_is_honoured() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .source("openrouter", "base_url", &server.base_url("flaky"))
        .source("huggingface", "base_url", &server.base_url("flaky"))
        .source("huggingface", "page_size", "500");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(rows(&db, 1, "openrouter").await, fixture_records("openrouter"));
    assert_eq!(rows(&db, 1, "huggingface").await, fixture_records("huggingface"));
    // Each of the 5 pages failed once and then succeeded.
    assert_eq!(
        db.count("SELECT http_requests FROM model_sync_sources WHERE source = 'huggingface'")
            .await,
        10
    );
}

#[tokio::test]
async fn migrations_apply_once_even_when_two_processes_start_together() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let (a, b) = tokio::join!(env.run(&["migrate"]), env.run(&["migrate"]));
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");
    let applied = format!("{}{}", a.stdout, b.stdout);
    assert_eq!(applied.matches("applied 0001_schema.sql").count(), 1, "{applied}");
    assert_eq!(
        applied.matches("applied 0002_snapshots_without_fk.sql").count(),
        1,
        "{applied}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_lens_migrations").await,
        model_lens_sync::store::migrations::MIGRATIONS.len() as i64
    );
    // model_snapshots is a view over the versions since 0006 (DESIGN.md §8): its old indexes
    // became these.
    for index in [
        "model_keys_unique",
        "model_versions_pkey",
        "model_versions_current",
        "model_versions_source_valid_to",
        "model_volatile_series_pkey",
        "idx_model_changes_sync_id",
    ] {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM pg_indexes WHERE indexname = '{index}'"))
                .await,
            1,
            "{index}"
        );
    }
    let again = env.run(&["migrate"]).await;
    assert!(again.stdout.contains("up to date"), "{again:?}");
}

#[tokio::test]
async fn a_sync_left_running_by_a_killed_process_becomes_interrupted() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    assert_eq!(env.run(&["migrate"]).await.code, 0);
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO model_syncs (trigger, status) VALUES ('cli', 'running')")
        .await
        .unwrap();
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        db.text("SELECT status FROM model_syncs WHERE id = 1").await,
        "interrupted"
    );
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 2").await, "success");
}

#[tokio::test]
async fn the_fencing_migration_upgrades_a_database_that_holds_syncs_and_loses_nothing() {
    use model_lens_sync::config::DatabaseConfig;
    use model_lens_sync::store::{connect_pool, migrations};

    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let database = connect_pool(&db.url, &DatabaseConfig::default()).unwrap();
    migrations::migrate_up_to(&database, 3).await.unwrap();
    // A database as the previous version left it: a finished sync with a snapshot row and a
    // reject, and a sync left running by a killed process.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO model_syncs (trigger, status, models_fetched, models_stored, models_rejected)
                  VALUES ('cli', 'success', 2, 1, 1), ('cli', 'running', 0, 0, 0);
             INSERT INTO model_sync_sources (sync_id, source, status, models_fetched, models_stored, models_rejected)
                  VALUES (1, 'openrouter', 'success', 2, 1, 1), (2, 'openrouter', 'running', 0, 0, 0);
             INSERT INTO model_snapshots (sync_id, source, provider, model_id, data, content_hash)
                  VALUES (1, 'openrouter', 'acme', 'a', '{\"id\": \"acme/a\"}', '\\x00');
             INSERT INTO model_rejects (sync_id, source, reason, raw, raw_hash)
                  VALUES (1, 'openrouter', 'missing_id', '{}', '\\x01');",
        )
        .await
        .unwrap();
    let env = BinaryEnv::new(&db, &server);
    let migrated = env.run(&["migrate"]).await;
    assert_eq!(migrated.code, 0, "{migrated:?}");
    assert!(
        migrated.stdout.contains("0005_sync_fencing_and_pages.sql"),
        "{migrated:?}"
    );
    let old = db
        .client()
        .await
        .query_one(
            "SELECT s.status, s.models_fetched, s.models_stored, s.models_rejected, s.models_duplicates,
                    s.owner_token, (SELECT count(*) FROM model_snapshots WHERE sync_id = 1),
                    (SELECT count(*) FROM model_rejects)
               FROM model_syncs s WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let old: (String, i64, i64, i64, Option<i64>, Option<String>, i64, i64) = (
        old.get(0),
        old.get(1),
        old.get(2),
        old.get(3),
        old.get(4),
        old.get(5),
        old.get(6),
        old.get(7),
    );
    assert_eq!(
        old,
        ("success".into(), 2, 1, 1, None, None, 1, 1),
        "nothing lost, nothing invented"
    );
    // The new version works on it: the orphan is recovered, a sync counts its duplicates.
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        db.text("SELECT status FROM model_syncs WHERE id = 2").await,
        "interrupted"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_syncs WHERE id = 3 AND status = 'success' AND models_duplicates = 0 AND owner_token IS NOT NULL")
            .await,
        1
    );
    let history = env.run(&["syncs", "--json"]).await;
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(history[2]["id"], 1);
    assert_eq!(
        history[2]["models_duplicates"],
        serde_json::Value::Null,
        "not counted then"
    );
}

#[tokio::test]
async fn help_is_available_for_every_command() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    for command in [
        "serve",
        "sync",
        "health",
        "check-sync-health",
        "syncs",
        "trigger",
        "migrate",
    ] {
        let run = env.run(&[command, "--help"]).await;
        assert_eq!(run.code, 0, "{command}: {run:?}");
        assert!(run.stdout.contains("Usage"), "{command}: {run:?}");
    }
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_sync_never_leaves_a_success_and_the_next_start_recovers() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    scripted.json_pages(HF_PATH, &huggingface_items(), 1000);
    scripted.hold_from(HF_PATH, 1);
    let held = BinaryEnv::new(&db, &server).source("huggingface", "base_url", &scripted.base_url());
    let mut child = held.command(&["sync"]).spawn().unwrap();
    // Some batches are committed while Hugging Face waits for its second page.
    wait_until(
        &db,
        "SELECT count(*) FROM model_snapshots WHERE source = 'openrouter'",
        60,
    )
    .await;
    scripted.wait_for_request(HF_PATH, 1).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "running");
    // Whatever was committed is whole: every committed source has all of its rows or none.
    let openrouter = rows(&db, 1, "openrouter").await;
    assert!(
        openrouter == 0 || openrouter == fixture_records("openrouter"),
        "{openrouter}"
    );
    // The killed sync's scratch of recorded keys stays until the recovery.
    assert_eq!(
        db.count("SELECT count(*) FROM model_sync_seen WHERE sync_id = 1 AND source = 'openrouter'")
            .await
            > 0,
        openrouter > 0
    );

    let next = BinaryEnv::new(&db, &server).run(&["sync"]).await;
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(
        db.text("SELECT status FROM model_syncs WHERE id = 1").await,
        "interrupted"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_sync_sources WHERE sync_id = 1 AND status = 'running'")
            .await,
        0
    );
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 2").await, "success");
    // The recovery deleted what the interrupted sync recorded, the final record what the next
    // one did.
    assert_eq!(db.count("SELECT count(*) FROM model_sync_seen").await, 0);
}

#[tokio::test]
async fn postgres_restarted_in_the_middle_of_a_sync_loses_nothing() {
    for immediate in [false, true] {
        restart_postgres_during_a_sync(immediate).await;
    }
}

/// Stops the database (fast, or immediate as in a crash) while Hugging Face waits for its
/// second page, lets that page arrive during the outage, starts the database again once the
/// writer has failed to write it, and expects every row.
async fn restart_postgres_during_a_sync(immediate: bool) {
    use model_lens_sync::store::embedded::EmbeddedPostgres;
    let dir = std::env::temp_dir()
        .join("model-lens-tests")
        .join(format!("outage-{}-{immediate}", std::process::id()));
    let cluster = EmbeddedPostgres::start(&dir, None).await.expect("a private cluster");
    let db = TestDb {
        url: cluster.url(),
        name: "postgres".into(),
    };
    let server = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    scripted.json_pages(HF_PATH, &huggingface_items(), 1000);
    scripted.hold_from(HF_PATH, 1);
    let env = BinaryEnv::new(&db, &server)
        .source("huggingface", "base_url", &scripted.base_url())
        .set("MODEL_LENS_WRITER__RETRY_BASE_MS", "200");
    let mut child = Running::start(&env, &["sync"]);
    wait_until(
        &db,
        "SELECT count(*) FROM model_snapshots WHERE source = 'openrouter'",
        60,
    )
    .await;
    scripted.wait_for_request(HF_PATH, 1).await;
    if immediate {
        cluster.stop_immediately().await;
    } else {
        cluster.stop().await;
    }
    scripted.release_until(HF_PATH, 2);
    child.wait_for_log("database write failed, retrying").await;
    let restarted = EmbeddedPostgres::start(&dir, None).await.expect("the cluster restarts");
    scripted.release_all(HF_PATH);
    let run = child.finish().await;
    let context = format!("immediate = {immediate}: {run:?}");
    assert_eq!(run.code, 0, "{context}");
    assert_exact_and_unique(&db, 1, &context).await;
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "success");
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_resent_page_changes_nothing_and_repeats_are_counted_or_quarantined() {
    use model_lens_sync::config::DatabaseConfig;
    use model_lens_sync::history::{self, Digest};
    use model_lens_sync::model::{Model, RejectReason, Source};
    use model_lens_sync::report::{SourceStatus, Trigger};
    use model_lens_sync::store::batch::{write_batch, PageData};
    use model_lens_sync::store::history::{HistoryRules, SyncHistory};
    use model_lens_sync::store::syncs::SyncFence;
    use model_lens_sync::store::{connect_pool, migrations, syncs, StoreError};

    let db = TestDb::create().await;
    let database = connect_pool(&db.url, &DatabaseConfig::default()).unwrap();
    migrations::migrate(&database).await.unwrap();
    let plan = [(Source::OpenRouter, SourceStatus::Running, None)];
    let owner_token = SyncFence::new_token();
    let (sync_id, _) = syncs::create_sync(&database, Trigger::Cli, &plan, &owner_token)
        .await
        .unwrap();
    let fence = SyncFence { sync_id, owner_token };
    let history = SyncHistory::new(HistoryRules::default());
    let model = |id: &str, raw: &str| Model::new(Source::OpenRouter, "acme".into(), id.into(), raw.into());
    fn page<'a>(page_no: u64, models: &'a [Model], digests: &'a [Digest]) -> PageData<'a> {
        PageData {
            source: Source::OpenRouter,
            page_no,
            models,
            digests,
            rejects: &[],
            duplicates: 0,
        }
    }
    let digests = |models: &[Model]| -> Vec<Digest> { models.iter().map(history::digest).collect() };
    let first = [model("a", r#"{"id":"acme/a"}"#), model("b", r#"{"id":"acme/b"}"#)];

    let written = write_batch(&database, &fence, &history, &[page(1, &first, &digests(&first))], &[])
        .await
        .unwrap();
    assert_eq!(written.stored.get(&Source::OpenRouter), Some(&2));
    // The same page again (a restart, a commit acknowledged late): skipped whole.
    let resent = write_batch(&database, &fence, &history, &[page(1, &first, &digests(&first))], &[])
        .await
        .unwrap();
    assert_eq!(
        (resent.skipped_pages, resent.stored.get(&Source::OpenRouter)),
        (1, None)
    );
    assert!(resent.rejected.is_empty() && resent.duplicates.is_empty());
    // Another page lists "a" with other content (quarantined), "b" identical (a duplicate).
    let second = [
        model("a", r#"{"id":"acme/a","changed":true}"#),
        model("c", r#"{"id":"acme/c"}"#),
        model("b", r#"{"id":"acme/b"}"#),
    ];
    let outcome = write_batch(&database, &fence, &history, &[page(2, &second, &digests(&second))], &[])
        .await
        .unwrap();
    assert_eq!(outcome.stored.get(&Source::OpenRouter), Some(&1));
    assert_eq!(
        outcome.rejected.get(&(Source::OpenRouter, RejectReason::DuplicateId)),
        Some(&1)
    );
    assert_eq!(outcome.duplicates.get(&Source::OpenRouter), Some(&1));
    assert_eq!(outcome.fetched.get(&Source::OpenRouter), Some(&3));
    assert_eq!(db.count("SELECT count(*) FROM model_snapshots").await, 3);
    assert_eq!(
        db.text("SELECT data::text FROM model_snapshots WHERE model_id = 'a'")
            .await,
        r#"{"id": "acme/a"}"#
    );
    assert_eq!(
        db.text("SELECT reason || ' ' || raw FROM model_rejects").await,
        r#"duplicate_id {"id": "acme/a", "changed": true}"#
    );
    assert_eq!(
        db.count("SELECT sum(records)::bigint FROM model_sync_pages").await,
        5,
        "every record of every page, once"
    );
    assert_eq!(db.count("SELECT models_duplicates FROM model_sync_sources").await, 1);
    // Once the sync is no longer running under this owner, nothing more is written.
    db.client()
        .await
        .batch_execute("UPDATE model_syncs SET status = 'interrupted'")
        .await
        .unwrap();
    let third = [model("d", r#"{"id":"acme/d"}"#)];
    let fenced = write_batch(&database, &fence, &history, &[page(3, &third, &digests(&third))], &[]).await;
    assert!(matches!(fenced, Err(StoreError::Fenced { .. })), "{fenced:?}");
    assert_eq!(db.count("SELECT count(*) FROM model_snapshots").await, 3);
}

async fn assert_exact_and_unique(db: &TestDb, sync_id: i64, context: &str) {
    for source in SOURCES {
        assert_eq!(
            rows(db, sync_id, source).await,
            fixture_records(source),
            "{source} {context}"
        );
    }
    let duplicates = db
        .count(&format!(
            "SELECT count(*) - count(DISTINCT (source, provider, model_id)) FROM model_snapshots WHERE sync_id = {sync_id}"
        ))
        .await;
    assert_eq!(duplicates, 0);
}

#[tokio::test]
async fn crashed_actors_are_restarted_and_nothing_is_lost_or_doubled() {
    let server = FixtureServer::start().await;
    for faults in [
        "fetcher_page:huggingface=3",
        "transformer_page:huggingface=2",
        "writer_batch=2",
        "fetcher_page=1,transformer_page=4,writer_batch=3",
    ] {
        let db = TestDb::create().await;
        let env = BinaryEnv::new(&db, &server)
            .source("huggingface", "page_size", "500")
            .set("MODEL_LENS_WRITER__BATCH_SIZE", "600")
            .set("MODEL_LENS_FAULTS", faults);
        let run = env.run(&["sync"]).await;
        assert_eq!(run.code, 0, "{faults}: {run:?}");
        assert!(
            run.stderr.contains("injected fault"),
            "{faults}: the fault did not fire: {run:?}"
        );
        assert!(run.stderr.contains("restarting"), "{faults}: {run:?}");
        assert_eq!(
            db.text("SELECT status FROM model_syncs WHERE id = 1").await,
            "success",
            "{faults}"
        );
        assert_exact_and_unique(&db, 1, &format!("{faults}: {run:?}")).await;
    }
}

#[tokio::test]
async fn an_actor_that_keeps_crashing_fails_its_source_only() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .source("huggingface", "page_size", "500")
        .set("MODEL_LENS_FAULTS", "fetcher_page:huggingface=always");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let error = db
        .text("SELECT status || ' ' || error FROM model_sync_sources WHERE source = 'huggingface'")
        .await;
    assert!(
        error.starts_with("failed the fetcher crashed 4 times within 60s"),
        "{error}"
    );
    assert_eq!(rows(&db, 1, "openrouter").await, fixture_records("openrouter"));
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "partial");
}

#[tokio::test]
async fn backends_terminated_in_the_middle_of_a_sync_are_replaced_the_lock_retaken_and_nothing_is_lost() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let scripted = ScriptedServer::start().await;
    scripted.json_pages(HF_PATH, &huggingface_items(), 500);
    scripted.hold_from(HF_PATH, 1);
    let env = BinaryEnv::new(&db, &server)
        .source("huggingface", "base_url", &scripted.base_url())
        .set("MODEL_LENS_WRITER__RETRY_BASE_MS", "100");
    let mut child = Running::start(&env, &["sync"]);
    wait_until(
        &db,
        "SELECT count(*) FROM model_snapshots WHERE source = 'openrouter'",
        60,
    )
    .await;
    // Twice, a page apart: kill every session of the sync, the pooled connections and the
    // lock's. Each time the sync must take its lock back (and say so) before it goes on.
    for (round, held_page) in [(1, 1), (2, 3)] {
        scripted.wait_for_request(HF_PATH, held_page).await;
        let holder = lock_holder(&db).await.expect("the running sync holds the lock");
        let killed = db
            .count(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            )
            .await;
        assert!(killed > 0, "there were sessions to terminate");
        child.wait_for_log_count("took the sync lock back", round).await;
        let now = lock_holder(&db).await.expect("the sync holds its lock again");
        assert_ne!(now, holder, "a new session holds the lock");
        scripted.release_until(HF_PATH, held_page + 2);
    }
    scripted.release_all(HF_PATH);
    let run = child.finish().await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr.matches("took the sync lock back").count(), 2, "{run:?}");
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "success");
    assert_exact_and_unique(&db, 1, &format!("{run:?}")).await;
}

#[tokio::test]
async fn a_table_lock_held_longer_than_the_statement_timeout_delays_the_sync_but_loses_nothing() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .set("MODEL_LENS_DATABASE__STATEMENT_TIMEOUT_SECS", "1")
        .set("MODEL_LENS_WRITER__RETRY_BASE_MS", "200");
    assert_eq!(env.run(&["migrate"]).await.code, 0);
    let holder = db.client().await;
    // The table the writer writes (model_snapshots is a view over it since 0006).
    holder
        .batch_execute("BEGIN; LOCK TABLE model_versions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut child = Running::start(&env, &["sync"]);
    // Held until a batch has been cancelled by the statement timeout and retried.
    child.wait_for_log("database write failed, retrying").await;
    holder.batch_execute("COMMIT").await.unwrap();
    let run = child.finish().await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_exact_and_unique(&db, 1, &format!("{run:?}")).await;
}

#[tokio::test]
async fn a_parser_panic_fails_its_source_and_nothing_else() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server).set("MODEL_LENS_FAULTS", "parser:openrouter");
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let error = db
        .text("SELECT status || ' ' || error FROM model_sync_sources WHERE source = 'openrouter'")
        .await;
    assert!(
        error.starts_with("failed page 1: the openrouter parser crashed: injected fault"),
        "{error}"
    );
    for source in ["models_dev", "huggingface", "artificial_analysis"] {
        assert_eq!(rows(&db, 1, source).await, fixture_records(source), "{source}");
    }
}
