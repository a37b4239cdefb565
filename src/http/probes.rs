//! Liveness, readiness, the health report and the Prometheus text. These routes need no token,
//! so they never put load on the database per request and never show its errors: readiness
//! is checked on the probes' own small pool at most once per `http.readiness_cache_secs`
//! (concurrent probes share one check), and the answers give a generic reason while the cause
//! goes to the log.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ractor::rpc::CallResult;
use serde_json::json;

use crate::actors::health::HealthMsg;
use crate::health::HealthStatus;
use crate::http::AppState;
use crate::store::{migrations, Database};

/// What `/readyz` says once the worker has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    MigrationsPending,
    DatabaseUnavailable,
}

/// The readiness check, cached.
pub struct Probes {
    database: Database,
    ttl: Duration,
    latest: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

impl Probes {
    /// `database` should be the probes' own pool (`Database::probe_database`).
    pub fn new(database: Database, ttl: Duration) -> Probes {
        Probes {
            database,
            ttl,
            latest: tokio::sync::Mutex::new(None),
        }
    }

    async fn readiness(&self) -> Readiness {
        // Held across the check: concurrent probes wait for one query instead of each sending one.
        let mut latest = self.latest.lock().await;
        if let Some((checked_at, readiness)) = *latest {
            if checked_at.elapsed() < self.ttl {
                return readiness;
            }
        }
        let readiness = match migrations::is_up_to_date(&self.database).await {
            Ok(true) => Readiness::Ready,
            Ok(false) => Readiness::MigrationsPending,
            Err(error) => {
                tracing::warn!(%error, "readiness check: the database did not answer");
                Readiness::DatabaseUnavailable
            }
        };
        *latest = Some((Instant::now(), readiness));
        readiness
    }
}

/// The process is up and serving HTTP, with its core actors alive.
pub async fn healthz(State(state): State<AppState>) -> Response {
    if !state.is_alive() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not healthy: a core actor stopped; the worker is exiting to be restarted\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

/// Ready when PostgreSQL answers and every migration of this binary is applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.is_alive() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: a core actor stopped\n").into_response();
    }
    if !state.is_started() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting (database, migrations, recovery)\n",
        )
            .into_response();
    }
    match state.probes.readiness().await {
        Readiness::Ready => (StatusCode::OK, "ready\n").into_response(),
        Readiness::MigrationsPending => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: migrations pending\n").into_response()
        }
        Readiness::DatabaseUnavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: database unavailable\n").into_response()
        }
    }
}

/// The health actor's latest report; 503 when critical, so a load balancer can act on it.
pub async fn health_report(State(state): State<AppState>) -> Response {
    match state
        .health
        .call(HealthMsg::GetReport, Some(Duration::from_secs(15)))
        .await
    {
        Ok(CallResult::Success(mut report)) => {
            // The health actor logs the cause; an unauthenticated caller gets no database error.
            for check in report
                .checks
                .iter_mut()
                .filter(|check| check.name == "database" && !check.ok)
            {
                check.message = "PostgreSQL is unavailable (the worker's log has the cause)".into();
            }
            let status = if report.status == HealthStatus::Critical {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (status, Json(report)).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the health monitor did not answer in time" })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // We serve /metrics ourselves, so the exporter's periodic upkeep is our job.
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
