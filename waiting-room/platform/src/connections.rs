//! Connections to the stores every service uses, and their readiness checks.
//!
//! PostgreSQL connects lazily, so a service starts (and reports "not ready") while it
//! is down; Redis is one multiplexed, self-reconnecting connection per process, retried
//! until it first answers. Pub/sub uses its own connection where a service subscribes.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::readiness::Check;
use crate::retry::retry_until_ok;

/// A pool that connects on first use.
pub fn postgres_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url)
}

/// Connects to Redis, retrying with backoff until it answers or `shutdown` fires. The
/// returned manager reconnects by itself when Redis restarts.
pub async fn redis(
    client: redis::Client,
    shutdown: &CancellationToken,
) -> anyhow::Result<ConnectionManager> {
    // The address only: the URL may hold a password.
    let address = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    retry_until_ok(
        &format!("redis at {address}"),
        Duration::from_secs(2),
        shutdown,
        || ConnectionManager::new_with_config(client.clone(), config.clone()),
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
pub fn redis_check(redis: ConnectionManager) -> Check {
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
