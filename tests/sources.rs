//! The sources as they are in late 2026 (DESIGN.md §9), through the real binary against a real
//! PostgreSQL and `common/api_server.rs`, which serves the recorded payloads at the APIs' own
//! paths: Artificial Analysis' paged endpoint and its retired one (410), OpenRouter's paged
//! list and its total, next links that lead off-origin, exact long-context tiers, statuses and
//! expiry dates, the schema drift alarm (and the migration that backfills it), and the health
//! rule per source.

mod common;

use std::collections::BTreeSet;

use common::api_server::{ApiServer, Variant};
use common::{fixture_records, read_fixture, BinaryEnv, RunOutput, TestDb};
use serde_json::{json, Value};

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];

/// Every source at `api`, all enabled (Artificial Analysis with a test key).
async fn start(variant: Variant) -> (TestDb, ApiServer, BinaryEnv) {
    let db = TestDb::create().await;
    let api = ApiServer::start(variant).await;
    let env = BinaryEnv::with_base_url(&db, &api.base_url());
    (db, api, env)
}

/// `env` with every source but `keep` disabled.
fn only(mut env: BinaryEnv, keep: &[&str]) -> BinaryEnv {
    for source in SOURCES.into_iter().filter(|source| !keep.contains(source)) {
        env = env.source(source, "enabled", "false");
    }
    env
}

/// One source's row of `model_sync_sources`, with the rows it really stored.
#[derive(Debug)]
struct SourceRow {
    status: String,
    http_requests: i64,
    error: String,
    rows: i64,
    new_fields: Option<Vec<String>>,
}

async fn source_row(db: &TestDb, sync_id: i64, source: &str) -> SourceRow {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT status, coalesce(http_requests, 0), coalesce(error, ''), new_fields,
                    (SELECT count(*) FROM model_snapshots m WHERE m.sync_id = s.sync_id AND m.source = s.source)
               FROM model_sync_sources s WHERE sync_id = $1 AND source = $2",
            &[&sync_id, &source],
        )
        .await
        .unwrap_or_else(|error| panic!("the row of {source} in sync {sync_id}: {error}"));
    SourceRow {
        status: row.get(0),
        http_requests: row.get(1),
        error: row.get(2),
        new_fields: row.get(3),
        rows: row.get(4),
    }
}

fn assert_exit(run: &RunOutput, code: i32) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}

#[tokio::test]
async fn artificial_analysis_is_read_page_by_page_at_its_new_endpoint() {
    let (db, api, env) = start(Variant::default()).await;
    let run = only(env, &["artificial_analysis"]).run(&["sync"]).await;
    assert_exit(&run, 0);
    assert_eq!(api.requests("/api/v2/language/models/free"), 2, "one request a page");
    assert_eq!(api.requests("/api/v2/data/llms/models"), 0);
    let row = source_row(&db, 1, "artificial_analysis").await;
    assert_eq!(
        (row.status.as_str(), row.http_requests, row.rows),
        ("success", 2, fixture_records("artificial_analysis")),
        "{row:?}"
    );
    // The page's index version is on every row: scores of other versions are not comparable.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM model_snapshots WHERE source = 'artificial_analysis'
                AND intelligence_index_version = '4.3'"
        )
        .await,
        12
    );
    let second_page = db
        .text(
            "SELECT provider || ' ' || input_price_per_mtok::text || ' ' || intelligence_index::text
               FROM model_snapshots WHERE model_id = 'dbe7c625-3100-4463-b479-a228c41f75dd'",
        )
        .await;
    assert_eq!(second_page, "deepseek 0.3 39.5");
}

#[tokio::test]
async fn the_retired_artificial_analysis_endpoint_fails_at_once_and_names_the_path_setting() {
    let (db, api, env) = start(Variant::default()).await;
    let env = only(env, &["artificial_analysis", "models_dev"]).source(
        "artificial_analysis",
        "path",
        "/api/v2/data/llms/models",
    );
    let run = env.run(&["sync"]).await;
    assert_exit(&run, 1);
    assert_eq!(api.requests("/api/v2/data/llms/models"), 1, "410 is never retried");
    let row = source_row(&db, 1, "artificial_analysis").await;
    assert_eq!(
        (row.status.as_str(), row.http_requests, row.rows),
        ("failed", 1, 0),
        "{row:?}"
    );
    for words in ["HTTP 410 Gone", "retired", "sources.artificial_analysis.path"] {
        assert!(row.error.contains(words), "the error does not say {words:?}: {row:?}");
    }
    assert_eq!(source_row(&db, 1, "models_dev").await.status, "success");
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 1").await, "partial");
}

#[tokio::test]
async fn openrouter_pages_are_followed_and_tiers_and_expiry_are_stored_exactly() {
    let overrides = json!([
        {"utc_start": 100, "utc_end": 400, "prompt": "0.000001", "completion": "0.000003"},
        {"min_prompt_tokens": 272000, "prompt": "0.000005", "completion": "0.0000225", "input_cache_read": "0.0000005"}
    ]);
    let (db, api, env) = start(Variant {
        openrouter_overrides: Some(("openai/gpt-5.4".into(), overrides)),
        ..Variant::default()
    })
    .await;
    let run = only(env, &["openrouter"]).run(&["sync"]).await;
    assert_exit(&run, 0);
    assert_eq!(api.requests("/api/v1/models"), 2);
    let row = source_row(&db, 1, "openrouter").await;
    assert_eq!(
        (row.status.as_str(), row.http_requests, row.rows),
        ("success", 2, fixture_records("openrouter")),
        "{row:?}"
    );
    // Per-token strings times a million, exactly; the time-of-day window is not a tier.
    let tiers = db
        .text("SELECT price_tiers::text FROM model_snapshots WHERE model_id = 'openai/gpt-5.4'")
        .await;
    assert_eq!(
        tiers,
        r#"[{"input": "5", "output": "22.5", "cache_read": "0.5", "min_context_tokens": 272000}]"#
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots WHERE price_tiers IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        db.text("SELECT expires_on::text FROM model_snapshots WHERE model_id = 'x-ai/grok-4'")
            .await,
        "2026-05-15"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots WHERE expires_on IS NOT NULL")
            .await,
        11
    );
}

#[tokio::test]
async fn an_openrouter_listing_whose_total_does_not_match_fails_as_incomplete() {
    let (db, api, env) = start(Variant {
        openrouter_total: Some(365),
        ..Variant::default()
    })
    .await;
    let run = only(env, &["openrouter", "models_dev"]).run(&["sync"]).await;
    assert_exit(&run, 1);
    assert_eq!(api.requests("/api/v1/models"), 2);
    let row = source_row(&db, 1, "openrouter").await;
    assert_eq!((row.status.as_str(), row.http_requests), ("failed", 2), "{row:?}");
    assert!(
        row.error
            .contains("the listing is incomplete: it states 365 records (totalCount) but 364 were fetched"),
        "{row:?}"
    );
    // The last page is never stored as if the listing were whole.
    assert!(row.rows <= 200, "{row:?}");
    assert_eq!(source_row(&db, 1, "models_dev").await.status, "success");
}

#[tokio::test]
async fn next_pages_on_another_origin_fail_their_source_and_no_credential_leaves() {
    let (db, api, env) = start(Variant {
        next_elsewhere: true,
        ..Variant::default()
    })
    .await;
    let keys = [
        ("HF_TOKEN", "hf_fault_test_secret_token"),
        ("OPENROUTER_API_KEY", "sk-or-v1-fault-test-secret"),
        ("ARTIFICIAL_ANALYSIS_API_KEY", "aa-fault-test-secret"),
    ];
    let mut env = env;
    for (name, value) in keys {
        env = env.set(name, value);
    }
    let run = env.run(&["sync"]).await;
    assert_exit(&run, 1);
    assert_eq!(
        api.elsewhere_requests(),
        (0, 0),
        "the other origin was asked (requests, with a credential)"
    );
    // Hugging Face's `Link` and OpenRouter's `links.next`: refused before any request.
    for source in ["huggingface", "openrouter"] {
        let row = source_row(&db, 1, source).await;
        assert_eq!(
            (row.status.as_str(), row.http_requests),
            ("failed", 1),
            "{source}: {row:?}"
        );
        assert!(row.error.contains("is on another origin than"), "{source}: {row:?}");
        assert!(row.error.contains("no credential leaves"), "{source}: {row:?}");
    }
    // Artificial Analysis builds its page URLs itself; its second page redirected elsewhere.
    let row = source_row(&db, 1, "artificial_analysis").await;
    assert_eq!((row.status.as_str(), row.http_requests), ("failed", 2), "{row:?}");
    assert!(row.error.contains("redirect to another host"), "{row:?}");
    assert_eq!(source_row(&db, 1, "models_dev").await.status, "success");
    for (_, value) in keys {
        assert!(
            !run.stdout.contains(value) && !run.stderr.contains(value),
            "{value} leaked: {run:?}"
        );
        let errors = db
            .count(&format!(
                "SELECT count(*) FROM model_sync_sources WHERE error LIKE '%{value}%'"
            ))
            .await;
        assert_eq!(errors, 0, "{value} is in an error");
    }
}

#[tokio::test]
async fn models_dev_tiers_and_statuses_are_stored_exactly() {
    let (db, _api, env) = start(Variant::default()).await;
    let run = only(env, &["models_dev"]).run(&["sync"]).await;
    assert_exit(&run, 0);
    let tiers = db
        .text(
            "SELECT price_tiers::text FROM model_snapshots
              WHERE provider = 'aihubmix' AND model_id = 'claude-opus-4-6'",
        )
        .await;
    assert_eq!(
        tiers,
        r#"[{"input": "6", "output": "22", "cache_read": "0.6", "cache_write": "7.5", "min_context_tokens": 200000}]"#
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots WHERE price_tiers IS NOT NULL")
            .await,
        64
    );
    // Exact numerics read back from the JSON strings.
    assert_eq!(
        db.text(
            "SELECT ((price_tiers->0->>'output')::numeric * 2)::text FROM model_snapshots
              WHERE provider = 'aihubmix' AND model_id = 'claude-sonnet-4-6'"
        )
        .await,
        "45.0"
    );
    let statuses = db
        .text("SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM (SELECT status, count(*) AS n FROM model_snapshots WHERE status IS NOT NULL GROUP BY status) s")
        .await;
    assert_eq!(statuses, "beta=3 deprecated=19");
}

/// The top-level keys of every models.dev model entry in a fixture.
fn models_dev_keys(fixture: &str) -> BTreeSet<String> {
    let document: Value = serde_json::from_slice(&read_fixture(fixture)).unwrap();
    document
        .as_object()
        .unwrap()
        .values()
        .filter_map(|provider| provider["models"].as_object())
        .flat_map(|models| models.values())
        .filter_map(Value::as_object)
        .flat_map(|record| record.keys().cloned())
        .collect()
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|item| item.to_string()).collect())
}

#[tokio::test]
async fn record_keys_no_earlier_sync_stored_are_reported_once_as_new_fields() {
    let (db, api, env) = start(Variant {
        models_dev: "modelsdev_api_2025-11.json",
        ..Variant::default()
    })
    .await;

    // The first sync of each source in a database is its baseline: keys recorded, none new.
    let baseline = env.run(&["sync"]).await;
    assert_exit(&baseline, 0);
    for source in SOURCES {
        assert_eq!(source_row(&db, 1, source).await.new_fields, strings(&[]), "{source}");
    }

    // models.dev four months later (real drift), and OpenRouter records with two new keys.
    api.set(Variant {
        openrouter_extra_keys: vec![
            ("zz_routing_hint".into(), json!("fast")),
            ("moderation".into(), json!({"flagged": false})),
        ],
        ..Variant::default()
    });
    let drifted = env.run(&["sync", "--json"]).await;
    assert_exit(&drifted, 0);
    let expected_models_dev: Vec<String> = models_dev_keys("modelsdev_api.json")
        .difference(&models_dev_keys("modelsdev_api_2025-11.json"))
        .cloned()
        .collect();
    assert!(!expected_models_dev.is_empty(), "the two recordings differ in keys");
    assert_eq!(
        source_row(&db, 2, "models_dev").await.new_fields,
        Some(expected_models_dev)
    );
    assert_eq!(
        source_row(&db, 2, "openrouter").await.new_fields,
        strings(&["moderation", "zz_routing_hint"])
    );
    for source in ["huggingface", "artificial_analysis"] {
        assert_eq!(source_row(&db, 2, source).await.new_fields, strings(&[]), "{source}");
    }
    let report: Value = serde_json::from_str(&drifted.stdout).unwrap_or_else(|e| panic!("{e}: {drifted:?}"));
    let openrouter = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|source| source["source"] == "openrouter")
        .unwrap()
        .clone();
    assert_eq!(openrouter["new_fields"], json!(["moderation", "zz_routing_hint"]));
    let logged = |run: &RunOutput| {
        run.stderr
            .lines()
            .filter(|line| line.contains("keys no earlier sync stored") && line.contains("openrouter"))
            .count()
    };
    assert_eq!(logged(&drifted), 1, "logged once: {drifted:?}");

    // Seen before now: nothing new, nothing logged.
    let again = env.run(&["sync"]).await;
    assert_exit(&again, 0);
    for source in SOURCES {
        assert_eq!(source_row(&db, 3, source).await.new_fields, strings(&[]), "{source}");
    }
    assert_eq!(logged(&again), 0, "{again:?}");
    assert!(!again.stdout.contains("new record fields"), "{again:?}");
}

#[tokio::test]
async fn the_drift_migration_backfills_an_upgraded_database_so_its_next_sync_is_no_baseline() {
    let (db, api, env) = start(Variant::default()).await;
    let first = env.run(&["sync"]).await;
    assert_exit(&first, 0);
    // The database as the previous release left it: data, migrations up to 0003.
    db.client()
        .await
        .batch_execute(
            "DROP TABLE model_source_fields;
             DELETE FROM model_lens_migrations WHERE version = 4;
             UPDATE model_sync_sources SET new_fields = NULL;",
        )
        .await
        .expect("roll the database back to 0003");
    let snapshots = db.count("SELECT count(*) FROM model_snapshots").await;

    let migrated = env.run(&["migrate"]).await;
    assert_exit(&migrated, 0);
    assert!(
        migrated.stdout.contains("applied 0004_source_fields.sql"),
        "{migrated:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM model_snapshots").await,
        snapshots,
        "nothing lost"
    );
    // Exactly the keys the snapshots hold, each with the sync that stored it first.
    let missing_or_extra = db
        .count(
            "SELECT count(*) FROM (
                (SELECT DISTINCT source, jsonb_object_keys(data) FROM model_snapshots
                 EXCEPT SELECT source, field FROM model_source_fields)
                UNION ALL
                (SELECT source, field FROM model_source_fields
                 EXCEPT SELECT DISTINCT source, jsonb_object_keys(data) FROM model_snapshots)) d",
        )
        .await;
    assert_eq!(missing_or_extra, 0);
    assert_eq!(
        db.count("SELECT count(DISTINCT source) FROM model_source_fields WHERE first_sync_id = 1")
            .await,
        4
    );

    // The next sync compares with the backfilled keys: only the really new key is reported.
    api.set(Variant {
        openrouter_extra_keys: vec![("zz_new".into(), json!(1))],
        ..Variant::default()
    });
    let next = env.run(&["sync"]).await;
    assert_exit(&next, 0);
    assert_eq!(source_row(&db, 2, "openrouter").await.new_fields, strings(&["zz_new"]));
    assert_eq!(source_row(&db, 2, "models_dev").await.new_fields, strings(&[]));
}

#[tokio::test]
async fn health_names_an_enabled_source_that_has_not_succeeded_within_the_age_limit() {
    let (db, _api, env) = start(Variant::default()).await;
    let first = env.run(&["sync"]).await;
    assert_exit(&first, 0);
    db.client()
        .await
        .batch_execute("UPDATE model_syncs SET finished_at = now() - interval '49 hours' WHERE id = 1")
        .await
        .unwrap();
    // Hugging Face fails from now on; the others keep succeeding, so the sync is partial.
    let failing = env.clone().source("huggingface", "path", "/api/moved");
    let partial = failing.run(&["sync"]).await;
    assert_exit(&partial, 1);
    let error = source_row(&db, 2, "huggingface").await.error;
    assert!(
        error.contains("HTTP 404 Not Found: check sources.huggingface.base_url and sources.huggingface.path"),
        "{error}"
    );

    let health = env.run(&["health", "--json"]).await;
    assert_exit(&health, 1);
    let report: Value = serde_json::from_str(&health.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "source_freshness")
        .unwrap_or_else(|| panic!("a source_freshness check: {report}"))
        .clone();
    assert_eq!(check["ok"], false, "{check}");
    let message = check["message"].as_str().unwrap();
    assert!(
        message.starts_with("huggingface last succeeded 49.0 h ago") && message.ends_with("(maximum 25 h)"),
        "{message}"
    );
    assert_eq!(report["sources"].as_array().unwrap().len(), 4, "{report}");

    // Artificial Analysis without a key is not enabled: it is not expected to succeed.
    let without_key = env
        .clone()
        .unset("ARTIFICIAL_ANALYSIS_API_KEY")
        .run(&["health", "--json"])
        .await;
    let report: Value = serde_json::from_str(&without_key.stdout).unwrap();
    let listed: Vec<&str> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|source| source["source"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["models_dev", "openrouter", "huggingface"]);
}
