//! Everything the waiting-room refuses, and the one place where each refusal gets its
//! HTTP status and stable code (see `docs/api.md`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contract::ticket_state::TicketState;
use contract::token::TokenError;
use platform::error::{respond, ApiError, RequestError};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::entry::challenge::ChallengeFailure;
use crate::tickets::status::TicketStatus;

#[derive(Debug, thiserror::Error)]
pub enum WaitingRoomError {
    #[error("missing or wrong admin credentials")]
    Unauthorized,
    #[error("invalid ticket token: {0}")]
    InvalidToken(#[from] TokenError),
    #[error("invalid ticket token: missing Authorization: Bearer <ticket token>")]
    MissingToken,
    #[error("invalid ticket token: the ticket's queue {0} does not exist")]
    UnknownQueue(i32),
    #[error("{0}")]
    InvalidEnqueueToken(String),
    #[error("this event admits only fans the ticketing site sends: join through its link (an enqueue token)")]
    EnqueueTokenRequired,
    #[error("this event asks each join for a solved challenge: GET /v1/events/{0}/challenge")]
    ChallengeRequired(String),
    #[error("{0}")]
    ChallengeFailed(#[from] ChallengeFailure),
    #[error(
        "this user id already has a place in line; the ticket stays with whoever joined first"
    )]
    AlreadyInLine(Box<PlaceInLine>),
    #[error("event '{0}' does not exist")]
    EventNotFound(String),
    #[error("missing or wrong site API key: Authorization: Bearer wrsk_…")]
    InvalidSiteKey,
    #[error("no admission '{0}' for this site's key")]
    AdmissionNotFound(String),
    #[error("admission {jti} is not active (it is {})", state.as_str())]
    AdmissionNotActive { jti: uuid::Uuid, state: TicketState },
    #[error("no site key '{0}'")]
    SiteKeyNotFound(String),
    #[error("event '{0}' is closed to new joins")]
    EventClosed(String),
    #[error("the line opens at {prequeue_opens_at} (the sale starts at {sale_starts_at})")]
    NotOpenYet {
        prequeue_opens_at: DateTime<Utc>,
        sale_starts_at: DateTime<Utc>,
        retry_after_seconds: u64,
    },
    #[error("event '{0}' shuffles its pre-queue: it needs a queue of its own, shared with no other event")]
    DrawNeedsOwnQueue(String),
    #[error("the sale of '{0}' has started and its pre-queue was drawn: its start and order can no longer change")]
    DrawAlreadyMade(String),
    #[error("event '{0}' keeps its queue from its pre-queue's opening on (a shuffled one for good): its fans wait there")]
    QueueFixedBySchedule(String),
    #[error("the partitions were not raised: {0}")]
    PartitionsNotRaised(String),
    #[error("no report of event '{0}' yet: POST /admin/events/{0}/report computes one")]
    ReportNotFound(String),
    #[error("the report cannot be computed now (Kafka or PostgreSQL): {0}")]
    ReportUnavailable(String),
    #[error("the seat layout cannot change: {in_use} seats are held or sold")]
    SeatLayoutInUse { in_use: i64 },
    #[error("event '{0}' is not closed: close it (state \"closed\") and let its queue drain before deleting it")]
    EventNotClosed(String),
    #[error("event '{event_id}' still has live tickets ({waiting} waiting, {active} active in its queue)")]
    EventHasLiveTickets {
        event_id: String,
        waiting: i64,
        active: i64,
    },
    #[error("event '{event_id}' closed moments ago: joins in flight may still land, retry in {retry_after_seconds} s")]
    EventClosing {
        event_id: String,
        retry_after_seconds: u64,
    },
    #[error("event '{event_id}' has {reservations} reservations: they are the sale's record, so the event stays")]
    EventHasReservations { event_id: String, reservations: i64 },
    #[error("no free partition: all {partitions} partitions of the tickets topic have events; name a partition to share one")]
    NoFreePartition { partitions: i32 },
    #[error("too many requests, retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the queue is unavailable, retry in {retry_after_seconds} s; no ticket was issued")]
    QueueUnavailable { retry_after_seconds: u64 },
    #[error("too many live streams on this server, retry in {retry_after_seconds} s or poll the status URL")]
    TooManyStreams { retry_after_seconds: u64 },
    #[error(
        "this ticket already has its most live streams open; close one or poll the status URL"
    )]
    TicketStreamsInUse { retry_after_seconds: u64 },
    #[error("the ticket store is unavailable")]
    StoreUnavailable { retry_after_seconds: u64 },
    #[error("configuration is not loaded yet")]
    CatalogNotLoaded { retry_after_seconds: u64 },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl WaitingRoomError {
    /// A field the request got wrong: 422 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Request(RequestError::InvalidRequest(message.into()))
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }
}

impl ApiError for WaitingRoomError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized
            | Self::InvalidToken(_)
            | Self::MissingToken
            | Self::UnknownQueue(_)
            | Self::InvalidEnqueueToken(_)
            | Self::InvalidSiteKey => StatusCode::UNAUTHORIZED,
            Self::EnqueueTokenRequired | Self::ChallengeRequired(_) | Self::ChallengeFailed(_) => {
                StatusCode::FORBIDDEN
            }
            Self::EventNotFound(_)
            | Self::ReportNotFound(_)
            | Self::AdmissionNotFound(_)
            | Self::SiteKeyNotFound(_) => StatusCode::NOT_FOUND,
            Self::PartitionsNotRaised(_) | Self::ReportUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::EventClosed(_)
            | Self::NotOpenYet { .. }
            | Self::DrawNeedsOwnQueue(_)
            | Self::DrawAlreadyMade(_)
            | Self::QueueFixedBySchedule(_)
            | Self::SeatLayoutInUse { .. }
            | Self::NoFreePartition { .. }
            | Self::EventNotClosed(_)
            | Self::EventHasLiveTickets { .. }
            | Self::EventClosing { .. }
            | Self::EventHasReservations { .. }
            | Self::AdmissionNotActive { .. }
            | Self::AlreadyInLine(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } | Self::TicketStreamsInUse { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::QueueUnavailable { .. }
            | Self::TooManyStreams { .. }
            | Self::StoreUnavailable { .. }
            | Self::CatalogNotLoaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Request(error) => error.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken(_) | Self::MissingToken | Self::UnknownQueue(_) => "invalid_token",
            Self::InvalidEnqueueToken(_) => "invalid_enqueue_token",
            Self::EnqueueTokenRequired => "enqueue_token_required",
            Self::ChallengeRequired(_) => "challenge_required",
            Self::ChallengeFailed(_) => "challenge_failed",
            Self::AlreadyInLine(_) => "already_in_line",
            Self::EventNotFound(_) => "event_not_found",
            Self::InvalidSiteKey => "invalid_api_key",
            Self::AdmissionNotFound(_) => "admission_not_found",
            Self::AdmissionNotActive { .. } => "admission_not_active",
            Self::SiteKeyNotFound(_) => "site_key_not_found",
            Self::EventClosed(_) => "event_closed",
            Self::NotOpenYet { .. } => "not_open_yet",
            Self::DrawNeedsOwnQueue(_) => "draw_needs_own_queue",
            Self::DrawAlreadyMade(_) => "draw_already_made",
            Self::QueueFixedBySchedule(_) => "queue_fixed_by_schedule",
            Self::PartitionsNotRaised(_) => "partitions_not_raised",
            Self::ReportNotFound(_) => "report_not_found",
            Self::ReportUnavailable(_) => "report_unavailable",
            Self::SeatLayoutInUse { .. } => "conflict",
            Self::NoFreePartition { .. } => "no_free_partition",
            Self::EventNotClosed(_) => "event_not_closed",
            Self::EventHasLiveTickets { .. } => "event_has_live_tickets",
            Self::EventClosing { .. } => "event_closing",
            Self::EventHasReservations { .. } => "event_has_reservations",
            Self::RateLimited { .. } => "rate_limited",
            Self::QueueUnavailable { .. } => "queue_unavailable",
            Self::TooManyStreams { .. } | Self::TicketStreamsInUse { .. } => "too_many_streams",
            Self::StoreUnavailable { .. } | Self::CatalogNotLoaded { .. } => "service_unavailable",
            Self::Request(error) => error.code(),
            Self::Internal(_) => "internal_error",
        }
    }

    fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_seconds,
            }
            | Self::QueueUnavailable {
                retry_after_seconds,
            }
            | Self::TooManyStreams {
                retry_after_seconds,
            }
            | Self::TicketStreamsInUse {
                retry_after_seconds,
            }
            | Self::StoreUnavailable {
                retry_after_seconds,
            }
            | Self::CatalogNotLoaded {
                retry_after_seconds,
            }
            | Self::EventClosing {
                retry_after_seconds,
                ..
            }
            | Self::NotOpenYet {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }

    fn add_fields(&self, error: &mut Map<String, Value>, _body: &mut Map<String, Value>) {
        match self {
            Self::AlreadyInLine(place) => {
                if let Ok(Value::Object(fields)) = serde_json::to_value(place) {
                    error.extend(fields);
                }
            }
            Self::EventHasLiveTickets {
                waiting, active, ..
            } => {
                error.insert("waiting".into(), (*waiting).into());
                error.insert("active".into(), (*active).into());
            }
            Self::EventHasReservations { reservations, .. } => {
                error.insert("reservations".into(), (*reservations).into());
            }
            Self::AdmissionNotActive { state, .. } => {
                error.insert("state".into(), state.as_str().into());
            }
            Self::NotOpenYet {
                prequeue_opens_at,
                sale_starts_at,
                ..
            } => {
                // As every other instant of the API is written (RFC 3339, UTC, `Z`).
                error.insert("prequeue_opens_at".into(), json!(prequeue_opens_at));
                error.insert("sale_starts_at".into(), json!(sale_starts_at));
            }
            _ => {}
        }
    }
}

/// Where an existing ticket stands, without anything that would let its holder be
/// impersonated (no token, no URLs).
#[derive(Debug, Serialize)]
pub struct PlaceInLine {
    pub state: TicketState,
    pub queue_number: Option<i64>,
    pub position: Option<i64>,
    pub estimated_wait_seconds: Option<u64>,
}

impl PlaceInLine {
    pub fn of(ticket: &TicketStatus) -> Self {
        Self {
            state: ticket.state,
            queue_number: ticket.queue_number,
            position: ticket.position,
            estimated_wait_seconds: ticket.estimated_wait_seconds,
        }
    }
}

impl IntoResponse for WaitingRoomError {
    fn into_response(self) -> Response {
        respond(&self)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn retry_after_is_sent_with_queue_unavailable() {
        let response = WaitingRoomError::QueueUnavailable {
            retry_after_seconds: 2,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn platform_refusals_keep_their_codes() {
        let error = WaitingRoomError::invalid("name must be 1-200 characters");
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code(), "invalid_request");
    }
}
