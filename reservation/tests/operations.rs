//! The reservation's operational surface against the real PostgreSQL, Redis and Kafka.

mod support;

use reservation::ReservationConfig;
use support::{reservation_config, start_reservation};
use testkit::checks;
use testkit::TestEnv;

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
    checks::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn help_documents_every_setting() {
    checks::assert_help_documents::<ReservationConfig>(env!("CARGO_BIN_EXE_reservation"));
}
