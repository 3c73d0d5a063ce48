//! Live statistics of an event and its queue, read from Redis in one pipeline.

use chrono::Utc;
use contract::catalog::{EventConfig, QueueConfig};
use contract::queue;
use contract::redis_schema::{EventStats, QueueStats, ISSUED_MAX_MEMBER};
use serde::Serialize;

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// An observed rate older than this is history, not the current rate (the activator
/// only measures while its queue has tickets).
const RATE_FRESH_FOR_MS: i64 = 10_000;

/// Event counters, serving counter, highest issued number, active tickets, deferred
/// tickets, observed rate and when it was measured.
type StatsReply = (
    Vec<(String, i64)>,
    Option<i64>,
    Option<f64>,
    i64,
    i64,
    (Option<f64>, Option<i64>),
);

/// What `GET /admin/events/{id}` reports beside the configuration.
#[derive(Debug, Serialize)]
pub struct EventStatsView {
    pub joined: i64,
    pub waiting: i64,
    pub serving_number: i64,
    pub active: i64,
    pub activated: i64,
    pub abandoned: i64,
    pub reserved: i64,
    pub rate_per_second: f64,
    pub estimated_drain_seconds: Option<u64>,
}

pub async fn event_stats(
    state: &SharedState,
    event: &EventConfig,
    queue_config: &QueueConfig,
) -> Result<EventStatsView, WaitingRoomError> {
    let keys = state.tickets.keys();
    let partition = event.partition;
    let now_ms = Utc::now().timestamp_millis();
    let (event_counters, serving, issued, active, deferred, (rate, rate_at)): StatsReply =
        redis::pipe()
            .hgetall(keys.event_stats(event.event_id.as_str()))
            .get(keys.serving(partition))
            .zscore(keys.issued_max(partition), ISSUED_MAX_MEMBER)
            .zcount(keys.active_set(partition), format!("({now_ms}"), "+inf")
            .zcard(keys.deferred(partition))
            .cmd("HMGET")
            .arg(keys.queue_stats(partition))
            .arg(QueueStats::RATE)
            .arg(QueueStats::RATE_AT)
            .query_async(&mut state.redis.clone())
            .await
            .map_err(|error| state.store_unavailable(error))?;
    let counter = |name: &str| {
        event_counters
            .iter()
            .find(|(field, _)| field == name)
            .map_or(0, |(_, value)| *value)
    };
    let serving = serving.unwrap_or(0);
    // Tickets issued but not yet reached in this event's queue (shared by every event on
    // it), plus the deferred ones the counter passed before anyone read them: they wait
    // at the head of the line until read or abandoned.
    // (A sorted-set score: exact for any offset below 2^53.)
    let waiting = issued.map_or(0, |issued| (issued as i64 + 1 - serving).max(0)) + deferred;
    let observed_rate = rate
        .filter(|_| rate_at.is_some_and(|at| now_ms - at <= RATE_FRESH_FOR_MS))
        .unwrap_or(0.0);
    // Time to reach everyone now waiting: at the observed rate, or the policy's before
    // there is one; unknown while the queue is paused.
    let drain = if waiting == 0 {
        Some(0)
    } else {
        queue::estimated_wait_seconds(
            waiting - 1,
            queue_config.mode,
            &queue_config.activation,
            Some(observed_rate),
        )
    };
    Ok(EventStatsView {
        joined: counter(EventStats::JOINED),
        waiting,
        serving_number: serving,
        active,
        activated: counter(EventStats::ACTIVATED),
        abandoned: counter(EventStats::ABANDONED),
        reserved: counter(EventStats::RESERVED),
        rate_per_second: observed_rate,
        estimated_drain_seconds: drain,
    })
}
