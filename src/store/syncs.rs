//! Bookkeeping of syncs: the `model_syncs` and `model_sync_sources` rows, the lock that keeps
//! one sync at a time across processes, and the history queries of the CLI and the admin API.

use chrono::{DateTime, Utc};

use crate::model::Source;
use crate::report::{SourceReport, SourceStatus, SyncReport, SyncStatus, Trigger};
use crate::store::{Database, StoreError};

/// Key of the advisory lock held for the whole of a sync (arbitrary, fixed, documented).
pub const SYNC_LOCK_KEY: i64 = 0x6d6c_7379_6e63; // "mlsync"

/// Holds the cluster-wide "a sync is running" lock on a connection of its own: if the
/// process dies, the session ends and PostgreSQL releases the lock.
pub struct SyncLock {
    client: tokio_postgres::Client,
}

impl SyncLock {
    /// `None` when another process holds the lock.
    pub async fn try_acquire(database: &Database) -> Result<Option<SyncLock>, StoreError> {
        let client = database.dedicated_connection().await?;
        let acquired: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&SYNC_LOCK_KEY])
            .await?
            .get(0);
        Ok(acquired.then_some(SyncLock { client }))
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

/// Inserts the `running` sync and one row per source; returns its id and start time.
pub async fn create_sync(
    database: &Database,
    trigger: Trigger,
    sources: &[(Source, SourceStatus, Option<String>)],
) -> Result<(i64, DateTime<Utc>), StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    let row = transaction
        .query_one(
            "INSERT INTO model_syncs (trigger, status) VALUES ($1, 'running') RETURNING id, started_at",
            &[&trigger.as_str()],
        )
        .await?;
    let (id, started_at): (i64, DateTime<Utc>) = (row.get(0), row.get(1));
    for (source, status, error) in sources {
        transaction
            .execute(
                "INSERT INTO model_sync_sources (sync_id, source, status, error, duration_ms)
                 VALUES ($1, $2, $3, $4, CASE WHEN $3 = 'skipped' THEN 0 END)",
                &[&id, &source.as_str(), &status.as_str(), error],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok((id, started_at))
}

/// Models recorded and rejects for one source of one sync, as the database has them (the
/// truth, whatever was retried or re-sent). The models are the sync's rows of
/// `model_snapshots` that it fetched itself: the writer counts them in the transactions that
/// record them (`snapshot_rows`), since unchanged models write no row to count.
pub async fn count_source_rows(database: &Database, sync_id: i64, source: Source) -> Result<(i64, i64), StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce((SELECT snapshot_rows FROM model_sync_sources WHERE sync_id = $1 AND source = $2), 0),
                    (SELECT count(*) FROM model_rejects WHERE sync_id = $1 AND source = $2)",
            &[&sync_id, &source.as_str()],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn finish_source(database: &Database, sync_id: i64, report: &SourceReport) -> Result<(), StoreError> {
    let client = database.pool.get().await?;
    client
        .execute(
            "UPDATE model_sync_sources
                SET status = $3, models_fetched = $4, models_stored = $5, models_rejected = $6,
                    http_requests = $7, bytes = $8, duration_ms = $9, error = $10
              WHERE sync_id = $1 AND source = $2",
            &[
                &sync_id,
                &report.source,
                &report.status.as_str(),
                &report.models_fetched,
                &report.models_stored,
                &report.models_rejected,
                &report.http_requests,
                &report.bytes,
                &report.duration_ms,
                &report.error,
            ],
        )
        .await?;
    Ok(())
}

/// Sets the final status and totals (summed from the source rows) of a sync.
pub async fn finish_sync(
    database: &Database,
    sync_id: i64,
    status: SyncStatus,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let client = database.pool.get().await?;
    client
        .execute(
            "UPDATE model_syncs s
                SET status = $2, error = $3, finished_at = now(),
                    duration_ms = (extract(epoch FROM now() - s.started_at) * 1000)::bigint,
                    models_fetched = t.fetched, models_stored = t.stored, models_rejected = t.rejected
               FROM (SELECT coalesce(sum(models_fetched), 0)::bigint AS fetched,
                            coalesce(sum(models_stored), 0)::bigint AS stored,
                            coalesce(sum(models_rejected), 0)::bigint AS rejected
                       FROM model_sync_sources WHERE sync_id = $1) t
              WHERE s.id = $1",
            &[&sync_id, &status.as_str(), &error],
        )
        .await?;
    Ok(())
}

/// Marks syncs left `running` by a process that died as `interrupted`. Only safe while holding
/// the sync lock (otherwise a live sync of another replica would be marked).
pub async fn mark_orphans_interrupted(database: &Database, _lock: &SyncLock) -> Result<Vec<i64>, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
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
        client
            .execute(
                "UPDATE model_sync_sources SET status = 'failed', error = coalesce(error, 'interrupted')
                  WHERE sync_id = ANY($1) AND status = 'running'",
                &[&ids],
            )
            .await?;
    }
    Ok(ids)
}

const SYNC_COLUMNS: &str = "id, started_at, finished_at, status, trigger, models_fetched, models_stored,
     models_rejected, duration_ms, error";

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
        sources: Vec::new(),
    }
}

async fn attach_sources(client: &tokio_postgres::Client, syncs: &mut [SyncReport]) -> Result<(), StoreError> {
    let ids: Vec<i64> = syncs.iter().map(|sync| sync.id).collect();
    let rows = client
        .query(
            "SELECT sync_id, source, status, models_fetched, models_stored, models_rejected,
                    http_requests, bytes, duration_ms, error
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
