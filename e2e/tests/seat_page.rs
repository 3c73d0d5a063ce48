//! The fan's seat page in headless Chromium, against the real services: the live seat
//! map, a seat taken by another fan while choosing, hold, countdown, confirm.
//! Screenshots land in `test-output/seat_page/`.

mod support;

use std::time::{Duration, Instant};

use e2e::browser::Browser;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use support::Stack;

const PATIENCE: Duration = Duration::from_secs(30);

async fn seat(page: &Client, id: &str) -> fantoccini::elements::Element {
    page.find(Locator::Css(&format!("button[data-seat='{id}']")))
        .await
        .unwrap_or_else(|error| panic!("seat {id} not on the page: {error}"))
}

/// Polls `check` until it holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < PATIENCE, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(page: &Client, css: &str) -> String {
    match page.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test]
async fn a_fan_holds_and_confirms_seats_while_the_map_updates_live() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event(
            "seat-e2e",
            json!({"name": "Seat page test", "state": "passthrough",
                   "activation": {"active_ttl_seconds": 600, "grace_seconds": 600},
                   "seats": {"rows": 2, "seats_per_row": 6}}),
        )
        .await;
    let fan = client.join_ok("seat-e2e", None).await;
    let rival = client.join_ok("seat-e2e", None).await;
    let fan_token = fan["token"].as_str().unwrap().to_owned();
    let rival_token = rival["token"].as_str().unwrap().to_owned();
    // Both fans read their status (only received tickets are activated).
    eventually("both tickets active", || async {
        let mut both = true;
        for token in [&fan_token, &rival_token] {
            let status: Value = client.status(token).await.json().await.unwrap();
            both &= status["state"] == "active";
        }
        both
    })
    .await;

    let browser = Browser::start("seat_page").await;
    let page = &browser.client;
    page.goto(
        &stack
            .reservation
            .url(&format!("/events/seat-e2e/seats#token={fan_token}")),
    )
    .await
    .unwrap();
    eventually("the seat map", || async {
        page.find(Locator::Css("button[data-seat='B-6']"))
            .await
            .is_ok()
    })
    .await;
    assert!(
        !page
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("token="),
        "the token leaves the address bar"
    );
    browser.screenshot("01-map").await;

    // The fan picks A-3; another fan takes it first: the map updates and unselects it.
    seat(page, "A-3").await.click().await.unwrap();
    assert_eq!(
        seat(page, "A-3")
            .await
            .attr("aria-pressed")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    let taken = reqwest::Client::new()
        .post(stack.reservation.url("/v1/events/seat-e2e/reservations"))
        .bearer_auth(&rival_token)
        .json(&json!({"seat_ids": ["A-3"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 201);
    eventually("A-3 shown taken", || async {
        !seat(page, "A-3").await.is_enabled().await.unwrap_or(true)
    })
    .await;
    assert_eq!(text(page, "#selection").await, "none");
    browser.screenshot("02-taken-live").await;

    seat(page, "A-1").await.click().await.unwrap();
    seat(page, "A-2").await.click().await.unwrap();
    page.find(Locator::Css("#hold"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the hold", || async {
        text(page, "#reservation-status").await == "held"
    })
    .await;
    assert_eq!(text(page, "#held-seats").await, "A-1, A-2");
    assert!(text(page, "#hold-countdown").await.contains(':'));
    browser.screenshot("03-held").await;

    page.find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the confirmation", || async {
        text(page, "#reservation-status").await == "confirmed"
    })
    .await;
    assert!(text(page, "#announcer").await.contains("are yours"));
    browser.screenshot("04-confirmed").await;

    let status: Value = client.status(&fan_token).await.json().await.unwrap();
    assert_eq!(status["state"], "used", "confirming spent the ticket");
    browser.close().await;
    stack.stop().await;
}
