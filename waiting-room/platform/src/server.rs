//! Serving connections: what a client may hold and for how long.
//!
//! A connection must send each request's headers within `header_read_timeout` (the
//! same timer closes a keep-alive connection that sits idle between requests), so a
//! slowloris client cannot keep sockets open without a request. At most
//! `max_connections` are served at once, below the process's open-file limit: more are
//! closed as soon as they are accepted, so a flood of sockets cannot starve the service
//! of descriptors for its own database, Redis and Kafka connections. Accepted sockets
//! get TCP keepalive probes and, on Linux, `TCP_USER_TIMEOUT`, so a client that vanished
//! without a reset (a phone leaving coverage) frees its connection, its stream and its
//! "seen" within seconds, not the minutes the kernel defaults take. A connection whose
//! first request opens one of the service's event streams is served off hyper
//! ([`event_streams`](crate::event_streams)), which keeps an open stream small.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::event_streams::{self, EventStreamPaths};

/// Connections refused at the cap (counted from zero, so its rate is never absent).
const CONNECTIONS_REFUSED: &str = "http_connections_refused_total";

/// Descriptors kept back from the connection cap for the process's own use (database
/// pool, Redis, Kafka, files).
const RESERVED_DESCRIPTORS: u64 = 512;
/// Keepalive probes after the first one, one per `interval`, before the peer is dead.
const KEEPALIVE_RETRIES: u32 = 3;

/// How the server treats client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// Time a client has to send a request's headers, and the most a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Idle time before TCP keepalive probes start; probes follow at a third of it, and
    /// unacknowledged data aborts the connection after twice it (`TCP_USER_TIMEOUT`).
    pub keepalive: Duration,
}

impl ConnectionPolicy {
    /// `requested` connections at most, lowered (with a log line) to what the open-file
    /// limit leaves after the process's own descriptors; 0 asks for that maximum.
    pub fn connection_cap(requested: usize) -> usize {
        let available = open_file_limit()
            .map(|limit| limit.saturating_sub(RESERVED_DESCRIPTORS).max(16))
            .and_then(|available| usize::try_from(available).ok());
        match (requested, available) {
            (0, Some(available)) => available,
            (0, None) => 10_000,
            (requested, Some(available)) if requested > available => {
                tracing::warn!(
                    requested,
                    available,
                    "MAX_CONNECTIONS is above what the open-file limit allows; lowered"
                );
                available
            }
            (requested, _) => requested,
        }
    }
}

/// Raises the soft limit on open files to the hard one, as any process may: container
/// runtimes often start services at a soft 1,024 under a far higher hard limit, and
/// every open stream holds a descriptor. A failure leaves the limit as it was. Called
/// once at start, before the connection cap is read from the limit.
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct we pass, which
        // lives on this stack.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), where the platform tells it.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass, which lives on this stack.
        let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        (result == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `router` on `listener` until `shutdown`, then asks every connection to finish
/// its in-flight request and waits up to `grace` for them. Requests for `event_streams`
/// paths that open a connection are served off hyper.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    policy: ConnectionPolicy,
    event_streams: Option<EventStreamPaths>,
    shutdown: &CancellationToken,
    grace: Duration,
) {
    // HTTP/1.1 only (HTTP/2 ends at the proxy): sniffing for an h2c preface would wait
    // for a client's first bytes with no timeout at all.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout);
    let slots = Arc::new(Semaphore::new(policy.max_connections));
    let graceful = GracefulShutdown::new();
    metrics::gauge!("http_connections_limit").set(policy.max_connections as f64);
    metrics::counter!(CONNECTIONS_REFUSED).increment(0);
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: keep going.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        configure(&stream, policy.keepalive);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let shutdown = shutdown.clone();
        metrics::gauge!("http_connections_open").increment(1.0);
        tokio::spawn(async move {
            let mut stream = stream;
            // hyper's header timer starts with the first byte: a client that sends none
            // is timed out here (peek: readiness alone can be spurious).
            let mut first = [0u8; 1];
            if tokio::time::timeout(policy.header_read_timeout, stream.peek(&mut first))
                .await
                .is_ok_and(|peeked| peeked.is_ok_and(|bytes| bytes > 0))
            {
                let stream_request = match event_streams {
                    Some(paths) => event_streams::take_request(&mut stream, paths, remote).await,
                    None => None,
                };
                match stream_request {
                    Some(request) => {
                        event_streams::serve(stream, request, router, &shutdown).await;
                        // Held until here: shutdown waits for the stream to end.
                        drop(watcher);
                    }
                    None => {
                        let service = router.map_request(move |mut request: Request<Incoming>| {
                            request.extensions_mut().insert(ConnectInfo(remote));
                            request
                        });
                        let connection = builder.serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            TowerToHyperService::new(service),
                        );
                        // Boxed: this task's future is as large as its largest state, and
                        // an event stream's should not be a hyper connection's.
                        if let Err(error) = Box::pin(watcher.watch(connection)).await {
                            tracing::debug!(%error, %remote, "connection ended with an error");
                        }
                    }
                }
            }
            metrics::gauge!("http_connections_open").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "in-flight requests did not finish in time; exiting");
        }
    }
}

/// Keepalive probes and a bound on unacknowledged data, so a vanished peer is noticed.
fn configure(stream: &TcpStream, keepalive: Duration) {
    let socket = SockRef::from(stream);
    let probes = TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval((keepalive / 3).max(Duration::from_secs(1)))
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(error) = socket.set_tcp_keepalive(&probes) {
        tracing::debug!(%error, "cannot enable TCP keepalive");
    }
    #[cfg(target_os = "linux")]
    if let Err(error) = socket.set_tcp_user_timeout(Some(keepalive * 2)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        raise_open_file_limit();
        let Some(limit) = open_file_limit() else {
            return;
        };
        let available =
            usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS).max(16)).expect("fits");
        assert_eq!(ConnectionPolicy::connection_cap(0), available);
        assert_eq!(ConnectionPolicy::connection_cap(usize::MAX), available);
        assert_eq!(ConnectionPolicy::connection_cap(3), 3.min(available));
    }
}
