//! Who may join an event, and as whom: the event's [`EntryPolicy`] applied to a join
//! request.
//!
//! A fan is anonymous, named by a `user_id` (which keeps one place per id but is never a
//! credential: anyone can type it), or vouched for by the ticketing site with an enqueue
//! token (the token's subject is the fan, from any device). An event whose identity is
//! `enqueue_token` admits only the last kind.

pub mod challenge;
pub mod enqueue_token;
pub mod issuers;

use chrono::Utc;
use contract::catalog::{EntryChallenge, EntryIdentity, EventConfig};
use contract::redis_schema::RedisKeys;
use serde::Deserialize;

use self::challenge::ChallengeFailure;
use self::enqueue_token::{EnqueueTokenError, VerifiedFan};
use crate::error::WaitingRoomError;
use crate::state::AppState;

const MAX_USER_ID_LEN: usize = 128;

/// `POST /v1/events/{event_id}/tickets` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct JoinRequest {
    pub user_id: Option<String>,
    pub enqueue_token: Option<String>,
    /// A solved challenge of `GET /v1/events/{event_id}/challenge`.
    #[schema(value_type = Option<Object>)]
    pub proof_of_work: Option<altcha::Payload>,
}

/// Who is joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entrant {
    /// Nobody in particular: every join is a new place.
    Anonymous,
    /// A `user_id` the fan typed: one place per id, but a repeat never gets the token.
    Named(String),
    /// The fan an enqueue token vouches for: a repeat gets the same ticket back.
    Verified(VerifiedFan),
}

impl Entrant {
    /// Decides who is joining `event`: checks its proof of work when the event asks for
    /// one, then its identity. An enqueue token, when sent, is always verified (a
    /// `user_id` beside it is ignored).
    pub async fn admit(
        state: &AppState,
        event: &EventConfig,
        request: JoinRequest,
    ) -> Result<Self, WaitingRoomError> {
        let proof_of_work =
            match event.entry.challenge {
                EntryChallenge::ProofOfWork => Some(request.proof_of_work.ok_or_else(|| {
                    WaitingRoomError::ChallengeRequired(event.event_id.to_string())
                })?),
                EntryChallenge::None => None,
            };
        let entrant = Self::identify(state, event, request.enqueue_token, request.user_id).await?;
        // Spent only once the fan is admitted: a refused token does not cost a solve.
        if let Some(payload) = proof_of_work {
            spend_proof_of_work(state, &payload, event.event_id.as_str()).await?;
        }
        Ok(entrant)
    }

    async fn identify(
        state: &AppState,
        event: &EventConfig,
        enqueue_token: Option<String>,
        user_id: Option<String>,
    ) -> Result<Self, WaitingRoomError> {
        if let Some(token) = enqueue_token {
            let fan = enqueue_token::verify(
                &state.issuers,
                &token,
                event.event_id.as_str(),
                event.entry.issuer.as_deref(),
                Utc::now().timestamp(),
            )
            .await
            .map_err(|error| match error {
                EnqueueTokenError::Invalid(reason) => {
                    metrics::counter!("waiting_room_enqueue_tokens_refused_total").increment(1);
                    WaitingRoomError::InvalidEnqueueToken(reason)
                }
                EnqueueTokenError::KeysUnavailable(issuer) => {
                    tracing::warn!(issuer, "an enqueue token arrived before its issuer's keys");
                    WaitingRoomError::StoreUnavailable {
                        retry_after_seconds: state.retry_after_seconds,
                    }
                }
            })?;
            return Ok(Self::Verified(fan));
        }
        if event.entry.identity == EntryIdentity::EnqueueToken {
            return Err(WaitingRoomError::EnqueueTokenRequired);
        }
        Ok(match user_id {
            Some(user_id) => Self::Named(validate_user_id(user_id)?),
            None => Self::Anonymous,
        })
    }

    /// The Redis key of this entrant's one place in `event_id`'s line, if it has one.
    pub fn place_key(&self, keys: &RedisKeys, event_id: &str) -> Option<String> {
        match self {
            Self::Anonymous => None,
            Self::Named(user_id) => Some(keys.user_ticket(event_id, user_id)),
            Self::Verified(fan) => {
                Some(keys.verified_fan_ticket(event_id, &fan.issuer, &fan.subject))
            }
        }
    }

    /// Who the ticket's record names (for audit): the user id or the token's subject.
    pub fn record_name(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Named(user_id) => Some(user_id),
            Self::Verified(fan) => Some(&fan.subject),
        }
    }
    /// The fan the site vouched for, whose admission token names them (`sub`).
    pub fn verified_subject(&self) -> Option<&str> {
        match self {
            Self::Verified(fan) => Some(&fan.subject),
            Self::Anonymous | Self::Named(_) => None,
        }
    }
}

/// Verifies the solved challenge and spends it: a second join with it is refused.
async fn spend_proof_of_work(
    state: &AppState,
    payload: &altcha::Payload,
    event_id: &str,
) -> Result<(), WaitingRoomError> {
    let refused = |failure| {
        metrics::counter!("waiting_room_challenges_refused_total").increment(1);
        WaitingRoomError::ChallengeFailed(failure)
    };
    let nonce = state
        .challenges
        .verify(payload, event_id)
        .map_err(refused)?;
    // Spent for as long as it could verify: until it expires, plus clock skew.
    let expires_at = payload.challenge.parameters.expires_at.unwrap_or(0);
    let ttl_seconds = (expires_at - Utc::now().timestamp()).max(0).unsigned_abs() + 60;
    let first_use = state
        .joins
        .spend_challenge(&nonce, ttl_seconds)
        .await
        .map_err(|error| state.store_unavailable(error))?;
    if first_use {
        Ok(())
    } else {
        Err(refused(ChallengeFailure::Replayed))
    }
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
