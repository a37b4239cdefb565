//! The pipeline's actors (ractor on tokio). See ARCHITECTURE.md for who sends what to whom.
//!
//! Supervisor ─spawns─▶ Fetcher (one per source) ─RawPage─▶ Transformer (one per source)
//!     ▲                                     ─PageRows─▶ Writer (one per sync) ─PagesCommitted─┘
//!
//! Flow control: each page carries a [`messages::PageTicket`] holding a semaphore permit of its
//! source; the fetcher cannot fetch more pages than it has permits, and a permit returns only
//! when the page is committed (or given up). That bounds memory whatever the mailboxes hold.

pub mod fetcher;
pub mod health;
pub mod messages;
pub mod restart;
pub mod supervisor;
pub mod transformer;
pub mod writer;

use std::sync::Arc;

use crate::config::Config;
use crate::fetch::DailyBudgets;
use crate::progress::SyncProgress;
use crate::store::Database;

/// What every actor of the pipeline may use: shared, read-only or internally synchronized.
#[derive(Clone)]
pub struct Services {
    pub database: Database,
    pub config: Arc<Config>,
    pub budgets: Arc<DailyBudgets>,
    /// Live counters of the running sync (the `sync` command shows them on a terminal).
    pub progress: Arc<SyncProgress>,
}
