//! Joining the queue and asking "where am I", against the real Kafka, Redis and
//! PostgreSQL.

mod support;

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use contract::redis_schema::RedisKeys;
use contract::ticket_record::TicketRecord;
use contract::token::{TicketClaims, TicketSigner};
use ed25519_dalek::SigningKey;
use rdkafka::Message;
use serde_json::{json, Value};
use testkit::broker::PrivateBroker;
use testkit::client::WaitingRoomClient;
use testkit::kafka::read_record;
use testkit::TestEnv;
use uuid::Uuid;

#[tokio::test]
async fn every_ticket_is_the_kafka_record_at_its_offset_in_arrival_order() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("concert", json!({"name": "Concert"}))
        .await;

    let mut previous: Option<i64> = None;
    for index in 0..5 {
        let user = format!("fan-{index}");
        let response = client.join("concert", Some(&user)).await;
        assert_eq!(response.status(), 201);
        let ticket: Value = response.json().await.expect("ticket JSON");
        assert_eq!(ticket["state"], "waiting");
        assert_eq!(ticket["event_id"], "concert");
        let token = ticket["token"].as_str().expect("token");
        assert_eq!(ticket["status_url"], format!("/v1/tickets/{token}"));
        assert_eq!(ticket["events_url"], format!("/v1/tickets/{token}/events"));
        let queue_number = ticket["queue_number"].as_i64().expect("queue number");
        assert_eq!(
            ticket["position"].as_i64(),
            Some(queue_number),
            "nothing served yet"
        );
        if let Some(previous) = previous {
            assert!(
                queue_number > previous,
                "queue numbers must increase: {previous} then {queue_number}"
            );
        }
        previous = Some(queue_number);

        let partition = ticket["partition"].as_i64().expect("partition") as i32;
        let message = read_record(
            &env.common.kafka,
            &env.common.tickets_topic,
            partition,
            queue_number,
        )
        .await
        .expect("the ticket's record is in Kafka");
        assert_eq!(message.offset(), queue_number);
        assert_eq!(message.key(), Some("concert".as_bytes()));
        let record = TicketRecord::parse(message.payload()).expect("a valid ticket record");
        assert_eq!(
            record.ticket_id.to_string(),
            ticket["ticket_id"].as_str().expect("ticket id")
        );
        assert_eq!(record.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(
            record.ticket_id.get_version_num(),
            7,
            "ticket ids are UUIDv7"
        );
    }
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn racing_duplicate_joins_of_one_user_yield_exactly_one_ticket() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("race", json!({})).await;

    let joins = (0..10).map(|_| client.join("race", Some("the-same-fan")));
    let responses = futures::future::join_all(joins).await;
    let mut created = 0;
    let mut queue_numbers = HashSet::new();
    for response in responses {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON");
        match status {
            201 => {
                created += 1;
                queue_numbers.insert(body["queue_number"].as_i64().expect("queue number"));
            }
            // A typed id is no credential: the others learn the place, not the token.
            409 => {
                assert_eq!(body["error"]["code"], "already_in_line", "{body}");
                assert!(body["error"].get("token").is_none(), "{body}");
                queue_numbers.insert(
                    body["error"]["queue_number"]
                        .as_i64()
                        .expect("queue number"),
                );
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(created, 1, "exactly one request issues the ticket");
    assert_eq!(
        queue_numbers.len(),
        1,
        "every response names the same place"
    );
    // Exactly one record was written: the next ticket takes the very next offset.
    let queue_number = *queue_numbers.iter().next().expect("one queue number");
    let next = client.join_ok("race", None).await;
    assert_eq!(next["queue_number"].as_i64(), Some(queue_number + 1));
    // Without a user id every join is a new place.
    let another = client.join_ok("race", None).await;
    assert_ne!(another["ticket_id"], next["ticket_id"]);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_and_closed_events_are_refused() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);

    let response = client.join("no-such-event", None).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "event_not_found");

    client
        .put_event("closing", json!({"state": "closed"}))
        .await;
    let response = client.join("closing", Some("late-fan")).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "event_closed");

    // Paused events still accept joins.
    client
        .put_event("closing", json!({"state": "paused"}))
        .await;
    assert_eq!(client.join("closing", None).await.status(), 201);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_bodies_get_json_errors_and_issue_nothing() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.max_body_bytes = 1024;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("bodies", json!({})).await;
    let url = service.url("/v1/events/bodies/tickets");
    let http = reqwest::Client::new();

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.post(&url)
                .header("content-type", "application/json")
                .body("{\"user_id\": "),
            400,
            "malformed_json",
        ),
        (
            http.post(&url).json(&json!({"user_id": 42})),
            422,
            "invalid_request",
        ),
        (
            http.post(&url).json(&json!({"user_id": ""})),
            422,
            "invalid_request",
        ),
        (
            http.post(&url).json(&json!({"user_id": "x".repeat(2000)})),
            413,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.expect("POST");
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("JSON error body");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // None of the refusals took a place: the first real ticket is queue number 0.
    let ticket = client.join_ok("bodies", None).await;
    assert_eq!(ticket["queue_number"], 0);
    service.stop().await.expect("clean shutdown");
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

#[tokio::test]
async fn forged_tampered_unsigned_and_expired_tokens_are_refused() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("tokens", json!({})).await;
    let ticket = client.join_ok("tokens", None).await;
    let token = ticket["token"].as_str().expect("token");
    assert_eq!(client.status(token).await.status(), 200);

    let now = Utc::now().timestamp();
    let claims = TicketClaims {
        ticket_id: Uuid::now_v7(),
        event_id: "tokens".into(),
        partition: 0,
        queue_number: 0,
        iat: now - 100,
        exp: now + 100,
        subject: None,
    };
    let foreign = TicketSigner::new(SigningKey::generate(&mut rand::rngs::OsRng)).sign(&claims);
    let expired = TicketSigner::new(env.signing_key.clone()).sign(&TicketClaims {
        exp: now - 1,
        ..claims.clone()
    });
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload"))
            .expect("claims");
    payload["queue_number"] = json!(0);
    let tampered = format!("{}.{}.{}", parts[0], encode(&payload), parts[2]);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header")).expect("header");
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})),
        parts[1]
    );
    let hmac = format!(
        "{}.{}.{}",
        encode(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]})),
        parts[1],
        parts[2]
    );

    for (name, bad) in [
        ("foreign key", foreign.as_str()),
        ("expired", expired.as_str()),
        ("tampered", tampered.as_str()),
        ("alg none", unsigned.as_str()),
        ("hmac confusion", hmac.as_str()),
        ("garbage", "not-a-token"),
    ] {
        let response = client.status(bad).await;
        assert_eq!(response.status(), 401, "{name}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_token", "{name}: {body}");
        let me = client
            .http
            .get(service.url("/v1/tickets/me"))
            .bearer_auth(bad)
            .send()
            .await
            .expect("GET me");
        assert_eq!(me.status(), 401, "{name} via /me");
    }
    let missing = client
        .http
        .get(service.url("/v1/tickets/me"))
        .send()
        .await
        .expect("GET me");
    assert_eq!(missing.status(), 401);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn status_follows_the_serving_counter_and_the_jwks_verifies_tokens() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event(
            "status",
            json!({"activation": {"batch_size": 2, "interval_ms": 1000}}),
        )
        .await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(
            client.join_ok("status", None).await["token"]
                .as_str()
                .expect("token")
                .to_owned(),
        );
    }
    let last: Value = client
        .status(&tokens[3])
        .await
        .json()
        .await
        .expect("status");
    assert_eq!(last["state"], "waiting");
    assert_eq!(last["position"], 3);
    assert_eq!(last["serving_number"], 0);
    // 4 tickets (3 ahead + this one) at 2 per second.
    assert_eq!(last["estimated_wait_seconds"], 2);

    // The activator's counter moves: the position follows without any per-ticket state.
    let keys = RedisKeys::new(env.common.redis_key_prefix.clone());
    let partition = last["partition"].as_i64().expect("partition") as i32;
    let _: () = redis::cmd("SET")
        .arg(keys.serving(partition))
        .arg(2)
        .query_async(&mut env.redis.clone())
        .await
        .expect("SET");
    let last: Value = client
        .status(&tokens[3])
        .await
        .json()
        .await
        .expect("status");
    assert_eq!(last["position"], 1);
    assert_eq!(last["serving_number"], 2);
    let me: Value = client
        .http
        .get(service.url("/v1/tickets/me"))
        .bearer_auth(&tokens[3])
        .send()
        .await
        .expect("GET me")
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["ticket_id"], last["ticket_id"]);
    assert_eq!(me["position"], 1);

    let jwks: Value = reqwest::get(service.url("/.well-known/jwks.json"))
        .await
        .expect("GET jwks")
        .json()
        .await
        .expect("JSON");
    let verifier =
        contract::token::TicketVerifier::from_jwks(&jwks).expect("JWKS with an Ed25519 key");
    let claims = verifier
        .verify(&tokens[0], Utc::now().timestamp())
        .expect("the JWKS verifies issued tokens");
    assert_eq!(claims.event_id, "status");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn broker_outage_gives_503_with_retry_after_and_recovers_without_restart() {
    let env = TestEnv::new().await;
    let mut broker = PrivateBroker::start().await;
    let topics = [(env.common.tickets_topic.as_str(), 4)];
    contract::kafka::ensure_topics(&broker.connection(), &topics)
        .await
        .expect("create topic");
    let mut config = support::waiting_room_config(&env);
    config.common.kafka = broker.connection();
    config.produce_timeout_ms = 1000;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("outage", json!({})).await;
    assert_eq!(client.join("outage", Some("before")).await.status(), 201);

    broker.stop().await;
    let response = client.join("outage", Some("during")).await;
    assert_eq!(response.status(), 503);
    assert!(
        response.headers().contains_key("retry-after"),
        "503 must carry Retry-After"
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "queue_unavailable");
    assert!(body.get("token").is_none(), "no ticket is handed out");

    broker.restart().await;
    contract::kafka::ensure_topics(&broker.connection(), &topics)
        .await
        .expect("recreate topic");
    let mut recovered = None;
    for _ in 0..60 {
        let response = client.join("outage", Some("during")).await;
        if response.status() == 201 {
            recovered = Some(response.json::<Value>().await.expect("JSON"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let ticket = recovered.expect("joins work again once the broker is back, without a restart");
    let partition = ticket["partition"].as_i64().expect("partition") as i32;
    let offset = ticket["queue_number"].as_i64().expect("offset");
    let record = read_record(
        &broker.connection(),
        &env.common.tickets_topic,
        partition,
        offset,
    )
    .await;
    assert!(record.is_some(), "the recovered ticket is in Kafka");
    service.stop().await.expect("clean shutdown");
}
