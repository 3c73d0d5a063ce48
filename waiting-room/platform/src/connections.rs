//! Connections to the stores every service uses, and their readiness checks.
//!
//! PostgreSQL connects lazily, so a service starts (and reports "not ready") while it
//! is down; Redis is one multiplexed, self-reconnecting connection per process (to a
//! server or a cluster), retried until it first answers. Pub/sub uses its own
//! connection where a service subscribes.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::readiness::Check;
use crate::redis_connection::{RedisClient, RedisConnection};
use crate::retry::retry_until_ok;

/// A pool that connects on first use.
pub fn postgres_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url)
}

/// Connects to Redis, retrying with backoff until it answers or `shutdown` fires. The
/// returned connection reconnects by itself when Redis restarts (or fails over).
pub async fn redis(
    client: RedisClient,
    shutdown: &CancellationToken,
) -> anyhow::Result<RedisConnection> {
    retry_until_ok(
        &format!("redis at {}", client.address()),
        Duration::from_secs(2),
        shutdown,
        || client.connect(),
    )
    .await
}

/// Ready when `SELECT 1` answers.
pub fn postgres_check(pool: PgPool) -> Check {
    Check::new("postgres", move || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&pool)
                .await
                .map(drop)
                .map_err(|error| format!("SELECT 1 failed: {error}"))
        }
    })
}

/// Ready when `PING` answers.
pub fn redis_check(redis: RedisConnection) -> Check {
    Check::new("redis", move || {
        let mut redis = redis.clone();
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut redis)
                .await
                .map(drop)
                .map_err(|error| format!("PING failed: {error}"))
        }
    })
}
