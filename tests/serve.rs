//! The long-running worker (`serve`) and the commands that talk to it (`trigger`, `health`)
//! through the real binary, against a real PostgreSQL and the fixture server: the admin API and
//! its token, one sync at a time, `/metrics`, the probes, the signals (SIGTERM/SIGINT stop,
//! SIGHUP forces a sync) and `run_on_start`.
//!
//! Every test starts its own worker on its own free port with its own database, so the tests
//! run in parallel. A worker's log goes to a file that is printed when the test fails.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::worker::free_port;
use common::{fixture_records, BinaryEnv, FixtureServer, ScriptedServer, TestDb};
use model_lens_sync::telemetry::{
    ALL_METRICS, SOURCE_FETCH_DURATION_SECONDS, SYNC_DURATION_SECONDS, WRITER_BATCH_DURATION_SECONDS, WRITER_BATCH_ROWS,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const SOURCES: [&str; 4] = ["models_dev", "openrouter", "huggingface", "artificial_analysis"];
const TOKEN: &str = "a-long-admin-token-for-tests";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `serve` on a free loopback port. Killed when dropped (`kill_on_drop`).
struct Worker {
    child: tokio::process::Child,
    base_url: String,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Worker {
    /// Starts `serve` and waits until `/readyz` answers 200.
    async fn start(env: &BinaryEnv) -> Worker {
        let mut worker = Worker::spawn(env);
        worker.wait_for("/readyz").await;
        worker
    }

    /// Starts `serve` without waiting for anything.
    fn spawn(env: &BinaryEnv) -> Worker {
        let port = free_port();
        let (child, log_path, log_dir) =
            common::worker::spawn_serve(env, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Worker {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
            _log_dir: log_dir,
            http,
        }
    }

    /// Polls `path` until it answers 200; fails if the process exits or time runs out.
    async fn wait_for(&mut self, path: &str) {
        let url = self.url(path);
        common::worker::wait_until_ok(&mut self.child, &url, READY_TIMEOUT).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the worker is still running");
        kill(Pid::from_raw(pid as i32), signal).expect("send the signal");
    }

    /// Waits for the process to exit and returns its exit code.
    async fn exit_code_within(&mut self, limit: Duration) -> i32 {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not exit within {limit:?}"))
            .expect("wait for the worker");
        status
            .code()
            .unwrap_or_else(|| panic!("serve ended by a signal: {status}"))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.expect("a response body"))
    }

    /// `POST /api/admin/sync-models`: the status and the JSON body.
    async fn force_sync(&self, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(self.url("/api/admin/sync-models"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /api/admin/sync-models");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a response body");
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?} is not JSON: {e}"));
        (status, body)
    }

    /// `GET /api/admin/sync-models`, which must answer 200 with JSON.
    /// Forces a sync that must be accepted (202); returns its id.
    async fn start_sync(&self, token: Option<&str>) -> i64 {
        let (status, body) = self.force_sync(token).await;
        assert_eq!(status, 202, "{body}");
        body["sync_id"].as_i64().expect("a sync id")
    }

    async fn history(&self, token: Option<&str>) -> Value {
        let (status, text) = self.get("/api/admin/sync-models?limit=10", token).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
    }

    /// Polls the admin API until sync `id` has left `running`; returns its entry.
    async fn finished_sync(&self, id: i64, token: Option<&str>) -> Value {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let history = self.history(token).await;
            let entry = history["syncs"]
                .as_array()
                .expect("a list of syncs")
                .iter()
                .find(|sync| sync["id"] == id)
                .cloned();
            if let Some(entry) = entry {
                if entry["status"] != "running" && history["running_sync_id"] != id {
                    return entry;
                }
            }
            assert!(Instant::now() < deadline, "sync {id} did not finish: {history}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics", None).await;
        assert_eq!(status, 200, "{text}");
        text
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- serve log ({})\n{}", self.base_url, self.log());
        }
    }
}

const OPENROUTER_PATH: &str = "/api/v1/models";

/// OpenRouter's recorded listing on a scripted server, held until the test releases it: a sync
/// stays running exactly as long as the test needs.
async fn held_openrouter() -> ScriptedServer {
    let scripted = ScriptedServer::start().await;
    scripted.pages(OPENROUTER_PATH, vec![common::read_fixture("openrouter_models.json")]);
    scripted.hold_from(OPENROUTER_PATH, 0);
    scripted
}

/// The environment every worker test starts from: no schedule (a test must not meet 02:00 UTC).
fn worker_env(db: &TestDb, server: &FixtureServer) -> BinaryEnv {
    BinaryEnv::new(db, server).set("MODEL_LENS_SCHEDULE__ENABLED", "false")
}

/// The value of one series, written exactly as rendered (`name{label="value"}`), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until a sync matching `condition` (SQL over `model_syncs`) exists and has finished;
/// returns its id and status.
async fn wait_for_finished_sync(db: &TestDb, condition: &str) -> (i64, String) {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let found = db
            .try_count(&format!(
                "SELECT id FROM model_syncs WHERE {condition} AND status <> 'running' ORDER BY id LIMIT 1"
            ))
            .await;
        if let Some(id) = found {
            let status = db
                .text(&format!("SELECT status FROM model_syncs WHERE id = {id}"))
                .await;
            return (id, status);
        }
        assert!(
            Instant::now() < deadline,
            "no finished sync with {condition} within {SYNC_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn admin_api_needs_the_token_and_a_forced_sync_shows_in_history_and_metrics() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("ADMIN_TOKEN", TOKEN);
    let worker = Worker::start(&env).await;

    let (status, body) = worker.force_sync(None).await;
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = worker.force_sync(Some("not-the-token")).await;
    assert_eq!(status, 401, "wrong token: {body}");
    let (status, body) = worker.get("/api/admin/sync-models", None).await;
    assert_eq!(status, 401, "the history needs the token too: {body}");
    assert_eq!(
        db.count("SELECT count(*) FROM model_syncs").await,
        0,
        "refused requests start nothing"
    );

    let (status, body) = worker.force_sync(Some(TOKEN)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "started");
    let sync_id = body["sync_id"].as_i64().unwrap_or_else(|| panic!("a sync id: {body}"));

    let sync = worker.finished_sync(sync_id, Some(TOKEN)).await;
    assert_eq!(sync["status"], "success", "{sync}");
    assert_eq!(sync["trigger"], "manual", "{sync}");
    let sources = sync["sources"].as_array().expect("per-source results");
    assert_eq!(sources.len(), 4, "{sync}");
    for source in sources {
        assert_eq!(source["status"], "success", "{source}");
        let name = source["source"].as_str().expect("a source name");
        assert_eq!(source["models_stored"], fixture_records(name), "{source}");
    }

    let metrics = worker.metrics().await;
    for name in ALL_METRICS {
        let kind = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("# TYPE {name} ")))
            .unwrap_or_else(|| panic!("/metrics has no TYPE line for {name}:\n{metrics}"));
        let series: Vec<String> = match kind {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect(),
            _ => vec![name.to_string()],
        };
        for series in series {
            let present = metrics
                .lines()
                .any(|line| line.starts_with(&format!("{series}{{")) || line.starts_with(&format!("{series} ")));
            assert!(present, "/metrics has no sample of {series}:\n{metrics}");
        }
    }
    for histogram in [
        SYNC_DURATION_SECONDS,
        SOURCE_FETCH_DURATION_SECONDS,
        WRITER_BATCH_ROWS,
        WRITER_BATCH_DURATION_SECONDS,
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} is a histogram with buckets, not a summary:\n{metrics}"
        );
    }
    let openrouter = fixture_records("openrouter") as f64;
    assert_eq!(
        sample(&metrics, r#"model_lens_models_stored_total{source="openrouter"}"#),
        Some(openrouter),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"model_lens_source_models{source="openrouter"}"#),
        Some(openrouter),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"model_lens_sync_runs_total{status="success"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"model_lens_sync_runs_total{status="failed"}"#),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "model_lens_sync_in_progress"), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, "model_lens_database_up"), Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "model_lens_sync_duration_seconds_count"),
        Some(1.0),
        "{metrics}"
    );
    let last_success = sample(&metrics, "model_lens_last_successful_sync_timestamp_seconds")
        .unwrap_or_else(|| panic!("no last success timestamp:\n{metrics}"));
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - last_success).abs() < 120.0,
        "{last_success} is not about now ({now})"
    );
    for source in SOURCES {
        let series = format!(r#"model_lens_source_last_success_timestamp_seconds{{source="{source}"}}"#);
        let source_success = sample(&metrics, &series).unwrap_or_else(|| panic!("no {series}:\n{metrics}"));
        assert!((source_success - last_success).abs() < 5.0, "{series} {source_success}");
        // The first sync of a source is the drift alarm's baseline: no new fields.
        let new_fields = format!(r#"model_lens_source_new_fields{{source="{source}"}}"#);
        assert_eq!(sample(&metrics, &new_fields), Some(0.0), "{metrics}");
    }

    // `trigger` reads ADMIN_TOKEN like the worker does.
    let url = worker.base_url.clone();
    let refused = env
        .clone()
        .set("ADMIN_TOKEN", "not-the-token")
        .run(&["trigger", "--url", &url])
        .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    let accepted = env.run(&["trigger", "--url", &url]).await;
    assert_eq!(accepted.code, 0, "{accepted:?}");
    let second = worker.finished_sync(sync_id + 1, Some(TOKEN)).await;
    assert_eq!(second["status"], "success", "{second}");
}

#[tokio::test]
async fn a_restarted_worker_exports_each_source_s_last_success_and_new_fields_from_the_database() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server);
    // One sync in which Hugging Face failed; the others succeeded.
    let partial = env
        .clone()
        .source("huggingface", "base_url", &server.base_url("status404"))
        .run(&["sync"])
        .await;
    assert_eq!(partial.code, 1, "{partial:?}");
    let finished: f64 = db
        .scalar("SELECT extract(epoch FROM finished_at)::float8 FROM model_syncs WHERE id = 1")
        .await;

    let worker = Worker::start(&env).await;
    let metrics = worker.metrics().await;
    for source in ["models_dev", "openrouter", "artificial_analysis"] {
        let series = format!(r#"model_lens_source_last_success_timestamp_seconds{{source="{source}"}}"#);
        let value = sample(&metrics, &series).unwrap_or_else(|| panic!("no {series}:\n{metrics}"));
        assert!(
            (value - finished).abs() < 0.01,
            "{series} is {value}, the sync finished at {finished}"
        );
        let new_fields = format!(r#"model_lens_source_new_fields{{source="{source}"}}"#);
        assert_eq!(sample(&metrics, &new_fields), Some(0.0), "{metrics}");
    }
    // Hugging Face never succeeded: no timestamp to offer, and health names it.
    assert_eq!(
        sample(
            &metrics,
            r#"model_lens_source_last_success_timestamp_seconds{source="huggingface"}"#
        ),
        None,
        "{metrics}"
    );
    let (status, body) = worker.get("/api/health", None).await;
    assert_eq!(status, 503, "no sync succeeded as a whole yet: {body}");
    assert!(body.contains("huggingface never succeeded"), "{body}");
}

#[tokio::test]
async fn one_sync_at_a_time_a_second_request_gets_409_with_the_running_id() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    // OpenRouter is held, so the sync is still running while we knock again.
    let openrouter = held_openrouter().await;
    let env = worker_env(&db, &server).source("openrouter", "base_url", &openrouter.base_url());
    let worker = Worker::start(&env).await;

    let sync_id = worker.start_sync(None).await;

    let (status, body) = worker.force_sync(None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["sync_id"], sync_id, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let history = worker.history(None).await;
    assert_eq!(history["running_sync_id"], sync_id, "{history}");

    let url = worker.base_url.clone();
    let busy = env.run(&["trigger", "--url", &url]).await;
    assert_eq!(busy.code, 1, "trigger while a sync runs: {busy:?}");

    openrouter.release_all(OPENROUTER_PATH);
    let sync = worker.finished_sync(sync_id, None).await;
    assert_eq!(sync["status"], "success", "{sync}");
    assert_eq!(
        db.count("SELECT count(*) FROM model_syncs").await,
        1,
        "the refused requests started nothing"
    );

    let idle = env.run(&["trigger", "--url", &url]).await;
    assert_eq!(idle.code, 0, "trigger while idle: {idle:?}");
    assert!(idle.stdout.contains("started"), "{idle:?}");
    let next = worker.finished_sync(sync_id + 1, None).await;
    assert_eq!(next["status"], "success", "{next}");
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 2);
}

#[tokio::test]
async fn health_command_exit_codes_follow_the_thresholds() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let json = |stdout: &str| -> Value {
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("health --json printed {stdout:?}: {e}"))
    };

    let fresh = env.run(&["health"]).await;
    assert_eq!(fresh.code, 2, "an empty database: {fresh:?}");

    let migrated = env.run(&["migrate"]).await;
    assert_eq!(migrated.code, 0, "{migrated:?}");
    let never = env.run(&["health", "--json"]).await;
    assert_eq!(never.code, 2, "no sync ever: {never:?}");
    let report = json(&never.stdout);
    assert_eq!(report["status"], "critical", "{report}");
    let has_success = report["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .find(|check| check["name"] == "has_successful_sync")
        .unwrap_or_else(|| panic!("a has_successful_sync check: {report}"));
    assert_eq!(has_success["ok"], false, "{report}");

    let synced = env.run(&["sync"]).await;
    assert_eq!(synced.code, 0, "{synced:?}");
    let healthy = env.run(&["health"]).await;
    assert_eq!(healthy.code, 0, "{healthy:?}");
    let alias = env.run(&["check-sync-health", "--json"]).await;
    assert_eq!(alias.code, 0, "{alias:?}");
    assert_eq!(json(&alias.stdout)["status"], "healthy", "{alias:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = env
        .clone()
        .set("MODEL_LENS_HEALTH__MAX_SYNC_AGE_HOURS", "0.0001")
        .run(&["health", "--json"])
        .await;
    assert_eq!(stale.code, 1, "older than max_sync_age_hours: {stale:?}");
    assert_eq!(json(&stale.stdout)["status"], "warning", "{stale:?}");

    let too_few = env
        .clone()
        .set("MODEL_LENS_HEALTH__MIN_EXPECTED_MODELS", "1000000000")
        .run(&["health"])
        .await;
    assert_eq!(too_few.code, 2, "fewer than min_expected_models: {too_few:?}");

    // One failed sync of the last two: 50 % is above the default 20 %.
    let mut failing = env.clone();
    for source in SOURCES {
        failing = failing.source(source, "base_url", &server.base_url("status500"));
    }
    let failed = failing.run(&["sync"]).await;
    assert_eq!(failed.code, 2, "{failed:?}");
    let flaky = env.run(&["health", "--json"]).await;
    assert_eq!(flaky.code, 1, "failure rate above max_failure_rate: {flaky:?}");
    assert_eq!(json(&flaky.stdout)["status"], "warning", "{flaky:?}");
    let tolerant = env
        .clone()
        .set("MODEL_LENS_HEALTH__MAX_FAILURE_RATE", "60")
        .run(&["health"])
        .await;
    assert_eq!(tolerant.code, 0, "{tolerant:?}");

    let unreachable = env
        .clone()
        .set("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
        .run(&["health", "--json"])
        .await;
    assert_eq!(unreachable.code, 2, "database unreachable: {unreachable:?}");
    assert_eq!(json(&unreachable.stdout)["status"], "critical", "{unreachable:?}");
}

/// Starts a worker whose OpenRouter is held, forces a sync, sends SIGTERM at once (releasing
/// OpenRouter then if `release` is set) and expects a clean exit (0) within the grace period
/// plus 10 s. Returns the database and sync id.
async fn sigterm_during_a_held_sync(grace_secs: u64, release: bool) -> (TestDb, i64) {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let openrouter = held_openrouter().await;
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_HTTP__SHUTDOWN_GRACE_SECS", &grace_secs.to_string())
        .source("openrouter", "base_url", &openrouter.base_url());
    let mut worker = Worker::start(&env).await;
    let sync_id = worker.start_sync(None).await;
    openrouter.wait_for_request(OPENROUTER_PATH, 0).await;
    worker.signal(Signal::SIGTERM);
    if release {
        openrouter.release_all(OPENROUTER_PATH);
    }
    let code = worker.exit_code_within(Duration::from_secs(grace_secs + 10)).await;
    assert_eq!(code, 0, "a clean stop");
    openrouter.release_all(OPENROUTER_PATH);
    (db, sync_id)
}

#[tokio::test]
async fn sigterm_after_the_grace_period_marks_the_running_sync_interrupted_and_exits_0() {
    let (db, sync_id) = sigterm_during_a_held_sync(1, false).await;

    let status = db
        .text(&format!("SELECT status FROM model_syncs WHERE id = {sync_id}"))
        .await;
    assert_eq!(status, "interrupted");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM model_syncs WHERE id = {sync_id} AND finished_at IS NOT NULL"
        ))
        .await,
        1
    );
    let openrouter = db
        .text(&format!(
            "SELECT status FROM model_sync_sources WHERE sync_id = {sync_id} AND source = 'openrouter'"
        ))
        .await;
    assert_eq!(openrouter, "failed", "the source cut short is not a success");
}

#[tokio::test]
async fn sigterm_within_the_grace_period_lets_the_running_sync_finish() {
    let (db, sync_id) = sigterm_during_a_held_sync(20, true).await;

    let status = db
        .text(&format!("SELECT status FROM model_syncs WHERE id = {sync_id}"))
        .await;
    assert_eq!(status, "success", "the sync finished within the grace period");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM model_snapshots WHERE sync_id = {sync_id} AND source = 'openrouter'"
        ))
        .await,
        fixture_records("openrouter")
    );
}

#[tokio::test]
async fn sighup_forces_a_manual_sync() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let worker = Worker::start(&worker_env(&db, &server)).await;
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 0);

    worker.signal(Signal::SIGHUP);
    let (_, status) = wait_for_finished_sync(&db, "trigger = 'manual'").await;
    assert_eq!(status, "success");
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 1);
}

#[tokio::test]
async fn run_on_start_syncs_at_startup() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("MODEL_LENS_SCHEDULE__RUN_ON_START", "true");
    let worker = Worker::start(&env).await;

    let (id, status) = wait_for_finished_sync(&db, "trigger = 'startup'").await;
    assert_eq!(status, "success");
    let sync = worker.finished_sync(id, None).await;
    assert_eq!(sync["trigger"], "startup", "{sync}");
}

#[tokio::test]
async fn probes_and_health_report_follow_the_state_and_sigint_stops() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("MODEL_LENS_HEALTH__INTERVAL_SECS", "1");
    let mut worker = Worker::start(&env).await;

    let (status, body) = worker.get("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = worker.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");

    // No sync yet: critical, and 503 so that a load balancer can act on it.
    let (status, body) = worker.get("/api/health", None).await;
    assert_eq!(status, 503, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    assert_eq!(report["status"], "critical", "{report}");
    assert!(report["checks"].is_array(), "{report}");

    let (status, body) = worker.force_sync(None).await;
    assert_eq!(status, 202, "{body}");
    let sync = worker
        .finished_sync(body["sync_id"].as_i64().expect("a sync id"), None)
        .await;
    assert_eq!(sync["status"], "success", "{sync}");

    // The health actor re-evaluates every second here.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = worker.get("/api/health", None).await;
        let report: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        if status == 200 && report["status"] == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} {report} after a successful sync"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = worker.metrics().await;
    assert_eq!(sample(&metrics, "model_lens_health_status"), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, r#"model_lens_health_check_ok{check="has_successful_sync"}"#),
        Some(1.0),
        "{metrics}"
    );

    worker.signal(Signal::SIGINT);
    let code = worker.exit_code_within(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "an idle worker stops cleanly on SIGINT");
}

#[tokio::test]
async fn without_a_database_the_worker_is_alive_but_not_ready_and_still_stops() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("DATABASE_URL", "postgres://x@127.0.0.1:1/x");
    let mut worker = Worker::spawn(&env);

    worker.wait_for("/healthz").await;
    let (status, body) = worker.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");

    worker.signal(Signal::SIGTERM);
    let code = worker.exit_code_within(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "a clean stop while waiting for the database");
}

#[tokio::test]
async fn without_a_token_loopback_clients_may_force_a_sync() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let worker = Worker::start(&worker_env(&db, &server).unset("ADMIN_TOKEN")).await;

    let (status, body) = worker.force_sync(None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "started", "{body}");
    let sync = worker
        .finished_sync(body["sync_id"].as_i64().expect("a sync id"), None)
        .await;
    assert_eq!(sync["status"], "success", "{sync}");
}

/// Every `model_lens_*` name in a file (dashboards, alert rules and their tests).
fn metric_names_in(path: &std::path::Path) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("model_lens_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn every_metric_named_by_a_dashboard_or_alert_is_exported_after_a_sync() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("MODEL_LENS_SCHEDULE__RUN_ON_START", "true");
    let worker = Worker::start(&env).await;
    let (id, status) = wait_for_finished_sync(&db, "trigger = 'startup'").await;
    assert_eq!(status, "success");
    worker.finished_sync(id, None).await;
    let metrics = worker.metrics().await;
    // A series is exported when a sample line starts with its name (histograms export
    // name_bucket, name_sum and name_count).
    let exported: std::collections::BTreeSet<String> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("dashboards"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.extend(
        std::fs::read_dir(root.join("deploy/prometheus"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml")),
    );
    assert!(
        files.len() >= 3,
        "dashboards and rules are where they should be: {files:?}"
    );
    let mut checked = 0;
    for file in &files {
        for name in metric_names_in(file) {
            checked += 1;
            assert!(
                exported.contains(&name),
                "{} names {name}, which /metrics does not export after a sync:\n{metrics}",
                file.display()
            );
        }
    }
    assert!(checked >= 16, "only {checked} metric references found");
    // And every contract name of DESIGN.md §7 is exported (as itself or as a histogram).
    for name in model_lens_sync::telemetry::ALL_METRICS {
        let histogram = format!("{name}_count");
        assert!(
            exported.contains(name) || exported.contains(&histogram),
            "{name} is not exported:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn two_replicas_on_one_database_never_sync_at_the_same_time() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let openrouter = held_openrouter().await;
    let env = worker_env(&db, &server).source("openrouter", "base_url", &openrouter.base_url());
    let first = Worker::start(&env).await;
    let second = Worker::start(&env).await;

    let sync_id = first.start_sync(None).await;
    // The other replica does not know of the sync in memory; the advisory lock stops it, and it
    // names the running sync from the database.
    let (status, body) = second.force_sync(None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["sync_id"], sync_id, "{body}");

    openrouter.release_all(OPENROUTER_PATH);
    let finished = first.finished_sync(sync_id, None).await;
    assert_eq!(finished["status"], "success", "{finished}");
    assert_eq!(db.count("SELECT count(*) FROM model_syncs").await, 1);
    // Once it is done, the other replica may sync.
    let (status, body) = second.force_sync(None).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn logging_dir_gets_a_sync_log_with_sync_ids_and_a_health_log() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_SCHEDULE__RUN_ON_START", "true")
        .set("MODEL_LENS_LOGGING__DIR", logs.path().to_str().unwrap());
    let mut worker = Worker::start(&env).await;
    let (id, status) = wait_for_finished_sync(&db, "trigger = 'startup'").await;
    assert_eq!(status, "success");
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.exit_code_within(Duration::from_secs(30)).await, 0);

    let sync_log = std::fs::read_to_string(logs.path().join("sync.log")).expect("logs/sync.log");
    let finished: Vec<Value> = sync_log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
        .filter(|line| line["fields"]["message"] == "sync finished")
        .collect();
    assert_eq!(finished.len(), 1, "{sync_log}");
    assert!(
        finished[0].to_string().contains(&format!("\"sync_id\":{id}")),
        "{}",
        finished[0]
    );
    // Every line logged inside the sync's actors carries the id.
    let actor_lines: Vec<&str> = sync_log
        .lines()
        .filter(|line| line.contains("source finished"))
        .collect();
    assert_eq!(actor_lines.len(), 4, "{sync_log}");
    assert!(actor_lines
        .iter()
        .all(|line| line.contains(&format!("\"sync_id\":{id}"))));
    let health_log = std::fs::read_to_string(logs.path().join("health.log")).expect("logs/health.log");
    assert!(health_log.contains("health"), "{health_log}");
    assert!(
        !sync_log.contains("health changed"),
        "health lines belong in health.log"
    );
}

#[tokio::test]
async fn a_crashed_writer_is_restarted_counted_and_the_sync_still_succeeds() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_SCHEDULE__RUN_ON_START", "true")
        .set("MODEL_LENS_FAULTS", "writer_batch=2");
    let worker = Worker::start(&env).await;
    let (id, status) = wait_for_finished_sync(&db, "trigger = 'startup'").await;
    assert_eq!(status, "success", "{}", worker.log());
    worker.finished_sync(id, None).await;
    let metrics = worker.metrics().await;
    assert_eq!(
        sample(&metrics, r#"model_lens_actor_restarts_total{actor="writer"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"model_lens_actor_restarts_total{actor="fetcher"}"#),
        Some(0.0),
        "{metrics}"
    );
    let stored = db
        .count(&format!("SELECT count(*) FROM model_snapshots WHERE sync_id = {id}"))
        .await;
    let distinct = db
        .count(&format!(
            "SELECT count(DISTINCT (source, provider, model_id)) FROM model_snapshots WHERE sync_id = {id}"
        ))
        .await;
    let expected: i64 = ["models_dev", "openrouter", "huggingface", "artificial_analysis"]
        .iter()
        .map(|source| fixture_records(source))
        .sum();
    assert_eq!((stored, distinct), (expected, expected));
}

#[tokio::test]
async fn the_changes_feed_pages_by_cursor_and_the_history_api_answers_one_model() {
    let db = TestDb::create().await;
    let older = FixtureServer::start_with_models_dev("modelsdev_api_2025-11.json").await;
    let newer = FixtureServer::start_with_models_dev("modelsdev_api.json").await;
    let models_dev_only = |server: &FixtureServer| {
        worker_env(&db, server)
            .source("openrouter", "enabled", "false")
            .source("huggingface", "enabled", "false")
            .unset("ARTIFICIAL_ANALYSIS_API_KEY")
            .set("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", "50")
    };
    assert_eq!(models_dev_only(&older).run(&["sync"]).await.code, 0);
    assert_eq!(models_dev_only(&newer).run(&["sync"]).await.code, 0);
    let total = db.count("SELECT count(*) FROM model_changes").await;
    assert!(total > 3000, "{total}");

    let worker = Worker::start(&models_dev_only(&newer).set("ADMIN_TOKEN", TOKEN)).await;
    let (status, body) = worker.get("/api/changes", None).await;
    assert_eq!(status, 401, "the feed follows the admin routes' auth: {body}");
    let (status, body) = worker.get("/api/history?source=models_dev&model_id=x", None).await;
    assert_eq!(status, 401, "{body}");

    // The feed: pages of at most `limit`, ordered by id, until a page comes back empty with
    // the same cursor.
    let mut after = 0;
    let mut seen = 0;
    loop {
        let (status, body) = worker
            .get(&format!("/api/changes?after={after}&limit=1000"), Some(TOKEN))
            .await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= 1000);
        let ids: Vec<i64> = changes.iter().map(|c| c["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ordered by id");
        assert!(ids.first().is_none_or(|first| *first > after));
        let next = page["next_after"].as_i64().unwrap();
        if changes.is_empty() {
            assert_eq!(next, after);
            break;
        }
        assert_eq!(next, *ids.last().unwrap());
        for change in changes {
            for column in [
                "sync_id",
                "source",
                "provider",
                "model_id",
                "kind",
                "fields",
                "created_at",
            ] {
                assert!(change.get(column).is_some(), "{column} in {change}");
            }
        }
        seen += changes.len() as i64;
        after = next;
    }
    assert_eq!(seen, total);

    let (status, body) = worker
        .get(
            "/api/history?source=models_dev&provider=openrouter&model_id=google/gemma-3n-e4b-it",
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    let model = &history["models"][0];
    assert_eq!(model["versions"].as_array().unwrap().len(), 2, "{model}");
    assert_eq!(model["versions"][1]["input_price_per_mtok"], "0.02", "{model}");
    assert_eq!(model["changes"][0]["kind"], "changed", "{model}");
    let (status, _) = worker
        .get("/api/history?source=models_dev&model_id=no-such-model", Some(TOKEN))
        .await;
    assert_eq!(status, 404);
    let (status, _) = worker.get("/api/history?source=nowhere&model_id=x", Some(TOKEN)).await;
    assert_eq!(status, 400);

    let metrics = worker.metrics().await;
    for kind in ["added", "removed", "changed", "reappeared"] {
        let series = format!("model_lens_model_changes_total{{source=\"models_dev\",kind=\"{kind}\"}}");
        assert!(sample(&metrics, &series).is_some(), "{series} in:\n{metrics}");
    }
    assert!(sample(&metrics, "model_lens_removals_held_total{source=\"huggingface\"}").is_some());
}

#[tokio::test]
async fn a_dead_supervisor_or_health_monitor_makes_serve_exit_with_a_failure() {
    let server = FixtureServer::start().await;
    for fault in ["supervisor_force_sync", "health_evaluate=3"] {
        let db = TestDb::create().await;
        let env = worker_env(&db, &server)
            .set("MODEL_LENS_FAULTS", fault)
            .set("MODEL_LENS_HEALTH__INTERVAL_SECS", "1");
        let mut worker = Worker::spawn(&env);
        if fault.starts_with("supervisor") {
            worker.wait_for("/readyz").await;
            let (status, body) = worker.force_sync(None).await;
            assert_eq!(status, 503, "{fault}: {body}");
        }
        // A worker without its supervisor or health monitor would answer its probes and drop
        // every trigger: it exits with a failure so that its service manager restarts it.
        let code = worker.exit_code_within(Duration::from_secs(60)).await;
        assert_ne!(code, 0, "{fault}: {}", worker.log());
        assert!(worker.log().contains("injected fault"), "{fault}: {}", worker.log());
    }
}

#[tokio::test]
async fn the_health_report_is_evaluated_once_per_interval_not_once_per_request() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let env = worker_env(&db, &server)
        .set("MODEL_LENS_HEALTH__INTERVAL_SECS", "3600")
        .set("MODEL_LENS_LOGGING__DIR", logs.path().to_str().unwrap());
    let mut worker = Worker::start(&env).await;
    for _ in 0..5 {
        let (status, body) = worker.get("/api/health", None).await;
        assert_eq!(status, 503, "no sync yet: {body}");
    }
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.exit_code_within(Duration::from_secs(30)).await, 0);
    let health_log = std::fs::read_to_string(logs.path().join("health.log")).expect("logs/health.log");
    let warnings = health_log
        .lines()
        .filter(|line| line.contains("health check failing") && line.contains("has_successful_sync"))
        .count();
    assert_eq!(warnings, 1, "one evaluation, one warning:\n{health_log}");
}

#[tokio::test]
async fn a_migration_cut_by_a_transient_error_is_retried_while_serve_waits_not_ready() {
    use model_lens_sync::config::DatabaseConfig;
    use model_lens_sync::store::{connect_pool, migrations};

    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let database = connect_pool(&db.url, &DatabaseConfig::default()).unwrap();
    migrations::migrate_up_to(&database, 3).await.unwrap();
    // Migration 0005 alters model_syncs; a reader holding the table makes it wait until the
    // statement timeout cancels it (SQLSTATE 57014: transient, like a dropped connection).
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; LOCK TABLE model_syncs IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let env = worker_env(&db, &server).set("MODEL_LENS_DATABASE__STATEMENT_TIMEOUT_SECS", "1");
    let mut worker = Worker::spawn(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker.log().contains("not ready, retrying") {
        if let Some(status) = worker.child.try_wait().expect("poll the worker") {
            panic!(
                "serve gave up on a transient migration error ({status}):\n{}",
                worker.log()
            );
        }
        assert!(Instant::now() < deadline, "no retry logged:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.wait_for("/healthz").await;
    let (status, body) = worker.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    reader.batch_execute("COMMIT").await.unwrap();
    worker.wait_for("/readyz").await;
    assert_eq!(
        db.count("SELECT count(*) FROM model_lens_migrations").await,
        migrations::MIGRATIONS.len() as i64
    );
}

// ----------------------------------------------------------------- the catalog (issue 13)

/// `GET path` with an optional token: the status and the JSON body.
async fn get_json(worker: &Worker, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, text) = worker.get(path, token).await;
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?} is not JSON: {e}"));
    (status, body)
}

#[tokio::test]
async fn the_catalog_api_reads_pages_with_the_admin_auth_or_publicly() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server).set("ADMIN_TOKEN", TOKEN);
    let worker = Worker::start(&env).await;
    let (status, body) = get_json(&worker, "/api/models", None).await;
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = get_json(&worker, "/api/models", Some("not-the-token")).await;
    assert_eq!(status, 401, "wrong token: {body}");
    let (status, body) = get_json(&worker, "/api/models", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["models"], serde_json::json!([]), "nothing synced yet");
    assert_eq!(body["next_after"], Value::Null);

    let sync_id = worker.start_sync(Some(TOKEN)).await;
    worker.finished_sync(sync_id, Some(TOKEN)).await;
    let first = "/api/models?source=openrouter&sort=input_price&limit=100";
    let (status, page) = get_json(&worker, first, Some(TOKEN)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["models"].as_array().unwrap().len(), 100);
    let cheapest = &page["models"][0];
    assert_eq!(cheapest["source"], "openrouter");
    assert!(
        cheapest["input_price_per_mtok"].is_string(),
        "prices are decimal strings: {cheapest}"
    );
    // Following the cursor to the end gives every OpenRouter model once, variable prices last.
    let mut seen = Vec::new();
    let mut page = page;
    loop {
        seen.extend(page["models"].as_array().unwrap().iter().cloned());
        let Some(after) = page["next_after"].as_str() else {
            break;
        };
        let (status, next) = get_json(&worker, &format!("{first}&after={after}"), Some(TOKEN)).await;
        assert_eq!(status, 200, "{next}");
        page = next;
    }
    assert_eq!(seen.len() as i64, fixture_records("openrouter"));
    assert!(seen[seen.len() - 3..]
        .iter()
        .all(|model| model["input_price_per_mtok"].is_null()));

    for (path, expected) in [
        ("/api/models?source=hf", "valid sources"),
        ("/api/models?sort=cheapest", "input_price"),
        ("/api/models?limit=5000", "limit must be between 1 and 1000"),
        ("/api/models?after=bogus", "cursor"),
        ("/api/models?provder=openai", "unknown parameter"),
    ] {
        let (status, body) = get_json(&worker, path, Some(TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{path}: {body}");
    }

    // `http.public_read`: the catalog without a token, the admin routes still with one.
    let public = Worker::start(&env.clone().set("MODEL_LENS_HTTP__PUBLIC_READ", "true")).await;
    let (status, body) = get_json(&public, "/api/models?provider=anthropic&q=opus&limit=3", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["models"].as_array().unwrap().is_empty(), "{body}");
    let (status, _) = public.force_sync(None).await;
    assert_eq!(status, 401, "public reads do not open the admin API");
}

#[tokio::test]
async fn a_forced_sync_can_name_its_sources() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = worker_env(&db, &server);
    let worker = Worker::start(&env).await;
    let request = |query: &str| {
        worker
            .http
            .post(worker.url(&format!("/api/admin/sync-models{query}")))
            .send()
    };
    let response = request("?source=nope").await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("valid sources: models_dev, openrouter"),
        "{body}"
    );
    let response = request("?source=openrouter&source=artificial_analysis").await.unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["sources"],
        serde_json::json!(["openrouter", "artificial_analysis"])
    );
    let sync = worker.finished_sync(body["sync_id"].as_i64().unwrap(), None).await;
    assert_eq!(sync["status"], "success", "{sync}");
    for source in sync["sources"].as_array().unwrap() {
        let expected = match source["source"].as_str().unwrap() {
            "openrouter" | "artificial_analysis" => "success",
            _ => "skipped",
        };
        assert_eq!(source["status"], expected, "{source}");
    }

    // `trigger --source` asks for the same.
    let wrong = env
        .run(&["trigger", "--url", &worker.base_url, "--source", "modelsdev"])
        .await;
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("valid sources"), "{wrong:?}");
    let trigger = env
        .run(&["trigger", "--url", &worker.base_url, "--source", "models_dev"])
        .await;
    assert_eq!(trigger.code, 0, "{trigger:?}");
    let (id, status) = wait_for_finished_sync(&db, "id > 1").await;
    assert_eq!(status, "success");
    let statuses = db
        .text(&format!(
            "SELECT string_agg(source || '=' || status, ' ' ORDER BY source) FROM model_sync_sources WHERE sync_id = {id}"
        ))
        .await;
    assert_eq!(
        statuses,
        "artificial_analysis=skipped huggingface=skipped models_dev=success openrouter=skipped"
    );
}

#[tokio::test]
async fn redis_going_away_mid_sync_is_counted_and_the_sync_succeeds() {
    let mut redis = common::redis_server::RedisServer::start().await;
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    // OpenRouter answers after 3 s, so each sync is still running a moment after it starts.
    let env = worker_env(&db, &server).set("REDIS_URL", &redis.url()).source(
        "openrouter",
        "base_url",
        &server.base_url("slow"),
    );
    let worker = Worker::start(&env).await;
    let published = r#"model_lens_redis_publish_total{outcome="success"}"#;
    let failed = r#"model_lens_redis_publish_total{outcome="error"}"#;
    assert_eq!(sample(&worker.metrics().await, failed), Some(0.0));

    let first = worker.start_sync(None).await;
    worker.finished_sync(first, None).await;
    // The publication follows the sync's end.
    wait_for_sample(&worker, published, 1.0).await;
    let mut connection = redis.connection().await.unwrap();
    let fields: i64 = redis::AsyncCommands::hlen(&mut connection, "model_lens:catalog:openrouter")
        .await
        .unwrap();
    assert_eq!(fields, fixture_records("openrouter"));

    let second = worker.start_sync(None).await;
    redis.stop();
    let sync = worker.finished_sync(second, None).await;
    assert_eq!(
        sync["status"], "success",
        "Redis is never a reason to fail a sync: {sync}"
    );
    wait_for_sample(&worker, failed, 1.0).await;
    assert_eq!(sample(&worker.metrics().await, published), Some(1.0));
    assert!(worker.log().contains("could not publish the catalog to Redis"));
}

/// Polls `/metrics` until `series` has `value`.
async fn wait_for_sample(worker: &Worker, series: &str, value: f64) {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let metrics = worker.metrics().await;
        if sample(&metrics, series) == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} never reached {value}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
