//! Bookkeeping of syncs: the `model_syncs` and `model_sync_sources` rows, the lock that keeps
//! one sync at a time across processes, and the history queries of the CLI and the admin API.

use chrono::{DateTime, Utc};

use crate::history::ListingOutcome;
use crate::model::Source;
use crate::report::{SourceReport, SourceStatus, SyncReport, SyncStatus, Trigger};
use crate::store::history::{self, HistoryRules, ListingSummary};
use crate::store::{Database, StoreError};

/// Key of the advisory lock held for the whole of a sync (arbitrary, fixed, documented).
pub const SYNC_LOCK_KEY: i64 = 0x6d6c_7379_6e63; // "mlsync"

/// What a process must still be for its writes to a sync to count: the sync is `running` and
/// owned by this token (recorded when the process started it). Every bookkeeping write and
/// every batch checks it, so a process that lost the sync lock cannot write into a sync that
/// another process has since ended or taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFence {
    pub sync_id: i64,
    pub owner_token: String,
}

impl SyncFence {
    /// A new random owner token for a sync about to be created (128 bits, hex).
    pub fn new_token() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Inside a transaction: `Ok` when the sync is still ours and running, after which it
    /// cannot be ended by anyone before this transaction ends (the row is share-locked: a
    /// finalization or an orphan marking waits for it, then sees what it committed).
    pub async fn hold(&self, transaction: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let row = transaction
            .query_opt(
                "SELECT 1 FROM model_syncs WHERE id = $1 AND status = 'running' AND owner_token = $2 FOR SHARE",
                &[&self.sync_id, &self.owner_token],
            )
            .await?;
        match row {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced { sync_id: self.sync_id }),
        }
    }
}

/// Holds the cluster-wide "a sync is running" lock on a connection of its own: if the
/// process dies, the session ends and PostgreSQL releases the lock. The session can also end
/// while the process lives (a PostgreSQL restart, `pg_terminate_backend`, a broken network):
/// [`SyncLock::lost`] says so at once, so the holder can re-take the lock or stop.
pub struct SyncLock {
    client: tokio_postgres::Client,
    ended: tokio::sync::oneshot::Receiver<String>,
    backend_pid: i32,
}

impl SyncLock {
    /// `None` when another session holds the lock.
    pub async fn try_acquire(database: &Database) -> Result<Option<SyncLock>, StoreError> {
        let (client, ended) = database.watched_connection().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1), pg_backend_pid()", &[&SYNC_LOCK_KEY])
            .await?;
        let (acquired, backend_pid): (bool, i32) = (row.get(0), row.get(1));
        Ok(acquired.then_some(SyncLock {
            client,
            ended,
            backend_pid,
        }))
    }

    /// The server process of the lock's session (`pg_backend_pid()`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// The server process of the session holding the sync lock in this database, if any.
    pub async fn holder(database: &Database) -> Result<Option<i32>, StoreError> {
        let client = database.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                  WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted
                    AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                &[&SYNC_LOCK_KEY],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Resolves when the lock's session has ended (and the lock with it), with why.
    pub async fn lost(&mut self) -> String {
        (&mut self.ended)
            .await
            .unwrap_or_else(|_| "the connection task ended".to_string())
    }

    /// Asks the lock's session for a sign of life (a broken network is only noticed on use).
    pub async fn check(&self) -> Result<(), StoreError> {
        self.client.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn release(self) {
        if let Err(error) = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&SYNC_LOCK_KEY])
            .await
        {
            // Dropping the client closes the session, which releases the lock anyway.
            tracing::debug!(%error, "could not unlock the sync lock explicitly");
        }
    }
}

/// The id of the newest sync still `running` (another replica's, when its lock is held).
pub async fn running_sync_id(database: &Database) -> Result<Option<i64>, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id FROM model_syncs WHERE status = 'running' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Whether the sync is still running under this owner (checked after re-taking a lost lock).
pub async fn is_still_ours(database: &Database, fence: &SyncFence) -> Result<bool, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM model_syncs WHERE id = $1 AND status = 'running' AND owner_token = $2",
            &[&fence.sync_id, &fence.owner_token],
        )
        .await?;
    Ok(row.is_some())
}

/// Inserts the `running` sync, owned by `owner_token`, and one row per source; returns its id
/// and start time.
pub async fn create_sync(
    database: &Database,
    trigger: Trigger,
    sources: &[(Source, SourceStatus, Option<String>)],
    owner_token: &str,
) -> Result<(i64, DateTime<Utc>), StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    let row = transaction
        .query_one(
            "INSERT INTO model_syncs (trigger, status, owner_token, models_duplicates)
             VALUES ($1, 'running', $2, 0) RETURNING id, started_at",
            &[&trigger.as_str(), &owner_token],
        )
        .await?;
    let (id, started_at): (i64, DateTime<Utc>) = (row.get(0), row.get(1));
    for (source, status, error) in sources {
        transaction
            .execute(
                "INSERT INTO model_sync_sources (sync_id, source, status, error, duration_ms, models_duplicates)
                 VALUES ($1, $2, $3, $4, CASE WHEN $3 = 'skipped' THEN 0 END, 0)",
                &[&id, &source.as_str(), &status.as_str(), error],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok((id, started_at))
}

/// Records a source's end during the sync (status and the counts known so far; the
/// finalization recounts from the tables). Fenced: nothing is written unless the sync is still
/// ours and running.
pub async fn record_source(database: &Database, fence: &SyncFence, report: &SourceReport) -> Result<(), StoreError> {
    let client = database.pool.get().await?;
    let updated = client
        .execute(
            "UPDATE model_sync_sources
                SET status = $3, models_fetched = $4, models_stored = $5, models_rejected = $6,
                    http_requests = $7, bytes = $8, duration_ms = $9, error = $10
              WHERE sync_id = $1 AND source = $2
                AND EXISTS (SELECT 1 FROM model_syncs
                             WHERE id = $1 AND status = 'running' AND owner_token = $11)",
            &[
                &fence.sync_id,
                &report.source,
                &report.status.as_str(),
                &report.models_fetched,
                &report.models_stored,
                &report.models_rejected,
                &report.http_requests,
                &report.bytes,
                &report.duration_ms,
                &report.error,
                &fence.owner_token,
            ],
        )
        .await?;
    if updated == 0 {
        return Err(StoreError::Fenced { sync_id: fence.sync_id });
    }
    Ok(())
}

/// How one source of a sync ended, as the supervisor knows it; the counts come from the tables.
#[derive(Debug, Clone)]
pub struct SourceEnd {
    pub source: Source,
    pub status: SourceStatus,
    pub error: Option<String>,
    pub http_requests: i64,
    pub bytes: i64,
    pub duration_ms: Option<i64>,
    /// The record keys this sync stored first (the drift alarm; `None`: not computed).
    pub new_fields: Option<Vec<String>>,
    /// The listing may not be whole (cut by `max_models`, or its end never heard): what it
    /// lacks was not removed upstream.
    pub truncated: bool,
}

/// Writes a sync's final status and every source's final row in one transaction, with the
/// counts taken from the tables (the truth, whatever was retried or re-sent):
/// fetched = the records of the committed pages, stored = the models recorded
/// (`snapshot_rows`, counted by the batches), rejected = quarantined records,
/// duplicates = as the batches counted them. In the same transaction, the end of each
/// succeeded source's listing is applied to history (`store::history::end_source_listing`:
/// what a whole listing lacked is removed, what a truncated one lacked goes out of window)
/// and the sync's scratch (`model_sync_seen`) is emptied. Fenced: `Ok(None)` (and nothing
/// written) when the sync is no longer ours and running; else what each listing's end did.
/// Taking the sync's row lock first waits for any batch still committing, so nothing of this
/// sync can commit after its counts are taken.
pub async fn finalize_sync(
    database: &Database,
    fence: &SyncFence,
    status: SyncStatus,
    error: Option<&str>,
    sources: &[SourceEnd],
    rules: &HistoryRules,
) -> Result<Option<Vec<(Source, ListingSummary)>>, StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    let ours = transaction
        .query_opt(
            "SELECT 1 FROM model_syncs WHERE id = $1 AND status = 'running' AND owner_token = $2 FOR UPDATE",
            &[&fence.sync_id, &fence.owner_token],
        )
        .await?;
    if ours.is_none() {
        return Ok(None);
    }
    let mut listings = Vec::new();
    for end in sources {
        let listing = match end.status {
            SourceStatus::Success => ListingOutcome::Succeeded {
                truncated: end.truncated,
            },
            _ => ListingOutcome::Failed,
        };
        let summary = history::end_source_listing(&transaction, fence.sync_id, end.source, listing, rules).await?;
        listings.push((end.source, summary));
    }
    history::forget_seen(&transaction, &[fence.sync_id]).await?;
    let statement = transaction
        .prepare(
            "UPDATE model_sync_sources s
                SET status = $3, error = $4, http_requests = $5, bytes = $6, duration_ms = $7, new_fields = $8,
                    models_fetched = (SELECT coalesce(sum(records), 0)::bigint FROM model_sync_pages p
                                       WHERE p.sync_id = $1 AND p.source = $2),
                    models_stored = s.snapshot_rows,
                    models_rejected = (SELECT count(*) FROM model_rejects r WHERE r.sync_id = $1 AND r.source = $2),
                    models_duplicates = coalesce(s.models_duplicates, 0)
              WHERE s.sync_id = $1 AND s.source = $2",
        )
        .await?;
    for end in sources {
        transaction
            .execute(
                &statement,
                &[
                    &fence.sync_id,
                    &end.source.as_str(),
                    &end.status.as_str(),
                    &end.error,
                    &end.http_requests,
                    &end.bytes,
                    &end.duration_ms,
                    &end.new_fields,
                ],
            )
            .await?;
    }
    transaction
        .execute(
            "UPDATE model_syncs s
                SET status = $2, error = $3, finished_at = now(),
                    duration_ms = (extract(epoch FROM now() - s.started_at) * 1000)::bigint,
                    models_fetched = t.fetched, models_stored = t.stored, models_rejected = t.rejected,
                    models_duplicates = t.duplicates
               FROM (SELECT coalesce(sum(models_fetched), 0)::bigint AS fetched,
                            coalesce(sum(models_stored), 0)::bigint AS stored,
                            coalesce(sum(models_rejected), 0)::bigint AS rejected,
                            coalesce(sum(models_duplicates), 0)::bigint AS duplicates
                       FROM model_sync_sources WHERE sync_id = $1) t
              WHERE s.id = $1",
            &[&fence.sync_id, &status.as_str(), &error],
        )
        .await?;
    transaction.commit().await?;
    Ok(Some(listings))
}

/// Marks syncs left `running` by a process that died (or lost the sync lock) as
/// `interrupted`, with their unfinished sources, all at once. Only safe while holding the sync
/// lock (otherwise a live sync of another replica would be marked).
pub async fn mark_orphans_interrupted(database: &Database, _lock: &SyncLock) -> Result<Vec<i64>, StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    let rows = transaction
        .query(
            "UPDATE model_syncs
                SET status = 'interrupted', finished_at = now(),
                    duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint,
                    error = coalesce(error, 'the process running this sync stopped before it finished')
              WHERE status = 'running'
          RETURNING id",
            &[],
        )
        .await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    if !ids.is_empty() {
        transaction
            .execute(
                "UPDATE model_sync_sources SET status = 'failed', error = coalesce(error, 'interrupted')
                  WHERE sync_id = ANY($1) AND status = 'running'",
                &[&ids],
            )
            .await?;
    }
    // What the interrupted syncs recorded, and what any sync that ended without its final
    // record left (none is running now: the lock is ours and the orphans were just marked).
    let ended: Vec<i64> = transaction
        .query(
            "SELECT DISTINCT x.sync_id FROM model_sync_seen x
              WHERE NOT EXISTS (SELECT 1 FROM model_syncs s WHERE s.id = x.sync_id AND s.status = 'running')",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    history::forget_seen(&transaction, &ended).await?;
    transaction.commit().await?;
    Ok(ids)
}

const SYNC_COLUMNS: &str = "id, started_at, finished_at, status, trigger, models_fetched, models_stored,
     models_rejected, duration_ms, error, models_duplicates";

/// The most recent syncs, newest first, each with its sources.
pub async fn recent_syncs(database: &Database, limit: i64) -> Result<Vec<SyncReport>, StoreError> {
    let client = database.pool.get().await?;
    let query = format!("SELECT {SYNC_COLUMNS} FROM model_syncs ORDER BY id DESC LIMIT $1");
    let rows = client.query(&query, &[&limit]).await?;
    let mut syncs: Vec<SyncReport> = rows.iter().map(sync_from_row).collect();
    attach_sources(&client, &mut syncs).await?;
    Ok(syncs)
}

pub async fn get_sync(database: &Database, sync_id: i64) -> Result<Option<SyncReport>, StoreError> {
    let client = database.pool.get().await?;
    let query = format!("SELECT {SYNC_COLUMNS} FROM model_syncs WHERE id = $1");
    let rows = client.query(&query, &[&sync_id]).await?;
    let mut syncs: Vec<SyncReport> = rows.iter().map(sync_from_row).collect();
    attach_sources(&client, &mut syncs).await?;
    Ok(syncs.pop())
}

fn sync_from_row(row: &tokio_postgres::Row) -> SyncReport {
    SyncReport {
        id: row.get(0),
        started_at: row.get(1),
        finished_at: row.get(2),
        status: SyncStatus::parse(row.get(3)).unwrap_or(SyncStatus::Failed),
        trigger: row.get(4),
        models_fetched: row.get(5),
        models_stored: row.get(6),
        models_rejected: row.get(7),
        duration_ms: row.get(8),
        error: row.get(9),
        models_duplicates: row.get(10),
        sources: Vec::new(),
    }
}

async fn attach_sources(client: &tokio_postgres::Client, syncs: &mut [SyncReport]) -> Result<(), StoreError> {
    let ids: Vec<i64> = syncs.iter().map(|sync| sync.id).collect();
    let rows = client
        .query(
            "SELECT sync_id, source, status, models_fetched, models_stored, models_rejected,
                    http_requests, bytes, duration_ms, error, new_fields, models_duplicates
               FROM model_sync_sources WHERE sync_id = ANY($1) ORDER BY sync_id, source",
            &[&ids],
        )
        .await?;
    for row in rows {
        let sync_id: i64 = row.get(0);
        if let Some(sync) = syncs.iter_mut().find(|sync| sync.id == sync_id) {
            sync.sources.push(SourceReport {
                source: row.get(1),
                status: SourceStatus::parse(row.get(2)).unwrap_or(SourceStatus::Failed),
                models_fetched: row.get(3),
                models_stored: row.get(4),
                models_rejected: row.get(5),
                http_requests: row.get(6),
                bytes: row.get(7),
                duration_ms: row.get(8),
                error: row.get(9),
                new_fields: row.get(10),
                models_duplicates: row.get(11),
            });
        }
    }
    Ok(())
}

/// Unix time of the last successful sync, if any.
pub async fn last_success_unix(database: &Database) -> Result<Option<f64>, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_one(
            "SELECT extract(epoch FROM max(finished_at))::float8 FROM model_syncs WHERE status = 'success'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// When each source last succeeded: the finish of the newest finished sync in which it did.
/// Sources that never succeeded are absent.
pub async fn last_success_per_source(database: &Database) -> Result<Vec<(Source, DateTime<Utc>)>, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
        .query(
            "SELECT ss.source, max(s.finished_at)
               FROM model_sync_sources ss JOIN model_syncs s ON s.id = ss.sync_id
              WHERE ss.status = 'success' AND s.status <> 'running' AND s.finished_at IS NOT NULL
              GROUP BY ss.source",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| Some((Source::parse(row.get(0))?, row.get(1))))
        .collect())
}
