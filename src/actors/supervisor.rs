//! The supervisor owns the sync lifecycle: it takes the cluster-wide sync lock, records the
//! sync, spawns one fetcher and one transformer per source and one writer, follows every page
//! from dispatch to commit, and closes the sync only when every page is committed or its
//! source has failed. It coalesces triggers (one sync at a time) and handles its children's
//! deaths itself, since ractor's default would stop the supervisor with them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{broadcast, Semaphore};
use tracing::Instrument;

use crate::actors::fetcher::{Fetcher, FetcherArgs};
use crate::actors::messages::{
    ChildRole, FetchPosition, FetcherMsg, ForceSyncOutcome, PageKey, SupervisorMsg, TransformerMsg, WriterMsg,
};
use crate::actors::restart::RestartBudget;
use crate::actors::transformer::{Transformer, TransformerArgs};
use crate::actors::writer::{Writer, WriterArgs};
use crate::actors::Services;
use crate::history::{ChangeKind, ListingEnd, ListingOutcome};
use crate::model::Source;
use crate::report::{SourceReport, SourceStatus, SyncReport, SyncStatus, Trigger};
use crate::store::batch::BatchOutcome;
use crate::store::history::{self, HistoryRules};
use crate::store::syncs::{self, SyncLock};
use crate::telemetry;

pub struct Supervisor;

type Timer = JoinHandle<Result<(), ractor::MessagingErr<SupervisorMsg>>>;

/// Asks the supervisor for a sync (`ForceSync`) and waits for its answer, at most `timeout`.
/// A supervisor that does not answer in time is reported as `Failed`.
pub async fn force_sync(supervisor: &ActorRef<SupervisorMsg>, trigger: Trigger, timeout: Duration) -> ForceSyncOutcome {
    let call = supervisor
        .call(
            |reply| SupervisorMsg::ForceSync {
                trigger,
                reply: Some(reply),
            },
            Some(timeout),
        )
        .await;
    match call {
        Ok(ractor::rpc::CallResult::Success(outcome)) => outcome,
        _ => ForceSyncOutcome::Failed("the supervisor did not answer in time".into()),
    }
}

pub struct SupervisorArgs {
    pub services: Services,
    /// Every finished sync is announced here (the `sync` command and tests wait on it).
    pub finished: broadcast::Sender<SyncReport>,
}

pub struct SupervisorState {
    services: Services,
    finished: broadcast::Sender<SyncReport>,
    running: Option<RunningSync>,
    children: HashMap<ActorId, (i64, ChildRole)>,
    shutdown_waiters: Vec<RpcReplyPort<()>>,
}

struct RunningSync {
    id: i64,
    started_at: DateTime<Utc>,
    started: Instant,
    lock: Option<SyncLock>,
    sources: BTreeMap<Source, SourceRun>,
    writer: Option<ActorRef<WriterMsg>>,
    writer_restarts: RestartBudget,
    gates: HashMap<Source, Arc<Semaphore>>,
    draining: bool,
    interrupted: bool,
    timers: Vec<Timer>,
}

struct SourceRun {
    report: SourceReport,
    started: Instant,
    fetcher: Option<ActorRef<FetcherMsg>>,
    transformer: Option<ActorRef<TransformerMsg>>,
    fetch_done: bool,
    /// Dispatched pages not yet committed, with where to fetch each again.
    pending: BTreeMap<u64, FetchPosition>,
    /// Pages committed at least once (a restart may send some again; count them once).
    committed: BTreeSet<u64>,
    /// Where the page after the last dispatched one starts (`None` after the last page).
    resume_at: Option<FetchPosition>,
    dispatched_any: bool,
    /// Incremented at each restart; news from an older generation is stale.
    generation: u32,
    restarts: RestartBudget,
    /// Where the next incarnation starts (set by a restart, taken by `RestartSource`).
    restart_from: Option<FetchPosition>,
    /// The listing was cut by `max_models` (from `SourceFetched`): history closes what it did
    /// not reach as out of window instead of removed.
    truncated: bool,
    /// Stored and rejected as the writer reported them (the database recount is final).
    done: bool,
}

impl SourceRun {
    fn is_complete(&self) -> bool {
        self.fetch_done && self.pending.is_empty()
    }

    /// Where a new fetcher must start so that no uncommitted page is lost: the earliest
    /// pending page, else the page after the last dispatched one. `Ok(None)`: from the start.
    /// `Err(())`: every page was dispatched and committed; nothing is left to fetch.
    fn restart_position(&self) -> Result<Option<FetchPosition>, ()> {
        if let Some((_, page)) = self.pending.iter().next() {
            return Ok(Some(page.clone()));
        }
        match (&self.resume_at, self.dispatched_any) {
            (Some(next), _) => Ok(Some(next.clone())),
            (None, false) => Ok(None),
            (None, true) => Err(()),
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            services: args.services,
            finished: args.finished,
            running: None,
            children: HashMap::new(),
            shutdown_waiters: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("supervisor", sync_id = state.running.as_ref().map(|run| run.id));
        on_message(&myself, message, state).instrument(span).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            _ => return Ok(()),
        };
        if let Some((sync_id, role)) = state.children.remove(&cell.get_id()) {
            // Re-queue as a message: what the child sent before dying is already in the
            // message queue and must be handled first.
            myself.cast(SupervisorMsg::ChildExited { sync_id, role, error })?;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(run) = state.running.as_mut() {
            for timer in run.timers.drain(..) {
                timer.abort();
            }
        }
        myself.stop_children(None);
        Ok(())
    }
}

async fn on_message(myself: &ActorRef<SupervisorMsg>, message: SupervisorMsg, state: &mut SupervisorState) {
    match message {
        SupervisorMsg::ForceSync { trigger, reply } => {
            let outcome = start_sync(myself, state, trigger).await;
            if let ForceSyncOutcome::Failed(error) = &outcome {
                tracing::error!(%error, "could not start a sync");
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
            maybe_drain(myself, state);
        }
        SupervisorMsg::GetRunning(reply) => {
            let _ = reply.send(state.running.as_ref().map(|run| run.id));
        }
        SupervisorMsg::Shutdown { grace, reply } => {
            state.shutdown_waiters.push(reply);
            match &mut state.running {
                None => answer_shutdown(state),
                Some(run) => {
                    tracing::info!(
                        grace_secs = grace.as_secs(),
                        "shutdown requested; letting the running sync finish"
                    );
                    let sync_id = run.id;
                    run.timers
                        .push(myself.send_after(grace, move || SupervisorMsg::InterruptNow { sync_id }));
                }
            }
        }
        SupervisorMsg::InterruptNow { sync_id } => {
            if let Some(run) = running(state, sync_id) {
                tracing::warn!("grace period over; interrupting the sync");
                run.interrupted = true;
                let sources: Vec<Source> = run.sources.keys().copied().collect();
                for source in sources {
                    fail_source(state, sync_id, source, "interrupted: the service was stopped".into()).await;
                }
                maybe_drain(myself, state);
            }
        }
        SupervisorMsg::SyncTimedOut { sync_id } => {
            let timeout = state.services.config.sync.timeout_secs;
            if let Some(run) = running(state, sync_id) {
                let sources: Vec<Source> = run.sources.keys().copied().collect();
                for source in sources {
                    fail_source(
                        state,
                        sync_id,
                        source,
                        format!("timed out after {timeout}s (sync.timeout_secs)"),
                    )
                    .await;
                }
                maybe_drain(myself, state);
            }
        }
        SupervisorMsg::PageDispatched { key, page, next } => {
            if let Some(source) = source_run(state, key).filter(|source| source.generation == key.generation) {
                source.pending.insert(key.page_no, page);
                source.resume_at = next;
                source.dispatched_any = true;
            }
        }
        SupervisorMsg::PagesCommitted {
            sync_id,
            pages,
            outcome,
        } => {
            on_pages_committed(state, sync_id, pages, outcome).await;
            maybe_drain(myself, state);
        }
        SupervisorMsg::PageFailed { key, error } => {
            if let Some(source) = source_run(state, key) {
                source.pending.remove(&key.page_no);
            }
            fail_source(state, key.sync_id, key.source, format!("page {}: {error}", key.page_no)).await;
            maybe_drain(myself, state);
        }
        SupervisorMsg::PagesNotWritten { sync_id, pages, error } => {
            for key in &pages {
                if let Some(source) = source_run(state, *key) {
                    source.pending.remove(&key.page_no);
                }
            }
            let mut sources: Vec<Source> = pages.iter().map(|key| key.source).collect();
            sources.dedup();
            for source in sources {
                fail_source(state, sync_id, source, format!("could not store its rows: {error}")).await;
            }
            maybe_drain(myself, state);
        }
        SupervisorMsg::SourceFetched {
            sync_id,
            source,
            generation,
            http_requests,
            bytes,
            truncated,
        } => {
            if let Some(run) = running(state, sync_id) {
                if let Some(progress) = run.sources.get_mut(&source).filter(|p| p.generation == generation) {
                    progress.truncated = truncated;
                    progress.fetch_done = true;
                    progress.fetcher = None;
                    progress.report.http_requests += http_requests as i64;
                    progress.report.bytes += bytes as i64;
                }
            }
            complete_finished_sources(state, sync_id).await;
            maybe_drain(myself, state);
        }
        SupervisorMsg::SourceFailed {
            sync_id,
            source,
            generation,
            http_requests,
            bytes,
            error,
        } => {
            let current = running(state, sync_id)
                .and_then(|run| run.sources.get_mut(&source))
                .filter(|progress| progress.generation == generation);
            if let Some(progress) = current {
                progress.fetch_done = true;
                progress.fetcher = None;
                progress.report.http_requests += http_requests as i64;
                progress.report.bytes += bytes as i64;
                fail_source(state, sync_id, source, error).await;
            }
            maybe_drain(myself, state);
        }
        SupervisorMsg::RestartSource {
            sync_id,
            source,
            generation,
        } => {
            respawn_source(myself, state, sync_id, source, generation).await;
        }
        SupervisorMsg::ChildExited { sync_id, role, error } => {
            on_child_exited(myself, state, sync_id, role, error).await;
            maybe_drain(myself, state);
        }
        SupervisorMsg::WriterDrained { sync_id } => {
            if running(state, sync_id).is_some() {
                finalize(state).await;
            }
        }
    }
}

fn running(state: &mut SupervisorState, sync_id: i64) -> Option<&mut RunningSync> {
    state.running.as_mut().filter(|run| run.id == sync_id)
}

fn source_run(state: &mut SupervisorState, key: PageKey) -> Option<&mut SourceRun> {
    running(state, key.sync_id)?.sources.get_mut(&key.source)
}

/// Why a source will not run this time, if it will not.
fn skip_reason(state: &SupervisorState, source: Source) -> Option<String> {
    let config = state.services.config.sources.get(source);
    if !config.enabled {
        return Some(format!("disabled (sources.{source}.enabled = false)"));
    }
    if source == Source::ArtificialAnalysis && config.api_key.is_empty() {
        return Some("no ARTIFICIAL_ANALYSIS_API_KEY set".into());
    }
    None
}

async fn start_sync(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    trigger: Trigger,
) -> ForceSyncOutcome {
    if let Some(run) = &state.running {
        return ForceSyncOutcome::AlreadyRunning(Some(run.id));
    }
    if !state.shutdown_waiters.is_empty() {
        return ForceSyncOutcome::Failed("the service is shutting down".into());
    }
    let database = state.services.database.clone();
    let lock = match SyncLock::try_acquire(&database).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            // Another process holds the lock: name its sync, as the API promises.
            let id = syncs::running_sync_id(&database).await.ok().flatten();
            return ForceSyncOutcome::AlreadyRunning(id);
        }
        Err(error) => return ForceSyncOutcome::Failed(error.to_string()),
    };
    let plan: Vec<(Source, SourceStatus, Option<String>)> = Source::ALL
        .into_iter()
        .map(|source| match skip_reason(state, source) {
            Some(reason) => (source, SourceStatus::Skipped, Some(reason)),
            None => (source, SourceStatus::Running, None),
        })
        .collect();
    let (sync_id, started_at) = match syncs::create_sync(&database, trigger, &plan).await {
        Ok(created) => created,
        Err(error) => {
            lock.release().await;
            return ForceSyncOutcome::Failed(error.to_string());
        }
    };
    tracing::info!(sync_id, trigger = trigger.as_str(), "sync started");
    telemetry::sync_started();

    let config = state.services.config.clone();
    let gates: HashMap<Source, Arc<Semaphore>> = plan
        .iter()
        .filter(|(_, status, _)| *status == SourceStatus::Running)
        .map(|(source, _, _)| (*source, Arc::new(Semaphore::new(config.sync.max_pages_in_flight))))
        .collect();
    let mut run = RunningSync {
        id: sync_id,
        started_at,
        started: Instant::now(),
        lock: Some(lock),
        sources: BTreeMap::new(),
        writer: None,
        writer_restarts: RestartBudget::new(
            config.sync.max_restarts,
            Duration::from_secs(config.sync.restart_window_secs),
        ),
        gates: gates.clone(),
        draining: false,
        interrupted: false,
        timers: vec![
            myself.send_after(Duration::from_secs(config.sync.timeout_secs), move || {
                SupervisorMsg::SyncTimedOut { sync_id }
            }),
        ],
    };
    for (source, status, reason) in &plan {
        let mut report = SourceReport::new(*source, *status);
        report.error = reason.clone();
        let skipped = *status == SourceStatus::Skipped;
        if skipped {
            report.duration_ms = Some(0);
        }
        run.sources.insert(
            *source,
            SourceRun {
                report,
                started: Instant::now(),
                fetcher: None,
                transformer: None,
                fetch_done: skipped,
                pending: BTreeMap::new(),
                committed: BTreeSet::new(),
                resume_at: None,
                dispatched_any: false,
                generation: 0,
                restarts: RestartBudget::new(
                    config.sync.max_restarts,
                    Duration::from_secs(config.sync.restart_window_secs),
                ),
                restart_from: None,
                truncated: false,
                done: skipped,
            },
        );
    }

    state.running = Some(run);
    if let Err(error) = spawn_writer(myself, state, sync_id).await {
        for source in gates.keys() {
            fail_source(state, sync_id, *source, error.clone()).await;
        }
        return ForceSyncOutcome::Started(sync_id);
    }
    for source in gates.keys() {
        if let Err(error) = spawn_source(myself, state, sync_id, *source, 0, None).await {
            fail_source(state, sync_id, *source, error).await;
        }
    }
    ForceSyncOutcome::Started(sync_id)
}

async fn spawn_writer(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    sync_id: i64,
) -> Result<(), String> {
    let run = state.running.as_mut().ok_or("no sync is running")?;
    let writer_args = WriterArgs {
        sync_id,
        services: state.services.clone(),
        supervisor: myself.clone(),
        gates: run.gates.clone(),
    };
    let (writer, _) = Actor::spawn_linked(None, Writer, writer_args, myself.get_cell())
        .await
        .map_err(|error| format!("the writer did not start: {error}"))?;
    state.children.insert(writer.get_id(), (sync_id, ChildRole::Writer));
    state.running.as_mut().ok_or("no sync is running")?.writer = Some(writer);
    Ok(())
}

/// Spawns a source's transformer and fetcher (generation `generation`, from `start` or the
/// source's first page).
async fn spawn_source(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    sync_id: i64,
    source: Source,
    generation: u32,
    start: Option<FetchPosition>,
) -> Result<(), String> {
    let run = state.running.as_ref().ok_or("no sync is running")?;
    let writer = run.writer.clone().ok_or("the writer is not running")?;
    let gate = run
        .gates
        .get(&source)
        .cloned()
        .ok_or("the source has no in-flight gate")?;
    let transformer_args = TransformerArgs {
        writer,
        supervisor: myself.clone(),
    };
    let (transformer, _) = Actor::spawn_linked(None, Transformer, transformer_args, myself.get_cell())
        .await
        .map_err(|error| format!("the transformer did not start: {error}"))?;
    state.children.insert(
        transformer.get_id(),
        (sync_id, ChildRole::Transformer(source, generation)),
    );
    let fetcher_args = FetcherArgs {
        sync_id,
        source,
        services: state.services.clone(),
        gate,
        transformer: transformer.clone(),
        supervisor: myself.clone(),
        generation,
        start,
    };
    let run = state.running.as_mut().ok_or("no sync is running")?;
    let progress = run
        .sources
        .get_mut(&source)
        .ok_or("the source is not part of this sync")?;
    progress.transformer = Some(transformer);
    let (fetcher, _) = Actor::spawn_linked(None, Fetcher, fetcher_args, myself.get_cell())
        .await
        .map_err(|error| format!("the fetcher did not start: {error}"))?;
    state
        .children
        .insert(fetcher.get_id(), (sync_id, ChildRole::Fetcher(source, generation)));
    let run = state.running.as_mut().ok_or("no sync is running")?;
    run.sources
        .get_mut(&source)
        .ok_or("the source is not part of this sync")?
        .fetcher = Some(fetcher);
    Ok(())
}

async fn on_pages_committed(
    state: &mut SupervisorState,
    sync_id: i64,
    pages: Vec<(PageKey, usize)>,
    outcome: BatchOutcome,
) {
    let Some(run) = running(state, sync_id) else {
        return;
    };
    for (key, records) in pages {
        if let Some(progress) = run.sources.get_mut(&key.source) {
            progress.pending.remove(&key.page_no);
            if progress.committed.insert(key.page_no) {
                progress.report.models_fetched += records as i64;
            }
        }
    }
    for (source, stored) in outcome.stored {
        if let Some(progress) = run.sources.get_mut(&source) {
            progress.report.models_stored += stored as i64;
        }
    }
    for ((source, _), rejected) in outcome.rejected {
        if let Some(progress) = run.sources.get_mut(&source) {
            progress.report.models_rejected += rejected as i64;
        }
    }
    complete_finished_sources(state, sync_id).await;
}

async fn on_child_exited(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    sync_id: i64,
    role: ChildRole,
    error: Option<String>,
) {
    let Some(error) = error else {
        return; // a clean stop: the child said what it had to say before stopping
    };
    if running(state, sync_id).is_none() {
        return;
    }
    tracing::error!(actor = role.kind(), %error, "actor crashed");
    match role {
        ChildRole::Fetcher(source, generation) | ChildRole::Transformer(source, generation) => {
            let current = running(state, sync_id)
                .and_then(|run| run.sources.get(&source))
                .is_some_and(|progress| progress.generation == generation);
            // An actor of an older generation (already replaced) changes nothing.
            if current {
                restart_source(myself, state, sync_id, source, role, &error, true).await;
            }
        }
        ChildRole::Writer => restart_writer(myself, state, sync_id, &error).await,
    }
}

/// Replaces a crashed writer. Its buffered pages are lost, so every unfinished source starts
/// again from its earliest uncommitted page (at-least-once; the writes are idempotent).
async fn restart_writer(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, sync_id: i64, error: &str) {
    let Some(run) = running(state, sync_id) else {
        return;
    };
    run.writer = None;
    let Some(delay) = run.writer_restarts.next_delay(Instant::now()) else {
        let reason = format!(
            "the writer crashed {} times within {}s; last error: {error}",
            run.writer_restarts.restarts() + 1,
            run.writer_restarts.window().as_secs()
        );
        let sources: Vec<Source> = run.sources.keys().copied().collect();
        for source in sources {
            fail_source(state, sync_id, source, reason.clone()).await;
        }
        return;
    };
    telemetry::actor_restarted("writer");
    // The writer is needed at once (everything flows through it); the sources wait the backoff.
    tokio::time::sleep(delay.min(Duration::from_millis(500))).await;
    if let Err(error) = spawn_writer(myself, state, sync_id).await {
        let sources: Vec<Source> = running(state, sync_id)
            .map(|run| run.sources.keys().copied().collect())
            .unwrap_or_default();
        for source in sources {
            fail_source(state, sync_id, source, error.clone()).await;
        }
        return;
    }
    let Some(run) = running(state, sync_id) else {
        return;
    };
    if run.draining {
        // The drain request died with the old writer.
        if let Some(writer) = &run.writer {
            let _ = writer.cast(WriterMsg::Drain);
        }
    }
    let unfinished: Vec<Source> = run.sources.iter().filter(|(_, p)| !p.done).map(|(s, _)| *s).collect();
    for source in unfinished {
        restart_source(myself, state, sync_id, source, ChildRole::Writer, error, false).await;
    }
}

/// Restarts a source's fetcher and transformer from its earliest uncommitted page, after a
/// backoff; fails the source when its restart budget is spent (`count` false: a restart caused
/// by the writer, which does not use the source's budget).
async fn restart_source(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    sync_id: i64,
    source: Source,
    cause: ChildRole,
    error: &str,
    count: bool,
) {
    let Some(progress) = running(state, sync_id).and_then(|run| run.sources.get_mut(&source)) else {
        return;
    };
    if progress.done {
        return;
    }
    let delay = if count {
        match progress.restarts.next_delay(Instant::now()) {
            Some(delay) => delay,
            None => {
                let reason = format!(
                    "the {} crashed {} times within {}s; last error: {error}",
                    cause.kind(),
                    progress.restarts.restarts() + 1,
                    progress.restarts.window().as_secs()
                );
                fail_source(state, sync_id, source, reason).await;
                return;
            }
        }
    } else {
        Duration::from_millis(100)
    };
    if let Some(fetcher) = progress.fetcher.take() {
        fetcher.kill();
    }
    if let Some(transformer) = progress.transformer.take() {
        transformer.kill();
    }
    progress.generation += 1;
    match progress.restart_position() {
        Err(()) => {
            // Every page was dispatched and committed; only the end-of-source news was lost,
            // and with it whether `max_models` cut the listing: assume it did, so that history
            // removes nothing on a guess.
            progress.fetch_done = true;
            progress.truncated = true;
            complete_finished_sources(state, sync_id).await;
            return;
        }
        Ok(position) => {
            // Pending pages stay pending: the new incarnation sends them again (same page
            // numbers), and a commit of either copy settles them.
            progress.restart_from = position;
            progress.fetch_done = false;
        }
    }
    if count {
        telemetry::actor_restarted(cause.kind());
    }
    tracing::warn!(%source, actor = cause.kind(), delay_ms = delay.as_millis() as u64, "restarting the source's actors");
    let generation = progress.generation;
    if let Some(run) = running(state, sync_id) {
        run.timers
            .push(myself.send_after(delay, move || SupervisorMsg::RestartSource {
                sync_id,
                source,
                generation,
            }));
    }
}

async fn respawn_source(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    sync_id: i64,
    source: Source,
    generation: u32,
) {
    let Some(progress) = running(state, sync_id).and_then(|run| run.sources.get_mut(&source)) else {
        return;
    };
    if progress.done || progress.generation != generation {
        return;
    }
    let writer_alive = running(state, sync_id)
        .and_then(|run| run.writer.as_ref())
        .is_some_and(|writer| writer.get_status() == ractor::ActorStatus::Running);
    if !writer_alive {
        // The writer's own restart respawns every unfinished source.
        return;
    }
    let Some(progress) = running(state, sync_id).and_then(|run| run.sources.get_mut(&source)) else {
        return;
    };
    let start = progress.restart_from.take();
    if let Err(error) = spawn_source(myself, state, sync_id, source, generation, start).await {
        fail_source(state, sync_id, source, error).await;
    }
}

/// Marks a source failed (the first reason wins), stops its actors and makes the writer drop
/// whatever of it is still in flight; rows already committed stay and are counted.
async fn fail_source(state: &mut SupervisorState, sync_id: i64, source: Source, error: String) {
    let Some(run) = running(state, sync_id) else {
        return;
    };
    let writer = run.writer.clone();
    let Some(progress) = run.sources.get_mut(&source) else {
        return;
    };
    if progress.done {
        return;
    }
    tracing::warn!(%source, %error, "source failed");
    progress.report.status = SourceStatus::Failed;
    progress.report.error.get_or_insert(error);
    if let Some(fetcher) = progress.fetcher.take() {
        fetcher.kill();
    }
    if let Some(transformer) = progress.transformer.take() {
        transformer.kill();
    }
    if let Some(writer) = writer {
        let _ = writer.cast(WriterMsg::Abandon(vec![source]));
    }
    progress.fetch_done = true;
    progress.pending.clear();
    finish_source(state, sync_id, source).await;
}

async fn complete_finished_sources(state: &mut SupervisorState, sync_id: i64) {
    let Some(run) = running(state, sync_id) else {
        return;
    };
    let complete: Vec<Source> = run
        .sources
        .iter()
        .filter(|(_, progress)| !progress.done && progress.is_complete())
        .map(|(source, _)| *source)
        .collect();
    for source in complete {
        if let Some(progress) = running(state, sync_id).and_then(|run| run.sources.get_mut(&source)) {
            progress.report.status = SourceStatus::Success;
            if let Some(transformer) = progress.transformer.take() {
                transformer.stop(None);
            }
        }
        finish_source(state, sync_id, source).await;
    }
}

/// Records a source's end (status and the counts known so far; `finalize` recounts), after
/// the end of its listing for history (a listing whose end cannot be applied fails its source).
async fn finish_source(state: &mut SupervisorState, sync_id: i64, source: Source) {
    let database = state.services.database.clone();
    let services = state.services.clone();
    let Some(progress) = running(state, sync_id).and_then(|run| run.sources.get_mut(&source)) else {
        return;
    };
    progress.done = true;
    let listing = match progress.report.status {
        SourceStatus::Success => ListingOutcome::Succeeded {
            truncated: progress.truncated,
        },
        _ => ListingOutcome::Failed,
    };
    if let Err(error) = end_listing(&services, sync_id, source, listing).await {
        tracing::error!(%source, %error, "the end of the listing could not be applied; the source fails");
        progress.report.status = SourceStatus::Failed;
        progress.report.error.get_or_insert(error);
    }
    progress.report.duration_ms = Some(progress.started.elapsed().as_millis() as i64);
    tracing::info!(
        %source,
        status = progress.report.status.as_str(),
        fetched = progress.report.models_fetched,
        stored = progress.report.models_stored,
        rejected = progress.report.models_rejected,
        "source finished"
    );
    if let Err(error) = syncs::finish_source(&database, sync_id, &progress.report).await {
        tracing::error!(%source, %error, "could not record the source's result");
    }
}

/// Applies the end of a source's listing to history (`store::history::end_source_listing`),
/// retrying transient database errors like the writer retries a batch (`writer.max_retries`,
/// `writer.retry_base_ms`), so it rides out the same database outages.
async fn end_listing(services: &Services, sync_id: i64, source: Source, listing: ListingOutcome) -> Result<(), String> {
    let (database, writer) = (&services.database, &services.config.writer);
    let rules = HistoryRules::from(&services.config.history);
    let rules = &rules;
    let mut attempt = 0;
    loop {
        match history::end_source_listing(database, sync_id, source, listing, rules).await {
            Ok(summary) => {
                if summary.removed > 0 {
                    telemetry::model_changes(source, ChangeKind::Removed, summary.removed);
                }
                if let ListingEnd::Hold(cause) = summary.end {
                    telemetry::removals_held(source);
                    tracing::warn!(%source, %cause, "removals held: the models the listing lacked stay current");
                } else if summary.closed > 0 {
                    tracing::info!(%source, closed = summary.closed, removed = summary.removed, "closed the versions the listing lacked");
                }
                return Ok(());
            }
            Err(error) if error.is_transient() && attempt < writer.max_retries => {
                let delay =
                    Duration::from_millis(writer.retry_base_ms.saturating_mul(1 << attempt.min(10)).min(30_000));
                tracing::warn!(%source, %error, attempt = attempt + 1, "the end of the listing failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(format!("could not apply the end of its listing: {error}")),
        }
    }
}

/// Once every source is done, asks the writer to flush and report back.
fn maybe_drain(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    let Some(run) = state.running.as_mut() else {
        return;
    };
    if run.draining || !run.sources.values().all(|progress| progress.done) {
        return;
    }
    run.draining = true;
    let drained = run
        .writer
        .as_ref()
        .is_some_and(|writer| writer.cast(WriterMsg::Drain).is_ok());
    if !drained {
        // No writer to wait for: finalize through the mailbox, after what is queued.
        let _ = myself.cast(SupervisorMsg::WriterDrained { sync_id: run.id });
    }
}

async fn finalize(state: &mut SupervisorState) {
    let Some(mut run) = state.running.take() else {
        return;
    };
    let database = state.services.database.clone();
    for timer in run.timers.drain(..) {
        timer.abort();
    }
    if let Some(writer) = run.writer.take() {
        writer.stop(None);
    }
    // The database is the truth for what was stored, whatever was retried or re-sent.
    for (source, progress) in run.sources.iter_mut() {
        if progress.report.status == SourceStatus::Skipped {
            continue;
        }
        match syncs::count_source_rows(&database, run.id, *source).await {
            Ok((stored, rejected)) => {
                progress.report.models_stored = stored;
                progress.report.models_rejected = rejected;
            }
            Err(error) => tracing::error!(%source, %error, "could not count the source's rows"),
        }
        if progress.report.status == SourceStatus::Running {
            progress.report.status = SourceStatus::Failed;
        }
        if let Err(error) = syncs::finish_source(&database, run.id, &progress.report).await {
            tracing::error!(%source, %error, "could not record the source's result");
        }
        telemetry::source_models(*source, progress.report.models_stored.max(0) as u64);
    }
    let status = if run.interrupted {
        SyncStatus::Interrupted
    } else {
        SyncStatus::from_sources(run.sources.values().map(|progress| progress.report.status))
    };
    let error = summarize_errors(&run);
    if let Err(error) = syncs::finish_sync(&database, run.id, status, error.as_deref()).await {
        tracing::error!(%error, "could not record the sync's result; it will be marked interrupted at the next start");
    }
    // What this sync saw is of no use any more (and nothing writes: the writer drained).
    if let Err(error) = history::forget_seen(&database).await {
        tracing::warn!(%error, "could not empty model_sync_seen; the next recovery will");
    }
    if let Some(lock) = run.lock.take() {
        lock.release().await;
    }
    let duration = run.started.elapsed();
    let success_time = (status == SyncStatus::Success).then(|| Utc::now().timestamp_millis() as f64 / 1000.0);
    telemetry::sync_finished(status.as_str(), duration, success_time);
    let report = match syncs::get_sync(&database, run.id).await {
        Ok(Some(report)) => report,
        _ => fallback_report(&run, status, error, duration),
    };
    tracing::info!(
        status = status.as_str(),
        duration_ms = duration.as_millis() as u64,
        stored = report.models_stored,
        "sync finished"
    );
    let _ = state.finished.send(report);
    answer_shutdown(state);
}

fn summarize_errors(run: &RunningSync) -> Option<String> {
    let errors: Vec<String> = run
        .sources
        .iter()
        .filter(|(_, progress)| progress.report.status == SourceStatus::Failed)
        .map(|(source, progress)| format!("{source}: {}", progress.report.error.as_deref().unwrap_or("failed")))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn fallback_report(run: &RunningSync, status: SyncStatus, error: Option<String>, duration: Duration) -> SyncReport {
    let sources: Vec<SourceReport> = run.sources.values().map(|progress| progress.report.clone()).collect();
    SyncReport {
        id: run.id,
        started_at: run.started_at,
        finished_at: Some(Utc::now()),
        status,
        trigger: String::new(),
        models_fetched: sources.iter().map(|s| s.models_fetched).sum(),
        models_stored: sources.iter().map(|s| s.models_stored).sum(),
        models_rejected: sources.iter().map(|s| s.models_rejected).sum(),
        duration_ms: Some(duration.as_millis() as i64),
        error,
        sources,
    }
}

fn answer_shutdown(state: &mut SupervisorState) {
    if state.running.is_none() {
        for waiter in state.shutdown_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}
