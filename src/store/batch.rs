//! The write of one batch of pages, in one transaction with their rejects and their entry in
//! `model_sync_pages`: binary COPY straight into `model_snapshots` (the fast path, at the
//! machine's COPY speed), or, when that hits a key already stored, binary COPY into a
//! per-session staging table and `INSERT … ON CONFLICT DO NOTHING`.
//!
//! Exactly once, whatever is re-sent: a page whose entry is already in `model_sync_pages` (a
//! restart sent it again, or a retried batch had in fact committed) is skipped whole, so its
//! rows and its counts are written once. Within the pages written now, every record either adds
//! a row, adds a reject (a record whose key was already stored in this sync with other content
//! is quarantined as `duplicate_id`), or is identical to a record already stored or quarantined
//! in this sync, which counts as a duplicate. So for every source, always:
//! fetched = stored + rejected + duplicates.
//!
//! Every batch first takes the sync's [`SyncFence`]: a sync that is no longer running under
//! this process gets nothing more.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures::pin_mut;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;

use crate::model::{Model, Reject, RejectReason, Source};
use crate::store::syncs::SyncFence;
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

/// One page of parsed records, as the writer holds it.
#[derive(Debug, Clone, Copy)]
pub struct PageData<'a> {
    pub source: Source,
    pub page_no: u64,
    pub models: &'a [Model],
    pub rejects: &'a [Reject],
    /// Records the transformer dropped as identical repeats within the page.
    pub duplicates: u64,
}

impl PageData<'_> {
    /// Every record the page held.
    pub fn records(&self) -> u64 {
        (self.models.len() + self.rejects.len()) as u64 + self.duplicates
    }
}

/// What one committed batch added, per source, counting only the pages committed now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub fetched: BTreeMap<Source, u64>,
    pub stored: BTreeMap<Source, u64>,
    pub rejected: BTreeMap<(Source, RejectReason), u64>,
    pub duplicates: BTreeMap<Source, u64>,
    /// Pages already committed earlier (sent again), skipped.
    pub skipped_pages: usize,
}

impl BatchOutcome {
    pub fn merge(&mut self, other: BatchOutcome) {
        for (source, rows) in other.fetched {
            *self.fetched.entry(source).or_default() += rows;
        }
        for (source, rows) in other.stored {
            *self.stored.entry(source).or_default() += rows;
        }
        for (key, rows) in other.rejected {
            *self.rejected.entry(key).or_default() += rows;
        }
        for (source, rows) in other.duplicates {
            *self.duplicates.entry(source).or_default() += rows;
        }
        self.skipped_pages += other.skipped_pages;
    }

    pub fn rejected_of(&self, source: Source) -> u64 {
        self.rejected
            .iter()
            .filter(|((of, _), _)| *of == source)
            .map(|(_, count)| count)
            .sum()
    }
}

/// Writes the pages of one sync in a single transaction, with the record keys the drift alarm
/// has not yet seen in this sync (`fields`, see [`crate::store::fields`]). A batch PostgreSQL
/// refuses for its data fails as a whole ([`StoreError::is_data_error`]); write its pages with
/// [`write_page_row_by_row`] then.
pub async fn write_batch(
    database: &Database,
    fence: &SyncFence,
    synced_at: DateTime<Utc>,
    pages: &[PageData<'_>],
    fields: &[(Source, String)],
) -> Result<BatchOutcome, StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    fence.hold(&transaction).await?;
    crate::store::fields::record(&transaction, fence.sync_id, fields).await?;
    let (new_pages, skipped_pages) = claim_pages(&transaction, fence.sync_id, pages).await?;
    let mut outcome = BatchOutcome {
        skipped_pages,
        ..BatchOutcome::default()
    };
    let models: Vec<&Model> = new_pages.iter().flat_map(|page| page.models.iter()).collect();
    let rejects: Vec<&Reject> = new_pages.iter().flat_map(|page| page.rejects.iter()).collect();
    insert_models(&transaction, fence.sync_id, synced_at, &models, &mut outcome).await?;
    insert_rejects(&transaction, fence.sync_id, &rejects, &mut outcome).await?;
    count_duplicates(&transaction, fence.sync_id, &new_pages, &mut outcome).await?;
    transaction.commit().await?;
    Ok(outcome)
}

/// Writes one page with each row in a savepoint of its own, after its batch failed for its
/// data: a row PostgreSQL refuses becomes a reject with the database's reason, the others are
/// stored. One transaction for the page (so it is written once, like any page); any error that
/// is not about a row's data rolls the page back for the caller to retry or give up. `fields`
/// as for [`write_batch`].
pub async fn write_page_row_by_row(
    database: &Database,
    fence: &SyncFence,
    synced_at: DateTime<Utc>,
    page: &PageData<'_>,
    fields: &[(Source, String)],
) -> Result<BatchOutcome, StoreError> {
    let mut client = database.pool.get().await?;
    let mut transaction = client.transaction().await?;
    fence.hold(&transaction).await?;
    crate::store::fields::record(&transaction, fence.sync_id, fields).await?;
    let (new_pages, skipped_pages) = claim_pages(&transaction, fence.sync_id, std::slice::from_ref(page)).await?;
    let mut outcome = BatchOutcome {
        skipped_pages,
        ..BatchOutcome::default()
    };
    if new_pages.is_empty() {
        return Ok(outcome);
    }
    let mut refused = Vec::new();
    for model in page.models {
        let row = transaction.savepoint("one_row").await?;
        let mut written = BatchOutcome::default();
        match insert_models(&row, fence.sync_id, synced_at, &[model], &mut written).await {
            Ok(()) => {
                row.commit().await?;
                outcome.merge(written);
            }
            Err(error) if error.is_data_error() => {
                row.rollback().await?;
                refused.push(Reject {
                    source: model.source,
                    reason: RejectReason::InvalidValue,
                    detail: format!("PostgreSQL refused the row: {error}"),
                    model_id: Some(model.model_id.clone()),
                    raw: model.raw.clone(),
                });
            }
            Err(error) => return Err(error),
        }
    }
    let rejects: Vec<&Reject> = page.rejects.iter().chain(refused.iter()).collect();
    insert_rejects(&transaction, fence.sync_id, &rejects, &mut outcome).await?;
    count_duplicates(&transaction, fence.sync_id, &new_pages, &mut outcome).await?;
    transaction.commit().await?;
    Ok(outcome)
}

/// Records the pages in `model_sync_pages`; returns the ones not committed before (the others
/// are skipped) and how many were skipped.
async fn claim_pages<'a>(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    pages: &[PageData<'a>],
) -> Result<(Vec<PageData<'a>>, usize), StoreError> {
    let sources: Vec<&str> = pages.iter().map(|page| page.source.as_str()).collect();
    let numbers: Vec<i64> = pages.iter().map(|page| page.page_no as i64).collect();
    let records: Vec<i64> = pages.iter().map(|page| page.records() as i64).collect();
    let claimed = transaction
        .query(
            "INSERT INTO model_sync_pages (sync_id, source, page_no, records)
             SELECT $1, source, page_no, records
               FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS p(source, page_no, records)
             ON CONFLICT DO NOTHING
             RETURNING source, page_no",
            &[&sync_id, &sources, &numbers, &records],
        )
        .await?;
    let claimed: std::collections::HashSet<(String, i64)> =
        claimed.iter().map(|row| (row.get(0), row.get(1))).collect();
    let new_pages: Vec<PageData<'a>> = pages
        .iter()
        .filter(|page| claimed.contains(&(page.source.as_str().to_string(), page.page_no as i64)))
        .copied()
        .collect();
    let skipped = pages.len() - new_pages.len();
    Ok((new_pages, skipped))
}

/// Stores models (fast path, or staging and `ON CONFLICT` when a key is already there),
/// quarantining a record whose key was stored with other content.
async fn insert_models(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    synced_at: DateTime<Utc>,
    models: &[&Model],
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    if models.is_empty() {
        return Ok(());
    }
    if copy_directly(transaction, sync_id, synced_at, models).await? {
        for model in models {
            *outcome.stored.entry(model.source).or_default() += 1;
        }
        return Ok(());
    }
    transaction
        .batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging_snapshots
                (LIKE model_snapshots INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
             TRUNCATE staging_snapshots",
        )
        .await?;
    copy_rows(transaction, "staging_snapshots", sync_id, synced_at, models).await?;
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
            *outcome.stored.entry(source).or_default() += rows;
        }
    }
    // The others are either identical to a stored record (duplicates, counted by the caller)
    // or the same key with other content: quarantine those.
    if inserted_total < models.len() as u64 {
        let quarantined = transaction
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
        for row in quarantined {
            if let Some(source) = Source::parse(row.get(0)) {
                *outcome.rejected.entry((source, RejectReason::DuplicateId)).or_default() +=
                    row.get::<_, i64>(1) as u64;
            }
        }
    }
    Ok(())
}

/// Quarantines rejects; one identical to a reject already recorded in this sync adds nothing.
async fn insert_rejects(
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
        if added > 0 {
            *outcome.rejected.entry((reject.source, reject.reason)).or_default() += added;
        }
    }
    Ok(())
}

/// Counts the records of the new pages that added neither a row nor a reject: identical to a
/// record already stored or quarantined in this sync (within their page, the transformer
/// counted them already). Adds them to the sources' `models_duplicates` in the same transaction.
async fn count_duplicates(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    new_pages: &[PageData<'_>],
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let mut records: BTreeMap<Source, u64> = BTreeMap::new();
    let mut within_pages: BTreeMap<Source, u64> = BTreeMap::new();
    for page in new_pages {
        *records.entry(page.source).or_default() += page.records();
        *within_pages.entry(page.source).or_default() += page.duplicates;
    }
    for (source, records) in records {
        let added = outcome.stored.get(&source).copied().unwrap_or(0) + outcome.rejected_of(source);
        let duplicates = records.saturating_sub(added);
        debug_assert!(
            duplicates >= within_pages[&source],
            "{source}: fewer duplicates than in-page ones"
        );
        outcome.fetched.insert(source, records);
        if duplicates > 0 {
            outcome.duplicates.insert(source, duplicates);
            transaction
                .execute(
                    "UPDATE model_sync_sources SET models_duplicates = coalesce(models_duplicates, 0) + $3
                      WHERE sync_id = $1 AND source = $2",
                    &[&sync_id, &source.as_str(), &(duplicates as i64)],
                )
                .await?;
        }
    }
    Ok(())
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
