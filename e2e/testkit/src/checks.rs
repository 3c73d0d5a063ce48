//! Assertions every service must pass: its operational routes and its `--help`.

use clap::CommandFactory;
use contract::config::ServiceConfig;

use crate::service::{RunningService, Settings};

/// Checks the operational surface every service shares against a running service:
/// `/healthz` 200, `/readyz` 200 with every named dependency ok, `/metrics` counting
/// requests by route template and status, and JSON errors for unknown routes.
pub async fn assert_operational_endpoints(service: &RunningService, dependencies: &[&str]) {
    let http = reqwest::Client::new();
    let health = http
        .get(service.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);

    let ready = http
        .get(service.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.expect("readyz body is JSON");
    assert_eq!(status, 200, "not ready: {body}");
    for dependency in dependencies {
        assert_eq!(
            body["checks"][dependency], "ok",
            "{dependency} check in {body}"
        );
    }

    let missing = http
        .get(service.url("/no/such/route"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("404 body is JSON");
    assert_eq!(body["error"]["code"], "route_not_found");

    let metrics = http
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    assert!(
        text.lines()
            .any(|line| line.starts_with("http_requests_total")
                && line.contains(r#"route="/readyz""#)
                && line.contains(r#"status="200""#)),
        "request counter by route and status missing from:\n{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "latency histogram missing from:\n{text}"
    );
}

/// Runs a service binary with `--help` and checks that every environment variable its
/// settings `C` read is documented there (the list comes from `C` itself, so a new
/// setting is checked without touching the test).
pub fn assert_help_documents<C: ServiceConfig>(binary: &str) {
    let settings = Settings::<C>::command();
    let variables: Vec<String> = settings
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|variable| variable.to_string_lossy().into_owned())
        .collect();
    assert!(
        variables.iter().any(|variable| variable == "DATABASE_URL"),
        "the settings list no common variables: {variables:?}"
    );
    let output = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .expect("run the binary with --help");
    assert!(output.status.success(), "--help failed");
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in variables {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help does not document {variable}:\n{help}"
        );
    }
}

/// A fan page's security headers: scripts, styles and requests only from its own origin,
/// never framed, no referrer.
pub fn assert_page_headers(response: &reqwest::Response) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            policy.contains(directive),
            "{directive} missing from {policy:?}"
        );
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(header("content-type").starts_with("text/html"));
}

/// The origin [`assert_cors`] expects a service to allow (`CORS_ALLOWED_ORIGINS`).
pub const ALLOWED_ORIGIN: &str = "https://shop.example";

/// The browser's question before a cross-origin `method` on `path` from `origin`,
/// with the `Authorization` and `Content-Type` headers.
pub async fn cors_preflight(
    service: &RunningService,
    origin: &str,
    method: &str,
    path: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, service.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight")
}

/// Checks the public API's cross-origin allow-list on a service started with
/// [`ALLOWED_ORIGIN`] allowed: a preflight for `method` on `api_path` from that origin is
/// answered (origin, method, the `Authorization` header), a simple `GET` on `readable`
/// carries the origin and `Vary: origin`; the same preflight from another origin, and
/// one on `closed_path` (not the public API) from the allowed origin, get no CORS
/// headers, so the browser refuses the call.
pub async fn assert_cors(
    service: &RunningService,
    method: &str,
    api_path: &str,
    readable: &str,
    closed_path: &str,
) {
    let http = reqwest::Client::new();
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().expect("ASCII header").to_ascii_lowercase())
    };

    let allowed = cors_preflight(service, ALLOWED_ORIGIN, method, api_path).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains(&method.to_ascii_lowercase()), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(headers.contains("authorization"), "{headers}");

    let read = http
        .get(service.url(readable))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .expect("GET with an origin");
    assert_eq!(
        header(&read, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    assert!(
        header(&read, "vary").is_some_and(|vary| vary.contains("origin")),
        "caches must keep answers per origin"
    );

    for (origin, path) in [
        ("https://evil.example", api_path),
        (ALLOWED_ORIGIN, closed_path),
    ] {
        let refused = cors_preflight(service, origin, method, path).await;
        assert_eq!(
            header(&refused, "access-control-allow-origin"),
            None,
            "{origin} may call {path}"
        );
    }
}
