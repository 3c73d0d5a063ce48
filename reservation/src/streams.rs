//! Live pushes over SSE, fed by the instance's [`ChangeFeed`] (PostgreSQL
//! notifications), so a change made by any instance reaches every instance's streams.
//!
//! - `GET /v1/reservations/{id}/events`: a `status` event on connect and on every change,
//!   ending after `confirmed`, `released` or `expired`.
//! - `GET /v1/events/{event_id}/seats/events`: the seat map (`seats` event) on connect
//!   and after changes, bursts coalesced; for the seat page.
//!
//! Both end when the server shuts down.
//!
//! [`ChangeFeed`]: crate::changes::ChangeFeed

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::api::{parse_reservation_id, seat_map};
use crate::changes::Change;
use crate::error::ReservationError;
use crate::state::SharedState;
use crate::store::{Reservation, ReservationStatus};

/// Seat changes arriving within this window are sent as one map.
const COALESCE: Duration = Duration::from_millis(150);

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

#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/seats/events",
    tag = "seats",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "`seats` events: the seat map, then each change", content_type = "text/event-stream", body = String),
        (status = 404, description = "`event_not_found`"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn seat_events(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Response, ReservationError> {
    let changes = BroadcastStream::new(state.changes.subscribe());
    let first = seat_map(&state, &event_id).await?;
    let first_event = Event::default()
        .event("seats")
        .json_data(&first)
        .unwrap_or_default();
    let initial = (state.clone(), changes, Some(first_event));
    let stream = futures::stream::unfold(initial, move |(state, mut changes, first)| {
        let event_id = event_id.clone();
        async move {
            if let Some(event) = first {
                return Some((Ok(event), (state, changes, None)));
            }
            loop {
                next_change(&state, &mut changes, |change| {
                    matches!(change, Change::Seats { event_id: changed } if *changed == event_id)
                })
                .await?;
                // A burst of holds becomes one map.
                tokio::time::sleep(COALESCE).await;
                while let Some(Some(_)) = changes.next().now_or_never() {}
                if let Ok(map) = seat_map(&state, &event_id).await {
                    let event = Event::default()
                        .event("seats")
                        .json_data(&map)
                        .unwrap_or_default();
                    return Some((Ok(event), (state, changes, None)));
                }
            }
        }
    });
    Ok(sse_response(&state, stream))
}
