//! The activator binary as a child process, for tests that SIGKILL it, and what every
//! crash test checks afterwards (only the activator's own tests: the binary is theirs).
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Child, Stdio};

use std::collections::{HashMap, HashSet};

use contract::redis_schema::QueueStats;
use contract::ticket_decision::{DecisionRecord, Outcome};
use contract::topic_reader::TopicReader;
use testkit::TestEnv;

/// The activator binary as a child process, for tests that SIGKILL it.
pub struct ActivatorProcess {
    child: Child,
}

impl ActivatorProcess {
    pub fn spawn(env: &TestEnv) -> Self {
        Self::spawn_with(env, &[])
    }

    /// With settings of its own (environment variables) on top of `env`'s.
    pub fn spawn_with(env: &TestEnv, settings: &[(&str, &str)]) -> Self {
        let child = env
            .service_command(env!("CARGO_BIN_EXE_activator"))
            .envs(settings.iter().copied())
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
    assert_active_in_order(env, partition, tickets).await;
    assert_decisions_published(env, tickets).await;
}

/// Every ticket of the queue active, in queue order, and counted once in the queue's
/// activations (the decisions topic is [`assert_decisions_published`]'s).
pub async fn assert_active_in_order(env: &TestEnv, partition: i32, tickets: &[(i64, uuid::Uuid)]) {
    let mut previous_until = 0;
    for (queue_number, ticket_id) in tickets {
        let (state, active_until) = crate::support::ticket_state(env, partition, *ticket_id).await;
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

/// Every ticket's activation reaches the decisions topic (at least once), across the
/// kills: the journal is written with the decision and published by whoever owns the
/// queue next.
pub async fn assert_decisions_published(env: &TestEnv, tickets: &[(i64, uuid::Uuid)]) {
    let wanted: HashSet<uuid::Uuid> = tickets.iter().map(|(_, ticket_id)| *ticket_id).collect();
    let started = std::time::Instant::now();
    loop {
        let (kafka, topic) = (env.common.kafka.clone(), env.common.decisions_topic.clone());
        let records =
            tokio::task::spawn_blocking(move || TopicReader::new(&kafka, &topic)?.all(|_| true))
                .await
                .expect("read the decisions")
                .expect("the decisions topic");
        // Each ticket's activation times: a copy published again is the same decision, a
        // second time is a second activation.
        let mut activations: HashMap<uuid::Uuid, HashSet<i64>> = HashMap::new();
        for decision in records
            .iter()
            .filter_map(|record| DecisionRecord::parse(record.payload.as_deref()?))
            .flat_map(|record| record.decisions)
            .filter(|decision| decision.outcome == Outcome::Activated)
        {
            activations
                .entry(decision.ticket_id)
                .or_default()
                .insert(decision.at_ms);
        }
        let twice = activations.values().filter(|times| times.len() > 1).count();
        assert_eq!(twice, 0, "tickets activated twice");
        let activated: HashSet<uuid::Uuid> = activations.into_keys().collect();
        let missing = wanted.difference(&activated).count();
        if missing == 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{missing} activations never reached the decisions topic"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
