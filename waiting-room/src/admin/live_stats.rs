//! The operators' live stats stream, `GET /admin/events/{id}/stats/events`: one
//! aggregation per event per instance, however many consoles watch it.
//!
//! The first viewer of an event starts its aggregator; every [`STATS_INTERVAL`] it
//! reads the event's figures once (the admin view from Redis, the sale's figures from
//! PostgreSQL), derives the rates from the previous reading, and publishes the frame on
//! a `watch` channel that every viewer's stream follows. It stops when the last viewer
//! leaves, so an event nobody watches costs nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::Response;
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use super::catalog_store::{self, SaleFigures};
use super::handlers::event_view;
use super::requests;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// How often an event's figures are read while someone watches.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

type Frame = Option<Arc<Value>>;

/// The aggregators running on this instance, by event.
#[derive(Default)]
pub struct LiveStats {
    feeds: Mutex<HashMap<String, watch::Sender<Frame>>>,
}

impl LiveStats {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Frame>>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `event_id`'s frames, starting its aggregator if nobody watched it yet.
    fn subscribe(state: &SharedState, event_id: &str) -> watch::Receiver<Frame> {
        let mut feeds = state.live_stats.feeds();
        if let Some(feed) = feeds.get(event_id) {
            return feed.subscribe();
        }
        let (feed, frames) = watch::channel(None);
        feeds.insert(event_id.to_owned(), feed.clone());
        tokio::spawn(aggregate(state.clone(), event_id.to_owned(), feed));
        frames
    }
}

/// The counters the rates are derived from.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    joined: i64,
    activated: i64,
    abandoned: i64,
}

impl Reading {
    fn per_second(&self, previous: Option<&Reading>, count: impl Fn(&Reading) -> i64) -> f64 {
        previous
            .map(|previous| {
                let seconds = self.at.duration_since(previous.at).as_secs_f64();
                // A counter that went back (Redis lost it) is not a negative rate.
                let delta = (count(self) - count(previous)).max(0) as f64;
                if seconds > 0.0 {
                    delta / seconds
                } else {
                    0.0
                }
            })
            .unwrap_or(0.0)
    }
}

/// One frame of the stream.
#[derive(Serialize)]
struct StatsFrame {
    at: chrono::DateTime<Utc>,
    /// What `GET /admin/events/{id}` shows now.
    event: Value,
    joins_per_second: f64,
    activations_per_second: f64,
    abandonments_per_second: f64,
    sale: SaleFigures,
}

async fn aggregate(state: SharedState, event_id: String, feed: watch::Sender<Frame>) {
    let mut ticks = tokio::time::interval(STATS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Reading> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = state.shutdown.cancelled() => break,
        }
        {
            // Under the lock a new viewer either finds this feed (and keeps it alive)
            // or, once it is gone, starts a new one.
            let mut feeds = state.live_stats.feeds();
            if feed.receiver_count() == 0 {
                feeds.remove(&event_id);
                return;
            }
        }
        let frame = match read(&state, &event_id, &mut previous).await {
            Ok(frame) => frame,
            Err(WaitingRoomError::EventNotFound(_)) => json!({"gone": true}),
            Err(error) => {
                tracing::warn!(%event_id, %error, "cannot read the event's live stats");
                json!({"unavailable": error.to_string()})
            }
        };
        feed.send_replace(Some(Arc::new(frame)));
    }
    state.live_stats.feeds().remove(&event_id);
}

async fn read(
    state: &SharedState,
    event_id: &str,
    previous: &mut Option<Reading>,
) -> Result<Value, WaitingRoomError> {
    let event = event_view(state, &state.catalog.current(), event_id).await?;
    let sale = catalog_store::sale_figures(&state.postgres, event_id).await?;
    let counter = |name: &str| event[name].as_i64().unwrap_or(0);
    let reading = Reading {
        at: Instant::now(),
        joined: counter("joined"),
        activated: counter("activated"),
        abandoned: counter("abandoned"),
    };
    let frame = StatsFrame {
        at: Utc::now(),
        joins_per_second: reading.per_second(previous.as_ref(), |r| r.joined),
        activations_per_second: reading.per_second(previous.as_ref(), |r| r.activated),
        abandonments_per_second: reading.per_second(previous.as_ref(), |r| r.abandoned),
        event,
        sale,
    };
    *previous = Some(reading);
    serde_json::to_value(frame).map_err(WaitingRoomError::internal)
}

/// `GET /admin/events/{id}/stats/events`: a `stats` event per aggregation (`gone` once
/// the event no longer exists, which ends the stream).
#[utoipa::path(
    get,
    path = "/admin/events/{event_id}/stats/events",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "`stats` events, then `gone` when the event is deleted", content_type = "text/event-stream", body = String),
        (status = 404, description = "`event_not_found`"),
        (status = 422, description = "`invalid_request`: not an event id"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn stats_events(
    State(state): State<SharedState>,
    Path(raw_event_id): Path<String>,
) -> Result<Response, WaitingRoomError> {
    let event_id = requests::parse_event_id(&raw_event_id)?;
    if state.catalog.current().event(event_id.as_str()).is_none() {
        return Err(WaitingRoomError::EventNotFound(event_id.to_string()));
    }
    let frames = WatchStream::new(LiveStats::subscribe(&state, event_id.as_str()))
        .filter_map(|frame| async move { frame })
        .scan(false, |ended, frame| {
            let gone = frame.get("gone").is_some();
            let item = (!*ended).then(|| {
                let name = if gone { "gone" } else { "stats" };
                Ok::<_, Infallible>(Event::default().event(name).data(frame.to_string()))
            });
            *ended = gone;
            async move { item }
        });
    let shutdown = state.shutdown.clone();
    let frames = frames.take_until(async move { shutdown.cancelled().await });
    Ok(platform::sse::event_stream(frames, state.stream_keepalive))
}
