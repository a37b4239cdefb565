//! The current catalog as applications read it (DESIGN.md §10), through the real binary:
//! `models` (the same query as `GET /api/models`) after real syncs of the recorded payloads,
//! and one-source syncs (`sync --source`). The assertions are about behaviour (filters, sorts,
//! cursors, exact prices, NULLs last, which sync a row comes from), not about storage.

mod common;

use std::collections::HashSet;

use common::current_catalog::assert_catalog_is_snapshot;
use common::{fixture_records, BinaryEnv, FixtureServer, TestDb};
use rust_decimal::Decimal;
use serde_json::Value;

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];

/// `models --json` with these arguments; must exit 0.
async fn models(env: &BinaryEnv, args: &[&str]) -> Value {
    let mut all = vec!["models", "--json"];
    all.extend_from_slice(args);
    let run = env.run(&all).await;
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

/// Every page of a listing, following `next_after`; fails on a repeated cursor.
async fn walk(env: &BinaryEnv, args: &[&str]) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    let mut cursors = HashSet::new();
    loop {
        let mut page_args: Vec<&str> = args.to_vec();
        if let Some(cursor) = &after {
            page_args.extend(["--after", cursor.as_str()]);
        }
        let page = models(env, &page_args).await;
        rows.extend(page["models"].as_array().expect("a models array").iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => {
                assert!(cursors.insert(next.to_string()), "cursor {next} came twice");
                after = Some(next.to_string());
            }
            None => return rows,
        }
    }
}

fn key(row: &Value) -> (String, String, String) {
    let text = |name: &str| row[name].as_str().expect("key parts are strings").to_string();
    (text("source"), text("provider"), text("model_id"))
}

fn decimal(row: &Value, column: &str) -> Option<Decimal> {
    match &row[column] {
        Value::Null => None,
        Value::String(text) => Some(text.parse().unwrap_or_else(|e| panic!("{column} {text:?}: {e}"))),
        Value::Number(number) => Some(number.to_string().parse().expect("an integer")),
        other => panic!("{column} is {other}"),
    }
}

/// Rows are in `column` order (`descending` or not), every NULL after every value, no key twice.
fn assert_sorted(rows: &[Value], column: &str, descending: bool) {
    let keys: HashSet<_> = rows.iter().map(key).collect();
    assert_eq!(keys.len(), rows.len(), "a model appears twice");
    let values: Vec<Option<Decimal>> = rows.iter().map(|row| decimal(row, column)).collect();
    let first_null = values.iter().position(Option::is_none).unwrap_or(values.len());
    assert!(
        values[first_null..].iter().all(Option::is_none),
        "{column}: a value after a NULL"
    );
    for pair in values[..first_null].windows(2) {
        let (a, b) = (pair[0].unwrap(), pair[1].unwrap());
        assert!(if descending { a >= b } else { a <= b }, "{column}: {a} then {b}");
    }
}

#[tokio::test]
async fn the_catalog_filters_sorts_and_pages_exactly() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let sync = env.run(&["sync"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let total: i64 = SOURCES.iter().map(|source| fixture_records(source)).sum();

    // Prices by cheapest first across every source: one walk of big pages, NULLs last.
    let by_price = walk(&env, &["--sort", "input_price", "--limit", "1000"]).await;
    assert_eq!(by_price.len() as i64, total, "every current model, once");
    assert_sorted(&by_price, "input_price_per_mtok", false);
    assert!(by_price.last().unwrap()["input_price_per_mtok"].is_null());

    // Small pages cut through runs of equal prices (many are 0): the cursor must neither skip
    // nor repeat a model, so the walk equals one big page.
    let openrouter_big = models(
        &env,
        &["--source", "openrouter", "--sort", "input_price", "--limit", "1000"],
    )
    .await;
    let openrouter_big = openrouter_big["models"].as_array().unwrap().clone();
    assert_eq!(openrouter_big.len() as i64, fixture_records("openrouter"));
    let openrouter_small = walk(
        &env,
        &["--source", "openrouter", "--sort", "input_price", "--limit", "23"],
    )
    .await;
    assert_eq!(
        openrouter_small.iter().map(key).collect::<Vec<_>>(),
        openrouter_big.iter().map(key).collect::<Vec<_>>()
    );
    // "-1" (variable) prices are NULL and come last, also in descending order.
    let variable = openrouter_big
        .iter()
        .filter(|row| row["input_price_per_mtok"].is_null())
        .count();
    assert_eq!(variable, 3);
    let reversed = ["--source", "openrouter", "--sort", "input_price", "--order", "desc"];
    let descending = walk(&env, &[&reversed[..], &["--limit", "50"]].concat()).await;
    assert_sorted(&descending, "input_price_per_mtok", true);
    assert!(descending[descending.len() - 3..]
        .iter()
        .all(|row| row["input_price_per_mtok"].is_null()));
    let descending_whole = models(&env, &[&reversed[..], &["--limit", "1000"]].concat()).await;
    assert_eq!(
        descending.iter().map(key).collect::<Vec<_>>(),
        descending_whole["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(key)
            .collect::<Vec<_>>(),
        "reversed order: ties in the same direction, across pages"
    );
    // The key order, both ways, across sources.
    let by_key = walk(&env, &["--limit", "1000"]).await;
    assert_eq!(by_key.len() as i64, total);
    let keys: Vec<_> = by_key.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "the default order is the model key");
    let mut reversed: Vec<_> = walk(&env, &["--order", "desc", "--limit", "999"])
        .await
        .iter()
        .map(key)
        .collect();
    reversed.reverse();
    assert_eq!(reversed, keys);

    // Downloads, biggest first: Hugging Face's counts, then the sources that have none.
    let by_downloads = walk(&env, &["--sort", "downloads", "--limit", "1000"]).await;
    assert_eq!(by_downloads.len() as i64, total);
    assert_sorted(&by_downloads, "downloads", true);
    let with_downloads = by_downloads.iter().filter(|row| !row["downloads"].is_null()).count();
    assert_eq!(with_downloads as i64, fixture_records("huggingface"));
    assert!(by_downloads[..with_downloads]
        .iter()
        .all(|row| row["source"] == "huggingface"));

    // The other sort keys, in their natural and overridden orders.
    let by_context = walk(
        &env,
        &["--source", "models_dev", "--sort", "context_length", "--limit", "1000"],
    )
    .await;
    assert_sorted(&by_context, "context_length", true);
    let by_context_asc = models(&env, &["--sort", "context_length", "--order", "asc", "--limit", "1000"]).await;
    assert_sorted(by_context_asc["models"].as_array().unwrap(), "context_length", false);
    let by_index = models(&env, &["--sort", "intelligence_index", "--limit", "20"]).await;
    let by_index = by_index["models"].as_array().unwrap();
    assert_sorted(by_index, "intelligence_index", true);
    assert_eq!(by_index[0]["source"], "artificial_analysis", "only AA has the index");
    let by_output = walk(
        &env,
        &["--source", "models_dev", "--sort", "output_price", "--limit", "1000"],
    )
    .await;
    assert_sorted(&by_output, "output_price_per_mtok", false);

    // Exact money, as decimal strings: OpenRouter's per-token strings times a million.
    let opus = by_price
        .iter()
        .find(|row| row["source"] == "openrouter" && row["model_id"] == "anthropic/claude-opus-4.7-fast")
        .expect("the model is in the catalog");
    assert_eq!(opus["input_price_per_mtok"], "30");
    assert_eq!(opus["output_price_per_mtok"], "150");
    assert_eq!(opus["cache_read_price_per_mtok"], "3");
    assert_eq!(opus["cache_write_price_per_mtok"], "37.5");
    assert_eq!(opus["provider"], "anthropic");
    assert_eq!(opus["sync_id"], 1);
    let minimax = by_price
        .iter()
        .find(|row| row["source"] == "models_dev" && row["provider"] == "302ai" && row["model_id"] == "MiniMax-M1")
        .unwrap();
    assert_eq!(
        (&minimax["input_price_per_mtok"], &minimax["output_price_per_mtok"]),
        (&Value::from("0.132"), &Value::from("1.254"))
    );
    let index = by_index
        .iter()
        .find(|row| row["model_id"] == "49e70a38-4ac1-4659-b490-09b2c7ff21d6");
    if let Some(index) = index {
        assert_eq!(index["intelligence_index"], "5.1");
    }

    // Filters: source, exact provider, a case-insensitive substring of the id or the name.
    let anthropic = walk(
        &env,
        &["--source", "openrouter", "--provider", "anthropic", "--limit", "1000"],
    )
    .await;
    assert!(!anthropic.is_empty());
    assert!(anthropic
        .iter()
        .all(|row| row["source"] == "openrouter" && row["provider"] == "anthropic"));
    let expected = openrouter_big
        .iter()
        .filter(|row| row["provider"] == "anthropic")
        .count();
    assert_eq!(anthropic.len(), expected);
    let claude = walk(&env, &["-q", "CLAUDE", "--limit", "1000"]).await;
    assert!(claude.len() > 10, "{}", claude.len());
    assert!(claude.iter().all(|row| {
        let text = format!("{} {}", row["model_id"], row["name"]).to_lowercase();
        text.contains("claude")
    }));
    let literal = models(&env, &["-q", "%", "--limit", "5"]).await;
    for row in literal["models"].as_array().unwrap() {
        assert!(
            format!("{} {}", row["model_id"], row["name"]).contains('%'),
            "`%` is literal: {row}"
        );
    }

    // Bad requests are clear errors, not empty pages.
    for (args, expected) in [
        (
            vec!["models", "--source", "hf"],
            "valid sources: models_dev, openrouter, huggingface, artificial_analysis",
        ),
        (vec!["models", "--sort", "price"], "input_price"),
        (vec!["models", "--limit", "0"], "limit must be between 1 and 1000"),
        (vec!["models", "--after", "garbage"], "cursor"),
    ] {
        let run = env.run(&args).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(expected), "{expected:?} not in {run:?}");
    }
    let cursor = models(&env, &["--sort", "downloads", "--limit", "1"]).await;
    let cursor = cursor["next_after"].as_str().unwrap();
    let mismatch = env.run(&["models", "--sort", "input_price", "--after", cursor]).await;
    assert_eq!(mismatch.code, 2, "{mismatch:?}");
    assert!(mismatch.stderr.contains("sort=downloads"), "{mismatch:?}");

    // The readable table: a header, one line per model, and how to get the next page.
    let table = env
        .run(&[
            "models",
            "--source",
            "openrouter",
            "--sort",
            "input_price",
            "--limit",
            "3",
        ])
        .await;
    assert_eq!(table.code, 0, "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{table:?}");
    assert!(
        lines[0].starts_with("source") && lines[0].contains("input $/M"),
        "{table:?}"
    );
    assert!(lines[4].starts_with("3 models; more with --after "), "{table:?}");
}

#[tokio::test]
async fn one_source_syncs_alone_and_the_others_keep_their_catalog() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let ok = BinaryEnv::new(&db, &server);
    // Hugging Face fails in the first sync (partial)…
    let broken = ok
        .clone()
        .source("huggingface", "base_url", &server.base_url("status500"));
    let first = broken.run(&["sync"]).await;
    assert_eq!(first.code, 1, "{first:?}");
    // …and is retried alone.
    let retry = ok.run(&["sync", "--source", "huggingface"]).await;
    assert_eq!(retry.code, 0, "{retry:?}");
    let statuses = db
        .text(
            "SELECT string_agg(source || '=' || status, ' ' ORDER BY source) FROM model_sync_sources WHERE sync_id = 2",
        )
        .await;
    assert_eq!(
        statuses,
        "artificial_analysis=skipped huggingface=success models_dev=skipped openrouter=skipped"
    );
    let reason = db
        .text("SELECT error FROM model_sync_sources WHERE sync_id = 2 AND source = 'models_dev'")
        .await;
    assert!(reason.contains("not selected"), "{reason}");
    // Skipped like a disabled source: no drift baseline computed, nothing counted.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM model_sync_sources WHERE sync_id = 2 AND status = 'skipped'
               AND new_fields IS NULL AND models_stored = 0"
        )
        .await,
        3
    );
    assert_eq!(db.text("SELECT status FROM model_syncs WHERE id = 2").await, "success");
    // Nothing of the skipped sources was fetched again: no version, no series point, nothing
    // counted, and their snapshot at sync 2 is their state of sync 1.
    assert_eq!(
        db.count(
            "SELECT (SELECT count(*) FROM model_versions WHERE source <> 'huggingface'
                        AND (valid_from_sync = 2 OR valid_to_sync = 2))
                  + (SELECT count(*) FROM model_volatile_series WHERE sync_id = 2)
                  + (SELECT sum(snapshot_rows)::bigint FROM model_sync_sources
                      WHERE sync_id = 2 AND source <> 'huggingface')"
        )
        .await,
        0
    );
    for source in SOURCES.iter().filter(|source| **source != "huggingface") {
        assert_eq!(
            assert_catalog_is_snapshot(&db, 2, source).await,
            assert_catalog_is_snapshot(&db, 1, source).await,
            "{source}"
        );
    }
    assert_eq!(
        db.count("SELECT models_stored FROM model_syncs WHERE id = 2").await,
        fixture_records("huggingface")
    );

    // The catalog: the skipped sources as of sync 1, Hugging Face as of sync 2.
    for source in SOURCES {
        let rows = walk(&ok, &["--source", source, "--limit", "1000"]).await;
        assert_eq!(rows.len() as i64, fixture_records(source), "{source}");
        let expected_sync = if source == "huggingface" { 2 } else { 1 };
        assert!(rows.iter().all(|row| row["sync_id"] == expected_sync), "{source}");
    }

    // Several sources at once, repeated or comma-separated.
    let two = ok
        .run(&[
            "sync",
            "--source",
            "openrouter",
            "--source",
            "artificial_analysis,openrouter",
        ])
        .await;
    assert_eq!(two.code, 0, "{two:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM model_sync_sources WHERE sync_id = 3 AND status = 'success'")
            .await,
        2
    );
    // A wrong name says which are valid, and starts nothing.
    let wrong = ok.run(&["sync", "--source", "hugginface"]).await;
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(
        wrong.stderr.contains(
            "unknown source \"hugginface\"; valid sources: models_dev, openrouter, huggingface, artificial_analysis"
        ),
        "{wrong:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 3);

    // Health looks at the whole catalog, not at the small last sync.
    let health = ok.run(&["health", "--json"]).await;
    let report: Value = serde_json::from_str(&health.stdout).unwrap();
    let models_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "models_stored")
        .unwrap();
    assert_eq!(models_check["ok"], true, "{report}");
}

#[tokio::test]
async fn the_catalog_migration_runs_on_a_database_that_holds_history() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    assert_eq!(env.run(&["sync"]).await.code, 0);
    let before = walk(&env, &["--sort", "downloads", "--limit", "1000"]).await;
    // As if the database came from the release before the catalog: history's tables full, no
    // catalog view, columns or indexes, 0007 not applied.
    db.client()
        .await
        .batch_execute(
            "DELETE FROM model_lens_migrations WHERE version = 7;
             DROP VIEW model_catalog;
             DROP INDEX model_versions_catalog_key, model_versions_catalog_input_price,
                 model_versions_catalog_output_price, model_versions_catalog_context_length,
                 model_versions_catalog_intelligence_index, model_keys_catalog_downloads;
             ALTER TABLE model_keys DROP COLUMN downloads, DROP COLUMN likes;",
        )
        .await
        .unwrap();
    let migrate = env.run(&["migrate"]).await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert!(
        migrate.stdout.contains("applied 0007_catalog_indexes.sql"),
        "{migrate:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'model_%_catalog_%'")
            .await,
        6
    );
    // The backfilled volatile values give the same catalog, in the same order.
    let after = walk(&env, &["--sort", "downloads", "--limit", "1000"]).await;
    assert_eq!(
        after.len() as i64,
        SOURCES.iter().map(|s| fixture_records(s)).sum::<i64>()
    );
    assert_eq!(after, before);
    for source in SOURCES {
        assert_catalog_is_snapshot(&db, 1, source).await;
    }
    // The downloads order reads the catalog from model_keys first, the others from the
    // versions: the same rows, value for value.
    let mut by_downloads = after;
    by_downloads.sort_by_key(key);
    assert_eq!(by_downloads, walk(&env, &["--limit", "1000"]).await);
}

#[tokio::test]
async fn readiness_wants_every_migration() {
    use model_lens_sync::config::DatabaseConfig;
    use model_lens_sync::store::{connect_pool, migrations};

    // Migration numbers are reserved per feature and may land out of order: a database holding
    // a later migration but missing an earlier one is not up to date.
    let db = TestDb::create().await;
    let database = connect_pool(&db.url, &DatabaseConfig::default()).unwrap();
    migrations::migrate(&database).await.unwrap();
    assert!(migrations::is_up_to_date(&database).await.unwrap());
    db.client()
        .await
        .batch_execute("DELETE FROM model_lens_migrations WHERE version = 4")
        .await
        .unwrap();
    assert!(!migrations::is_up_to_date(&database).await.unwrap());
}
