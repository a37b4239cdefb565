//! History in SQL (DESIGN.md §8): the batch write that compares records with the current
//! versions and writes only what changed (`source_batch.rs`), the end of a source's listing
//! that closes what a listing lacked (`listing.rs`), and what a running sync has recorded
//! (`seen.rs`). The decisions come from `crate::history`; these files only move data.
//!
//! A batch, per source, in one transaction:
//! 1. one read-only index probe per record into `model_keys` (the key's latest version: where
//!    it starts, whether it is current, its content and record hashes);
//! 2. the decision per record (`history::first_look`): a record whose key this sync recorded
//!    already (the writer's [`SeenKeys`]) is a re-send or a duplicate; an unchanged record
//!    writes nothing; a changed hash is compared with the previous version's columns;
//! 3. only then are rows written: new keys and versions by binary COPY, closed versions, the
//!    keys' new state, volatile series rows, change rows; and, per batch, one row holding the
//!    ids of the keys it recorded, with the source's row count.
//!
//! An unchanged re-sync therefore costs an index probe per model and one small row per batch,
//! which is emptied when the sync ends.

mod listing;
mod seen;
mod source_batch;

pub use listing::{end_source_listing, forget_seen, ListingSummary};
pub use seen::{load_seen, SeenKeys};

use rust_decimal::Decimal;
use tokio_postgres::Transaction;

use crate::config::HistoryConfig;
use crate::history::{self, Digest};
use crate::model::{Model, Source};
use crate::store::batch::BatchOutcome;
use crate::store::{Database, StoreError};

/// `model_keys`' key as one text: the expression of its unique hash index (an exclusion
/// constraint), so a lookup written with it probes one bucket page. `alias` names the table;
/// compare it with [`key_text_of`] of the probed values.
pub(crate) fn key_text(alias: &str) -> String {
    format!("({alias}.source || length({alias}.provider)::text || ':' || {alias}.provider || {alias}.model_id)")
}

/// [`key_text`] of any three SQL expressions.
pub(crate) fn key_text_of(source: &str, provider: &str, model_id: &str) -> String {
    format!("({source} || length({provider})::text || ':' || {provider} || {model_id})")
}

/// The `[history]` rules the store applies.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRules {
    pub max_removed_percent: f64,
    pub price_jump_factor: Decimal,
}

impl Default for HistoryRules {
    fn default() -> HistoryRules {
        HistoryRules::from(&HistoryConfig::default())
    }
}

impl From<&HistoryConfig> for HistoryRules {
    fn from(config: &HistoryConfig) -> HistoryRules {
        HistoryRules {
            max_removed_percent: config.max_removed_percent,
            price_jump_factor: Decimal::try_from(config.price_jump_factor).unwrap_or(Decimal::TEN),
        }
    }
}

/// A record to write, with its digest (computed by the transformer, off the writer's path).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub model: &'a Model,
    pub digest: Digest,
}

/// The history side of one sync's writer: the `[history]` rules, and the keys the sync
/// recorded so far as committed (`None` until loaded, and after a failed write, whose commit
/// may or may not have happened: the database is the truth then). Behind a mutex so a retried
/// write can borrow it afresh each attempt; one writer uses it, so it is never contended.
#[derive(Debug)]
pub struct SyncHistory {
    pub rules: HistoryRules,
    seen: tokio::sync::Mutex<Option<SeenKeys>>,
}

impl SyncHistory {
    pub fn new(rules: HistoryRules) -> SyncHistory {
        SyncHistory {
            rules,
            seen: tokio::sync::Mutex::new(None),
        }
    }

    /// What the sync recorded, loaded from the database unless it is known.
    pub async fn lock_seen(&self, database: &Database, sync_id: i64) -> Result<SeenLock<'_>, StoreError> {
        let mut guard = self.seen.lock().await;
        if guard.is_none() {
            *guard = Some(load_seen(database, sync_id).await?);
        }
        Ok(SeenLock { guard })
    }
}

/// The keys a sync recorded, held for one write.
pub struct SeenLock<'a> {
    guard: tokio::sync::MutexGuard<'a, Option<SeenKeys>>,
}

impl SeenLock<'_> {
    pub fn keys(&mut self) -> &mut SeenKeys {
        self.guard.get_or_insert_with(SeenKeys::default)
    }

    /// Ends the write: after a failed one (whose commit may or may not have happened), what
    /// the sync recorded is reloaded from the database before the next write.
    pub fn settle<T>(mut self, written: Result<T, StoreError>) -> Result<T, StoreError> {
        if written.is_err() {
            *self.guard = None;
        }
        written
    }
}

/// Writes the models of a batch of one sync (any sources) inside the caller's transaction,
/// adding what they record to `outcome`. The keys recorded go into `seen` at once: the caller
/// forgets it ([`SeenLock::settle`]) if the transaction does not commit. Sends `NOTIFY
/// model_lens_changes` with the last change id when the batch added changes.
pub async fn write_models(
    transaction: &Transaction<'_>,
    sync_id: i64,
    rules: &HistoryRules,
    seen: &mut SeenKeys,
    rows: &[Incoming<'_>],
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut last_change = None;
    let mut recorded: Vec<i64> = Vec::new();
    let mut sources: Vec<Source> = rows.iter().map(|row| row.model.source).collect();
    sources.sort();
    sources.dedup();
    for source in sources {
        let of_source: Vec<&Incoming<'_>> = rows.iter().filter(|row| row.model.source == source).collect();
        let written = source_batch::SourceBatch::new(transaction, sync_id, rules, source)
            .write(&of_source, seen, outcome)
            .await?;
        last_change = last_change.max(written.last_change);
        recorded.extend(written.recorded_keys);
    }
    if let Some(id) = last_change {
        notify_changes(transaction, id).await?;
    }
    for key_id in recorded {
        seen.insert(key_id);
    }
    Ok(())
}

async fn notify_changes(transaction: &Transaction<'_>, last_change_id: i64) -> Result<(), StoreError> {
    transaction
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&history::CHANGES_CHANNEL, &last_change_id.to_string()],
        )
        .await?;
    Ok(())
}

/// Whether `source` has no successful listing before sync `sync_id`: then this listing is its
/// baseline and records no changes.
async fn is_baseline(transaction: &Transaction<'_>, sync_id: i64, source: Source) -> Result<bool, StoreError> {
    let row = transaction
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM model_sync_sources
                                 WHERE source = $1 AND status = 'success' AND sync_id < $2)",
            &[&source.as_str(), &sync_id],
        )
        .await?;
    Ok(row.get(0))
}

/// The rows a sync recorded for a source (its part of `model_snapshots`), as counted by the
/// writer in the transactions that wrote them.
pub async fn snapshot_rows(database: &Database, sync_id: i64, source: Source) -> Result<i64, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce((SELECT snapshot_rows FROM model_sync_sources WHERE sync_id = $1 AND source = $2), 0)",
            &[&sync_id, &source.as_str()],
        )
        .await?;
    Ok(row.get(0))
}
