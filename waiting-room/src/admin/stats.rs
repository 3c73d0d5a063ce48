//! Live statistics of an event and its queue, read from Redis: the event's counters,
//! and the queue's load (also what decides whether a partition has drained).

use chrono::Utc;
use contract::catalog::QueueConfig;
use contract::queue;
use contract::redis_schema::{EventStats, QueueStats, ISSUED_MAX_MEMBER};
use serde::Serialize;

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// An observed rate older than this is history, not the current rate (the activator
/// only measures while its queue has tickets).
const RATE_FRESH_FOR_MS: i64 = 10_000;

/// Serving counter, highest issued number, active tickets, deferred tickets, observed
/// rate, when it was measured and the dead-lettered records.
type QueueReply = (
    Option<i64>,
    Option<f64>,
    i64,
    i64,
    (Option<f64>, Option<i64>, Option<i64>),
);

/// Where a queue stands now.
#[derive(Debug, Clone, Copy)]
pub struct QueueLoad {
    pub serving_number: i64,
    /// Tickets issued and not yet reached, plus the deferred ones the counter passed
    /// before anyone read them (they wait at the head of the line until read or
    /// abandoned).
    pub waiting: i64,
    pub active: i64,
    /// Activations per second, 0 when none was measured lately.
    pub rate_per_second: f64,
    /// Records of the queue set aside as unreadable (every event on it).
    pub dead_lettered: i64,
}

impl QueueLoad {
    /// Nothing waits and nothing is active: the queue has drained.
    pub fn drained(&self) -> bool {
        self.waiting == 0 && self.active == 0
    }
}

/// What `GET /admin/events/{id}` reports beside the configuration. A released event
/// (no queue any more) has only its counters; the queue's figures are 0, its serving
/// number `null`.
#[derive(Debug, Serialize)]
pub struct EventStatsView {
    pub joined: i64,
    pub waiting: i64,
    pub serving_number: Option<i64>,
    pub active: i64,
    pub activated: i64,
    pub abandoned: i64,
    pub reserved: i64,
    pub rate_per_second: f64,
    pub estimated_drain_seconds: Option<u64>,
    /// The queue's dead-lettered records (not attributable to one event: unreadable).
    pub queue_dead_lettered: i64,
    /// Half of this event's activated fans waited at most this long from join to
    /// active (seconds, a histogram bucket's upper bound); `null` before any.
    pub wait_p50_seconds: Option<u32>,
    /// 95 % of them waited at most this long.
    pub wait_p95_seconds: Option<u32>,
}

/// The queue's figures, read in one pipeline.
pub async fn queue_load(
    state: &SharedState,
    partition: i32,
) -> Result<QueueLoad, WaitingRoomError> {
    let keys = state.tickets.keys();
    let now_ms = Utc::now().timestamp_millis();
    let (serving, issued, active, deferred, (rate, rate_at, dead_lettered)): QueueReply =
        redis::pipe()
            .get(keys.serving(partition))
            .zscore(keys.issued_max(partition), ISSUED_MAX_MEMBER)
            .zcount(keys.active_set(partition), format!("({now_ms}"), "+inf")
            .zcard(keys.deferred(partition))
            .cmd("HMGET")
            .arg(keys.queue_stats(partition))
            .arg(QueueStats::RATE)
            .arg(QueueStats::RATE_AT)
            .arg(QueueStats::DEAD_LETTERED)
            .query_async(&mut state.redis.clone())
            .await
            .map_err(|error| state.store_unavailable(error))?;
    let serving = serving.unwrap_or(0);
    // (A sorted-set score: exact for any offset below 2^53.)
    let waiting = issued.map_or(0, |issued| (issued as i64 + 1 - serving).max(0)) + deferred;
    Ok(QueueLoad {
        serving_number: serving,
        waiting,
        active,
        rate_per_second: rate
            .filter(|_| rate_at.is_some_and(|at| now_ms - at <= RATE_FRESH_FOR_MS))
            .unwrap_or(0.0),
        dead_lettered: dead_lettered.unwrap_or(0),
    })
}

/// The statistics of `event_id`, whose queue (if it still has one) is `queue_config`'s.
pub async fn event_stats(
    state: &SharedState,
    event_id: &str,
    queue_config: Option<&QueueConfig>,
) -> Result<EventStatsView, WaitingRoomError> {
    let event_counters = state
        .tickets
        .event_counters(event_id, queue_config.map(|queue| queue.partition))
        .await
        .map_err(|error| state.store_unavailable(error))?;
    let counter = |name: &str| {
        event_counters
            .iter()
            .find(|(field, _)| field == name)
            .map_or(0, |(_, value)| *value)
    };
    let (load, drain) = match queue_config {
        Some(queue_config) => {
            let load = queue_load(state, queue_config.partition).await?;
            // Time to reach everyone now waiting (in the queue, shared by every event
            // on it): at the observed rate, or the policy's before there is one;
            // unknown while the queue is paused.
            let drain = if load.waiting == 0 {
                Some(0)
            } else {
                queue::estimated_wait_seconds(
                    load.waiting - 1,
                    queue_config.mode,
                    &queue_config.activation,
                    Some(load.rate_per_second),
                )
            };
            (Some(load), drain)
        }
        None => (None, Some(0)),
    };
    Ok(EventStatsView {
        joined: counter(EventStats::JOINED),
        waiting: load.map_or(0, |load| load.waiting),
        serving_number: load.map(|load| load.serving_number),
        active: load.map_or(0, |load| load.active),
        activated: counter(EventStats::ACTIVATED),
        abandoned: counter(EventStats::ABANDONED),
        reserved: counter(EventStats::RESERVED),
        rate_per_second: load.map_or(0.0, |load| load.rate_per_second),
        estimated_drain_seconds: drain,
        queue_dead_lettered: load.map_or(0, |load| load.dead_lettered),
        wait_p50_seconds: EventStats::wait_percentile(&event_counters, 50.0),
        wait_p95_seconds: EventStats::wait_percentile(&event_counters, 95.0),
    })
}
