//! `sync`: one sync in this process (all sources, or those of `--source`), with live progress
//! lines on a terminal; then the Redis publication if configured, the summary, and the exit
//! code of the sync's status.

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use tokio::sync::broadcast;

use crate::actors::messages::{ForceSyncOutcome, SupervisorMsg};
use crate::actors::supervisor::{self, Supervisor, SupervisorArgs};
use crate::actors::Services;
use crate::cli::progress::LiveLines;
use crate::cli::{thousands, DatabaseSession};
use crate::config::Config;
use crate::model::SourceSelection;
use crate::publish::{Published, Publisher};
use crate::report::{SyncReport, Trigger};

pub async fn run(config: Config, json: bool, sources: &[String]) -> anyhow::Result<i32> {
    let selection = match SourceSelection::from_names(sources) {
        Ok(selection) => selection,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(2);
        }
    };
    crate::telemetry::metrics_handle();
    let publisher = Publisher::from_config(&config.redis)?;
    let session = DatabaseSession::open(&config).await?;
    let result = sync_once(&config, &session, json, selection, publisher).await;
    session.close().await;
    result
}

async fn sync_once(
    config: &Config,
    session: &DatabaseSession,
    json: bool,
    selection: SourceSelection,
    publisher: Option<Publisher>,
) -> anyhow::Result<i32> {
    session.recover_interrupted_syncs().await?;
    let services = Services {
        database: session.database.clone(),
        config: Arc::new(config.clone()),
        budgets: Default::default(),
        progress: Default::default(),
    };
    let (finished, mut reports) = broadcast::channel(8);
    let (supervisor, handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            services: services.clone(),
            finished,
        },
    )
    .await?;
    let sync_id = match supervisor::force_sync(&supervisor, Trigger::Cli, selection, Duration::from_secs(60)).await {
        ForceSyncOutcome::Started(id) => id,
        ForceSyncOutcome::AlreadyRunning(id) => {
            eprintln!(
                "another sync is running{}; not starting a second one",
                id.map(|id| format!(" (id {id})"))
                    .unwrap_or_else(|| " in another process".into())
            );
            supervisor.stop(None);
            return Ok(2);
        }
        ForceSyncOutcome::Failed(error) => anyhow::bail!("the sync could not start: {error}"),
    };
    let live = if json {
        None
    } else {
        LiveLines::start(services.progress.clone())
    };
    let report = wait_for(sync_id, &mut reports, &supervisor, config).await;
    if let Some(live) = live {
        live.finish().await;
    }
    let report = report?;
    supervisor.stop(None);
    let _ = handle.await;
    let published = match &publisher {
        Some(publisher) => publisher.publish_after(&services.database, &report).await,
        None => None,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_table());
        if let Some(published) = published {
            println!("{}", describe_publication(&published));
        }
    }
    Ok(report.status.exit_code())
}

fn describe_publication(published: &Published) -> String {
    let models: u64 = published.sources.iter().map(|(_, count)| count).sum();
    let sources: Vec<&str> = published.sources.iter().map(|(source, _)| source.as_str()).collect();
    format!(
        "redis: published {} models of {} in {:.1}s",
        thousands(i64::try_from(models).unwrap_or(i64::MAX)),
        sources.join(", "),
        published.elapsed.as_secs_f64()
    )
}

/// Waits for the sync's report; Ctrl-C or SIGTERM interrupts it (recorded as `interrupted`).
async fn wait_for(
    sync_id: i64,
    reports: &mut broadcast::Receiver<SyncReport>,
    supervisor: &ractor::ActorRef<SupervisorMsg>,
    config: &Config,
) -> anyhow::Result<SyncReport> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupted = false;
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Ok(report) if report.id == sync_id => return Ok(report),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => anyhow::bail!("the supervisor stopped before the sync finished"),
            },
            _ = tokio::signal::ctrl_c(), if !interrupted => interrupted = true,
            _ = terminate.recv(), if !interrupted => interrupted = true,
        }
        if interrupted {
            eprintln!("stopping: interrupting sync {sync_id}");
            let grace = Duration::ZERO;
            let _ = supervisor
                .call(
                    |reply| SupervisorMsg::Shutdown { grace, reply },
                    Some(Duration::from_secs(config.http.shutdown_grace_secs)),
                )
                .await;
        }
    }
}
