//! The connections every service opens at start (PostgreSQL, Redis) and the readiness
//! check over them, the service's Kafka topic and its supervised tasks. A service
//! refuses to start on contradictory Kafka settings or an under-replicated topic.

use platform::connections;
use platform::readiness::Readiness;
use platform::redis_connection::RedisConnection;
use platform::supervisor::Supervisor;
use sqlx::PgPool;

use crate::config::CommonConfig;
use crate::kafka;

pub struct Connections {
    pub postgres: PgPool,
    pub redis: RedisConnection,
    /// PostgreSQL, Redis, the broker's metadata for the topics, the supervised tasks.
    pub readiness: Readiness,
}

impl Connections {
    /// PostgreSQL connects lazily (a service starts and reports "not ready" while it is
    /// down); Redis is retried until it answers or the service shuts down.
    pub async fn open(
        common: &CommonConfig,
        topics: &[&str],
        supervisor: &Supervisor,
    ) -> anyhow::Result<Self> {
        common.kafka.validate()?;
        let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        kafka::refuse_under_replicated(&common.kafka, &topics).await?;
        let postgres =
            connections::postgres_pool(&common.database_url, common.database_max_connections)?;
        let redis = connections::redis(common.redis_client()?, supervisor.shutdown()).await?;
        let readiness = Readiness::new(supervisor.clone())
            .with(connections::postgres_check(postgres.clone()))
            .with(connections::redis_check(redis.clone()))
            .with(kafka::topics_check(&common.kafka, topics)?);
        Ok(Self {
            postgres,
            redis,
            readiness,
        })
    }
}
