//! The activator binary as a child process, for tests that SIGKILL it, and what every
//! crash test checks afterwards (only the activator's own tests: the binary is theirs).

use std::process::{Child, Stdio};

use contract::redis_schema::QueueStats;
use testkit::TestEnv;

/// The activator binary as a child process, for tests that SIGKILL it.
pub struct ActivatorProcess {
    child: Child,
}

impl ActivatorProcess {
    pub fn spawn(env: &TestEnv) -> Self {
        let child = env
            .service_command(env!("CARGO_BIN_EXE_activator"))
            .env("ACTIVATOR_LISTEN", "127.0.0.1:0")
            .env(
                "ACTIVATOR_GROUP_ID",
                format!("{}.activators", env.common.redis_key_prefix),
            )
            .env(
                "RUST_LOG",
                std::env::var("ACTIVATOR_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the activator binary");
        Self { child }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for ActivatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every ticket active, activated exactly once, in queue order.
pub async fn assert_activated_once_in_order(
    env: &TestEnv,
    partition: i32,
    tickets: &[(i64, uuid::Uuid)],
) {
    let mut previous_until = 0;
    for (queue_number, ticket_id) in tickets {
        let (state, active_until) = crate::support::ticket_state(env, *ticket_id).await;
        assert_eq!(
            state.as_deref(),
            Some("active"),
            "ticket {queue_number} was skipped"
        );
        let active_until = active_until.expect("active_until");
        assert!(
            active_until >= previous_until,
            "ticket {queue_number} activated out of order"
        );
        previous_until = active_until;
    }
    let activated: i64 = redis::cmd("HGET")
        .arg(env.redis_keys().queue_stats(partition))
        .arg(QueueStats::ACTIVATED)
        .query_async(&mut env.redis.clone())
        .await
        .expect("HGET activated");
    assert_eq!(
        activated,
        tickets.len() as i64,
        "activations counted once each"
    );
}
