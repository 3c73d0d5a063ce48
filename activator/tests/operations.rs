//! The activator's operational surface against the real PostgreSQL, Redis and Kafka,
//! and what it does when its consumer cannot run: not ready, then exit.

mod support;

use std::process::Stdio;
use std::time::Duration;

use activator::ActivatorConfig;
use serde_json::Value;
use testkit::wait::until;
use testkit::{checks, RunningService, TestEnv};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let service = support::start_activator(&env).await;
    checks::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
}

/// A consumer group id librdkafka refuses to subscribe with: the consumer task ends at
/// start although every dependency is up.
const BAD_GROUP: &str = "";

#[tokio::test]
async fn a_consumer_that_cannot_run_makes_the_activator_not_ready_then_ends_it() {
    let env = TestEnv::new().await;
    let mut config = support::activator_config(&env);
    config.group_id = BAD_GROUP.to_owned();
    // Long enough to see the 503 before the service shuts itself down.
    config.common.failed_task_exit_delay_ms = 10_000;
    let service = RunningService::start(|shutdown| activator::build(config, shutdown)).await;
    let url = service.url("/readyz");
    let body = until("/readyz answers 503 naming the consumer", WAIT, || async {
        let response = reqwest::get(&url).await.ok()?;
        if response.status() != 503 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        let tasks = body["checks"]["tasks"].as_str()?;
        tasks.contains("consumer").then_some(body)
    })
    .await;
    assert_eq!(
        body["checks"]["kafka"], "ok",
        "the broker itself is fine: {body}"
    );
    assert_eq!(body["error"]["code"], "not_ready");
    let ended = tokio::time::timeout(WAIT, service.finished())
        .await
        .expect("the activator ends by itself");
    let error = ended.expect_err("it ends with an error");
    assert!(error.to_string().contains("consumer"), "{error}");
}

#[tokio::test]
async fn the_binary_exits_non_zero_when_its_consumer_cannot_run() {
    let env = TestEnv::new().await;
    let mut child = env
        .service_command(env!("CARGO_BIN_EXE_activator"))
        .env("ACTIVATOR_LISTEN", "127.0.0.1:0")
        .env("ACTIVATOR_GROUP_ID", BAD_GROUP)
        .env("FAILED_TASK_EXIT_DELAY_MS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the activator binary");
    let status = until("the activator process exits", WAIT, || {
        let exited = child.try_wait().expect("poll the child");
        async move { exited }
    })
    .await;
    assert!(!status.success(), "exit status {status}");
}

#[test]
fn help_documents_every_setting() {
    checks::assert_help_documents::<ActivatorConfig>(env!("CARGO_BIN_EXE_activator"));
}
