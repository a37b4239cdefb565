//! The write of one batch, in one transaction with its rejects: binary COPY straight into
//! `model_snapshots` (the fast path, at the machine's COPY speed), or, when that hits a key
//! already stored, binary COPY into a per-session staging table and
//! `INSERT … ON CONFLICT DO NOTHING`. Re-sending a batch (after a lost commit acknowledgement or a writer restart)
//! therefore changes nothing; a record whose key was already stored in this sync with other
//! content is quarantined as `duplicate_id` instead of silently overwriting or vanishing.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures::pin_mut;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;

use crate::model::{Model, Reject, RejectReason, Source};
use crate::store::{Database, StoreError};

const SNAPSHOT_COLUMNS: &str = "sync_id, source, provider, model_id, name, context_length, \
    max_output_tokens, input_price_per_mtok, output_price_per_mtok, cache_read_price_per_mtok, \
    cache_write_price_per_mtok, input_modalities, output_modalities, supports_tools, \
    supports_reasoning, open_weights, release_date, downloads, likes, intelligence_index, data, \
    content_hash, synced_at, price_tiers, status, expires_on, intelligence_index_version";

const SNAPSHOT_TYPES: [Type; 27] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::BOOL,
    Type::BOOL,
    Type::BOOL,
    Type::DATE,
    Type::INT8,
    Type::INT8,
    Type::NUMERIC,
    Type::JSONB,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TEXT,
    Type::DATE,
    Type::TEXT,
];

/// JSON text sent as `jsonb` without re-serializing it (binary jsonb is a version byte + text).
#[derive(Debug)]
struct JsonText<'a>(&'a str);

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

/// What one committed batch added, per source: new rows, and rejects by reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub stored: BTreeMap<Source, u64>,
    pub rejected: BTreeMap<(Source, RejectReason), u64>,
}

impl BatchOutcome {
    pub fn merge(&mut self, other: BatchOutcome) {
        for (source, rows) in other.stored {
            *self.stored.entry(source).or_default() += rows;
        }
        for (key, rows) in other.rejected {
            *self.rejected.entry(key).or_default() += rows;
        }
    }
}

/// Writes models and rejects of one sync in a single transaction, with the record keys the
/// drift alarm has not yet seen in this sync (`fields`, see [`crate::store::fields`]).
pub async fn write_batch(
    database: &Database,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[&Model],
    rejects: &[&Reject],
    fields: &[(Source, String)],
) -> Result<BatchOutcome, StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    let mut outcome = BatchOutcome::default();
    crate::store::fields::record(&transaction, sync_id, fields).await?;
    if !models.is_empty() && copy_directly(&transaction, sync_id, synced_at, models).await? {
        for model in models {
            *outcome.stored.entry(model.source).or_default() += 1;
        }
    } else if !models.is_empty() {
        transaction
            .batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS staging_snapshots
                    (LIKE model_snapshots INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            )
            .await?;
        copy_rows(&transaction, "staging_snapshots", sync_id, synced_at, models).await?;
        let inserted = transaction
            .query(
                &format!(
                    "WITH inserted AS (
                        INSERT INTO model_snapshots ({SNAPSHOT_COLUMNS})
                        SELECT {SNAPSHOT_COLUMNS} FROM staging_snapshots
                        ON CONFLICT (sync_id, source, provider, model_id) DO NOTHING
                        RETURNING source)
                     SELECT source, count(*) FROM inserted GROUP BY source"
                ),
                &[],
            )
            .await?;
        let mut inserted_total = 0u64;
        for row in inserted {
            let rows = row.get::<_, i64>(1) as u64;
            inserted_total += rows;
            if let Some(source) = Source::parse(row.get(0)) {
                outcome.stored.insert(source, rows);
            }
        }
        // Conflicts are either a re-sent batch (same content: nothing to do) or the source
        // listing the same key twice with different content: quarantine the second record.
        if inserted_total < models.len() as u64 {
            let duplicates = transaction
                .query(
                    "WITH quarantined AS (
                        INSERT INTO model_rejects (sync_id, source, reason, detail, model_id, raw, raw_hash)
                        SELECT s.sync_id, s.source, 'duplicate_id',
                               'another record with the same provider and id was already stored in this sync',
                               s.model_id, s.data::text, s.content_hash
                          FROM staging_snapshots s
                          JOIN model_snapshots m USING (sync_id, source, provider, model_id)
                         WHERE m.content_hash <> s.content_hash
                        ON CONFLICT DO NOTHING
                        RETURNING source)
                     SELECT source, count(*) FROM quarantined GROUP BY source",
                    &[],
                )
                .await?;
            for row in duplicates {
                if let Some(source) = Source::parse(row.get(0)) {
                    outcome
                        .rejected
                        .insert((source, RejectReason::DuplicateId), row.get::<_, i64>(1) as u64);
                }
            }
        }
    }
    if !rejects.is_empty() {
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
    }
    transaction.commit().await?;
    Ok(outcome)
}

/// The fast path: COPY straight into `model_snapshots`, inside a savepoint. It succeeds for
/// every first write of a batch; a key already stored (a re-sent batch, or an id listed twice)
/// makes it fail with a unique violation, and the caller takes the staging path, which sorts
/// re-sends from duplicates. Returns whether the rows are in.
async fn copy_directly(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[&Model],
) -> Result<bool, StoreError> {
    transaction.batch_execute("SAVEPOINT direct_copy").await?;
    match copy_rows(transaction, "model_snapshots", sync_id, synced_at, models).await {
        Ok(()) => {
            transaction.batch_execute("RELEASE SAVEPOINT direct_copy").await?;
            Ok(true)
        }
        Err(StoreError::Postgres(error)) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            transaction.batch_execute("ROLLBACK TO SAVEPOINT direct_copy").await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Binary COPY of the rows into `table` (which has the columns of `model_snapshots`).
async fn copy_rows(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[&Model],
) -> Result<(), StoreError> {
    let sink = transaction
        .copy_in(&format!("COPY {table} ({SNAPSHOT_COLUMNS}) FROM STDIN (FORMAT binary)"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &SNAPSHOT_TYPES);
    pin_mut!(writer);
    for model in models {
        let hash = model.content_hash();
        let price_tiers = model.price_tiers_json();
        writer
            .as_mut()
            .write(&[
                &sync_id,
                &model.source.as_str(),
                &model.provider,
                &model.model_id,
                &model.name,
                &model.context_length,
                &model.max_output_tokens,
                &model.input_price_per_mtok,
                &model.output_price_per_mtok,
                &model.cache_read_price_per_mtok,
                &model.cache_write_price_per_mtok,
                &model.input_modalities,
                &model.output_modalities,
                &model.supports_tools,
                &model.supports_reasoning,
                &model.open_weights,
                &model.release_date,
                &model.downloads,
                &model.likes,
                &model.intelligence_index,
                &JsonText(&model.raw),
                &&hash[..],
                &synced_at,
                &price_tiers.as_deref().map(JsonText),
                &model.status,
                &model.expires_on,
                &model.intelligence_index_version,
            ])
            .await?;
    }
    writer.finish().await?;
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
