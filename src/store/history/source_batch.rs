//! One source's part of a batch: probe, decide, write (see `store/history/mod.rs`).

use std::collections::HashMap;

use chrono::NaiveDate;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::history::{
    self, ChangeKind, Content, CurrentAction, EndReason, FirstLook, KeyState, Previous, VersionParts,
};
use crate::model::{RejectReason, Source};
use crate::store::batch::{BatchOutcome, JsonText};
use crate::store::history::{is_baseline, key_text, key_text_of, HistoryRules, Incoming, SeenKeys};
use crate::store::StoreError;

/// One record on its way: its place in the batch, what the store knew of its key, and the
/// decision taken.
struct Pending<'r> {
    row: &'r Incoming<'r>,
    key_id: Option<i64>,
    state: Option<KeyState>,
    /// `history::version_parts`, computed when first needed (it costs about as much as
    /// parsing): for records that differ from their stored version, and new ones.
    parts: Option<VersionParts>,
}

impl Pending<'_> {
    fn parts(&mut self) -> &VersionParts {
        let model = self.row.model;
        self.parts.get_or_insert_with(|| history::version_parts(model))
    }

    fn content_hash(&mut self) -> [u8; 16] {
        self.parts().content_hash
    }

    /// The content hash once [`Pending::parts`] ran.
    fn known_content_hash(&self) -> Option<&[u8]> {
        self.parts.as_ref().map(|parts| &parts.content_hash[..])
    }
}

/// A record to compare with its previous version (content hash differs or unknown, or the key
/// returns after being closed).
#[derive(Clone, Copy)]
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

/// What a batch does, decided per record before anything is written.
#[derive(Default)]
struct Plan<'r> {
    new_keys: Vec<usize>,
    to_compare: Vec<ToCompare>,
    key_updates: Vec<KeyUpdate>,
    series: Vec<usize>,
    duplicates: Vec<&'r Incoming<'r>>,
    /// The known keys recorded (the new keys are added once they have ids).
    recorded_keys: Vec<i64>,
}

/// The keys whose row in `model_keys` changes: their latest version starts at
/// `latest_from_sync`, and the record's hashes become the key's.
struct KeyUpdate {
    index: usize,
    latest_from_sync: i64,
}

/// What one source's part of a batch wrote.
pub(super) struct SourceWritten {
    /// The last change id written, if any.
    pub last_change: Option<i64>,
    /// The keys this batch recorded (new, unchanged or changed), for the writer's [`SeenKeys`].
    pub recorded_keys: Vec<i64>,
}

pub(super) struct SourceBatch<'t, 'c> {
    transaction: &'t Transaction<'c>,
    sync_id: i64,
    rules: &'t HistoryRules,
    source: Source,
}

impl<'t, 'c> SourceBatch<'t, 'c> {
    pub(super) fn new(transaction: &'t Transaction<'c>, sync_id: i64, rules: &'t HistoryRules, source: Source) -> Self {
        SourceBatch {
            transaction,
            sync_id,
            rules,
            source,
        }
    }

    /// Writes the records of one source. `seen`: the keys the sync recorded before this batch.
    pub(super) async fn write(
        &self,
        rows: &[&Incoming<'_>],
        seen: &SeenKeys,
        outcome: &mut BatchOutcome,
    ) -> Result<SourceWritten, StoreError> {
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
        if self.never_stored_rows().await? {
            // A source's first listing: every record is a new key, so skip the probes and
            // write directly. A key the sync stored already (a re-sent batch, or a key listed
            // in two batches) violates model_keys' uniqueness: then take the general path.
            let mut plan = Plan {
                duplicates: duplicates.clone(),
                new_keys: (0..pending.len()).collect(),
                ..Plan::default()
            };
            self.transaction.batch_execute("SAVEPOINT first_listing").await?;
            let mut attempt = BatchOutcome::default();
            match self.apply(&mut pending, &mut plan, &mut attempt).await {
                Ok(written) => {
                    self.transaction
                        .batch_execute("RELEASE SAVEPOINT first_listing")
                        .await?;
                    outcome.merge(attempt);
                    return Ok(written);
                }
                Err(StoreError::Postgres(error)) if error.code() == Some(&SqlState::EXCLUSION_VIOLATION) => {
                    self.transaction
                        .batch_execute("ROLLBACK TO SAVEPOINT first_listing")
                        .await?;
                    for item in &mut pending {
                        item.key_id = None;
                    }
                }
                Err(error) => return Err(error),
            }
        }
        self.probe_keys(&mut pending).await?;
        let mut plan = Plan {
            duplicates,
            ..Plan::default()
        };
        for (index, item) in pending.iter_mut().enumerate() {
            let seen_this_sync = item.key_id.is_some_and(|id| seen.contains(id));
            let from_sync = item.state.as_ref().map_or(0, |state| state.latest_from_sync);
            match history::first_look(self.sync_id, &item.row.digest, item.state.as_ref(), seen_this_sync) {
                FirstLook::New => plan.new_keys.push(index),
                FirstLook::SeenThisSync { same_record: true } => continue,
                FirstLook::SeenThisSync { same_record: false } => {
                    plan.duplicates.push(item.row);
                    continue;
                }
                FirstLook::Returning { closed_as } => plan.to_compare.push(ToCompare {
                    index,
                    previous: Previous::Closed(closed_as),
                    from_sync,
                }),
                FirstLook::Current { unchanged: true, .. } => {}
                FirstLook::Current {
                    unchanged: false,
                    same_record,
                } => {
                    let stored = item.state.as_ref().and_then(|state| state.content_hash);
                    let content = history::compare_content(stored, item.content_hash());
                    match history::current_action(content, same_record) {
                        CurrentAction::Unchanged => {}
                        CurrentAction::VolatileMoved => {
                            plan.series.push(index);
                            plan.key_updates.push(self.keep_version(index, item));
                        }
                        CurrentAction::Compare => plan.to_compare.push(ToCompare {
                            index,
                            previous: Previous::Current,
                            from_sync,
                        }),
                    }
                }
            }
            if let Some(key_id) = item.key_id {
                plan.recorded_keys.push(key_id);
            }
        }
        self.apply(&mut pending, &mut plan, outcome).await
    }

    /// Compares what the plan says to compare, then writes everything it decided.
    async fn apply(
        &self,
        pending: &mut [Pending<'_>],
        plan: &mut Plan<'_>,
        outcome: &mut BatchOutcome,
    ) -> Result<SourceWritten, StoreError> {
        if plan.new_keys.is_empty()
            && plan.to_compare.is_empty()
            && plan.series.is_empty()
            && plan.duplicates.is_empty()
        {
            // The common case of a re-sync: every record was unchanged.
            self.record_seen(&plan.recorded_keys, outcome).await?;
            return Ok(SourceWritten {
                last_change: None,
                recorded_keys: std::mem::take(&mut plan.recorded_keys),
            });
        }
        // From here on every statement looks rows up by key. With exact row counts for the
        // batch's arrays the planner may prefer hashing a whole table, which costs the catalog's
        // size per batch: keep to index probes.
        self.transaction
            .batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
            .await?;
        let baseline = if plan.new_keys.is_empty() && plan.to_compare.is_empty() {
            false
        } else {
            is_baseline(self.transaction, self.sync_id, self.source).await?
        };
        let mut versions: Vec<NewVersion> = plan
            .new_keys
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
            .previous_contents(pending, &plan.to_compare)
            .await?
            .into_iter()
            .enumerate()
        {
            let ToCompare {
                index,
                previous,
                from_sync,
            } = plan.to_compare[compared];
            let new = Content::of(pending[index].row.model);
            let fields = history::changed_fields(&old, &new, same_data);
            let decided = history::outcome(previous, &fields, baseline);
            if !decided.new_version {
                // The same content after all (a hash of another rule, or formatting): keep the
                // version, remember its hash, and record moved volatile values.
                plan.key_updates.push(self.keep_version(index, &pending[index]));
                if pending[index].state.as_ref().map(|state| state.record_hash)
                    != Some(pending[index].row.digest.record)
                {
                    plan.series.push(index);
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
            plan.key_updates.push(KeyUpdate {
                index,
                latest_from_sync: self.sync_id,
            });
        }

        self.insert_new_keys(pending, &plan.new_keys).await?;
        plan.recorded_keys
            .extend(plan.new_keys.iter().filter_map(|&index| pending[index].key_id));
        self.close_replaced(pending, &versions).await?;
        self.copy_versions(pending, &versions).await?;
        self.update_keys(pending, &plan.key_updates).await?;
        self.insert_series(pending, &plan.series).await?;
        let last_change = self.insert_changes(pending, &versions, outcome).await?;
        self.quarantine_duplicates(&plan.duplicates, outcome).await?;
        self.record_seen(&plan.recorded_keys, outcome).await?;
        Ok(SourceWritten {
            last_change,
            recorded_keys: std::mem::take(&mut plan.recorded_keys),
        })
    }

    /// Whether no sync stored a row for this source before this one (so it has no keys but
    /// those this sync writes).
    async fn never_stored_rows(&self) -> Result<bool, StoreError> {
        let row = self
            .transaction
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM model_sync_sources
                                     WHERE source = $1 AND sync_id < $2 AND snapshot_rows > 0)",
                &[&self.source.as_str(), &self.sync_id],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Stores the ids of the keys this batch recorded (what the end of the listing compares
    /// the source's current models with) and adds them to the source's `snapshot_rows`, in the
    /// batch's transaction, so a re-sent batch counts nothing.
    async fn record_seen(&self, recorded_keys: &[i64], outcome: &mut BatchOutcome) -> Result<(), StoreError> {
        if recorded_keys.is_empty() {
            return Ok(());
        }
        self.transaction
            .execute(
                "WITH seen AS (INSERT INTO model_sync_seen (sync_id, source, key_ids) VALUES ($1, $2, $3))
                 UPDATE model_sync_sources SET snapshot_rows = snapshot_rows + cardinality($3::int8[])
                  WHERE sync_id = $1 AND source = $2",
                &[&self.sync_id, &self.source.as_str(), &recorded_keys],
            )
            .await?;
        *outcome.stored.entry(self.source).or_default() += recorded_keys.len() as u64;
        Ok(())
    }

    /// The key's row after a record that keeps its version (volatile values moved, or the
    /// content proved the same): same version, the record's hashes.
    fn keep_version(&self, index: usize, item: &Pending<'_>) -> KeyUpdate {
        KeyUpdate {
            index,
            latest_from_sync: item.state.as_ref().map_or(self.sync_id, |state| state.latest_from_sync),
        }
    }

    /// Probes `model_keys` once per record (a lateral probe of the hash index that also keeps
    /// keys unique, so the planner never hashes the whole table) and fills `key_id` and
    /// `state` of the known keys.
    async fn probe_keys(&self, pending: &mut [Pending<'_>]) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let providers: Vec<&str> = pending.iter().map(|p| p.row.model.provider.as_str()).collect();
        let model_ids: Vec<&str> = pending.iter().map(|p| p.row.model.model_id.as_str()).collect();
        let rows = self
            .transaction
            .query(
                &format!(
                    "SELECT b.ord, k.id, k.latest_from_sync, k.closed_as, k.content_hash, k.record_hash,
                            k.columns_hash
                       FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS b(provider, model_id, ord)
                       JOIN LATERAL (SELECT id, latest_from_sync, closed_as, content_hash, record_hash, columns_hash
                                       FROM model_keys k
                                      WHERE {} = {}
                                        AND k.source = $1 AND k.provider = b.provider AND k.model_id = b.model_id
                                      LIMIT 1) k ON true",
                    key_text("k"),
                    key_text_of("$1", "b.provider", "b.model_id")
                ),
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
                columns_hash: row.get::<_, Option<&[u8]>>(6).and_then(hash16),
                record_hash: hash16(row.get(5)).unwrap_or_default(),
            });
        }
        Ok(())
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
                                  content_hash, record_hash, columns_hash, downloads, likes)
                 FROM STDIN (FORMAT binary)",
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
            Type::BYTEA,
            Type::INT8,
            Type::INT8,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for &index in new_keys {
            // Hashed while streaming, so PostgreSQL inserts the rows already sent meanwhile.
            pending[index].content_hash();
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
                    &item.known_content_hash(),
                    &&item.row.digest.record[..],
                    &&item.row.digest.columns[..],
                    &model.downloads,
                    &model.likes,
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
        self.transaction
            .execute(
                "UPDATE model_versions SET valid_to_sync = $1, end_reason = 'replaced'
                  WHERE key_id = ANY($2) AND valid_to_sync IS NULL",
                &[&self.sync_id, &key_ids],
            )
            .await?;
        Ok(())
    }

    /// Binary COPY of the new versions (the full rows: only these cross the wire whole).
    async fn copy_versions(&self, pending: &mut [Pending<'_>], versions: &[NewVersion]) -> Result<(), StoreError> {
        if versions.is_empty() {
            return Ok(());
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
            // Cut and hashed while streaming, so PostgreSQL inserts the rows already sent
            // meanwhile.
            pending[version.index].parts();
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
                    &item.known_content_hash(),
                    &&item.row.digest.record[..],
                ])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn update_keys(&self, pending: &mut [Pending<'_>], updates: &[KeyUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        for update in updates {
            pending[update.index].content_hash();
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
        let contents: Vec<Option<&[u8]>> = updates.iter().map(|u| pending[u.index].known_content_hash()).collect();
        let columns: Vec<&[u8]> = updates
            .iter()
            .map(|u| &pending[u.index].row.digest.columns[..])
            .collect();
        let records: Vec<&[u8]> = updates
            .iter()
            .map(|u| &pending[u.index].row.digest.record[..])
            .collect();
        // The current volatile values ride along (the catalog sorts by downloads from here):
        // every record that moved them passes through this update.
        let downloads: Vec<Option<i64>> = updates.iter().map(|u| pending[u.index].row.model.downloads).collect();
        let likes: Vec<Option<i64>> = updates.iter().map(|u| pending[u.index].row.model.likes).collect();
        self.transaction
            .execute(
                &format!(
                    "UPDATE model_keys k
                        SET latest_from_sync = u.from_sync, closed_as = NULL,
                            content_hash = u.content_hash, record_hash = u.record_hash,
                            columns_hash = u.columns_hash, downloads = u.downloads, likes = u.likes
                       FROM unnest($2::text[], $3::text[], $4::int8[], $5::bytea[], $6::bytea[], $7::bytea[],
                                   $8::int8[], $9::int8[])
                            AS u(provider, model_id, from_sync, content_hash, record_hash, columns_hash,
                                 downloads, likes)
                      WHERE {} = {}
                        AND k.source = $1 AND k.provider = u.provider AND k.model_id = u.model_id",
                    key_text("k"),
                    key_text_of("$1", "u.provider", "u.model_id")
                ),
                &[
                    &self.source.as_str(),
                    &providers,
                    &model_ids,
                    &from_syncs,
                    &contents,
                    &records,
                    &columns,
                    &downloads,
                    &likes,
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
