//! The operators' console in headless Chromium against the real services: sign in with
//! a named admin token (a wrong one is refused), create an event through the form (the
//! API's validation message shows on a bad value), watch the live figures move while
//! fans join through the API, pause the event through the confirmation step, and find
//! the change under the operator's name in the audit log, and compute the post-sale
//! report. Screenshots land in
//! `test-output/console/`.

mod support;

use std::time::{Duration, Instant};

use e2e::browser::{click, displayed, fill, text, wait_displayed, Browser, PATIENCE};
use fantoccini::{Client, Locator};
use serde_json::Value;
use support::Stack;

const OPERATOR_TOKEN: &str = "console-test-operator-token";

/// Waits until `css`'s text satisfies `wanted`.
async fn wait_text(page: &Client, css: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let shown = match page.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if wanted(&shown) {
            return shown;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: {css} shows {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_operator_creates_watches_and_pauses_a_sale_and_the_audit_names_them() {
    let stack = Stack::start_with(|config| {
        config.admin_tokens = vec![format!("ops-lead={OPERATOR_TOKEN}")];
    })
    .await;
    let browser = Browser::start_desktop("console").await;
    let page = &browser.client;
    page.goto(&stack.waiting_room.url("/admin"))
        .await
        .expect("open the console");
    wait_displayed(page, "#sign-in").await;

    // A wrong token is refused and nothing is shown.
    fill(page, "#token", "not-the-token").await;
    click(page, "#sign-in-form button").await;
    wait_text(page, "#error", "a refusal", |shown| {
        shown.contains("refused")
    })
    .await;
    assert!(displayed(page, "#sign-in").await);
    assert!(!displayed(page, "#events-view").await);
    browser.screenshot("01-sign-in-refused").await;

    fill(page, "#token", OPERATOR_TOKEN).await;
    click(page, "#sign-in-form button").await;
    wait_displayed(page, "#events-view").await;
    // The token is in the tab's session storage, never in a cookie.
    let cookies = page.get_all_cookies().await.expect("cookies");
    assert!(
        cookies.is_empty(),
        "no cookie carries the token: {cookies:?}"
    );

    // The form shows the API's validation message and creates nothing.
    click(page, "#new-event").await;
    wait_displayed(page, "#form-view").await;
    fill(page, "#f-event-id", "console-sale").await;
    fill(page, "#f-name", "Console Sale").await;
    fill(page, "#f-batch", "0").await;
    click(page, "#save-event").await;
    let refusal = wait_text(page, "#form-error", "the API's refusal", |shown| {
        !shown.is_empty()
    })
    .await;
    assert!(refusal.contains("batch_size"), "{refusal}");
    browser.screenshot("02-form-refused").await;
    let (status, _) = admin(&stack, "GET", "/admin/events/console-sale").await;
    assert_eq!(status, 404, "a refused form creates nothing");

    fill(page, "#f-batch", "2").await;
    fill(page, "#f-interval", "300").await;
    fill(page, "#f-grace", "600").await;
    fill(page, "#f-rows", "2").await;
    fill(page, "#f-per-row", "5").await;
    page.find(Locator::Css("#f-state option[value='open']"))
        .await
        .expect("state option")
        .click()
        .await
        .expect("choose open");
    click(page, "#save-event").await;
    wait_displayed(page, "#event-view").await;
    wait_text(page, "#event-title", "the event's name", |shown| {
        shown.contains("Console Sale")
    })
    .await;

    // Fans join through the API and read their status (received tickets are let in).
    let client = stack.client();
    for _ in 0..5 {
        let ticket = client.join_ok("console-sale", None).await;
        let token = ticket["token"].as_str().expect("token");
        assert_eq!(client.status(token).await.status(), 200);
    }
    wait_text(page, "#figure-joined", "five joins", |shown| shown == "5").await;
    wait_text(page, "#figure-activated", "activations", |shown| {
        shown.parse::<u32>().is_ok_and(|activated| activated >= 2)
    })
    .await;
    let points = page
        .find(Locator::Css("#chart-waiting polyline"))
        .await
        .expect("the waiting chart")
        .attr("points")
        .await
        .expect("points")
        .unwrap_or_default();
    assert!(
        points.split(' ').count() >= 2,
        "the chart has a line: {points:?}"
    );
    browser.screenshot("03-live").await;

    // Pausing asks first; cancelling changes nothing.
    click(page, "button[data-state='paused']").await;
    wait_displayed(page, "#confirm").await;
    assert!(text(page, "#confirm-text")
        .await
        .contains("Nobody more is let in"));
    browser.screenshot("04-confirm-pause").await;
    click(page, "#confirm-no").await;
    assert!(!displayed(page, "#confirm").await);
    let (_, event) = admin(&stack, "GET", "/admin/events/console-sale").await;
    assert_eq!(event["state"], "open", "cancel changes nothing");
    click(page, "button[data-state='paused']").await;
    wait_displayed(page, "#confirm").await;
    click(page, "#confirm-yes").await;
    wait_text(page, "#notice", "the change", |shown| {
        shown.contains("is now paused")
    })
    .await;
    let (_, event) = admin(&stack, "GET", "/admin/events/console-sale").await;
    assert_eq!(event["state"], "paused");

    // The audit log names the operator, on the event's page and in the API.
    let change = wait_text(
        page,
        "#event-audit tbody tr:first-child",
        "the audit entry",
        |shown| shown.contains("ops-lead") && shown.contains("event updated"),
    )
    .await;
    assert!(
        change.contains(r#"event.state: "open" → "paused""#),
        "{change}"
    );
    browser.screenshot("05-paused-and-audited").await;
    let (status, audit) = admin(&stack, "GET", "/admin/audit?event_id=console-sale").await;
    assert_eq!(status, 200);
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["actor"].as_str().unwrap_or(""),
                entry["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("ops-lead", "event_updated"), ("ops-lead", "event_created")]
    );

    // The post-sale report, computed on demand from Kafka and PostgreSQL.
    click(page, "#report-link").await;
    wait_displayed(page, "#report-view").await;
    wait_text(page, "#report-state", "no report yet", |shown| {
        shown.contains("No report yet")
    })
    .await;
    click(page, "#compute-report").await;
    wait_text(page, "#report-joined", "the report's joins", |shown| {
        shown == "5"
    })
    .await;
    let activated: u32 = text(page, "#report-activated")
        .await
        .parse()
        .expect("a number");
    assert!(activated >= 2, "{activated} activated in the report");
    assert!(text(page, "#report-wait-p50").await.ends_with(" s"));
    browser.screenshot("06-report").await;

    // Signing out forgets the token.
    click(page, "#sign-out").await;
    wait_displayed(page, "#sign-in").await;
    page.refresh().await.expect("reload");
    wait_displayed(page, "#sign-in").await;
    browser.close().await;
    stack.stop().await;
}

async fn admin(stack: &Stack, method: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            stack.waiting_room.url(path),
        )
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
