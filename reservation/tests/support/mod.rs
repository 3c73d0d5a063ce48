//! How a test starts the reservation service (also used by the cross-service tests in
//! `e2e/`).
#![allow(dead_code)] // each test binary uses its own subset

use reservation::ReservationConfig;
use testkit::{RunningService, TestEnv};

/// The reservation service's settings for `env`, verifying tickets with the keys
/// published at `jwks_url`.
pub fn reservation_config(env: &TestEnv, jwks_url: String) -> ReservationConfig {
    let mut config: ReservationConfig = env.config(&[]);
    config.ticket_public_key_files = Vec::new();
    config.ticket_jwks_url = jwks_url;
    config
}

pub async fn start_reservation(config: ReservationConfig) -> RunningService {
    RunningService::start(|shutdown| reservation::build(config, shutdown)).await
}
