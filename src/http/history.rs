//! `GET /api/changes?after=ID&limit=N` (a cursor feed of `model_changes`, ordered by id) and
//! `GET /api/history?source=&provider=&model_id=` (one model's versions and changes). Both
//! follow the admin routes' authentication.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::AppState;
use crate::model::Source;
use crate::store::changes::{self, ChangeFilter};

/// The most changes one request returns.
const MAX_LIMIT: i64 = 5000;

#[derive(Deserialize)]
pub struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `{"changes": [...], "next_after": ID}`: the changes with an id above `after` (default 0),
/// oldest first; `next_after` is the last id returned (or `after` when there is none), to pass
/// as the next request's `after`.
pub async fn changes_feed(State(state): State<AppState>, Query(query): Query<FeedQuery>) -> Response {
    let after = query.after.unwrap_or(0).max(0);
    let filter = ChangeFilter {
        after_id: Some(after),
        limit: query.limit.unwrap_or(1000).clamp(1, MAX_LIMIT),
        ..ChangeFilter::default()
    };
    match changes::list_changes(&state.services.database, &filter).await {
        Ok(records) => {
            let next_after = records.last().map_or(after, |record| record.id);
            Json(json!({ "changes": records, "next_after": next_after })).into_response()
        }
        Err(error) => unavailable(format!("cannot read the changes: {error}")),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    source: Option<String>,
    provider: Option<String>,
    model_id: Option<String>,
}

/// `{"models": [...]}` with one history per matching key (several without `provider` when a
/// source lists the model under several providers); 404 when the source never listed it.
pub async fn model_history(State(state): State<AppState>, Query(query): Query<HistoryQuery>) -> Response {
    let Some(source) = query.source.as_deref().and_then(Source::parse) else {
        return bad_request("`source` must be one of models_dev, openrouter, huggingface, artificial_analysis");
    };
    let Some(model_id) = query.model_id.as_deref().filter(|id| !id.is_empty()) else {
        return bad_request("`model_id` is required");
    };
    let provider = query.provider.as_deref();
    match changes::model_history(&state.services.database, source, provider, model_id).await {
        Ok(histories) if histories.is_empty() => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{source} never listed {model_id}") })),
        )
            .into_response(),
        Ok(histories) => Json(json!({ "models": histories })).into_response(),
        Err(error) => unavailable(format!("cannot read the history: {error}")),
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn unavailable(message: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": message }))).into_response()
}
