//! Layered configuration (DESIGN.md §3): built-in defaults ← `config/default.toml` (or the file
//! named by `MODEL_LENS_CONFIG`) ← `MODEL_LENS_<SECTION>__<KEY>` ← the plain variables of the
//! seed (`DATABASE_URL`, `API_RETRY_MS`, `HF_TOKEN`, `OPENROUTER_API_KEY`,
//! `ARTIFICIAL_ANALYSIS_API_KEY`, `ADMIN_TOKEN`).
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` never show the value.

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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// A libpq-style URL or key=value string. Empty: use the embedded PostgreSQL.
    pub url: Secret,
    /// Where the embedded cluster lives when `url` is empty.
    pub embedded_dir: PathBuf,
    /// Folder holding `initdb` and `postgres` for the embedded cluster; found automatically
    /// (`pg_config --bindir`, `/usr/lib/postgresql/*/bin`, `PATH`) when unset.
    pub postgres_bin_dir: Option<PathBuf>,
    pub pool_size: usize,
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
            embedded_dir: PathBuf::from(".model-lens/postgres"),
            postgres_bin_dir: None,
            pool_size: 8,
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
    /// `restart_window_secs`; then its source (or, for the writer, the sync) fails.
    pub max_restarts: usize,
    pub restart_window_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            timeout_secs: 3600,
            max_pages_in_flight: 8,
            max_restarts: 3,
            restart_window_secs: 60,
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
                path: "/api/v2/data/llms/models".into(),
                requests_per_second: 1,
                burst: 1,
                daily_request_budget: 1000,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            admin_token: Secret::default(),
            request_timeout_secs: 30,
            body_limit_bytes: 64 * 1024,
            shutdown_grace_secs: 25,
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
            let value: figment::value::Value = value
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("{key} has an unreadable value")))?;
            figment = figment.merge((path, value));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        config.apply_plain_variables(env)?;
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
            if config.enabled && url::Url::parse(&config.base_url).is_err() {
                return invalid(format!(
                    "sources.{source}.base_url {:?} is not an absolute URL",
                    config.base_url
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
        if self.database.pool_size < 2 {
            return invalid("database.pool_size must be at least 2".into());
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
        ]))
        .unwrap();
        assert_eq!(config.api.retry_ms, 250);
        assert_eq!(config.sources.artificial_analysis.api_key.expose(), "aa-secret-key");
        let printed = format!("{config:?}");
        for secret in ["hunter2", "aa-secret-key", "admin-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked in Debug output");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let error = Config::load_from(&env(&[("API_RETRY_MS", "soon")])).unwrap_err();
        assert!(error.to_string().contains("API_RETRY_MS"), "{error}");
        let error = Config::load_from(&env(&[("MODEL_LENS_SCHEDULE__CRON", "every day")])).unwrap_err();
        assert!(error.to_string().contains("schedule.cron"), "{error}");
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
