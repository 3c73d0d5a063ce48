//! Server-sent event responses as every service sends them: a keep-alive comment at the
//! configured interval (so idle streams survive proxies' read timeouts), and a header
//! telling nginx-style proxies not to buffer the stream, which would hold every event
//! until a buffer fills.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

/// nginx (and ingress-nginx) stop buffering a response that carries this header.
const NO_PROXY_BUFFERING: (HeaderName, &str) = (HeaderName::from_static("x-accel-buffering"), "no");

/// An event-stream response of `events`, with a keep-alive comment every `keep_alive`.
pub fn event_stream<S>(events: S, keep_alive: Duration) -> Response
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let stream = Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive));
    ([NO_PROXY_BUFFERING], stream).into_response()
}
