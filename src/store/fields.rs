//! The schema drift alarm's bookkeeping (DESIGN.md §9, `sql/0004_source_fields.sql`): which
//! top-level record keys each source has stored, and the sync that stored each first.
//!
//! The writer records the keys of the pages it commits in the batch's own transaction, so the
//! keys are durable exactly when the rows are; a re-sent page records nothing twice. At the
//! end of a sync, a source's new fields are the keys whose first sync it is, unless no earlier
//! sync of the source recorded any key: that first sync is the source's baseline in this
//! database, and reports none.

use crate::model::Source;
use crate::store::{Database, StoreError};

/// Records that `sync_id` stored records with these keys (a key already known keeps its first
/// sync). Runs inside the caller's transaction.
pub async fn record(
    transaction: &tokio_postgres::Transaction<'_>,
    sync_id: i64,
    fields: &[(Source, String)],
) -> Result<(), StoreError> {
    if fields.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = fields.iter().map(|(source, _)| source.as_str()).collect();
    let names: Vec<&str> = fields.iter().map(|(_, field)| field.as_str()).collect();
    transaction
        .execute(
            "INSERT INTO model_source_fields (source, field, first_sync_id)
             SELECT source, field, $3 FROM unnest($1::text[], $2::text[]) AS f(source, field)
             ON CONFLICT (source, field) DO NOTHING",
            &[&sources, &names, &sync_id],
        )
        .await?;
    Ok(())
}

/// What a finished source's sync added to the keys it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// No earlier sync of the source recorded a key: this one is the baseline.
    pub baseline: bool,
    /// Keys first stored by this sync, sorted (every key of a baseline).
    pub first_seen: Vec<String>,
}

impl Drift {
    /// The `new_fields` of the source's row: nothing for a baseline.
    pub fn new_fields(&self) -> Vec<String> {
        if self.baseline {
            Vec::new()
        } else {
            self.first_seen.clone()
        }
    }
}

/// The drift of `source` in sync `sync_id` (see [`Drift`]).
pub async fn drift(database: &Database, sync_id: i64, source: Source) -> Result<Drift, StoreError> {
    let client = database.pool.get().await?;
    let row = client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM model_source_fields
                                 WHERE source = $1 AND first_sync_id < $2),
                    coalesce((SELECT array_agg(field ORDER BY field) FROM model_source_fields
                               WHERE source = $1 AND first_sync_id = $2), '{}')",
            &[&source.as_str(), &sync_id],
        )
        .await?;
    Ok(Drift {
        baseline: row.get(0),
        first_seen: row.get(1),
    })
}
