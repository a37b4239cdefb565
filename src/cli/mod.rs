//! The command line (DESIGN.md §2): one file per command, this file parses and dispatches.

mod database;
mod health;
mod history;
mod migrate;
mod models;
mod progress;
mod publish;
mod serve;
mod sync;
mod trigger;

use clap::{Parser, Subcommand};

pub use database::DatabaseSession;

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "model-lens-sync",
    version,
    about = "Keeps an always-fresh, queryable history of the AI-model landscape in PostgreSQL",
    long_about = "Fetches models.dev, OpenRouter, Hugging Face and Artificial Analysis, normalizes every \
                  record and stores a time-stamped snapshot of each sync in PostgreSQL.\n\n\
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
    }
}
