//! Readiness: do this process's connections to its dependencies work right now, and
//! are all its long-lived tasks still running?
//!
//! `/readyz` runs every [`Check`] concurrently, each bounded by a timeout, plus the
//! [`Supervisor`]'s record of tasks that ended, and answers 503 naming whatever failed.
//! Services build a [`Readiness`] with only the dependencies they use.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use serde_json::{json, Map, Value};

use crate::supervisor::Supervisor;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Probe = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One named dependency check: `Ok` when it works, or why not.
#[derive(Clone)]
pub struct Check {
    name: &'static str,
    probe: Arc<Probe>,
}

impl Check {
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            probe: Arc::new(move || probe().boxed()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
}

/// What makes this service ready: its dependency checks and its supervised tasks.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<Check>,
    supervisor: Supervisor,
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
    /// Ready while every task `supervisor` runs is running, plus the checks added.
    pub fn new(supervisor: Supervisor) -> Self {
        Self {
            checks: Vec::new(),
            supervisor,
        }
    }

    pub fn with(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    pub async fn check(&self) -> ReadinessReport {
        let results = join_all(self.checks.iter().map(Check::run)).await;
        let mut checks: Vec<(&'static str, Result<(), String>)> =
            self.checks.iter().map(Check::name).zip(results).collect();
        checks.push(("tasks", self.supervisor.health()));
        ReadinessReport { checks }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;

    #[tokio::test]
    async fn each_failed_check_is_named() {
        let readiness = Readiness::new(Supervisor::new(CancellationToken::new()))
            .with(Check::new("good", || async { Ok(()) }))
            .with(Check::new("bad", || async { Err("down".to_owned()) }));
        let report = readiness.check().await;
        assert!(!report.is_ready());
        let body = report.to_json();
        assert_eq!(body["checks"]["good"], "ok");
        assert_eq!(body["checks"]["bad"], "down");
        assert_eq!(body["checks"]["tasks"], "ok");
        assert_eq!(body["error"]["message"], "not ready: bad");
    }
}
