//! The fan's waiting page in headless Chromium, against a real waiting-room and
//! activator: list the events, join, keep the place across a reload, watch the position
//! fall while the activator runs, and reach the active state with the seat-page link.
//! Screenshots land in `test-output/waiting_page/`.

mod support;

use std::time::{Duration, Instant};

use e2e::browser::{click, displayed, text, wait_displayed, Browser, PATIENCE};
use fantoccini::Locator;
use serde_json::json;
use support::{event_body, Stack};
use testkit::issuer::{claims, TestIssuers, SITE};

#[tokio::test]
async fn a_fan_joins_waits_and_reaches_the_seat_page_link() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut event = event_body("paused", 2, 700, 600);
    event["name"] = "Browser Test Concert".into();
    client.put_event("page-e2e", event.clone()).await;
    for _ in 0..6 {
        let ahead = client.join_ok("page-e2e", None).await;
        // Fans who look at their place once: received, so they keep it in the line.
        client.status(ahead["token"].as_str().unwrap()).await;
    }

    let browser = Browser::start("waiting_page").await;
    let page = &browser.client;
    page.goto(&stack.waiting_room.url("/")).await.unwrap();
    let link = {
        let started = Instant::now();
        loop {
            if let Ok(link) = page.find(Locator::LinkText("Browser Test Concert")).await {
                break link;
            }
            assert!(started.elapsed() < PATIENCE, "the event is not listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    browser.screenshot("01-events").await;
    link.click().await.unwrap();

    wait_displayed(page, "#join-form").await;
    assert_eq!(text(page, "#event-name").await, "Browser Test Concert");
    assert!(
        page.find(Locator::Css("#join-form input")).await.is_err(),
        "no name field: a typed id is no identity"
    );
    click(page, "#join-button").await;
    wait_displayed(page, "#waiting").await;
    assert_eq!(text(page, "#position").await, "6");
    assert_eq!(text(page, "#queue-number").await, "6");
    browser.screenshot("02-waiting").await;

    // A reload keeps the place (the ticket is in localStorage) and streams again.
    page.refresh().await.unwrap();
    wait_displayed(page, "#waiting").await;
    let started = Instant::now();
    while text(page, "#connection").await != "Live updates on." {
        assert!(started.elapsed() < PATIENCE, "the page never streamed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        text(page, "#position").await,
        "6",
        "same place after reload"
    );
    assert!(
        !displayed(page, "#join").await,
        "no second join after a reload"
    );

    event["state"] = "open".into();
    client.put_event("page-e2e", event).await;
    let mut seen_positions = vec![6];
    let started = Instant::now();
    while !displayed(page, "#active").await {
        assert!(
            started.elapsed() < PATIENCE,
            "never became active: {seen_positions:?}"
        );
        if let Ok(position) = text(page, "#position").await.parse::<i64>() {
            if Some(&position) != seen_positions.last() {
                assert!(
                    position < *seen_positions.last().unwrap(),
                    "{seen_positions:?} then {position}"
                );
                seen_positions.push(position);
                if seen_positions.len() == 2 {
                    browser.screenshot("03-moving").await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_positions.len() >= 2,
        "the position fell on the page before the turn came: {seen_positions:?}"
    );
    let href = page
        .find(Locator::Css("#reserve"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("the seat-page link has a target");
    assert!(
        href.starts_with("http://127.0.0.1:8081/events/page-e2e/seats#token="),
        "{href}"
    );
    let countdown = text(page, "#countdown").await;
    assert!(countdown.contains(':'), "countdown shown: {countdown}");
    assert!(text(page, "#announcer").await.contains("your turn"));
    browser.screenshot("04-active").await;
    browser.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_fan_sent_by_the_ticket_site_joins_with_its_enqueue_token() {
    let issuers = TestIssuers::start().await;
    let file = issuers.file.clone();
    let stack = Stack::start_with(|config| config.trusted_issuers_file = Some(file)).await;
    let client = stack.client();
    let mut event = event_body("paused", 2, 700, 600);
    event["name"] = "Members Presale".into();
    event["entry"] = json!({"identity": "enqueue_token"});
    client.put_event("page-presale", event).await;

    let browser = Browser::start("waiting_page_enqueue_token").await;
    let page = &browser.client;
    // Without the site's link the page explains where to go instead of offering a join.
    page.goto(&stack.waiting_room.url("/events/page-presale"))
        .await
        .unwrap();
    wait_displayed(page, "#needs-link").await;
    assert!(!displayed(page, "#join").await);
    browser.screenshot("01-needs-link").await;

    // With it, the fan joins; the pass leaves the address bar.
    let token = issuers.ed.sign(&claims(SITE, "member-42", "page-presale"));
    page.goto(
        &stack
            .waiting_room
            .url(&format!("/events/page-presale?enqueue_token={token}")),
    )
    .await
    .unwrap();
    wait_displayed(page, "#join-form").await;
    let address = page.current_url().await.unwrap();
    assert!(address.query().is_none(), "the token stayed in {address}");
    click(page, "#join-button").await;
    wait_displayed(page, "#waiting").await;
    assert_eq!(text(page, "#queue-number").await, "0");
    browser.screenshot("02-waiting").await;
    assert_eq!(client.get_event("page-presale").await["joined"], 1);

    // An expired pass sends the fan back to the site.
    page.execute("localStorage.clear()", vec![]).await.unwrap();
    let mut stale = claims(SITE, "member-43", "page-presale");
    stale["exp"] = json!(testkit::issuer::now() - 600);
    page.goto(&stack.waiting_room.url(&format!(
        "/events/page-presale?enqueue_token={}",
        issuers.ed.sign(&stale)
    )))
    .await
    .unwrap();
    wait_displayed(page, "#join-form").await;
    click(page, "#join-button").await;
    wait_displayed(page, "#needs-link").await;
    browser.screenshot("03-expired-pass").await;
    browser.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_page_solves_the_events_challenge_before_joining() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut event = event_body("paused", 2, 700, 600);
    event["name"] = "Bot-Proof Gig".into();
    event["entry"] = json!({"challenge": "proof_of_work", "challenge_difficulty": 3000});
    client.put_event("page-pow", event).await;

    let browser = Browser::start("waiting_page_challenge").await;
    let page = &browser.client;
    page.goto(&stack.waiting_room.url("/events/page-pow"))
        .await
        .unwrap();
    wait_displayed(page, "#join-form").await;
    click(page, "#join-button").await;
    // The worker solves it, the join carries it, and the challenge is spent.
    wait_displayed(page, "#waiting").await;
    browser.screenshot("01-joined-after-challenge").await;
    assert_eq!(client.get_event("page-pow").await["joined"], 1);
    assert!(
        stack
            .waiting_room
            .metric("waiting_room_challenges_issued_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    browser.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn an_active_fan_is_sent_to_the_sites_return_url_with_the_admission_token() {
    let stack = Stack::start().await;
    let client = stack.client();
    // Any page on loopback stands in for the site's checkout.
    let return_url = stack.waiting_room.url("/healthz");
    let mut event = event_body("passthrough", 10, 100, 600);
    event["admission"] =
        json!({"audience": "https://shop.example", "return_url": return_url, "token_in": "query"});
    client.put_event("page-site", event).await;

    let browser = Browser::start("waiting_page_site").await;
    let page = &browser.client;
    page.goto(&stack.waiting_room.url("/events/page-site"))
        .await
        .unwrap();
    wait_displayed(page, "#join-form").await;
    click(page, "#join-button").await;
    let started = Instant::now();
    let arrived = loop {
        let url = page.current_url().await.unwrap().to_string();
        if url.starts_with(&return_url) {
            break url;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never sent on: still at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token = arrived
        .split("admission_token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {arrived}"));
    let verifier = contract::token::TicketVerifier::new([stack.env.signing_key.verifying_key()]);
    let admission = verifier
        .verify_admission(token, chrono::Utc::now().timestamp())
        .expect("a valid admission token");
    assert_eq!(admission.aud, "https://shop.example");
    assert_eq!(admission.event_id, "page-site");
    browser.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_korean_fan_counts_down_in_the_pre_queue_and_follows_the_line_after_the_start() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut event = event_body("open", 10, 200, 600);
    event["name"] = "서울 콘서트".into();
    let now = chrono::Utc::now();
    let starts = now + chrono::Duration::seconds(20);
    event["schedule"] = json!({
        "prequeue_opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "sale_starts_at": starts.to_rfc3339(),
        "order": "shuffle_prequeue",
    });
    client.put_event("page-ko", event).await;

    let browser = Browser::start_in("waiting_page_korean", "ko-KR").await;
    let page = &browser.client;
    page.goto(&stack.waiting_room.url("/events/page-ko"))
        .await
        .unwrap();
    wait_displayed(page, "#join-form").await;
    let lang = page
        .execute("return document.documentElement.lang", vec![])
        .await
        .unwrap();
    assert_eq!(lang, "ko", "chosen from Accept-Language");
    assert_eq!(text(page, "#join-button").await, "줄 서기");
    assert!(
        text(page, "#schedule").await.contains("무작위 추첨"),
        "the page says the pre-queue is drawn"
    );
    click(page, "#join-button").await;
    wait_displayed(page, "#prequeue").await;
    assert_eq!(
        text(page, "#prequeue-title").await,
        "사전 대기열에 있습니다"
    );
    let countdown = text(page, "#prequeue-countdown").await;
    assert!(
        countdown.contains(':'),
        "a countdown to the start, got {countdown:?}"
    );
    browser.screenshot("01-prequeue-countdown").await;

    // After the start the page follows the line by itself (within the spread).
    let started = Instant::now();
    while !(displayed(page, "#waiting").await || displayed(page, "#active").await) {
        assert!(
            started.elapsed() < PATIENCE + Duration::from_secs(20),
            "the page did not follow the line after the start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("02-after-the-start").await;
    assert!(chrono::Utc::now() >= starts, "followed before the start");

    // The switch turns the page to English, and the choice sticks.
    page.find(Locator::Css("#language"))
        .await
        .unwrap()
        .select_by_value("en")
        .await
        .unwrap();
    let started = Instant::now();
    while text(page, "#event-name").await != "서울 콘서트"
        || page
            .execute("return document.documentElement.lang", vec![])
            .await
            .unwrap()
            != "en"
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the switch did not change the language"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    while text(page, "a[href='/']").await != "All events" {
        assert!(started.elapsed() < PATIENCE, "the English words never came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("03-switched-to-english").await;
    client
        .put_event("page-ko", json!({"state": "closed"}))
        .await;
    browser.close().await;
    stack.stop().await;
}
