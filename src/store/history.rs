//! History in SQL (DESIGN.md §8): the batch write that compares records with the current
//! versions and writes only what changed, the end of a source's listing that closes what a
//! listing lacked, and the end of a sync. The decisions come from `crate::history`; this file
//! only moves data.
//!
//! A batch, per source, in one transaction:
//! 1. one index probe per record into `model_keys` (the key's latest version: where it starts,
//!    whether it is current, its content and record hashes);
//! 2. records whose version predates the sync are marked in the unlogged `model_sync_seen`
//!    (`ON CONFLICT DO NOTHING`: a key marked before is a re-send or a duplicate);
//! 3. records whose content hash differs (or is unknown) are compared with their previous
//!    version's columns and record;
//! 4. only then are rows written: new keys and versions by binary COPY, closed versions, the
//!    keys' new state, volatile series rows, change rows, and the sync's row count.
//!
//! An unchanged re-sync therefore writes one small unlogged row per model, and nothing that
//! outlives the sync.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use futures::pin_mut;
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::config::HistoryConfig;
use crate::history::{
    self, ChangeKind, Comparison, Content, CurrentAction, Digest, EndReason, FirstLook, KeyState, ListingEnd,
    ListingFacts, ListingOutcome, Previous, RecordParts,
};
use crate::model::{Model, Reject, RejectReason, Source};
use crate::store::batch::{insert_rejects, BatchOutcome, JsonText};
use crate::store::{Database, StoreError};

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

/// Writes a batch of one sync: models (any sources) and rejects, in one transaction. Sends
/// `NOTIFY model_lens_changes` with the last change id when the batch added changes.
pub async fn write_batch(
    database: &Database,
    sync_id: i64,
    rules: &HistoryRules,
    rows: &[Incoming<'_>],
    rejects: &[&Reject],
) -> Result<BatchOutcome, StoreError> {
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    // Every join below probes an index per record. With exact row counts for the batch's
    // arrays, the planner would rather hash a whole table per batch, which is linear in the
    // catalog: keep it to index probes.
    transaction
        .batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        .await?;
    let mut outcome = BatchOutcome::default();
    let mut last_change = None;
    let mut sources: Vec<Source> = rows.iter().map(|row| row.model.source).collect();
    sources.sort();
    sources.dedup();
    for source in sources {
        let of_source: Vec<&Incoming<'_>> = rows.iter().filter(|row| row.model.source == source).collect();
        let written = SourceBatch::new(&transaction, sync_id, rules, source)
            .write(&of_source, &mut outcome)
            .await?;
        last_change = last_change.max(written);
    }
    insert_rejects(&transaction, sync_id, rejects, &mut outcome).await?;
    if let Some(id) = last_change {
        notify_changes(&transaction, id).await?;
    }
    transaction.commit().await?;
    Ok(outcome)
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

/// One record on its way: its place in the batch, what the store knew of its key, and the
/// decision taken.
struct Pending<'r> {
    row: &'r Incoming<'r>,
    key_id: Option<i64>,
    state: Option<KeyState>,
    parts: Option<RecordParts>,
}

impl Pending<'_> {
    fn parts(&mut self) -> &RecordParts {
        let model = self.row.model;
        self.parts
            .get_or_insert_with(|| history::split_record(model.source, &model.raw))
    }
}

/// A record to compare with its previous version (content hash differs or unknown, or the key
/// returns after being closed).
struct ToCompare {
    index: usize,
    previous: Previous,
    from_sync: i64,
}

/// A new version to write.
struct NewVersion {
    index: usize,
    change: Option<ChangeKind>,
    fields: Vec<&'static str>,
    hold_reason: Option<String>,
    /// The version it replaces or follows (`valid_from_sync`), for the change row.
    previous_from: Option<i64>,
    /// The current version to close as replaced.
    closes_current: bool,
}

/// The keys whose row in `model_keys` changes (state after this batch).
struct KeyUpdate {
    index: usize,
    latest_from_sync: i64,
    content_hash: Option<[u8; 16]>,
}

struct SourceBatch<'t, 'c> {
    transaction: &'t Transaction<'c>,
    sync_id: i64,
    rules: &'t HistoryRules,
    source: Source,
}

impl<'t, 'c> SourceBatch<'t, 'c> {
    fn new(transaction: &'t Transaction<'c>, sync_id: i64, rules: &'t HistoryRules, source: Source) -> Self {
        SourceBatch {
            transaction,
            sync_id,
            rules,
            source,
        }
    }

    /// Writes the records of one source; returns the last change id written, if any.
    async fn write(&self, rows: &[&Incoming<'_>], outcome: &mut BatchOutcome) -> Result<Option<i64>, StoreError> {
        let mut duplicates: Vec<&Incoming<'_>> = Vec::new();
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(rows.len());
        {
            // A key twice in one batch (across pages): the first record wins; the same record
            // again is nothing, another one a duplicate.
            let mut first: HashMap<(&str, &str), [u8; 16]> = HashMap::with_capacity(rows.len());
            for row in rows {
                let key = (row.model.provider.as_str(), row.model.model_id.as_str());
                match first.get(&key) {
                    Some(record) if *record == row.digest.record => {}
                    Some(_) => duplicates.push(row),
                    None => {
                        first.insert(key, row.digest.record);
                        pending.push(Pending {
                            row,
                            key_id: None,
                            state: None,
                            parts: None,
                        });
                    }
                }
            }
        }
        self.probe_keys(&mut pending).await?;
        let baseline = is_baseline(self.transaction, self.sync_id, self.source).await?;

        let mut new_keys: Vec<usize> = Vec::new();
        let mut current: Vec<(usize, Comparison, bool)> = Vec::new();
        let mut to_compare: Vec<ToCompare> = Vec::new();
        for (index, item) in pending.iter().enumerate() {
            match history::first_look(self.sync_id, &item.row.digest, item.state.as_ref()) {
                FirstLook::New => new_keys.push(index),
                FirstLook::OpenedThisSync { same_record: true } => {}
                FirstLook::OpenedThisSync { same_record: false } => duplicates.push(item.row),
                FirstLook::Current { content, same_record } => current.push((index, content, same_record)),
                FirstLook::Returning { closed_as, .. } => to_compare.push(ToCompare {
                    index,
                    previous: Previous::Closed(closed_as),
                    from_sync: item.state.as_ref().map_or(0, |state| state.latest_from_sync),
                }),
            }
        }

        let seen_before = self.mark_seen(&pending, &current).await?;
        let mut recorded = new_keys.len() as u64 + to_compare.len() as u64;
        let mut key_updates: Vec<KeyUpdate> = Vec::new();
        let mut series: Vec<usize> = Vec::new();
        for (index, content, same_record) in current {
            let key_id = pending[index].key_id.unwrap_or_default();
            match history::current_action(content, same_record, seen_before.get(&key_id).copied()) {
                CurrentAction::Resent => {}
                CurrentAction::Duplicate => duplicates.push(pending[index].row),
                CurrentAction::Unchanged => recorded += 1,
                CurrentAction::VolatileMoved => {
                    recorded += 1;
                    series.push(index);
                    key_updates.push(self.keep_version(index, &pending[index]));
                }
                CurrentAction::Compare => {
                    recorded += 1;
                    to_compare.push(ToCompare {
                        index,
                        previous: Previous::Current,
                        from_sync: pending[index].state.as_ref().map_or(0, |state| state.latest_from_sync),
                    });
                }
            }
        }

        let mut versions: Vec<NewVersion> = new_keys
            .iter()
            .map(|&index| NewVersion {
                index,
                change: history::outcome(Previous::None, &[], baseline).change,
                fields: Vec::new(),
                hold_reason: None,
                previous_from: None,
                closes_current: false,
            })
            .collect();
        for (compared, (old, same_data)) in self
            .previous_contents(&mut pending, &to_compare)
            .await?
            .into_iter()
            .enumerate()
        {
            let ToCompare {
                index,
                previous,
                from_sync,
            } = to_compare[compared];
            let new = Content::of(pending[index].row.model);
            let fields = history::changed_fields(&old, &new, same_data);
            let decided = history::outcome(previous, &fields, baseline);
            if !decided.new_version {
                // The same content after all (a hash of another rule, or formatting): keep the
                // version, remember its hash, and record moved volatile values.
                key_updates.push(self.keep_version(index, &pending[index]));
                if pending[index].state.as_ref().map(|state| state.record_hash)
                    != Some(pending[index].row.digest.record)
                {
                    series.push(index);
                }
                continue;
            }
            let hold_reason = decided
                .change
                .and_then(|_| history::hold_reason(&old, &new, self.rules.price_jump_factor));
            versions.push(NewVersion {
                index,
                change: decided.change,
                fields,
                hold_reason,
                previous_from: Some(from_sync),
                closes_current: previous == Previous::Current,
            });
            key_updates.push(KeyUpdate {
                index,
                latest_from_sync: self.sync_id,
                content_hash: Some(pending[index].row.digest.content),
            });
        }

        self.insert_new_keys(&mut pending, &new_keys).await?;
        self.close_replaced(&pending, &versions).await?;
        self.copy_versions(&mut pending, &versions).await?;
        self.update_keys(&pending, &key_updates).await?;
        self.insert_series(&mut pending, &series).await?;
        let last_change = self.insert_changes(&pending, &versions, outcome).await?;
        self.quarantine_duplicates(&duplicates, outcome).await?;
        if recorded > 0 {
            self.transaction
                .execute(
                    "UPDATE model_sync_sources SET snapshot_rows = snapshot_rows + $3
                      WHERE sync_id = $1 AND source = $2",
                    &[&self.sync_id, &self.source.as_str(), &(recorded as i64)],
                )
                .await?;
            *outcome.stored.entry(self.source).or_default() += recorded;
        }
        Ok(last_change)
    }

    /// The key's row after a record that keeps its version (volatile values moved, or the
    /// content proved the same): same version, the record's hashes.
    fn keep_version(&self, index: usize, item: &Pending<'_>) -> KeyUpdate {
        KeyUpdate {
            index,
            latest_from_sync: item.state.as_ref().map_or(self.sync_id, |state| state.latest_from_sync),
            content_hash: Some(item.row.digest.content),
        }
    }

    /// Fills `key_id` and `state` of every record whose key is known.
    async fn probe_keys(&self, pending: &mut [Pending<'_>]) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let providers: Vec<&str> = pending.iter().map(|p| p.row.model.provider.as_str()).collect();
        let model_ids: Vec<&str> = pending.iter().map(|p| p.row.model.model_id.as_str()).collect();
        let rows = self
            .transaction
            .query(
                "SELECT b.ord, k.id, k.latest_from_sync, k.closed_as, k.content_hash, k.record_hash
                   FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS b(provider, model_id, ord)
                   JOIN model_keys k
                     ON k.source = $1 AND k.provider = b.provider AND k.model_id = b.model_id",
                &[&self.source.as_str(), &providers, &model_ids],
            )
            .await?;
        for row in rows {
            let index = row.get::<_, i64>(0) as usize - 1;
            let closed_as: Option<&str> = row.get(3);
            pending[index].key_id = Some(row.get(1));
            pending[index].state = Some(KeyState {
                latest_from_sync: row.get(2),
                closed_as: closed_as.and_then(EndReason::parse),
                content_hash: row.get::<_, Option<&[u8]>>(4).and_then(hash16),
                record_hash: hash16(row.get(5)).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Marks the keys whose version predates the sync as seen by it. Returns, for the keys it
    /// had seen already, whether with the same record.
    async fn mark_seen(
        &self,
        pending: &[Pending<'_>],
        current: &[(usize, Comparison, bool)],
    ) -> Result<HashMap<i64, bool>, StoreError> {
        let mut seen_before = HashMap::new();
        if current.is_empty() {
            return Ok(seen_before);
        }
        let key_ids: Vec<i64> = current
            .iter()
            .map(|(index, ..)| pending[*index].key_id.unwrap_or_default())
            .collect();
        let records: Vec<&[u8]> = current
            .iter()
            .map(|(index, ..)| &pending[*index].row.digest.record[..])
            .collect();
        let inserted: HashSet<i64> = self
            .transaction
            .query(
                "INSERT INTO model_sync_seen (sync_id, key_id, record_hash)
                 SELECT $1, * FROM unnest($2::int8[], $3::bytea[])
                 ON CONFLICT DO NOTHING RETURNING key_id",
                &[&self.sync_id, &key_ids, &records],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if inserted.len() == key_ids.len() {
            return Ok(seen_before);
        }
        let again: Vec<i64> = key_ids.iter().copied().filter(|id| !inserted.contains(id)).collect();
        let records_by_key: HashMap<i64, &[u8]> = key_ids.iter().copied().zip(records.iter().copied()).collect();
        for row in self
            .transaction
            .query(
                "SELECT key_id, record_hash FROM model_sync_seen WHERE sync_id = $1 AND key_id = ANY($2)",
                &[&self.sync_id, &again],
            )
            .await?
        {
            let key_id: i64 = row.get(0);
            let seen_record: &[u8] = row.get(1);
            seen_before.insert(key_id, records_by_key.get(&key_id) == Some(&seen_record));
        }
        Ok(seen_before)
    }

    /// The content of each compared record's previous version, and whether its stored record
    /// (without volatile members) equals the new one, in the order of `to_compare`.
    async fn previous_contents(
        &self,
        pending: &mut [Pending<'_>],
        to_compare: &[ToCompare],
    ) -> Result<Vec<(Content, bool)>, StoreError> {
        if to_compare.is_empty() {
            return Ok(Vec::new());
        }
        let key_ids: Vec<i64> = to_compare
            .iter()
            .map(|c| pending[c.index].key_id.unwrap_or_default())
            .collect();
        let from_syncs: Vec<i64> = to_compare.iter().map(|c| c.from_sync).collect();
        for compare in to_compare {
            pending[compare.index].parts();
        }
        let data: Vec<JsonText<'_>> = to_compare
            .iter()
            .map(|c| {
                JsonText(
                    pending[c.index]
                        .parts
                        .as_ref()
                        .map_or("{}", |parts| parts.data.as_str()),
                )
            })
            .collect();
        let rows = self
            .transaction
            .query(
                "SELECT n.ord, v.name, v.context_length, v.max_output_tokens, v.input_price_per_mtok,
                        v.output_price_per_mtok, v.cache_read_price_per_mtok, v.cache_write_price_per_mtok,
                        v.input_modalities, v.output_modalities, v.supports_tools, v.supports_reasoning,
                        v.open_weights, v.release_date, v.intelligence_index, v.price_tiers, v.status,
                        v.expires_on, v.intelligence_index_version, v.data = n.data
                   FROM unnest($1::int8[], $2::int8[], $3::jsonb[]) WITH ORDINALITY AS n(key_id, from_sync, data, ord)
                   JOIN model_versions v ON v.key_id = n.key_id AND v.valid_from_sync = n.from_sync",
                &[&key_ids, &from_syncs, &data],
            )
            .await?;
        let mut found: Vec<Option<(Content, bool)>> = vec![None; to_compare.len()];
        for row in rows {
            let index = row.get::<_, i64>(0) as usize - 1;
            found[index] = Some((content_from_row(&row, 1), row.get(19)));
        }
        found
            .into_iter()
            .zip(to_compare)
            .map(|(found, compare)| {
                found.ok_or_else(|| {
                    let model = pending[compare.index].row.model;
                    StoreError::Migration(format!(
                        "model_keys names a version of {} {}/{} from sync {} that model_versions does not hold",
                        model.source, model.provider, model.model_id, compare.from_sync
                    ))
                })
            })
            .collect()
    }

    /// Gives the new keys their ids and rows.
    async fn insert_new_keys(&self, pending: &mut [Pending<'_>], new_keys: &[usize]) -> Result<(), StoreError> {
        if new_keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = self
            .transaction
            .query(
                "SELECT nextval('model_keys_id_seq') FROM generate_series(1, $1::bigint)",
                &[&(new_keys.len() as i64)],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (&index, id) in new_keys.iter().zip(ids) {
            pending[index].key_id = Some(id);
        }
        let sink = self
            .transaction
            .copy_in(
                "COPY model_keys (source, provider, model_id, id, first_sync_id, latest_from_sync,
                                  content_hash, record_hash) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for &index in new_keys {
            let item = &pending[index];
            let model = item.row.model;
            writer
                .as_mut()
                .write(&[
                    &model.source.as_str(),
                    &model.provider,
                    &model.model_id,
                    &item.key_id.unwrap_or_default(),
                    &self.sync_id,
                    &self.sync_id,
                    &&item.row.digest.content[..],
                    &&item.row.digest.record[..],
                ])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn close_replaced(&self, pending: &[Pending<'_>], versions: &[NewVersion]) -> Result<(), StoreError> {
        let closing: Vec<&NewVersion> = versions.iter().filter(|version| version.closes_current).collect();
        if closing.is_empty() {
            return Ok(());
        }
        let key_ids: Vec<i64> = closing
            .iter()
            .map(|v| pending[v.index].key_id.unwrap_or_default())
            .collect();
        let from_syncs: Vec<i64> = closing.iter().map(|v| v.previous_from.unwrap_or_default()).collect();
        self.transaction
            .execute(
                "UPDATE model_versions v SET valid_to_sync = $1, end_reason = 'replaced'
                   FROM unnest($2::int8[], $3::int8[]) AS c(key_id, from_sync)
                  WHERE v.key_id = c.key_id AND v.valid_from_sync = c.from_sync AND v.valid_to_sync IS NULL",
                &[&self.sync_id, &key_ids, &from_syncs],
            )
            .await?;
        Ok(())
    }

    /// Binary COPY of the new versions (the full rows: only these cross the wire whole).
    async fn copy_versions(&self, pending: &mut [Pending<'_>], versions: &[NewVersion]) -> Result<(), StoreError> {
        if versions.is_empty() {
            return Ok(());
        }
        for version in versions {
            pending[version.index].parts();
        }
        let sink = self
            .transaction
            .copy_in(&format!(
                "COPY model_versions ({VERSION_COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &VERSION_TYPES);
        pin_mut!(writer);
        for version in versions {
            let item = &pending[version.index];
            let model = item.row.model;
            let parts = item.parts.as_ref().expect("split above");
            let price_tiers = model.price_tiers_json();
            writer
                .as_mut()
                .write(&[
                    &item.key_id.unwrap_or_default(),
                    &self.sync_id,
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
                    &price_tiers.as_deref().map(JsonText),
                    &model.status,
                    &model.expires_on,
                    &model.intelligence_index_version,
                    &JsonText(&parts.data),
                    &parts.volatile.as_deref().map(JsonText),
                    &&item.row.digest.content[..],
                    &&item.row.digest.record[..],
                ])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn update_keys(&self, pending: &[Pending<'_>], updates: &[KeyUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let providers: Vec<&str> = updates
            .iter()
            .map(|u| pending[u.index].row.model.provider.as_str())
            .collect();
        let model_ids: Vec<&str> = updates
            .iter()
            .map(|u| pending[u.index].row.model.model_id.as_str())
            .collect();
        let from_syncs: Vec<i64> = updates.iter().map(|u| u.latest_from_sync).collect();
        let contents: Vec<Option<&[u8]>> = updates
            .iter()
            .map(|u| u.content_hash.as_ref().map(|h| &h[..]))
            .collect();
        let records: Vec<&[u8]> = updates
            .iter()
            .map(|u| &pending[u.index].row.digest.record[..])
            .collect();
        self.transaction
            .execute(
                "UPDATE model_keys k
                    SET latest_from_sync = u.from_sync, closed_as = NULL,
                        content_hash = u.content_hash, record_hash = u.record_hash
                   FROM unnest($2::text[], $3::text[], $4::int8[], $5::bytea[], $6::bytea[])
                        AS u(provider, model_id, from_sync, content_hash, record_hash)
                  WHERE k.source = $1 AND k.provider = u.provider AND k.model_id = u.model_id",
                &[
                    &self.source.as_str(),
                    &providers,
                    &model_ids,
                    &from_syncs,
                    &contents,
                    &records,
                ],
            )
            .await?;
        Ok(())
    }

    /// Volatile values that moved while the version stayed.
    async fn insert_series(&self, pending: &mut [Pending<'_>], series: &[usize]) -> Result<(), StoreError> {
        if series.is_empty() {
            return Ok(());
        }
        for &index in series {
            pending[index].parts();
        }
        let key_ids: Vec<i64> = series.iter().map(|&i| pending[i].key_id.unwrap_or_default()).collect();
        let downloads: Vec<Option<i64>> = series.iter().map(|&i| pending[i].row.model.downloads).collect();
        let likes: Vec<Option<i64>> = series.iter().map(|&i| pending[i].row.model.likes).collect();
        let volatile: Vec<Option<JsonText<'_>>> = series
            .iter()
            .map(|&i| {
                pending[i]
                    .parts
                    .as_ref()
                    .and_then(|parts| parts.volatile.as_deref())
                    .map(JsonText)
            })
            .collect();
        let records: Vec<&[u8]> = series.iter().map(|&i| &pending[i].row.digest.record[..]).collect();
        self.transaction
            .execute(
                "INSERT INTO model_volatile_series (key_id, sync_id, downloads, likes, volatile, record_hash)
                 SELECT u.key_id, $1, u.downloads, u.likes, u.volatile, u.record_hash
                   FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::jsonb[], $6::bytea[])
                        AS u(key_id, downloads, likes, volatile, record_hash)
                 ON CONFLICT DO NOTHING",
                &[&self.sync_id, &key_ids, &downloads, &likes, &volatile, &records],
            )
            .await?;
        Ok(())
    }

    /// Change rows for the new versions that make one, built from the versions themselves so
    /// `before` / `after` read like `model_lens_content`. Returns the last id.
    async fn insert_changes(
        &self,
        pending: &[Pending<'_>],
        versions: &[NewVersion],
        outcome: &mut BatchOutcome,
    ) -> Result<Option<i64>, StoreError> {
        let changes: Vec<&NewVersion> = versions.iter().filter(|v| v.change.is_some()).collect();
        if changes.is_empty() {
            return Ok(None);
        }
        let key_ids: Vec<i64> = changes
            .iter()
            .map(|v| pending[v.index].key_id.unwrap_or_default())
            .collect();
        let kinds: Vec<&str> = changes
            .iter()
            .map(|v| v.change.map_or("", ChangeKind::as_str))
            .collect();
        let fields: Vec<String> = changes.iter().map(|v| v.fields.join(",")).collect();
        let previous: Vec<Option<i64>> = changes.iter().map(|v| v.previous_from).collect();
        let holds: Vec<Option<&str>> = changes.iter().map(|v| v.hold_reason.as_deref()).collect();
        let rows = self
            .transaction
            .query(
                "INSERT INTO model_changes (sync_id, source, provider, model_id, kind, fields, before, after, hold_reason)
                 SELECT $1, nv.source, nv.provider, nv.model_id, c.kind, string_to_array(c.fields, ','),
                        CASE WHEN ov.key_id IS NOT NULL AND c.kind <> 'added' THEN
                            (SELECT jsonb_object_agg(f, model_lens_content(ov) -> f)
                               FROM unnest(string_to_array(c.fields, ',')) f WHERE f <> 'data')
                        END,
                        CASE WHEN c.kind = 'changed' THEN
                            (SELECT jsonb_object_agg(f, model_lens_content(nv) -> f)
                               FROM unnest(string_to_array(c.fields, ',')) f WHERE f <> 'data')
                             ELSE model_lens_content(nv)
                        END,
                        c.hold_reason
                   FROM unnest($2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[])
                        WITH ORDINALITY AS c(key_id, kind, fields, previous_from, hold_reason, ord)
                   JOIN model_versions nv ON nv.key_id = c.key_id AND nv.valid_from_sync = $1
                   LEFT JOIN model_versions ov ON ov.key_id = c.key_id AND ov.valid_from_sync = c.previous_from
                  ORDER BY c.ord
                 RETURNING id, kind",
                &[&self.sync_id, &key_ids, &kinds, &fields, &previous, &holds],
            )
            .await?;
        let mut last = None;
        for row in rows {
            last = last.max(Some(row.get::<_, i64>(0)));
            if let Some(kind) = ChangeKind::parse(row.get(1)) {
                *outcome.changes.entry((self.source, kind)).or_default() += 1;
            }
        }
        Ok(last)
    }

    /// Records that repeat a key this sync stored with another record: quarantined with their
    /// raw text (as jsonb writes it), the stored one kept.
    async fn quarantine_duplicates(
        &self,
        duplicates: &[&Incoming<'_>],
        outcome: &mut BatchOutcome,
    ) -> Result<(), StoreError> {
        if duplicates.is_empty() {
            return Ok(());
        }
        let model_ids: Vec<&str> = duplicates.iter().map(|d| d.model.model_id.as_str()).collect();
        let raws: Vec<JsonText<'_>> = duplicates.iter().map(|d| JsonText(&d.model.raw)).collect();
        let hashes: Vec<&[u8]> = duplicates.iter().map(|d| &d.digest.record[..]).collect();
        let added = self
            .transaction
            .execute(
                "INSERT INTO model_rejects (sync_id, source, reason, detail, model_id, raw, raw_hash)
                 SELECT $1, $2, 'duplicate_id',
                        'another record with the same provider and id was already stored in this sync',
                        d.model_id, d.raw::text, d.raw_hash
                   FROM unnest($3::text[], $4::jsonb[], $5::bytea[]) AS d(model_id, raw, raw_hash)
                 ON CONFLICT DO NOTHING",
                &[&self.sync_id, &self.source.as_str(), &model_ids, &raws, &hashes],
            )
            .await?;
        if added > 0 {
            *outcome
                .rejected
                .entry((self.source, RejectReason::DuplicateId))
                .or_default() += added;
        }
        Ok(())
    }
}

fn hash16(bytes: &[u8]) -> Option<[u8; 16]> {
    bytes.try_into().ok()
}

/// The content columns of a version read from a row, starting at column `start` in the order
/// of `history::CONTENT_COLUMNS`.
pub fn content_from_row(row: &tokio_postgres::Row, start: usize) -> Content {
    Content {
        name: row.get(start),
        context_length: row.get(start + 1),
        max_output_tokens: row.get(start + 2),
        input_price_per_mtok: row.get(start + 3),
        output_price_per_mtok: row.get(start + 4),
        cache_read_price_per_mtok: row.get(start + 5),
        cache_write_price_per_mtok: row.get(start + 6),
        input_modalities: row.get(start + 7),
        output_modalities: row.get(start + 8),
        supports_tools: row.get(start + 9),
        supports_reasoning: row.get(start + 10),
        open_weights: row.get(start + 11),
        release_date: row.get::<_, Option<NaiveDate>>(start + 12),
        intelligence_index: row.get(start + 13),
        price_tiers: row.get(start + 14),
        status: row.get(start + 15),
        expires_on: row.get(start + 16),
        intelligence_index_version: row.get(start + 17),
    }
}

const VERSION_COLUMNS: &str = "key_id, valid_from_sync, source, provider, model_id, name, context_length, \
    max_output_tokens, input_price_per_mtok, output_price_per_mtok, cache_read_price_per_mtok, \
    cache_write_price_per_mtok, input_modalities, output_modalities, supports_tools, \
    supports_reasoning, open_weights, release_date, downloads, likes, intelligence_index, \
    price_tiers, status, expires_on, intelligence_index_version, data, volatile, content_hash, record_hash";

const VERSION_TYPES: [Type; 29] = [
    Type::INT8,
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
    Type::TEXT,
    Type::DATE,
    Type::TEXT,
    Type::JSONB,
    Type::JSONB,
    Type::BYTEA,
    Type::BYTEA,
];

/// What the end of a listing did.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingSummary {
    pub end: ListingEnd,
    /// Versions closed (as removed or out of window).
    pub closed: u64,
    /// `removed` change rows written.
    pub removed: u64,
}

/// The end of a source's listing, in one transaction: closes the current versions of the
/// models the listing lacked, as `history::listing_end` decides (removed with a change row,
/// silently out of window, or held), and records how the listing ended. A failed listing
/// closes nothing and needs no database work.
pub async fn end_source_listing(
    database: &Database,
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
    let mut client = database.pool.get().await?;
    let transaction = client.transaction().await?;
    // The lacking keys are an anti-join of the source's keys with what the sync saw: let it
    // hash in memory rather than spill.
    transaction.batch_execute("SET LOCAL work_mem = '128MB'").await?;
    let restarted: bool = transaction
        .query_one(
            "SELECT coalesce(pg_postmaster_start_time() > started_at, false) FROM model_syncs WHERE id = $1",
            &[&sync_id],
        )
        .await?
        .get(0);
    let baseline = is_baseline(&transaction, sync_id, source).await?;
    transaction
        .execute(
            "CREATE TEMP TABLE history_lacking ON COMMIT DROP AS
             SELECT k.id AS key_id, k.provider, k.model_id, k.latest_from_sync
               FROM model_keys k
              WHERE k.source = $1 AND k.closed_as IS NULL AND k.latest_from_sync < $2
                AND NOT EXISTS (SELECT 1 FROM model_sync_seen s WHERE s.sync_id = $2 AND s.key_id = k.id)",
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
        restarted,
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
                    "UPDATE model_keys k SET closed_as = $2 FROM history_lacking l
                      WHERE k.source = $1 AND k.provider = l.provider AND k.model_id = l.model_id",
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
        ListingEnd::Hold(cause) => {
            // What the listing lacked stays current, but the sync's snapshot shows what it
            // fetched. After a restart the lacking set is not known, so nothing is marked.
            if cause != history::HoldCause::Restarted {
                transaction
                    .execute(
                        "INSERT INTO model_held_absences (sync_id, key_id) SELECT $1, key_id FROM history_lacking",
                        &[&sync_id],
                    )
                    .await?;
            }
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
    if let Some(id) = last_change {
        notify_changes(&transaction, id).await?;
    }
    transaction.commit().await?;
    Ok(summary)
}

/// Forgets what finished syncs saw (`model_sync_seen`). Only while no sync writes: at the end
/// of a sync, or when recovering interrupted ones (both under the sync lock).
pub async fn forget_seen(database: &Database) -> Result<(), StoreError> {
    let client = database.pool.get().await?;
    client.batch_execute("TRUNCATE model_sync_seen").await?;
    Ok(())
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
