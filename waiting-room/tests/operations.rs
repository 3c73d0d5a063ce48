//! The waiting-room's operational surface against the real PostgreSQL, Redis and Kafka.

use waiting_room::testing::{self, TestEnv};

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let service = env.start_waiting_room(env.waiting_room_config()).await;
    testing::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn readiness_names_each_unreachable_dependency() {
    let env = TestEnv::new().await;
    let mut config = env.waiting_room_config();
    // Nothing listens on port 1: both checks must fail and be named.
    config.common.kafka_brokers = "127.0.0.1:1".into();
    config.common.database_url = "postgres://postgres@127.0.0.1:1/nothing".into();
    let service = env.start_waiting_room(config).await;
    let response = reqwest::get(service.url("/readyz"))
        .await
        .expect("GET /readyz");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert_ne!(body["checks"]["postgres"], "ok", "{body}");
    assert_ne!(body["checks"]["kafka"], "ok", "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("postgres") && message.contains("kafka"),
        "{message}"
    );
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn readiness_fails_when_the_topic_does_not_exist() {
    let env = TestEnv::new().await;
    let mut config = env.waiting_room_config();
    config.common.tickets_topic = format!("{}.missing", env.common.tickets_topic);
    let service = env.start_waiting_room(config).await;
    let response = reqwest::get(service.url("/readyz"))
        .await
        .expect("GET /readyz");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_ne!(body["checks"]["kafka"], "ok", "{body}");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let env = TestEnv::new().await;
    let service = env.start_waiting_room(env.waiting_room_config()).await;
    let url = service.url("/healthz");
    assert_eq!(
        reqwest::get(&url).await.expect("GET /healthz").status(),
        200
    );
    service.stop().await.expect("clean shutdown");
    assert!(
        reqwest::get(&url).await.is_err(),
        "server still answers after shutdown"
    );
}

#[test]
fn help_documents_every_setting() {
    let mut variables = testing::COMMON_VARIABLES.to_vec();
    variables.extend([
        "WAITING_ROOM_LISTEN",
        "ADMIN_TOKEN",
        "SIGNING_KEY_FILE",
        "PREVIOUS_PUBLIC_KEY_FILES",
        "TICKET_TTL_SECONDS",
        "PARTITION_MODE",
        "MAX_BODY_BYTES",
        "JOIN_RATE_LIMIT_PER_SECOND",
        "JOIN_RATE_LIMIT_BURST",
        "TRUST_FORWARDED_FOR",
        "PRODUCE_TIMEOUT_MS",
        "PRODUCER_LINGER_MS",
        "QUEUE_RETRY_AFTER_SECONDS",
    ]);
    testing::assert_help_documents(env!("CARGO_BIN_EXE_waiting-room"), &variables);
}
