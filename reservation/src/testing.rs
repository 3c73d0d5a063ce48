//! Test support: a reservation service for a `TestEnv`, verifying tickets with the
//! JWKS of the test's waiting-room, in-process on a port-0 listener.

use clap::Parser;
use waiting_room::testing::{self, RunningService, TestEnv};

use crate::ReservationConfig;

#[derive(Parser)]
struct ReservationEnvironment {
    #[command(flatten)]
    config: ReservationConfig,
}

/// Defaults and the environment's variables, pointed at the test's slice of the
/// services and at `jwks_url`.
pub fn reservation_config(env: &TestEnv, jwks_url: String) -> ReservationConfig {
    let mut config = ReservationEnvironment::parse_from(["test"]).config;
    config.common = env.common.clone();
    config.listen = testing::any_port();
    config.ticket_public_key_files = Vec::new();
    config.ticket_jwks_url = jwks_url;
    config
}

pub async fn start_reservation(config: ReservationConfig) -> RunningService {
    RunningService::start(|shutdown| crate::build(config, shutdown)).await
}
