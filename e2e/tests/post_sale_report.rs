//! The post-sale report against the real services: computed when the event closes, on
//! demand and by the `report` command, from Kafka and PostgreSQL only. Its numbers are
//! what the test drove (joins, activations, abandonments, purchases, seats) and they are
//! the same after the deployment's Redis data is lost.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{buy, Stack};
use waiting_room::report::ReportCommand;

const PATIENCE: Duration = Duration::from_secs(30);
const EVENT: &str = "reported";

/// `method /admin/events/{event}/report{query}` with the admin token: status and body.
async fn report_request(stack: &Stack, method: &str, event: &str, query: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            stack
                .waiting_room
                .url(&format!("/admin/events/{event}/report{query}")),
        )
        .bearer_auth(&stack.env.admin_token)
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn report_json(stack: &Stack, method: &str) -> Value {
    let (status, body) = report_request(stack, method, EVENT, "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("report JSON")
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
    let (status, body) = report_request(&stack, "GET", EVENT, "").await;
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
    // The live view's wait histogram counted the five activations.
    let view = client.get_event(EVENT).await;
    let p50 = view["wait_p50_seconds"]
        .as_u64()
        .expect("a live median wait");
    assert!(p50 <= 30, "{view}");
    assert!(
        view["wait_p95_seconds"]
            .as_u64()
            .is_some_and(|p95| p95 >= p50),
        "{view}"
    );

    // Two of them buy: three seats in all.
    buy(&stack, EVENT, &fans[0], &["A-1", "A-2"]).await;
    buy(&stack, EVENT, &fans[1], &["A-3"]).await;

    // Closing computes the report in the background.
    client.put_event(EVENT, json!({"state": "closed"})).await;
    let started = Instant::now();
    let at_close = loop {
        let (status, body) = report_request(&stack, "GET", EVENT, "").await;
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
    assert_eq!(report["complete"], false, "three sessions still run");
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

    // Redis loses everything of this deployment. The activator rebuilds the queue from
    // Kafka (the purchases from PostgreSQL): the live counters and every fan's state
    // come back, and the report is computed again, the same.
    stack.env.lose_redis_data().await;
    let started = Instant::now();
    loop {
        let view = client.get_event(EVENT).await;
        if view["joined"] == 8 && view["activated"] == 5 && view["abandoned"] == 3 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "counters not rebuilt: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut states = Vec::new();
    for fan in &fans {
        let status: Value = client.status(fan).await.json().await.expect("status JSON");
        states.push(status["state"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(states, ["used", "used", "active", "active", "active"]);
    let again = report_json(&stack, "POST").await;
    assert_eq!(numbers(&again), numbers(&report));

    // As CSV, and from the command a cron job runs.
    let (status, csv) = report_request(&stack, "GET", EVENT, "?format=csv").await;
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
    let (status, body) = report_request(&stack, "POST", "no-such-event", "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = report_request(&stack, "GET", EVENT, "?format=xml").await;
    assert_eq!(status, 422, "{body}");
    stack.stop().await;
}
