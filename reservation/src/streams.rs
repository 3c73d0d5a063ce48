//! Live pushes over SSE, fed by the instance's [`ChangeFeed`] (PostgreSQL
//! notifications), so a change made by any instance reaches every instance's streams.
//!
//! - `GET /v1/reservations/{id}/events`: a `status` event on connect and on every change,
//!   ending after `confirmed`, `released` or `expired`.
//! - `GET /v1/events/{event_id}/seats/events`: the seat map (`seats` event) on connect
//!   and after changes, or only the changed seats (`seat_changes`) with `diffs=true`;
//!   every viewer of an event is served from one live copy ([`SeatMaps`]).
//!
//! Both end when the server shuts down.
//!
//! [`ChangeFeed`]: crate::changes::ChangeFeed
//! [`SeatMaps`]: crate::seat_maps::SeatMaps

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform::error::Query;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::api::parse_reservation_id;
use crate::changes::Change;
use crate::error::ReservationError;
use crate::seat_maps::{Latest, Reading, SeatMapCopy};
use crate::state::SharedState;
use crate::store::{Reservation, ReservationStatus};

fn sse_response<S>(state: &SharedState, stream: S) -> Response
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    platform::sse::event_stream(stream, state.stream_keepalive)
}

/// Waits for the next change `wanted` cares about; `None` at shutdown or when the feed
/// is gone. A lagging receiver treats the gap as a change (it re-reads).
async fn next_change(
    state: &SharedState,
    changes: &mut BroadcastStream<Change>,
    wanted: impl Fn(&Change) -> bool,
) -> Option<()> {
    loop {
        let received = tokio::select! {
            () = state.shutdown.cancelled() => return None,
            received = changes.next() => received?,
        };
        match received {
            Ok(Change::Resync) | Err(BroadcastStreamRecvError::Lagged(_)) => return Some(()),
            Ok(change) if wanted(&change) => return Some(()),
            Ok(_) => {}
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/reservations/{reservation_id}/events",
    tag = "reservations",
    params(("reservation_id" = String, Path, description = "The reservation's id (a UUID)")),
    responses(
        (status = 200, description = "`status` events (the reservation) until its status is final", content_type = "text/event-stream", body = String),
        (status = 404, description = "`not_found`: no such reservation, or not a reservation id"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn reservation_events(
    State(state): State<SharedState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ReservationError> {
    let reservation_id = parse_reservation_id(&raw_id)?;
    // Subscribe first: a change between the read and the subscription is not lost.
    let changes = BroadcastStream::new(state.changes.subscribe());
    let first = read_reservation(&state, reservation_id)
        .await?
        .ok_or(ReservationError::ReservationNotFound)?;
    let initial = (
        state.clone(),
        changes,
        Some(first),
        None::<(ReservationStatus, DateTime<Utc>)>,
    );
    let stream = futures::stream::unfold(
        initial,
        move |(state, mut changes, mut pending, last_sent)| async move {
            loop {
                if let Some(reservation) = pending.take() {
                    let key = (reservation.status, reservation.updated_at);
                    // An unchanged row (a resync, a lagging receiver) sends nothing.
                    if last_sent != Some(key) {
                        let event = status_event(&reservation);
                        return Some((Ok(event), (state, changes, None, Some(key))));
                    }
                }
                if last_sent.is_some_and(|(status, _)| status.is_final()) {
                    return None;
                }
                next_change(&state, &mut changes, |change| {
                    *change == Change::Reservation(reservation_id)
                })
                .await?;
                pending = read_reservation(&state, reservation_id)
                    .await
                    .ok()
                    .flatten();
            }
        },
    );
    Ok(sse_response(&state, stream))
}

async fn read_reservation(
    state: &SharedState,
    reservation_id: Uuid,
) -> Result<Option<Reservation>, ReservationError> {
    state
        .store
        .get(reservation_id)
        .await
        .map_err(|error| state.unavailable(error))
}

fn status_event(reservation: &Reservation) -> Event {
    Event::default()
        .event("status")
        .id(reservation.updated_at.timestamp_millis().to_string())
        .json_data(reservation)
        .unwrap_or_else(|_| Event::default().event("status"))
}

/// `GET /v1/events/{event_id}/seats/events` options.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeatStreamOptions {
    /// `true`: after the first map, `seat_changes` events carry only the seats that
    /// changed (a whole map again after a new layout, or when this stream fell behind).
    #[serde(default)]
    diffs: bool,
}

#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/seats/events",
    tag = "seats",
    params(("event_id" = String, Path, description = "The event's id"), SeatStreamOptions),
    responses(
        (status = 200, description = "`seats` events: the seat map, then each change (`seat_changes` with `diffs=true`)", content_type = "text/event-stream", body = String),
        (status = 422, description = "`invalid_request`: `diffs` is not `true` or `false`"),
        (status = 404, description = "`event_not_found`"),
        (status = 503, description = "`service_unavailable`: PostgreSQL is unreachable"),
    )
)]
pub async fn seat_events(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
    Query(options): Query<SeatStreamOptions>,
) -> Result<Response, ReservationError> {
    let mut latest = state.seat_maps.watch(&event_id);
    let first = tokio::select! {
        () = state.shutdown.cancelled() => Reading::Unavailable,
        read = latest.wait_for(|latest| !matches!(latest.reading, Reading::Pending)) => {
            read.map_or(Reading::Unavailable, |latest| latest.reading.clone())
        }
    }
    .into_copy(&event_id)?;
    let mut viewer = SeatViewer {
        latest,
        seen: 0,
        diffs: options.diffs,
        queued: VecDeque::new(),
    };
    viewer.catch_up(&first);
    let stream = futures::stream::unfold((state.clone(), viewer), |(state, mut viewer)| async {
        let event = viewer.next_event(&state).await?;
        Some((Ok(event), (state, viewer)))
    });
    Ok(sse_response(&state, stream))
}

/// One seat-map stream: what it has sent, and what it still has to send.
struct SeatViewer {
    latest: watch::Receiver<Latest>,
    /// The version of the last copy sent (0: none yet).
    seen: u64,
    diffs: bool,
    queued: VecDeque<Event>,
}

impl SeatViewer {
    /// Queues what brings this viewer from `seen` to `copy`.
    fn catch_up(&mut self, copy: &SeatMapCopy) {
        if copy.version == self.seen {
            return;
        }
        let changes = if self.diffs && self.seen > 0 {
            copy.changes_since(self.seen)
        } else {
            None
        };
        match changes {
            Some(changes) => self.queued.extend(
                changes
                    .iter()
                    .map(|changes| sse_json("seat_changes", changes.version, &changes.json)),
            ),
            None => self
                .queued
                .push_back(sse_json("seats", copy.version, &copy.map_json)),
        }
        self.seen = copy.version;
    }

    /// The next event; `None` when the server shuts down.
    async fn next_event(&mut self, state: &SharedState) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            tokio::select! {
                () = state.shutdown.cancelled() => return None,
                changed = self.latest.changed() => changed.ok()?,
            }
            // A missing event or a failed read keeps the map shown.
            let reading = self.latest.borrow_and_update().reading.clone();
            if let Reading::Seats(copy) = reading {
                self.catch_up(&copy);
            }
        }
    }
}

fn sse_json(name: &'static str, version: u64, json: &[u8]) -> Event {
    // The JSON was serialised from Rust strings: it is UTF-8.
    Event::default()
        .event(name)
        .id(version.to_string())
        .data(std::str::from_utf8(json).unwrap_or_default())
}
