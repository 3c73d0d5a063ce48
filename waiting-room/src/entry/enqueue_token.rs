//! Verifying an enqueue token: the ticketing site's signed statement that this fan (its
//! `sub`) may join this event, for a short while.
//!
//! Checked, in order: the header's algorithm (RS256, ES256 or EdDSA only), the issuer
//! (a trusted one, and the event's own when it names one), the signature (by key id, or
//! every key of the algorithm when the token names none), expiry and not-before with the
//! issuer's leeway, the audience, a lifetime no longer than the issuer allows, the event
//! claim, and a usable subject.

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::issuers::{Issuer, IssuerKey, IssuerSettings, TokenAlgorithm, TrustedIssuers};

/// Longest accepted subject, in bytes.
const MAX_SUBJECT_LEN: usize = 256;

/// The fan a valid token vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFan {
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueTokenError {
    /// The token does not admit this fan to this event (401 `invalid_enqueue_token`).
    #[error("invalid enqueue token: {0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched yet: our failure, not the fan's (503).
    #[error("the keys of issuer '{0}' are not available yet")]
    KeysUnavailable(String),
}

fn invalid(reason: impl Into<String>) -> EnqueueTokenError {
    EnqueueTokenError::Invalid(reason.into())
}

#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: Option<String>,
}

/// Verifies `token` for `event_id`; `required_issuer` is the event's own issuer, if it
/// names one. `now` is seconds since the epoch.
pub async fn verify(
    issuers: &TrustedIssuers,
    token: &str,
    event_id: &str,
    required_issuer: Option<&str>,
    now: i64,
) -> Result<VerifiedFan, EnqueueTokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| invalid("not a signed JWT (JWS)"))?;
    if TokenAlgorithm::of(header.alg).is_none() {
        return Err(invalid(format!(
            "algorithm {:?} is not accepted (RS256, ES256 or EdDSA)",
            header.alg
        )));
    }
    // The issuer picks the keys; nothing from the payload is trusted before the
    // signature is checked with them.
    let claimed = jsonwebtoken::dangerous::insecure_decode::<UnverifiedIssuer>(token)
        .map_err(|_| invalid("the payload is not a JSON object"))?
        .claims
        .iss
        .ok_or_else(|| invalid("no iss claim"))?;
    let issuer = issuers
        .get(&claimed)
        .ok_or_else(|| invalid(format!("issuer '{claimed}' is not trusted")))?;
    if required_issuer.is_some_and(|required| required != claimed) {
        return Err(invalid(format!(
            "this event takes tokens from its own issuer, not '{claimed}'"
        )));
    }
    let kid = header.kid.as_deref();
    let mut claims = check_signature(issuer, token, header.alg, kid)?;
    // An unknown key may be the issuer's new one: fetch its keys again (rate limited).
    if claims.is_none() && issuer.refetch_if_stale(issuers.client()).await {
        claims = check_signature(issuer, token, header.alg, kid)?;
    }
    match claims {
        Some(claims) => check_claims(&issuer.settings, &claims, event_id, now),
        None if issuer.keys().is_empty() => Err(EnqueueTokenError::KeysUnavailable(claimed)),
        None => Err(invalid("no key of the issuer verifies the signature")),
    }
}

/// The token's claims if one of the issuer's keys verifies it (and the registered
/// claims hold); `None` when no key matches, so the caller may fetch new ones.
fn check_signature(
    issuer: &Issuer,
    token: &str,
    algorithm: Algorithm,
    kid: Option<&str>,
) -> Result<Option<Map<String, Value>>, EnqueueTokenError> {
    let settings = &issuer.settings;
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.leeway_seconds;
    validation.validate_nbf = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let keys = issuer.keys();
    // A key without an id (a key file) is tried whatever id the token names.
    let candidates = keys.iter().filter(|key: &&IssuerKey| {
        key.algorithm == algorithm
            && (kid.is_none() || key.key_id.is_none() || key.key_id.as_deref() == kid)
    });
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return Ok(Some(data.claims)),
            Err(error) if is_signature_mismatch(&error) => {}
            Err(error) => return Err(invalid(describe(&error))),
        }
    }
    Ok(None)
}

fn is_signature_mismatch(error: &jsonwebtoken::errors::Error) -> bool {
    use jsonwebtoken::errors::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::InvalidSignature | ErrorKind::InvalidKeyFormat | ErrorKind::InvalidEcdsaKey
    )
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token's issuer does not match".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no {claim} claim"),
        _ => format!("the token cannot be read ({error})"),
    }
}

fn check_claims(
    settings: &IssuerSettings,
    claims: &Map<String, Value>,
    event_id: &str,
    now: i64,
) -> Result<VerifiedFan, EnqueueTokenError> {
    // Read as jsonwebtoken read it (an unsigned integer): a huge `exp` must not slip
    // past the cap by failing to fit another type.
    let expires = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("exp must be a whole number of seconds"))?;
    let longest = settings
        .max_lifetime_seconds
        .saturating_add(settings.leeway_seconds);
    if expires.saturating_sub(now.max(0).unsigned_abs()) > longest {
        return Err(invalid(format!(
            "the token lives too long: it must expire within {} s",
            settings.max_lifetime_seconds
        )));
    }
    match claims.get(&settings.event_claim).and_then(Value::as_str) {
        Some(named) if named == event_id => {}
        Some(_) => return Err(invalid("the token is for another event")),
        None => {
            return Err(invalid(format!(
                "no {} claim naming the event",
                settings.event_claim
            )))
        }
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(invalid(format!("sub must be 1-{MAX_SUBJECT_LEN} bytes")));
    }
    Ok(VerifiedFan {
        issuer: settings.issuer.clone(),
        subject: subject.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> IssuerSettings {
        serde_json::from_value(json!({
            "issuer": "https://tickets.example", "audience": "waiting-room",
            "jwks_url": "https://tickets.example/jwks.json", "max_lifetime_seconds": 600,
        }))
        .expect("settings")
    }

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().expect("object").clone()
    }

    #[test]
    fn the_subject_of_a_token_for_this_event_is_the_fan() {
        let fan = check_claims(
            &settings(),
            &claims(json!({"sub": "fan-1", "event_id": "gig", "exp": 1_100})),
            "gig",
            1_000,
        )
        .expect("valid");
        assert_eq!(fan.subject, "fan-1");
        assert_eq!(fan.issuer, "https://tickets.example");
    }

    #[test]
    fn long_lived_misdirected_and_subjectless_tokens_are_refused() {
        let now = 1_000;
        for (name, value) in [
            (
                "too long",
                json!({"sub": "f", "event_id": "gig", "exp": now + 600 + 30 + 1}),
            ),
            (
                "beyond i64",
                json!({"sub": "f", "event_id": "gig", "exp": u64::MAX}),
            ),
            (
                "fractional",
                json!({"sub": "f", "event_id": "gig", "exp": 1_050.5}),
            ),
            (
                "other event",
                json!({"sub": "f", "event_id": "other", "exp": now + 60}),
            ),
            ("no event", json!({"sub": "f", "exp": now + 60})),
            (
                "event not a string",
                json!({"sub": "f", "event_id": 7, "exp": now + 60}),
            ),
            (
                "empty subject",
                json!({"sub": "", "event_id": "gig", "exp": now + 60}),
            ),
            (
                "huge subject",
                json!({"sub": "x".repeat(257), "event_id": "gig", "exp": now + 60}),
            ),
        ] {
            assert!(
                check_claims(&settings(), &claims(value), "gig", now).is_err(),
                "{name} accepted"
            );
        }
    }
}
