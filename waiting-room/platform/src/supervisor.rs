//! Long-lived background tasks (consumer loops, listeners, relays, sweepers), tracked
//! so none of them can die unnoticed.
//!
//! Every task runs under one [`Supervisor`] per process. A task is expected to run until
//! shutdown: one that returns, fails or panics before that is recorded by name, which
//! turns `/readyz` into a 503 naming it, and after a short delay (so load balancers see
//! the instance leave) the whole service shuts down and its `run` returns an error, so
//! the process exits non-zero and its supervisor (systemd, Kubernetes) restarts it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Supervisor {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Tasks that ended before shutdown, with why.
    failures: Arc<Mutex<Vec<String>>>,
    exit_delay: Duration,
}

impl Supervisor {
    /// A supervisor whose failures cancel `shutdown` at once.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self::with_exit_delay(shutdown, Duration::ZERO)
    }

    /// A supervisor that, when a task dies, reports not-ready for `exit_delay` before it
    /// cancels `shutdown`.
    pub fn with_exit_delay(shutdown: CancellationToken, exit_delay: Duration) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
            failures: Arc::new(Mutex::new(Vec::new())),
            exit_delay,
        }
    }

    /// The service's shutdown token.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `task` until shutdown. It should return `Ok(())` only once the shutdown
    /// token fired; an early return, an error or a panic fails the service.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        // Zero until the task fails, so the failure rate is a series from the start.
        metrics::counter!("supervised_task_failures_total", "task" => name).increment(0);
        let running = tokio::spawn(task);
        let supervisor = self.clone();
        self.tracker.spawn(async move {
            let failure = match running.await {
                Ok(Ok(())) if supervisor.shutdown.is_cancelled() => None,
                Ok(Ok(())) => Some("exited".to_owned()),
                Ok(Err(error)) => Some(format!("failed: {error:#}")),
                Err(join) if join.is_panic() => Some("panicked".to_owned()),
                Err(_) => Some("was cancelled".to_owned()),
            };
            if let Some(why) = failure {
                supervisor.fail(name, &why).await;
            }
        });
    }

    async fn fail(&self, name: &str, why: &str) {
        if self.shutdown.is_cancelled() {
            tracing::warn!(task = name, "background task {why} during shutdown");
            return;
        }
        tracing::error!(
            task = name,
            "background task {why}; the service is not ready and shuts down"
        );
        metrics::counter!("supervised_task_failures_total", "task" => name.to_owned()).increment(1);
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{name} {why}"));
        tokio::select! {
            () = tokio::time::sleep(self.exit_delay) => {}
            () = self.shutdown.cancelled() => {}
        }
        self.shutdown.cancel();
    }

    /// `Err` naming the tasks that died, for `/readyz`.
    pub fn health(&self) -> Result<(), String> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// After shutdown: waits up to `grace` for every task to finish, then reports
    /// whether any died before shutdown.
    pub async fn finish(&self, grace: Duration) -> anyhow::Result<()> {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "background tasks did not stop in time");
        }
        self.health()
            .map_err(|failures| anyhow::anyhow!("background task {failures}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_early_is_named_and_shuts_the_service_down() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone());
        supervisor.spawn("steady", {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                Ok(())
            }
        });
        supervisor.spawn("consumer", async { anyhow::bail!("no broker") });
        tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
            .await
            .expect("the failure cancels shutdown");
        let error = supervisor
            .finish(Duration::from_secs(5))
            .await
            .expect_err("the service failed");
        assert!(
            error.to_string().contains("consumer failed: no broker"),
            "{error}"
        );
        assert!(!error.to_string().contains("steady"), "{error}");
    }

    #[tokio::test]
    async fn a_panic_counts_as_a_failure() {
        let supervisor = Supervisor::new(CancellationToken::new());
        supervisor.spawn("sweeper", async { panic!("bug") });
        tokio::time::timeout(Duration::from_secs(5), supervisor.shutdown().cancelled())
            .await
            .expect("the panic cancels shutdown");
        assert_eq!(supervisor.health(), Err("sweeper panicked".to_owned()));
    }

    #[tokio::test]
    async fn tasks_that_stop_at_shutdown_are_fine() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone());
        supervisor.spawn("listener", {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                Ok(())
            }
        });
        shutdown.cancel();
        supervisor
            .finish(Duration::from_secs(5))
            .await
            .expect("a clean stop");
    }
}
