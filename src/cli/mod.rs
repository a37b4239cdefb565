//! The command line (DESIGN.md §2): one file per command, this file parses and dispatches.

mod changes;
mod database;
mod health;
mod history;
mod migrate;
mod model_history;
mod models;
mod progress;
mod publish;
mod serve;
mod sync;
mod trigger;

use clap::{Parser, Subcommand};

pub use database::DatabaseSession;

use crate::config::Config;
use crate::history::ChangeKind;
use crate::model::Source;

#[derive(Debug, Parser)]
#[command(
    name = "model-lens-sync",
    version,
    about = "Keeps an always-fresh, queryable history of the AI-model landscape in PostgreSQL",
    long_about = "Fetches models.dev, OpenRouter, Hugging Face and Artificial Analysis, normalizes every \
                  record and keeps its history in PostgreSQL: each distinct version of a model once, and \
                  what changed (`changes`, `history`).\n\n\
                  Configuration: config/default.toml (or MODEL_LENS_CONFIG), MODEL_LENS_<SECTION>__<KEY> \
                  variables, DATABASE_URL (unset: an embedded PostgreSQL under .model-lens/postgres)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on a terminal: -v for info, -vv for debug (RUST_LOG wins over both).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the long-lived worker: schedule, admin API, /metrics, /healthz, /readyz.
    Serve,
    /// Run one sync now and print a per-source summary (exit 0 success, 1 partial, 2 failed).
    Sync {
        /// Print the result as JSON instead of a table (and no live progress).
        #[arg(long)]
        json: bool,
        /// Sync only this source (repeatable, or comma-separated); the others are `skipped`
        /// and keep their current catalog. Valid: models_dev, openrouter, huggingface,
        /// artificial_analysis.
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
    },
    /// Check sync health (exit 0 healthy, 1 warning, 2 critical).
    #[command(alias = "check-sync-health")]
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Show recent syncs, one line each (`syncs show ID` for one sync's per-source detail).
    Syncs {
        #[command(subcommand)]
        show: Option<SyncsCommand>,
        #[arg(long, default_value_t = 10)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// List the current catalog: filters, a sort, pages with a cursor (like GET /api/models).
    Models(models::ModelsArgs),
    /// Write the current catalog to Redis now, without a sync (REDIS_URL; exit 0 published,
    /// 1 nothing to publish, 2 error).
    Publish,
    /// Ask a running `serve` to sync now (exit 0 accepted, 1 already running, 2 error).
    Trigger {
        /// Base URL of the worker; default http://<http.listen>.
        #[arg(long)]
        url: Option<String>,
        /// Sync only this source (repeatable); the others are `skipped`.
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
    },
    /// Apply the database migrations of sql/ (also done at the start of serve and sync).
    Migrate,
    /// Show what changed: models added, removed, repriced or otherwise changed (default: the
    /// syncs that started in the last 24 hours).
    Changes {
        /// Changes recorded by the syncs after this sync id (instead of the last 24 hours).
        #[arg(long, value_name = "N")]
        since_sync: Option<i64>,
        /// Only this source (models_dev, openrouter, huggingface, artificial_analysis).
        #[arg(long, value_parser = parse_source)]
        source: Option<Source>,
        /// Only this kind of change (added, removed, changed, reappeared).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ChangeKind>,
        /// At most this many changes, oldest first.
        #[arg(long, default_value_t = 500)]
        limit: i64,
        /// Print a JSON array of model_changes rows instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one model's versions with their validity, its price timeline and its changes
    /// (exit 1 when the source never listed it).
    History {
        /// The source that lists the model.
        #[arg(long, value_parser = parse_source)]
        source: Source,
        /// The provider (models.dev lists a model under several); default: every provider.
        #[arg(long)]
        provider: Option<String>,
        /// The source's own id of the model.
        model_id: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_source(name: &str) -> Result<Source, String> {
    Source::parse(name).ok_or_else(|| {
        format!("unknown source {name:?}; one of models_dev, openrouter, huggingface, artificial_analysis")
    })
}

fn parse_kind(name: &str) -> Result<ChangeKind, String> {
    ChangeKind::parse(name).ok_or_else(|| format!("unknown kind {name:?}; one of added, removed, changed, reappeared"))
}

#[derive(Debug, Subcommand)]
pub enum SyncsCommand {
    /// One sync in detail: every source's status, counts, requests, bytes, time and error.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

/// `1234567` → `1,234,567`: counts read at a glance in tables and progress lines.
pub(crate) fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints to stdout; a reader that went away (`models | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Runs a command and returns the process exit code.
pub async fn run(command: Command, config: Config) -> anyhow::Result<i32> {
    match command {
        Command::Serve => serve::run(config).await,
        Command::Sync { json, sources } => sync::run(config, json, &sources).await,
        Command::Health { json } => health::run(config, json).await,
        Command::Syncs {
            show: None,
            limit,
            json,
        } => history::run(config, limit, json).await,
        Command::Syncs {
            show: Some(SyncsCommand::Show { id, json }),
            ..
        } => history::show(config, id, json).await,
        Command::Models(args) => models::run(config, args).await,
        Command::Trigger { url, sources } => trigger::run(config, url, &sources).await,
        Command::Migrate => migrate::run(config).await,
        Command::Publish => publish::run(config).await,
        Command::Changes {
            since_sync,
            source,
            kind,
            limit,
            json,
        } => {
            let args = changes::ChangesArgs {
                since_sync,
                source,
                kind,
                limit,
                json,
            };
            changes::run(config, args).await
        }
        Command::History {
            source,
            provider,
            model_id,
            json,
        } => model_history::run(config, source, provider, model_id, json).await,
    }
}
