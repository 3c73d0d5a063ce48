//! The reservation's operational surface against the real PostgreSQL, Redis and Kafka.

mod support;

use std::path::PathBuf;

use reservation::ReservationConfig;
use support::{reservation_config, start_reservation};
use testkit::{checks, RunningService, TestEnv};

/// The service verifying tickets with the environment's public key from a file (no
/// waiting-room to fetch a JWKS from), after `configure`; remove the file when done.
async fn start_with_key_file(
    env: &TestEnv,
    configure: impl FnOnce(&mut ReservationConfig),
) -> (RunningService, PathBuf) {
    let key_file = std::env::temp_dir().join(format!(
        "{}.pub.pem",
        env.common.redis_key_prefix.replace(':', "-")
    ));
    std::fs::write(&key_file, env.public_key_pem()).unwrap();
    let mut config = reservation_config(env, String::new());
    config.ticket_public_key_files = vec![key_file.clone()];
    configure(&mut config);
    (start_reservation(config).await, key_file)
}

#[tokio::test]
async fn health_readiness_metrics_and_json_fallback() {
    let env = TestEnv::new().await;
    let (service, key_file) = start_with_key_file(&env, |_| {}).await;
    checks::assert_operational_endpoints(&service, &["postgres", "redis", "kafka"]).await;
    service.stop().await.expect("clean shutdown");
    let _ = std::fs::remove_file(key_file);
}

/// The public API (seat maps, reservations) is open to the allowed origins' front ends;
/// the seat page is not.
#[tokio::test]
async fn the_public_api_is_open_to_the_allowed_origins_only() {
    let env = TestEnv::new().await;
    let (service, key_file) = start_with_key_file(&env, |config| {
        config.common.cors_allowed_origins = vec![checks::ALLOWED_ORIGIN.parse().expect("origin")];
    })
    .await;
    checks::assert_cors(
        &service,
        "DELETE",
        "/v1/reservations/00000000-0000-0000-0000-000000000000",
        "/v1/events/concert/seats",
        "/events/concert/seats",
    )
    .await;
    service.stop().await.expect("clean shutdown");
    let _ = std::fs::remove_file(key_file);
}

#[tokio::test]
async fn the_seat_page_is_protected_and_bodies_are_bounded() {
    let env = TestEnv::new().await;
    let (service, key_file) = start_with_key_file(&env, |_| {}).await;
    let page = reqwest::get(service.url("/events/concert/seats"))
        .await
        .expect("GET seat page");
    assert_eq!(page.status(), 200);
    checks::assert_page_headers(&page);

    // Four times MAX_BODY_BYTES (16 KiB): refused before it is parsed. (Much larger
    // bodies are refused the same way, but the client may then see the connection
    // close while it is still writing instead of the 413.)
    let oversized = format!(r#"{{"seat_ids": ["{}"]}}"#, "A".repeat(64 * 1024));
    let response = reqwest::Client::new()
        .post(service.url("/v1/events/concert/reservations"))
        .bearer_auth("not-even-a-token")
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "payload_too_large");
    service.stop().await.expect("clean shutdown");
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn help_documents_every_setting() {
    checks::assert_help_documents::<ReservationConfig>(env!("CARGO_BIN_EXE_reservation"));
}
