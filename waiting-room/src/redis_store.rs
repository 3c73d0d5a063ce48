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
    let mut delay = Duration::from_millis(100);
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(manager) => return Ok(manager),
            Err(error) => {
                tracing::warn!(%error, url, "redis not reachable yet, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => anyhow::bail!("shut down while connecting to redis"),
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
