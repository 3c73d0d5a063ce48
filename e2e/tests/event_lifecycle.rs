//! An event's end, against the real services. When no partition is free, a new event
//! takes one that closed events have drained (they keep their record, without a
//! queue). `DELETE /admin/events/{id}` refuses an event that is not closed, whose queue
//! still has live tickets, or that has reservations (the sale's record); otherwise it
//! removes the event. Either way the partition serves the next new event with the
//! default queue settings and its numbering continued. `GET /admin/events` lists what
//! exists.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Stack;

const PATIENCE: Duration = Duration::from_secs(30);

/// A closed event settles 3 s (joins in flight may still land) before it can go.
fn settling(config: &mut waiting_room::WaitingRoomConfig) {
    config.event_settle_seconds = 3;
}

/// An admin call: its status and JSON body (`null` when it has none).
async fn admin(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, stack.waiting_room.url(path))
        .bearer_auth(&stack.env.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(stack: &Stack, event_id: &str) -> (u16, Value) {
    let path = format!("/admin/events/{event_id}");
    admin(stack, reqwest::Method::DELETE, &path, None).await
}

async fn admin_get(stack: &Stack, path: &str) -> (u16, Value) {
    admin(stack, reqwest::Method::GET, path, None).await
}

async fn create(stack: &Stack, event_id: &str, body: Value) -> (u16, Value) {
    let path = format!("/admin/events/{event_id}");
    admin(stack, reqwest::Method::PUT, &path, Some(body)).await
}

/// An event whose fans are let in quickly and stay active one second.
fn one_second_sessions(state: &str, batch_size: u32) -> Value {
    json!({"state": state, "activation": {"batch_size": batch_size, "interval_ms": 100,
           "active_ttl_seconds": 1, "grace_seconds": 600}})
}

#[tokio::test]
async fn a_closed_drained_event_is_deleted_and_its_partition_serves_the_next_one() {
    let stack = Stack::start_with(settling).await;
    let client = stack.client();
    let old = client
        .put_event("old", one_second_sessions("paused", 7))
        .await;
    // The test's topic has four partitions: three more events take the rest.
    for filler in ["fill-1", "fill-2", "fill-3"] {
        client.put_event(filler, json!({"state": "paused"})).await;
    }
    let (status, body) = create(&stack, "new", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "no_free_partition");

    let (status, body) = delete(&stack, "old").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "event_not_closed");

    // One fan waits (and has read their status, so the ticket counts as received).
    let ticket = client.join_ok("old", Some("kim")).await;
    let token = ticket["token"].as_str().unwrap();
    assert_eq!(client.status(token).await.status(), 200);
    client.put_event("old", json!({"state": "closed"})).await;
    let (status, body) = delete(&stack, "old").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "event_has_live_tickets");
    assert_eq!(body["error"]["waiting"], 1);

    // The queue runs again (the event stays closed to joins): the fan is let in, their
    // second of activity runs out, and then nothing is live.
    client.put_event("old", json!({"state": "open"})).await;
    client.put_event("old", json!({"state": "closed"})).await;
    testkit::wait::until_true(
        "the closed event drains and is deleted",
        PATIENCE,
        || async {
            let (status, body) = delete(&stack, "old").await;
            if status == 409 {
                let code = &body["error"]["code"];
                assert!(
                    code == "event_has_live_tickets" || code == "event_closing",
                    "{body}"
                );
            }
            status == 204
        },
    )
    .await;
    assert_eq!(admin_get(&stack, "/admin/events/old").await.0, 404);
    assert_eq!(delete(&stack, "old").await.0, 404);
    let (status, listing) = admin_get(&stack, "/admin/events").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = listing["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["fill-1", "fill-2", "fill-3"]);
    assert_eq!(listing["events"][0]["state"], "paused");
    assert!(listing["events"][0]["waiting"].is_i64(), "{listing}");

    // The freed partition takes the next event, with the default queue settings.
    let (status, new) = create(&stack, "new", json!({})).await;
    assert_eq!(status, 201, "{new}");
    assert_eq!(new["partition"], old["partition"]);
    assert_eq!(new["queue_mode"], "open");
    assert_eq!(new["activation"]["batch_size"], 100, "{new}");
    assert_eq!(new["joined"], 0);
    // Numbers continue from the partition's offset; the position (fans ahead) is
    // relative: the old sale's fan is not ahead of anyone.
    let first = client.join_ok("new", None).await;
    assert!(
        first["queue_number"].as_i64() > ticket["queue_number"].as_i64(),
        "{first} after {ticket}"
    );
    assert_eq!(first["position"], 0, "{first}");

    // An event created again under a deleted one's id starts from nothing: the fan who
    // held a place in the old one joins anew (their place goes in the background).
    client.put_event("fill-3", json!({"state": "closed"})).await;
    let (status, body) = delete(&stack, "fill-3").await;
    assert_eq!(status, 409, "joins in flight may still land: {body}");
    assert_eq!(body["error"]["code"], "event_closing");
    testkit::wait::until_true("fill-3 settles and is deleted", PATIENCE, || async {
        delete(&stack, "fill-3").await.0 == 204
    })
    .await;
    let (status, again) = create(&stack, "old", json!({})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["joined"], 0);
    testkit::wait::until_true("the old place is forgotten", PATIENCE, || async {
        let response = client.join("old", Some("kim")).await;
        let status = response.status().as_u16();
        assert!(status == 201 || status == 409, "{status}");
        status == 201
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn an_event_with_reservations_is_kept_as_the_sales_record() {
    let stack = Stack::start_with(settling).await;
    let client = stack.client();
    client
        .put_event(
            "sold",
            json!({"state": "passthrough", "seats": {"rows": 1, "seats_per_row": 2}}),
        )
        .await;
    let ticket = client.join_ok("sold", None).await;
    let token = ticket["token"].as_str().unwrap();
    testkit::wait::until_true("the ticket is active", PATIENCE, || async {
        let status: Value = client.status(token).await.json().await.unwrap();
        status["state"] == "active"
    })
    .await;
    let hold = reqwest::Client::new()
        .post(stack.reservation.url("/v1/events/sold/reservations"))
        .bearer_auth(token)
        .json(&json!({"seat_ids": ["A-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    client.put_event("sold", json!({"state": "closed"})).await;
    let (status, body) = delete(&stack, "sold").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "event_has_reservations");
    assert_eq!(body["error"]["reservations"], 1);
    assert_eq!(admin_get(&stack, "/admin/events/sold").await.0, 200);
    stack.stop().await;
}

async fn wait_for_state(stack: &Stack, token: &str, wanted: &str) {
    let client = stack.client();
    testkit::wait::until_true(&format!("the ticket is {wanted}"), PATIENCE, || async {
        let status: Value = client.status(token).await.json().await.unwrap();
        status["state"] == wanted
    })
    .await;
}

#[tokio::test]
async fn closed_drained_events_give_their_partitions_to_new_ones() {
    let stack = Stack::start_with(settling).await;
    let client = stack.client();
    // A sale that ran: its one fan was let in, and their second of activity ran out.
    let past = client
        .put_event("past", one_second_sessions("open", 10))
        .await;
    let ticket = client.join_ok("past", None).await;
    let token = ticket["token"].as_str().unwrap();
    wait_for_state(&stack, token, "active").await;
    // The other partitions: two sales on, one closed with a fan still waiting.
    client.put_event("busy-1", json!({})).await;
    client.put_event("busy-2", json!({})).await;
    client
        .put_event("draining", json!({"state": "paused"}))
        .await;
    client.join_ok("draining", None).await;
    client
        .put_event("draining", json!({"state": "closed"}))
        .await;
    client.put_event("past", json!({"state": "closed"})).await;
    wait_for_state(&stack, token, "expired").await;

    // Only the drained partition is taken back, once its event has settled.
    let next = testkit::wait::until("a partition for the next event", PATIENCE, || async {
        let (status, body) = create(&stack, "next", json!({})).await;
        if status == 409 {
            assert_eq!(body["error"]["code"], "no_free_partition", "{body}");
        }
        (status == 201).then_some(body)
    })
    .await;
    assert_eq!(next["partition"], past["partition"]);
    assert_eq!(
        next["activation"]["batch_size"], 100,
        "default policy: {next}"
    );
    let (_, released) = admin_get(&stack, "/admin/events/past").await;
    assert_eq!(released["partition"], Value::Null, "{released}");
    assert_eq!(released["state"], "closed");
    assert_eq!(released["joined"], 1, "the record stays: {released}");
    assert_eq!(released["activated"], 1);
    assert_eq!(released["serving_number"], Value::Null);
    let (_, partitions) = admin_get(&stack, "/admin/partitions").await;
    let mapped: Vec<&str> = partitions["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|partition| partition["events"].as_array().unwrap())
        .map(|event| event.as_str().unwrap())
        .collect();
    assert!(!mapped.contains(&"past"), "{partitions}");

    // The new sale's fans are let in on the reused queue, from its offset on.
    let fan = client.join_ok("next", None).await;
    assert!(fan["queue_number"].as_i64() > ticket["queue_number"].as_i64());
    assert_eq!(fan["position"], 0, "nobody ahead: {fan}");
    wait_for_state(&stack, fan["token"].as_str().unwrap(), "active").await;

    // Nothing else has drained: no partition for another event, nor for reopening the
    // released one; a change that needs no queue leaves it released.
    let (status, body) = create(&stack, "after", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "no_free_partition");
    let (status, body) = create(&stack, "past", json!({"state": "open"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "no_free_partition");
    let (status, renamed) = create(&stack, "past", json!({"name": "Past sale"})).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["partition"], Value::Null);
    assert_eq!(renamed["name"], "Past sale");
    stack.stop().await;
}
