//! `POST /v1/events/{event_id}/tickets`: join the queue.
//!
//! A ticket exists only once the broker acknowledged its record (idempotent producer,
//! `acks=all`); its offset is the queue number. One place per fan per event (see
//! [`Entrant`]): the first of any number of racing requests claims the fan's place in
//! Redis and issues the ticket, the others wait for it. A fan an enqueue token vouches
//! for gets the same ticket again; a repeated `user_id` learns its place in line
//! (409 `already_in_line`) but never the token: anyone can type a `user_id`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use uuid::Uuid;

use contract::catalog::{EventConfig, EventState};
use contract::schedule::SalePhase;
use contract::ticket_record::TicketRecord;
use contract::ticket_state::TicketState;
use contract::token::TicketClaims;
use platform::error::OptionalJson;

use super::join_store::{Place, PlaceClaim, Registration};
use super::rate_limit::{client_address, Scope};
use super::status::{ticket_status, TicketStatus};
use crate::entry::{Entrant, JoinRequest};
use crate::error::{PlaceInLine, WaitingRoomError};
use crate::state::SharedState;

/// Tickets the broker acknowledged (the join rate).
const TICKETS_ISSUED: &str = "waiting_room_tickets_issued_total";
/// Joins refused because the broker did not acknowledge in time (produce errors).
const JOINS_UNAVAILABLE: &str = "waiting_room_join_unavailable_total";
const JOINS_RATE_LIMITED: &str = "waiting_room_joins_rate_limited_total";
const JOINS_ALREADY_IN_LINE: &str = "waiting_room_joins_already_in_line_total";

/// Makes the join's counters series from the start, so rates over them (the dashboard,
/// the alerts) read zero rather than nothing before the first join.
pub fn register_metrics() {
    for counter in [TICKETS_ISSUED, JOINS_UNAVAILABLE, JOINS_ALREADY_IN_LINE] {
        metrics::counter!(counter).increment(0);
    }
    for scope in Scope::ALL {
        metrics::counter!(JOINS_RATE_LIMITED, "scope" => scope.as_str()).increment(0);
    }
}

/// How often a request waiting for a racing duplicate checks whether it finished.
const CLAIM_POLL: Duration = Duration::from_millis(20);

/// Joins the event's queue: a ticket token and its status.
#[utoipa::path(
    post,
    path = "/v1/events/{event_id}/tickets",
    tag = "tickets",
    params(("event_id" = String, Path, description = "The event's id")),
    request_body(content = Option<JoinRequest>, description = "Optional: who is joining and what proves it; an empty body joins anonymously"),
    responses(
        (status = 201, description = "A new ticket", body = TicketStatus),
        (status = 200, description = "The ticket this enqueue token's fan already holds", body = TicketStatus),
        (status = 401, description = "`invalid_enqueue_token`"),
        (status = 403, description = "`enqueue_token_required`, `challenge_required` or `challenge_failed`"),
        (status = 404, description = "`event_not_found`"),
        (status = 409, description = "`event_closed`, `not_open_yet` (with `Retry-After`) or `already_in_line` (with the place in line)"),
        (status = 429, description = "`rate_limited`"),
        (status = 503, description = "`queue_unavailable` (no ticket was issued) or `service_unavailable`"),
    )
)]
pub async fn join(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<JoinRequest>,
) -> Result<Response, WaitingRoomError> {
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
    refuse_outside_schedule(event)?;
    let client = client_address(&headers, peer, &state.trusted_proxies);
    match state
        .rate_limiter
        .check(client, event.event_id.as_str())
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => {
            metrics::counter!(JOINS_RATE_LIMITED, "scope" => refusal.scope.as_str()).increment(1);
            return Err(WaitingRoomError::RateLimited {
                retry_after_seconds: refusal.retry_after_seconds,
            });
        }
        Err(error) => return Err(state.store_unavailable(error)),
    }
    let entrant = Entrant::admit(&state, event, body.unwrap_or_default()).await?;
    let (status, ticket) = match entrant.place_key(&state.keys, event.event_id.as_str()) {
        None => (
            StatusCode::CREATED,
            issue(&state, event, &entrant, None).await?,
        ),
        Some(place) => join_once(&state, event, &entrant, &place).await?,
    };
    Ok((status, Json(ticket)).into_response())
}

/// A scheduled sale takes joins from the pre-queue's opening until its end.
fn refuse_outside_schedule(event: &EventConfig) -> Result<(), WaitingRoomError> {
    let now = Utc::now();
    let Some(schedule) = event.schedule else {
        return Ok(());
    };
    match schedule.phase(now) {
        SalePhase::BeforePrequeue => Err(WaitingRoomError::NotOpenYet {
            prequeue_opens_at: schedule.prequeue_opens_at,
            sale_starts_at: schedule.sale_starts_at,
            retry_after_seconds: u64::try_from(
                (schedule.prequeue_opens_at - now).num_seconds() + 1,
            )
            .unwrap_or(1),
        }),
        SalePhase::Ended => Err(WaitingRoomError::EventClosed(event.event_id.to_string())),
        SalePhase::Prequeue | SalePhase::OnSale => Ok(()),
    }
}

/// Joins `entrant` at most once: its place holds one live ticket at a time.
async fn join_once(
    state: &SharedState,
    event: &EventConfig,
    entrant: &Entrant,
    place: &str,
) -> Result<(StatusCode, TicketStatus), WaitingRoomError> {
    let place = Place::claimed(place, Uuid::new_v4());
    // The claim outlives a slow produce, so a crashed issuer frees the slot by itself.
    let claim_ttl_ms = u64::try_from(state.produce_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(3);
    let deadline = Instant::now() + state.produce_timeout * 2;
    // Only the fan a token vouches for counts as seen: a typed id proves nothing.
    let verified = matches!(entrant, Entrant::Verified(_));
    loop {
        let claim = state
            .joins
            .claim_place(&place, claim_ttl_ms)
            .await
            .map_err(|error| state.store_unavailable(error))?;
        match claim {
            PlaceClaim::Claimed => {
                return issue_claimed(state, event, entrant, &place)
                    .await
                    .map(|ticket| (StatusCode::CREATED, ticket))
            }
            PlaceClaim::Issued(token) => match existing_ticket(state, &token, verified).await? {
                Some(ticket) if verified => return Ok((StatusCode::OK, ticket)),
                Some(ticket) => {
                    metrics::counter!(JOINS_ALREADY_IN_LINE).increment(1);
                    return Err(WaitingRoomError::AlreadyInLine(Box::new(PlaceInLine::of(
                        &ticket,
                    ))));
                }
                // Abandoned (or no longer verifiable): a fresh place at the back.
                None => {
                    if state
                        .joins
                        .reclaim_place(&place, &token, claim_ttl_ms)
                        .await
                        .map_err(|error| state.store_unavailable(error))?
                    {
                        return issue_claimed(state, event, entrant, &place)
                            .await
                            .map(|ticket| (StatusCode::CREATED, ticket));
                    }
                }
            },
            PlaceClaim::Pending => {}
        }
        if Instant::now() >= deadline {
            return Err(WaitingRoomError::QueueUnavailable {
                retry_after_seconds: state.retry_after_seconds,
            });
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}

/// The place's current ticket, unless it was abandoned or cannot be verified any more;
/// `touch` records its holder as seen.
async fn existing_ticket(
    state: &SharedState,
    token: &str,
    touch: bool,
) -> Result<Option<TicketStatus>, WaitingRoomError> {
    let Ok(claims) = state.verifier.verify(token, Utc::now().timestamp()) else {
        return Ok(None);
    };
    let status = ticket_status(state, &claims, token, touch).await?;
    let ended_without_the_fan =
        matches!(status.state, TicketState::Abandoned | TicketState::Released);
    Ok((!ended_without_the_fan).then_some(status))
}

async fn issue_claimed(
    state: &SharedState,
    event: &EventConfig,
    entrant: &Entrant,
    place: &Place,
) -> Result<TicketStatus, WaitingRoomError> {
    let result = issue(state, event, entrant, Some(place.clone())).await;
    if result.is_err() {
        if let Err(error) = state.joins.release_claim(place).await {
            tracing::warn!(%error, "cannot release a place claim; it expires by itself");
        }
    }
    result
}

/// Appends the ticket's record, waits for the broker's acknowledgement, then signs the
/// token and registers the ticket in Redis. Runs as its own task: once the broker has
/// the record, a client that hangs up cannot stop the registration halfway.
async fn issue(
    state: &SharedState,
    event: &EventConfig,
    entrant: &Entrant,
    place: Option<Place>,
) -> Result<TicketStatus, WaitingRoomError> {
    // A closed event is refused before this; one that gave its queue back is closed.
    let partition = event
        .partition
        .ok_or_else(|| WaitingRoomError::EventClosed(event.event_id.to_string()))?;
    let issuing = tokio::spawn(issue_ticket(
        state.clone(),
        event.event_id.to_string(),
        partition,
        entrant.record_name().map(str::to_owned),
        entrant.verified_subject().map(str::to_owned),
        place,
    ));
    issuing.await.map_err(WaitingRoomError::internal)?
}

async fn issue_ticket(
    state: SharedState,
    event_id: String,
    partition: i32,
    record_name: Option<String>,
    subject: Option<String>,
    place: Option<Place>,
) -> Result<TicketStatus, WaitingRoomError> {
    let now = Utc::now();
    let ticket_id = Uuid::now_v7();
    let record = TicketRecord::new(ticket_id, event_id.clone(), record_name, now);
    let payload = record.to_json();
    let delivery = state
        .producer
        .send(
            &state.tickets_topic,
            Some(partition),
            &event_id,
            &payload,
            state.produce_timeout,
        )
        .await;
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(reason) => {
            metrics::counter!(JOINS_UNAVAILABLE).increment(1);
            tracing::warn!(%event_id, %reason, "broker did not acknowledge a ticket");
            return Err(WaitingRoomError::QueueUnavailable {
                retry_after_seconds: state.retry_after_seconds,
            });
        }
    };
    let claims = TicketClaims {
        ticket_id,
        event_id,
        partition: delivery.partition,
        queue_number: delivery.offset,
        iat: now.timestamp(),
        exp: now.timestamp() + state.ticket_ttl_seconds,
        subject,
    };
    let token = state.signer.sign(&claims);
    let registration = Registration {
        claims,
        token,
        place,
        now_ms: now.timestamp_millis(),
    };
    let serving = match state.joins.register_issued(&registration).await {
        Ok(serving) => serving,
        Err(error) => {
            // The ticket exists: the fan gets it now, Redis learns of it when it can.
            tracing::warn!(%error, ticket_id = %registration.claims.ticket_id, "ticket registration failed; repairing in the background");
            state.registration_repair.later(registration.clone());
            state
                .serving_feed
                .latest_serving(registration.claims.partition)
        }
    };
    metrics::counter!(TICKETS_ISSUED).increment(1);
    let Registration { claims, token, .. } = registration;
    Ok(TicketStatus::waiting(&state, &claims, token, serving))
}
