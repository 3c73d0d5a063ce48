//! The connections every service opens at start (PostgreSQL, Redis) and the readiness
//! check over them and the service's Kafka topic.

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::CommonConfig;
use crate::readiness::Readiness;
use crate::{db, redis_store};

pub struct Connections {
    pub postgres: PgPool,
    pub redis: ConnectionManager,
    /// PostgreSQL, Redis and the broker's metadata for `topic`.
    pub readiness: Readiness,
}

impl Connections {
    /// PostgreSQL connects lazily (a service starts and reports "not ready" while it is
    /// down); Redis is retried until it answers or `shutdown` fires.
    pub async fn open(
        common: &CommonConfig,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let postgres = db::connect_lazy(&common.database_url, common.database_max_connections)?;
        let redis = redis_store::connect(&common.redis_url, shutdown).await?;
        let readiness = Readiness::new()
            .with_postgres(postgres.clone())
            .with_redis(redis.clone())
            .with_kafka(&common.kafka_brokers, vec![topic.to_owned()])?;
        Ok(Self {
            postgres,
            redis,
            readiness,
        })
    }
}
