//! The write of one batch, in one transaction with its rejects. Models go through the history
//! write path (`store/history.rs`): compared with their current versions, only what changed is
//! written. Re-sending a batch (after a lost commit acknowledgement or a writer restart)
//! therefore changes nothing; a record whose key this sync already stored with other content
//! is quarantined as `duplicate_id` instead of silently overwriting or vanishing.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};

use crate::history::{self, ChangeKind};
use crate::model::{Model, Reject, RejectReason, Source};
use crate::store::history::{load_seen, HistoryRules, Incoming};
use crate::store::{Database, StoreError};

/// JSON text sent as `jsonb` without re-serializing it (binary jsonb is a version byte + text).
#[derive(Debug, Clone, Copy)]
pub struct JsonText<'a>(pub &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// What one committed batch added, per source: models recorded, rejects by reason, and the
/// changes written by kind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub stored: BTreeMap<Source, u64>,
    pub rejected: BTreeMap<(Source, RejectReason), u64>,
    pub changes: BTreeMap<(Source, ChangeKind), u64>,
}

impl BatchOutcome {
    pub fn merge(&mut self, other: BatchOutcome) {
        for (source, rows) in other.stored {
            *self.stored.entry(source).or_default() += rows;
        }
        for (key, rows) in other.rejected {
            *self.rejected.entry(key).or_default() += rows;
        }
        for (key, rows) in other.changes {
            *self.changes.entry(key).or_default() += rows;
        }
    }
}

/// Writes models and rejects of one sync in a single transaction, with the default
/// `[history]` rules; reads what the sync recorded so far first (the writer actor keeps that
/// in memory and calls `store::history::write_batch`). `synced_at` is not stored per row any more: `model_snapshots.synced_at`
/// is the sync's start (`model_syncs.started_at`), which is what the writer was always given.
pub async fn write_batch(
    database: &Database,
    sync_id: i64,
    _synced_at: DateTime<Utc>,
    models: &[&Model],
    rejects: &[&Reject],
) -> Result<BatchOutcome, StoreError> {
    let digests: Vec<history::Digest> = models.iter().map(|model| history::digest(model)).collect();
    let rows: Vec<Incoming<'_>> = models
        .iter()
        .zip(&digests)
        .map(|(model, digest)| Incoming { model, digest: *digest })
        .collect();
    let mut seen = load_seen(database, sync_id).await?;
    crate::store::history::write_batch(database, sync_id, &HistoryRules::default(), &mut seen, &rows, rejects).await
}

/// Inserts rejects (idempotent on `(sync_id, source, reason, raw_hash)`), counting the new ones.
pub async fn insert_rejects(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    rejects: &[&Reject],
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    if rejects.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare(
            "INSERT INTO model_rejects (sync_id, source, reason, detail, model_id, raw, raw_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .await?;
    for reject in rejects {
        let raw = without_nul(&reject.raw);
        let hash = blake3::hash(reject.raw.as_bytes());
        let added = transaction
            .execute(
                &statement,
                &[
                    &sync_id,
                    &reject.source.as_str(),
                    &reject.reason.as_str(),
                    &without_nul(&reject.detail),
                    &reject.model_id.as_deref().map(without_nul),
                    &raw,
                    &&hash.as_bytes()[..16],
                ],
            )
            .await?;
        *outcome.rejected.entry((reject.source, reject.reason)).or_default() += added;
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL; keep the information visible as the JSON escape.
fn without_nul(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\\u0000")
    } else {
        text.to_string()
    }
}
