//! The slot API a protected site calls with its API key: `POST
//! /v1/admissions/{jti}/complete` (the fan bought: the ticket is used) and `POST
//! /v1/admissions/{jti}/release` (the fan left: the ticket ends as released). Either
//! frees the ticket's capacity slot at once, so the activator lets the next fan in on
//! its next tick. Both are idempotent: the same call again answers the same.
//!
//! A key settles only admissions of its own site (the events whose admission audience
//! it names); any other ticket is 404, as if it did not exist.

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use contract::ticket_state::{MarkUsed, SessionEnd, TicketState};
use platform::bearer::BearerToken;
use serde::Serialize;
use uuid::Uuid;

use super::site_keys;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// What a settled admission is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Settled {
    pub jti: Uuid,
    pub event_id: String,
    /// `used` after complete, `released` after release.
    pub state: TicketState,
}

#[utoipa::path(
    post,
    path = "/v1/admissions/{jti}/complete",
    tag = "admissions",
    security(("site_api_key" = [])),
    params(("jti" = String, Path, description = "The admission token's `jti` (the ticket id)")),
    responses(
        (status = 200, description = "The ticket is used and its slot free (again: the same answer)", body = Settled),
        (status = 401, description = "`invalid_api_key`: missing, wrong or revoked site API key"),
        (status = 404, description = "`admission_not_found`: not an admission of the key's site"),
        (status = 409, description = "`admission_not_active`: it already ended otherwise (`state`)"),
        (status = 503, description = "`service_unavailable`: Redis or PostgreSQL is unreachable"),
    )
)]
pub async fn complete(
    State(state): State<SharedState>,
    Path(jti): Path<String>,
    bearer: BearerToken,
) -> Result<Json<Settled>, WaitingRoomError> {
    settle(&state, &jti, &bearer, SessionEnd::Completed)
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/v1/admissions/{jti}/release",
    tag = "admissions",
    security(("site_api_key" = [])),
    params(("jti" = String, Path, description = "The admission token's `jti` (the ticket id)")),
    responses(
        (status = 200, description = "The ticket ended as released and its slot is free (again: the same answer)", body = Settled),
        (status = 401, description = "`invalid_api_key`: missing, wrong or revoked site API key"),
        (status = 404, description = "`admission_not_found`: not an admission of the key's site"),
        (status = 409, description = "`admission_not_active`: it already ended otherwise (`state`)"),
        (status = 503, description = "`service_unavailable`: Redis or PostgreSQL is unreachable"),
    )
)]
pub async fn release(
    State(state): State<SharedState>,
    Path(jti): Path<String>,
    bearer: BearerToken,
) -> Result<Json<Settled>, WaitingRoomError> {
    settle(&state, &jti, &bearer, SessionEnd::Released)
        .await
        .map(Json)
}

async fn settle(
    state: &SharedState,
    raw_jti: &str,
    bearer: &BearerToken,
    end: SessionEnd,
) -> Result<Settled, WaitingRoomError> {
    let presented = bearer.token().ok_or(WaitingRoomError::InvalidSiteKey)?;
    let audience = site_keys::authenticate(&state.postgres, presented)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot read the site keys");
            WaitingRoomError::StoreUnavailable {
                retry_after_seconds: state.retry_after_seconds,
            }
        })?
        .ok_or(WaitingRoomError::InvalidSiteKey)?;
    let not_found = || WaitingRoomError::AdmissionNotFound(raw_jti.to_owned());
    let jti = Uuid::parse_str(raw_jti).map_err(|_| not_found())?;
    let catalog = state.catalog.current();
    if !catalog.loaded {
        return Err(WaitingRoomError::CatalogNotLoaded {
            retry_after_seconds: state.retry_after_seconds,
        });
    }
    // The queues of the key's site's events now: a ticket's key carries its queue. An
    // operator who changes an event's site hands the live admissions' slots to the new
    // site's key (docs/integration.md).
    let ours = |event_id: &str| {
        catalog
            .event(event_id)
            .and_then(|event| event.admission.as_ref())
            .is_some_and(|admission| admission.audience == audience)
    };
    let mut partitions: Vec<i32> = catalog
        .events()
        .filter(|event| ours(event.event_id.as_str()))
        .filter_map(|event| event.partition)
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    let admitted = state
        .tickets
        .admitted(jti, &partitions)
        .await
        .map_err(|error| state.store_unavailable(error))?
        .filter(|admitted| ours(&admitted.event_id))
        .ok_or_else(not_found)?;
    let outcome = state
        .tickets
        .end_session(jti, &admitted, end, Utc::now().timestamp_millis())
        .await
        .map_err(|error| state.store_unavailable(error))?;
    match outcome {
        MarkUsed::Marked | MarkUsed::AlreadyEnded => Ok(Settled {
            jti,
            event_id: admitted.event_id,
            state: end.outcome(),
        }),
        MarkUsed::NotActive(ticket_state) => Err(WaitingRoomError::AdmissionNotActive {
            jti,
            state: ticket_state,
        }),
    }
}
