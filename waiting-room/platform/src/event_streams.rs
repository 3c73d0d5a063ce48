//! Long-lived event streams served off hyper, so an open stream costs a few hundred
//! bytes and not hyper's per-connection buffers.
//!
//! hyper keeps a read buffer and a write buffer of 8 KiB each for every HTTP/1
//! connection for as long as it lives, with no setting to shrink them; a stream that
//! sends a few hundred bytes a second for minutes holds them all that time, and they
//! were most of what 20,000 streams cost an instance. A connection whose first request
//! asks for one of the service's stream routes ([`EventStreamPaths`]) is therefore
//! served here: its request head is parsed from the socket (it must have arrived whole,
//! or hyper serves the connection as any other), the router answers it as usual
//! (middleware, extractors, errors), and the response is written straight to the socket
//! with `Connection: close` and no framing (its end is the connection's end), one event
//! at a time as the body yields them. A client that goes away is noticed at once (a read
//! returns end of file), as hyper would notice it. Anything unusual for an `EventSource`
//! request (another method, a body, an upgrade, `Expect`, an incomplete or oversized
//! head) is left to hyper.

use std::net::SocketAddr;

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri, Version};
use axum::Router;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Which request paths are the service's event streams (matched before routing).
pub type EventStreamPaths = fn(&str) -> bool;

/// The largest request head served here; browsers send well under 1 KiB.
const MAX_HEAD_BYTES: usize = 4096;
/// The most request headers served here.
const MAX_HEADERS: usize = 48;

/// The connection's first request when it is a stream request, taken off the socket;
/// `None` (nothing consumed) when hyper should serve the connection.
pub(crate) async fn take_request(
    stream: &mut TcpStream,
    is_stream: EventStreamPaths,
    remote: SocketAddr,
) -> Option<Request<Body>> {
    // On the heap, and only while the head is read: the connection's task keeps the
    // largest state it ever had for as long as it lives.
    let mut head = vec![0; MAX_HEAD_BYTES];
    let peeked = stream.peek(&mut head).await.ok()?;
    let (mut request, length) = parse(&head[..peeked], is_stream)?;
    stream.read_exact(&mut head[..length]).await.ok()?;
    request.extensions_mut().insert(ConnectInfo(remote));
    Some(request)
}

/// A stream request and the length of its head, from the bytes received so far.
fn parse(bytes: &[u8], is_stream: EventStreamPaths) -> Option<(Request<Body>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(length) = parsed.parse(bytes).ok()? else {
        return None;
    };
    let uri: Uri = parsed.path?.parse().ok()?;
    if parsed.method? != "GET" || !is_stream(uri.path()) {
        return None;
    }
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder().uri(uri).version(version);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let has_body =
            (name == "content-length" && header.value != b"0") || name == "transfer-encoding";
        if has_body || name == "upgrade" || name == "expect" {
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    Some((request.body(Body::empty()).ok()?, length))
}

/// Answers `request` with `router` and writes the response to `stream` as the body
/// yields it, until the body ends, the client goes away or `shutdown`.
pub(crate) async fn serve(
    mut stream: TcpStream,
    request: Request<Body>,
    router: Router,
    shutdown: &CancellationToken,
) {
    // The head and each event are separate small writes: without this, Nagle's algorithm
    // would hold the first event back until the client acknowledged the head.
    let _ = stream.set_nodelay(true);
    // Boxed: the router's future is large and done once the response starts.
    let Ok(response) = Box::pin(router.oneshot(request)).await;
    let (head, body) = response_head(response);
    let (mut reader, mut writer) = stream.split();
    if writer.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    let mut body = body.into_data_stream();
    // The client sends nothing more after its request: a read ends with its going away
    // (end of file or reset). Bytes it does send are not read on, as hyper would not.
    let mut probe = [0u8; 1];
    let mut listening = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            read = reader.read(&mut probe), if listening => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => listening = false,
            },
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "event stream body failed");
                    break;
                }
                None => break,
            },
        }
    }
    let _ = writer.shutdown().await;
}

/// The response's status line and headers, for a body that ends with the connection
/// (with its length when the body knows it, as an error's does); and the body.
fn response_head(response: Response<Body>) -> (Vec<u8>, Body) {
    let (parts, body) = response.into_parts();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == "connection" || name == "transfer-encoding" || name == "content-length" {
            continue;
        }
        header_line(&mut head, name.as_str(), value.as_bytes());
    }
    if let Some(length) = body.size_hint().exact() {
        header_line(&mut head, "content-length", length.to_string().as_bytes());
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    header_line(&mut head, "date", date.as_bytes());
    header_line(&mut head, "connection", b"close");
    head.extend_from_slice(b"\r\n");
    (head, body)
}

fn header_line(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(path: &str) -> bool {
        path.ends_with("/events")
    }

    #[test]
    fn a_whole_get_of_a_stream_path_is_taken_with_its_headers() {
        let head = b"GET /v1/x/events?a=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let (request, length) = parse(&bytes, streams).expect("a stream request");
        assert_eq!(length, head.len());
        assert_eq!(request.uri(), "/v1/x/events?a=1");
        assert_eq!(request.headers()["accept"], "text/event-stream");
        assert_eq!(request.version(), Version::HTTP_11);
    }

    #[test]
    fn anything_else_is_left_to_hyper() {
        for head in [
            &b"GET /v1/x/events HTTP/1.1\r\nHost: h\r\n"[..],
            b"GET /v1/x HTTP/1.1\r\n\r\n",
            b"POST /v1/x/events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /v1/x/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/x/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /v1/x/events HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                parse(head, streams).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn the_head_closes_the_connection_and_gives_a_known_length() {
        let response = Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .header("connection", "keep-alive")
            .body(Body::from("{}"))
            .expect("response");
        let (head, _) = response_head(response);
        let head = String::from_utf8(head).expect("text");
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
        assert!(head.contains("content-type: application/json\r\n"));
        assert!(head.contains("content-length: 2\r\n"));
        assert!(head.ends_with("connection: close\r\n\r\n"));
        assert!(!head.contains("keep-alive"));
    }
}
