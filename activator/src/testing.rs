//! Test support: an activator for a `TestEnv` (its database, key prefix, topics and a
//! consumer group of its own), in-process on a port-0 listener.

use clap::Parser;
use waiting_room::testing::{self, RunningService, TestEnv};

use crate::ActivatorConfig;

#[derive(Parser)]
struct ActivatorEnvironment {
    #[command(flatten)]
    config: ActivatorConfig,
}

/// Defaults and the environment's variables, pointed at the test's slice of the services.
pub fn activator_config(env: &TestEnv) -> ActivatorConfig {
    let mut config = ActivatorEnvironment::parse_from(["test"]).config;
    config.common = env.common.clone();
    config.listen = testing::any_port();
    config.group_id = format!("{}.activators", env.common.redis_key_prefix);
    config
}

pub async fn start_activator(env: &TestEnv) -> RunningService {
    let config = activator_config(env);
    RunningService::start(|shutdown| crate::build(config, shutdown)).await
}
