//! History through the real binary (DESIGN.md §8): versions instead of copies, volatile series,
//! changes, removals only from complete listings, held removals, truncated windows, failed
//! sources, reappearing models; `model_snapshots` of every sync equal to what it fetched; and
//! the two real models.dev snapshots, whose diff the test computes from the JSON files itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::current_catalog::assert_catalog_is_snapshot;
use common::hf_listing::{hf_model, HfListing};
use common::{read_fixture, BinaryEnv, FixtureServer, TestDb};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::Value;

type Key = (String, String);

/// `model_snapshots` of one sync and source: (provider, model_id) → the raw record.
async fn snapshot(db: &TestDb, sync_id: i64, source: &str) -> BTreeMap<Key, Value> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT provider, model_id, data FROM model_snapshots WHERE sync_id = $1 AND source = $2",
            &[&sync_id, &source],
        )
        .await
        .expect("read model_snapshots");
    rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect()
}

/// The keys and records a Hugging Face listing serves.
fn hf_expected(models: &[Value]) -> BTreeMap<Key, Value> {
    models
        .iter()
        .map(|model| {
            let id = model["id"].as_str().unwrap().to_string();
            let owner = id
                .split_once('/')
                .map(|(owner, _)| owner.to_string())
                .unwrap_or_default();
            ((owner, id), model.clone())
        })
        .collect()
}

async fn assert_snapshot(db: &TestDb, sync_id: i64, source: &str, expected: &BTreeMap<Key, Value>) {
    let stored = snapshot(db, sync_id, source).await;
    let missing: Vec<&Key> = expected.keys().filter(|key| !stored.contains_key(*key)).collect();
    let extra: Vec<&Key> = stored.keys().filter(|key| !expected.contains_key(*key)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "sync {sync_id} {source}: missing {missing:?}, not fetched but shown {extra:?}"
    );
    for (key, record) in expected {
        assert_eq!(&stored[key], record, "sync {sync_id} {source} {key:?}");
    }
}

/// Changes of one sync: kind → keys.
async fn changes_of(db: &TestDb, sync_id: i64) -> BTreeMap<String, BTreeSet<Key>> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT kind, provider, model_id FROM model_changes WHERE sync_id = $1",
            &[&sync_id],
        )
        .await
        .unwrap();
    let mut changes: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
    for row in rows {
        changes.entry(row.get(0)).or_default().insert((row.get(1), row.get(2)));
    }
    changes
}

fn keys(models: &[&Value]) -> BTreeSet<Key> {
    hf_expected(&models.iter().map(|m| (*m).clone()).collect::<Vec<_>>())
        .into_keys()
        .collect()
}

/// Listens on `model_lens_changes`; the payloads arrive on the returned channel.
async fn listen(db: &TestDb) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification.payload().to_string());
            }
        }
    });
    client.batch_execute("LISTEN model_lens_changes").await.unwrap();
    (client, receiver)
}

fn hf_env(db: &TestDb, fixtures: &FixtureServer, listing: &HfListing) -> BinaryEnv {
    BinaryEnv::new(db, fixtures)
        .source("huggingface", "base_url", &listing.base_url())
        .source("huggingface", "page_size", "5")
        .source("huggingface", "max_retries", "0")
        .source("models_dev", "enabled", "false")
        .source("openrouter", "enabled", "false")
        .unset("ARTIFICIAL_ANALYSIS_API_KEY")
}

#[tokio::test]
async fn hugging_face_history_follows_moves_windows_failures_holds_and_returns() {
    let db = TestDb::create().await;
    let fixtures = FixtureServer::start().await;
    let base: Vec<Value> = (0..20).map(|i| hf_model(i, 1000 - i as i64, 10, 1)).collect();
    let listing = HfListing::start(base.clone()).await;
    let env = hf_env(&db, &fixtures, &listing);

    // 1. The first listing is the source's baseline: versions, no changes.
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 1, "huggingface", &hf_expected(&base)).await;
    assert_eq!(db.count("SELECT count(*) FROM model_versions").await, 20);
    assert_eq!(db.count("SELECT count(*) FROM model_changes").await, 0);

    // 2. Downloads and likes move for five models (no version, a series row each); one model's
    //    content changes; one is gone from a complete listing; one is new.
    let mut second = base.clone();
    for model in second.iter_mut().take(5) {
        model["downloads"] = Value::from(model["downloads"].as_i64().unwrap() + 7);
        model["likes"] = Value::from(11);
    }
    second[5] = hf_model(5, 995, 10, 2);
    let gone = second.remove(19);
    second.push(hf_model(20, 5, 0, 1));
    listing.set(second.clone());
    let (_listener, mut notifications) = listen(&db).await;
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 2, "huggingface", &hf_expected(&second)).await;
    assert_snapshot(&db, 1, "huggingface", &hf_expected(&base)).await;
    assert!(
        !db.scalar::<bool>(
            "SELECT listing_truncated FROM model_sync_sources WHERE sync_id = 2 AND source = 'huggingface'"
        )
        .await
    );
    let changes = changes_of(&db, 2).await;
    assert_eq!(changes["changed"], keys(&[&second[5]]));
    assert_eq!(changes["removed"], keys(&[&gone]));
    assert_eq!(changes["added"], keys(&[&second[19]]));
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(
        db.text("SELECT array_to_string(fields, ',') FROM model_changes WHERE kind = 'changed'")
            .await,
        "data"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_volatile_series WHERE sync_id = 2")
            .await,
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_from_sync = 2")
            .await,
        2
    );
    let downloads: i64 = db
        .scalar("SELECT downloads FROM model_snapshots WHERE sync_id = 2 AND model_id = 'org-0/model-0'")
        .await;
    assert_eq!(downloads, 1007);
    // The catalog reads the current versions with the current volatile values (the series
    // point of sync 2, not the version's values of sync 1).
    assert_eq!(
        assert_catalog_is_snapshot(&db, 2, "huggingface").await,
        second.len() as i64
    );
    let last_change = db.count("SELECT max(id) FROM model_changes").await;
    let payload = tokio::time::timeout(Duration::from_secs(10), notifications.recv())
        .await
        .expect("a notification after the commits that added changes")
        .unwrap();
    let mut last_payload: i64 = payload.parse().unwrap();
    while let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(300), notifications.recv()).await {
        last_payload = last_payload.max(more.parse().unwrap());
    }
    assert_eq!(last_payload, last_change);

    // 3. A window of 10 (max_models): what it does not reach leaves the snapshot silently.
    let run = env
        .clone()
        .source("huggingface", "max_models", "10")
        .run(&["sync"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 3, "huggingface", &hf_expected(&second[..10])).await;
    assert_eq!(assert_catalog_is_snapshot(&db, 3, "huggingface").await, 10);
    assert!(changes_of(&db, 3).await.is_empty());
    assert!(
        db.scalar::<bool>(
            "SELECT listing_truncated FROM model_sync_sources WHERE sync_id = 3 AND source = 'huggingface'"
        )
        .await
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_to_sync = 3 AND end_reason = 'out_of_window'")
            .await,
        10
    );

    // 4. The whole listing again: the ten reopen with new versions and no change.
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 4, "huggingface", &hf_expected(&second)).await;
    assert_catalog_is_snapshot(&db, 4, "huggingface").await;
    assert!(changes_of(&db, 4).await.is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE valid_from_sync = 4")
            .await,
        10
    );

    // 5. A failed source closes nothing: its snapshot is its last known state.
    listing.fail(true);
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    listing.fail(false);
    assert_snapshot(&db, 5, "huggingface", &hf_expected(&second)).await;
    assert_catalog_is_snapshot(&db, 5, "huggingface").await;
    assert!(changes_of(&db, 5).await.is_empty());

    // 6. A complete listing that lacks 60% of the models: held, nothing removed; the snapshot
    //    shows what was fetched, the catalog keeps the rest.
    listing.set(second[..8].to_vec());
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 6, "huggingface", &hf_expected(&second[..8])).await;
    assert!(changes_of(&db, 6).await.is_empty());
    assert!(
        db.scalar::<bool>("SELECT removals_held FROM model_sync_sources WHERE sync_id = 6 AND source = 'huggingface'")
            .await
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_versions WHERE source = 'huggingface' AND valid_to_sync IS NULL")
            .await,
        20
    );
    // The catalog keeps the 20: the same models and values as before the held listing.
    assert_eq!(assert_catalog_is_snapshot(&db, 5, "huggingface").await, 20);

    // 7. The removed model comes back: `reappeared`; the held ones were never gone.
    let mut back = second.clone();
    back.push(gone.clone());
    listing.set(back.clone());
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_snapshot(&db, 7, "huggingface", &hf_expected(&back)).await;
    let changes = changes_of(&db, 7).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes["reappeared"], keys(&[&gone]));

    // At most one current version per key, ever; every earlier sync still reads back as it
    // was fetched.
    assert_eq!(
        db.count("SELECT count(*) - count(DISTINCT key_id) FROM model_versions WHERE valid_to_sync IS NULL")
            .await,
        0
    );
    assert_snapshot(&db, 1, "huggingface", &hf_expected(&base)).await;
    assert_snapshot(&db, 3, "huggingface", &hf_expected(&second[..10])).await;

    // The readers: the model's versions and changes, and the change list as JSON.
    let history = env
        .run(&["history", "--source", "huggingface", "--json", "org-1/model-19"])
        .await;
    assert_eq!(history.code, 0, "{history:?}");
    let history: Value = serde_json::from_str(&history.stdout).unwrap();
    let versions = history[0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["end_reason"], "removed");
    assert_eq!(versions[0]["valid_to_sync"], 2);
    assert_eq!(versions[1]["valid_from_sync"], 7);
    let kinds: Vec<&str> = history[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["removed", "reappeared"]);
    let text = env.run(&["history", "--source", "huggingface", "org-1/model-19"]).await;
    assert!(
        text.stdout.contains("versions") && text.stdout.contains("#7"),
        "{text:?}"
    );
    let unknown = env.run(&["history", "--source", "huggingface", "nobody/nothing"]).await;
    assert_eq!(unknown.code, 1, "{unknown:?}");
    let all = env.run(&["changes", "--since-sync", "0", "--json"]).await;
    assert_eq!(all.code, 0, "{all:?}");
    let all: Vec<Value> = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    let removed = env
        .run(&[
            "changes",
            "--since-sync",
            "0",
            "--kind",
            "removed",
            "--source",
            "huggingface",
        ])
        .await;
    assert!(removed.stdout.contains("1 removed"), "{removed:?}");
    assert!(removed.stdout.contains("org-1/model-19"), "{removed:?}");
}

/// models.dev's records keyed by (provider, model key).
fn models_dev_records(fixture: &str) -> BTreeMap<Key, Value> {
    let document: Value = serde_json::from_slice(&read_fixture(fixture)).unwrap();
    let mut records = BTreeMap::new();
    for (provider, entry) in document.as_object().unwrap() {
        for (model, record) in entry["models"].as_object().unwrap() {
            records.insert((provider.clone(), model.clone()), record.clone());
        }
    }
    records
}

fn price(record: &Value, field: &str) -> Option<Decimal> {
    let value = record.get("cost")?.get(field)?;
    let text = value.to_string();
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(&text).ok())
}

const PRICE_COLUMNS: [(&str, &str); 4] = [
    ("input", "input_price_per_mtok"),
    ("output", "output_price_per_mtok"),
    ("cache_read", "cache_read_price_per_mtok"),
    ("cache_write", "cache_write_price_per_mtok"),
];

async fn sync_models_dev_pair(db: &TestDb, max_removed_percent: Option<&str>) -> BinaryEnv {
    let older = FixtureServer::start_with_models_dev("modelsdev_api_2025-11.json").await;
    let newer = FixtureServer::start_with_models_dev("modelsdev_api.json").await;
    let only_models_dev = |server: &FixtureServer| {
        let env = BinaryEnv::new(db, server)
            .source("openrouter", "enabled", "false")
            .source("huggingface", "enabled", "false")
            .unset("ARTIFICIAL_ANALYSIS_API_KEY");
        match max_removed_percent {
            Some(percent) => env.set("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", percent),
            None => env,
        }
    };
    let first = only_models_dev(&older).run(&["sync"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let env = only_models_dev(&newer);
    let second = env.run(&["sync"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    env
}

#[tokio::test]
async fn the_two_real_models_dev_snapshots_give_the_exact_diff() {
    let db = TestDb::create().await;
    let env = sync_models_dev_pair(&db, Some("50")).await;
    let old = models_dev_records("modelsdev_api_2025-11.json");
    let new = models_dev_records("modelsdev_api.json");

    // Each sync reads back as its payload, record for record.
    let read_old = snapshot(&db, 1, "models_dev").await;
    let read_new = snapshot(&db, 2, "models_dev").await;
    assert_eq!(read_old.len(), old.len());
    assert_eq!(read_new.len(), new.len());
    for (key, record) in &old {
        assert_eq!(&read_old[key], record, "sync 1 {key:?}");
    }
    for (key, record) in &new {
        assert_eq!(&read_new[key], record, "sync 2 {key:?}");
    }

    // Added and removed are the set differences; changed are the keys whose record differs.
    let old_keys: BTreeSet<Key> = old.keys().cloned().collect();
    let new_keys: BTreeSet<Key> = new.keys().cloned().collect();
    let changes = changes_of(&db, 2).await;
    let added: BTreeSet<Key> = new_keys.difference(&old_keys).cloned().collect();
    let removed: BTreeSet<Key> = old_keys.difference(&new_keys).cloned().collect();
    let changed: BTreeSet<Key> = old_keys
        .intersection(&new_keys)
        .filter(|key| old[*key] != new[*key])
        .cloned()
        .collect();
    assert_eq!(changes["added"], added);
    assert_eq!(changes["removed"], removed);
    assert_eq!(changes["changed"], changed);
    assert!(!changes.contains_key("reappeared"));
    assert_eq!(removed.len(), 174, "the fixtures' 15.8% removal");

    // Every model whose price moved has a `changed` row naming that column, with the exact
    // decimal before and after; a jump or a move to or from zero is held.
    let client = db.client().await;
    let mut repriced = 0;
    for key in old_keys.intersection(&new_keys) {
        for (field, column) in PRICE_COLUMNS {
            let (before, after) = (price(&old[key], field), price(&new[key], field));
            if before == after {
                continue;
            }
            repriced += 1;
            let row = client
                .query_one(
                    "SELECT fields, before ->> $3, after ->> $3, hold_reason FROM model_changes
                      WHERE sync_id = 2 AND kind = 'changed' AND provider = $1 AND model_id = $2",
                    &[&key.0, &key.1, &column],
                )
                .await
                .unwrap_or_else(|e| panic!("{key:?} {column}: {e}"));
            let fields: Vec<String> = row.get(0);
            assert!(fields.iter().any(|f| f == column), "{key:?}: {fields:?} lacks {column}");
            let stored = |text: Option<String>| text.map(|t| t.parse::<Decimal>().unwrap());
            assert_eq!(stored(row.get(1)), before, "{key:?} {column} before");
            assert_eq!(stored(row.get(2)), after, "{key:?} {column} after");
            let hold: Option<String> = row.get(3);
            let jump = match (before, after) {
                (Some(b), Some(a)) if b.is_zero() != a.is_zero() => true,
                (Some(b), Some(a)) if !b.is_zero() => {
                    let ratio = if a > b { a / b } else { b / a };
                    ratio >= Decimal::TEN
                }
                _ => false,
            };
            if jump {
                assert!(hold.is_some(), "{key:?} {column}: {before:?} → {after:?} is not held");
            }
        }
    }
    assert!(repriced > 50, "{repriced}");

    // The terminal view and the model's history.
    let table = env
        .run(&["changes", "--since-sync", "1", "--source", "models_dev"])
        .await;
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table.stdout.contains(&format!(
            "models_dev: {} added, {} changed, {} removed",
            added.len(),
            changed.len(),
            removed.len()
        )),
        "{table:?}"
    );
    let repriced_table = env
        .run(&["changes", "--since-sync", "1", "--kind", "changed", "--limit", "5000"])
        .await;
    assert!(
        repriced_table.stdout.contains("openrouter/google/gemma-3n-e4b-it")
            && repriced_table.stdout.contains("input $/M 0 → 0.02")
            && repriced_table
                .stdout
                .contains("[HOLD: input_price_per_mtok went from 0 to 0.02"),
        "{repriced_table:?}"
    );
    let history = env
        .run(&[
            "history",
            "--source",
            "models_dev",
            "--provider",
            "openrouter",
            "google/gemma-3n-e4b-it",
        ])
        .await;
    assert_eq!(history.code, 0, "{history:?}");
    assert!(history.stdout.contains("price timeline"), "{history:?}");
    assert!(history.stdout.contains("input 0  output 0"), "{history:?}");
    assert!(history.stdout.contains("input 0.02  output 0.04"), "{history:?}");
}

#[tokio::test]
async fn a_models_dev_snapshot_that_lacks_too_much_holds_its_removals() {
    let db = TestDb::create().await;
    sync_models_dev_pair(&db, None).await;
    let changes = changes_of(&db, 2).await;
    assert!(!changes.contains_key("removed"), "{changes:?}");
    assert!(changes.contains_key("added") && changes.contains_key("changed"));
    assert!(
        db.scalar::<bool>("SELECT removals_held FROM model_sync_sources WHERE sync_id = 2 AND source = 'models_dev'")
            .await
    );
    // The snapshot is what was fetched; the catalog keeps every model of the older snapshot.
    let new = models_dev_records("modelsdev_api.json");
    assert_eq!(snapshot(&db, 2, "models_dev").await.len(), new.len());
    let old = models_dev_records("modelsdev_api_2025-11.json");
    let current = db
        .count("SELECT count(*) FROM model_versions WHERE source = 'models_dev' AND valid_to_sync IS NULL")
        .await;
    let union: BTreeSet<&Key> = old.keys().chain(new.keys()).collect();
    assert_eq!(current, union.len() as i64);
}
