//! Logs and metrics: the one place where metric names live (DESIGN.md §7).
//!
//! Code elsewhere never names a metric; it calls one of the event functions below, so the
//! names, units and label sets stay consistent and greppable. Labels are bounded: a source,
//! a status, a reason, an actor kind; never a model id or a URL.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, LoggingConfig};
use crate::history::ChangeKind;
use crate::model::{RejectReason, Source};

pub const SYNC_RUNS_TOTAL: &str = "model_lens_sync_runs_total";
pub const SYNC_DURATION_SECONDS: &str = "model_lens_sync_duration_seconds";
pub const LAST_SUCCESSFUL_SYNC_TIMESTAMP_SECONDS: &str = "model_lens_last_successful_sync_timestamp_seconds";
pub const SYNC_IN_PROGRESS: &str = "model_lens_sync_in_progress";
pub const SOURCE_REQUESTS_TOTAL: &str = "model_lens_source_requests_total";
pub const SOURCE_RETRIES_TOTAL: &str = "model_lens_source_retries_total";
pub const SOURCE_FETCH_DURATION_SECONDS: &str = "model_lens_source_fetch_duration_seconds";
pub const SOURCE_MODELS: &str = "model_lens_source_models";
pub const MODELS_STORED_TOTAL: &str = "model_lens_models_stored_total";
pub const MODELS_REJECTED_TOTAL: &str = "model_lens_models_rejected_total";
pub const WRITER_BATCH_ROWS: &str = "model_lens_writer_batch_rows";
pub const WRITER_BATCH_DURATION_SECONDS: &str = "model_lens_writer_batch_duration_seconds";
pub const ACTOR_RESTARTS_TOTAL: &str = "model_lens_actor_restarts_total";
pub const HEALTH_STATUS: &str = "model_lens_health_status";
pub const HEALTH_CHECK_OK: &str = "model_lens_health_check_ok";
pub const DATABASE_UP: &str = "model_lens_database_up";
pub const SOURCE_NEW_FIELDS: &str = "model_lens_source_new_fields";
pub const SOURCE_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "model_lens_source_last_success_timestamp_seconds";
pub const MODEL_CHANGES_TOTAL: &str = "model_lens_model_changes_total";
pub const REMOVALS_HELD_TOTAL: &str = "model_lens_removals_held_total";
pub const REDIS_PUBLISH_TOTAL: &str = "model_lens_redis_publish_total";

/// Every metric name this process exports, for tests and for the dashboard check.
pub const ALL_METRICS: [&str; 21] = [
    SYNC_RUNS_TOTAL,
    SYNC_DURATION_SECONDS,
    LAST_SUCCESSFUL_SYNC_TIMESTAMP_SECONDS,
    SYNC_IN_PROGRESS,
    SOURCE_REQUESTS_TOTAL,
    SOURCE_RETRIES_TOTAL,
    SOURCE_FETCH_DURATION_SECONDS,
    SOURCE_MODELS,
    MODELS_STORED_TOTAL,
    MODELS_REJECTED_TOTAL,
    WRITER_BATCH_ROWS,
    WRITER_BATCH_DURATION_SECONDS,
    ACTOR_RESTARTS_TOTAL,
    HEALTH_STATUS,
    HEALTH_CHECK_OK,
    DATABASE_UP,
    SOURCE_NEW_FIELDS,
    SOURCE_LAST_SUCCESS_TIMESTAMP_SECONDS,
    MODEL_CHANGES_TOTAL,
    REMOVALS_HELD_TOTAL,
    REDIS_PUBLISH_TOTAL,
];

/// Sync statuses as labels of `model_lens_sync_runs_total`.
pub const SYNC_STATUSES: [&str; 4] = ["success", "partial", "failed", "interrupted"];
/// Reasons of `model_lens_source_retries_total` (what `fetch.rs` reports).
pub const RETRY_REASONS: [&str; 7] = [
    "timeout",
    "connect",
    "body",
    "transport",
    "status_408",
    "status_429",
    "status_5xx",
];
/// Outcomes of `model_lens_redis_publish_total` (one per sync published).
pub const REDIS_PUBLISH_OUTCOMES: [&str; 3] = ["success", "error", "timeout"];
/// Actor kinds as labels of `model_lens_actor_restarts_total`.
pub const ACTOR_KINDS: [&str; 3] = ["fetcher", "transformer", "writer"];

const SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const SYNC_SECONDS_BUCKETS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];
const ROWS_BUCKETS: [f64; 10] = [
    1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle for `/metrics`.
/// Histograms get explicit buckets (without them the exporter renders summaries).
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(SYNC_DURATION_SECONDS.into()), &SYNC_SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(SOURCE_FETCH_DURATION_SECONDS.into()), &SECONDS_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(WRITER_BATCH_DURATION_SECONDS.into()), &SECONDS_BUCKETS)
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WRITER_BATCH_ROWS.into()), &ROWS_BUCKETS))
                .expect("bucket lists are non-empty constants");
            let handle = builder
                .install_recorder()
                .expect("the metrics recorder is installed once, here");
            describe_and_initialize();
            handle
        })
        .clone()
}

/// Describes every metric and creates the series whose labels are known in advance, so that
/// `/metrics` lists them from the first scrape and rates start from zero rather than absent.
fn describe_and_initialize() {
    describe_counter!(SYNC_RUNS_TOTAL, "Finished syncs by final status.");
    describe_histogram!(SYNC_DURATION_SECONDS, Unit::Seconds, "Wall time of a sync.");
    describe_gauge!(
        LAST_SUCCESSFUL_SYNC_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful sync."
    );
    describe_gauge!(SYNC_IN_PROGRESS, "1 while a sync runs in this process.");
    describe_counter!(SOURCE_REQUESTS_TOTAL, "HTTP requests to a source by outcome.");
    describe_counter!(SOURCE_RETRIES_TOTAL, "Retried requests to a source by reason.");
    describe_histogram!(
        SOURCE_FETCH_DURATION_SECONDS,
        Unit::Seconds,
        "Time to fetch all pages of a source."
    );
    describe_gauge!(SOURCE_MODELS, "Models stored for a source by the last finished sync.");
    describe_counter!(
        MODELS_STORED_TOTAL,
        "Models a sync recorded (its rows of model_snapshots), unchanged ones included."
    );
    describe_counter!(
        MODELS_REJECTED_TOTAL,
        "Records quarantined in model_rejects, by reason."
    );
    describe_histogram!(WRITER_BATCH_ROWS, "Rows per committed writer batch.");
    describe_histogram!(
        WRITER_BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "Time to commit one writer batch."
    );
    describe_counter!(ACTOR_RESTARTS_TOTAL, "Actors restarted or replaced after a failure.");
    describe_gauge!(HEALTH_STATUS, "0 healthy, 1 warning, 2 critical.");
    describe_gauge!(HEALTH_CHECK_OK, "1 when a health check passes.");
    describe_gauge!(DATABASE_UP, "1 when PostgreSQL answered the last probe.");
    describe_gauge!(
        SOURCE_NEW_FIELDS,
        "Top-level record keys the source's last finished sync stored for the first time (schema drift)."
    );
    describe_gauge!(
        SOURCE_LAST_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the end of the last sync in which the source succeeded."
    );
    describe_counter!(
        MODEL_CHANGES_TOTAL,
        "Changes recorded in model_changes (added, removed, changed, reappeared)."
    );
    describe_counter!(
        REMOVALS_HELD_TOTAL,
        "Complete listings whose removals were held (they lacked too much of the source)."
    );
    describe_counter!(
        REDIS_PUBLISH_TOTAL,
        "Publications of the catalog to Redis after a sync, by outcome."
    );

    for status in SYNC_STATUSES {
        counter!(SYNC_RUNS_TOTAL, "status" => status).absolute(0);
    }
    for actor in ACTOR_KINDS {
        counter!(ACTOR_RESTARTS_TOTAL, "actor" => actor).absolute(0);
    }
    for source in Source::ALL {
        let source = source.as_str();
        counter!(MODELS_STORED_TOTAL, "source" => source).absolute(0);
        for outcome in ["success", "retry", "error"] {
            counter!(SOURCE_REQUESTS_TOTAL, "source" => source, "outcome" => outcome).absolute(0);
        }
        for reason in RETRY_REASONS {
            counter!(SOURCE_RETRIES_TOTAL, "source" => source, "reason" => reason).absolute(0);
        }
        for reason in RejectReason::ALL {
            counter!(MODELS_REJECTED_TOTAL, "source" => source, "reason" => reason.as_str()).absolute(0);
        }
        for kind in ChangeKind::ALL {
            counter!(MODEL_CHANGES_TOTAL, "source" => source, "kind" => kind.as_str()).absolute(0);
        }
        counter!(REMOVALS_HELD_TOTAL, "source" => source).absolute(0);
    }
    gauge!(SYNC_IN_PROGRESS).set(0.0);
    for outcome in REDIS_PUBLISH_OUTCOMES {
        counter!(REDIS_PUBLISH_TOTAL, "outcome" => outcome).absolute(0);
    }
}

pub fn sync_started() {
    gauge!(SYNC_IN_PROGRESS).set(1.0);
}

/// A sync reached its final status. `finished_unix` is set when it succeeded.
pub fn sync_finished(status: &'static str, duration: Duration, success_unix_seconds: Option<f64>) {
    gauge!(SYNC_IN_PROGRESS).set(0.0);
    counter!(SYNC_RUNS_TOTAL, "status" => status).increment(1);
    histogram!(SYNC_DURATION_SECONDS).record(duration.as_secs_f64());
    if let Some(timestamp) = success_unix_seconds {
        gauge!(LAST_SUCCESSFUL_SYNC_TIMESTAMP_SECONDS).set(timestamp);
    }
}

/// The last successful sync as read from the database (at start, so a restart keeps the gauge).
pub fn last_success_observed(unix_seconds: f64) {
    gauge!(LAST_SUCCESSFUL_SYNC_TIMESTAMP_SECONDS).set(unix_seconds);
}

/// One HTTP request to a source ended: `success`, `retry` (will be retried) or `error` (final).
pub fn source_request(source: Source, outcome: &'static str) {
    counter!(SOURCE_REQUESTS_TOTAL, "source" => source.as_str(), "outcome" => outcome).increment(1);
}

/// A request is about to be retried; `reason` is a short fixed word (`timeout`, `status_429`, …).
pub fn source_retry(source: Source, reason: &'static str) {
    counter!(SOURCE_RETRIES_TOTAL, "source" => source.as_str(), "reason" => reason).increment(1);
}

pub fn source_fetched(source: Source, duration: Duration) {
    histogram!(SOURCE_FETCH_DURATION_SECONDS, "source" => source.as_str()).record(duration.as_secs_f64());
}

/// A source finished within a sync with this many rows stored.
pub fn source_models(source: Source, stored: u64) {
    gauge!(SOURCE_MODELS, "source" => source.as_str()).set(stored as f64);
}

pub fn models_stored(source: Source, rows: u64) {
    counter!(MODELS_STORED_TOTAL, "source" => source.as_str()).increment(rows);
}

pub fn models_rejected(source: Source, reason: RejectReason, count: u64) {
    counter!(MODELS_REJECTED_TOTAL, "source" => source.as_str(), "reason" => reason.as_str()).increment(count);
}

pub fn writer_batch_committed(rows: usize, duration: Duration) {
    histogram!(WRITER_BATCH_ROWS).record(rows as f64);
    histogram!(WRITER_BATCH_DURATION_SECONDS).record(duration.as_secs_f64());
}

pub fn actor_restarted(actor: &'static str) {
    counter!(ACTOR_RESTARTS_TOTAL, "actor" => actor).increment(1);
}

pub fn health_evaluated(status: u8, checks: &[(&'static str, bool)]) {
    gauge!(HEALTH_STATUS).set(f64::from(status));
    for (check, ok) in checks {
        gauge!(HEALTH_CHECK_OK, "check" => *check).set(if *ok { 1.0 } else { 0.0 });
    }
}

pub fn database_up(up: bool) {
    gauge!(DATABASE_UP).set(if up { 1.0 } else { 0.0 });
}

/// The drift alarm of a finished source: how many record keys its sync stored first.
pub fn source_new_fields(source: Source, count: usize) {
    gauge!(SOURCE_NEW_FIELDS, "source" => source.as_str()).set(count as f64);
}

/// A source succeeded in a sync that ended at this Unix time (also set at start from the
/// database, so a restart keeps the gauge).
pub fn source_succeeded(source: Source, unix_seconds: f64) {
    gauge!(SOURCE_LAST_SUCCESS_TIMESTAMP_SECONDS, "source" => source.as_str()).set(unix_seconds);
}

/// Changes committed to `model_changes`.
pub fn model_changes(source: Source, kind: ChangeKind, count: u64) {
    counter!(MODEL_CHANGES_TOTAL, "source" => source.as_str(), "kind" => kind.as_str()).increment(count);
}

/// A complete listing lacked too much of its source: nothing was removed.
pub fn removals_held(source: Source) {
    counter!(REMOVALS_HELD_TOTAL, "source" => source.as_str()).increment(1);
}

/// The catalog of a sync was published to Redis (`success`), or not (`error`, `timeout`).
pub fn redis_published(outcome: &'static str) {
    counter!(REDIS_PUBLISH_TOTAL, "outcome" => outcome).increment(1);
}

/// Keeps the log file writers alive; dropping it flushes them.
pub struct LogGuards(#[allow(dead_code)] Vec<tracing_appender::non_blocking::WorkerGuard>);

/// How a command wants its logs when nobody said otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogDefaults {
    /// JSON when `logging.format = "auto"` and stdout is not a terminal (`serve` in a
    /// container); commands run by hand print human text.
    pub json: bool,
    /// Only warnings and errors when stderr is a terminal: a person running `sync` wants the
    /// progress and the result, not every actor's INFO line.
    pub quiet_on_terminal: bool,
    /// `-v` (1: info) or `-vv` (2: debug) on the command line.
    pub verbosity: u8,
}

/// The default filter, loudest wins: `DEBUG=*`, then `-v`/`-vv`, then `logging.level`, then
/// WARN for a command on a terminal, else INFO. (`RUST_LOG`, when set, replaces all of this.)
fn default_level(defaults: LogDefaults, debug_variable: bool, configured: Option<&str>, terminal: bool) -> String {
    match (debug_variable, defaults.verbosity, configured) {
        (true, _, _) | (_, 2.., _) => "model_lens_sync=debug,info".into(),
        (_, 1, _) => "info".into(),
        (_, _, Some(level)) => level.into(),
        _ if defaults.quiet_on_terminal && terminal => "warn".into(),
        _ => "info".into(),
    }
}

/// While a live display draws on stderr (`sync`'s progress lines), log lines are printed
/// through it, above its lines, instead of tearing them.
static LIVE_DISPLAY: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

pub fn set_live_display(display: Option<indicatif::MultiProgress>) {
    if let Ok(mut live) = LIVE_DISPLAY.lock() {
        *live = display;
    }
}

/// Gathers one log line, then writes it to stderr in one piece (through the live display when
/// there is one).
struct StderrLine(Vec<u8>);

impl std::io::Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        use std::io::Write;
        let live = LIVE_DISPLAY.lock().ok().and_then(|live| live.clone());
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match live {
            Some(display) => display.suspend(write),
            None => write(),
        }
    }
}

fn stderr_line() -> StderrLine {
    StderrLine(Vec::with_capacity(256))
}

/// Sets up tracing (see [`LogDefaults`]).
pub fn init_logging(config: &LoggingConfig, defaults: LogDefaults) -> anyhow::Result<LogGuards> {
    let filter = || -> EnvFilter {
        if let Ok(filter) = EnvFilter::try_from_env("RUST_LOG") {
            return filter;
        }
        let debug_everything =
            std::env::var("DEBUG").is_ok_and(|value| value == "*" || value == "1" || value == "true");
        EnvFilter::new(default_level(
            defaults,
            debug_everything,
            config.level.as_deref(),
            std::io::stderr().is_terminal(),
        ))
    };
    let default_json = defaults.json;
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => default_json && !std::io::stdout().is_terminal(),
    };
    let stdout_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(stderr_line)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    };
    let mut layers = vec![stdout_layer.with_filter(filter()).boxed()];
    let mut guards = Vec::new();
    if let Some(dir) = &config.dir {
        std::fs::create_dir_all(dir)
            .map_err(|error| anyhow::anyhow!("cannot create log directory {}: {error}", dir.display()))?;
        let is_health = |meta: &tracing::Metadata<'_>| meta.target().starts_with("model_lens_sync::health");
        let (sync_writer, sync_guard) =
            tracing_appender::non_blocking(tracing_appender::rolling::never(dir, "sync.log"));
        let (health_writer, health_guard) =
            tracing_appender::non_blocking(tracing_appender::rolling::never(dir, "health.log"));
        guards.extend([sync_guard, health_guard]);
        layers.push(
            tracing_subscriber::fmt::layer()
                .json()
                .with_span_list(true)
                .with_writer(sync_writer)
                .with_filter(filter())
                .with_filter(filter_fn(move |meta| !is_health(meta)))
                .boxed(),
        );
        layers.push(
            tracing_subscriber::fmt::layer()
                .json()
                .with_span_list(true)
                .with_writer(health_writer)
                .with_filter(filter())
                .with_filter(filter_fn(is_health))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))?;
    Ok(LogGuards(guards))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_on_a_terminal_are_quiet_unless_asked() {
        let command = LogDefaults {
            json: false,
            quiet_on_terminal: true,
            verbosity: 0,
        };
        assert_eq!(default_level(command, false, None, true), "warn");
        assert_eq!(
            default_level(command, false, None, false),
            "info",
            "redirected output keeps INFO"
        );
        assert_eq!(
            default_level(
                LogDefaults {
                    verbosity: 1,
                    ..command
                },
                false,
                None,
                true
            ),
            "info"
        );
        assert!(default_level(
            LogDefaults {
                verbosity: 2,
                ..command
            },
            false,
            None,
            true
        )
        .contains("debug"));
        assert!(default_level(command, true, None, true).contains("debug"), "DEBUG=*");
        assert_eq!(default_level(command, false, Some("error"), true), "error");
        let serve = LogDefaults {
            json: true,
            quiet_on_terminal: false,
            verbosity: 0,
        };
        assert_eq!(default_level(serve, false, None, true), "info");
    }
}
