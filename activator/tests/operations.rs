//! The activator's operational surface against the real PostgreSQL, Redis and Kafka.

use activator::ActivatorConfig;
use waiting_room::testing::{self, RunningService, TestEnv};

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let config = ActivatorConfig {
        common: env.common.clone(),
        listen: testing::any_port(),
        group_id: format!("{}.activator", env.common.redis_key_prefix),
    };
    let service = RunningService::start(|shutdown| activator::build(config, shutdown)).await;
    testing::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
}

#[test]
fn help_documents_every_setting() {
    let mut variables = testing::COMMON_VARIABLES.to_vec();
    variables.extend(["ACTIVATOR_LISTEN", "ACTIVATOR_GROUP_ID"]);
    testing::assert_help_documents(env!("CARGO_BIN_EXE_activator"), &variables);
}
