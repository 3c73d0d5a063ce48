//! What every reservation handler shares.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use waiting_room::bearer::bearer_token;
use waiting_room::error::ApiError;
use waiting_room::ticket_store::TicketStore;
use waiting_room::token::TicketClaims;

use crate::changes::ChangeFeed;
use crate::store::ReservationStore;
use crate::ticket_keys::TicketKeys;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub store: ReservationStore,
    pub tickets: TicketStore,
    pub keys: TicketKeys,
    pub changes: ChangeFeed,
    pub max_seats: usize,
    /// Holds in flight at once: the rest queue here instead of piling onto PostgreSQL's
    /// pool and Redis, so a rush is served in order rather than timing out.
    pub hold_slots: tokio::sync::Semaphore,
    pub hold: chrono::Duration,
    pub stream_keepalive: Duration,
    pub shutdown: CancellationToken,
    /// The seat page, rendered at start (it links back to the waiting room).
    pub seat_page: String,
}

impl AppState {
    /// The ticket behind `Authorization: Bearer <ticket token>`; 401 otherwise.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TicketClaims, ApiError> {
        let token = bearer_token(headers).ok_or_else(|| {
            ApiError::InvalidToken("missing Authorization: Bearer <ticket token>".into())
        })?;
        self.keys
            .current()
            .verify(token, Utc::now().timestamp())
            .map_err(|error| ApiError::InvalidToken(error.to_string()))
    }

    pub fn unavailable(&self, error: impl std::fmt::Debug) -> ApiError {
        tracing::warn!(?error, "a dependency failed");
        ApiError::ServiceUnavailable {
            message: "reservations are briefly unavailable".into(),
            retry_after_seconds: 1,
        }
    }
}
