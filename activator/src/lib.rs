//! The activator service: a Kafka consumer that turns waiting tickets into active ones,
//! queue (partition) by queue, at the rate operators set. Its HTTP surface is only
//! health, readiness and metrics.
//!
//! [`consumer`] owns the group membership and feeds each owned queue's records to a
//! [`queue_worker`], which runs [`activation`] steps on the queue's schedule.

mod activation;
mod config;
mod consumer;
mod dead_letter;
mod queue_worker;
mod rate;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use waiting_room::connections::Connections;
use waiting_room::kafka::{self, DurableProducer};
use waiting_room::live_catalog::LiveCatalog;
use waiting_room::ops::{self, HttpServer};
use waiting_room::redis_keys::RedisKeys;

pub use config::ActivatorConfig;

/// Connects to the dependencies, binds the listener and starts consuming; run the
/// result to serve until shutdown.
pub async fn build(
    config: ActivatorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let Connections {
        postgres,
        redis,
        readiness,
    } = Connections::open(common, &common.tickets_topic, &shutdown).await?;
    let timeout = Duration::from_millis(config.dead_letter_timeout_ms);
    let dead_letter_producer =
        DurableProducer::new(kafka::producer_config(&common.kafka_brokers, 0, timeout))?;
    let dependencies = consumer::Dependencies {
        catalog: LiveCatalog::start(postgres, shutdown.clone()).await,
        redis,
        keys: RedisKeys::new(common.redis_key_prefix.clone()),
        dead_letters: Arc::new(dead_letter::DeadLetter::new(
            dead_letter_producer,
            common.tickets_dlq_topic.clone(),
            timeout,
        )),
        topic: common.tickets_topic.clone(),
        partitions: common.tickets_partitions,
    };
    let consuming = tokio::spawn(consumer::run(
        common.kafka_brokers.clone(),
        config.group_id.clone(),
        dependencies,
        shutdown.clone(),
    ));
    let router = ops::finish(Router::new(), readiness);
    let grace = Duration::from_secs(common.shutdown_grace_seconds);
    Ok(HttpServer::bind(config.listen, router, shutdown, grace)
        .await?
        .with_background(consuming))
}
