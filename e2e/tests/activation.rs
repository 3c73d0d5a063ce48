//! The entry API and the activator together: abandoned tickets are skipped without a
//! capacity slot while status tells every state, joins nobody received take no slot
//! from a real fan, and a closed event drains its line.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use contract::ticket_state::{MarkUsed, TicketState, TicketStore};
use contract::token::{TicketClaims, TicketVerifier};
use serde_json::{json, Value};
use support::{activator, entry_api, Stack};
use testkit::client::WaitingRoomClient;
use testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn abandoned_tickets_are_skipped_without_a_slot_and_status_tells_every_state() {
    let env = TestEnv::new().await;
    let waiting_room = entry_api::start_waiting_room(entry_api::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&waiting_room, &env);
    let event = client
        .put_event(
            "gig",
            json!({"state": "paused", "activation": {"batch_size": 10, "interval_ms": 200, "max_active": 1, "active_ttl_seconds": 2, "grace_seconds": 2}}),
        )
        .await;
    let partition = event["partition"].as_i64().expect("partition");
    let gone = client.join_ok("gig", Some("gone-fan")).await;
    let present = client.join_ok("gig", Some("present-fan")).await;
    let later = client.join_ok("gig", Some("later-fan")).await;
    let token = |ticket: &Value| ticket["token"].as_str().expect("token").to_owned();
    let activator = activator::start_activator(&env).await;

    // The present fans keep polling for longer than the grace period; the gone fan does not.
    for _ in 0..15 {
        for ticket in [&present, &later] {
            assert_eq!(client.status(&token(ticket)).await.status(), 200);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.put_event("gig", json!({"state": "open"})).await;
    let partition = i32::try_from(partition).expect("partition");
    activator::wait_for_serving(
        &env,
        partition,
        present["queue_number"].as_i64().expect("n") + 1,
        WAIT,
    )
    .await;

    let gone_status: Value = client
        .status(&token(&gone))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(gone_status["state"], "abandoned");
    let present_status: Value = client
        .status(&token(&present))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(present_status["state"], "active", "{present_status}");
    assert!(present_status["active_until"].is_string());
    assert_eq!(present_status["position"], 0);
    // The abandoned ticket took no slot: with max_active 1 the one slot is the present fan's.
    let later_status: Value = client
        .status(&token(&later))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(later_status["state"], "waiting");
    assert_eq!(later_status["position"], 0);

    // Joining again after being abandoned gives a fresh place at the back.
    let rejoin = client.join("gig", Some("gone-fan")).await;
    assert_eq!(rejoin.status(), 201);
    let rejoined: Value = rejoin.json().await.expect("JSON");
    assert_ne!(rejoined["ticket_id"], gone["ticket_id"]);
    // This time the fan looks at the new place: it waits behind the others.
    assert_eq!(client.status(&token(&rejoined)).await.status(), 200);
    assert!(rejoined["queue_number"].as_i64() > later["queue_number"].as_i64());

    // Used, then expired, as the reservation service and the clock would make them.
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let verifier = TicketVerifier::new([env.signing_key.verifying_key()]);
    let claims = verifier
        .verify(&token(&present), Utc::now().timestamp())
        .expect("claims");
    assert_eq!(
        store
            .mark_used(&claims, Utc::now().timestamp_millis())
            .await
            .expect("mark"),
        MarkUsed::Marked
    );
    let used: Value = client
        .status(&token(&present))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(used["state"], "used");
    // The freed slot goes to the next fan, whose 2 s session then expires.
    activator::wait_for_serving(
        &env,
        partition,
        later["queue_number"].as_i64().expect("n") + 1,
        WAIT,
    )
    .await;
    let active: Value = client
        .status(&token(&later))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(active["state"], "active");
    let stats: Value = client.get_event("gig").await;
    assert_eq!(stats["abandoned"], 1, "{stats}");
    assert_eq!(stats["activated"], 2, "{stats}");
    assert_eq!(stats["active"], 1, "{stats}");
    assert!(
        stats["rate_per_second"].as_f64() > Some(0.0),
        "observed rate: {stats}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired: Value = client
        .status(&token(&later))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(expired["state"], "expired");
    activator.stop().await.expect("clean shutdown");
    waiting_room.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn joins_nobody_received_take_no_slot_and_a_real_fan_gets_in() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event(
            "attacked",
            json!({"state": "open", "activation": {"batch_size": 10, "interval_ms": 200, "max_active": 10, "active_ttl_seconds": 600, "grace_seconds": 2}}),
        )
        .await;
    // Ten joins whose clients hung up once the request was sent: the server never hears
    // from them again. (The test keeps their tokens to look at them without reading them
    // as a fan would: a status read is what counts as receiving a ticket.)
    let verifier = TicketVerifier::new([stack.env.signing_key.verifying_key()]);
    let mut hung_up = Vec::new();
    for index in 0..10 {
        let ticket = client
            .join_ok("attacked", Some(&format!("bot-{index}")))
            .await;
        let token = ticket["token"].as_str().expect("token");
        hung_up.push(
            verifier
                .verify(token, Utc::now().timestamp())
                .expect("claims"),
        );
    }
    let store = TicketStore::new(stack.env.redis.clone(), stack.env.redis_keys());

    // A real fan joins behind them and polls: it gets in although max_active is 10.
    let fan = client.join_ok("attacked", Some("real-fan")).await;
    let fan_token = fan["token"].as_str().expect("token");
    let started = Instant::now();
    loop {
        let status: Value = client.status(fan_token).await.json().await.expect("JSON");
        if status["state"] == "active" {
            break;
        }
        assert_eq!(status["state"], "waiting", "{status}");
        assert!(started.elapsed() < WAIT, "the fan never got in: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = client.get_event("attacked").await;
    assert_eq!(stats["active"], 1, "only the fan holds a slot: {stats}");
    for state in states_unread(&store, &hung_up).await {
        assert!(
            matches!(state, TicketState::Waiting | TicketState::Abandoned),
            "an unread ticket is {state:?}"
        );
    }

    // Their 2 s grace runs out unread: every one is abandoned, none ever activated.
    let started = Instant::now();
    while client.get_event("attacked").await["abandoned"] != 10 {
        assert!(
            started.elapsed() < WAIT,
            "the unread tickets were not abandoned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(states_unread(&store, &hung_up)
        .await
        .iter()
        .all(|state| *state == TicketState::Abandoned));
    let stats = client.get_event("attacked").await;
    assert_eq!(stats["activated"], 1, "{stats}");
    assert_eq!(stats["active"], 1, "{stats}");
    assert_eq!(stats["waiting"], 0, "{stats}");
    stack.stop().await;
}

/// The tickets' states, looked up without counting as their holders' reads.
async fn states_unread(store: &TicketStore, tickets: &[TicketClaims]) -> Vec<TicketState> {
    let now = Utc::now().timestamp_millis();
    let mut states = Vec::new();
    for claims in tickets {
        states.push(store.status(claims, now, None).await.expect("state").state);
    }
    states
}

#[tokio::test]
async fn a_closed_event_refuses_joins_while_its_line_keeps_draining() {
    let env = TestEnv::new().await;
    let waiting_room = entry_api::start_waiting_room(entry_api::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&waiting_room, &env);
    let event = client
        .put_event(
            "last-call",
            json!({"state": "paused", "activation": {"batch_size": 2, "interval_ms": 200}}),
        )
        .await;
    let partition =
        i32::try_from(event["partition"].as_i64().expect("partition")).expect("partition");
    let mut tokens = Vec::new();
    for index in 0..4 {
        let ticket = client
            .join_ok("last-call", Some(&format!("fan-{index}")))
            .await;
        let token = ticket["token"].as_str().expect("token").to_owned();
        // Each fan looks at its place once: received tickets are activated.
        assert_eq!(client.status(&token).await.status(), 200);
        tokens.push(token);
    }
    let activator = activator::start_activator(&env).await;
    client
        .put_event("last-call", json!({"state": "open"}))
        .await;
    client
        .put_event("last-call", json!({"state": "closed"}))
        .await;
    assert_eq!(
        client.join("last-call", Some("too-late")).await.status(),
        409
    );
    activator::wait_for_serving(&env, partition, 4, WAIT).await;
    for token in &tokens {
        let status: Value = client.status(token).await.json().await.expect("JSON");
        assert_eq!(status["state"], "active", "{status}");
    }
    activator.stop().await.expect("clean shutdown");
    waiting_room.stop().await.expect("clean shutdown");
}
