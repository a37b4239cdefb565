//! One running sync, as the supervisor holds it: each source's [`SourceLedger`] and actors,
//! the writer, the restart budgets, the timers. News from the children becomes ledger events;
//! the ledgers' effects become actor operations here. Nothing in here waits on PostgreSQL:
//! bookkeeping goes to the sync's [`Recorder`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;
use ractor::ActorRef;
use tokio::sync::Semaphore;

use crate::actors::children::Spawner;
use crate::actors::ledger::{Effect, Event, Phase, SourceActor, SourceLedger};
use crate::actors::lock_keeper::LockKeeper;
use crate::actors::messages::{ChildRole, FetcherMsg, StartedSync, SupervisorMsg, TransformerMsg, WriterMsg};
use crate::actors::recorder::Recorder;
use crate::actors::restart::{RestartBudget, SourceBudgets, Verdict};
use crate::fetch::Traffic;
use crate::model::Source;
use crate::report::{SourceReport, SourceStatus};
use crate::store::batch::BatchOutcome;
use crate::store::syncs::SyncFence;
use crate::telemetry;

pub type Timer = JoinHandle<Result<(), ractor::MessagingErr<SupervisorMsg>>>;

/// The sources of a sync and whether each runs (or why not).
pub type Plan = Vec<(Source, SourceStatus, Option<String>)>;

pub struct SyncRun {
    pub(super) id: i64,
    pub(super) started_at: DateTime<Utc>,
    pub(super) started: Instant,
    pub(super) fence: SyncFence,
    pub(super) keeper: Option<LockKeeper>,
    pub(super) recorder: Recorder,
    pub(super) sources: BTreeMap<Source, SourceRun>,
    pub(super) writer: Option<ActorRef<WriterMsg>>,
    /// What the writer reported committed so far.
    pub(super) counts: BatchOutcome,
    writer_budget: RestartBudget,
    gates: HashMap<Source, Arc<Semaphore>>,
    /// Why the sync is ending before its sources did (a shutdown, a lost lock).
    pub(super) interrupted: Option<String>,
    pub(super) timers: Vec<Timer>,
}

pub(super) struct SourceRun {
    pub(super) ledger: SourceLedger,
    fetcher: Option<ActorRef<FetcherMsg>>,
    transformer: Option<ActorRef<TransformerMsg>>,
    budgets: SourceBudgets,
    pub(super) traffic: Arc<Traffic>,
    started: Instant,
    pub(super) duration: Option<Duration>,
    /// Why the source does not run (skipped).
    pub(super) note: Option<String>,
}

impl SourceRun {
    /// The source's report as known now (`counts`: the sync's counts as the writer reported
    /// them; the final record recounts from the tables).
    pub(super) fn report(&self, source: Source, counts: &BatchOutcome) -> SourceReport {
        let status = match self.ledger.phase() {
            Phase::Skipped => SourceStatus::Skipped,
            Phase::Succeeded => SourceStatus::Success,
            Phase::Failed(_) => SourceStatus::Failed,
            Phase::Fetching | Phase::Settling | Phase::Restarting => SourceStatus::Running,
        };
        let error = match self.ledger.phase() {
            Phase::Failed(error) => Some(error.clone()),
            _ => self.note.clone(),
        };
        let count = |map: &BTreeMap<Source, u64>| map.get(&source).copied().unwrap_or(0) as i64;
        SourceReport {
            source: source.as_str().to_string(),
            status,
            models_fetched: count(&counts.fetched),
            models_stored: count(&counts.stored),
            models_rejected: counts.rejected_of(source) as i64,
            models_duplicates: Some(count(&counts.duplicates)),
            http_requests: self.traffic.requests() as i64,
            bytes: self.traffic.bytes() as i64,
            duration_ms: match self.ledger.phase() {
                Phase::Skipped => Some(0),
                _ => self.duration.map(|duration| duration.as_millis() as i64),
            },
            error,
            // Computed with the final record (the drift alarm).
            new_fields: None,
        }
    }
}

impl SyncRun {
    /// Starts the sync's actors: the writer, then each source's transformer and fetcher, and
    /// arms the `sync.timeout_secs` deadline.
    pub async fn begin(spawner: &mut Spawner<'_>, started: StartedSync, recorder: Recorder) -> SyncRun {
        let config = spawner.services.config.clone();
        let StartedSync {
            sync_id,
            started_at,
            owner_token,
            keeper,
            plan,
        } = started;
        let mut run = SyncRun {
            id: sync_id,
            started_at,
            started: Instant::now(),
            fence: SyncFence { sync_id, owner_token },
            keeper: Some(keeper),
            recorder,
            sources: BTreeMap::new(),
            writer: None,
            counts: BatchOutcome::default(),
            writer_budget: RestartBudget::from_config(&config.sync),
            gates: HashMap::new(),
            interrupted: None,
            timers: vec![spawner
                .supervisor
                .send_after(Duration::from_secs(config.sync.timeout_secs), move || {
                    SupervisorMsg::SyncTimedOut { sync_id }
                })],
        };
        for (source, status, note) in plan {
            let runs = status == SourceStatus::Running;
            if runs {
                run.gates
                    .insert(source, Arc::new(Semaphore::new(config.sync.max_pages_in_flight)));
            }
            run.sources.insert(
                source,
                SourceRun {
                    ledger: if runs {
                        SourceLedger::fetching()
                    } else {
                        SourceLedger::skipped()
                    },
                    fetcher: None,
                    transformer: None,
                    budgets: SourceBudgets::from_config(&config.sync),
                    traffic: Arc::default(),
                    started: Instant::now(),
                    duration: None,
                    note,
                },
            );
        }
        match spawner.writer(&run.fence, &run.gates).await {
            Ok(writer) => run.writer = Some(writer),
            Err(error) => {
                run.fail_unfinished(spawner, &error).await;
                return run;
            }
        }
        let running: Vec<Source> = run.gates.keys().copied().collect();
        for source in running {
            if let Err(error) = run.spawn(spawner, source, 0, None).await {
                run.apply(spawner, source, Event::Fail { error }, Duration::ZERO).await;
            }
        }
        run
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Every source has reached its end: time to finalize.
    pub fn is_complete(&self) -> bool {
        self.sources.values().all(|source| source.ledger.is_finished())
    }

    /// Handles news about this sync (the supervisor routes every message that names a sync
    /// to the running one).
    pub async fn handle(&mut self, spawner: &mut Spawner<'_>, message: SupervisorMsg) {
        match message {
            SupervisorMsg::PageDispatched { key, page, next } => {
                let event = Event::Dispatched {
                    generation: key.generation,
                    page_no: key.page_no,
                    page,
                    next,
                };
                self.apply(spawner, key.source, event, Duration::ZERO).await;
            }
            SupervisorMsg::SourceFetched {
                source,
                generation,
                truncated,
                ..
            } => {
                let event = Event::FetchFinished { generation, truncated };
                self.apply(spawner, source, event, Duration::ZERO).await;
            }
            SupervisorMsg::SourceFailed {
                source,
                generation,
                error,
                ..
            } => {
                self.apply(
                    spawner,
                    source,
                    Event::FetchFailed { generation, error },
                    Duration::ZERO,
                )
                .await;
            }
            SupervisorMsg::PageFailed { key, error } => {
                let event = Event::PageFailed {
                    generation: key.generation,
                    page_no: key.page_no,
                    error,
                };
                self.apply(spawner, key.source, event, Duration::ZERO).await;
            }
            SupervisorMsg::PagesCommitted { pages, outcome, .. } => {
                self.counts.merge(outcome);
                for key in pages {
                    self.apply(
                        spawner,
                        key.source,
                        Event::Committed { page_no: key.page_no },
                        Duration::ZERO,
                    )
                    .await;
                }
            }
            SupervisorMsg::PagesNotWritten { pages, error, .. } => {
                for key in pages {
                    let event = Event::NotWritten {
                        page_no: key.page_no,
                        error: error.clone(),
                    };
                    self.apply(spawner, key.source, event, Duration::ZERO).await;
                }
            }
            SupervisorMsg::RestartSource { source, generation, .. } => {
                // Without a writer, the writer's own restart starts the source again.
                if self.writer.is_some() {
                    self.apply(spawner, source, Event::RestartDue { generation }, Duration::ZERO)
                        .await;
                }
            }
            SupervisorMsg::RestartWriter { .. } => self.respawn_writer(spawner).await,
            SupervisorMsg::ChildExited { role, error, .. } => self.child_exited(spawner, role, error).await,
            SupervisorMsg::SyncTimedOut { .. } => {
                let timeout = spawner.services.config.sync.timeout_secs;
                tracing::warn!(
                    timeout_secs = timeout,
                    "the sync timed out; its unfinished sources fail"
                );
                self.fail_unfinished(spawner, &format!("timed out after {timeout}s (sync.timeout_secs)"))
                    .await;
            }
            SupervisorMsg::InterruptNow { .. } => {
                tracing::warn!("grace period over; interrupting the sync");
                self.interrupt(spawner, "interrupted: the service was stopped").await;
            }
            SupervisorMsg::LockLost { error, .. } => {
                tracing::error!(%error, "the sync lock was lost; interrupting the sync and writing nothing more");
                self.interrupt(spawner, &format!("interrupted: the sync lock was lost ({error})"))
                    .await;
            }
            SupervisorMsg::ForceSync { .. }
            | SupervisorMsg::GetRunning(_)
            | SupervisorMsg::Shutdown { .. }
            | SupervisorMsg::SyncStarted(_)
            | SupervisorMsg::SyncFinalized { .. } => {}
        }
    }

    async fn interrupt(&mut self, spawner: &mut Spawner<'_>, reason: &str) {
        self.interrupted.get_or_insert_with(|| reason.to_string());
        self.fail_unfinished(spawner, reason).await;
    }

    async fn fail_unfinished(&mut self, spawner: &mut Spawner<'_>, reason: &str) {
        let sources: Vec<Source> = self.sources.keys().copied().collect();
        for source in sources {
            let error = reason.to_string();
            self.apply(spawner, source, Event::Fail { error }, Duration::ZERO).await;
        }
    }

    /// A child stopped or died. An exit the ledger does not expect (an older generation, a
    /// transformer stopped after success) changes nothing; one it expects is a crash of that
    /// child, charged to that child's own budget.
    async fn child_exited(&mut self, spawner: &mut Spawner<'_>, role: ChildRole, error: Option<String>) {
        let (source, generation, actor) = match role {
            ChildRole::Fetcher(source, generation) => (source, generation, SourceActor::Fetcher),
            ChildRole::Transformer(source, generation) => (source, generation, SourceActor::Transformer),
            ChildRole::Writer => return self.writer_exited(spawner, error).await,
        };
        let kind = role.kind();
        let Some(run) = self.sources.get_mut(&source) else {
            return;
        };
        if !run.ledger.expects(actor, generation) {
            return;
        }
        let error = error.unwrap_or_else(|| format!("the {kind} stopped before its source was done"));
        tracing::error!(%source, actor = kind, %error, "actor crashed");
        match run.budgets.of(actor).on_crash(kind, &error, Instant::now()) {
            Verdict::Restart(delay) => {
                telemetry::actor_restarted(kind);
                tracing::warn!(%source, actor = kind, delay_ms = delay.as_millis() as u64, "restarting the source's actors");
                self.apply(spawner, source, Event::Restart { generation }, delay).await;
            }
            Verdict::GiveUp(reason) => {
                self.apply(spawner, source, Event::Fail { error: reason }, Duration::ZERO)
                    .await
            }
        }
    }

    /// The writer died: its buffered pages died with it, so every unfinished source restarts
    /// from its earliest uncommitted page once a new writer runs (not charged to the sources).
    async fn writer_exited(&mut self, spawner: &mut Spawner<'_>, error: Option<String>) {
        self.writer = None;
        let error = error.unwrap_or_else(|| "the writer stopped".to_string());
        tracing::error!(actor = "writer", %error, "actor crashed");
        match self.writer_budget.on_crash("writer", &error, Instant::now()) {
            Verdict::Restart(delay) => {
                telemetry::actor_restarted("writer");
                tracing::warn!(delay_ms = delay.as_millis() as u64, "restarting the writer");
                let sync_id = self.id;
                self.timers.push(
                    spawner
                        .supervisor
                        .send_after(delay, move || SupervisorMsg::RestartWriter { sync_id }),
                );
                let sources: Vec<(Source, u32)> = self
                    .sources
                    .iter()
                    .map(|(source, run)| (*source, run.ledger.generation()))
                    .collect();
                for (source, generation) in sources {
                    self.apply(spawner, source, Event::Restart { generation }, delay).await;
                }
            }
            Verdict::GiveUp(reason) => self.fail_unfinished(spawner, &reason).await,
        }
    }

    async fn respawn_writer(&mut self, spawner: &mut Spawner<'_>) {
        if self.writer.is_some() || self.is_complete() {
            return;
        }
        match spawner.writer(&self.fence, &self.gates).await {
            Ok(writer) => {
                self.writer = Some(writer);
                let waiting: Vec<(Source, u32)> = self
                    .sources
                    .iter()
                    .filter(|(_, run)| run.ledger.phase() == &Phase::Restarting)
                    .map(|(source, run)| (*source, run.ledger.generation()))
                    .collect();
                for (source, generation) in waiting {
                    self.apply(spawner, source, Event::RestartDue { generation }, Duration::ZERO)
                        .await;
                }
            }
            Err(error) => self.fail_unfinished(spawner, &error).await,
        }
    }

    /// Applies an event to a source's ledger and carries out its effects (`restart_delay` is
    /// the wait of a restart the event may schedule).
    async fn apply(&mut self, spawner: &mut Spawner<'_>, source: Source, event: Event, restart_delay: Duration) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let Some(run) = self.sources.get_mut(&source) else {
                return;
            };
            for effect in run.ledger.apply(event) {
                if let Some(follow_up) = self.carry_out(spawner, source, effect, restart_delay).await {
                    events.push_back(follow_up);
                }
            }
        }
    }

    /// One effect; an event to apply next if it could not be done.
    async fn carry_out(
        &mut self,
        spawner: &mut Spawner<'_>,
        source: Source,
        effect: Effect,
        restart_delay: Duration,
    ) -> Option<Event> {
        let sync_id = self.id;
        match effect {
            Effect::KillActors => {
                let run = self.sources.get_mut(&source)?;
                if let Some(fetcher) = run.fetcher.take() {
                    fetcher.kill();
                }
                if let Some(transformer) = run.transformer.take() {
                    transformer.kill();
                }
            }
            Effect::StopTransformer => {
                let run = self.sources.get_mut(&source)?;
                run.fetcher = None;
                if let Some(transformer) = run.transformer.take() {
                    transformer.stop(None);
                }
            }
            Effect::AbandonInWriter => {
                if let Some(writer) = &self.writer {
                    let _ = writer.cast(WriterMsg::Abandon(vec![source]));
                }
            }
            Effect::ScheduleRestart { generation } => {
                self.timers.push(
                    spawner
                        .supervisor
                        .send_after(restart_delay, move || SupervisorMsg::RestartSource {
                            sync_id,
                            source,
                            generation,
                        }),
                );
            }
            Effect::Spawn { generation, start } => {
                return self
                    .spawn(spawner, source, generation, start)
                    .await
                    .err()
                    .map(|error| Event::Fail { error });
            }
            Effect::Finished => {
                let run = self.sources.get_mut(&source)?;
                run.duration = Some(run.started.elapsed());
                let report = run.report(source, &self.counts);
                tracing::info!(
                    %source,
                    status = report.status.as_str(),
                    truncated = run.ledger.truncated(),
                    fetched = report.models_fetched,
                    stored = report.models_stored,
                    rejected = report.models_rejected,
                    duplicates = report.models_duplicates,
                    "source finished"
                );
                spawner.services.progress.finish(source, report.status);
                self.recorder.source_finished(report);
            }
        }
        None
    }

    /// Spawns a source's actors of `generation`.
    async fn spawn(
        &mut self,
        spawner: &mut Spawner<'_>,
        source: Source,
        generation: u32,
        start: Option<crate::actors::messages::FetchPosition>,
    ) -> Result<(), String> {
        let result = match (&self.writer, self.gates.get(&source), self.sources.get(&source)) {
            (Some(writer), Some(gate), Some(run)) => {
                let (writer, gate, traffic) = (writer.clone(), gate.clone(), run.traffic.clone());
                spawner
                    .source(self.id, source, generation, start, writer, gate, traffic)
                    .await
            }
            _ => Err("the writer is not running".to_string()),
        };
        match result {
            Ok(actors) => {
                if let Some(run) = self.sources.get_mut(&source) {
                    run.fetcher = Some(actors.fetcher);
                    run.transformer = Some(actors.transformer);
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}
