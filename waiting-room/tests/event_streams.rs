//! Which connections the lean stream path serves, on the wire: a connection whose first
//! request is a ticket stream gets a close-delimited response written off hyper; a
//! stream asked for later on a keep-alive connection, or any stream with
//! `LEAN_STREAMS=false`, is hyper's (chunked). Against the real Kafka, Redis and
//! PostgreSQL.

mod support;

use std::time::Duration;

use serde_json::json;
use testkit::client::WaitingRoomClient;
use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// The response head of the next response on `connection` (lower-cased), reading on
/// past a body of `Content-Length` bytes when the head announces one.
async fn next_head(connection: &mut TcpStream, buffered: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buffered.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|length| length.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buffered.len() < end + 4 + length {
                read_more(connection, buffered).await;
            }
            buffered.drain(..end + 4 + length);
            return head;
        }
        read_more(connection, buffered).await;
    }
}

async fn read_more(connection: &mut TcpStream, buffered: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, connection.read(&mut chunk))
        .await
        .expect("the server answers")
        .expect("read");
    assert!(read > 0, "the server closed the connection early");
    buffered.extend_from_slice(&chunk[..read]);
}

async fn a_ticket(env: &TestEnv, lean_streams: bool) -> (testkit::RunningService, String) {
    let mut config = support::waiting_room_config(env);
    config.lean_streams = lean_streams;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, env);
    client.put_event("wire", json!({"name": "Wire"})).await;
    let ticket = client.join_ok("wire", Some("fan")).await;
    let token = ticket["token"].as_str().expect("token").to_owned();
    (service, token)
}

async fn connect(service: &testkit::RunningService) -> TcpStream {
    let address = service
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    TcpStream::connect(address).await.expect("connect")
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn a_first_stream_request_is_served_off_hyper_and_a_later_one_by_hyper() {
    let env = TestEnv::new().await;
    let (service, token) = a_ticket(&env, true).await;
    let stream_path = format!("/v1/tickets/{token}/events");

    // The connection's first request: the lean path (close-delimited, no framing).
    let mut lean = connect(&service).await;
    lean.write_all(&get(&stream_path)).await.expect("write");
    let head = next_head(&mut lean, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // A status read first, then the stream on the same connection: hyper's (chunked).
    let mut kept = connect(&service).await;
    let mut buffered = Vec::new();
    kept.write_all(&get(&format!("/v1/tickets/{token}")))
        .await
        .expect("write");
    let status_head = next_head(&mut kept, &mut buffered).await;
    assert!(status_head.starts_with("http/1.1 200"), "{status_head}");
    kept.write_all(&get(&stream_path)).await.expect("write");
    let head = next_head(&mut kept, &mut buffered).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    drop((lean, kept));
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn with_lean_streams_off_every_stream_is_hyper_s() {
    let env = TestEnv::new().await;
    let (service, token) = a_ticket(&env, false).await;
    let mut connection = connect(&service).await;
    connection
        .write_all(&get(&format!("/v1/tickets/{token}/events")))
        .await
        .expect("write");
    let head = next_head(&mut connection, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    drop(connection);
    service.stop().await.expect("clean shutdown");
}
