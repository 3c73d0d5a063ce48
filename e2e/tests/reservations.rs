//! The reservation service against a real waiting-room, activator, PostgreSQL, Redis and
//! Kafka: no seat held twice under a crowd, the refusals by ticket state, one
//! reservation per ticket, release and expiry, confirm spending the ticket and freeing
//! its slot, the outbox reaching Kafka in order (also across a killed relay), and the
//! status stream.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::sse::EventStream;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use support::{within, Stack};

const PATIENCE: Duration = Duration::from_secs(30);

fn event(state: &str, rows: u32, seats_per_row: u32, max_active: Option<u32>, ttl: u32) -> Value {
    json!({
        "name": "Reservation test",
        "state": state,
        "activation": {"batch_size": 1000, "interval_ms": 100, "max_active": max_active,
                       "active_ttl_seconds": ttl, "grace_seconds": 600},
        "seats": {"rows": rows, "seats_per_row": seats_per_row},
    })
}

async fn status_of(stack: &Stack, token: &str) -> Value {
    stack.client().status(token).await.json().await.unwrap()
}

/// Waits until the ticket's state is `wanted`.
async fn wait_for_state(stack: &Stack, token: &str, wanted: &str) -> Value {
    let started = Instant::now();
    loop {
        let status = status_of(stack, token).await;
        if status["state"] == wanted {
            return status;
        }
        assert!(started.elapsed() < PATIENCE, "never {wanted}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Joins `count` tickets of a passthrough event, has each fan read its status (only
/// received tickets are activated) and waits until all are active.
async fn active_tickets(stack: &Stack, event_id: &str, count: usize) -> Vec<String> {
    let client = stack.client();
    let joins = (0..count).map(|_| client.join_ok(event_id, None));
    let tickets: Vec<Value> = futures::future::join_all(joins).await;
    let tokens: Vec<String> = tickets
        .iter()
        .map(|ticket| ticket["token"].as_str().unwrap().to_owned())
        .collect();
    futures::future::join_all(tokens.iter().map(|token| status_of(stack, token))).await;
    for token in &tokens {
        wait_for_state(stack, token, "active").await;
    }
    tokens
}

async fn reserve(stack: &Stack, event_id: &str, token: &str, seats: &[&str]) -> reqwest::Response {
    reqwest::Client::new()
        .post(
            stack
                .reservation
                .url(&format!("/v1/events/{event_id}/reservations")),
        )
        .bearer_auth(token)
        .json(&json!({ "seat_ids": seats }))
        .send()
        .await
        .unwrap()
}

async fn seat_states(stack: &Stack, event_id: &str) -> HashMap<String, String> {
    let map: Value = reqwest::get(
        stack
            .reservation
            .url(&format!("/v1/events/{event_id}/seats")),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|seat| {
            (
                seat["seat_id"].as_str().unwrap().to_owned(),
                seat["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn transition(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, stack.reservation.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

// Every service and the thousand clients share this process: give it both cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_fans_racing_for_a_hundred_seats_never_share_one() {
    let stack = Stack::start().await;
    stack
        .client()
        .put_event("crowd", event("passthrough", 10, 10, None, 600))
        .await;
    let tokens = active_tickets(&stack, "crowd", 1000).await;
    let all_seats: Vec<String> = seat_states(&stack, "crowd").await.into_keys().collect();
    assert_eq!(all_seats.len(), 100);

    let attempts = tokens.iter().map(|token| {
        let mut rng = rand::thread_rng();
        let count = rng.gen_range(1..=4);
        let wanted: Vec<String> = all_seats
            .choose_multiple(&mut rng, count)
            .cloned()
            .collect();
        let stack = &stack;
        async move {
            let seats: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let response = reserve(stack, "crowd", token, &seats).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    let results = futures::future::join_all(attempts).await;

    let mut holders: HashMap<String, String> = HashMap::new();
    for (status, body) in &results {
        match status {
            201 => {
                for seat in body["seat_ids"].as_array().unwrap() {
                    let previous = holders.insert(
                        seat.as_str().unwrap().to_owned(),
                        body["reservation_id"].as_str().unwrap().to_owned(),
                    );
                    assert!(previous.is_none(), "{seat} held twice");
                }
            }
            409 => assert_eq!(body["error"]["code"], "seats_unavailable", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!holders.is_empty(), "somebody got seats");
    // The database agrees: exactly the seats answered 201 are held, each by its reservation.
    let rows: Vec<(String, String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT seat_id, state, reservation_id FROM seats WHERE event_id = 'crowd'")
            .fetch_all(&stack.env.postgres)
            .await
            .unwrap();
    for (seat_id, state, reservation_id) in rows {
        match holders.get(&seat_id) {
            Some(holder) => {
                assert_eq!(state, "held");
                assert_eq!(reservation_id.unwrap().to_string(), *holder);
            }
            None => assert_eq!(state, "available", "{seat_id} held without a 201"),
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn tickets_that_may_not_reserve_are_refused_with_their_reason() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("refusals", event("passthrough", 2, 5, None, 2))
        .await;
    client
        .put_event("elsewhere", event("passthrough", 1, 5, None, 600))
        .await;
    client
        .put_event("line", event("paused", 1, 5, None, 600))
        .await;

    let waiting = client.join_ok("line", None).await;
    let response = reserve(&stack, "line", waiting["token"].as_str().unwrap(), &["A-1"]).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ticket_not_active");
    assert_eq!(body["error"]["state"], "waiting");

    // Abandoned: nobody asked about this ticket for longer than the 1 s grace when the
    // line reached it.
    let mut gone_event = event("paused", 1, 5, None, 600);
    gone_event["activation"]["grace_seconds"] = json!(1);
    client.put_event("gone", gone_event.clone()).await;
    let gone = client.join_ok("gone", None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    gone_event["state"] = json!("open");
    client.put_event("gone", gone_event).await;
    // Watch the line through the admin statistics: a status read would count as seen.
    let started = Instant::now();
    while client.get_event("gone").await["serving_number"].as_i64() < Some(1) {
        assert!(
            started.elapsed() < PATIENCE,
            "the line never reached the ticket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = gone["token"].as_str().unwrap();
    let body: Value = reserve(&stack, "gone", token, &["A-1"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["state"], "abandoned", "{body}");

    // Expired: a 2 s active window.
    let expiring = client.join_ok("refusals", None).await;
    let token = expiring["token"].as_str().unwrap();
    wait_for_state(&stack, token, "active").await;
    wait_for_state(&stack, token, "expired").await;
    let body: Value = reserve(&stack, "refusals", token, &["A-1"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["state"], "expired", "{body}");

    // Used: confirmed once, then tries again.
    let other = active_tickets(&stack, "elsewhere", 1).await.remove(0);
    let held: Value = reserve(&stack, "elsewhere", &other, &["A-1"])
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/reservations/{}/confirm",
        held["reservation_id"].as_str().unwrap()
    );
    assert_eq!(
        transition(&stack, reqwest::Method::POST, &path, &other)
            .await
            .status(),
        200
    );
    let response = reserve(&stack, "elsewhere", &other, &["A-2"]).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["state"], "used", "{body}");

    // Another event's ticket, forged, alg none, garbage: 401 invalid_token.
    let fresh = active_tickets(&stack, "elsewhere", 1).await.remove(0);
    let foreign_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = contract::token::TicketSigner::new(foreign_key).sign(&claims_in(&fresh));
    let header = base64url(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = fresh.split('.').nth(1).unwrap();
    let unsigned = format!("{header}.{payload}.");
    for (token, what) in [
        (fresh.as_str(), "a ticket for another event"),
        (forged.as_str(), "a token signed with another key"),
        (unsigned.as_str(), "alg none"),
        ("garbage", "garbage"),
    ] {
        let response = reserve(&stack, "refusals", token, &["A-3"]).await;
        assert_eq!(response.status(), 401, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
    }
    let response = reqwest::Client::new()
        .post(stack.reservation.url("/v1/events/refusals/reservations"))
        .json(&json!({"seat_ids": ["A-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token at all");

    // Bad bodies: 422 naming the field.
    let token = active_tickets(&stack, "elsewhere", 1).await.remove(0);
    for seats in [
        vec![],
        vec!["A-1"; 2],
        vec!["A-1", "A-2", "A-3", "A-4", "A-5"],
        vec!["Q-99"],
    ] {
        let response = reserve(&stack, "elsewhere", &token, &seats).await;
        assert_eq!(response.status(), 422, "{seats:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("seat_ids"));
    }
    stack.stop().await;
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The claims inside a genuine token, to re-sign them with a foreign key.
fn claims_in(token: &str) -> contract::token::TicketClaims {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn racing_repeats_of_one_ticket_make_exactly_one_reservation() {
    let stack = Stack::start().await;
    stack
        .client()
        .put_event("repeat", event("passthrough", 3, 10, None, 600))
        .await;
    let token = active_tickets(&stack, "repeat", 1).await.remove(0);
    let seats = [
        "A-1", "A-2", "B-1", "B-2", "C-1", "C-2", "A-3", "B-3", "C-3", "A-4",
    ];
    let attempts = seats.iter().map(|seat| {
        let (stack, token) = (&stack, &token);
        async move {
            let response = reserve(stack, "repeat", token, &[seat]).await;
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    });
    let results = futures::future::join_all(attempts).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    let winner = created[0]["reservation_id"].clone();
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409);
        assert_eq!(body["error"]["code"], "reservation_exists");
        assert_eq!(
            body["reservation_id"], winner,
            "the existing reservation is returned"
        );
    }
    let held = seat_states(&stack, "repeat")
        .await
        .values()
        .filter(|s| *s == "held")
        .count();
    assert_eq!(held, 1, "only the winner's seat is held");
    stack.stop().await;
}

#[tokio::test]
async fn released_and_expired_holds_give_their_seats_back() {
    let stack = Stack::start_configured(
        |_| {},
        |config| {
            config.hold_seconds = 2;
            config.hold_sweep_interval_ms = 200;
        },
    )
    .await;
    stack
        .client()
        .put_event("holds", event("passthrough", 1, 4, None, 600))
        .await;
    let tokens = active_tickets(&stack, "holds", 2).await;

    let held: Value = reserve(&stack, "holds", &tokens[0], &["A-1", "A-2"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(held["status"], "held");
    let id = held["reservation_id"].as_str().unwrap();
    let states = seat_states(&stack, "holds").await;
    assert_eq!(
        (states["A-1"].as_str(), states["A-2"].as_str()),
        ("held", "held")
    );
    // Only the holder may release.
    let path = format!("/v1/reservations/{id}");
    assert_eq!(
        transition(&stack, reqwest::Method::DELETE, &path, &tokens[1])
            .await
            .status(),
        403
    );
    let released: Value = transition(&stack, reqwest::Method::DELETE, &path, &tokens[0])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(released["status"], "released");
    let states = seat_states(&stack, "holds").await;
    assert_eq!(
        (states["A-1"].as_str(), states["A-2"].as_str()),
        ("available", "available")
    );

    // A fresh hold by the other fan, left to expire.
    let held: Value = reserve(&stack, "holds", &tokens[1], &["A-1"])
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/reservations/{}",
        held["reservation_id"].as_str().unwrap()
    );
    let started = Instant::now();
    loop {
        let current: Value = reqwest::get(stack.reservation.url(&path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current["status"] == "expired" {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the hold never expired: {current}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seat_states(&stack, "holds").await["A-1"], "available");
    let late = transition(
        &stack,
        reqwest::Method::POST,
        &format!("{path}/confirm"),
        &tokens[1],
    )
    .await;
    assert_eq!(late.status(), 409);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reservation_not_held");
    assert_eq!(body["error"]["status"], "expired");
    stack.stop().await;
}

#[tokio::test]
async fn confirming_sells_the_seats_spends_the_ticket_and_frees_its_slot() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("confirm", event("open", 1, 4, Some(1), 600))
        .await;
    let first = client.join_ok("confirm", None).await;
    let second = client.join_ok("confirm", None).await;
    let first = first["token"].as_str().unwrap();
    let second = second["token"].as_str().unwrap();
    wait_for_state(&stack, first, "active").await;
    // max_active 1: the second fan waits while the first holds the only slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&stack, second).await["state"], "waiting");

    let held: Value = reserve(&stack, "confirm", first, &["A-1", "A-2"])
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/reservations/{}/confirm",
        held["reservation_id"].as_str().unwrap()
    );
    let confirmed: Value = transition(&stack, reqwest::Method::POST, &path, first)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["status"], "confirmed");
    let states = seat_states(&stack, "confirm").await;
    assert_eq!(
        (states["A-1"].as_str(), states["A-2"].as_str()),
        ("sold", "sold")
    );
    assert_eq!(status_of(&stack, first).await["state"], "used");
    wait_for_state(&stack, second, "active").await;
    stack.stop().await;
}

/// The reservations topic's records, checking each is keyed by its event id.
async fn read_outbox_topic(stack: &Stack, expected: usize) -> Vec<Value> {
    let records = testkit::kafka::read_topic(
        &stack.env.common,
        &stack.env.common.reservations_topic,
        |records| records.len() >= expected,
    )
    .await;
    records
        .into_iter()
        .map(|(key, payload)| {
            assert_eq!(
                Some(payload["event_id"].as_str().unwrap()),
                key.as_deref(),
                "keyed by event id"
            );
            payload
        })
        .collect()
}

#[tokio::test]
async fn every_status_change_reaches_kafka_in_order_per_reservation() {
    let stack = Stack::start().await;
    stack
        .client()
        .put_event("outbox", event("passthrough", 2, 10, None, 600))
        .await;
    let tokens = active_tickets(&stack, "outbox", 6).await;
    let mut expected: HashMap<String, Vec<&str>> = HashMap::new();
    for (index, token) in tokens.iter().enumerate() {
        let seat = format!("A-{}", index + 1);
        let held: Value = reserve(&stack, "outbox", token, &[&seat])
            .await
            .json()
            .await
            .unwrap();
        let id = held["reservation_id"].as_str().unwrap().to_owned();
        let (method, path, last) = if index % 2 == 0 {
            (
                reqwest::Method::POST,
                format!("/v1/reservations/{id}/confirm"),
                "confirmed",
            )
        } else {
            (
                reqwest::Method::DELETE,
                format!("/v1/reservations/{id}"),
                "released",
            )
        };
        assert!(transition(&stack, method, &path, token)
            .await
            .status()
            .is_success());
        expected.insert(id, vec!["held", last]);
    }
    let messages = read_outbox_topic(&stack, 12).await;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for message in &messages {
        seen.entry(message["reservation_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(message["status"].as_str().unwrap().to_owned());
    }
    for (id, statuses) in expected {
        assert_eq!(seen[&id], statuses, "reservation {id}");
    }
    let ids: HashSet<&str> = messages
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 12, "one message id per change");
    stack.stop().await;
}

#[tokio::test]
async fn the_status_stream_follows_a_reservation_to_its_end() {
    let stack = Stack::start().await;
    stack
        .client()
        .put_event("stream", event("passthrough", 1, 4, None, 600))
        .await;
    let token = active_tickets(&stack, "stream", 1).await.remove(0);
    let held: Value = reserve(&stack, "stream", &token, &["A-1"])
        .await
        .json()
        .await
        .unwrap();
    let id = held["reservation_id"].as_str().unwrap();
    let response = reqwest::get(
        stack
            .reservation
            .url(&format!("/v1/reservations/{id}/events")),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = e2e::sse::EventStream::new(response);
    let first = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(
        (first.event.as_str(), first.json()["status"].as_str()),
        ("status", Some("held"))
    );

    let path = format!("/v1/reservations/{id}/confirm");
    assert_eq!(
        transition(&stack, reqwest::Method::POST, &path, &token)
            .await
            .status(),
        200
    );
    let next = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(next.json()["status"], "confirmed");
    assert_eq!(
        within(PATIENCE, stream.next_frame()).await,
        None,
        "the stream ends at a final status"
    );

    let missing = reqwest::get(
        stack
            .reservation
            .url(&format!("/v1/reservations/{}/events", uuid::Uuid::now_v7())),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    stack.stop().await;
}

#[tokio::test]
async fn the_seat_layout_cannot_change_under_a_hold() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("layout", event("passthrough", 2, 3, None, 600))
        .await;
    let token = active_tickets(&stack, "layout", 1).await.remove(0);
    let held: Value = reserve(&stack, "layout", &token, &["B-3"])
        .await
        .json()
        .await
        .unwrap();

    let changed = client
        .http
        .put(stack.waiting_room.url("/admin/events/layout"))
        .bearer_auth(client.admin_token)
        .json(&json!({"seats": {"rows": 5, "seats_per_row": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 409);
    // The same layout again changes nothing and is fine.
    client
        .put_event("layout", json!({"seats": {"rows": 2, "seats_per_row": 3}}))
        .await;
    assert_eq!(seat_states(&stack, "layout").await["B-3"], "held");

    // A viewer sent only what changes: the seat a release frees, then, for a new
    // layout, the whole map.
    let mut viewer = seat_events(&stack, "layout").await;
    let map = within(PATIENCE, viewer.next_event()).await.unwrap();
    assert_eq!(map.event, "seats");
    assert_eq!(map.json()["seats"].as_array().unwrap().len(), 6);
    let path = format!(
        "/v1/reservations/{}",
        held["reservation_id"].as_str().unwrap()
    );
    assert!(transition(&stack, reqwest::Method::DELETE, &path, &token)
        .await
        .status()
        .is_success());
    let freed = within(PATIENCE, viewer.next_event()).await.unwrap();
    assert_eq!(freed.event, "seat_changes", "{}", freed.data);
    assert_eq!(
        freed.json()["seats"],
        json!([{"seat_id": "B-3", "row_index": 1, "seat_number": 3, "state": "available"}])
    );
    client
        .put_event("layout", json!({"seats": {"rows": 27, "seats_per_row": 2}}))
        .await;
    let seats = seat_states(&stack, "layout").await;
    assert_eq!(
        seats.len(),
        54,
        "GET /seats from the viewer's copy is fresh"
    );
    assert!(seats.contains_key("AA-2"), "rows after Z are AA, AB, …");
    let relaid = within(PATIENCE, viewer.next_event()).await.unwrap();
    assert_eq!(relaid.event, "seats", "a new layout is sent whole");
    assert_eq!(relaid.json()["seats"].as_array().unwrap().len(), 54);
    stack.stop().await;
}

async fn seat_events(stack: &Stack, event_id: &str) -> EventStream {
    let url = stack
        .reservation
        .url(&format!("/v1/events/{event_id}/seats/events?diffs=true"));
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    EventStream::new(response)
}

/// A deleted event had no seat whose change would say so: its live map learns it from
/// the event's own trigger and answers 404, like a direct read. (And a malformed
/// `diffs` is refused.)
#[tokio::test]
async fn a_watched_event_that_is_deleted_is_no_longer_found() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("bare", json!({"name": "No seats", "state": "paused"}))
        .await;
    let mut viewer = seat_events(&stack, "bare").await;
    let map = within(PATIENCE, viewer.next_event()).await.unwrap();
    assert_eq!(map.json()["seats"], json!([]));
    let malformed = reqwest::get(
        stack
            .reservation
            .url("/v1/events/bare/seats/events?diffs=maybe"),
    )
    .await
    .unwrap();
    assert_eq!(malformed.status(), 422);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    client.put_event("bare", json!({"state": "closed"})).await;
    // A closed event is deleted once its queue has settled (409 `event_closing` until).
    let started = Instant::now();
    loop {
        let deleted = client
            .http
            .delete(stack.waiting_room.url("/admin/events/bare"))
            .bearer_auth(client.admin_token)
            .send()
            .await
            .unwrap()
            .status();
        if deleted.is_success() {
            break;
        }
        assert_eq!(deleted, 409);
        assert!(started.elapsed() < PATIENCE, "never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = stack.reservation.url("/v1/events/bare/seats");
    let started = Instant::now();
    loop {
        let status = reqwest::get(&url).await.unwrap().status().as_u16();
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(started.elapsed() < PATIENCE, "still found after deletion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reqwest::get(stack.reservation.url("/v1/events/bare/seats/events"))
            .await
            .unwrap()
            .status(),
        404
    );
    drop(viewer);
    stack.stop().await;
}

/// Every counter `GET /admin/events/{id}` shows is written by the service that does the
/// thing: `joined` by the entry API, `activated` and `abandoned` by the activator,
/// `reserved` by the reservation service (one per hold).
#[tokio::test]
async fn every_admin_counter_moves_with_what_it_counts() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut body = event("paused", 1, 4, None, 600);
    body["activation"]["grace_seconds"] = json!(1);
    client.put_event("counted", body.clone()).await;
    let before = client.get_event("counted").await;
    for counter in ["joined", "activated", "abandoned", "reserved"] {
        assert_eq!(before[counter], 0, "{counter} in {before}");
    }

    let gone = client.join_ok("counted", None).await;
    let present = client.join_ok("counted", None).await;
    let present = present["token"].as_str().unwrap().to_owned();
    assert_eq!(client.get_event("counted").await["joined"], 2);
    // Past the 1 s grace while only the present fan polls; the gone fan never does.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(status_of(&stack, &present).await["state"], "waiting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    body["state"] = json!("open");
    client.put_event("counted", body).await;
    wait_for_state(&stack, &present, "active").await;
    let reached = client.get_event("counted").await;
    assert_eq!(reached["activated"], 1, "{reached}");
    assert_eq!(reached["abandoned"], 1, "{reached}");
    assert_eq!(reached["reserved"], 0, "{reached}");
    assert!(gone["queue_number"].as_i64() < reached["serving_number"].as_i64());

    assert_eq!(
        reserve(&stack, "counted", &present, &["A-1"])
            .await
            .status(),
        201
    );
    // A refused hold (the ticket already holds one) is not counted.
    assert_eq!(
        reserve(&stack, "counted", &present, &["A-1"])
            .await
            .status(),
        409
    );
    let after = client.get_event("counted").await;
    assert_eq!(after["reserved"], 1, "{after}");
    assert_eq!(after["joined"], 2, "{after}");
    stack.stop().await;
}
