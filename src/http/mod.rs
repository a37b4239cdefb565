//! The HTTP surface of `serve` (DESIGN.md §5): the admin API, the history reads (§8), health and
//! readiness probes, and `/metrics`, all on one port so that one scrape target and one firewall
//! rule suffice.

mod admin;
mod auth;
mod history;
mod probes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::actors::health::HealthMsg;
use crate::actors::messages::SupervisorMsg;
use crate::actors::Services;

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub health: ActorRef<HealthMsg>,
    pub metrics: PrometheusHandle,
    /// Set once the database is migrated and interrupted syncs are recovered; until then
    /// `/readyz` is 503 and forced syncs are refused.
    pub started: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }
}

pub fn router(state: AppState) -> Router {
    let config = &state.services.config.http;
    let admin = Router::new()
        .route("/api/admin/sync-models", get(admin::list_syncs).post(admin::force_sync))
        .route("/api/changes", get(history::changes_feed))
        .route("/api/history", get(history::model_history))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/api/health", get(probes::health_report))
        .route("/metrics", get(probes::metrics))
        .merge(admin)
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in progress.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
