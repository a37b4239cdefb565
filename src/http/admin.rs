//! `GET /api/admin/sync-models` (history) and `POST /api/admin/sync-models` (force a sync).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ractor::rpc::CallResult;
use serde::Deserialize;
use serde_json::json;

use crate::actors::messages::{ForceSyncOutcome, SupervisorMsg};
use crate::actors::supervisor;
use crate::http::AppState;
use crate::model::SourceSelection;
use crate::report::Trigger;
use crate::store::syncs;

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
}

pub async fn list_syncs(State(state): State<AppState>, Query(query): Query<HistoryQuery>) -> Response {
    let limit = query.limit.unwrap_or(20).clamp(1, 500);
    let running = state
        .supervisor
        .call(SupervisorMsg::GetRunning, Some(Duration::from_secs(5)))
        .await
        .ok()
        .and_then(|result| match result {
            CallResult::Success(running) => running,
            _ => None,
        });
    match syncs::recent_syncs(&state.services.database, limit).await {
        Ok(history) => Json(json!({ "running_sync_id": running, "syncs": history })).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("cannot read the sync history: {error}") })),
        )
            .into_response(),
    }
}

/// `?source=S` (repeatable, or comma-separated) syncs only those sources.
fn selection(pairs: Vec<(String, String)>) -> Result<SourceSelection, String> {
    let mut names = Vec::new();
    for (name, value) in pairs {
        if name != "source" {
            return Err(format!("unknown parameter {name:?}; valid: source"));
        }
        names.push(value);
    }
    SourceSelection::from_names(&names).map_err(|error| error.to_string())
}

pub async fn force_sync(State(state): State<AppState>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let sources = match selection(pairs) {
        Ok(sources) => sources,
        Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    };
    if !state.is_started() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the worker is still starting (database, migrations, recovery); retry shortly" })),
        )
            .into_response();
    }
    let names = sources.names();
    match supervisor::force_sync(&state.supervisor, Trigger::Manual, sources, Duration::from_secs(20)).await {
        ForceSyncOutcome::Started(sync_id) => (
            StatusCode::ACCEPTED,
            Json(json!({ "sync_id": sync_id, "status": "started", "sources": names })),
        )
            .into_response(),
        ForceSyncOutcome::AlreadyRunning(sync_id) => (
            StatusCode::CONFLICT,
            Json(json!({ "error": "a sync is already running", "sync_id": sync_id })),
        )
            .into_response(),
        ForceSyncOutcome::Failed(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error }))).into_response()
        }
    }
}
