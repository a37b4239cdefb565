//! One writer per sync: buffers parsed pages and commits them in batches (size or age), one
//! transaction per batch, at most `max_batches_per_second`. Only after a commit does it
//! release the pages' tickets and tell the supervisor, which is what makes "complete" mean
//! "durable". Transient database errors are retried with backoff; a batch that PostgreSQL
//! refuses for its data is written page by page, row by row, so one bad row becomes one reject
//! instead of a lost batch (transient errors there are retried too). A supervisor that is gone
//! stops the writer; nothing it writes could be accounted for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::actors::messages::{PageKey, PageRows, SupervisorMsg, WriterMsg};
use crate::actors::Services;
use crate::model::Source;
use crate::store::batch::{write_batch, write_page_row_by_row, BatchOutcome, PageData};
use crate::store::history::{HistoryRules, SyncHistory};
use crate::store::retry::retry_transient;
use crate::store::syncs::SyncFence;
use crate::store::StoreError;
use crate::telemetry;

pub struct Writer;

pub struct WriterArgs {
    /// The sync the batches belong to, and the owner token every batch checks.
    pub fence: SyncFence,
    pub services: Services,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// The sources' in-flight slots: when one has none left, its fetcher waits on us.
    pub gates: HashMap<Source, Arc<Semaphore>>,
}

pub struct WriterState {
    args: WriterArgs,
    buffer: Vec<PageRows>,
    buffered_records: usize,
    oldest: Option<Instant>,
    abandoned: HashSet<Source>,
    /// Record keys already committed to `model_source_fields` in this sync, per source: a
    /// batch sends only the others (usually none after a source's first batch).
    recorded_fields: HashMap<Source, HashSet<String>>,
    limiter: DefaultDirectRateLimiter,
    flush_interval: Duration,
    /// The `[history]` rules and the keys this sync recorded.
    history: SyncHistory,
}

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WriterMsg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        crate::faults::maybe_panic("writer_start");
        let writer_config = &args.services.config.writer;
        let per_second = NonZeroU32::new(writer_config.max_batches_per_second).unwrap_or(NonZeroU32::MIN);
        let flush_interval = Duration::from_millis(writer_config.flush_interval_ms.max(1));
        myself.send_after(flush_interval, || WriterMsg::FlushTick);
        let history = SyncHistory::new(HistoryRules::from(&args.services.config.history));
        Ok(WriterState {
            args,
            buffer: Vec::new(),
            buffered_records: 0,
            oldest: None,
            abandoned: HashSet::new(),
            recorded_fields: HashMap::new(),
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            flush_interval,
            history,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("writer", sync_id = state.args.fence.sync_id);
        async {
            match message {
                WriterMsg::Page(page) => {
                    if state.abandoned.contains(&page.ticket.key.source) {
                        return Ok(());
                    }
                    let source = page.ticket.key.source;
                    let last = page.last;
                    state.buffered_records += page.models.len() + page.rejects.len();
                    state.oldest.get_or_insert_with(Instant::now);
                    state.buffer.push(page);
                    let producer_waiting = state
                        .args
                        .gates
                        .get(&source)
                        .is_some_and(|gate| gate.available_permits() == 0);
                    if last
                        || producer_waiting
                        || state.buffered_records >= state.args.services.config.writer.batch_size
                    {
                        flush(&myself, state).await;
                    }
                }
                WriterMsg::FlushTick => {
                    if state
                        .oldest
                        .is_some_and(|oldest| oldest.elapsed() >= state.flush_interval)
                    {
                        flush(&myself, state).await;
                    }
                    myself.send_after(state.flush_interval, || WriterMsg::FlushTick);
                }
                WriterMsg::Abandon(sources) => {
                    state.buffer.retain(|page| !sources.contains(&page.ticket.key.source));
                    state.buffered_records = state
                        .buffer
                        .iter()
                        .map(|page| page.models.len() + page.rejects.len())
                        .sum();
                    state.abandoned.extend(sources);
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// Commits everything buffered, then reports it; the pages (and their tickets) drop after.
async fn flush(myself: &ActorRef<WriterMsg>, state: &mut WriterState) {
    if state.buffer.is_empty() {
        return;
    }
    crate::faults::maybe_hang("writer_batch").await;
    let pages = std::mem::take(&mut state.buffer);
    state.buffered_records = 0;
    state.oldest = None;
    state.limiter.until_ready().await;
    let started = Instant::now();
    let rows: usize = pages.iter().map(|page| page.models.len()).sum();
    let fields = unrecorded_fields(
        &state.recorded_fields,
        pages
            .iter()
            .map(|page| (page.ticket.key.source, page.fields.as_slice())),
    );
    let written = write_pages(state, &pages, &fields).await;
    if written.fields_recorded {
        for (source, field) in fields {
            state.recorded_fields.entry(source).or_default().insert(field);
        }
    }
    let mut reports = Vec::with_capacity(2);
    if !written.committed.is_empty() {
        let outcome = written.outcome;
        telemetry::writer_batch_committed(rows, started.elapsed());
        for (source, stored) in &outcome.stored {
            telemetry::models_stored(*source, *stored);
            state.args.services.progress.records_committed(*source, *stored);
        }
        for ((source, reason), count) in &outcome.rejected {
            telemetry::models_rejected(*source, *reason, *count);
            state.args.services.progress.records_committed(*source, *count);
        }
        for ((source, kind), count) in &outcome.changes {
            telemetry::model_changes(*source, *kind, *count);
        }
        tracing::debug!(
            pages = written.committed.len(),
            rows,
            skipped_pages = outcome.skipped_pages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        reports.push(SupervisorMsg::PagesCommitted {
            sync_id: state.args.fence.sync_id,
            pages: written.committed,
            outcome,
        });
    }
    if let Some(error) = written.error {
        tracing::error!(%error, pages = written.not_written.len(), "pages could not be written");
        reports.push(SupervisorMsg::PagesNotWritten {
            sync_id: state.args.fence.sync_id,
            pages: written.not_written,
            error,
        });
    }
    for report in reports {
        if state.args.supervisor.cast(report).is_err() {
            tracing::warn!("the supervisor is gone; stopping the writer");
            myself.stop(Some("the supervisor is gone".into()));
            return;
        }
    }
    drop(pages);
}

/// What became of a flush's pages.
#[derive(Default)]
struct Written {
    committed: Vec<PageKey>,
    outcome: BatchOutcome,
    not_written: Vec<PageKey>,
    error: Option<String>,
    /// The batch's new record keys were committed (with the first page that could be).
    fields_recorded: bool,
}

fn page_data(page: &PageRows) -> PageData<'_> {
    PageData {
        source: page.ticket.key.source,
        page_no: page.ticket.key.page_no,
        models: &page.models,
        digests: &page.digests,
        rejects: &page.rejects,
        duplicates: page.duplicates,
    }
}

async fn write_pages(state: &WriterState, pages: &[PageRows], fields: &[(Source, String)]) -> Written {
    let (database, fence, history) = (&state.args.services.database, &state.args.fence, &state.history);
    let data: Vec<PageData<'_>> = pages.iter().map(page_data).collect();
    let keys = || pages.iter().map(|page| page.ticket.key).collect::<Vec<_>>();
    let error = match with_retries(state, "batch", || write_batch(database, fence, history, &data, fields)).await {
        Ok(outcome) => {
            return Written {
                committed: keys(),
                outcome,
                fields_recorded: true,
                ..Written::default()
            }
        }
        Err(error) if error.is_data_error() => error,
        Err(error) => {
            return Written {
                not_written: keys(),
                error: Some(error.to_string()),
                ..Written::default()
            }
        }
    };
    tracing::warn!(%error, "PostgreSQL refused the batch's data; writing row by row to isolate the bad rows");
    let mut written = Written::default();
    for (page, data) in pages.iter().zip(&data) {
        // The batch's new record keys go with the first page that commits.
        let page_fields = if written.fields_recorded { &[][..] } else { fields };
        match with_retries(state, "page written row by row", || {
            write_page_row_by_row(database, fence, history, data, page_fields)
        })
        .await
        {
            Ok(outcome) => {
                written.committed.push(page.ticket.key);
                written.outcome.merge(outcome);
                written.fields_recorded = true;
            }
            Err(error) => {
                written.not_written.push(page.ticket.key);
                written.error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    written
}

async fn with_retries<T, F, Fut>(state: &WriterState, what: &'static str, write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let config = &state.args.services.config.writer;
    retry_transient(config.retry_backoff(), config.max_retries, what, write).await
}

/// The most record keys the drift alarm records for one source in one sync. Records have a
/// few dozen keys; a source that keys its records by data would otherwise add a row (and an
/// entry in this writer's memory) per record. A thousand new keys is alarm enough.
const MAX_FIELDS_PER_SOURCE: usize = 1_000;

/// The record keys of the pages (`(source, keys)`) not yet committed in this sync, each once,
/// within [`MAX_FIELDS_PER_SOURCE`] per source.
fn unrecorded_fields<'a>(
    recorded: &HashMap<Source, HashSet<String>>,
    pages: impl Iterator<Item = (Source, &'a [String])>,
) -> Vec<(Source, String)> {
    let mut fresh: BTreeMap<Source, BTreeSet<&'a str>> = BTreeMap::new();
    for (source, keys) in pages {
        let known = recorded.get(&source);
        let room = MAX_FIELDS_PER_SOURCE.saturating_sub(known.map_or(0, HashSet::len));
        let entry = fresh.entry(source).or_default();
        for key in keys {
            if entry.len() >= room {
                break;
            }
            if !known.is_some_and(|known| known.contains(key)) {
                entry.insert(key);
            }
        }
    }
    fresh
        .into_iter()
        .flat_map(|(source, keys)| keys.into_iter().map(move |key| (source, key.to_string())))
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn only_keys_not_yet_recorded_are_sent_once_each() {
        let mut recorded: HashMap<Source, HashSet<String>> = HashMap::new();
        recorded.insert(Source::OpenRouter, ["id", "name"].map(String::from).into());
        let first = keys(&["id", "name", "pricing"]);
        let second = keys(&["id", "pricing", "reasoning"]);
        let models_dev = keys(&["id"]);
        let pages = [
            (Source::OpenRouter, first.as_slice()),
            (Source::OpenRouter, second.as_slice()),
            (Source::ModelsDev, models_dev.as_slice()),
        ];
        assert_eq!(
            unrecorded_fields(&recorded, pages.into_iter()),
            [
                (Source::ModelsDev, "id".to_string()),
                (Source::OpenRouter, "pricing".to_string()),
                (Source::OpenRouter, "reasoning".to_string()),
            ]
        );
    }

    #[test]
    fn a_source_records_at_most_max_fields_per_source_in_a_sync() {
        let mut recorded: HashMap<Source, HashSet<String>> = HashMap::new();
        recorded.insert(
            Source::HuggingFace,
            (0..MAX_FIELDS_PER_SOURCE - 2).map(|i| format!("old_{i}")).collect(),
        );
        let page: Vec<String> = (0..10).map(|i| format!("new_{i}")).collect();
        let fields = unrecorded_fields(&recorded, [(Source::HuggingFace, page.as_slice())].into_iter());
        assert_eq!(fields.len(), 2);
    }
}
