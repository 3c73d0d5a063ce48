//! The reservation's operational surface against the real PostgreSQL, Redis and Kafka.

use reservation::testing::{reservation_config, start_reservation};
use waiting_room::testing::{self, TestEnv};

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let key_file = std::env::temp_dir().join(format!(
        "{}.pub.pem",
        env.common.redis_key_prefix.replace(':', "-")
    ));
    std::fs::write(&key_file, env.public_key_pem()).unwrap();
    let mut config = reservation_config(&env, String::new());
    config.ticket_public_key_files = vec![key_file.clone()];
    let service = start_reservation(config).await;
    testing::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn help_documents_every_setting() {
    let mut variables = testing::COMMON_VARIABLES.to_vec();
    variables.extend([
        "RESERVATION_LISTEN",
        "TICKET_PUBLIC_KEY_FILES",
        "TICKET_JWKS_URL",
        "JWKS_REFRESH_SECONDS",
        "MAX_SEATS_PER_RESERVATION",
        "HOLD_SECONDS",
        "HOLD_SWEEP_INTERVAL_MS",
        "OUTBOX_BATCH_SIZE",
        "OUTBOX_POLL_MS",
        "OUTBOX_PRODUCE_TIMEOUT_MS",
        "STREAM_KEEPALIVE_SECONDS",
        "WAITING_ROOM_BASE_URL",
    ]);
    testing::assert_help_documents(env!("CARGO_BIN_EXE_reservation"), &variables);
}
