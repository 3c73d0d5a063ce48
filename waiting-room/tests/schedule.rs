//! Scheduled sales at the entry API, against the real Kafka, Redis and PostgreSQL:
//! joins before, during and after the pre-queue; the draw's commitment on the public
//! endpoint; the admin API's refusals.

mod support;

use chrono::{Duration, Utc};
use contract::draw::DrawSeed;
use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::{RunningService, TestEnv};

/// A schedule whose pre-queue opens `opens` minutes from now and whose sale starts
/// `starts` minutes from now.
fn schedule(opens: i64, starts: i64, order: &str) -> Value {
    let now = Utc::now();
    json!({
        "prequeue_opens_at": (now + Duration::minutes(opens)).to_rfc3339(),
        "sale_starts_at": (now + Duration::minutes(starts)).to_rfc3339(),
        "order": order,
    })
}

async fn put(service: &RunningService, env: &TestEnv, event_id: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(service.url(&format!("/admin/events/{event_id}")))
        .bearer_auth(&env.admin_token)
        .json(&body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn public_event(service: &RunningService, event_id: &str) -> Value {
    reqwest::get(service.url(&format!("/v1/events/{event_id}")))
        .await
        .expect("GET event")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn joins_are_refused_before_the_pre_queue_and_after_the_end() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("later", json!({"schedule": schedule(60, 90, "fifo")}))
        .await;
    let event = public_event(&service, "later").await;
    assert_eq!(event["phase"], "before_prequeue");

    let response = client.join("later", None).await;
    assert_eq!(response.status(), 409);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    assert!((3_500..=3_601).contains(&retry_after), "{retry_after}");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "not_open_yet");
    assert_eq!(
        error["error"]["prequeue_opens_at"],
        event["schedule"]["prequeue_opens_at"]
    );
    assert_eq!(
        error["error"]["sale_starts_at"],
        event["schedule"]["sale_starts_at"]
    );

    let now = Utc::now();
    client
        .put_event(
            "over",
            json!({"schedule": {
                "prequeue_opens_at": (now - Duration::hours(2)).to_rfc3339(),
                "sale_starts_at": (now - Duration::hours(1)).to_rfc3339(),
                "sale_ends_at": (now - Duration::minutes(1)).to_rfc3339(),
            }}),
        )
        .await;
    assert_eq!(public_event(&service, "over").await["phase"], "ended");
    let response = client.join("over", None).await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "event_closed");

    // Without its schedule the event takes joins at once.
    client.put_event("later", json!({"schedule": null})).await;
    let response = client.join("later", None).await;
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.expect("JSON");
    assert_eq!(ticket["state"], "waiting");
}

#[tokio::test]
async fn a_pre_queue_ticket_waits_for_the_start_with_its_place_or_its_draw_pending() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("fifo", json!({"schedule": schedule(-1, 60, "fifo")}))
        .await;
    let first = client.join_ok("fifo", None).await;
    let second = client.join_ok("fifo", None).await;
    assert_eq!(second["state"], "prequeued");
    assert_eq!(
        second["sale_starts_at"],
        public_event(&service, "fifo").await["schedule"]["sale_starts_at"]
    );
    let ahead = second["queue_number"].as_i64().expect("a known place")
        - first["queue_number"].as_i64().expect("a known place");
    assert_eq!(second["position"].as_i64(), Some(ahead));
    assert_eq!(second["estimated_wait_seconds"], Value::Null);
    let token = second["token"].as_str().expect("token");
    let status: Value = client.status(token).await.json().await.expect("JSON");
    assert_eq!(status["state"], "prequeued");

    // The stream says so once and ends: the page reconnects after the start.
    let body = reqwest::Client::new()
        .get(service.url(&format!("/v1/tickets/{token}/events")))
        .send()
        .await
        .expect("GET events")
        .text()
        .await
        .expect("the stream ends");
    assert!(body.contains("event: prequeued"), "{body}");
    assert!(!body.contains("event: position"), "{body}");

    client
        .put_event(
            "drawn",
            json!({"schedule": schedule(-1, 60, "shuffle_prequeue")}),
        )
        .await;
    let event = public_event(&service, "drawn").await;
    assert_eq!(event["phase"], "prequeue");
    let commitment = event["draw"]["commitment"].as_str().expect("commitment");
    assert_eq!(commitment.len(), 64);
    assert!(
        event["draw"].get("seed").is_none(),
        "the seed stays secret until the start"
    );
    let ticket = client.join_ok("drawn", None).await;
    assert_eq!(ticket["state"], "prequeued");
    assert_eq!(ticket["queue_number"], Value::Null, "drawn at the start");
    assert_eq!(ticket["position"], Value::Null);

    // Moved, but not started: the committed seed stays.
    client
        .put_event(
            "drawn",
            json!({"schedule": schedule(-1, 30, "shuffle_prequeue")}),
        )
        .await;
    assert_eq!(
        public_event(&service, "drawn").await["draw"]["commitment"],
        commitment
    );
}

#[tokio::test]
async fn the_admin_api_refuses_bad_schedules_and_changes_to_a_made_draw() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let now = Utc::now();
    let backwards = json!({"schedule": schedule(10, 5, "fifo")});
    let ends_first = json!({"schedule": {
        "prequeue_opens_at": now.to_rfc3339(),
        "sale_starts_at": (now + Duration::hours(1)).to_rfc3339(),
        "sale_ends_at": now.to_rfc3339(),
    }});
    for (body, field) in [
        (backwards, "schedule.prequeue_opens_at"),
        (ends_first, "schedule.sale_ends_at"),
    ] {
        let (status, error) = put(&service, &env, "bad", body).await;
        assert_eq!(status, 422, "{error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{message}");
    }
    for body in [
        json!({"schedule": {"prequeue_opens_at": "tomorrow", "sale_starts_at": now.to_rfc3339()}}),
        json!({"schedule": {"sale_starts_at": now.to_rfc3339()}}),
        json!({"schedule": {"prequeue_opens_at": now.to_rfc3339(), "sale_starts_at": now.to_rfc3339(), "order": "random"}}),
    ] {
        let (status, error) = put(&service, &env, "bad", body.clone()).await;
        assert!(matches!(status, 400 | 422), "{body}: {status} {error}");
    }
    assert_eq!(
        reqwest::get(service.url("/v1/events/bad"))
            .await
            .expect("GET")
            .status(),
        404,
        "nothing was created"
    );

    // A seed is committed to before the start: no shuffle that has already started.
    let (status, error) = put(
        &service,
        &env,
        "late",
        json!({"schedule": schedule(-2, -1, "shuffle_prequeue")}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("schedule.sale_starts_at"));

    // A draw needs its queue to itself, and keeps it.
    let starts = Utc::now() + Duration::seconds(2);
    let shuffled = json!({"schedule": {
        "prequeue_opens_at": (starts - Duration::minutes(2)).to_rfc3339(),
        "sale_starts_at": starts.to_rfc3339(),
        "order": "shuffle_prequeue",
    }});
    let (status, drawn) = put(&service, &env, "drawn", shuffled).await;
    assert_eq!(status, 201, "{drawn}");
    let partition = drawn["partition"].as_i64().expect("partition");
    let (status, error) = put(&service, &env, "neighbour", json!({"partition": partition})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "draw_needs_own_queue");
    let elsewhere = (partition + 1) % 4;
    let (status, error) = put(&service, &env, "drawn", json!({"partition": elsewhere})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "queue_fixed_by_schedule");
    let moved = reqwest::Client::new()
        .put(service.url(&format!("/admin/partitions/{elsewhere}")))
        .bearer_auth(&env.admin_token)
        .json(&json!({"events": ["drawn"]}))
        .send()
        .await
        .expect("PUT partition");
    assert_eq!(moved.status(), 409);
    let public = public_event(&service, "drawn").await;
    assert!(
        public["draw"].get("seed").is_none(),
        "secret before the start"
    );

    // Started: the seed is public and matches its commitment; only the end may change.
    if let Ok(wait) = (starts - Utc::now()).to_std() {
        tokio::time::sleep(wait + std::time::Duration::from_millis(100)).await;
    }
    let event = public_event(&service, "drawn").await;
    let seed = DrawSeed::from_hex(event["draw"]["seed"].as_str().expect("published"))
        .expect("64 hex digits");
    assert_eq!(seed.commitment(), event["draw"]["commitment"]);
    let (status, error) = put(
        &service,
        &env,
        "drawn",
        json!({"schedule": schedule(-2, 5, "shuffle_prequeue")}),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "draw_already_made");
    let (status, error) = put(&service, &env, "drawn", json!({"schedule": null})).await;
    assert_eq!(
        (status, error["error"]["code"].clone()),
        (409, json!("draw_already_made"))
    );
    let mut with_end = event["schedule"].clone();
    with_end["sale_ends_at"] = (Utc::now() + Duration::hours(1)).to_rfc3339().into();
    let (status, changed) = put(&service, &env, "drawn", json!({"schedule": with_end})).await;
    assert_eq!(status, 200, "{changed}");
}
