//! The operators' Grafana dashboard and Prometheus alert rules name only metrics the
//! services really export: every metric in `deploy/grafana/dashboards/*.json` and
//! `deploy/prometheus/alerts.yml` is found in the three services' `/metrics` once a
//! fan has joined and been let in. (`promtool check rules` checks the rules' syntax in
//! the test command.)

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{buy, Stack};

const PATIENCE: Duration = Duration::from_secs(30);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The metric names in PromQL expressions: identifiers with an underscore that are not
/// functions (followed by `(`), outside quoted label values. Label names here have no
/// underscore and `up` is Prometheus's own.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let unquoted: String = expression
        .split('"')
        .enumerate()
        .filter(|(index, _)| index % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join(" ");
    let characters: Vec<char> = unquoted.chars().collect();
    let mut start = 0;
    while start < characters.len() {
        if !(characters[start].is_ascii_alphabetic() || characters[start] == '_') {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < characters.len()
            && (characters[end].is_ascii_alphanumeric() || characters[end] == '_')
        {
            end += 1;
        }
        let word: String = characters[start..end].iter().collect();
        let next = characters[end..].iter().find(|c| !c.is_whitespace());
        if word.contains('_') && next != Some(&'(') {
            names.insert(word);
        }
        start = end;
    }
    names
}

/// The expressions of the dashboards' panels.
fn dashboard_expressions() -> Vec<String> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut expressions = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/grafana/dashboards") {
        let path = entry.expect("dashboard file").path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
                .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                expressions.push(target["expr"].as_str().expect("a PromQL expr").to_owned());
            }
        }
    }
    expressions
}

/// The `expr:` values of the alert rules, single-line or folded (`>-`).
fn rule_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml");
    let lines: Vec<&str> = text.lines().collect();
    let mut expressions = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((indent, value)) = line.split_once("expr:") else {
            continue;
        };
        let value = value.trim();
        if value != ">-" && value != ">" && value != "|" {
            expressions.push(value.to_owned());
            continue;
        }
        let folded: Vec<&str> = lines[index + 1..]
            .iter()
            .take_while(|next| {
                next.trim().is_empty() || next.len() - next.trim_start().len() > indent.len()
            })
            .map(|next| next.trim())
            .collect();
        expressions.push(folded.join(" "));
    }
    expressions
}

/// The series' names in a Prometheus text exposition.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(stack: &Stack) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for service in [&stack.waiting_room, &stack.activator, &stack.reservation] {
        let body = reqwest::get(service.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        names.extend(exported(&body));
    }
    names
}

#[test]
fn the_extraction_finds_metrics_and_skips_functions_and_label_values() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{route="/v1/events/{event_id}/tickets"}[1m]))) / max by (instance) (waiting_room_streams_limit)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "http_request_duration_seconds_bucket",
            "waiting_room_streams_limit"
        ]
    );
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_the_alerts_is_exported() {
    let dashboard = dashboard_expressions();
    let rules = rule_expressions();
    assert!(dashboard.len() >= 20, "dashboard targets: {dashboard:?}");
    assert!(rules.len() >= 8, "alert rules: {rules:?}");
    let wanted: BTreeSet<String> = dashboard
        .iter()
        .chain(&rules)
        .flat_map(|expression| metric_names(expression))
        .collect();
    assert!(wanted.len() >= 25, "metrics named: {wanted:?}");

    // One fan joins a passthrough event, is let in, holds and confirms a seat: every
    // path the charts follow runs once.
    let stack = Stack::start().await;
    let client = stack.client();
    client
        .put_event(
            "dashboards",
            json!({
                "name": "Dashboard test",
                "state": "passthrough",
                "activation": {"batch_size": 10, "interval_ms": 100, "grace_seconds": 600},
                "seats": {"rows": 1, "seats_per_row": 2},
            }),
        )
        .await;
    let ticket = client.join_ok("dashboards", None).await;
    let token = ticket["token"].as_str().expect("token").to_owned();
    let started = Instant::now();
    loop {
        let status: Value = client.status(&token).await.json().await.expect("status");
        if status["state"] == "active" {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never active: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    buy(&stack, "dashboards", &token, &["A-1"]).await;

    // The consumer lag comes with librdkafka's statistics, every few seconds.
    let started = Instant::now();
    let missing = loop {
        let found = scrape(&stack).await;
        let missing: Vec<&String> = wanted.difference(&found).collect();
        if missing.is_empty() || started.elapsed() > PATIENCE {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}"
    );
    stack.stop().await;
}
