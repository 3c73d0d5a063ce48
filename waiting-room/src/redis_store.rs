//! Redis connections. One multiplexed, self-reconnecting connection per process serves
//! every command; pub/sub uses its own connection where a service subscribes.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

/// Connects to Redis, retrying with backoff until it answers or `shutdown` fires. The
/// returned manager reconnects by itself when Redis restarts.
pub async fn connect(url: &str, shutdown: &CancellationToken) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    crate::shutdown::retry_until_ok(
        &format!("redis at {url}"),
        Duration::from_secs(2),
        shutdown,
        || ConnectionManager::new_with_config(client.clone(), config.clone()),
    )
    .await
}
