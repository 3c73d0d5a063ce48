//! The reservation service: accepts reservations only from tickets that are active right
//! now, holds seats in PostgreSQL without overselling, and publishes reservation events
//! to Kafka through a transactional outbox.

mod config;

use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use waiting_room::connections::Connections;
use waiting_room::ops::{self, HttpServer};

pub use config::ReservationConfig;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: ReservationConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let Connections { readiness, .. } =
        Connections::open(common, &common.reservations_topic, &shutdown).await?;
    let router = ops::finish(Router::new(), readiness);
    let grace = Duration::from_secs(common.shutdown_grace_seconds);
    HttpServer::bind(config.listen, router, shutdown, grace).await
}
