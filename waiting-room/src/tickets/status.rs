//! "Where am I": `GET /v1/tickets/{token}`, `GET /v1/tickets/me` (Bearer), and the
//! public keys that verify tickets (`GET /.well-known/jwks.json`).
//!
//! A status read verifies the token, then costs one Redis round trip (the queue's
//! serving counter and the ticket's state together, refreshing "last seen").

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use contract::queue;
use contract::schedule::Standing;
use contract::ticket_state::{seen_refresh_ms, TicketState};
use contract::token::{AdmissionClaims, TicketClaims};
use platform::bearer::BearerToken;
use serde::Serialize;
use uuid::Uuid;

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// A ticket as the fan sees it (the join response carries the token and URLs too).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketStatus {
    pub ticket_id: Uuid,
    pub event_id: String,
    pub partition: i32,
    pub state: TicketState,
    /// The place in line: the Kafka offset, or the drawn place once a pre-queue's draw
    /// is made; `null` while a draw is pending.
    pub queue_number: Option<i64>,
    pub serving_number: i64,
    /// Tickets ahead; `null` while a draw is pending.
    pub position: Option<i64>,
    pub estimated_wait_seconds: Option<u64>,
    /// While prequeued: when the sale starts (the page counts down to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_starts_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<DateTime<Utc>>,
    /// The seat page to go to while active (the token travels in the fragment, which
    /// never reaches a server log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_url: Option<String>,
    /// While active, when the event admits fans to a site: the signed JWT that site
    /// checks (`aud` = the site, `jti` = the ticket id, `exp` = `active_until`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// With the admission token: the site's return URL carrying it, where the fan's
    /// page sends the browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// The token and its URLs, in responses to requests (not repeated in every
    /// stream event: the stream's client already holds them).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub links: Option<TicketLinks>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    /// The status of a ticket at `standing`, in state `ticket_state` as Redis has it: a
    /// waiting ticket of a sale that has not started (or not drawn yet) is prequeued.
    pub(super) fn new(
        state: &SharedState,
        claims: &TicketClaims,
        token: &str,
        standing: Standing,
        serving: i64,
        ticket_state: TicketState,
        observed_rate: Option<f64>,
    ) -> Self {
        let (ticket_state, queue_number) = match standing {
            Standing::Prequeued { queue_number } if ticket_state == TicketState::Waiting => {
                (TicketState::Prequeued, queue_number)
            }
            Standing::Prequeued { queue_number } => (ticket_state, queue_number),
            Standing::InLine { queue_number } => (ticket_state, Some(queue_number)),
        };
        let catalog = state.catalog.current();
        let (position, estimated_wait_seconds) = match ticket_state {
            TicketState::Waiting | TicketState::Prequeued => {
                let position =
                    queue_number.map(|queue_number| queue::tickets_ahead(queue_number, serving));
                let queue = catalog.queue(claims.partition);
                let estimate = position
                    .filter(|_| ticket_state == TicketState::Waiting)
                    .and_then(|position| {
                        queue::estimated_wait_seconds(
                            position,
                            queue.mode,
                            &queue.activation,
                            observed_rate,
                        )
                    });
                (position, estimate)
            }
            _ => (Some(0), Some(0)),
        };
        let sale_starts_at = (ticket_state == TicketState::Prequeued)
            .then(|| catalog.event(&claims.event_id)?.schedule)
            .flatten()
            .map(|schedule| schedule.sale_starts_at);
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
        let admission = catalog
            .event(&claims.event_id)
            .and_then(|event| event.admission.as_ref());
        let (admission_token, return_url) = match (ticket_state, admission) {
            (TicketState::Active { active_until_ms }, Some(admission)) => {
                let token = state.signer.sign(&AdmissionClaims::of(
                    claims,
                    &admission.audience,
                    Utc::now().timestamp(),
                    active_until_ms / 1000,
                ));
                let return_url = admission.return_url_with(&token);
                (Some(token), return_url)
            }
            _ => (None, None),
        };
        Self {
            ticket_id: claims.ticket_id,
            event_id: claims.event_id.clone(),
            partition: claims.partition,
            state: ticket_state,
            queue_number,
            serving_number: serving,
            position,
            estimated_wait_seconds,
            sale_starts_at,
            active_until,
            reservation_url,
            admission_token,
            return_url,
            links: None,
        }
    }

    /// A ticket just issued: waiting (or prequeued), with its token.
    pub fn waiting(
        state: &SharedState,
        claims: &TicketClaims,
        token: String,
        serving: i64,
    ) -> Self {
        let standing = standing(state, claims);
        let mut status = Self::new(
            state,
            claims,
            &token,
            standing,
            serving,
            TicketState::Waiting,
            None,
        );
        status.links = Some(TicketLinks::new(&token));
        status
    }
}

/// Where the ticket stands now: its offset, or its drawn place, or prequeued (see
/// [`contract::schedule::standing`]). A ticket whose event is gone keeps its offset.
pub fn standing(state: &SharedState, claims: &TicketClaims) -> Standing {
    let catalog = state.catalog.current();
    match catalog.event(&claims.event_id) {
        Some(event) => event.standing(claims.partition, claims.queue_number, Utc::now()),
        None => Standing::InLine {
            queue_number: claims.queue_number,
        },
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
    let standing = standing(state, claims);
    let queue_number = match standing {
        Standing::InLine { queue_number }
        | Standing::Prequeued {
            queue_number: Some(queue_number),
        } => queue_number,
        // Not drawn yet on this instance: the counter may already count drawn places,
        // so only a recorded outcome says more than "prequeued".
        Standing::Prequeued { queue_number: None } => i64::MAX,
    };
    let view = state
        .tickets
        .status_in_line(
            claims,
            queue_number,
            now_ms,
            touch.then(|| seen_refresh_ms(grace_seconds)),
        )
        .await
        .map_err(|error| state.store_unavailable(error))?;
    let mut status = TicketStatus::new(
        state,
        claims,
        token,
        standing,
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

/// Where the ticket in the path stands.
#[utoipa::path(
    get,
    path = "/v1/tickets/{token}",
    tag = "tickets",
    params(("token" = String, Path, description = "The ticket token")),
    responses(
        (status = 200, description = "The ticket's status", body = TicketStatus),
        (status = 401, description = "`invalid_token`: missing, malformed, forged, expired or of an unknown queue"),
        (status = 503, description = "`service_unavailable`: the ticket store is unreachable"),
    )
)]
pub async fn by_path(
    State(state): State<SharedState>,
    Path(token): Path<String>,
) -> Result<Json<TicketStatus>, WaitingRoomError> {
    let claims = verify(&state, &token)?;
    ticket_status(&state, &claims, &token, true).await.map(Json)
}

/// Where the bearer's ticket stands.
#[utoipa::path(
    get,
    path = "/v1/tickets/me",
    tag = "tickets",
    security(("ticket_token" = [])),
    responses(
        (status = 200, description = "The ticket's status", body = TicketStatus),
        (status = 401, description = "`invalid_token`: missing, malformed, forged, expired or of an unknown queue"),
        (status = 503, description = "`service_unavailable`: the ticket store is unreachable"),
    )
)]
pub async fn me(
    State(state): State<SharedState>,
    bearer: BearerToken,
) -> Result<Json<TicketStatus>, WaitingRoomError> {
    let token = bearer.token().ok_or(WaitingRoomError::MissingToken)?;
    let claims = verify(&state, token)?;
    ticket_status(&state, &claims, token, true).await.map(Json)
}

/// The public keys that verify ticket tokens (current and rotated-out).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tickets",
    responses((status = 200, description = "A JSON Web Key Set", body = Object))
)]
pub async fn jwks(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(state.verifier.jwks())
}
