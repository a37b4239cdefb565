//! The health actor: every `health.interval_secs` it runs the checks against the database,
//! publishes `model_lens_health_status`, `model_lens_health_check_ok{check}` and
//! `model_lens_database_up`, and keeps the last report for `GET /api/health`. A probe gets the
//! kept report: probes never cost queries or repeat the warnings. `serve` asks for a fresh
//! evaluation when a sync finishes (`Refresh`), so the report never says "no successful sync"
//! right after one.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::actors::Services;
use crate::health::{self, HealthReport};
use crate::telemetry;

pub struct HealthMonitor;

pub enum HealthMsg {
    /// The periodic evaluation (re-armed after each run). `serve` sends the first one once the
    /// database is migrated.
    Evaluate,
    /// Evaluate now, outside the schedule (a sync finished).
    Refresh,
    /// The latest report (evaluated now only if there is none yet).
    GetReport(RpcReplyPort<HealthReport>),
}

pub struct HealthState {
    services: Services,
    latest: Option<HealthReport>,
}

impl Actor for HealthMonitor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = Services;

    async fn pre_start(
        &self,
        _myself: ActorRef<HealthMsg>,
        services: Services,
    ) -> Result<HealthState, ActorProcessingErr> {
        Ok(HealthState { services, latest: None })
    }

    async fn handle(
        &self,
        myself: ActorRef<HealthMsg>,
        message: HealthMsg,
        state: &mut HealthState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HealthMsg::Evaluate => {
                evaluate(state).await;
                // Re-armed after each run, so slow checks never pile up ticks.
                let interval = Duration::from_secs(state.services.config.health.interval_secs.max(1));
                myself.send_after(interval, || HealthMsg::Evaluate);
            }
            HealthMsg::Refresh => evaluate(state).await,
            HealthMsg::GetReport(reply) => {
                if state.latest.is_none() {
                    evaluate(state).await;
                }
                if let Some(report) = &state.latest {
                    let _ = reply.send(report.clone());
                }
            }
        }
        Ok(())
    }
}

async fn evaluate(state: &mut HealthState) {
    crate::faults::maybe_panic("health_evaluate");
    let report = health::check(
        &state.services.database,
        &state.services.config.health,
        &state.services.config.sources.enabled(),
    )
    .await;
    let database_up = report.checks.iter().any(|check| check.name == "database" && check.ok);
    telemetry::database_up(database_up);
    telemetry::health_evaluated(report.status.code(), &report.check_flags());
    if state.latest.as_ref().map(|latest| latest.status) != Some(report.status) {
        tracing::info!(target: "model_lens_sync::health", status = ?report.status, "health changed");
    }
    for check in report.checks.iter().filter(|check| !check.ok) {
        tracing::warn!(target: "model_lens_sync::health", check = check.name, message = %check.message, "health check failing");
    }
    state.latest = Some(report);
}
