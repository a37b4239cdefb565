//! The pipeline's actors (ractor on tokio). See ARCHITECTURE.md for who sends what to whom.
//!
//! Supervisor ─spawns─▶ Fetcher (one per source) ─RawPage─▶ Transformer (one per source)
//!     ▲                                     ─PageRows─▶ Writer (one per sync) ─PagesCommitted─┘
//!
//! Flow control: each page carries a [`messages::PageTicket`] holding a semaphore permit of its
//! source; the fetcher cannot fetch more pages than it has permits, and a permit returns only
//! when the page is committed (or given up). That bounds memory whatever the mailboxes hold.

//! The supervisor is split by concern: `supervisor.rs` (the lifecycle of one sync at a time
//! and the routing of messages), `lifecycle.rs` (starting a sync: lock, orphans, rows),
//! `lock_keeper.rs` (watching and re-taking the sync lock), `ledger.rs` (what is known of a
//! source: pure data and its table tests), `run.rs` (a running sync: ledgers to actor
//! operations), `restart.rs` (the restart policy), `children.rs` (spawning and the registry),
//! `finalize.rs` and `recorder.rs` (the end of a sync and every bookkeeping write).

pub mod children;
pub mod fetcher;
pub mod finalize;
pub mod health;
pub mod ledger;
pub mod lifecycle;
pub mod lock_keeper;
pub mod messages;
pub mod recorder;
pub mod restart;
pub mod run;
pub mod supervisor;
pub mod transformer;
pub mod writer;

use std::sync::Arc;

use crate::config::Config;
use crate::fetch::DailyBudgets;
use crate::store::Database;

/// What every actor of the pipeline may use: shared, read-only or internally synchronized.
#[derive(Clone)]
pub struct Services {
    pub database: Database,
    pub config: Arc<Config>,
    pub budgets: Arc<DailyBudgets>,
}
