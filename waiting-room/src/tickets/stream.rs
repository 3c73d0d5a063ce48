//! Live position: `GET /v1/tickets/{token}/events` (or `/v1/tickets/me/events` with the
//! token as a Bearer credential), a `text/event-stream`.
//!
//! The token is verified and a stream slot taken before anything streams (401 / 503 as
//! JSON). The stream sends `position` on connect, then again whenever its queue's
//! serving counter moves, computed from the instance's [`ServingFeed`] without asking
//! Redis. When the counter passes the fan's number the stream sends exactly one terminal
//! event — `active`, `abandoned` or `expired` (`used` for a ticket already spent) — and
//! ends. The outcome comes from the announcement that reached the ticket; only when
//! that one was skipped (a lagging stream, a resubscription) does the stream read the
//! ticket from Redis, once. A ticket the counter passed before anyone read it (deferred,
//! rare for a streamed ticket: opening the stream reads it) stays at position 0 until
//! an announcement names its outcome; as it cannot tell a skipped announcement from
//! one that did not concern it, it reads its ticket on each one that does not.
//!
//! A ticket of a sale that has not started (or not drawn its pre-queue yet) gets one
//! `prequeued` event, with the start, and the stream ends: the page counts down and
//! connects again after the start, each fan at a random moment of a short spread, so
//! the opening is not a thundering herd of reconnects.
//!
//! [`ServingFeed`]: super::serving_feed::ServingFeed

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::Response;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;

use contract::queue;
use contract::schedule::Standing;
use contract::serving_announcement::{ReachedOutcome, ServingAnnouncement};
use contract::ticket_state::TicketState;
use contract::token::TicketClaims;
use platform::bearer::BearerToken;

use super::presence::PresenceGuard;
use super::serving_feed::LatestAnnouncement;
use super::status::{self, TicketStatus};
use super::stream_slots::{Refused, StreamSlot};
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// `GET /v1/tickets/{token}/events`: the token in the path, for `EventSource`, which
/// cannot send headers.
#[utoipa::path(
    get,
    path = "/v1/tickets/{token}/events",
    tag = "tickets",
    params(("token" = String, Path, description = "The ticket token")),
    responses(
        (status = 200, description = "`status` events until the ticket is used, expired or abandoned", content_type = "text/event-stream", body = String),
        (status = 401, description = "`invalid_token`: missing, malformed, forged, expired or of an unknown queue"),
        (status = 429, description = "`too_many_streams`: this ticket has its most streams open"),
        (status = 503, description = "`too_many_streams`: this server has its most streams open; or `service_unavailable`"),
    )
)]
pub async fn events(
    State(state): State<SharedState>,
    Path(token): Path<String>,
) -> Result<Response, WaitingRoomError> {
    open(state, token).await
}

/// `GET /v1/tickets/me/events` with `Authorization: Bearer <ticket token>`, for clients
/// that keep tokens out of URLs (and so out of proxies' access logs).
#[utoipa::path(
    get,
    path = "/v1/tickets/me/events",
    tag = "tickets",
    security(("ticket_token" = [])),
    responses(
        (status = 200, description = "`status` events until the ticket is used, expired or abandoned", content_type = "text/event-stream", body = String),
        (status = 401, description = "`invalid_token`: missing, malformed, forged, expired or of an unknown queue"),
        (status = 429, description = "`too_many_streams`: this ticket has its most streams open"),
        (status = 503, description = "`too_many_streams`: this server has its most streams open; or `service_unavailable`"),
    )
)]
pub async fn my_events(
    State(state): State<SharedState>,
    bearer: BearerToken,
) -> Result<Response, WaitingRoomError> {
    let token = bearer.0.ok_or(WaitingRoomError::MissingToken)?;
    open(state, token).await
}

/// Whether `path` is one of the two routes above (the server serves them off hyper).
pub fn is_stream_path(path: &str) -> bool {
    path.strip_prefix("/v1/tickets/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .is_some_and(|token| !token.is_empty() && !token.contains('/'))
}

async fn open(state: SharedState, token: String) -> Result<Response, WaitingRoomError> {
    let claims = status::verify(&state, &token)?;
    let retry_after_seconds = state.retry_after_seconds;
    let slot =
        state
            .stream_slots
            .try_acquire(claims.ticket_id)
            .map_err(|refused| match refused {
                Refused::InstanceFull => WaitingRoomError::TooManyStreams {
                    retry_after_seconds,
                },
                Refused::TicketFull => WaitingRoomError::TicketStreamsInUse {
                    retry_after_seconds,
                },
            })?;
    // Subscribe before reading the status, so no announcement falls in between.
    // The partition is signed by us: a ticket of a partition raised online may arrive
    // before this instance's catalog has the raise.
    state.serving_feed.ensure(
        state
            .partition_count()
            .max(claims.partition.saturating_add(1)),
    );
    let serving = state
        .serving_feed
        .subscribe(claims.partition)
        .map(WatchStream::from_changes)
        .ok_or(WaitingRoomError::UnknownQueue(claims.partition))?;
    let initial = status::ticket_status(&state, &claims, &token, true).await?;
    // Prequeued tickets end the stream after the first event; the others stream on at
    // their place in line, which no longer changes.
    let queue_number = initial.queue_number.unwrap_or(claims.queue_number);
    let presence = (initial.state == TicketState::Waiting).then(|| {
        state.presence.register(
            claims.ticket_id,
            claims.partition,
            claims.exp,
            chrono::Utc::now().timestamp_millis(),
        )
    });
    let keep_alive = state.stream_keepalive;
    let watcher = TicketWatcher {
        last_serving: initial.serving_number,
        first: Some(initial),
        queue_number,
        finished: false,
        state,
        claims,
        token,
        serving,
        _slot: slot,
        _presence: presence,
    };
    Ok(platform::sse::event_stream(
        watcher.into_stream(),
        keep_alive,
    ))
}

/// Reconnects after a sale's start are spread over this long.
const OPENING_SPREAD_MS: u64 = 10_000;

/// How long a prequeued ticket's client should wait before it connects again: until
/// `starts`, plus a random part of the spread.
fn opening_retry(starts: chrono::DateTime<chrono::Utc>) -> Duration {
    let until_start = (starts - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    until_start + Duration::from_millis(rand::random::<u64>() % OPENING_SPREAD_MS)
}

/// One fan's stream: a few hundred bytes plus the socket.
struct TicketWatcher {
    state: SharedState,
    claims: TicketClaims,
    token: String,
    /// The queue's announcements after the one current at connect.
    serving: WatchStream<LatestAnnouncement>,
    first: Option<TicketStatus>,
    /// The ticket's place in line (its offset, or its drawn place).
    queue_number: i64,
    last_serving: i64,
    finished: bool,
    _slot: StreamSlot,
    _presence: Option<PresenceGuard>,
}

impl TicketWatcher {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut watcher| async move {
            let event = watcher.next_event().await?;
            Some((Ok(event), watcher))
        })
    }

    async fn next_event(&mut self) -> Option<Event> {
        if let Some(mut first) = self.first.take() {
            first.links = None;
            let retry = match first.sale_starts_at {
                // A client that reconnects by itself (any EventSource) comes back after
                // the start, at a random moment of the spread, not every few seconds.
                Some(starts) => opening_retry(starts).max(self.state.stream_retry),
                None => self.state.stream_retry,
            };
            return Some(self.event(&first).retry(retry));
        }
        if self.finished {
            return None;
        }
        let expiry = Duration::from_secs(
            u64::try_from(self.claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0),
        );
        let expired = tokio::time::sleep(expiry);
        tokio::pin!(expired);
        loop {
            let announcement = tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                () = &mut expired => {
                    let status = self.status_now(TicketState::Expired, self.last_serving, None);
                    return Some(self.event(&status));
                }
                latest = self.serving.next() => latest?,
            };
            let Some(announcement) = announcement else {
                continue;
            };
            if announcement.serving < self.last_serving {
                continue;
            }
            let moved = announcement.serving > self.last_serving;
            self.last_serving = announcement.serving;
            if !queue::is_reached(self.queue_number, announcement.serving) {
                if !moved {
                    continue;
                }
                let status = self.status_now(
                    TicketState::Waiting,
                    announcement.serving,
                    Some(announcement.rate_per_second),
                );
                return Some(self.event(&status));
            }
            // Reached: an outcome ends the stream; a deferred ticket still waits.
            let status = self.outcome(&announcement).await?;
            if status.state != TicketState::Waiting || moved {
                return Some(self.event(&status));
            }
        }
    }

    /// The ticket's state once the counter passed it: from the announcement that reached
    /// it, or read from Redis when this stream did not see that one.
    async fn outcome(&self, announcement: &Arc<ServingAnnouncement>) -> Option<TicketStatus> {
        let reached = match announcement.outcome_for(self.queue_number) {
            Some(ReachedOutcome::Activated { active_until_ms }) => {
                TicketState::Active { active_until_ms }
            }
            Some(ReachedOutcome::Abandoned) => TicketState::Abandoned,
            Some(ReachedOutcome::Deferred) => TicketState::Waiting,
            None => {
                return match status::ticket_status(&self.state, &self.claims, &self.token, false)
                    .await
                {
                    Ok(status) => Some(status),
                    Err(error) => {
                        // The client reconnects (retry hint) and reads the state afresh.
                        tracing::warn!(%error, "cannot read a reached ticket's state; ending its stream");
                        None
                    }
                };
            }
        };
        Some(self.status_now(
            reached,
            announcement.serving,
            Some(announcement.rate_per_second),
        ))
    }

    fn status_now(&self, state: TicketState, serving: i64, rate: Option<f64>) -> TicketStatus {
        let standing = Standing::InLine {
            queue_number: self.queue_number,
        };
        TicketStatus::new(
            &self.state,
            &self.claims,
            &self.token,
            standing,
            serving,
            state,
            rate,
        )
    }

    /// The SSE event for a status; a terminal one ends the stream after it.
    fn event(&mut self, status: &TicketStatus) -> Event {
        let name = if status.state == TicketState::Waiting {
            "position"
        } else {
            self.finished = true;
            status.state.as_str()
        };
        Event::default()
            .event(name)
            .id(status.serving_number.to_string())
            .json_data(status)
            .unwrap_or_else(|_| Event::default().event(name))
    }
}

#[cfg(test)]
mod tests {
    use super::is_stream_path;

    #[test]
    fn only_the_two_stream_routes_are_stream_paths() {
        assert!(is_stream_path("/v1/tickets/me/events"));
        assert!(is_stream_path("/v1/tickets/eyJ.abc.def/events"));
        assert!(!is_stream_path("/v1/tickets/me"));
        assert!(!is_stream_path("/v1/tickets//events"));
        assert!(!is_stream_path("/v1/tickets/a/b/events"));
        assert!(!is_stream_path("/admin/events/x/stats/events"));
    }
}
