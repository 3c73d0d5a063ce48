//! The activator service: a Kafka consumer that turns waiting tickets into active ones,
//! queue (partition) by queue, at the rate operators set. Its HTTP surface is only
//! health, readiness and metrics.

mod config;

use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use waiting_room::ops::{self, HttpServer};
use waiting_room::readiness::Readiness;
use waiting_room::{db, redis_store};

pub use config::ActivatorConfig;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: ActivatorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let postgres = db::connect_lazy(&common.database_url, common.database_max_connections)?;
    let redis = redis_store::connect(&common.redis_url, &shutdown).await?;
    let readiness = Readiness::all(common, postgres, redis, vec![common.tickets_topic.clone()])?;
    let router = ops::finish(Router::new(), readiness);
    let grace = Duration::from_secs(common.shutdown_grace_seconds);
    HttpServer::bind(config.listen, router, shutdown, grace).await
}
