//! What the load tools (`sse-load`, `seat-load`, `chaos-load`) share: the stack they run
//! against and the event of their own they create there, joining many real tickets as
//! many fans, the event's seats, reading a process's memory, percentiles and the
//! report's counts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;

/// Where the running stack's waiting-room and its admin token are.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// Waiting-room base URL.
    #[arg(
        long,
        env = "WAITING_ROOM_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub waiting_room_url: String,
    /// File holding the admin token (the local stack's generated secret).
    #[arg(
        long,
        env = "ADMIN_TOKEN_FILE",
        default_value = ".local/secrets/admin-token"
    )]
    pub admin_token_file: PathBuf,
}

/// A load tool's own event (`{prefix}-{unix time}`), changed through the admin API.
pub struct LoadEvent {
    pub event_id: String,
    url: String,
    admin_token: String,
    http: reqwest::Client,
}

impl LoadEvent {
    /// Creates the event from `body`; with the event as the admin API answers it.
    pub async fn create(
        stack: &StackArgs,
        http: &reqwest::Client,
        prefix: &str,
        body: &Value,
    ) -> anyhow::Result<(Self, Value)> {
        let admin_token = std::fs::read_to_string(&stack.admin_token_file)
            .with_context(|| format!("read {}", stack.admin_token_file.display()))?
            .trim()
            .to_owned();
        let event_id = format!("{prefix}-{}", chrono::Utc::now().timestamp());
        let event = Self {
            url: format!("{}/admin/events/{event_id}", stack.waiting_room_url),
            event_id,
            admin_token,
            http: http.clone(),
        };
        let created = event.update(body).await?;
        Ok((event, created))
    }

    /// Applies `body` (a new state, say).
    pub async fn update(&self, body: &Value) -> anyhow::Result<Value> {
        Ok(self
            .http
            .put(&self.url)
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// A distinct private address per fan: 10.a.b.c.
pub fn fan_address(index: usize) -> String {
    let [_, a, b, c] = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
    format!("10.{a}.{b}.{c}")
}

/// Joins `count` tickets of `event_id`, `concurrency` at a time; their tokens.
pub async fn join_tickets(
    http: &reqwest::Client,
    base_url: &str,
    event_id: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let url = format!("{base_url}/v1/events/{event_id}/tickets");
    let joined = AtomicUsize::new(0);
    let (url, joined) = (&url, &joined);
    let tokens: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
        .map(|index| async move {
            // Each fan from its own address (the local stack trusts loopback as a proxy),
            // so the join rate limits see many clients, as in a real sale.
            let body: serde_json::Value = http
                .post(url)
                .header("x-forwarded-for", fan_address(index))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let done = joined.fetch_add(1, Ordering::Relaxed) + 1;
            if done.is_multiple_of(5_000) {
                eprintln!("  {done} joined");
            }
            body["token"]
                .as_str()
                .map(str::to_owned)
                .context("token in the join response")
        })
        .buffered(concurrency)
        .collect()
        .await;
    tokens.into_iter().collect()
}

/// The seat ids of `event_id`'s layout, in the seat map's order.
pub async fn seat_ids(
    http: &reqwest::Client,
    reservation_url: &str,
    event_id: &str,
) -> anyhow::Result<Vec<String>> {
    let map: Value = http
        .get(format!("{reservation_url}/v1/events/{event_id}/seats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    map["seats"]
        .as_array()
        .context("seats in the map")?
        .iter()
        .map(|seat| {
            seat["seat_id"]
                .as_str()
                .map(str::to_owned)
                .context("seat_id")
        })
        .collect()
}

/// The innermost error, without the request URL (which may hold a token).
pub fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The resident memory of process `pid`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `fraction` percentile of `sorted` (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// `a 3, b 1`, sorted by name.
pub fn format_counts(counts: &HashMap<&str, usize>) -> String {
    let mut entries: Vec<_> = counts.iter().collect();
    entries.sort();
    entries
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
