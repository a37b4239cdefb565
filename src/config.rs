//! Layered configuration (DESIGN.md §3): built-in defaults ← `config/default.toml` (or the file
//! named by `MODEL_LENS_CONFIG`) ← `MODEL_LENS_<SECTION>__<KEY>` ← the plain variables of the
//! seed (`DATABASE_URL`, `API_RETRY_MS`, `HF_TOKEN`, `OPENROUTER_API_KEY`,
//! `ARTIFICIAL_ANALYSIS_API_KEY`, `ADMIN_TOKEN`), and `REDIS_URL`.
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` never show the value, and no
//! configuration error ever shows a value (a mistyped secret would be printed otherwise). The
//! plain secret variables may also come as files of a credentials directory
//! (`$CREDENTIALS_DIRECTORY/DATABASE_URL`, as systemd's `LoadCredential=` provides them), so that
//! they need not be in the process environment at all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::model::Source;

const DEFAULT_CONFIG_FILE: &str = "config/default.toml";
const DEFAULT_EMBEDDED_DIR: &str = ".model-lens/postgres";

/// The plain variables that hold secrets (DESIGN.md §3); also the names of the credential files.
pub const SECRET_VARIABLES: [&str; 5] = [
    "DATABASE_URL",
    "ADMIN_TOKEN",
    "HF_TOKEN",
    "OPENROUTER_API_KEY",
    "ARTIFICIAL_ANALYSIS_API_KEY",
];

/// Whether a dotted key (`http.admin_token`) holds a secret: its value is taken verbatim from
/// the environment (never read as a number: `0123` stays `0123`) and never printed.
fn is_secret_key(path: &str) -> bool {
    path == "database.url"
        || path == "http.admin_token"
        || path
            .strip_prefix("sources.")
            .is_some_and(|rest| rest.ends_with(".api_key"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} (from MODEL_LENS_CONFIG) does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A value that must never be printed: tokens, API keys, passwords in URLs.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"[redacted]\"" })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub sync: SyncConfig,
    pub writer: WriterConfig,
    pub api: ApiConfig,
    pub sources: SourcesConfig,
    pub schedule: ScheduleConfig,
    pub http: HttpConfig,
    pub health: HealthConfig,
    pub logging: LoggingConfig,
    pub history: HistoryConfig,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// A libpq-style URL or key=value string. Empty: use the embedded PostgreSQL.
    pub url: Secret,
    /// Where the embedded cluster lives when `url` is empty.
    pub embedded_dir: PathBuf,
    /// Where root keeps the default embedded cluster when the `postgres` account cannot enter
    /// the working folder (root's home, a `mktemp -d` folder): `<this>/<project>-<hash>`.
    pub embedded_fallback_dir: PathBuf,
    /// Folder holding `initdb` and `postgres` for the embedded cluster; found automatically
    /// (`pg_config --bindir`, `/usr/lib/postgresql/*/bin`, `PATH`) when unset.
    pub postgres_bin_dir: Option<PathBuf>,
    pub pool_size: usize,
    /// Connections of the separate pool of the unauthenticated probes (`/readyz`, health).
    pub probe_pool_size: usize,
    pub connect_timeout_secs: u64,
    /// How long a caller waits for a free pooled connection.
    pub pool_wait_timeout_secs: u64,
    pub statement_timeout_secs: u64,
    /// Keepalive idle time, so a vanished server is noticed in seconds.
    pub keepalive_idle_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::default(),
            embedded_dir: PathBuf::from(DEFAULT_EMBEDDED_DIR),
            embedded_fallback_dir: PathBuf::from("/var/lib/model-lens"),
            postgres_bin_dir: None,
            pool_size: 8,
            probe_pool_size: 2,
            connect_timeout_secs: 5,
            pool_wait_timeout_secs: 10,
            statement_timeout_secs: 120,
            keepalive_idle_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SyncConfig {
    /// A sync still running after this long fails its unfinished sources.
    pub timeout_secs: u64,
    /// Pages a fetcher may have in flight (fetched but not yet committed): the memory bound.
    pub max_pages_in_flight: usize,
    /// A crashed fetcher, transformer or writer is restarted at most this many times within
    /// `restart_window_secs`; then its source (or, for the writer, every unfinished source)
    /// fails. Each actor has its own count.
    pub max_restarts: usize,
    pub restart_window_secs: u64,
    /// How often the sync lock's session is asked for a sign of life (and how long it may take
    /// to answer) while a sync runs.
    pub lock_check_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            timeout_secs: 3600,
            max_pages_in_flight: 8,
            max_restarts: 3,
            restart_window_secs: 60,
            lock_check_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WriterConfig {
    /// A batch is written once it holds this many rows (whole pages are never split).
    pub batch_size: usize,
    /// ...or once its oldest page has waited this long.
    pub flush_interval_ms: u64,
    pub max_batches_per_second: u32,
    /// Attempts after the first before a batch's sources are failed. With the backoff below,
    /// the defaults ride out about a minute of database outage.
    pub max_retries: u32,
    /// First delay between attempts; doubled each time up to 30 s.
    pub retry_base_ms: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_size: 5000,
            flush_interval_ms: 500,
            max_batches_per_second: 50,
            max_retries: 8,
            retry_base_ms: 500,
        }
    }
}

impl WriterConfig {
    /// The wait between attempts of a database write (batches and bookkeeping).
    pub fn retry_backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(Duration::from_millis(self.retry_base_ms), Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ApiConfig {
    /// First retry delay (the seed's `API_RETRY_MS`); later ones back off exponentially.
    pub retry_ms: u64,
    /// The longest single backoff delay.
    pub max_retry_delay_ms: u64,
    /// The longest `Retry-After` we honour; a longer one is cut to this.
    pub max_retry_after_secs: u64,
    pub user_agent: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            retry_ms: 1000,
            max_retry_delay_ms: 30_000,
            max_retry_after_secs: 120,
            user_agent: format!("model-lens-sync/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One source's settings. Defaults differ per source, so they come from
/// [`SourcesConfig::default`] through figment's value-level merge, not from serde.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SourceConfig {
    pub enabled: bool,
    /// Scheme and host (and optional prefix); the fetcher appends the API path.
    pub base_url: String,
    /// The API path appended to `base_url`.
    pub path: String,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Longest silence between two reads of a response body.
    pub read_timeout_secs: u64,
    pub requests_per_second: u32,
    pub burst: u32,
    pub max_retries: u32,
    /// Largest response body accepted, counted after decompression.
    pub max_response_bytes: u64,
    pub max_pages: u64,
    /// Bearer token or API key; from `HF_TOKEN`, `OPENROUTER_API_KEY`,
    /// `ARTIFICIAL_ANALYSIS_API_KEY`.
    pub api_key: Secret,
    /// Requests allowed per UTC day (0 = unlimited); Artificial Analysis' free tier allows 1,000.
    pub daily_request_budget: u64,
    /// Hugging Face: items per page (the API serves at most 1,000).
    pub page_size: u32,
    /// Hugging Face: stop after this many models (0 = all).
    pub max_models: u64,
    pub sort: String,
    pub direction: i32,
    /// Hugging Face: extra query parameters such as `pipeline_tag = "text-generation"`.
    pub filters: BTreeMap<String, String>,
}

impl SourceConfig {
    fn for_source(source: Source) -> SourceConfig {
        let base = SourceConfig {
            enabled: true,
            base_url: String::new(),
            path: String::new(),
            timeout_secs: 120,
            connect_timeout_secs: 10,
            read_timeout_secs: 30,
            requests_per_second: 5,
            burst: 5,
            max_retries: 4,
            max_response_bytes: 64 * 1024 * 1024,
            max_pages: 1,
            api_key: Secret::default(),
            daily_request_budget: 0,
            page_size: 1000,
            max_models: 0,
            sort: "downloads".into(),
            direction: -1,
            filters: BTreeMap::new(),
        };
        match source {
            Source::ModelsDev => SourceConfig {
                base_url: "https://models.dev".into(),
                path: "/api.json".into(),
                ..base
            },
            Source::OpenRouter => SourceConfig {
                base_url: "https://openrouter.ai".into(),
                path: "/api/v1/models".into(),
                // The list may be paged (`links.next`): a few hundred models a page.
                max_pages: 1_000,
                ..base
            },
            Source::HuggingFace => SourceConfig {
                base_url: "https://huggingface.co".into(),
                path: "/api/models".into(),
                requests_per_second: 2,
                burst: 2,
                max_pages: 10_000,
                max_models: 10_000,
                ..base
            },
            Source::ArtificialAnalysis => SourceConfig {
                base_url: "https://artificialanalysis.ai".into(),
                // The free tier; the paid tier is `/api/v2/language/models`. The former
                // `/api/v2/data/llms/models` answers 410 Gone since 2026-11-04.
                path: crate::sources::artificial_analysis::DEFAULT_PATH.into(),
                requests_per_second: 1,
                burst: 1,
                daily_request_budget: 1000,
                // Paged with `?page=N`; each page is one request of the daily budget.
                max_pages: 200,
                ..base
            },
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SourcesConfig {
    pub models_dev: SourceConfig,
    pub openrouter: SourceConfig,
    pub huggingface: SourceConfig,
    pub artificial_analysis: SourceConfig,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            models_dev: SourceConfig::for_source(Source::ModelsDev),
            openrouter: SourceConfig::for_source(Source::OpenRouter),
            huggingface: SourceConfig::for_source(Source::HuggingFace),
            artificial_analysis: SourceConfig::for_source(Source::ArtificialAnalysis),
        }
    }
}

impl SourcesConfig {
    pub fn get(&self, source: Source) -> &SourceConfig {
        match source {
            Source::ModelsDev => &self.models_dev,
            Source::OpenRouter => &self.openrouter,
            Source::HuggingFace => &self.huggingface,
            Source::ArtificialAnalysis => &self.artificial_analysis,
        }
    }

    /// Why `source` does not run, if it does not: disabled, or Artificial Analysis without a
    /// key (its API answers nothing without one).
    pub fn skip_reason(&self, source: Source) -> Option<String> {
        let config = self.get(source);
        if !config.enabled {
            return Some(format!("disabled (sources.{source}.enabled = false)"));
        }
        if source == Source::ArtificialAnalysis && config.api_key.is_empty() {
            return Some("no ARTIFICIAL_ANALYSIS_API_KEY set".into());
        }
        None
    }

    /// The sources a sync runs (see [`SourcesConfig::skip_reason`]).
    pub fn enabled(&self) -> Vec<Source> {
        Source::ALL
            .into_iter()
            .filter(|source| self.skip_reason(*source).is_none())
            .collect()
    }

    fn get_mut(&mut self, source: Source) -> &mut SourceConfig {
        match source {
            Source::ModelsDev => &mut self.models_dev,
            Source::OpenRouter => &mut self.openrouter,
            Source::HuggingFace => &mut self.huggingface,
            Source::ArtificialAnalysis => &mut self.artificial_analysis,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ScheduleConfig {
    pub enabled: bool,
    /// Standard five-field cron expression, evaluated in UTC.
    pub cron: String,
    /// Also sync once when `serve` starts.
    pub run_on_start: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            enabled: true,
            cron: "0 2 * * *".into(),
            run_on_start: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token for the admin routes (`ADMIN_TOKEN`). Empty: loopback clients only.
    pub admin_token: Secret,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// How long `serve` lets a running sync finish after SIGTERM before marking it interrupted.
    pub shutdown_grace_secs: u64,
    /// The whole request head must arrive within this (also the wait for the next request on
    /// a kept-alive connection): a client that sends headers slowly is cut off.
    pub header_read_timeout_secs: u64,
    /// A connection on which no byte moves for this long is closed.
    pub idle_timeout_secs: u64,
    /// Open connections at most; further clients wait until one closes.
    pub max_connections: usize,
    /// How long a `/readyz` answer is reused (probes never query the database more often).
    pub readiness_cache_secs: u64,
    /// `GET /api/models` without the admin token (the catalog is public data).
    pub public_read: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            admin_token: Secret::default(),
            request_timeout_secs: 30,
            body_limit_bytes: 64 * 1024,
            shutdown_grace_secs: 25,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 256,
            readiness_cache_secs: 2,
            public_read: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HealthConfig {
    pub max_sync_age_hours: f64,
    pub min_expected_models: i64,
    /// Percent of the recent syncs that may fail before the health is a warning.
    pub max_failure_rate: f64,
    pub recent_syncs_to_check: i64,
    /// How often the health actor re-evaluates in `serve`.
    pub interval_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            max_sync_age_hours: 25.0,
            min_expected_models: 100,
            max_failure_rate: 20.0,
            recent_syncs_to_check: 10,
            interval_secs: 30,
        }
    }
}

/// Publishing the catalog to Redis after each sync (DESIGN.md §10). Off while `url` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`REDIS_URL`). Empty: no publishing.
    pub url: Secret,
    /// Expiry of the published hashes: readers never see a catalog older than this.
    pub ttl_secs: u64,
    /// Models per `HSET` (and rows per database fetch): the memory bound of a publication.
    pub chunk_size: usize,
    /// Longest wait for one Redis answer (or connection) before the publication gives up.
    pub command_timeout_secs: u64,
    /// Longest a whole publication may take; `sync` waits at most this long for it.
    pub publish_timeout_secs: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::default(),
            ttl_secs: 86_400,
            chunk_size: 1000,
            command_timeout_secs: 5,
            publish_timeout_secs: 300,
        }
    }
}

impl RedisConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// When set, also write `sync.log` and `health.log` there.
    pub dir: Option<PathBuf>,
    /// A tracing filter such as `info` or `model_lens_sync=debug`; `RUST_LOG` wins.
    pub level: Option<String>,
}

/// The sanity rules of history (DESIGN.md §8).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HistoryConfig {
    /// A complete listing that lacks more than this percent of the source's current models
    /// removes nothing (`model_sync_sources.removals_held`): an upstream serving a short list
    /// for a day must not delete half the catalog.
    pub max_removed_percent: f64,
    /// A price that moves by at least this factor (or to or from zero) is recorded with a
    /// `hold_reason` in `model_changes`.
    pub price_jump_factor: f64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_removed_percent: 10.0,
            price_jump_factor: 10.0,
        }
    }
}

impl Config {
    /// Loads the layers in order; `env` is the process environment (a parameter for tests).
    pub fn load_from(env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let file = match env.get("MODEL_LENS_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    return Err(ConfigError::MissingFile(path));
                }
                Some(path)
            }
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.exists()),
        };
        // Defaults as the bottom layer: a file or variable that sets one key of a section
        // keeps the built-in values of the others.
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &file {
            figment = figment.merge(Toml::file(path));
        }
        // `MODEL_LENS_SOURCES__HUGGINGFACE__BASE_URL` becomes `sources.huggingface.base_url`;
        // values are parsed like figment's own Env provider does (numbers, booleans, strings).
        for (key, value) in env {
            let Some(path) = key.strip_prefix("MODEL_LENS_") else {
                continue;
            };
            if !path.contains("__") {
                continue;
            }
            let path = path.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value = if is_secret_key(&path) {
                value.clone().into()
            } else {
                value
                    .parse()
                    .map_err(|_| ConfigError::Invalid(format!("{key} has an unreadable value")))?
            };
            figment = figment.merge((path, value));
        }
        let mut config: Config = figment.extract().map_err(describe_figment_error)?;
        let env = with_credentials(env)?;
        config.apply_plain_variables(&env)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the real process environment.
    pub fn load() -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Config::load_from(&env)
    }

    fn apply_plain_variables(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let non_empty = |key: &str| env.get(key).filter(|value| !value.is_empty());
        if let Some(url) = non_empty("DATABASE_URL") {
            self.database.url = Secret::new(url.clone());
        }
        if let Some(value) = non_empty("API_RETRY_MS") {
            self.api.retry_ms = value.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "API_RETRY_MS must be a whole number of milliseconds, got {value:?}"
                ))
            })?;
        }
        if let Some(token) = non_empty("ADMIN_TOKEN") {
            self.http.admin_token = Secret::new(token.clone());
        }
        if let Some(url) = non_empty("REDIS_URL") {
            self.redis.url = Secret::new(url.clone());
        }
        let keys = [
            (Source::HuggingFace, "HF_TOKEN"),
            (Source::OpenRouter, "OPENROUTER_API_KEY"),
            (Source::ArtificialAnalysis, "ARTIFICIAL_ANALYSIS_API_KEY"),
        ];
        for (source, variable) in keys {
            if let Some(key) = non_empty(variable) {
                self.sources.get_mut(source).api_key = Secret::new(key.clone());
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        for source in Source::ALL {
            let config = self.sources.get(source);
            // The value is not shown: a URL may carry credentials.
            if config.enabled && url::Url::parse(&config.base_url).is_err() {
                return invalid(format!(
                    "sources.{source}.base_url is not an absolute URL (scheme and host, e.g. https://huggingface.co)"
                ));
            }
            if config.requests_per_second == 0 {
                return invalid(format!("sources.{source}.requests_per_second must be at least 1"));
            }
        }
        let huggingface = &self.sources.huggingface;
        if huggingface.page_size == 0 || huggingface.page_size > 1000 {
            return invalid("sources.huggingface.page_size must be between 1 and 1000".into());
        }
        if self.sync.max_pages_in_flight == 0 {
            return invalid("sync.max_pages_in_flight must be at least 1".into());
        }
        if self.writer.batch_size == 0 || self.writer.max_batches_per_second == 0 {
            return invalid("writer.batch_size and writer.max_batches_per_second must be at least 1".into());
        }
        if !(0.0..=100.0).contains(&self.history.max_removed_percent) {
            return invalid("history.max_removed_percent must be between 0 and 100".into());
        }
        if !(self.history.price_jump_factor > 1.0 && self.history.price_jump_factor.is_finite()) {
            return invalid("history.price_jump_factor must be a number greater than 1".into());
        }
        if self.redis.enabled() {
            // The URL may hold a password: the error names the setting, never the value.
            if let Err(error) = redis::Client::open(self.redis.url.expose()) {
                return invalid(format!(
                    "REDIS_URL (redis.url) is not a usable Redis URL ({:?}); expected \
                     redis://[user:password@]host:port[/db] or unix:///path/to/redis.sock",
                    error.kind()
                ));
            }
            if self.redis.chunk_size == 0 || self.redis.ttl_secs == 0 {
                return invalid("redis.chunk_size and redis.ttl_secs must be at least 1".into());
            }
        }
        if self.database.pool_size < 2 {
            return invalid("database.pool_size must be at least 2".into());
        }
        let http = &self.http;
        if http.header_read_timeout_secs == 0 || http.idle_timeout_secs == 0 || http.max_connections == 0 {
            return invalid(
                "http.header_read_timeout_secs, http.idle_timeout_secs and http.max_connections must be at least 1"
                    .into(),
            );
        }
        if http.idle_timeout_secs < http.request_timeout_secs {
            return invalid("http.idle_timeout_secs must be at least http.request_timeout_secs".into());
        }
        if self.database.probe_pool_size == 0 {
            return invalid("database.probe_pool_size must be at least 1".into());
        }
        if self.schedule.enabled {
            if let Err(error) = self.schedule.cron.parse::<croner::Cron>() {
                return invalid(format!(
                    "schedule.cron {:?} is not a valid cron expression: {error}",
                    self.schedule.cron
                ));
            }
        }
        Ok(())
    }

    /// Whether `sync` must start the embedded PostgreSQL.
    pub fn uses_embedded_database(&self) -> bool {
        self.database.url.is_empty()
    }

    pub fn embedded_dir(&self) -> &Path {
        &self.database.embedded_dir
    }

    /// Whether `embedded_dir` is the built-in default (which, for root in a private folder,
    /// moves to `embedded_fallback_dir`; a folder chosen explicitly never moves).
    pub fn embedded_dir_is_default(&self) -> bool {
        self.database.embedded_dir == Path::new(DEFAULT_EMBEDDED_DIR)
    }
}

/// The environment plus, for each secret variable that is unset or empty, the content of the
/// file of that name in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), trailing newlines
/// trimmed.
fn with_credentials(env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = env.clone();
    let Some(dir) = env.get("CREDENTIALS_DIRECTORY").filter(|dir| !dir.is_empty()).cloned() else {
        return Ok(env);
    };
    for name in SECRET_VARIABLES {
        if env.get(name).is_some_and(|value| !value.is_empty()) {
            continue;
        }
        let path = Path::new(&dir).join(name);
        match std::fs::read_to_string(&path) {
            Ok(value) => {
                env.insert(name.to_string(), value.trim_end_matches(['\r', '\n']).to_string());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(ConfigError::Invalid(format!(
                    "cannot read the credential {} ({error})",
                    path.display()
                )))
            }
        }
    }
    Ok(env)
}

/// figment's own messages include the offending value (`found unsigned int `831200994455``),
/// which for a secret key is the secret. This says which key, what was expected and what kind
/// of value was found, never the value.
fn describe_figment_error(error: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let messages: Vec<String> = error
        .into_iter()
        .map(|error| {
            let key = if error.path.is_empty() {
                "the configuration".to_string()
            } else {
                error.path.join(".")
            };
            let problem = match &error.kind {
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!("expected {expected}, found {}", kind_of_value(actual))
                }
                Kind::InvalidLength(_, expected) => format!("expected {expected}"),
                Kind::UnknownVariant(_, expected) => format!("expected one of: {}", expected.join(", ")),
                Kind::UnknownField(field, _) => format!("unknown key {field}"),
                Kind::MissingField(field) => format!("missing key {field}"),
                Kind::DuplicateField(field) => format!("duplicate key {field}"),
                Kind::Message(message) if !is_secret_key(&key) => message.clone(),
                _ => "invalid value".to_string(),
            };
            let origin = error
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.source.as_ref())
                .map(|source| format!(" (in {source})"))
                .unwrap_or_default();
            format!("{key}: {problem}{origin}")
        })
        .collect();
    ConfigError::Invalid(messages.join("; "))
}

/// The kind of a value, without the value.
fn kind_of_value(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map | Actual::NewtypeStruct => "a table",
        _ => "another kind of value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // Tests must not depend on the developer's config/default.toml.
        map.entry("MODEL_LENS_CONFIG".into())
            .or_insert_with(|| concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml").into());
        map
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::load_from(&env(&[])).unwrap();
        assert_eq!(config.schedule.cron, "0 2 * * *");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.health.max_sync_age_hours, 25.0);
        assert_eq!(config.health.min_expected_models, 100);
        assert!(config.uses_embedded_database());
    }

    #[test]
    fn nested_environment_overrides_win_over_the_file() {
        let config = Config::load_from(&env(&[
            ("MODEL_LENS_SOURCES__HUGGINGFACE__BASE_URL", "http://127.0.0.1:9000"),
            ("MODEL_LENS_SOURCES__HUGGINGFACE__MAX_MODELS", "42"),
            ("MODEL_LENS_WRITER__BATCH_SIZE", "77"),
        ]))
        .unwrap();
        assert_eq!(config.sources.huggingface.base_url, "http://127.0.0.1:9000");
        assert_eq!(config.sources.huggingface.max_models, 42);
        assert_eq!(config.writer.batch_size, 77);
    }

    #[test]
    fn plain_seed_variables_apply_and_secrets_stay_hidden() {
        let config = Config::load_from(&env(&[
            ("DATABASE_URL", "postgres://user:hunter2@localhost/db"),
            ("API_RETRY_MS", "250"),
            ("ARTIFICIAL_ANALYSIS_API_KEY", "aa-secret-key"),
            ("ADMIN_TOKEN", "admin-secret"),
            ("REDIS_URL", "redis://:redis-secret@127.0.0.1:6379/0"),
        ]))
        .unwrap();
        assert!(config.redis.enabled());
        assert_eq!(config.redis.ttl_secs, 86_400);
        assert_eq!(config.api.retry_ms, 250);
        assert_eq!(config.sources.artificial_analysis.api_key.expose(), "aa-secret-key");
        let printed = format!("{config:?}");
        for secret in ["hunter2", "aa-secret-key", "admin-secret", "redis-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked in Debug output");
        }
    }

    #[test]
    fn numeric_secrets_are_kept_verbatim_from_the_environment() {
        let config = Config::load_from(&env(&[
            ("MODEL_LENS_HTTP__ADMIN_TOKEN", "831200994455"),
            ("MODEL_LENS_SOURCES__HUGGINGFACE__API_KEY", "0123"),
            ("MODEL_LENS_DATABASE__URL", "1e5"),
        ]))
        .unwrap();
        assert_eq!(config.http.admin_token.expose(), "831200994455");
        assert_eq!(config.sources.huggingface.api_key.expose(), "0123");
        assert_eq!(config.database.url.expose(), "1e5");
    }

    #[test]
    fn configuration_errors_never_print_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[http]\nadmin_token = 831200994455\n[sources.openrouter]\napi_key = 5550123467\n",
        )
        .unwrap();
        let error = Config::load_from(&env(&[("MODEL_LENS_CONFIG", file.to_str().unwrap())])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("http.admin_token"), "{text}");
        assert!(text.contains("expected a string, found an integer"), "{text}");
        for secret in ["831200994455", "5550123467"] {
            assert!(!text.contains(secret), "{text}");
        }
        // Wrong types and values of other keys: the key is named, the value is not.
        for (key, value) in [
            ("MODEL_LENS_HTTP__LISTEN", "831200994455"),
            ("MODEL_LENS_HTTP__LISTEN", "secret-host-7731:99"),
            ("MODEL_LENS_WRITER__BATCH_SIZE", "seven-7731"),
            ("MODEL_LENS_LOGGING__FORMAT", "xml-7731"),
            ("MODEL_LENS_SOURCES__HUGGINGFACE__BASE_URL", "hf-token-7731@no-scheme"),
        ] {
            let error = Config::load_from(&env(&[(key, value)])).unwrap_err().to_string();
            let expected_key = key
                .trim_start_matches("MODEL_LENS_")
                .to_ascii_lowercase()
                .replace("__", ".");
            assert!(error.contains(&expected_key), "{key}: {error}");
            assert!(
                !error.contains("7731") && !error.contains("831200994455"),
                "{key}: {error}"
            );
        }
    }

    #[test]
    fn secrets_may_come_from_a_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("DATABASE_URL"), "postgres://u:p@db/app\n").unwrap();
        std::fs::write(dir.path().join("ADMIN_TOKEN"), "from-a-file").unwrap();
        let credentials = dir.path().to_str().unwrap();
        let config = Config::load_from(&env(&[
            ("CREDENTIALS_DIRECTORY", credentials),
            ("ADMIN_TOKEN", "from-the-environment"),
        ]))
        .unwrap();
        assert_eq!(config.database.url.expose(), "postgres://u:p@db/app");
        // A variable that is set wins over the file.
        assert_eq!(config.http.admin_token.expose(), "from-the-environment");
        assert!(config.sources.huggingface.api_key.is_empty());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let error = Config::load_from(&env(&[("API_RETRY_MS", "soon")])).unwrap_err();
        assert!(error.to_string().contains("API_RETRY_MS"), "{error}");
        let error = Config::load_from(&env(&[("MODEL_LENS_SCHEDULE__CRON", "every day")])).unwrap_err();
        assert!(error.to_string().contains("schedule.cron"), "{error}");
        let error = Config::load_from(&env(&[("REDIS_URL", "http://:pw-secret@localhost")])).unwrap_err();
        assert!(
            error.to_string().contains("REDIS_URL") && !error.to_string().contains("pw-secret"),
            "{error}"
        );
        let error = Config::load_from(&env(&[("MODEL_LENS_CONFIG", "/nonexistent.toml")])).unwrap_err();
        assert!(matches!(error, ConfigError::MissingFile(_)));
    }

    #[test]
    fn history_rules_default_to_the_design_and_refuse_nonsense() {
        let config = Config::load_from(&env(&[])).unwrap();
        assert_eq!(config.history.max_removed_percent, 10.0);
        assert_eq!(config.history.price_jump_factor, 10.0);
        let raised = Config::load_from(&env(&[("MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT", "50")])).unwrap();
        assert_eq!(raised.history.max_removed_percent, 50.0);
        for (key, value, message) in [
            (
                "MODEL_LENS_HISTORY__MAX_REMOVED_PERCENT",
                "150",
                "history.max_removed_percent",
            ),
            (
                "MODEL_LENS_HISTORY__PRICE_JUMP_FACTOR",
                "1",
                "history.price_jump_factor",
            ),
        ] {
            let error = Config::load_from(&env(&[(key, value)])).unwrap_err();
            assert!(error.to_string().contains(message), "{error}");
        }
    }
}
