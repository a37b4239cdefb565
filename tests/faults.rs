//! Fault injection: the real binary syncs with one source pointed at the hostile server of
//! `common/evil_server.rs` and the others at the fixture server. After every fault the same
//! invariants hold (see [`assert_invariants`]): the process exits on its own with the exit code
//! of the sync's status, no row is stored twice, the bookkeeping matches the rows, and a sync is
//! `success` only when every source stored every record it was served. Then each test checks
//! the fault's own outcome: retried faults end in success with exact rows, the others fail their
//! source alone with an error that says what happened, and `http_requests` counts every attempt
//! the server saw. The table of faults is `docs/faults.md`.

mod common;

use std::time::{Duration, Instant};

use common::evil_server::{EvilServer, Origin, STORM_LENGTH};
use common::{fixture_records, BinaryEnv, FixtureServer, RunOutput, TestDb};

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];

/// Every test runs one sync in a fresh database: its id is 1.
const SYNC: i64 = 1;

struct Harness {
    db: TestDb,
    evil: EvilServer,
    /// Every source on the fixture server; tests point one of them at `evil`.
    env: BinaryEnv,
    _fixtures: FixtureServer,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDb::create().await;
        let fixtures = FixtureServer::start().await;
        let evil = EvilServer::start().await;
        let env = BinaryEnv::new(&db, &fixtures).source("huggingface", "page_size", "1000");
        Harness {
            db,
            evil,
            env,
            _fixtures: fixtures,
        }
    }

    /// `source` served by the evil server in `mode`.
    fn faulty(&self, source: &str, mode: &str) -> BinaryEnv {
        self.env.clone().source(source, "base_url", &self.evil.base_url(mode))
    }
}

/// One source's row of `model_sync_sources`, and the rows it really has.
#[derive(Debug)]
struct SourceResult {
    status: String,
    rows: i64,
    fetched: i64,
    stored: i64,
    rejected: i64,
    http_requests: i64,
    error: Option<String>,
}

async fn source_result(db: &TestDb, source: &str) -> SourceResult {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT status, coalesce(models_fetched, 0), coalesce(models_stored, 0),
                    coalesce(models_rejected, 0), coalesce(http_requests, 0), error,
                    (SELECT count(*) FROM model_snapshots m WHERE m.sync_id = s.sync_id AND m.source = s.source)
               FROM model_sync_sources s WHERE sync_id = $1 AND source = $2",
            &[&SYNC, &source],
        )
        .await
        .unwrap_or_else(|error| panic!("the result of {source}: {error}"));
    SourceResult {
        status: row.get(0),
        fetched: row.get(1),
        stored: row.get(2),
        rejected: row.get(3),
        http_requests: row.get(4),
        error: row.get(5),
        rows: row.get(6),
    }
}

async fn sync_status(db: &TestDb) -> String {
    db.client()
        .await
        .query_one("SELECT status FROM model_syncs WHERE id = $1", &[&SYNC])
        .await
        .expect("the sync has a row")
        .get(0)
}

/// What holds after any fault; returns the sync's status.
async fn assert_invariants(db: &TestDb, run: &RunOutput) -> String {
    // The process survived the fault: it finished on its own with a sync exit code.
    assert!(
        (0..=2).contains(&run.code),
        "the process did not exit normally: {run:?}"
    );
    assert!(!run.stderr.contains("panicked"), "a panic: {run:?}");
    // One sync, finished, and the exit code says its status.
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 1);
    let status = sync_status(db).await;
    let expected_code = match status.as_str() {
        "success" => 0,
        "partial" => 1,
        _ => 2,
    };
    assert_eq!(run.code, expected_code, "sync {status}: {run:?}");
    // No row twice, whatever was retried or re-sent.
    let rows = db.count("SELECT count(*) FROM model_snapshots").await;
    let distinct = db
        .count("SELECT count(DISTINCT (sync_id, source, provider, model_id)) FROM model_snapshots")
        .await;
    assert_eq!(rows, distinct, "duplicate rows");
    // The bookkeeping is the database's truth.
    let mut stored = 0;
    for source in SOURCES {
        let result = source_result(db, source).await;
        assert!(
            ["success", "failed", "skipped"].contains(&result.status.as_str()),
            "{source} left {result:?}"
        );
        assert_eq!(result.stored, result.rows, "{source}: {result:?}");
        stored += result.stored;
        // No success with missing rows: a source that succeeded stored every record served.
        if result.status == "success" {
            assert_eq!(result.rows, fixture_records(source), "{source}: {result:?}");
            assert_eq!(
                (result.rejected, result.error.as_deref()),
                (0, None),
                "{source}: {result:?}"
            );
            assert!(result.http_requests > 0, "{source}: {result:?}");
        }
    }
    assert_eq!(rows, stored, "rows of sources that are not in the sync");
    assert_eq!(
        db.count(&format!("SELECT models_stored FROM model_syncs WHERE id = {SYNC}"))
            .await,
        stored
    );
    if status == "success" {
        let failed = db
            .count("SELECT count(*) FROM model_sync_sources WHERE status NOT IN ('success', 'skipped')")
            .await;
        assert_eq!(failed, 0, "a success with a failed source");
    }
    status
}

/// The source stored exactly the records it was served, after `http_requests` attempts.
async fn assert_stored_exactly(db: &TestDb, source: &str, http_requests: usize) -> SourceResult {
    let result = source_result(db, source).await;
    assert_eq!(result.status, "success", "{source}: {result:?}");
    assert_eq!(result.rows, fixture_records(source), "{source}: {result:?}");
    assert_eq!(result.fetched, result.rows, "{source}: {result:?}");
    assert_eq!(result.http_requests, http_requests as i64, "{source}: {result:?}");
    result
}

/// The source failed after `http_requests` attempts with an error that says each of `words`;
/// the other sources are stored whole and the sync is `partial`.
async fn assert_failed_alone(db: &TestDb, source: &str, http_requests: usize, words: &[&str]) -> SourceResult {
    let result = source_result(db, source).await;
    assert_eq!(result.status, "failed", "{source}: {result:?}");
    let error = result.error.as_deref().unwrap_or_default();
    for word in words {
        assert!(
            error.contains(word),
            "{source}: the error does not say {word:?}: {error}"
        );
    }
    // A clear error says each cause once ("a: b: b" is the noise of a wrapped error chain).
    let parts: Vec<&str> = error.split(": ").collect();
    assert!(
        parts.windows(2).all(|pair| pair[0] != pair[1]),
        "{source}: a cause is repeated: {error}"
    );
    assert_eq!(result.http_requests, http_requests as i64, "{source}: {result:?}");
    for other in SOURCES.into_iter().filter(|other| *other != source) {
        let other_result = source_result(db, other).await;
        assert_eq!(other_result.status, "success", "{other}: {other_result:?}");
        assert_eq!(other_result.rows, fixture_records(other), "{other}");
    }
    assert_eq!(sync_status(db).await, "partial");
    result
}

// Faults of the connection: retried, the page stored once.

#[tokio::test]
async fn a_connection_reset_mid_body_is_retried_and_every_page_is_stored_once() {
    let harness = Harness::start().await;
    // Five pages, each cut by a reset on its first request.
    let env = harness
        .faulty("huggingface", "reset-once")
        .source("huggingface", "page_size", "500");
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert_eq!(harness.evil.requests("reset-once"), 10);
    assert_stored_exactly(&harness.db, "huggingface", 10).await;
}

#[tokio::test]
async fn a_connection_closed_before_the_response_is_retried() {
    let harness = Harness::start().await;
    let run = harness.faulty("openrouter", "hangup-once").run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert_eq!(harness.evil.requests("hangup-once"), 2);
    assert_stored_exactly(&harness.db, "openrouter", 2).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_retried_not_stored_short() {
    let harness = Harness::start().await;
    let run = harness.faulty("models_dev", "short-length-once").run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert_eq!(harness.evil.requests("short-length-once"), 2);
    assert_stored_exactly(&harness.db, "models_dev", 2).await;
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_fails_the_source_as_invalid_json() {
    let harness = Harness::start().await;
    let run = harness.faulty("openrouter", "understated-length").run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("understated-length"), 1);
    let result = assert_failed_alone(&harness.db, "openrouter", 1, &["not valid JSON"]).await;
    assert_eq!(result.rows, 0, "nothing of a truncated page is stored");
}

#[tokio::test]
async fn a_trickling_body_times_out_within_bounded_time() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("openrouter", "trickle")
        .source("openrouter", "timeout_secs", "2")
        .source("openrouter", "read_timeout_secs", "1")
        .source("openrouter", "max_retries", "1");
    let started = Instant::now();
    let run = env.run(&["sync"]).await;
    let elapsed = started.elapsed();
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    // Two attempts of at most 2 s each, plus the other sources: far below a hang.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(harness.evil.requests("trickle"), 2);
    let result = assert_failed_alone(&harness.db, "openrouter", 2, &["after 2 attempts", "timed out"]).await;
    assert_eq!(result.rows, 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_bounded_time() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("models_dev", "silent")
        .source("models_dev", "timeout_secs", "2")
        .source("models_dev", "read_timeout_secs", "1")
        .source("models_dev", "max_retries", "1");
    let started = Instant::now();
    let run = env.run(&["sync"]).await;
    let elapsed = started.elapsed();
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(harness.evil.requests("silent"), 2);
    assert_failed_alone(&harness.db, "models_dev", 2, &["after 2 attempts", "timed out"]).await;
}

// Faults of the payload.

#[tokio::test]
async fn a_gzip_bomb_is_cut_at_max_response_bytes_after_decompression() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("openrouter", "gzip-bomb")
        .source("openrouter", "max_response_bytes", "8388608")
        // A well-behaved compressed response still works.
        .source("models_dev", "base_url", &harness.evil.base_url("gzip"));
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("gzip-bomb"), 1, "a bomb is not retried");
    let result = assert_failed_alone(
        &harness.db,
        "openrouter",
        1,
        &["more than 8388608 bytes", "max_response_bytes"],
    )
    .await;
    assert_eq!(result.rows, 0);
    assert_stored_exactly(&harness.db, "models_dev", 1).await;
}

// Faults of pagination.

#[tokio::test]
async fn endless_next_links_stop_at_max_pages() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("huggingface", "endless-next")
        .source("huggingface", "page_size", "10")
        .source("huggingface", "max_pages", "5");
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("endless-next"), 5);
    let result = assert_failed_alone(&harness.db, "huggingface", 5, &["more than 5 pages", "max_pages"]).await;
    // Pages committed before the stop may stay (they are whole); never more than was served.
    assert!(result.rows <= 50, "{result:?}");
}

#[tokio::test]
async fn a_next_link_back_to_a_fetched_page_is_a_loop_and_stops() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("huggingface", "repeat-next")
        .source("huggingface", "page_size", "10");
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    // Page 1, page 2, whose `next` is page 1: stopped without fetching page 1 again.
    assert_eq!(harness.evil.requests("repeat-next"), 2);
    let result = assert_failed_alone(&harness.db, "huggingface", 2, &["already fetched", "loop"]).await;
    assert!(result.rows <= 20, "{result:?}");
}

// Faults of rate limiting.

#[tokio::test]
async fn a_429_storm_with_retry_after_is_waited_out() {
    let harness = Harness::start().await;
    let started = Instant::now();
    let run = harness.faulty("openrouter", "storm429-after").run(&["sync"]).await;
    let elapsed = started.elapsed();
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert_eq!(harness.evil.requests("storm429-after"), STORM_LENGTH + 1);
    assert_stored_exactly(&harness.db, "openrouter", STORM_LENGTH + 1).await;
    // Three `Retry-After: 1` were honoured (API_RETRY_MS=10 alone would take milliseconds).
    assert!(
        elapsed >= Duration::from_secs(3),
        "Retry-After not honoured: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_429_storm_without_retry_after_backs_off_and_succeeds() {
    let harness = Harness::start().await;
    // Three pages, each refused three times.
    let run = harness.faulty("huggingface", "storm429").run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert_eq!(harness.evil.requests("storm429"), 3 * (STORM_LENGTH + 1));
    assert_stored_exactly(&harness.db, "huggingface", 3 * (STORM_LENGTH + 1)).await;
}

#[tokio::test]
async fn a_retry_after_of_a_day_is_capped_by_max_retry_after_secs() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("openrouter", "retry-after-day-once")
        .set("MODEL_LENS_API__MAX_RETRY_AFTER_SECS", "1");
    let started = Instant::now();
    let run = env.run(&["sync"]).await;
    let elapsed = started.elapsed();
    assert_eq!(assert_invariants(&harness.db, &run).await, "success", "{run:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert_stored_exactly(&harness.db, "openrouter", 2).await;
}

#[tokio::test]
async fn endless_429_gives_up_after_max_retries() {
    let harness = Harness::start().await;
    let env = harness
        .faulty("openrouter", "always429")
        .source("openrouter", "max_retries", "2");
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("always429"), 3);
    assert_failed_alone(&harness.db, "openrouter", 3, &["after 3 attempts", "HTTP 429"]).await;
}

// Faults of origin and authorization.

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_and_the_key_stays_home() {
    let harness = Harness::start().await;
    assert!(harness.evil.offhost_addr.is_some(), "127.0.0.2 could not be bound");
    let key = "sk-or-v1-fault-test-secret";
    let env = harness
        .faulty("openrouter", "redirect-offhost")
        .set("OPENROUTER_API_KEY", key)
        // A redirect within the same host is followed.
        .source("models_dev", "base_url", &harness.evil.base_url("redirect-samehost"));
    let run = env.run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("redirect-offhost"), 1);
    assert_eq!(
        harness.evil.requests_at(Origin::OtherHost),
        0,
        "the other host was contacted"
    );
    assert_eq!(harness.evil.leaked_credentials(), 0);
    let result = assert_failed_alone(&harness.db, "openrouter", 1, &["redirect to another host"]).await;
    assert!(!result.error.unwrap_or_default().contains(key));
    assert!(
        !run.stdout.contains(key) && !run.stderr.contains(key),
        "the key leaked: {run:?}"
    );
    assert_eq!(harness.evil.requests("redirect-samehost"), 1);
    assert_stored_exactly(&harness.db, "models_dev", 1).await;
}

#[tokio::test]
async fn a_redirect_to_another_port_of_the_same_host_is_refused_and_the_key_stays_home() {
    let harness = Harness::start().await;
    // Artificial Analysis sends its key as `x-api-key`, which HTTP clients do not strip on redirects.
    let run = harness
        .faulty("artificial_analysis", "redirect-otherport")
        .run(&["sync"])
        .await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("redirect-otherport"), 1);
    assert_eq!(
        (
            harness.evil.requests_at(Origin::OtherPort),
            harness.evil.leaked_credentials()
        ),
        (0, 0),
        "the redirect was followed to another port"
    );
    assert_failed_alone(&harness.db, "artificial_analysis", 1, &["redirect to another host"]).await;
}

#[tokio::test]
async fn a_401_fails_the_source_at_once_and_names_the_key() {
    let harness = Harness::start().await;
    let run = harness.faulty("artificial_analysis", "status401").run(&["sync"]).await;
    assert_eq!(assert_invariants(&harness.db, &run).await, "partial", "{run:?}");
    assert_eq!(harness.evil.requests("status401"), 1, "a 401 is not retried");
    assert_failed_alone(
        &harness.db,
        "artificial_analysis",
        1,
        &["HTTP 401", "check the API key"],
    )
    .await;
}
