//! `serve`: the long-running worker. Order of start: HTTP (so /healthz answers at once) →
//! database (retried with capped backoff while it is down; /readyz says so) → recovery of
//! interrupted syncs → supervisor and health actor → schedule. Stop (SIGTERM/SIGINT): no new
//! ticks, the running sync finishes or is marked interrupted within the grace period, HTTP
//! drains, exit 0. SIGHUP forces a sync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, watch};

use crate::actors::health::HealthMonitor;
use crate::actors::messages::{ForceSyncOutcome, SupervisorMsg};
use crate::actors::supervisor::{self, Supervisor, SupervisorArgs};
use crate::actors::Services;
use crate::cli::DatabaseSession;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::report::Trigger;
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
            finished,
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

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, "serving the admin API, /metrics, /healthz and /readyz");
    let started = Arc::new(AtomicBool::new(false));
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
    };
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(listener, state, async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    }));

    let mut ready = Box::pin(prepare_database(&session));
    let prepared = tokio::select! {
        result = &mut ready => Some(result),
        _ = terminate.recv() => None,
        _ = interrupt.recv() => None,
    };
    drop(ready);
    let mut scheduler = None;
    if let Some(result) = prepared {
        result?;
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
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: forcing a sync");
                    force(&supervisor).await;
                }
            }
        }
    }

    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
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
    supervisor.stop(None);
    health.stop(None);
    let _ = supervisor_handle.await;
    let _ = health_handle.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    session.close().await;
    tracing::info!("stopped");
    Ok(0)
}

/// Migrates and recovers, retrying with capped backoff while PostgreSQL is unreachable.
async fn prepare_database(session: &DatabaseSession) -> anyhow::Result<()> {
    let mut delay = Duration::from_secs(1);
    loop {
        match migrations::migrate(&session.database).await {
            Ok(_) => break,
            Err(error) if error.is_transient() => {
                telemetry::database_up(false);
                tracing::error!(%error, retry_in_secs = delay.as_secs(), "PostgreSQL is unreachable; not ready, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
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
                let _ = supervisor.cast(SupervisorMsg::ForceSync { trigger: Trigger::Schedule, reply: None });
            }
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Never fire twice for the same minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
