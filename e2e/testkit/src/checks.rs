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
