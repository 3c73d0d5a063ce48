//! `GET /v1/tickets/{token}/events` against a real waiting-room and activator: positions
//! fall as the activator ticks, exactly one terminal event ends the stream, keep-alives
//! arrive, an open stream keeps its fan from being taken for gone, a ticket the line
//! passed before it was read waits at position 0 and then becomes active, bad tokens and
//! streams beyond the limit are refused before streaming, and shutdown ends streams.

mod support;

use std::time::Duration;

use e2e::sse::Frame;
use support::{event_body, within, Stack};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn positions_fall_with_each_tick_then_one_active_event_ends_the_stream() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("sse-fall", event_body("paused", 2, 300, 600))
        .await;
    let mut tickets = Vec::new();
    for _ in 0..7 {
        let ticket = client.join_ok("sse-fall", None).await;
        // Each fan reads its place once (received tickets keep theirs in the line).
        client.status(ticket["token"].as_str().unwrap()).await;
        tickets.push(ticket);
    }
    let last = &tickets[6];
    let mut stream = stack.stream(last["token"].as_str().unwrap()).await;

    let first = within(PATIENCE, stream.next_event())
        .await
        .expect("first event");
    assert_eq!(first.event, "position");
    assert!(
        first.retry_ms.is_some(),
        "the first event carries a retry hint"
    );
    let body = first.json();
    assert_eq!(body["position"], 6);
    assert_eq!(body["state"], "waiting");
    assert_eq!(first.id.as_deref(), Some("0"), "id is the serving number");

    client
        .put_event("sse-fall", event_body("open", 2, 300, 600))
        .await;
    let mut positions = vec![6];
    let terminal = loop {
        let event = within(PATIENCE, stream.next_event())
            .await
            .expect("the stream stays open until its terminal event");
        if event.event != "position" {
            break event;
        }
        let body = event.json();
        let position = body["position"].as_i64().unwrap();
        assert!(
            position < *positions.last().unwrap(),
            "positions only fall: {positions:?} then {position}"
        );
        assert_eq!(
            event.id.as_deref(),
            Some(body["serving_number"].to_string().as_str())
        );
        positions.push(position);
    };
    assert!(positions.len() >= 3, "one position per tick: {positions:?}");
    assert_eq!(terminal.event, "active");
    let body = terminal.json();
    assert_eq!(body["state"], "active");
    assert_eq!(body["position"], 0);
    assert!(body["active_until"].is_string(), "{body}");
    let reservation_url = body["reservation_url"].as_str().expect("reservation_url");
    assert!(
        reservation_url.contains("/events/sse-fall/seats#token="),
        "{reservation_url}"
    );
    assert_eq!(
        within(PATIENCE, stream.next_frame()).await,
        None,
        "the stream ends after its terminal event"
    );

    // The polled status agrees with what the stream said.
    let status: serde_json::Value = client
        .status(last["token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "active");
    assert_eq!(status["active_until"], body["active_until"]);
    stack.stop().await;
}

#[tokio::test]
async fn an_open_stream_keeps_its_fan_from_being_abandoned() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("sse-seen", event_body("paused", 10, 200, 2))
        .await;
    let streamed = client.join_ok("sse-seen", None).await;
    let silent = client.join_ok("sse-seen", None).await;
    let mut stream = stack.stream(streamed["token"].as_str().unwrap()).await;
    let first = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(first.event, "position");

    // Well past the 2 s grace: only the streaming fan has been seen since joining.
    tokio::time::sleep(Duration::from_secs(5)).await;
    client
        .put_event("sse-seen", event_body("open", 10, 200, 2))
        .await;
    let terminal = within(PATIENCE, async {
        loop {
            let event = stream.next_event().await.expect("a terminal event");
            if event.event != "position" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(terminal.event, "active", "{:?}", terminal.data);

    // The silent fan was skipped; a stream opened now says so at once, and ends.
    let mut late = stack.stream(silent["token"].as_str().unwrap()).await;
    let only = within(PATIENCE, late.next_event()).await.unwrap();
    assert_eq!(only.event, "abandoned", "{}", only.data);
    assert_eq!(only.json()["state"], "abandoned");
    assert_eq!(within(PATIENCE, late.next_frame()).await, None);
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_opened_after_the_line_passed_its_unread_ticket_waits_then_goes_active() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("sse-late", event_body("open", 10, 200, 600))
        .await;
    let ticket = client.join_ok("sse-late", None).await;
    // Watch the line through the admin statistics: a status read would count as receiving.
    let started = std::time::Instant::now();
    while client.get_event("sse-late").await["serving_number"].as_i64()
        <= ticket["queue_number"].as_i64()
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the line never passed the ticket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream = stack.stream(ticket["token"].as_str().unwrap()).await;
    let first = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(first.event, "position", "{}", first.data);
    assert_eq!(first.json()["state"], "waiting");
    assert_eq!(first.json()["position"], 0, "next in line");
    // Opening the stream was its holder's first read: the next tick activates it,
    // although the serving number does not move.
    let terminal = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(terminal.event, "active", "{}", terminal.data);
    assert!(terminal.json()["active_until"].is_string());
    assert_eq!(within(PATIENCE, stream.next_frame()).await, None);
    stack.stop().await;
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let stack = Stack::start_with(|config| config.stream_keepalive_seconds = 1).await;
    let client = stack.client();
    client
        .put_event("sse-idle", event_body("paused", 1, 1000, 600))
        .await;
    let ticket = client.join_ok("sse-idle", None).await;
    let mut stream = stack.stream(ticket["token"].as_str().unwrap()).await;
    assert!(matches!(
        within(PATIENCE, stream.next_frame()).await,
        Some(Frame::Event(_))
    ));
    for _ in 0..2 {
        assert_eq!(
            within(PATIENCE, stream.next_frame()).await,
            Some(Frame::Comment),
            "a paused queue sends nothing but keep-alives"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_json_before_streaming() {
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event("sse-bad", event_body("paused", 1, 1000, 600))
        .await;
    let ticket = client.join_ok("sse-bad", None).await;
    let token = ticket["token"].as_str().unwrap();
    let mut tampered = token.to_owned();
    let flipped = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(tampered.len() - 1.., flipped);
    for bad in ["garbage", "a.b.c", tampered.as_str()] {
        let response = stack.open_stream(bad).await;
        assert_eq!(response.status(), 401, "{bad}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token");
    }
    // The same stream with the token as a Bearer credential instead of in the path.
    let me = stack.waiting_room.url("/v1/tickets/me/events");
    let http = reqwest::Client::new();
    for credential in [None, Some("garbage"), Some(tampered.as_str())] {
        let mut request = http.get(&me);
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{credential:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token");
    }
    let response = http.get(&me).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = e2e::sse::EventStream::new(response);
    let first = within(PATIENCE, stream.next_event()).await.unwrap();
    assert_eq!(first.event, "position");
    assert_eq!(first.json()["ticket_id"], ticket["ticket_id"]);
    stack.stop().await;
}

#[tokio::test]
async fn one_ticket_holds_at_most_two_streams() {
    let stack = Stack::start_with(|config| config.stream_keepalive_seconds = 1).await;
    let client = stack.client();
    client
        .put_event("sse-tabs", event_body("paused", 1, 1000, 600))
        .await;
    let ticket = client.join_ok("sse-tabs", None).await;
    let token = ticket["token"].as_str().unwrap();
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = stack.stream(token).await;
        within(PATIENCE, tab.next_event()).await.unwrap();
        tabs.push(tab);
    }
    let third = stack.open_stream(token).await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    // Another fan is not affected.
    let other = client.join_ok("sse-tabs", None).await;
    let _other = stack.stream(other["token"].as_str().unwrap()).await;
    // A closed tab frees its slot (noticed at the latest on the next keep-alive write).
    drop(tabs.pop());
    testkit::wait::until_true("a closed tab frees its slot", PATIENCE, || async {
        stack.open_stream(token).await.status() == 200
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_and_counted() {
    let stack = Stack::start_with(|config| {
        config.max_streams = 1;
        config.stream_keepalive_seconds = 1;
    })
    .await;
    let client = stack.client();
    client
        .put_event("sse-limit", event_body("paused", 1, 1000, 600))
        .await;
    let ticket = client.join_ok("sse-limit", None).await;
    let token = ticket["token"].as_str().unwrap();
    let mut open = stack.stream(token).await;
    within(PATIENCE, open.next_event()).await.unwrap();

    let refused = stack.open_stream(token).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");

    let metrics = reqwest::get(stack.waiting_room.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("waiting_room_streams_open 1"),
        "open streams gauge missing:\n{metrics}"
    );

    // A closed stream frees its slot (noticed at the latest on the next keep-alive).
    drop(open);
    within(PATIENCE, async {
        loop {
            let response = stack.open_stream(token).await;
            if response.status() == 200 {
                return;
            }
            assert_eq!(response.status(), 503);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    // A long grace: if streams held the server open, stopping would take a minute.
    let stack = Stack::start_with(|config| config.common.shutdown_grace_seconds = 60).await;
    let client = stack.client();
    client
        .put_event("sse-stop", event_body("paused", 1, 1000, 600))
        .await;
    let ticket = client.join_ok("sse-stop", None).await;
    let mut stream = stack.stream(ticket["token"].as_str().unwrap()).await;
    within(PATIENCE, stream.next_event()).await.unwrap();

    let Stack {
        waiting_room,
        activator,
        reservation,
        env,
    } = stack;
    within(PATIENCE, waiting_room.stop())
        .await
        .expect("the server stops cleanly");
    assert_eq!(
        within(PATIENCE, stream.next_frame()).await,
        None,
        "the stream ended with the server"
    );
    activator.stop().await.unwrap();
    reservation.stop().await.unwrap();
    drop(env);
}
