//! Serving HTTP: the operational routes every service shares (`/healthz`, `/readyz`,
//! `/metrics`), the middleware every router gets, and the server's life from binding
//! to graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use tokio::net::TcpListener;

use crate::cors::{self, AllowedOrigin};
use crate::error;
use crate::event_streams::EventStreamPaths;
use crate::observability::{self, track_http};
use crate::readiness::Readiness;
use crate::server::{self, ConnectionPolicy};
use crate::supervisor::Supervisor;

/// Where and how a service serves HTTP.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The service's own API (fans, operators).
    pub listen: SocketAddr,
    /// When set, `/readyz` and `/metrics` are served here and not on `listen`, so a
    /// deployment can keep them off the public port (`/healthz` stays on both).
    pub operations_listen: Option<SocketAddr>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests and tasks.
    pub grace: Duration,
    pub connections: ConnectionPolicy,
    /// The service's event-stream paths, served off hyper to keep open streams small
    /// (`None`: every request through hyper).
    pub event_stream_paths: Option<EventStreamPaths>,
    /// Origins whose front ends may call the public API (`/v1/...`) from the browser.
    pub cors_origins: Vec<AllowedOrigin>,
}

/// The routers of a service: its own routes with the operational ones, or apart.
fn routers(
    routes: Router,
    readiness: Readiness,
    settings: &ServerSettings,
) -> (Router, Option<Router>) {
    // Install the recorder before the first request is tracked, whoever builds the router.
    observability::prometheus();
    let operations = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    match settings.operations_listen {
        None => (finish(routes.merge(operations), settings), None),
        Some(_) => (
            finish(routes.route("/healthz", get(healthz)), settings),
            Some(finish(operations, settings)),
        ),
    }
}

/// JSON fallbacks, the body limit, the cross-origin allow-list and request tracking,
/// around every route.
fn finish(router: Router, settings: &ServerSettings) -> Router {
    let router = router
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    match cors::layer(&settings.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
    .layer(middleware::from_fn(track_http))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Object))
)]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: every dependency check passes. Served on `OPERATIONS_LISTEN` instead when
/// that is set.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready; each named check and its result", body = Object),
        (status = 503, description = "Not ready; the same report names the failing checks", body = Object)
    )
)]
pub async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.check().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.to_json()))
}

/// Prometheus metrics. Served on `OPERATIONS_LISTEN` instead when that is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(readiness): State<Readiness>) -> impl IntoResponse {
    // Readiness as metrics, so an alert can name the failing check without probing
    // `/readyz` itself.
    let report = readiness.check().await;
    for (check, result) in &report.checks {
        metrics::gauge!("readiness_check_ok", "check" => *check)
            .set(f64::from(u8::from(result.is_ok())));
    }
    metrics::gauge!("service_ready").set(f64::from(u8::from(report.is_ready())));
    let handle = observability::prometheus();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// A service's HTTP server, bound but not yet serving. Binding happens at build time so
/// that tests can listen on port 0 and learn the port before the server runs.
pub struct HttpServer {
    listeners: Vec<(TcpListener, Router)>,
    supervisor: Supervisor,
    settings: ServerSettings,
}

impl HttpServer {
    /// Binds the service's address (and the operations address, when set) for `routes`
    /// plus the operational routes; the server stops when `supervisor`'s shutdown
    /// token fires.
    pub async fn bind(
        settings: ServerSettings,
        routes: Router,
        readiness: Readiness,
        supervisor: Supervisor,
    ) -> anyhow::Result<Self> {
        let (main, operations) = routers(routes, readiness, &settings);
        let mut listeners = vec![(TcpListener::bind(settings.listen).await?, main)];
        if let (Some(address), Some(router)) = (settings.operations_listen, operations) {
            listeners.push((TcpListener::bind(address).await?, router));
        }
        Ok(Self {
            listeners,
            supervisor,
            settings,
        })
    }

    /// The service's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address(0).expect("the service's listener is bound")
    }

    /// Where `/readyz` and `/metrics` are served, when apart from the service's address.
    pub fn operations_addr(&self) -> Option<SocketAddr> {
        self.address(1)
    }

    fn address(&self, index: usize) -> Option<SocketAddr> {
        self.listeners
            .get(index)
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves until shutdown, lets in-flight requests finish (giving up on stragglers
    /// after the grace period), then waits for the supervised tasks. An error when a
    /// supervised task died before shutdown.
    pub async fn run(self) -> anyhow::Result<()> {
        let shutdown = self.supervisor.shutdown().clone();
        let settings = self.settings;
        let serving = self
            .listeners
            .into_iter()
            .enumerate()
            .map(|(index, (listener, router))| {
                let shutdown = shutdown.clone();
                // The operations listener serves no streams.
                let event_streams = settings.event_stream_paths.filter(|_| index == 0);
                async move {
                    let address = listener.local_addr().ok();
                    tracing::info!(?address, policy = ?settings.connections, "listening");
                    server::serve(
                        listener,
                        router,
                        settings.connections,
                        event_streams,
                        &shutdown,
                        settings.grace,
                    )
                    .await;
                    tracing::info!(?address, "server stopped");
                }
            });
        futures::future::join_all(serving).await;
        self.supervisor.finish(settings.grace).await
    }
}
