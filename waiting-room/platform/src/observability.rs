//! Logs and metrics: `tracing` subscriber set-up, the process-wide Prometheus recorder,
//! and the HTTP layer that gives every request a span and request metrics.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How `tracing` output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Latency buckets in seconds, fine-grained below 50 ms where the entry API lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default `info`).
/// Safe to call more than once (later calls are no-ops), which tests rely on.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist when a test binary links several services; the
        // handle still renders what this recorder saw.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Middleware: one span and one latency observation per request, labelled by the
/// matched route template (never the raw path, which would explode label cardinality).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!("http_request", %method, %route, status = tracing::field::Empty);
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status();
    span.record("status", status.as_u16());
    let metrics = RequestMetrics::of(route, &method, status);
    metrics.requests.increment(1);
    metrics.duration.record(started.elapsed());
    response
}

/// The request counter and latency histogram of one route, method and status.
#[derive(Clone)]
struct RequestMetrics {
    requests: Counter,
    duration: Histogram,
}

/// Registered handles by method and status, then route: registering builds the labels
/// and hashes the key on every call, a cost each request paid twice.
type RequestMetricsCache = HashMap<(Method, StatusCode), HashMap<Box<str>, RequestMetrics>>;

impl RequestMetrics {
    fn of(route: &str, method: &Method, status: StatusCode) -> Self {
        static CACHE: LazyLock<RwLock<RequestMetricsCache>> = LazyLock::new(Default::default);
        let cached = CACHE
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(method.clone(), status))
            .and_then(|routes| routes.get(route))
            .cloned();
        cached.unwrap_or_else(|| {
            let labels = [
                ("method", method.as_str().to_owned()),
                ("route", route.to_owned()),
                ("status", status.as_str().to_owned()),
            ];
            let registered = Self {
                requests: metrics::counter!("http_requests_total", &labels),
                duration: metrics::histogram!("http_request_duration_seconds", &labels),
            };
            CACHE
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((method.clone(), status))
                .or_default()
                .insert(route.into(), registered.clone());
            registered
        })
    }
}
