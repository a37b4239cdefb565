//! The write of one batch of pages, in one transaction with their rejects and their entry in
//! `model_sync_pages`: the models go to history (`store::history`: new keys and versions by
//! binary COPY, volatile series, changes, and the keys the sync recorded; an unchanged model
//! writes no row).
//!
//! Exactly once, whatever is re-sent: a page whose entry is already in `model_sync_pages` (a
//! restart sent it again, or a retried batch had in fact committed) is skipped whole, so its
//! rows and its counts are written once. Within the pages written now, every record is either
//! recorded (new, changed or unchanged: it counts as stored, `model_sync_sources.snapshot_rows`),
//! adds a reject (a record whose key was already recorded in this sync with other content is
//! quarantined as `duplicate_id`), or is identical to a record already recorded or quarantined
//! in this sync, which counts as a duplicate. So for every source, always:
//! fetched = stored + rejected + duplicates.
//!
//! Every batch first takes the sync's [`SyncFence`]: a sync that is no longer running under
//! this process gets nothing more.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};

use crate::history::{ChangeKind, Digest};
use crate::model::{Model, Reject, RejectReason, Source};
use crate::store::history::{self, HistoryRules, Incoming, SeenKeys, SyncHistory};
use crate::store::syncs::SyncFence;
use crate::store::{Database, StoreError};

/// JSON text sent as `jsonb` without re-serializing it (binary jsonb is a version byte + text).
#[derive(Debug)]
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

/// One page of parsed records, as the writer holds it.
#[derive(Debug, Clone, Copy)]
pub struct PageData<'a> {
    pub source: Source,
    pub page_no: u64,
    pub models: &'a [Model],
    /// `history::digest` of each model, in the same order (the transformer computes them).
    pub digests: &'a [Digest],
    pub rejects: &'a [Reject],
    /// Records the transformer dropped as identical repeats within the page.
    pub duplicates: u64,
}

impl<'a> PageData<'a> {
    /// Every record the page held.
    pub fn records(&self) -> u64 {
        (self.models.len() + self.rejects.len()) as u64 + self.duplicates
    }

    /// The page's models with their digests, as history takes them.
    fn incoming(&self) -> impl Iterator<Item = Incoming<'a>> + 'a {
        debug_assert_eq!(self.models.len(), self.digests.len(), "a digest per model");
        self.models
            .iter()
            .zip(self.digests)
            .map(|(model, digest)| Incoming { model, digest: *digest })
    }
}

/// What one committed batch added, per source, counting only the pages committed now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub fetched: BTreeMap<Source, u64>,
    /// Models recorded (new, changed or unchanged).
    pub stored: BTreeMap<Source, u64>,
    pub rejected: BTreeMap<(Source, RejectReason), u64>,
    pub duplicates: BTreeMap<Source, u64>,
    /// The changes written, by kind.
    pub changes: BTreeMap<(Source, ChangeKind), u64>,
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
        for (key, rows) in other.changes {
            *self.changes.entry(key).or_default() += rows;
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
/// has not yet seen in this sync (`fields`, see [`crate::store::fields`]). `history` holds the
/// `[history]` rules and what the sync recorded so far (loaded from the database when unknown,
/// and forgotten after a failure, whose commit may or may not have happened). A batch
/// PostgreSQL refuses for its data fails as a whole ([`StoreError::is_data_error`]); write its
/// pages with [`write_page_row_by_row`] then.
pub async fn write_batch(
    database: &Database,
    fence: &SyncFence,
    history: &SyncHistory,
    pages: &[PageData<'_>],
    fields: &[(Source, String)],
) -> Result<BatchOutcome, StoreError> {
    let mut seen = history.lock_seen(database, fence.sync_id).await?;
    let written = write_batch_once(database, fence, &history.rules, seen.keys(), pages, fields).await;
    seen.settle(written)
}

async fn write_batch_once(
    database: &Database,
    fence: &SyncFence,
    rules: &HistoryRules,
    seen: &mut SeenKeys,
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
    let models: Vec<Incoming<'_>> = new_pages.iter().flat_map(PageData::incoming).collect();
    let rejects: Vec<&Reject> = new_pages.iter().flat_map(|page| page.rejects.iter()).collect();
    history::write_models(&transaction, fence.sync_id, rules, seen, &models, &mut outcome).await?;
    insert_rejects(&transaction, fence.sync_id, &rejects, &mut outcome).await?;
    count_duplicates(&transaction, fence.sync_id, &new_pages, &mut outcome).await?;
    transaction.commit().await?;
    Ok(outcome)
}

/// Writes one page with each row in a savepoint of its own, after its batch failed for its
/// data: a row PostgreSQL refuses becomes a reject with the database's reason, the others are
/// stored. One transaction for the page (so it is written once, like any page); any error that
/// is not about a row's data rolls the page back for the caller to retry or give up. `fields`
/// and `history` as for [`write_batch`].
pub async fn write_page_row_by_row(
    database: &Database,
    fence: &SyncFence,
    history: &SyncHistory,
    page: &PageData<'_>,
    fields: &[(Source, String)],
) -> Result<BatchOutcome, StoreError> {
    let mut seen = history.lock_seen(database, fence.sync_id).await?;
    let written = write_page_row_by_row_once(database, fence, &history.rules, seen.keys(), page, fields).await;
    seen.settle(written)
}

async fn write_page_row_by_row_once(
    database: &Database,
    fence: &SyncFence,
    rules: &HistoryRules,
    seen: &mut SeenKeys,
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
    for incoming in page.incoming() {
        let model = incoming.model;
        let row = transaction.savepoint("one_row").await?;
        let mut written = BatchOutcome::default();
        // A row rolled back recorded no key: `write_models` adds them only once it succeeded.
        match history::write_models(&row, fence.sync_id, rules, seen, &[incoming], &mut written).await {
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

/// Quarantines rejects; one identical to a reject already recorded in this sync adds nothing.
pub(crate) async fn insert_rejects(
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

/// PostgreSQL text cannot hold NUL; keep the information visible as the JSON escape.
fn without_nul(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\\u0000")
    } else {
        text.to_string()
    }
}
