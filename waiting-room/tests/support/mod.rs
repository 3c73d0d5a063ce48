//! How a test starts the entry API (also used by the cross-service tests in `e2e/`).
#![allow(dead_code)] // each test binary uses its own subset

use testkit::{RunningService, TestEnv};
use waiting_room::WaitingRoomConfig;

/// The entry API's settings for `env`: its database, key prefix, topics and secrets.
pub fn waiting_room_config(env: &TestEnv) -> WaitingRoomConfig {
    env.config(&env.entry_api_args())
}

pub async fn start_waiting_room(config: WaitingRoomConfig) -> RunningService {
    RunningService::start(|shutdown| waiting_room::build(config, shutdown)).await
}
