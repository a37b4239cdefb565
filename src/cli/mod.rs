//! The command line (DESIGN.md §2): one file per command, this file parses and dispatches.

mod database;
mod health;
mod history;
mod migrate;
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the long-lived worker: schedule, admin API, /metrics, /healthz, /readyz.
    Serve,
    /// Run one sync now and print a per-source summary (exit 0 success, 1 partial, 2 failed).
    Sync {
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check sync health (exit 0 healthy, 1 warning, 2 critical).
    #[command(alias = "check-sync-health")]
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Show recent syncs with their per-source results.
    Syncs {
        #[arg(long, default_value_t = 10)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Ask a running `serve` to sync now (exit 0 accepted, 1 already running, 2 error).
    Trigger {
        /// Base URL of the worker; default http://<http.listen>.
        #[arg(long)]
        url: Option<String>,
    },
    /// Apply the database migrations of sql/ (also done at the start of serve and sync).
    Migrate,
}

/// Runs a command and returns the process exit code.
pub async fn run(command: Command, config: Config) -> anyhow::Result<i32> {
    match command {
        Command::Serve => serve::run(config).await,
        Command::Sync { json } => sync::run(config, json).await,
        Command::Health { json } => health::run(config, json).await,
        Command::Syncs { limit, json } => history::run(config, limit, json).await,
        Command::Trigger { url } => trigger::run(config, url).await,
        Command::Migrate => migrate::run(config).await,
    }
}
