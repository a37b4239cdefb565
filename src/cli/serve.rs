//! `serve`: the long-running worker. Order of start: the database connection (the embedded
//! cluster, if no `DATABASE_URL`) → supervisor and health monitor → HTTP (so /healthz answers;
//! /readyz says 503 "starting") → migrations (retried with capped backoff while PostgreSQL is
//! unreachable) → recovery of interrupted syncs → first health evaluation → ready → schedule.
//! Stop (SIGTERM/SIGINT): no new ticks, the running sync finishes or is marked interrupted
//! within the grace period, HTTP drains, exit 0. SIGHUP forces a sync.
//!
//! The supervisor and the health monitor have no supervisor above them, and ractor lets such
//! an actor die silently: `serve` watches their tasks. If one ends, the worker reports not
//! healthy and not ready, stops like on SIGTERM and exits 1, so that its service manager
//! (systemd `Restart=on-failure`, compose `restart: unless-stopped`) restarts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, watch};

use crate::actors::health::{HealthMonitor, HealthMsg};
use crate::actors::messages::{ForceSyncOutcome, SupervisorMsg};
use crate::actors::supervisor::{self, Supervisor, SupervisorArgs};
use crate::actors::Services;
use crate::backoff::Backoff;
use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::report::{SyncReport, Trigger};
use crate::store::{migrations, syncs};
use crate::telemetry;

pub async fn run(config: Config) -> anyhow::Result<i32> {
    let metrics = telemetry::metrics_handle();
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;

    let session = DatabaseSession::connect(&config).await?;
    let database = session.database.clone();
    let services = Services {
        database: database.clone(),
        config: config.clone(),
        budgets: Default::default(),
    };
    let (finished, _) = broadcast::channel(16);
    let (supervisor, supervisor_handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            services: services.clone(),
            finished: finished.clone(),
        },
    )
    .await?;
    // Probes and health checks get a small pool of their own: they never wait for the writer's
    // connections, and unauthenticated probes never take them.
    let probe_database = database.probe_database(&config.database)?;
    let health_services = Services {
        database: probe_database.clone(),
        ..services.clone()
    };
    let (health, health_handle) = Actor::spawn(None, HealthMonitor, health_services).await?;
    // Neither has a supervisor above it: watch their tasks, or a dead one would fail silently.
    let mut core_ended = watch_core_actors(supervisor_handle, health_handle);
    let refresher = tokio::spawn(refresh_health_after_syncs(finished.subscribe(), health.clone()));

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, "serving the admin API, /metrics, /healthz and /readyz");
    let started = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));
    let state = AppState {
        services: services.clone(),
        supervisor: supervisor.clone(),
        health: health.clone(),
        metrics,
        probes: Arc::new(http::Probes::new(
            probe_database,
            Duration::from_secs(config.http.readiness_cache_secs),
        )),
        started: started.clone(),
        alive: alive.clone(),
    };
    let mut http_stop = stop_rx.clone();
    let mut server = tokio::spawn(http::serve(listener, state, async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    }));

    let mut ready = Box::pin(prepare_database(&session));
    let prepared = tokio::select! {
        result = &mut ready => Ok(result),
        _ = terminate.recv() => Err(Exit::Signal),
        _ = interrupt.recv() => Err(Exit::Signal),
        name = core_ended.wait_for(Option::is_some) => Err(Exit::CoreActorDied(ended_name(name))),
    };
    drop(ready);
    let mut scheduler = None;
    let exit = match prepared {
        Err(exit) => exit,
        Ok(result) => {
            result?;
            // The first evaluation, queued before anyone can see the worker ready.
            let _ = health.cast(HealthMsg::Evaluate);
            started.store(true, Ordering::SeqCst);
            if config.schedule.run_on_start {
                let _ = supervisor.cast(SupervisorMsg::ForceSync {
                    trigger: Trigger::Startup,
                    reply: None,
                });
            }
            if config.schedule.enabled {
                scheduler = Some(tokio::spawn(run_schedule(
                    config.schedule.cron.clone(),
                    supervisor.clone(),
                    stop_rx.clone(),
                )));
            }
            loop {
                tokio::select! {
                    _ = terminate.recv() => break Exit::Signal,
                    _ = interrupt.recv() => break Exit::Signal,
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: forcing a sync");
                        force(&supervisor).await;
                    }
                    name = core_ended.wait_for(Option::is_some) => break Exit::CoreActorDied(ended_name(name)),
                    served = &mut server => break Exit::HttpEnded(match served {
                        Ok(Ok(())) => "the HTTP server stopped".to_string(),
                        Ok(Err(error)) => format!("the HTTP server failed: {error}"),
                        Err(error) => format!("the HTTP server task ended: {error}"),
                    }),
                }
            }
        }
    };

    if let Exit::CoreActorDied(_) | Exit::HttpEnded(_) = &exit {
        // Not ready, not healthy: the orchestrator stops routing here and restarts us.
        alive.store(false, Ordering::SeqCst);
        started.store(false, Ordering::SeqCst);
    }
    match &exit {
        Exit::Signal => tracing::info!("stopping"),
        Exit::CoreActorDied(name) => tracing::error!(
            "the {name} stopped unexpectedly; exiting with a failure so that the service manager restarts the worker"
        ),
        Exit::HttpEnded(why) => {
            tracing::error!("{why}; exiting with a failure so that the service manager restarts the worker")
        }
    }
    let _ = stop_tx.send(true);
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    refresher.abort();
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let waited = supervisor
        .call(
            |reply| SupervisorMsg::Shutdown { grace, reply },
            Some(grace + Duration::from_secs(10)),
        )
        .await;
    if !matches!(waited, Ok(CallResult::Success(()))) {
        tracing::error!("the running sync did not stop in time; it will be marked interrupted at the next start");
    }
    let _ = supervisor.stop_and_wait(None, Some(Duration::from_secs(10))).await;
    let _ = health.stop_and_wait(None, Some(Duration::from_secs(10))).await;
    if !server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    session.close().await;
    tracing::info!("stopped");
    Ok(match exit {
        Exit::Signal => 0,
        Exit::CoreActorDied(_) | Exit::HttpEnded(_) => 1,
    })
}

/// Why `serve` stops.
enum Exit {
    /// SIGTERM or SIGINT: a clean stop, exit 0.
    Signal,
    /// The supervisor or the health monitor ended on its own: exit 1.
    CoreActorDied(&'static str),
    HttpEnded(String),
}

fn ended_name(ended: Result<watch::Ref<'_, Option<&'static str>>, watch::error::RecvError>) -> &'static str {
    ended.ok().and_then(|name| *name).unwrap_or("core actor watcher")
}

/// Reports (once) the first of the worker's core actors whose task ends.
fn watch_core_actors(
    supervisor: ractor::concurrency::JoinHandle<()>,
    health: ractor::concurrency::JoinHandle<()>,
) -> watch::Receiver<Option<&'static str>> {
    let (ended_tx, ended) = watch::channel(None);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = supervisor => "supervisor",
            _ = health => "health monitor",
        };
        let _ = ended_tx.send(Some(name));
    });
    ended
}

/// Asks the health monitor for a fresh evaluation after every finished sync.
async fn refresh_health_after_syncs(mut finished: broadcast::Receiver<SyncReport>, health: ActorRef<HealthMsg>) {
    loop {
        match finished.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                let _ = health.cast(HealthMsg::Refresh);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Migrates and recovers, retrying with capped backoff while the database fails for a
/// transient reason (unreachable, restarting, a migration cancelled by `statement_timeout`).
async fn prepare_database(session: &DatabaseSession) -> anyhow::Result<()> {
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut attempt = 0;
    loop {
        match migrations::migrate(&session.database).await {
            Ok(_) => break,
            Err(error) if error.is_transient() => {
                let delay = backoff.delay(attempt);
                telemetry::database_up(false);
                tracing::error!(%error, retry_in_secs = delay.as_secs(), "the database cannot be migrated yet (a transient error); not ready, retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error).context("cannot apply the database migrations"),
        }
    }
    telemetry::database_up(true);
    session.recover_interrupted_syncs().await?;
    if let Ok(Some(last)) = syncs::last_success_unix(&session.database).await {
        telemetry::last_success_observed(last);
    }
    // Models per source as of the last finished sync, so the gauge is not blank after a restart.
    if let Ok(recent) = syncs::recent_syncs(&session.database, 5).await {
        if let Some(last) = recent
            .iter()
            .find(|sync| sync.status != crate::report::SyncStatus::Running)
        {
            for source in &last.sources {
                if let Some(source_name) = crate::model::Source::parse(&source.source) {
                    telemetry::source_models(source_name, source.models_stored.max(0) as u64);
                    if let Some(new_fields) = &source.new_fields {
                        telemetry::source_new_fields(source_name, new_fields.len());
                    }
                }
            }
        }
    }
    if let Ok(successes) = syncs::last_success_per_source(&session.database).await {
        for (source, finished_at) in successes {
            telemetry::source_succeeded(source, finished_at.timestamp_millis() as f64 / 1000.0);
        }
    }
    Ok(())
}

async fn force(supervisor: &ActorRef<SupervisorMsg>) {
    match supervisor::force_sync(supervisor, Trigger::Manual, Duration::from_secs(20)).await {
        ForceSyncOutcome::Started(id) => tracing::info!(sync_id = id, "sync started"),
        ForceSyncOutcome::AlreadyRunning(id) => tracing::info!(?id, "a sync is already running"),
        ForceSyncOutcome::Failed(error) => tracing::error!(%error, "could not start a sync"),
    }
}

/// Sleeps until the next cron time (UTC) and ticks the supervisor. Always the next time after
/// now: runs missed while the process was down or busy are not replayed in a burst.
async fn run_schedule(cron: String, supervisor: ActorRef<SupervisorMsg>, mut stop: watch::Receiver<bool>) {
    let schedule: croner::Cron = match cron.parse() {
        Ok(schedule) => schedule,
        Err(error) => {
            tracing::error!(%error, cron, "invalid schedule; no scheduled syncs");
            return;
        }
    };
    loop {
        let now = Utc::now();
        let Ok(next) = schedule.find_next_occurrence(&now, false) else {
            tracing::error!(cron, "the schedule has no next run");
            return;
        };
        tracing::info!(next = %next, "next scheduled sync");
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                if supervisor.cast(SupervisorMsg::ForceSync { trigger: Trigger::Schedule, reply: None }).is_err() {
                    tracing::error!("the scheduled sync was not started: the supervisor is not running");
                }
            }
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Never fire twice for the same minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
