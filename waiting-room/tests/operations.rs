//! The waiting-room's operational surface against the real PostgreSQL, Redis and Kafka.

mod support;

use testkit::checks;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
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
    config.common.kafka.brokers = "127.0.0.1:1".into();
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

/// A deployment that expects one copy more than the topic has must not start on it,
/// and must say which setting and topic are at fault.
#[tokio::test]
async fn refuses_to_start_when_the_topic_has_fewer_replicas_than_configured() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    let wanted = env.common.kafka.replication_factor + 1;
    config.common.kafka.replication_factor = wanted;
    let refusal = waiting_room::build(config, CancellationToken::new())
        .await
        .err()
        .expect("the service refuses to start");
    let message = format!("{refusal:#}");
    assert!(
        message.contains(&format!("KAFKA_REPLICATION_FACTOR={wanted}"))
            && message.contains(&env.common.tickets_topic),
        "{message}"
    );

    // The set-up step says the same about the topics that exist, rather than leaving
    // every service to refuse at its start.
    let mut expecting_more = env.common.kafka.clone();
    expecting_more.replication_factor = wanted;
    expecting_more.min_insync_replicas = 1;
    let refusal = contract::kafka::ensure_topics(&expecting_more, &env.common.topics())
        .await
        .expect_err("create-topics refuses the under-replicated topics");
    assert!(
        format!("{refusal:#}").contains(&format!("KAFKA_REPLICATION_FACTOR={wanted}")),
        "{refusal:#}"
    );

    // Settings that contradict each other are refused before any connection.
    let mut config = support::waiting_room_config(&env);
    config.common.kafka.min_insync_replicas = config.common.kafka.replication_factor + 1;
    let refusal = waiting_room::build(config, CancellationToken::new())
        .await
        .err()
        .expect("the service refuses to start");
    assert!(
        format!("{refusal:#}").contains("KAFKA_MIN_INSYNC_REPLICAS"),
        "{refusal:#}"
    );
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

#[tokio::test]
async fn fan_pages_allow_only_their_own_origin_and_refuse_framing() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    for path in ["/", "/events/concert"] {
        let response = reqwest::get(service.url(path)).await.expect("GET page");
        assert_eq!(response.status(), 200, "{path}");
        checks::assert_page_headers(&response);
    }
    service.stop().await.expect("clean shutdown");
}

/// A ticketing site's own front end may call the public API from the browser when the
/// deployment allows its origin; other origins, and the admin API, stay closed.
#[tokio::test]
async fn the_public_api_is_open_to_the_allowed_origins_only() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.cors_allowed_origins = vec![checks::ALLOWED_ORIGIN.parse().expect("origin")];
    let service = support::start_waiting_room(config).await;
    checks::assert_cors(
        &service,
        "POST",
        "/v1/events/concert/tickets",
        "/v1/events",
        "/admin/events",
    )
    .await;
    service.stop().await.expect("clean shutdown");

    // Without the setting, nobody is let in.
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let response =
        checks::cors_preflight(&service, checks::ALLOWED_ORIGIN, "GET", "/v1/events").await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    service.stop().await.expect("clean shutdown");
}

/// Reads from `stream` until the server closes it (or `limit` passes: then panics).
async fn closed_by_server(
    what: &str,
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the {what} connection open");
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.header_read_timeout_seconds = 1;
    let service = support::start_waiting_room(config).await;
    let address = service.base_url.trim_start_matches("http://").to_owned();
    let limit = std::time::Duration::from_secs(30);

    // Slowloris: headers that never end.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    closed_by_server("slowloris", &mut slow, limit).await;

    // A connection that never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    closed_by_server("silent", &mut silent, limit).await;

    // A keep-alive connection idle after its request.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    closed_by_server("idle keep-alive", &mut idle, limit).await;

    // The server itself is fine.
    let health = reqwest::get(service.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_on_accept() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.max_connections = 2;
    let service = support::start_waiting_room(config).await;
    let address = service.base_url.trim_start_matches("http://").to_owned();
    let first = tokio::net::TcpStream::connect(&address).await.unwrap();
    let second = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    closed_by_server("third", &mut third, std::time::Duration::from_secs(30)).await;
    drop((first, second));
    // Freed slots serve again, and the refusal was counted.
    let refused = testkit::wait::until(
        "a freed slot serves",
        std::time::Duration::from_secs(30),
        || async { service.metric("http_connections_refused_total").await },
    )
    .await;
    assert!(refused >= 1.0, "refused {refused}");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn readiness_and_metrics_can_live_off_the_public_port() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.operations_listen = Some("127.0.0.1:0".parse().unwrap());
    let service = support::start_waiting_room(config).await;
    let operations = service
        .operations_url
        .clone()
        .expect("an operations listener");
    assert_ne!(operations, service.base_url);
    // The public port: health for load balancers, the API, nothing for operators.
    assert_eq!(
        reqwest::get(service.url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(service.url("/v1/events"))
            .await
            .unwrap()
            .status(),
        200
    );
    for hidden in ["/readyz", "/metrics"] {
        let response = reqwest::get(service.url(hidden)).await.unwrap();
        assert_eq!(response.status(), 404, "{hidden} on the public port");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "route_not_found");
    }
    // The operations port: readiness and metrics, and nothing of the API.
    let ready = reqwest::get(format!("{operations}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("{operations}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    let api = reqwest::get(format!("{operations}/v1/events"))
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    service.stop().await.expect("clean shutdown");
}
