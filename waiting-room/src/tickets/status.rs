//! "Where am I": `GET /v1/tickets/{token}`, `GET /v1/tickets/me` (Bearer), and the
//! public keys that verify tickets (`GET /.well-known/jwks.json`).
//!
//! A status read verifies the token, then costs one Redis round trip (the queue's
//! serving counter and the ticket's state together, refreshing "last seen").

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use contract::queue;
use contract::ticket_state::{seen_refresh_ms, TicketState};
use contract::token::TicketClaims;
use platform::bearer::BearerToken;
use serde::Serialize;
use uuid::Uuid;

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// A ticket as the fan sees it (the join response carries the token and URLs too).
#[derive(Debug, Serialize)]
pub struct TicketStatus {
    pub ticket_id: Uuid,
    pub event_id: String,
    pub partition: i32,
    pub state: TicketState,
    pub queue_number: i64,
    pub serving_number: i64,
    pub position: i64,
    pub estimated_wait_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<DateTime<Utc>>,
    /// The seat page to go to while active (the token travels in the fragment, which
    /// never reaches a server log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_url: Option<String>,
    /// The token and its URLs, in responses to requests (not repeated in every
    /// stream event: the stream's client already holds them).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub links: Option<TicketLinks>,
}

#[derive(Debug, Serialize)]
pub struct TicketLinks {
    pub token: String,
    pub status_url: String,
    pub events_url: String,
}

impl TicketLinks {
    fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            status_url: format!("/v1/tickets/{token}"),
            events_url: format!("/v1/tickets/{token}/events"),
        }
    }
}

impl TicketStatus {
    pub(super) fn new(
        state: &SharedState,
        claims: &TicketClaims,
        token: &str,
        serving: i64,
        ticket_state: TicketState,
        observed_rate: Option<f64>,
    ) -> Self {
        let waiting = ticket_state == TicketState::Waiting;
        let position = if waiting {
            queue::tickets_ahead(claims.queue_number, serving)
        } else {
            0
        };
        let estimated_wait_seconds = if waiting {
            let queue = state.catalog.current().queue(claims.partition);
            queue::estimated_wait_seconds(position, queue.mode, &queue.activation, observed_rate)
        } else {
            Some(0)
        };
        let active_until = match ticket_state {
            TicketState::Active { active_until_ms } => {
                DateTime::from_timestamp_millis(active_until_ms)
            }
            _ => None,
        };
        let reservation_url = active_until.map(|_| {
            format!(
                "{}/events/{}/seats#token={token}",
                state.reservation_base_url.trim_end_matches('/'),
                claims.event_id
            )
        });
        Self {
            ticket_id: claims.ticket_id,
            event_id: claims.event_id.clone(),
            partition: claims.partition,
            state: ticket_state,
            queue_number: claims.queue_number,
            serving_number: serving,
            position,
            estimated_wait_seconds,
            active_until,
            reservation_url,
            links: None,
        }
    }

    /// A ticket just issued: waiting, with its token.
    pub fn waiting(
        state: &SharedState,
        claims: &TicketClaims,
        token: String,
        serving: i64,
    ) -> Self {
        let mut status = Self::new(state, claims, &token, serving, TicketState::Waiting, None);
        status.links = Some(TicketLinks::new(&token));
        status
    }
}

/// Reads the ticket's state; `touch` records that its holder is still here.
pub async fn ticket_status(
    state: &SharedState,
    claims: &TicketClaims,
    token: &str,
    touch: bool,
) -> Result<TicketStatus, WaitingRoomError> {
    let now_ms = Utc::now().timestamp_millis();
    let grace_seconds = state
        .catalog
        .current()
        .queue(claims.partition)
        .activation
        .grace_seconds;
    let view = state
        .tickets
        .status(
            claims,
            now_ms,
            touch.then(|| seen_refresh_ms(grace_seconds)),
        )
        .await
        .map_err(|error| state.store_unavailable(error))?;
    let mut status = TicketStatus::new(
        state,
        claims,
        token,
        view.serving,
        view.state,
        view.observed_rate,
    );
    status.links = Some(TicketLinks::new(token));
    Ok(status)
}

/// Verifies a ticket token; every failure is 401 `invalid_token`.
pub fn verify(state: &SharedState, token: &str) -> Result<TicketClaims, WaitingRoomError> {
    Ok(state.verifier.verify(token, Utc::now().timestamp())?)
}

pub async fn by_path(
    State(state): State<SharedState>,
    Path(token): Path<String>,
) -> Result<Json<TicketStatus>, WaitingRoomError> {
    let claims = verify(&state, &token)?;
    ticket_status(&state, &claims, &token, true).await.map(Json)
}

pub async fn me(
    State(state): State<SharedState>,
    bearer: BearerToken,
) -> Result<Json<TicketStatus>, WaitingRoomError> {
    let token = bearer.token().ok_or(WaitingRoomError::MissingToken)?;
    let claims = verify(&state, token)?;
    ticket_status(&state, &claims, token, true).await.map(Json)
}

pub async fn jwks(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(state.verifier.jwks())
}
