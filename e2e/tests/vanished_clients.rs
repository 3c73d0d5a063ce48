//! A fan whose client vanished without a TCP reset (its packets stop, nothing closes
//! the socket) loses its live stream, and with it its presence, within about twice
//! `TCP_KEEPALIVE_SECONDS`: the keep-alives the server keeps writing go unacknowledged
//! and `TCP_USER_TIMEOUT` ends the connection. A fan that is there but quiet keeps its
//! stream as long as it likes. The packets are really lost (an nftables rule on the
//! vanished client's port), so only the kernel's own timers can notice.

mod support;

use std::time::Duration;

use support::{event_body, Stack};
use testkit::firewall::SilencedPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_client_that_stops_answering_loses_its_stream_and_a_quiet_one_keeps_its_own() {
    let stack = Stack::start_with(|config| {
        config.stream_keepalive_seconds = 1;
        config.common.tcp_keepalive_seconds = 2;
    })
    .await;
    let client = stack.client();
    client
        .put_event("sse-vanish", event_body("paused", 1, 1000, 600))
        .await;
    let quiet = client.join_ok("sse-vanish", None).await;
    let vanishing = client.join_ok("sse-vanish", None).await;
    let mut quiet = open_stream(&stack, quiet["token"].as_str().unwrap()).await;
    let vanishing = open_stream(&stack, vanishing["token"].as_str().unwrap()).await;
    assert_eq!(open_streams(&stack).await, 2.0);

    // Longer than the user timeout (4 s): streams whose clients answer stay open.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        open_streams(&stack).await,
        2.0,
        "a connected client's stream was closed"
    );

    let _silenced = SilencedPort::drop_all(vanishing.local_addr().unwrap().port());
    testkit::wait::until_true(
        "the vanished client's stream is closed",
        PATIENCE,
        || async { open_streams(&stack).await == 1.0 },
    )
    .await;
    // The quiet fan's stream still delivers: past what it had already received, a new
    // keep-alive arrives.
    let mut buffer = [0u8; 4096];
    while quiet.try_read(&mut buffer).is_ok_and(|read| read > 0) {}
    let read = tokio::time::timeout(PATIENCE, quiet.read(&mut buffer))
        .await
        .expect("the quiet stream still sends keep-alives")
        .unwrap();
    assert!(read > 0, "the quiet stream ended");
    drop(vanishing);
    stack.stop().await;
}

/// A ticket's stream on a raw connection (its local port is what the firewall silences),
/// read up to its first event.
async fn open_stream(stack: &Stack, token: &str) -> TcpStream {
    let address = stack.waiting_room.base_url.trim_start_matches("http://");
    let mut connection = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v1/tickets/{token}/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("event: position") {
        let read = tokio::time::timeout(PATIENCE, connection.read(&mut buffer))
            .await
            .expect("the stream's first event in time")
            .unwrap();
        assert!(read > 0, "the stream ended before its first event");
        received.extend_from_slice(&buffer[..read]);
    }
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    connection
}

async fn open_streams(stack: &Stack) -> f64 {
    stack
        .waiting_room
        .metric("waiting_room_streams_open")
        .await
        .unwrap_or(0.0)
}
