//! Liveness, readiness, the health report and the Prometheus text.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ractor::rpc::CallResult;
use serde_json::json;

use crate::actors::health::HealthMsg;
use crate::health::HealthStatus;
use crate::http::AppState;
use crate::store::migrations;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when PostgreSQL answers and every migration of this binary is applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.is_started() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting (database, migrations, recovery)\n",
        )
            .into_response();
    }
    match migrations::is_up_to_date(&state.services.database).await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: migrations pending\n").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {error}\n")).into_response(),
    }
}

/// The health actor's latest report; 503 when critical, so a load balancer can act on it.
pub async fn health_report(State(state): State<AppState>) -> Response {
    match state
        .health
        .call(HealthMsg::GetReport, Some(Duration::from_secs(15)))
        .await
    {
        Ok(CallResult::Success(report)) => {
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
