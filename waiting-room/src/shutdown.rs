//! Graceful shutdown: one cancellation token per process, cancelled on SIGTERM or
//! SIGINT. Servers stop accepting and drain in-flight requests; long-lived streams and
//! background loops select on the token and finish promptly.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Calls `attempt` until it succeeds, waiting from 100 ms, doubling up to `max_delay`,
/// between tries and logging each failure as "`what` not reachable yet". Gives up when
/// `shutdown` fires: a dependency that is still starting never blocks a clean exit.
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
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                tracing::warn!(%error, "{what} not reachable yet, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => anyhow::bail!("shut down while waiting for {what}"),
                }
                delay = (delay * 2).min(max_delay);
            }
        }
    }
}
