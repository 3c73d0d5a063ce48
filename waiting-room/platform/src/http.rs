//! Serving HTTP: the operational routes every service shares (`/healthz`, `/readyz`,
//! `/metrics`), the middleware every router gets, and the server's life from binding
//! to graceful shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use tokio::net::TcpListener;

use crate::error;
use crate::observability::{self, track_http};
use crate::readiness::Readiness;
use crate::supervisor::Supervisor;

/// Adds the operational routes, JSON fallbacks and request tracking to a service's
/// router. Call last, after the service's own routes are in place.
pub fn with_operational_routes(router: Router, readiness: Readiness) -> Router {
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
    supervisor: Supervisor,
    grace: Duration,
}

impl HttpServer {
    /// Binds `address`; the server stops when `supervisor`'s shutdown token fires.
    pub async fn bind(
        address: SocketAddr,
        router: Router,
        supervisor: Supervisor,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            listener,
            router,
            supervisor,
            grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until shutdown, lets in-flight requests finish (giving up on stragglers
    /// after the grace period), then waits for the supervised tasks. An error when the
    /// server failed or a supervised task died before shutdown.
    pub async fn run(self) -> anyhow::Result<()> {
        let served = serve(self.listener, self.router, &self.supervisor, self.grace).await;
        let tasks = self.supervisor.finish(self.grace).await;
        served.and(tasks)
    }
}

async fn serve(
    listener: TcpListener,
    router: Router,
    supervisor: &Supervisor,
    grace: Duration,
) -> anyhow::Result<()> {
    let shutdown = supervisor.shutdown().clone();
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
