//! Shared harness of the integration tests: a real local PostgreSQL (one embedded cluster per
//! test process, a fresh database per test, or `MODEL_LENS_TEST_DATABASE_URL`), the fixture
//! server, and a runner for the real binary.

#![allow(dead_code)]

pub mod api_server;
pub mod capture;
pub mod current_catalog;
pub mod evil_server;
pub mod fixture_server;
pub mod hf_listing;
pub mod legacy;
pub mod redis_server;
pub mod scripted_server;
pub mod tls_cluster;
pub mod worker;

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use model_lens_sync::store::embedded::EmbeddedPostgres;
use tokio::sync::OnceCell;

pub use fixture_server::{read_fixture, FixtureServer};
#[allow(unused_imports)]
pub use scripted_server::ScriptedServer;

static CLUSTER: OnceCell<(Option<EmbeddedPostgres>, String)> = OnceCell::const_new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The admin connection string of the test server.
async fn server_url() -> &'static str {
    let (_, url) = CLUSTER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("MODEL_LENS_TEST_DATABASE_URL") {
                return (None, url);
            }
            let root = std::env::temp_dir().join("model-lens-tests");
            remove_stale_clusters(&root);
            let dir = root.join(format!("cluster-{}", std::process::id()));
            let cluster = EmbeddedPostgres::start(&dir, None)
                .await
                .unwrap_or_else(|error| panic!("the test PostgreSQL did not start: {error}"));
            let url = cluster.url();
            (Some(cluster), url)
        })
        .await;
    url
}

/// Clusters of earlier test processes that are gone (their servers died with them).
fn remove_stale_clusters(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("cluster-").and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty database on the test server.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = server_url().await;
        let name = format!(
            "mls_test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = replace_dbname(admin_url, &name);
        TestDb { url, name }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Like `count`, but `None` while the query cannot run (the database or table is not there yet).
    pub async fn try_count(&self, sql: &str) -> Option<i64> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.ok().map(|row| row.get(0))
    }

    /// Runs a query returning one value.
    pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Runs a query returning one text.
    pub async fn text(&self, sql: &str) -> String {
        self.scalar(sql).await
    }

    /// Runs a query returning one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }
}

fn replace_dbname(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).expect("a valid test URL");
        parsed.set_path(&format!("/{name}"));
        return parsed.to_string();
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|part| !part.starts_with("dbname="))
        .collect();
    format!("{} dbname={name}", kept.join(" "))
}

/// The environment of one run of the binary: a database, sources on the fixture server.
#[derive(Clone)]
pub struct BinaryEnv {
    pub vars: Vec<(String, String)>,
}

impl BinaryEnv {
    /// All four sources served by `server` in `ok` mode, fast retries, the whole HF listing.
    pub fn new(db: &TestDb, server: &FixtureServer) -> BinaryEnv {
        BinaryEnv::with_base_url(db, &server.base_url("ok"))
    }

    /// All four sources at `base_url` (e.g. an `ApiServer`), fast retries, the whole HF listing.
    pub fn with_base_url(db: &TestDb, base_url: &str) -> BinaryEnv {
        let mut env = BinaryEnv {
            vars: vec![
                ("DATABASE_URL".into(), db.url.clone()),
                (
                    "MODEL_LENS_CONFIG".into(),
                    concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml").into(),
                ),
                ("API_RETRY_MS".into(), "10".into()),
                ("ARTIFICIAL_ANALYSIS_API_KEY".into(), "test-key".into()),
                ("MODEL_LENS_LOGGING__FORMAT".into(), "pretty".into()),
                ("MODEL_LENS_SOURCES__HUGGINGFACE__MAX_MODELS".into(), "0".into()),
            ],
        };
        for source in ["models_dev", "openrouter", "huggingface", "artificial_analysis"] {
            env = env
                .source(source, "base_url", base_url)
                .source(source, "requests_per_second", "1000")
                .source(source, "burst", "1000");
        }
        env
    }

    pub fn set(mut self, key: &str, value: &str) -> BinaryEnv {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    pub fn unset(mut self, key: &str) -> BinaryEnv {
        self.vars.retain(|(k, _)| k != key);
        self
    }

    pub fn source(self, source: &str, key: &str, value: &str) -> BinaryEnv {
        let name = format!("MODEL_LENS_SOURCES__{}__{}", source.to_uppercase(), key.to_uppercase());
        self.set(&name, value)
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_model-lens-sync"));
        command.args(args).env_clear();
        for key in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        command.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.current_dir(std::env::temp_dir());
        command.kill_on_drop(true);
        command
    }

    /// Runs the binary to completion (at most two minutes).
    pub async fn run(&self, args: &[&str]) -> RunOutput {
        let output = tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
            .await
            .expect("the binary finished within two minutes")
            .expect("the binary ran");
        RunOutput::from(output)
    }
}

pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for RunOutput {
    fn from(output: Output) -> RunOutput {
        RunOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        }
    }
}

impl std::fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Records in a fixture, counted the way each API lists them.
pub fn fixture_records(source: &str) -> i64 {
    let value = |name: &str| -> serde_json::Value { serde_json::from_slice(&read_fixture(name)).unwrap() };
    match source {
        "models_dev" => value("modelsdev_api.json")
            .as_object()
            .unwrap()
            .values()
            .map(|provider| provider["models"].as_object().map_or(0, |models| models.len()))
            .sum::<usize>() as i64,
        "openrouter" => value("openrouter_models.json")["data"].as_array().unwrap().len() as i64,
        "huggingface" => value("hf_models.json").as_array().unwrap().len() as i64,
        "artificial_analysis" => [
            "aa_language_models_free_page1.json",
            "aa_language_models_free_page2.json",
        ]
        .iter()
        .map(|page| value(page)["data"].as_array().unwrap().len() as i64)
        .sum(),
        other => panic!("unknown source {other}"),
    }
}

/// The records of the Hugging Face fixture, to script listings with.
pub fn huggingface_items() -> Vec<serde_json::Value> {
    serde_json::from_slice(&read_fixture("hf_models.json")).expect("hf_models.json is a JSON array")
}

/// Polls `sql` (one bigint) until it is non-zero, at most `timeout_secs`.
pub async fn wait_until(db: &TestDb, sql: &str, timeout_secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout_secs);
    while db.try_count(sql).await.unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session holding the sync lock in this database, if any.
pub async fn lock_holder(db: &TestDb) -> Option<i32> {
    let database = model_lens_sync::store::connect_pool(&db.url, &Default::default()).expect("a pool");
    model_lens_sync::store::syncs::SyncLock::holder(&database)
        .await
        .expect("read pg_locks")
}
