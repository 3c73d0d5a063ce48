//! The activator's operational surface against the real PostgreSQL, Redis and Kafka.

mod support;

use waiting_room::testing::{self, TestEnv};

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let service = support::start_activator(&env).await;
    testing::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
}

#[test]
fn help_documents_every_setting() {
    let mut variables = testing::COMMON_VARIABLES.to_vec();
    variables.extend([
        "ACTIVATOR_LISTEN",
        "ACTIVATOR_GROUP_ID",
        "DEAD_LETTER_TIMEOUT_MS",
    ]);
    testing::assert_help_documents(env!("CARGO_BIN_EXE_activator"), &variables);
}
