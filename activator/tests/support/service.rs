//! How a test starts the activator (also used by the cross-service tests in `e2e/`).

use activator::ActivatorConfig;
use testkit::{RunningService, TestEnv};

/// The activator's settings for `env`, in a consumer group of the test's own.
pub fn activator_config(env: &TestEnv) -> ActivatorConfig {
    let mut config: ActivatorConfig = env.config(&[]);
    config.group_id = format!("{}.activators", env.common.redis_key_prefix);
    config
}

pub async fn start_activator(env: &TestEnv) -> RunningService {
    let config = activator_config(env);
    RunningService::start(|shutdown| activator::build(config, shutdown)).await
}
