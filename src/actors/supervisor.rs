//! The supervisor: one sync at a time, through its lifecycle
//! `Idle → Starting → Running → Finalizing → Idle`. It coalesces triggers, routes news from
//! its children to the running sync ([`SyncRun`], whose sources' ledgers decide), and handles
//! its children's deaths itself, since ractor's default would stop the supervisor with them.
//!
//! Its handlers never wait on PostgreSQL: the start (lock, orphans, rows) runs as a task
//! (`lifecycle.rs`), bookkeeping writes go to the sync's recorder (`recorder.rs`), the lock is
//! watched by a keeper (`lock_keeper.rs`). So `GetRunning` and `ForceSync` answer at once,
//! however slow the database is.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::actors::children::{Children, Spawner};
use crate::actors::lifecycle;
use crate::actors::messages::{ForceSyncOutcome, StartFailure, SupervisorMsg};
use crate::actors::recorder::Recorder;
use crate::actors::run::SyncRun;
use crate::actors::Services;
use crate::model::SourceSelection;
use crate::report::{SyncReport, Trigger};
use crate::store::history::HistoryRules;
use crate::store::syncs::SyncFence;
use crate::telemetry;

pub struct Supervisor;

/// Asks the supervisor for a sync (`ForceSync`) and waits for its answer, at most `timeout`.
/// A supervisor that is gone and one that is too slow are told apart.
pub async fn force_sync(
    supervisor: &ActorRef<SupervisorMsg>,
    trigger: Trigger,
    sources: SourceSelection,
    timeout: Duration,
) -> ForceSyncOutcome {
    let call = supervisor
        .call(
            |reply| SupervisorMsg::ForceSync {
                trigger,
                sources,
                reply: Some(reply),
            },
            Some(timeout),
        )
        .await;
    match call {
        Ok(ractor::rpc::CallResult::Success(outcome)) => outcome,
        Ok(ractor::rpc::CallResult::Timeout) => ForceSyncOutcome::Failed(format!(
            "the supervisor did not answer within {}s (the database may be slow); retry",
            timeout.as_secs()
        )),
        Ok(ractor::rpc::CallResult::SenderError) => {
            ForceSyncOutcome::Failed("the supervisor dropped the request without answering (it stopped)".into())
        }
        Err(_) => ForceSyncOutcome::Failed(
            "the supervisor is not running (it stopped or crashed); the worker must be restarted".into(),
        ),
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
    lifecycle: Lifecycle,
    children: Children,
    shutdown: Option<Shutdown>,
}

struct Shutdown {
    grace: Duration,
    waiters: Vec<RpcReplyPort<()>>,
}

enum Lifecycle {
    Idle,
    /// Taking the lock and recording the sync; the triggers that wait for its id.
    Starting {
        waiters: Vec<RpcReplyPort<ForceSyncOutcome>>,
    },
    Running(Box<SyncRun>),
    /// The final record is being written.
    Finalizing {
        sync_id: i64,
    },
}

impl Lifecycle {
    fn sync_id(&self) -> Option<i64> {
        match self {
            Lifecycle::Running(run) => Some(run.id()),
            Lifecycle::Finalizing { sync_id } => Some(*sync_id),
            Lifecycle::Idle | Lifecycle::Starting { .. } => None,
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
            lifecycle: Lifecycle::Idle,
            children: Children::default(),
            shutdown: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("supervisor", sync_id = state.lifecycle.sync_id());
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
        if let Some((sync_id, role)) = state.children.remove(cell.get_id()) {
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
        if let Lifecycle::Running(run) = std::mem::replace(&mut state.lifecycle, Lifecycle::Idle) {
            // The keeper's handle goes with the run, which releases the lock; the sync stays
            // `running` in the database until the next start marks it `interrupted`.
            let (_recorder, _record) = run.finish();
        }
        myself.stop_children(None);
        Ok(())
    }
}

async fn on_message(myself: &ActorRef<SupervisorMsg>, message: SupervisorMsg, state: &mut SupervisorState) {
    match message {
        SupervisorMsg::ForceSync {
            trigger,
            sources,
            reply,
        } => {
            crate::faults::maybe_panic("supervisor_force_sync");
            force_sync_requested(myself, state, trigger, sources, reply);
        }
        SupervisorMsg::GetRunning(reply) => {
            let _ = reply.send(state.lifecycle.sync_id());
        }
        SupervisorMsg::Shutdown { grace, reply } => {
            let shutdown = state.shutdown.get_or_insert(Shutdown {
                grace,
                waiters: Vec::new(),
            });
            shutdown.waiters.push(reply);
            match &mut state.lifecycle {
                Lifecycle::Idle => answer_shutdown(state),
                Lifecycle::Running(run) => {
                    tracing::info!(
                        grace_secs = grace.as_secs(),
                        "shutdown requested; letting the running sync finish"
                    );
                    let sync_id = run.id();
                    run.timers
                        .push(myself.send_after(grace, move || SupervisorMsg::InterruptNow { sync_id }));
                }
                // The grace starts with the sync (Starting), or the end is near (Finalizing).
                Lifecycle::Starting { .. } | Lifecycle::Finalizing { .. } => {}
            }
        }
        SupervisorMsg::SyncStarted(started) => sync_started(myself, state, started).await,
        SupervisorMsg::SyncFinalized { report } => {
            if state.lifecycle.sync_id() == Some(report.id) {
                state.lifecycle = Lifecycle::Idle;
            }
            let _ = state.finished.send(report);
            answer_shutdown(state);
        }
        news => {
            let Lifecycle::Running(run) = &mut state.lifecycle else {
                return;
            };
            if news_sync_id(&news) != Some(run.id()) {
                return;
            }
            let mut spawner = Spawner {
                supervisor: myself,
                services: &state.services,
                children: &mut state.children,
            };
            run.handle(&mut spawner, news).await;
            finish_if_complete(state);
        }
    }
}

/// The sync a piece of news is about.
fn news_sync_id(message: &SupervisorMsg) -> Option<i64> {
    match message {
        SupervisorMsg::PageDispatched { key, .. } | SupervisorMsg::PageFailed { key, .. } => Some(key.sync_id),
        SupervisorMsg::LockLost { sync_id, .. }
        | SupervisorMsg::InterruptNow { sync_id }
        | SupervisorMsg::SyncTimedOut { sync_id }
        | SupervisorMsg::SourceFetched { sync_id, .. }
        | SupervisorMsg::SourceFailed { sync_id, .. }
        | SupervisorMsg::PagesCommitted { sync_id, .. }
        | SupervisorMsg::PagesNotWritten { sync_id, .. }
        | SupervisorMsg::RestartSource { sync_id, .. }
        | SupervisorMsg::RestartWriter { sync_id }
        | SupervisorMsg::ChildExited { sync_id, .. } => Some(*sync_id),
        SupervisorMsg::ForceSync { .. }
        | SupervisorMsg::GetRunning(_)
        | SupervisorMsg::Shutdown { .. }
        | SupervisorMsg::SyncStarted(_)
        | SupervisorMsg::SyncFinalized { .. } => None,
    }
}

fn force_sync_requested(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    trigger: Trigger,
    sources: SourceSelection,
    reply: Option<RpcReplyPort<ForceSyncOutcome>>,
) {
    let answer = |reply: Option<RpcReplyPort<ForceSyncOutcome>>, outcome: ForceSyncOutcome| {
        if let ForceSyncOutcome::Failed(error) = &outcome {
            tracing::error!(%error, "could not start a sync");
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    };
    match &mut state.lifecycle {
        // A trigger that arrives while a sync starts joins it, whatever sources it asked for:
        // it is answered `already running` with that sync's id, as while it runs.
        Lifecycle::Starting { waiters } => waiters.extend(reply),
        Lifecycle::Running(_) | Lifecycle::Finalizing { .. } => {
            answer(reply, ForceSyncOutcome::AlreadyRunning(state.lifecycle.sync_id()));
        }
        Lifecycle::Idle if state.shutdown.is_some() => {
            answer(reply, ForceSyncOutcome::Failed("the service is shutting down".into()));
        }
        Lifecycle::Idle => {
            state.lifecycle = Lifecycle::Starting {
                waiters: reply.into_iter().collect(),
            };
            lifecycle::start_sync(state.services.clone(), trigger, sources, myself.clone());
        }
    }
}

async fn sync_started(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    started: Result<crate::actors::messages::StartedSync, StartFailure>,
) {
    let Lifecycle::Starting { waiters } = std::mem::replace(&mut state.lifecycle, Lifecycle::Idle) else {
        // Cannot happen (one start at a time); a stray start's lock goes with it.
        return;
    };
    let started = match started {
        Ok(started) => started,
        Err(failure) => {
            let outcome = match failure {
                StartFailure::AlreadyRunning(id) => ForceSyncOutcome::AlreadyRunning(id),
                StartFailure::Failed(error) => {
                    tracing::error!(%error, "could not start a sync");
                    ForceSyncOutcome::Failed(error)
                }
            };
            for waiter in waiters {
                let _ = waiter.send(outcome.clone());
            }
            answer_shutdown(state);
            return;
        }
    };
    let sync_id = started.sync_id;
    telemetry::sync_started();
    state.services.progress.begin(sync_id, &started.plan);
    let recorder = Recorder::start(
        state.services.database.clone(),
        SyncFence {
            sync_id,
            owner_token: started.owner_token.clone(),
        },
        &state.services.config.writer,
        HistoryRules::from(&state.services.config.history),
        myself.clone(),
    );
    let mut spawner = Spawner {
        supervisor: myself,
        services: &state.services,
        children: &mut state.children,
    };
    let mut run = SyncRun::begin(&mut spawner, started, recorder).await;
    if let Some(shutdown) = &state.shutdown {
        let grace = shutdown.grace;
        run.timers
            .push(myself.send_after(grace, move || SupervisorMsg::InterruptNow { sync_id }));
    }
    let mut waiters = waiters.into_iter();
    if let Some(first) = waiters.next() {
        let _ = first.send(ForceSyncOutcome::Started(sync_id));
    }
    for waiter in waiters {
        let _ = waiter.send(ForceSyncOutcome::AlreadyRunning(Some(sync_id)));
    }
    state.lifecycle = Lifecycle::Running(Box::new(run));
    finish_if_complete(state);
}

/// Once every source of the running sync is finished, hands it to finalization.
fn finish_if_complete(state: &mut SupervisorState) {
    let complete = matches!(&state.lifecycle, Lifecycle::Running(run) if run.is_complete());
    if !complete {
        return;
    }
    let Lifecycle::Running(run) = std::mem::replace(&mut state.lifecycle, Lifecycle::Idle) else {
        return;
    };
    let sync_id = run.id();
    let (recorder, record) = run.finish();
    recorder.finalize(record);
    state.lifecycle = Lifecycle::Finalizing { sync_id };
}

fn answer_shutdown(state: &mut SupervisorState) {
    if !matches!(state.lifecycle, Lifecycle::Idle) {
        return;
    }
    if let Some(shutdown) = &mut state.shutdown {
        for waiter in shutdown.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}
