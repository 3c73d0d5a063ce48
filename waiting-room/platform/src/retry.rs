//! One backoff for everything that retries a dependency (Redis, PostgreSQL listeners,
//! the JWKS, the broker): waits start short, double up to a ceiling, and give up the
//! moment the service shuts down, so a dependency that is still starting never blocks a
//! clean exit.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Doubling delays between `FIRST_DELAY` and a ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: FIRST_DELAY.min(max),
            max,
        }
    }

    /// The delay to wait now; the one after it is twice as long (up to the ceiling).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.next = FIRST_DELAY.min(self.max);
    }

    /// Sleeps the next delay; `false` when `shutdown` fired first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.cancelled() => false,
        }
    }
}

/// Calls `attempt` until it succeeds, backing off up to `max_delay` between tries and
/// logging each failure as "`what` not reachable yet". Gives up when `shutdown` fires.
pub async fn retry_until_ok<T, E, F, Fut>(
    what: &str,
    max_delay: Duration,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::new(max_delay);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                tracing::warn!(%error, "{what} not reachable yet, retrying");
                if !backoff.wait(shutdown).await {
                    anyhow::bail!("shut down while waiting for {what}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn retrying_stops_at_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let result: anyhow::Result<()> =
            retry_until_ok("nothing", Duration::from_secs(1), &shutdown, || async {
                Err::<(), _>("down")
            })
            .await;
        assert!(result.is_err());
    }
}
