//! The waiting-room's operational surface against the real PostgreSQL, Redis and Kafka.

mod support;

use testkit::checks;
use testkit::TestEnv;
use waiting_room::WaitingRoomConfig;

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    checks::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn readiness_names_each_unreachable_dependency() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    // Nothing listens on port 1: both checks must fail and be named.
    config.common.kafka_brokers = "127.0.0.1:1".into();
    config.common.database_url = "postgres://postgres@127.0.0.1:1/nothing".into();
    let service = support::start_waiting_room(config).await;
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
    let mut config = support::waiting_room_config(&env);
    config.common.tickets_topic = format!("{}.missing", env.common.tickets_topic);
    let service = support::start_waiting_room(config).await;
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
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
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
    checks::assert_help_documents::<WaitingRoomConfig>(env!("CARGO_BIN_EXE_waiting-room"));
}
