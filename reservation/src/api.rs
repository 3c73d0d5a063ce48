//! The fans' reservation API: the seat map, holding seats with an active ticket,
//! confirming (which spends the ticket) and releasing.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contract::seats::MAX_SEAT_ID_LEN;
use contract::ticket_state::{MarkUsed, TicketState};
use contract::token::TicketClaims;
use platform::bearer::BearerToken;
use platform::error::Json as JsonBody;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ReservationError;
use crate::state::SharedState;
use crate::store::{HoldError, Reservation, ReservationStatus, TransitionError};

/// `GET /v1/events/{event_id}/seats`.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/seats",
    tag = "seats",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event's seats and their states", body = crate::seat_maps::SeatMap),
        (status = 404, description = "`event_not_found`"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn seats(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Response, ReservationError> {
    let copy = state
        .seat_maps
        .current(&event_id)
        .await
        .into_copy(&event_id)?;
    // Serialised once for every reader of this copy.
    Ok(([(CONTENT_TYPE, "application/json")], copy.map_json.clone()).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// 1 to `MAX_SEATS_PER_RESERVATION` distinct seat ids.
    seat_ids: Vec<String>,
}

/// `POST /v1/events/{event_id}/reservations` with the ticket's token.
#[utoipa::path(
    post,
    path = "/v1/events/{event_id}/reservations",
    tag = "reservations",
    security(("ticket_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "The seats are held for this ticket", body = Reservation),
        (status = 401, description = "`invalid_token`: missing, malformed, forged, expired, or for another event"),
        (status = 403, description = "`ticket_not_active` (with the ticket's `state`)"),
        (status = 404, description = "`event_not_found`"),
        (status = 409, description = "`seats_unavailable` (with `seat_ids`) or `reservation_exists` (with the existing reservation)"),
        (status = 422, description = "`invalid_request`: no seats, too many, repeated, or unknown seat ids"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn reserve(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
    bearer: BearerToken,
    JsonBody(request): JsonBody<ReserveRequest>,
) -> Result<(StatusCode, Json<Reservation>), ReservationError> {
    let claims = state.authenticate(&bearer)?;
    if claims.event_id != event_id {
        return Err(ReservationError::WrongEvent {
            ticket_event: claims.event_id,
            event_id,
        });
    }
    let seat_ids = validate_seats(request.seat_ids, state.max_seats)?;
    let _slot = state
        .hold_slots
        .acquire()
        .await
        .map_err(|error| state.unavailable(error))?;
    let now = Utc::now();
    let view = state
        .tickets
        .status(&claims, now.timestamp_millis(), None)
        .await
        .map_err(|error| state.unavailable(error))?;
    if !matches!(view.state, TicketState::Active { .. }) {
        return Err(ReservationError::TicketNotActive { state: view.state });
    }
    // The hold starts while the ticket is active, so it ends within `hold` of the
    // ticket's active window at the latest.
    let hold_expires_at = now + state.hold;
    let reservation = state
        .store
        .hold(&event_id, claims.ticket_id, &seat_ids, hold_expires_at)
        .await
        .map_err(|error| match error {
            HoldError::Exists(existing) => ReservationError::ReservationExists {
                existing: Box::new(existing),
            },
            HoldError::Unavailable(seat_ids) => ReservationError::SeatsUnavailable { seat_ids },
            HoldError::UnknownSeats(seat_ids) => ReservationError::UnknownSeats { seat_ids },
            HoldError::UnknownEvent => ReservationError::EventNotFound(event_id.clone()),
            HoldError::Database(error) => state.unavailable(error),
        })?;
    ReservationStatus::Held.count(1);
    state.seat_maps.changed(&event_id);
    // The operators' `reserved` count; PostgreSQL stays the record of the hold.
    if let Err(error) = state.tickets.count_hold(claims.partition, &event_id).await {
        tracing::warn!(%error, "cannot count a hold in the event's statistics");
    }
    Ok((StatusCode::CREATED, Json(reservation)))
}

/// 1 to `max` distinct, plausible seat ids.
fn validate_seats(seat_ids: Vec<String>, max: usize) -> Result<Vec<String>, ReservationError> {
    if seat_ids.is_empty() || seat_ids.len() > max {
        return Err(ReservationError::invalid(format!(
            "seat_ids: between 1 and {max} seats"
        )));
    }
    if let Some(bad) = seat_ids
        .iter()
        .find(|seat| seat.is_empty() || seat.len() > MAX_SEAT_ID_LEN)
    {
        return Err(ReservationError::invalid(format!(
            "seat_ids: '{}' is not a seat id",
            bad.chars().take(MAX_SEAT_ID_LEN).collect::<String>()
        )));
    }
    let distinct: HashSet<&String> = seat_ids.iter().collect();
    if distinct.len() != seat_ids.len() {
        return Err(ReservationError::invalid(
            "seat_ids: each seat at most once",
        ));
    }
    Ok(seat_ids)
}

pub fn parse_reservation_id(raw: &str) -> Result<Uuid, ReservationError> {
    raw.parse()
        .map_err(|_| ReservationError::MalformedReservationId(raw.to_owned()))
}

fn transition_error(state: &SharedState, error: TransitionError) -> ReservationError {
    match error {
        TransitionError::NotFound => ReservationError::ReservationNotFound,
        TransitionError::NotYours => ReservationError::NotYours,
        TransitionError::NotHeld(reservation) => ReservationError::ReservationNotHeld {
            status: reservation.status,
        },
        TransitionError::Database(error) => state.unavailable(error),
    }
}

/// `GET /v1/reservations/{reservation_id}` (the id is the capability, like a URL).
#[utoipa::path(
    get,
    path = "/v1/reservations/{reservation_id}",
    tag = "reservations",
    params(("reservation_id" = String, Path, description = "The reservation's id (a UUID)")),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 404, description = "`not_found`: no such reservation, or not a reservation id"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Reservation>, ReservationError> {
    let reservation_id = parse_reservation_id(&raw_id)?;
    state
        .store
        .get(reservation_id)
        .await
        .map_err(|error| state.unavailable(error))?
        .map(Json)
        .ok_or(ReservationError::ReservationNotFound)
}

/// Confirms or releases the reservation for the ticket behind the request's token.
async fn finish(
    state: &SharedState,
    raw_id: &str,
    bearer: &BearerToken,
    status: ReservationStatus,
) -> Result<(TicketClaims, Reservation), ReservationError> {
    let claims = state.authenticate(bearer)?;
    let reservation_id = parse_reservation_id(raw_id)?;
    let reservation = state
        .store
        .finish(reservation_id, claims.ticket_id, status)
        .await
        .map_err(|error| transition_error(state, error))?;
    status.count(1);
    state.seat_maps.changed(&reservation.event_id);
    Ok((claims, reservation))
}

/// `POST /v1/reservations/{reservation_id}/confirm`: seats sold, ticket used.
#[utoipa::path(
    post,
    path = "/v1/reservations/{reservation_id}/confirm",
    tag = "reservations",
    security(("ticket_token" = [])),
    params(("reservation_id" = String, Path, description = "The reservation's id (a UUID)")),
    responses(
        (status = 200, description = "Confirmed: the seats are sold", body = Reservation),
        (status = 401, description = "`invalid_token`"),
        (status = 403, description = "`forbidden`: the reservation belongs to another ticket"),
        (status = 404, description = "`not_found`: no such reservation, or not a reservation id"),
        (status = 409, description = "`reservation_not_held` (with its `status`)"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn confirm(
    State(state): State<SharedState>,
    Path(raw_id): Path<String>,
    bearer: BearerToken,
) -> Result<Json<Reservation>, ReservationError> {
    let (claims, reservation) =
        finish(&state, &raw_id, &bearer, ReservationStatus::Confirmed).await?;
    // The sale stands either way; marking the ticket used frees its capacity slot now
    // rather than when its active window runs out.
    match state
        .tickets
        .mark_used(&claims, Utc::now().timestamp_millis())
        .await
    {
        Ok(MarkUsed::Marked | MarkUsed::AlreadyEnded) => {}
        Ok(MarkUsed::NotActive(ticket)) => {
            tracing::info!(
                state = ticket.as_str(),
                "confirmed after the ticket's window"
            )
        }
        Err(error) => {
            tracing::warn!(%error, "cannot mark the ticket used; its slot frees at expiry")
        }
    }
    Ok(Json(reservation))
}

/// `DELETE /v1/reservations/{reservation_id}` with the same ticket's token.
#[utoipa::path(
    delete,
    path = "/v1/reservations/{reservation_id}",
    tag = "reservations",
    security(("ticket_token" = [])),
    params(("reservation_id" = String, Path, description = "The reservation's id (a UUID)")),
    responses(
        (status = 200, description = "Released: the seats are free again", body = Reservation),
        (status = 401, description = "`invalid_token`"),
        (status = 403, description = "`forbidden`: the reservation belongs to another ticket"),
        (status = 404, description = "`not_found`: no such reservation, or not a reservation id"),
        (status = 409, description = "`reservation_not_held` (with its `status`)"),
        (status = 503, description = "`service_unavailable`: PostgreSQL or Redis is unreachable"),
    )
)]
pub async fn release(
    State(state): State<SharedState>,
    Path(raw_id): Path<String>,
    bearer: BearerToken,
) -> Result<Json<Reservation>, ReservationError> {
    let (_, reservation) = finish(&state, &raw_id, &bearer, ReservationStatus::Released).await?;
    Ok(Json(reservation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn seat_requests_are_bounded_distinct_and_plausible() {
        assert!(validate_seats(seats(&["A-1", "A-2"]), 4).is_ok());
        assert!(validate_seats(seats(&[]), 4).is_err());
        assert!(validate_seats(seats(&["A-1", "A-2", "A-3", "A-4", "A-5"]), 4).is_err());
        assert!(validate_seats(seats(&["A-1", "A-1"]), 4).is_err());
        assert!(validate_seats(seats(&[""]), 4).is_err());
        assert!(validate_seats(vec!["X".repeat(17)], 4).is_err());
    }
}
