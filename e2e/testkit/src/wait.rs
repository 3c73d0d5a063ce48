//! Waiting for something to become true, with a deadline: tests wait for the condition
//! they need, never for a guessed number of seconds.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Checks `probe` until it returns `Some`, and returns that; panics naming `what` after
/// `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`until`] for a condition without a value.
pub async fn until_true<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until(what, limit, || {
        let holds = probe();
        async move { holds.await.then_some(()) }
    })
    .await;
}
