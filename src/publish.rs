//! Publishing the catalog to Redis after a sync (DESIGN.md §10), for applications that read
//! from there instead of PostgreSQL.
//!
//! Per source that succeeded in a sync that stored rows, the hash `model_lens:catalog:<source>`
//! maps `<provider>|<model_id>` to the model's normalized JSON ([`CatalogModel`], prices as
//! decimal strings). It is written under a temporary key, a chunk at a time (rows streamed from
//! a PostgreSQL portal, so memory does not grow with the source), then swapped in with
//! `RENAME` in a `MULTI` block together with its expiry and `model_lens:catalog:meta`
//! (`sync_id`, `synced_at`, `<source>_count`, `<source>_sync_id`). A reader sees the old hash
//! or the new one, never a half-written one.
//!
//! Publishing runs after the sync is recorded and never changes its outcome: Redis down, slow
//! or refusing is a warning and `model_lens_redis_publish_total{outcome}`, within
//! `redis.publish_timeout_secs` at most.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;
use tokio_postgres::IsolationLevel;

use crate::config::RedisConfig;
use crate::model::Source;
use crate::report::{SourceStatus, SyncReport};
use crate::store::catalog::{self, SourceRows};
use crate::store::{Database, StoreError};
use crate::telemetry;

/// Prefix of every key this module writes.
pub const KEY_PREFIX: &str = "model_lens:catalog";

/// The hash of one source's catalog.
pub fn source_key(source: Source) -> String {
    format!("{KEY_PREFIX}:{source}")
}

/// The hash describing what was published last.
pub fn meta_key() -> String {
    format!("{KEY_PREFIX}:meta")
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("reading the catalog: {0}")]
    Store(#[from] StoreError),
    #[error("gave up after {0:?} (redis.publish_timeout_secs)")]
    Timeout(Duration),
}

/// What one publication did, for the `sync` command's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub sources: Vec<(Source, u64)>,
    pub elapsed: Duration,
}

/// A Redis connection (made on first use, re-made after failures) and the publishing rules.
#[derive(Clone)]
pub struct Publisher {
    connection: ConnectionManager,
    config: RedisConfig,
}

impl Publisher {
    /// `None` when no Redis is configured. Does not connect: a Redis that is down at start
    /// is only a warning at the first publication.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Publisher>, PublishError> {
        if !config.enabled() {
            return Ok(None);
        }
        let client = redis::Client::open(config.url.expose())?;
        let timeout = Duration::from_secs(config.command_timeout_secs.max(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One quick retry: a publication that cannot connect gives up, the next sync retries.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Some(Publisher {
            connection,
            config: config.clone(),
        }))
    }

    /// Publishes what `report`'s sync made current, if it stored anything. Never fails: the
    /// outcome is logged and counted; `None` when there was nothing to publish or it failed.
    pub async fn publish_after(&self, database: &Database, report: &SyncReport) -> Option<Published> {
        let sources: Vec<(Source, i64)> = report
            .sources
            .iter()
            .filter(|source| source.status == SourceStatus::Success)
            .filter_map(|source| Source::parse(&source.source))
            .map(|source| (source, report.id))
            .collect();
        if report.models_stored <= 0 || sources.is_empty() {
            tracing::debug!(sync_id = report.id, "nothing stored; nothing to publish to Redis");
            return None;
        }
        // Like the rows' own `synced_at`: when the sync that fetched them started.
        match self
            .publish_bounded(database, report.id, report.started_at, &sources)
            .await
        {
            Ok(published) => Some(published),
            Err(error) => {
                tracing::warn!(sync_id = report.id, %error, "could not publish the catalog to Redis; the sync is unaffected");
                None
            }
        }
    }

    /// Publishes every source's current catalog again (`model-lens-sync publish`: after Redis
    /// lost its data, or to fill a new Redis without waiting for a sync).
    pub async fn publish_current(&self, database: &Database) -> Result<Option<Published>, PublishError> {
        let current = catalog::source_sizes(database).await?;
        let Some(latest) = current.iter().max_by_key(|source| source.sync_id) else {
            return Ok(None);
        };
        let sources: Vec<(Source, i64)> = current.iter().map(|source| (source.source, source.sync_id)).collect();
        self.publish_bounded(database, latest.sync_id, latest.synced_at, &sources)
            .await
            .map(Some)
    }

    /// One publication within `redis.publish_timeout_secs`, counted by outcome: `sources`
    /// with the sync each one's catalog comes from; `sync_id` and `synced_at` for the meta.
    async fn publish_bounded(
        &self,
        database: &Database,
        sync_id: i64,
        synced_at: DateTime<Utc>,
        sources: &[(Source, i64)],
    ) -> Result<Published, PublishError> {
        let limit = Duration::from_secs(self.config.publish_timeout_secs.max(1));
        let started = Instant::now();
        let result = match tokio::time::timeout(limit, self.publish(database, sync_id, synced_at, sources)).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::Timeout(limit)),
        };
        let outcome = match &result {
            Ok(_) => "success",
            Err(PublishError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        telemetry::redis_published(outcome);
        let published = Published {
            sources: result?,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            sync_id,
            sources = ?published.sources,
            elapsed_ms = published.elapsed.as_millis() as u64,
            "catalog published to Redis"
        );
        Ok(published)
    }

    async fn publish(
        &self,
        database: &Database,
        sync_id: i64,
        synced_at: DateTime<Utc>,
        sources: &[(Source, i64)],
    ) -> Result<Vec<(Source, u64)>, PublishError> {
        let mut client = database.pool.get().await.map_err(StoreError::from)?;
        // One snapshot of the database for every source of this publication.
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(StoreError::from)?;
        let mut counts = Vec::new();
        for (source, source_sync_id) in sources {
            let count = self
                .publish_source(&transaction, *source, (sync_id, *source_sync_id), synced_at)
                .await?;
            counts.push((*source, count));
        }
        transaction.commit().await.map_err(StoreError::from)?;
        Ok(counts)
    }

    /// Fills a temporary hash chunk by chunk, then swaps it in with the meta fields in one
    /// `MULTI`. On failure the temporary hash is left to its expiry (a dead connection cannot
    /// delete it anyway); the published hash is untouched.
    async fn publish_source(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        source: Source,
        (sync_id, source_sync_id): (i64, i64),
        synced_at: DateTime<Utc>,
    ) -> Result<u64, PublishError> {
        let mut connection = self.connection.clone();
        let key = source_key(source);
        let temporary = format!("{key}:publishing:{sync_id}:{:016x}", rand::random::<u64>());
        let ttl = self.config.ttl_secs as i64;
        let mut rows = SourceRows::open(transaction, source, self.config.chunk_size).await?;
        let mut count: u64 = 0;
        loop {
            let chunk = rows.next_chunk().await?;
            if chunk.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            let hset = pipe.cmd("HSET").arg(&temporary);
            for model in &chunk {
                let value = serde_json::to_string(model).expect("a catalog row always serializes");
                hset.arg(model.redis_field()).arg(value);
            }
            if count == 0 {
                pipe.cmd("EXPIRE").arg(&temporary).arg(ttl);
            }
            pipe.query_async::<()>(&mut connection).await?;
            count += chunk.len() as u64;
        }
        let meta = meta_key();
        let mut swap = redis::pipe();
        swap.atomic();
        if count > 0 {
            swap.cmd("RENAME").arg(&temporary).arg(&key).ignore();
            swap.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
        } else {
            // A source that lists nothing has an empty catalog; Redis has no empty hashes.
            swap.cmd("DEL").arg(&key).ignore();
        }
        swap.cmd("HSET")
            .arg(&meta)
            .arg("sync_id")
            .arg(sync_id)
            .arg("synced_at")
            .arg(synced_at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .arg(format!("{source}_count"))
            .arg(count)
            .arg(format!("{source}_sync_id"))
            .arg(source_sync_id)
            .ignore();
        swap.cmd("EXPIRE").arg(&meta).arg(ttl).ignore();
        swap.query_async::<()>(&mut connection).await?;
        Ok(count)
    }
}

/// `serve`: publishes after every finished sync until the supervisor's broadcast closes.
pub async fn follow_syncs(publisher: Publisher, database: Database, mut reports: broadcast::Receiver<SyncReport>) {
    loop {
        match reports.recv().await {
            Ok(report) => {
                publisher.publish_after(&database, &report).await;
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // The next report's publication brings Redis up to date for its sources.
                tracing::warn!(missed, "Redis publisher fell behind; skipping to the latest sync");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
