//! `POST /v1/events/{event_id}/tickets`: join the queue.
//!
//! A ticket exists only once the broker acknowledged its record (idempotent producer,
//! `acks=all`); its offset is the queue number. One place per `user_id` per event: the
//! first of any number of racing requests claims the user's slot in Redis and issues the
//! ticket, the others wait for it and return the same ticket.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use contract::catalog::{EventConfig, EventState};
use contract::ticket_record::TicketRecord;
use contract::ticket_state::TicketState;
use contract::token::TicketClaims;
use platform::error::OptionalJson;

use super::join_store::UserClaim;
use super::status::{ticket_status, TicketStatus};
use crate::error::WaitingRoomError;
use crate::state::SharedState;

const MAX_USER_ID_LEN: usize = 128;
/// How often a request waiting for a racing duplicate checks whether it finished.
const CLAIM_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default, Deserialize)]
pub struct JoinRequest {
    pub user_id: Option<String>,
}

pub async fn join(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<JoinRequest>,
) -> Result<Response, WaitingRoomError> {
    if let Some(limiter) = &state.rate_limiter {
        let client = client_ip(&headers, peer, state.trust_forwarded_for);
        limiter
            .check(client, Instant::now())
            .map_err(|retry_after_seconds| WaitingRoomError::RateLimited {
                retry_after_seconds,
            })?;
    }
    let catalog = state.catalog.current();
    if !catalog.loaded {
        return Err(WaitingRoomError::CatalogNotLoaded {
            retry_after_seconds: state.retry_after_seconds,
        });
    }
    let event = catalog
        .event(&event_id)
        .ok_or_else(|| WaitingRoomError::EventNotFound(event_id.clone()))?;
    if event.state == EventState::Closed {
        return Err(WaitingRoomError::EventClosed(event_id));
    }
    let user_id = body
        .unwrap_or_default()
        .user_id
        .map(validate_user_id)
        .transpose()?;
    let (status, ticket) = match user_id {
        None => (StatusCode::CREATED, issue(&state, event, None).await?),
        Some(user_id) => join_once_per_user(&state, event, &user_id).await?,
    };
    Ok((status, Json(ticket)).into_response())
}

fn validate_user_id(user_id: String) -> Result<String, WaitingRoomError> {
    let valid = !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && !user_id.chars().any(char::is_control);
    if valid {
        Ok(user_id)
    } else {
        Err(WaitingRoomError::invalid(format!(
            "user_id must be 1-{MAX_USER_ID_LEN} bytes without control characters"
        )))
    }
}

async fn join_once_per_user(
    state: &SharedState,
    event: &EventConfig,
    user_id: &str,
) -> Result<(StatusCode, TicketStatus), WaitingRoomError> {
    let event_id = event.event_id.as_str();
    let nonce = Uuid::new_v4();
    // The claim outlives a slow produce, so a crashed issuer frees the slot by itself.
    let claim_ttl_ms = u64::try_from(state.produce_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(3);
    let deadline = Instant::now() + state.produce_timeout * 2;
    loop {
        let claim = state
            .joins
            .claim_user(event_id, user_id, nonce, claim_ttl_ms)
            .await
            .map_err(|error| state.store_unavailable(error))?;
        match claim {
            UserClaim::Claimed => {
                return issue_claimed(state, event, user_id, nonce)
                    .await
                    .map(|ticket| (StatusCode::CREATED, ticket))
            }
            UserClaim::Issued(token) => match existing_ticket(state, &token).await? {
                Some(ticket) => return Ok((StatusCode::OK, ticket)),
                // Abandoned (or no longer verifiable): a fresh place at the back.
                None => {
                    if state
                        .joins
                        .reclaim_user(event_id, user_id, &token, nonce, claim_ttl_ms)
                        .await
                        .map_err(|error| state.store_unavailable(error))?
                    {
                        return issue_claimed(state, event, user_id, nonce)
                            .await
                            .map(|ticket| (StatusCode::CREATED, ticket));
                    }
                }
            },
            UserClaim::Pending => {}
        }
        if Instant::now() >= deadline {
            return Err(WaitingRoomError::QueueUnavailable {
                retry_after_seconds: state.retry_after_seconds,
            });
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}

/// The user's current ticket, unless it was abandoned or cannot be verified any more.
async fn existing_ticket(
    state: &SharedState,
    token: &str,
) -> Result<Option<TicketStatus>, WaitingRoomError> {
    let Ok(claims) = state.verifier.verify(token, Utc::now().timestamp()) else {
        return Ok(None);
    };
    let status = ticket_status(state, &claims, token, true).await?;
    Ok((status.state != TicketState::Abandoned).then_some(status))
}

async fn issue_claimed(
    state: &SharedState,
    event: &EventConfig,
    user_id: &str,
    nonce: Uuid,
) -> Result<TicketStatus, WaitingRoomError> {
    let result = issue(state, event, Some(user_id)).await;
    if result.is_err() {
        if let Err(error) = state
            .joins
            .release_claim(event.event_id.as_str(), user_id, nonce)
            .await
        {
            tracing::warn!(%error, "cannot release a user claim; it expires by itself");
        }
    }
    result
}

/// Appends the ticket's record, waits for the broker's acknowledgement, then signs the
/// token and registers the ticket in Redis.
async fn issue(
    state: &SharedState,
    event: &EventConfig,
    user_id: Option<&str>,
) -> Result<TicketStatus, WaitingRoomError> {
    let now = Utc::now();
    let ticket_id = Uuid::now_v7();
    let record = TicketRecord::new(
        ticket_id,
        event.event_id.to_string(),
        user_id.map(str::to_owned),
        now,
    );
    let payload = record.to_json();
    let delivery = state
        .producer
        .send(
            &state.tickets_topic,
            Some(event.partition),
            event.event_id.as_str(),
            &payload,
            state.produce_timeout,
        )
        .await;
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(reason) => {
            metrics::counter!("waiting_room_join_unavailable_total").increment(1);
            tracing::warn!(event_id = %event.event_id, %reason, "broker did not acknowledge a ticket");
            return Err(WaitingRoomError::QueueUnavailable {
                retry_after_seconds: state.retry_after_seconds,
            });
        }
    };
    let claims = TicketClaims {
        ticket_id,
        event_id: event.event_id.to_string(),
        partition: delivery.partition,
        queue_number: delivery.offset,
        iat: now.timestamp(),
        exp: now.timestamp() + state.ticket_ttl_seconds,
    };
    let token = state.signer.sign(&claims);
    let serving = state
        .joins
        .register_issued(&claims, &token, user_id, now.timestamp_millis())
        .await
        .map_err(|error| state.store_unavailable(error))?;
    metrics::counter!("waiting_room_tickets_issued_total").increment(1);
    Ok(TicketStatus::waiting(state, &claims, token, serving))
}

fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}
