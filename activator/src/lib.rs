//! The activator service: a Kafka consumer that turns waiting tickets into active ones,
//! queue (partition) by queue, at the rate operators set. Its HTTP surface is only
//! health, readiness and metrics.
//!
//! The modules form a line: [`consumer`] owns the group membership ([`group`]) and hands
//! each owned queue's records, through its [`backlog`], to a [`queue_worker`], which holds
//! the queue until its sales start and draws shuffled pre-queues ([`queue_schedule`]),
//! runs [`activation`] steps on the queue's schedule, measures its [`rate`] and sends
//! poison records to the [`dead_letter`] topic. A queue whose Redis state was lost is
//! rebuilt from Kafka first ([`recovery`]).

// Public for its tests: the step is run against Redis directly.
pub mod activation;
mod backlog;
mod config;
mod consumer;
mod dead_letter;
mod decision_journal;
mod group;
mod queue_schedule;
mod queue_worker;
mod rate;
mod recovery;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use contract::connections::Connections;
use contract::kafka::{self, DurableProducer};
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::RedisKeys;
use platform::http::HttpServer;
use tokio_util::sync::CancellationToken;

use self::decision_journal::DecisionJournal;

pub use config::{ActivatorConfig, ReplicaAcks};

/// Connects to the dependencies, binds the listener and starts consuming; run the
/// result to serve until shutdown.
pub async fn build(
    config: ActivatorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let supervisor = common.supervisor(shutdown);
    let server = common.server_settings(config.listen);
    let Connections {
        postgres,
        redis,
        readiness,
    } = Connections::open(
        common,
        // It consumes the tickets and appends to the other two.
        &[
            &common.tickets_topic,
            &common.tickets_dlq_topic,
            &common.decisions_topic,
        ],
        &supervisor,
    )
    .await?;
    let timeout = Duration::from_millis(config.dead_letter_timeout_ms);
    let dead_letter_producer =
        DurableProducer::new(kafka::producer_config(&common.kafka, 0, timeout))?;
    let decisions_producer =
        DurableProducer::new(kafka::producer_config(&common.kafka, 0, timeout))?;
    let dependencies = consumer::Dependencies {
        catalog: LiveCatalog::start(postgres, &supervisor).await,
        redis,
        keys: RedisKeys::new(common.redis_key_prefix.clone()),
        dead_letters: Arc::new(dead_letter::DeadLetter::new(
            dead_letter_producer,
            common.tickets_dlq_topic.clone(),
            timeout,
        )),
        decisions: Arc::new(DecisionJournal::new(
            decisions_producer,
            common.decisions_topic.clone(),
            timeout,
        )),
        topic: common.tickets_topic.clone(),
        decisions_topic: common.decisions_topic.clone(),
        partitions: common.tickets_partitions,
        replica_acks: config.replica_acks(),
    };
    supervisor.spawn(
        "consumer",
        consumer::run(
            common.kafka.clone(),
            config.group_id.clone(),
            dependencies,
            supervisor.shutdown().clone(),
        ),
    );
    HttpServer::bind(server, Router::new(), readiness, supervisor).await
}
