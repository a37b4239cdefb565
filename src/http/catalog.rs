//! `GET /api/models`: the current catalog for applications (DESIGN.md §10), a page at a time
//! with a keyset cursor. Same auth as the admin routes unless `http.public_read = true`.

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::catalog::CatalogParams;
use crate::http::{auth, AppState};
use crate::store::catalog;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/models", get(list_models))
        .route_layer(axum::middleware::from_fn_with_state(state, require_reader))
}

/// Readers pass when reads are public; otherwise they are held to the admin rules.
async fn require_reader(
    State(state): State<AppState>,
    peer: ConnectInfo<std::net::SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if state.services.config.http.public_read {
        return next.run(request).await;
    }
    auth::require_admin(State(state), peer, request, next).await
}

async fn list_models(State(state): State<AppState>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let query = match CatalogParams::from_pairs(pairs).and_then(CatalogParams::validate) {
        Ok(query) => query,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error.to_string() }))).into_response();
        }
    };
    match catalog::page(&state.services.database, &query).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot read the catalog");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": format!("cannot read the catalog: {error}") })),
            )
                .into_response()
        }
    }
}
