//! The HTTP surface of `serve` (DESIGN.md §5): the admin API, the history reads (§8), health and
//! readiness probes, and `/metrics`, all on one port so that one scrape target and one firewall
//! rule suffice.

mod admin;
mod auth;
mod catalog;
mod history;
mod probes;
mod server;

pub use auth::canonical_ip;
pub use probes::Probes;
pub use server::ConnectionLimits;

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
    /// The readiness answer and its cache, on the probes' own small pool.
    pub probes: Arc<Probes>,
    /// Set once the database is migrated and interrupted syncs are recovered; until then
    /// `/readyz` is 503 and forced syncs are refused.
    pub started: Arc<AtomicBool>,
    /// Cleared when a core actor (supervisor, health monitor) has died: `/healthz` and
    /// `/readyz` say 503 while the worker exits to be restarted.
    pub alive: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
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
        .merge(catalog::routes(state.clone()))
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in progress; the connection
/// limits of `[http]` apply (`server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = &state.services.config.http;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        max_connections: config.max_connections,
    };
    server::serve_with_limits(listener, router(state), limits, shutdown).await
}
