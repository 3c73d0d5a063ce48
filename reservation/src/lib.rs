//! The reservation service: accepts reservations only from tickets that are active right
//! now, holds seats in PostgreSQL without overselling, and publishes reservation events
//! to Kafka through a transactional outbox.

mod config;

use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use waiting_room::ops::{self, HttpServer};
use waiting_room::readiness::Readiness;
use waiting_room::{db, redis_store};

pub use config::ReservationConfig;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: ReservationConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let postgres = db::connect_lazy(&common.database_url, common.database_max_connections)?;
    let redis = redis_store::connect(&common.redis_url, &shutdown).await?;
    let readiness = Readiness::all(
        common,
        postgres,
        redis,
        vec![common.reservations_topic.clone()],
    )?;
    let router = ops::finish(Router::new(), readiness);
    let grace = Duration::from_secs(common.shutdown_grace_seconds);
    HttpServer::bind(config.listen, router, shutdown, grace).await
}
