//! Readiness: does this process's connection to each real dependency work right now?
//!
//! `/readyz` runs every configured check concurrently, each bounded by a timeout, and
//! answers 503 naming the ones that failed. Services build a [`Readiness`] with only the
//! dependencies they use.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::producer::BaseProducer;
use redis::aio::ConnectionManager;
use serde_json::{json, Map, Value};
use sqlx::PgPool;

use crate::kafka;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The dependencies whose health makes this service ready.
#[derive(Clone, Default)]
pub struct Readiness {
    postgres: Option<PgPool>,
    redis: Option<ConnectionManager>,
    kafka: Option<KafkaProbe>,
}

#[derive(Clone)]
struct KafkaProbe {
    client: Arc<BaseProducer>,
    topics: Vec<String>,
}

/// The outcome of one `/readyz` call.
pub struct ReadinessReport {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, result)| result.is_ok())
    }

    pub fn to_json(&self) -> Value {
        let mut checks = Map::new();
        for (name, result) in &self.checks {
            let value = match result {
                Ok(()) => json!("ok"),
                Err(reason) => json!(reason),
            };
            checks.insert((*name).to_owned(), value);
        }
        if self.is_ready() {
            return json!({"status": "ready", "checks": checks});
        }
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|(_, result)| result.is_err())
            .map(|(name, _)| *name)
            .collect();
        json!({
            "status": "not_ready",
            "checks": checks,
            "error": {"code": "not_ready", "message": format!("not ready: {}", failed.join(", "))},
        })
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_postgres(mut self, pool: PgPool) -> Self {
        self.postgres = Some(pool);
        self
    }

    pub fn with_redis(mut self, redis: ConnectionManager) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Kafka is ready when the broker returns metadata for every one of `topics`.
    pub fn with_kafka(mut self, brokers: &str, topics: Vec<String>) -> anyhow::Result<Self> {
        let client = Arc::new(kafka::metadata_client(brokers)?);
        self.kafka = Some(KafkaProbe { client, topics });
        Ok(self)
    }

    pub async fn check(&self) -> ReadinessReport {
        let mut checks: Vec<(
            &'static str,
            futures::future::BoxFuture<'_, Result<(), String>>,
        )> = Vec::new();
        if let Some(pool) = &self.postgres {
            checks.push(("postgres", Box::pin(check_postgres(pool))));
        }
        if let Some(redis) = &self.redis {
            checks.push(("redis", Box::pin(check_redis(redis.clone()))));
        }
        if let Some(probe) = &self.kafka {
            checks.push(("kafka", Box::pin(check_kafka(probe.clone()))));
        }
        let (names, futures): (Vec<_>, Vec<_>) = checks.into_iter().unzip();
        let results = join_all(futures.into_iter().map(|check| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            }
        }))
        .await;
        ReadinessReport {
            checks: names.into_iter().zip(results).collect(),
        }
    }
}

async fn check_postgres(pool: &PgPool) -> Result<(), String> {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .map(|_| ())
        .map_err(|error| format!("SELECT 1 failed: {error}"))
}

async fn check_redis(mut redis: ConnectionManager) -> Result<(), String> {
    redis::cmd("PING")
        .query_async::<String>(&mut redis)
        .await
        .map(|_| ())
        .map_err(|error| format!("PING failed: {error}"))
}

async fn check_kafka(probe: KafkaProbe) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        for topic in &probe.topics {
            kafka::topic_partition_count(&probe.client, topic, CHECK_TIMEOUT)?;
        }
        Ok(())
    })
    .await
    .map_err(|error| format!("metadata task failed: {error}"))?
}
