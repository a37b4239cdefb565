//! The end of a source's listing (DESIGN.md §8): what the listing lacked, and what to do with
//! it (`history::listing_end`), inside the sync's final (fenced) transaction; and forgetting
//! what a finished sync saw.

use crate::history::{self, EndReason, ListingEnd, ListingFacts, ListingOutcome};
use crate::model::Source;
use crate::store::history::{is_baseline, key_text, key_text_of, notify_changes, HistoryRules};
use crate::store::StoreError;
use tokio_postgres::Transaction;

/// What the end of a listing did.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingSummary {
    pub end: ListingEnd,
    /// Versions closed (as removed or out of window).
    pub closed: u64,
    /// `removed` change rows written.
    pub removed: u64,
}

/// The end of a source's listing, inside the caller's transaction (the sync's final record):
/// closes the current versions of the models the listing lacked, as `history::listing_end`
/// decides (removed with a change row, silently out of window, or held), and records how the
/// listing ended. A failed listing closes nothing and needs no database work.
pub async fn end_source_listing(
    transaction: &Transaction<'_>,
    sync_id: i64,
    source: Source,
    listing: ListingOutcome,
    rules: &HistoryRules,
) -> Result<ListingSummary, StoreError> {
    let nothing = ListingSummary {
        end: ListingEnd::Nothing,
        closed: 0,
        removed: 0,
    };
    let ListingOutcome::Succeeded { truncated } = listing else {
        return Ok(nothing);
    };
    // The lacking keys are an anti-join of the source's current keys with the ids the sync's
    // batches recorded: let it hash in memory rather than spill.
    transaction.batch_execute("SET LOCAL work_mem = '128MB'").await?;
    let baseline = is_baseline(transaction, sync_id, source).await?;
    // A TEMP table (the runtime role may create those), dropped below: the final transaction
    // ends every source's listing in turn.
    transaction
        .execute(
            "CREATE TEMP TABLE history_lacking ON COMMIT DROP AS
             WITH seen AS MATERIALIZED (
                SELECT unnest(key_ids) AS key_id FROM model_sync_seen WHERE sync_id = $2 AND source = $1)
             SELECT k.id AS key_id, k.provider, k.model_id, k.latest_from_sync
               FROM model_keys k
              WHERE k.source = $1 AND k.closed_as IS NULL AND k.latest_from_sync < $2
                AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.key_id = k.id)",
            &[&source.as_str(), &sync_id],
        )
        .await?;
    let counts = transaction
        .query_one(
            "SELECT (SELECT count(*) FROM history_lacking),
                    (SELECT count(*) FROM model_keys WHERE source = $1 AND closed_as IS NULL AND first_sync_id < $2)",
            &[&source.as_str(), &sync_id],
        )
        .await?;
    let facts = ListingFacts {
        baseline,
        lacking: counts.get::<_, i64>(0) as u64,
        current: counts.get::<_, i64>(1) as u64,
    };
    let end = history::listing_end(listing, facts, rules.max_removed_percent);
    let mut summary = ListingSummary {
        end,
        closed: 0,
        removed: 0,
    };
    let mut last_change = None;
    match end {
        ListingEnd::Nothing => {}
        ListingEnd::CloseOutOfWindow | ListingEnd::Remove => {
            let reason = if end == ListingEnd::Remove {
                EndReason::Removed
            } else {
                EndReason::OutOfWindow
            };
            summary.closed = transaction
                .execute(
                    "UPDATE model_versions v SET valid_to_sync = $1, end_reason = $2
                       FROM history_lacking l
                      WHERE v.key_id = l.key_id AND v.valid_from_sync = l.latest_from_sync
                        AND v.valid_to_sync IS NULL",
                    &[&sync_id, &reason.as_str()],
                )
                .await?;
            transaction
                .execute(
                    &format!(
                        "UPDATE model_keys k SET closed_as = $2 FROM history_lacking l
                          WHERE {} = {} AND k.id = l.key_id",
                        key_text("k"),
                        key_text_of("$1", "l.provider", "l.model_id")
                    ),
                    &[&source.as_str(), &reason.as_str()],
                )
                .await?;
            if reason == EndReason::Removed && !baseline {
                let rows = transaction
                    .query(
                        "INSERT INTO model_changes (sync_id, source, provider, model_id, kind, before)
                         SELECT $1, v.source, v.provider, v.model_id, 'removed', model_lens_content(v)
                           FROM history_lacking l
                           JOIN model_versions v ON v.key_id = l.key_id AND v.valid_from_sync = l.latest_from_sync
                          ORDER BY v.provider, v.model_id
                         RETURNING id",
                        &[&sync_id],
                    )
                    .await?;
                summary.removed = rows.len() as u64;
                last_change = rows.iter().map(|row| row.get::<_, i64>(0)).max();
            }
        }
        ListingEnd::Hold(_) => {
            // What the listing lacked stays current, but the sync's snapshot shows what it
            // fetched.
            transaction
                .execute(
                    "INSERT INTO model_held_absences (sync_id, key_id) SELECT $1, key_id FROM history_lacking",
                    &[&sync_id],
                )
                .await?;
        }
    }
    transaction
        .execute(
            "UPDATE model_sync_sources SET listing_truncated = $3, removals_held = $4
              WHERE sync_id = $1 AND source = $2",
            &[
                &sync_id,
                &source.as_str(),
                &truncated,
                &matches!(end, ListingEnd::Hold(_)),
            ],
        )
        .await?;
    transaction.batch_execute("DROP TABLE history_lacking").await?;
    if let Some(id) = last_change {
        notify_changes(transaction, id).await?;
    }
    Ok(summary)
}

/// Forgets what a sync recorded (`model_sync_seen`) once it is over: at its final record, in
/// that transaction, and when interrupted syncs are recovered. DELETE, not TRUNCATE: the
/// runtime role has no TRUNCATE (docs/operations.md, "Database roles"); the rows are one small
/// array per batch, and autovacuum takes the dead ones.
pub async fn forget_seen(transaction: &Transaction<'_>, sync_ids: &[i64]) -> Result<(), StoreError> {
    transaction
        .execute("DELETE FROM model_sync_seen WHERE sync_id = ANY($1)", &[&sync_ids])
        .await?;
    Ok(())
}
