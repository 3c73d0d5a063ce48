//! Proof-of-work challenges: an event can make every join cost its client some seconds
//! of hashing, which a fan's browser pays once and a bot pays per place.
//!
//! The scheme is ALTCHA's PoW v2 (the `altcha` crate), with SHA-256 and a
//! server-chosen counter: the challenge carries the first half of the key that counter
//! derives, the client tries counters until its key starts with it (about `difficulty`
//! hashes at most), and the server checks the answer with two HMACs, no hashing
//! search. Challenges are signed (no state until they are spent), expire, are bound to
//! one event, and each is accepted once: its nonce is spent in Redis on first use.

use std::collections::BTreeMap;

use altcha::{Challenge, CreateChallengeOptions, Payload, VerifySolutionOptions};
use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// The derivation every challenge uses: one SHA-256 per attempt, which a browser's
/// WebCrypto computes natively.
const ALGORITHM: &str = "SHA-256";
/// The claim binding a challenge to its event.
const EVENT_CLAIM: &str = "event_id";

/// Issues and checks challenges with secrets derived from the ticket signing key, which
/// every instance already shares.
pub struct ChallengeKeys {
    signature_secret: String,
    key_signature_secret: String,
    ttl_seconds: i64,
}

/// Why a proof of work was refused (403 `challenge_failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeFailure {
    #[error("the challenge has expired: fetch a new one")]
    Expired,
    #[error("the challenge was not issued here or was altered")]
    Forged,
    #[error("the challenge is for another event")]
    OtherEvent,
    #[error("the solution is wrong")]
    WrongSolution,
    #[error("the challenge was already used: fetch a new one")]
    Replayed,
}

impl ChallengeKeys {
    /// Derives both HMAC secrets from the signing key's PEM (one purpose string each).
    pub fn derive(signing_key_pem: &str, ttl_seconds: u64) -> Self {
        let secret = |purpose: &str| {
            let digest = Sha256::new()
                .chain_update(purpose.as_bytes())
                .chain_update(signing_key_pem.as_bytes())
                .finalize();
            digest
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        };
        Self {
            signature_secret: secret("waiting-room challenge signature v1"),
            key_signature_secret: secret("waiting-room challenge key signature v1"),
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX),
        }
    }

    /// A new challenge for `event_id`: its counter is drawn from the upper half of
    /// `0..=difficulty`, so every client does at least half the work.
    pub fn issue(&self, event_id: &str, difficulty: u32, now: i64) -> anyhow::Result<Challenge> {
        let random = u32::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..4]
                .try_into()
                .unwrap_or_default(),
        );
        let half = difficulty / 2;
        let counter = half + random % (difficulty - half + 1);
        let data = BTreeMap::from([(EVENT_CLAIM.to_owned(), serde_json::json!(event_id))]);
        Ok(altcha::create_challenge(CreateChallengeOptions {
            algorithm: ALGORITHM.into(),
            cost: 1,
            counter: Some(counter),
            data: Some(data),
            expires_at: Some(now.saturating_add(self.ttl_seconds)),
            hmac_signature_secret: Some(self.signature_secret.clone()),
            hmac_key_signature_secret: Some(self.key_signature_secret.clone()),
            ..CreateChallengeOptions::default()
        })?)
    }

    /// Checks a solved challenge for `event_id`; returns its nonce, to be spent once.
    pub fn verify(&self, payload: &Payload, event_id: &str) -> Result<String, ChallengeFailure> {
        let mut options = VerifySolutionOptions::new(
            &payload.challenge,
            &payload.solution,
            self.signature_secret.clone(),
        );
        options.hmac_key_signature_secret = Some(self.key_signature_secret.clone());
        let result = altcha::verify_solution(options).map_err(|_| ChallengeFailure::Forged)?;
        if result.expired {
            return Err(ChallengeFailure::Expired);
        }
        if result.invalid_signature != Some(false) {
            return Err(ChallengeFailure::Forged);
        }
        // Signed by us, so these fields are ours: a missing key signature or event would
        // mean a challenge from a different issuer of this scheme.
        let parameters = &payload.challenge.parameters;
        if parameters.key_signature.is_none() || parameters.algorithm != ALGORITHM {
            return Err(ChallengeFailure::Forged);
        }
        let named = parameters
            .data
            .as_ref()
            .and_then(|data| data.get(EVENT_CLAIM))
            .and_then(serde_json::Value::as_str);
        if named != Some(event_id) {
            return Err(ChallengeFailure::OtherEvent);
        }
        if !result.verified {
            return Err(ChallengeFailure::WrongSolution);
        }
        Ok(parameters.nonce.clone())
    }
}

/// `GET /v1/events/{event_id}/challenge`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedChallenge {
    /// What the client solves and sends back unchanged.
    #[schema(value_type = Object)]
    pub challenge: Challenge,
    /// The largest counter the solution can have (for a progress indication).
    pub difficulty: u32,
}

#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/challenge",
    tag = "tickets",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "A proof-of-work challenge for one join", body = IssuedChallenge),
        (status = 404, description = "`event_not_found`"),
    )
)]
pub async fn issue(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Json<IssuedChallenge>, WaitingRoomError> {
    let catalog = state.catalog.current();
    let event = catalog
        .event(&event_id)
        .ok_or(WaitingRoomError::EventNotFound(event_id))?;
    let difficulty = event.entry.challenge_difficulty;
    let challenge = state
        .challenges
        .issue(event.event_id.as_str(), difficulty, Utc::now().timestamp())
        .map_err(WaitingRoomError::internal)?;
    metrics::counter!("waiting_room_challenges_issued_total").increment(1);
    Ok(Json(IssuedChallenge {
        challenge,
        difficulty,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use altcha::{solve_challenge, SolveChallengeOptions};

    fn solved(keys: &ChallengeKeys, event_id: &str, difficulty: u32) -> Payload {
        let challenge = keys
            .issue(event_id, difficulty, Utc::now().timestamp())
            .expect("issue");
        let solution = solve_challenge(SolveChallengeOptions::new(&challenge))
            .expect("solve")
            .expect("solved in time");
        Payload {
            challenge,
            solution,
        }
    }

    #[test]
    fn a_solved_challenge_verifies_for_its_event_only() {
        let keys = ChallengeKeys::derive("a signing key", 60);
        let payload = solved(&keys, "gig", 200);
        assert_eq!(payload.challenge.parameters.nonce.len(), 32);
        assert!(keys.verify(&payload, "gig").is_ok());
        assert_eq!(
            keys.verify(&payload, "other"),
            Err(ChallengeFailure::OtherEvent)
        );
        let stranger = ChallengeKeys::derive("another deployment's key", 60);
        assert_eq!(
            stranger.verify(&payload, "gig"),
            Err(ChallengeFailure::Forged)
        );
    }

    #[test]
    fn a_wrong_or_altered_answer_is_refused() {
        let keys = ChallengeKeys::derive("a signing key", 60);
        let mut wrong = solved(&keys, "gig", 200);
        wrong.solution.derived_key = "00".repeat(32);
        assert_eq!(
            keys.verify(&wrong, "gig"),
            Err(ChallengeFailure::WrongSolution)
        );
        let mut easier = solved(&keys, "gig", 200);
        easier.challenge.parameters.key_prefix = "00".into();
        assert_eq!(keys.verify(&easier, "gig"), Err(ChallengeFailure::Forged));
    }

    #[test]
    fn an_expired_challenge_is_refused() {
        let keys = ChallengeKeys::derive("a signing key", 60);
        let challenge = keys
            .issue("gig", 50, Utc::now().timestamp() - 120)
            .expect("issue");
        let solution = solve_challenge(SolveChallengeOptions::new(&challenge))
            .expect("solve")
            .expect("solved");
        let payload = Payload {
            challenge,
            solution,
        };
        assert_eq!(keys.verify(&payload, "gig"), Err(ChallengeFailure::Expired));
    }

    #[test]
    fn the_counter_lies_in_the_upper_half() {
        let keys = ChallengeKeys::derive("a signing key", 60);
        for _ in 0..20 {
            let payload = solved(&keys, "gig", 100);
            assert!((50..=100).contains(&payload.solution.counter));
        }
    }
}
