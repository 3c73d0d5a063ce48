//! The post-sale report against the real services: computed when the event closes, on
//! demand and by the `report` command, from Kafka and PostgreSQL only. Its numbers are
//! what the test drove (joins, activations, abandonments, purchases, seats) and they are
//! the same after the deployment's Redis data is lost.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Stack;
use waiting_room::report::ReportCommand;

const PATIENCE: Duration = Duration::from_secs(30);
const EVENT: &str = "reported";

async fn admin(stack: &Stack, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            stack.waiting_room.url(path),
        )
        .bearer_auth(&stack.env.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn report_json(stack: &Stack, method: &str) -> Value {
    let (status, body) = admin(
        stack,
        method,
        &format!("/admin/events/{EVENT}/report"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("report JSON")
}

async fn buy(stack: &Stack, token: &str, seats: &[&str]) {
    let http = reqwest::Client::new();
    let held: Value = http
        .post(
            stack
                .reservation
                .url(&format!("/v1/events/{EVENT}/reservations")),
        )
        .bearer_auth(token)
        .json(&json!({ "seat_ids": seats }))
        .send()
        .await
        .expect("hold")
        .json()
        .await
        .expect("reservation");
    let id = held["reservation_id"].as_str().expect("a reservation id");
    let confirmed = http
        .post(
            stack
                .reservation
                .url(&format!("/v1/reservations/{id}/confirm")),
        )
        .bearer_auth(token)
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
}

/// The report without the instant it was computed at.
fn numbers(report: &Value) -> Value {
    let mut numbers = report.clone();
    numbers["computed_at"] = Value::Null;
    numbers
}

#[tokio::test]
async fn the_report_counts_what_happened_and_survives_losing_redis() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event(
            EVENT,
            json!({
                "name": "Reported sale",
                "state": "open",
                "activation": {"batch_size": 100, "interval_ms": 100,
                               "active_ttl_seconds": 600, "grace_seconds": 1},
                "seats": {"rows": 1, "seats_per_row": 10},
            }),
        )
        .await;
    let (status, body) = admin(
        &stack,
        "GET",
        &format!("/admin/events/{EVENT}/report"),
        None,
    )
    .await;
    assert_eq!(status, 404, "no report before one is computed: {body}");
    assert!(body.contains("report_not_found"), "{body}");

    // Five fans read their tickets and are let in; three never look and are abandoned.
    let mut fans = Vec::new();
    for _ in 0..5 {
        let ticket = client.join_ok(EVENT, None).await;
        let token = ticket["token"].as_str().expect("token").to_owned();
        assert_eq!(client.status(&token).await.status(), 200);
        fans.push(token);
    }
    for _ in 0..3 {
        client.join_ok(EVENT, None).await;
    }
    let started = Instant::now();
    loop {
        let view = client.get_event(EVENT).await;
        if view["activated"] == 5 && view["abandoned"] == 3 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "not all decided: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two of them buy: three seats in all.
    buy(&stack, &fans[0], &["A-1", "A-2"]).await;
    buy(&stack, &fans[1], &["A-3"]).await;

    // Closing computes the report in the background.
    client.put_event(EVENT, json!({"state": "closed"})).await;
    let started = Instant::now();
    let at_close = loop {
        let (status, body) = admin(
            &stack,
            "GET",
            &format!("/admin/events/{EVENT}/report"),
            None,
        )
        .await;
        if status == 200 {
            break serde_json::from_str::<Value>(&body).expect("report JSON");
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no report after closing: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let report = report_json(&stack, "POST").await;
    assert_eq!(
        report["totals"],
        json!({"joined": 8, "activated": 5, "abandoned": 3, "used": 2, "expired": 0,
               "still_active": 3, "still_waiting": 0, "dead_lettered": 0}),
        "{report}"
    );
    assert_eq!(numbers(&at_close)["totals"], report["totals"]);
    assert_eq!(report["conversion"]["seats_sold"], 3);
    assert_eq!(report["conversion"]["reservations_confirmed"], 2);
    assert_eq!(report["conversion"]["reserving_fans"], 2);
    assert_eq!(report["conversion"]["bought_share"], 0.4);
    assert!(
        report["peak_queue_length"]
            .as_u64()
            .is_some_and(|peak| (1..=8).contains(&peak)),
        "{report}"
    );
    let p50 = report["wait_seconds"]["p50"]
        .as_f64()
        .expect("a median wait");
    let max = report["wait_seconds"]["max"]
        .as_f64()
        .expect("a longest wait");
    assert!(p50 >= 0.0 && p50 <= max, "{report}");
    let minutes = report["per_minute"].as_array().expect("per-minute series");
    let joined: u64 = minutes
        .iter()
        .map(|m| m["joined"].as_u64().unwrap_or(0))
        .sum();
    let activated: u64 = minutes
        .iter()
        .map(|m| m["activated"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!((joined, activated), (8, 5), "{report}");

    // Redis loses everything of this deployment: the report is computed again, the same.
    stack.env.lose_redis_data().await;
    assert_eq!(
        client.get_event(EVENT).await["joined"],
        0,
        "Redis's counters are gone"
    );
    let again = report_json(&stack, "POST").await;
    assert_eq!(numbers(&again), numbers(&report));

    // As CSV, and from the command a cron job runs.
    let (status, csv) = admin(
        &stack,
        "GET",
        &format!("/admin/events/{EVENT}/report?format=csv"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        csv.starts_with("metric,value\njoined,8\nactivated,5\nabandoned,3\nused,2\n"),
        "{csv}"
    );
    assert!(csv.contains("\nseats_sold,3\n"), "{csv}");
    ReportCommand {
        event: EVENT.to_owned(),
        csv: true,
        active_ttl_seconds: 600,
    }
    .run(&stack.env.common)
    .await
    .expect("the report command");
    let stored = report_json(&stack, "GET").await;
    assert_eq!(numbers(&stored), numbers(&report));

    // Refusals.
    let (status, body) = admin(&stack, "POST", "/admin/events/no-such-event/report", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin(
        &stack,
        "GET",
        &format!("/admin/events/{EVENT}/report?format=xml"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    stack.stop().await;
}
