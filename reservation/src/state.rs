//! What every reservation handler shares.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contract::ticket_state::TicketStore;
use contract::token::TicketClaims;
use platform::bearer::BearerToken;
use tokio_util::sync::CancellationToken;

use crate::changes::ChangeFeed;
use crate::error::ReservationError;
use crate::seat_maps::SeatMaps;
use crate::store::ReservationStore;
use crate::ticket_keys::TicketKeys;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub store: ReservationStore,
    pub tickets: TicketStore,
    pub keys: TicketKeys,
    /// Sites whose admission tokens are taken as tickets (`ADMISSION_AUDIENCES`).
    pub admission_audiences: Vec<String>,
    pub changes: ChangeFeed,
    pub seat_maps: SeatMaps,
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
    /// The ticket behind `Authorization: Bearer <ticket token>`, or an admission token
    /// for one of `ADMISSION_AUDIENCES`; 401 otherwise.
    pub fn authenticate(&self, bearer: &BearerToken) -> Result<TicketClaims, ReservationError> {
        let token = bearer.token().ok_or(ReservationError::MissingToken)?;
        Ok(self.keys.current().verify_ticket_or_admission(
            token,
            Utc::now().timestamp(),
            &self.admission_audiences,
        )?)
    }

    /// A dependency failed: the fan retries in a moment.
    pub fn unavailable(&self, error: impl std::fmt::Debug) -> ReservationError {
        tracing::warn!(?error, "a dependency failed");
        ReservationError::Unavailable
    }
}
