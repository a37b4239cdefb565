//! One writer per sync: buffers parsed pages and commits them in batches (size or age), one
//! transaction per batch, at most `max_batches_per_second`. Only after a commit does it
//! release the pages' tickets and tell the supervisor, which is what makes "complete" mean
//! "durable". Transient database errors are retried with backoff; a batch that PostgreSQL
//! refuses for its data is written page by page and row by row, so one bad row becomes one
//! reject instead of a lost batch.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::actors::messages::{PageKey, PageRows, SupervisorMsg, WriterMsg};
use crate::actors::Services;
use crate::model::{Reject, RejectReason, Source};
use crate::store::batch::BatchOutcome;
use crate::store::history::{load_seen, write_batch, HistoryRules, Incoming, SeenKeys};
use crate::store::StoreError;
use crate::telemetry;

pub struct Writer;

pub struct WriterArgs {
    pub sync_id: i64,
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
    limiter: DefaultDirectRateLimiter,
    flush_interval: Duration,
    rules: HistoryRules,
    /// The keys this sync recorded, as committed; `None` until loaded, and after a failed
    /// write (whose commit may or may not have happened).
    seen: Option<SeenKeys>,
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
        let writer_config = &args.services.config.writer;
        let per_second = NonZeroU32::new(writer_config.max_batches_per_second).unwrap_or(NonZeroU32::MIN);
        let flush_interval = Duration::from_millis(writer_config.flush_interval_ms.max(1));
        myself.send_after(flush_interval, || WriterMsg::FlushTick);
        let rules = HistoryRules::from(&args.services.config.history);
        Ok(WriterState {
            rules,
            seen: None,
            args,
            buffer: Vec::new(),
            buffered_records: 0,
            oldest: None,
            abandoned: HashSet::new(),
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            flush_interval,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("writer", sync_id = state.args.sync_id);
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
                        flush(state).await?;
                    }
                }
                WriterMsg::FlushTick => {
                    if state
                        .oldest
                        .is_some_and(|oldest| oldest.elapsed() >= state.flush_interval)
                    {
                        flush(state).await?;
                    }
                    myself.send_after(state.flush_interval, || WriterMsg::FlushTick);
                }
                WriterMsg::Drain => {
                    flush(state).await?;
                    state.args.supervisor.cast(SupervisorMsg::WriterDrained {
                        sync_id: state.args.sync_id,
                    })?;
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
async fn flush(state: &mut WriterState) -> Result<(), ActorProcessingErr> {
    if state.buffer.is_empty() {
        return Ok(());
    }
    crate::faults::maybe_panic("writer_batch");
    let pages = std::mem::take(&mut state.buffer);
    state.buffered_records = 0;
    state.oldest = None;
    state.limiter.until_ready().await;
    let started = Instant::now();
    let sync_id = state.args.sync_id;
    let keys: Vec<(PageKey, usize)> = pages
        .iter()
        .map(|page| (page.ticket.key, page.models.len() + page.rejects.len()))
        .collect();
    let rows: usize = pages.iter().map(|page| page.models.len()).sum();
    match write_with_retries(state, &pages).await {
        Ok(outcome) => {
            telemetry::writer_batch_committed(rows, started.elapsed());
            for (source, stored) in &outcome.stored {
                telemetry::models_stored(*source, *stored);
            }
            for ((source, reason), count) in &outcome.rejected {
                telemetry::models_rejected(*source, *reason, *count);
            }
            for ((source, kind), count) in &outcome.changes {
                telemetry::model_changes(*source, *kind, *count);
            }
            tracing::debug!(
                pages = keys.len(),
                rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "batch committed"
            );
            state.args.supervisor.cast(SupervisorMsg::PagesCommitted {
                sync_id,
                pages: keys,
                outcome,
            })?;
        }
        Err(error) => {
            tracing::error!(%error, pages = keys.len(), "batch could not be written");
            state.args.supervisor.cast(SupervisorMsg::PagesNotWritten {
                sync_id,
                pages: keys.into_iter().map(|(key, _)| key).collect(),
                error: error.to_string(),
            })?;
        }
    }
    drop(pages);
    Ok(())
}

/// The models of `pages` with their digests, as the history write takes them.
fn incoming(pages: &[PageRows]) -> Vec<Incoming<'_>> {
    pages.iter().flat_map(page_incoming).collect()
}

fn page_incoming(page: &PageRows) -> impl Iterator<Item = Incoming<'_>> {
    page.models
        .iter()
        .zip(&page.digests)
        .map(|(model, digest)| Incoming { model, digest: *digest })
}

/// What the sync recorded so far: from memory, or (first use, after a failed write) from the
/// database, which is the truth after a commit whose outcome was not heard.
async fn seen_keys(state: &mut WriterState) -> Result<&mut SeenKeys, StoreError> {
    if state.seen.is_none() {
        let seen = load_seen(&state.args.services.database, state.args.sync_id).await?;
        state.seen = Some(seen);
    }
    Ok(state.seen.get_or_insert_with(SeenKeys::default))
}

/// One attempt at writing a batch; on an error, what the sync recorded is reloaded next time.
async fn write_once(
    state: &mut WriterState,
    models: &[Incoming<'_>],
    rejects: &[&Reject],
) -> Result<BatchOutcome, StoreError> {
    let (database, sync_id, rules) = (
        state.args.services.database.clone(),
        state.args.sync_id,
        state.rules.clone(),
    );
    let seen = seen_keys(state).await?;
    let result = write_batch(&database, sync_id, &rules, seen, models, rejects).await;
    if result.is_err() {
        state.seen = None;
    }
    result
}

async fn write_with_retries(state: &mut WriterState, pages: &[PageRows]) -> Result<BatchOutcome, StoreError> {
    let config = state.args.services.config.clone();
    let mut attempt = 0;
    loop {
        let models = incoming(pages);
        let rejects: Vec<&Reject> = pages.iter().flat_map(|page| page.rejects.iter()).collect();
        let result = write_once(state, &models, &rejects).await;
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(error) if error.is_transient() && attempt < config.writer.max_retries => {
                let delay = Duration::from_millis(
                    config
                        .writer
                        .retry_base_ms
                        .saturating_mul(1 << attempt.min(10))
                        .min(30_000),
                );
                tracing::warn!(%error, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, "batch write failed, retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) if !error.is_transient() && (models.len() > 1 || pages.len() > 1) => {
                tracing::warn!(%error, "PostgreSQL refused the batch's data; writing row by row to isolate the bad rows");
                return write_isolating(state, pages).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Writes each row in its own transaction; a row PostgreSQL refuses becomes a reject with
/// the database's reason. Slow, but only used after a batch failed for its data.
async fn write_isolating(state: &mut WriterState, pages: &[PageRows]) -> Result<BatchOutcome, StoreError> {
    let mut outcome = BatchOutcome::default();
    for page in pages {
        let rejects: Vec<&Reject> = page.rejects.iter().collect();
        outcome.merge(write_once(state, &[], &rejects).await?);
        for incoming in page_incoming(page) {
            let model = incoming.model;
            match write_once(state, &[incoming], &[]).await {
                Ok(written) => outcome.merge(written),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    let reject = Reject {
                        source: model.source,
                        reason: RejectReason::InvalidValue,
                        detail: format!("PostgreSQL refused the row: {error}"),
                        model_id: Some(model.model_id.clone()),
                        raw: model.raw.clone(),
                    };
                    outcome.merge(write_once(state, &[], &[&reject]).await?);
                }
            }
        }
    }
    Ok(outcome)
}
