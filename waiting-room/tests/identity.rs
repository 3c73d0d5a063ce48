//! Who may join: enqueue tokens from trusted issuers (served over a real JWKS endpoint
//! or read from a key file) and the anonymous `user_id` that is never a credential,
//! against the real Kafka, Redis and PostgreSQL.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::issuer::{claims, with, IssuerKey, TestIssuers, AUDIENCE, PARTNER, SITE};
use testkit::{RunningService, TestEnv};

async fn start_trusting(issuers: &TestIssuers, env: &TestEnv) -> RunningService {
    let mut config = support::waiting_room_config(env);
    config.trusted_issuers_file = Some(issuers.file.clone());
    support::start_waiting_room(config).await
}

async fn refusal(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, body)
}

#[tokio::test]
async fn an_enqueue_token_event_admits_only_fans_the_site_vouches_for() {
    let env = TestEnv::new().await;
    let issuers = TestIssuers::start().await;
    let service = start_trusting(&issuers, &env).await;
    let client = WaitingRoomClient::new(&service, &env);
    let view = client
        .put_event("vouched", json!({"entry": {"identity": "enqueue_token"}}))
        .await;
    assert_eq!(view["entry"]["identity"], "enqueue_token");

    // No token: refused, whatever user id is typed.
    let (status, code, _) = refusal(client.join("vouched", None).await).await;
    assert_eq!((status, code.as_str()), (403, "enqueue_token_required"));
    let (status, code, _) = refusal(client.join("vouched", Some("kim")).await).await;
    assert_eq!((status, code.as_str()), (403, "enqueue_token_required"));

    // The same subject from two devices (two tokens) holds one ticket.
    let first = client
        .join_with_token(
            "vouched",
            &issuers.ed.sign(&claims(SITE, "fan-1", "vouched")),
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("ticket");
    let again = client
        .join_with_token(
            "vouched",
            &issuers.ec.sign(&claims(SITE, "fan-1", "vouched")),
        )
        .await;
    assert_eq!(
        again.status(),
        200,
        "the same fan gets the same ticket back"
    );
    let again: Value = again.json().await.expect("ticket");
    assert_eq!(again["ticket_id"], first["ticket_id"]);
    assert_eq!(again["token"], first["token"]);

    // Another subject is another place; a key-file issuer with its own event claim works.
    let other = client
        .join_with_token(
            "vouched",
            &issuers.ec.sign(&claims(SITE, "fan-2", "vouched")),
        )
        .await;
    assert_eq!(other.status(), 201);
    let partner_claims = json!({
        "iss": PARTNER, "aud": AUDIENCE, "sub": "fan-1", "show": "vouched",
        "exp": testkit::issuer::now() + 60,
    });
    let partner = client
        .join_with_token("vouched", &issuers.partner.sign(&partner_claims))
        .await;
    assert_eq!(
        partner.status(),
        201,
        "the same subject at another issuer is another fan"
    );
    let record: Value = client.get_event("vouched").await;
    assert_eq!(record["joined"], 3, "{record}");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn forged_expired_and_misdirected_enqueue_tokens_are_refused() {
    let env = TestEnv::new().await;
    let issuers = TestIssuers::start().await;
    let service = start_trusting(&issuers, &env).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("guarded", json!({"entry": {"identity": "enqueue_token"}}))
        .await;
    let now = testkit::issuer::now();
    let valid = claims(SITE, "fan", "guarded");
    let (forger, _) = IssuerKey::ed25519("site-ed"); // the site's key id, not its key
    let valid_token = issuers.ed.sign(&valid);
    let parts: Vec<&str> = valid_token.split('.').collect();
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        encode(&with(valid.clone(), "sub", json!("someone-else"))),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid,
        &EncodingKey::from_secret(b"guessable").expect("HMAC key"),
    )
    .expect("sign");
    let cases = [
        ("forged signature", forger.sign(&valid)),
        ("tampered payload", tampered),
        ("unsigned", unsigned),
        ("symmetric algorithm", hmac),
        ("not a JWT", "hello".to_owned()),
        (
            "expired",
            issuers
                .ed
                .sign(&with(valid.clone(), "exp", json!(now - 120))),
        ),
        (
            "not yet valid",
            issuers
                .ed
                .sign(&with(valid.clone(), "nbf", json!(now + 600))),
        ),
        (
            "wrong audience",
            issuers
                .ed
                .sign(&with(valid.clone(), "aud", json!("another-app"))),
        ),
        (
            "wrong event",
            issuers
                .ed
                .sign(&with(valid.clone(), "event_id", json!("elsewhere"))),
        ),
        ("no event", {
            let mut claims = valid.clone();
            claims.as_object_mut().expect("object").remove("event_id");
            issuers.ed.sign(&claims)
        }),
        (
            "unknown issuer",
            issuers
                .ed
                .sign(&with(valid.clone(), "iss", json!("https://evil.example"))),
        ),
        (
            "lives too long",
            issuers
                .ed
                .sign(&with(valid.clone(), "exp", json!(now + 86_400))),
        ),
        (
            "empty subject",
            issuers.ed.sign(&with(valid.clone(), "sub", json!(""))),
        ),
    ];
    for (name, token) in cases {
        let (status, code, body) = refusal(client.join_with_token("guarded", &token).await).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_enqueue_token"),
            "{name}: {body}"
        );
    }
    // An event that names its issuer refuses another trusted issuer's tokens.
    client
        .put_event(
            "site-only",
            json!({"entry": {"identity": "enqueue_token", "issuer": SITE}}),
        )
        .await;
    let partner_claims = json!({
        "iss": PARTNER, "aud": AUDIENCE, "sub": "fan", "show": "site-only", "exp": now + 60,
    });
    let (status, code, _) = refusal(
        client
            .join_with_token("site-only", &issuers.partner.sign(&partner_claims))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "invalid_enqueue_token"));
    // Nothing was issued by any refusal; the valid token still works.
    assert_eq!(client.get_event("guarded").await["joined"], 0);
    assert_eq!(
        client
            .join_with_token("guarded", &valid_token)
            .await
            .status(),
        201
    );
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_same_subject_on_two_instances_holds_one_ticket() {
    let env = TestEnv::new().await;
    let issuers = TestIssuers::start().await;
    let first = start_trusting(&issuers, &env).await;
    let second = start_trusting(&issuers, &env).await;
    let on_first = WaitingRoomClient::new(&first, &env);
    let on_second = WaitingRoomClient::new(&second, &env);
    on_first
        .put_event("two-doors", json!({"entry": {"identity": "enqueue_token"}}))
        .await;
    on_second.wait_for_event("two-doors").await;
    let token = issuers.ed.sign(&claims(SITE, "fan", "two-doors"));
    // Both instances race for the same fan.
    let (a, b) = tokio::join!(
        on_first.join_with_token("two-doors", &token),
        on_second.join_with_token("two-doors", &token)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "one issues, the other returns it");
    let a: Value = a.json().await.expect("ticket");
    let b: Value = b.json().await.expect("ticket");
    assert_eq!(a["ticket_id"], b["ticket_id"]);
    assert_eq!(on_first.get_event("two-doors").await["joined"], 1);
    first.stop().await.expect("clean shutdown");
    second.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_typed_user_id_never_hands_out_someone_elses_ticket() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("open-door", json!({})).await;
    let alice = client.join_ok("open-door", Some("alice")).await;
    let token = alice["token"].as_str().expect("token");

    // Someone who knows (or guesses) Alice's id learns where her place is, not her token.
    let theft = client.join("open-door", Some("alice")).await;
    assert_eq!(theft.status(), 409);
    let text = theft.text().await.expect("body");
    assert!(!text.contains(token), "the token leaked: {text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["error"]["code"], "already_in_line");
    assert_eq!(body["error"]["state"], "waiting");
    assert_eq!(body["error"]["queue_number"], alice["queue_number"]);
    assert!(body["error"]["position"].is_i64(), "{body}");
    assert!(body.get("token").is_none() && body["error"].get("token").is_none());
    // Alice herself still follows her ticket with the token she holds.
    assert_eq!(client.status(token).await.status(), 200);
    assert_eq!(client.get_event("open-door").await["joined"], 1);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_enqueue_token_event_needs_a_trusted_issuer() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let response = client
        .http
        .put(service.url("/admin/events/nobody-vouches"))
        .bearer_auth(client.admin_token)
        .json(&json!({"entry": {"identity": "enqueue_token"}}))
        .send()
        .await
        .expect("PUT");
    let (status, code, _) = refusal(response).await;
    assert_eq!((status, code.as_str()), (422, "invalid_request"));
    // Without issuers, any enqueue token is refused rather than ignored.
    client.put_event("anyone", json!({})).await;
    let (status, code, _) = refusal(client.join_with_token("anyone", "a.b.c").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_enqueue_token"));
    service.stop().await.expect("clean shutdown");
}
