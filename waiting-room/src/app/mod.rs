//! The waiting-room service: the fans' entry API and the operators' admin API.
//!
//! [`build`] wires configuration to real connections and a router; `main.rs` and the
//! integration tests both start the service through it, so tests run exactly what
//! production runs (on a port-0 listener).

mod config;

use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

pub use config::WaitingRoomConfig;

use crate::ops::{self, HttpServer};
use crate::readiness::Readiness;
use crate::{db, redis_store};

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: WaitingRoomConfig,
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
