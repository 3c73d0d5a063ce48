//! Everything the reservation service refuses, and the one place where each refusal
//! gets its HTTP status and stable code (see `docs/api.md`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::ticket_state::TicketState;
use contract::token::TokenError;
use platform::error::{respond, ApiError, RequestError};
use serde_json::{json, Map, Value};

use crate::store::{Reservation, ReservationStatus};

#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("invalid ticket token: {0}")]
    InvalidToken(#[from] TokenError),
    #[error("invalid ticket token: missing Authorization: Bearer <ticket token>")]
    MissingToken,
    #[error("invalid ticket token: this ticket is for event '{ticket_event}', not '{event_id}'")]
    WrongEvent {
        ticket_event: String,
        event_id: String,
    },
    #[error("ticket is not active: it is {}", .state.as_str())]
    TicketNotActive { state: TicketState },
    #[error("event '{0}' does not exist")]
    EventNotFound(String),
    #[error("no reservation '{0}'")]
    MalformedReservationId(String),
    #[error("no such reservation")]
    ReservationNotFound,
    #[error("this reservation belongs to another ticket")]
    NotYours,
    #[error("seats are not available: {}", seat_ids.join(", "))]
    SeatsUnavailable { seat_ids: Vec<String> },
    #[error("seat_ids: no such seats: {}", seat_ids.join(", "))]
    UnknownSeats { seat_ids: Vec<String> },
    #[error("the reservation is {}, no longer held", .status.as_str())]
    ReservationNotHeld { status: ReservationStatus },
    #[error("this ticket already holds a reservation")]
    ReservationExists { existing: Box<Reservation> },
    #[error("reservations are briefly unavailable")]
    Unavailable,
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl ReservationError {
    /// A field the request got wrong: 422 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Request(RequestError::InvalidRequest(message.into()))
    }
}

impl ApiError for ReservationError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidToken(_) | Self::MissingToken | Self::WrongEvent { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::TicketNotActive { .. } | Self::NotYours => StatusCode::FORBIDDEN,
            Self::EventNotFound(_)
            | Self::MalformedReservationId(_)
            | Self::ReservationNotFound => StatusCode::NOT_FOUND,
            Self::SeatsUnavailable { .. }
            | Self::ReservationNotHeld { .. }
            | Self::ReservationExists { .. } => StatusCode::CONFLICT,
            Self::UnknownSeats { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Request(error) => error.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken(_) | Self::MissingToken | Self::WrongEvent { .. } => "invalid_token",
            Self::TicketNotActive { .. } => "ticket_not_active",
            Self::EventNotFound(_) => "event_not_found",
            Self::MalformedReservationId(_) | Self::ReservationNotFound => "not_found",
            Self::NotYours => "forbidden",
            Self::SeatsUnavailable { .. } => "seats_unavailable",
            Self::UnknownSeats { .. } => "invalid_request",
            Self::ReservationNotHeld { .. } => "reservation_not_held",
            Self::ReservationExists { .. } => "reservation_exists",
            Self::Unavailable => "service_unavailable",
            Self::Request(error) => error.code(),
        }
    }

    fn retry_after_seconds(&self) -> Option<u64> {
        matches!(self, Self::Unavailable).then_some(1)
    }

    fn add_fields(&self, error: &mut Map<String, Value>, body: &mut Map<String, Value>) {
        match self {
            Self::TicketNotActive { state } => {
                error.insert("state".into(), json!(state));
            }
            Self::SeatsUnavailable { seat_ids } => {
                error.insert("seat_ids".into(), json!(seat_ids));
            }
            Self::ReservationNotHeld { status } => {
                error.insert("status".into(), json!(status));
            }
            Self::ReservationExists { existing } => {
                // The contract returns the existing reservation in the body too.
                if let Value::Object(fields) = json!(existing) {
                    error.insert("reservation".into(), Value::Object(fields.clone()));
                    body.extend(fields);
                }
            }
            _ => {}
        }
    }
}

impl IntoResponse for ReservationError {
    fn into_response(self) -> Response {
        respond(&self)
    }
}
