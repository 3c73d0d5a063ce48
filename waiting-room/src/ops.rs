//! The operational HTTP surface every service shares (`/healthz`, `/readyz`, `/metrics`),
//! the middleware stack every router gets, and serving with graceful shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error;
use crate::observability::{self, track_http};
use crate::readiness::Readiness;

/// Adds the operational routes, JSON fallbacks and request tracking to a service's
/// router. Call last, after the service's own routes are in place.
pub fn finish(router: Router, readiness: Readiness) -> Router {
    // Install the recorder before the first request is tracked, whoever builds the router.
    observability::prometheus();
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    router
        .merge(ops)
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(track_http))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.check().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.to_json()))
}

async fn metrics() -> impl IntoResponse {
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
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    pub async fn bind(
        address: SocketAddr,
        router: Router,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            listener,
            router,
            shutdown,
            grace,
            background: Vec::new(),
        })
    }

    /// A task (consumer loop, sweeper, relay) that runs beside the server, watches the
    /// same shutdown token, and is awaited after the server stops.
    pub fn with_background(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.background.push(task);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until shutdown (see [`serve`]), then waits for the background tasks.
    pub async fn run(self) -> anyhow::Result<()> {
        let result = serve(self.listener, self.router, self.shutdown, self.grace).await;
        for task in self.background {
            if let Err(error) = tokio::time::timeout(self.grace, task).await {
                tracing::warn!(%error, "a background task did not stop in time");
            }
        }
        result
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then stops accepting, lets
/// in-flight requests finish, and gives up on stragglers after `grace`.
async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight requests did not finish in time; exiting");
        }
    }
    tracing::info!(%address, "server stopped");
    Ok(())
}
