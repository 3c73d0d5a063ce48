//! Ticket tokens and admission tokens: compact JWTs signed with Ed25519 (JWS
//! `alg: EdDSA`), by the same keys (published at `/.well-known/jwks.json`).
//!
//! A ticket token is the fan's place in line, the same before and after activation. An
//! admission token is issued only while the ticket is active, for the site the event
//! admits fans to: standard claims (`aud`, `jti`, `exp`, `sub`) that any JWT library
//! checks, so a site needs nothing from us but the JWKS (see docs/integration.md).
//!
//! The waiting-room signs (the `signing` feature, which only it enables); every other
//! service verifies with the public key alone. The
//! verifier accepts exactly one algorithm, so `alg: none` and HMAC-with-the-public-key
//! confusion are refused before any signature check, and it picks the key by `kid`, so a
//! rotated-out key keeps verifying the tickets it signed while it stays listed.
//!
//! Keys are parsed and signatures verified with `ed25519-dalek`; signing, once per join,
//! uses `aws-lc-rs`, whose assembly signs in about half dalek's time on x86-64. Ed25519
//! signatures are deterministic, so both produce the same bytes (a test checks it).

use std::collections::HashMap;

#[cfg(feature = "signing")]
pub use self::signing::TicketSigner;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const ALGORITHM: &str = "EdDSA";

/// What a ticket token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// The ticket id (UUIDv7).
    #[serde(rename = "sub")]
    pub ticket_id: Uuid,
    pub event_id: String,
    /// The queue (Kafka partition) the ticket waits in.
    pub partition: i32,
    /// The ticket's Kafka offset in that partition: its place in line.
    pub queue_number: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// The fan an enqueue token vouched for (its subject), carried into the admission
    /// token's `sub`; absent for anonymous fans and typed ids, which prove nothing.
    #[serde(rename = "fan", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// What an admission token asserts: this ticket is active for `aud` until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionClaims {
    /// The site the event admits fans to.
    pub aud: String,
    /// The fan an enqueue token vouched for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The ticket id: the slot API's `{jti}`.
    pub jti: Uuid,
    pub event_id: String,
    pub partition: i32,
    pub queue_number: i64,
    pub iat: i64,
    /// The end of the ticket's active window (its `active_until`), in seconds.
    pub exp: i64,
}

impl AdmissionClaims {
    /// The admission of `ticket`, active until `active_until` (seconds), for `audience`.
    pub fn of(ticket: &TicketClaims, audience: &str, iat: i64, active_until: i64) -> Self {
        Self {
            aud: audience.to_owned(),
            sub: ticket.subject.clone(),
            jti: ticket.ticket_id,
            event_id: ticket.event_id.clone(),
            partition: ticket.partition,
            queue_number: ticket.queue_number,
            iat,
            exp: active_until,
        }
    }

    /// The ticket it admits, as our own services read a ticket.
    pub fn ticket(self) -> TicketClaims {
        TicketClaims {
            ticket_id: self.jti,
            event_id: self.event_id,
            partition: self.partition,
            queue_number: self.queue_number,
            iat: self.iat,
            exp: self.exp,
            subject: self.sub,
        }
    }
}

/// Claims that end: checked against `now` after the signature.
trait Expiring: for<'de> Deserialize<'de> {
    fn exp(&self) -> i64;

    /// Whether a payload with (or without) an `aud` can hold these claims.
    fn takes_audience(has_audience: bool) -> bool {
        let _ = has_audience;
        true
    }
}

impl Expiring for TicketClaims {
    fn exp(&self) -> i64 {
        self.exp
    }

    /// An admission token whose `sub` happens to be a UUID would otherwise read as a
    /// ticket whose id is the fan's.
    fn takes_audience(has_audience: bool) -> bool {
        !has_audience
    }
}

/// Only whether a payload names an audience.
#[derive(Deserialize)]
struct AudienceProbe {
    aud: Option<serde::de::IgnoredAny>,
}

impl Expiring for AdmissionClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

/// Either token, as a fan may present it to our own services.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnyClaims {
    // First: an admission token's `sub` is not a ticket id, so it never reads as a ticket.
    Admission(AdmissionClaims),
    Ticket(TicketClaims),
}

impl Expiring for AnyClaims {
    fn exp(&self) -> i64 {
        match self {
            Self::Admission(claims) => claims.exp,
            Self::Ticket(claims) => claims.exp,
        }
    }
}

/// Why a token was refused. The message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm {0:?} is not accepted (only EdDSA)")]
    UnsupportedAlgorithm(String),
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("admission token is for a site this service does not admit")]
    OtherAudience,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// The key id of a public key: the first 16 base64url characters of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)[..16].to_owned()
}

/// Verifies ticket tokens against a set of public keys, chosen by `kid`.
#[derive(Clone, Default)]
pub struct TicketVerifier {
    keys: HashMap<String, VerifyingKey>,
}

impl TicketVerifier {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|key| (key_id(&key), key)).collect(),
        }
    }

    /// Also accepts `key`.
    pub fn with_key(mut self, key: VerifyingKey) -> Self {
        self.keys.insert(key_id(&key), key);
        self
    }

    /// From files of SPKI PEM public keys (`openssl pkey -pubout`).
    pub fn from_public_pem_files(paths: &[std::path::PathBuf]) -> anyhow::Result<Self> {
        let keys = paths
            .iter()
            .map(|path| {
                let pem = std::fs::read_to_string(path).map_err(|error| {
                    anyhow::anyhow!("cannot read the public key {}: {error}", path.display())
                })?;
                VerifyingKey::from_public_key_pem(&pem).map_err(|error| {
                    anyhow::anyhow!("{} is not an Ed25519 public key: {error}", path.display())
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::new(keys))
    }

    /// From a JWKS document (`/.well-known/jwks.json`); non-Ed25519 keys are ignored.
    pub fn from_jwks(jwks: &Value) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for jwk in jwks["keys"].as_array().into_iter().flatten() {
            if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
                continue;
            }
            let x = jwk["x"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("JWK without x"))?;
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(x)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("Ed25519 public key must be 32 bytes"))?;
            keys.push(VerifyingKey::from_bytes(&bytes)?);
        }
        anyhow::ensure!(!keys.is_empty(), "JWKS holds no Ed25519 key");
        Ok(Self::new(keys))
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<(&String, &VerifyingKey)> = self.keys.iter().collect();
        keys.sort_by_key(|(kid, _)| kid.as_str());
        let keys: Vec<Value> = keys
            .into_iter()
            .map(|(kid, key)| {
                json!({"kty": "OKP", "crv": "Ed25519", "alg": ALGORITHM, "use": "sig",
                       "kid": kid, "x": URL_SAFE_NO_PAD.encode(key.as_bytes())})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Checks structure, algorithm, key id, signature and expiry (against `now`, seconds
    /// since the epoch), in that order, and returns the ticket's claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<TicketClaims, TokenError> {
        self.verify_claims(token, now)
    }

    /// [`TicketVerifier::verify`] for an admission token.
    pub fn verify_admission(&self, token: &str, now: i64) -> Result<AdmissionClaims, TokenError> {
        self.verify_claims(token, now)
    }

    /// A ticket token, or an admission token for one of `audiences` (the sites a
    /// service admits as itself), as the ticket's claims.
    pub fn verify_ticket_or_admission(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<TicketClaims, TokenError> {
        Ok(match self.verify_claims(token, now)? {
            AnyClaims::Admission(claims) if audiences.contains(&claims.aud) => claims.ticket(),
            AnyClaims::Admission(_) => return Err(TokenError::OtherAudience),
            AnyClaims::Ticket(claims) => claims,
        })
    }

    fn verify_claims<T: Expiring>(&self, token: &str, now: i64) -> Result<T, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(header_part)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm(header.alg));
        }
        let key = header
            .kid
            .and_then(|kid| self.keys.get(&kid))
            .ok_or(TokenError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|_| TokenError::Malformed)?;
        let signature = Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
        key.verify_strict(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = decode_part(payload_part)?;
        let claims: T = parse_json(&payload)?;
        let probe: AudienceProbe = parse_json(&payload)?;
        if !T::takes_audience(probe.aud.is_some()) {
            return Err(TokenError::Malformed);
        }
        if claims.exp() <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(feature = "signing")]
mod signing {
    use aws_lc_rs::signature::Ed25519KeyPair;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use ed25519_dalek::{SigningKey, VerifyingKey};

    use serde::Serialize;

    use super::{encode_json, key_id, Header, ALGORITHM};

    /// Signs ticket tokens with the current private key.
    pub struct TicketSigner {
        key: Ed25519KeyPair,
        verifying_key: VerifyingKey,
        /// The encoded JWS header, the same for every token this key signs.
        encoded_header: String,
    }

    impl TicketSigner {
        pub fn new(key: SigningKey) -> Self {
            let verifying_key = key.verifying_key();
            let kid = key_id(&verifying_key);
            let encoded_header = encode_json(&Header {
                alg: ALGORITHM.into(),
                typ: Some("JWT".into()),
                kid: Some(kid),
            });
            let key =
                Ed25519KeyPair::from_seed_and_public_key(key.as_bytes(), verifying_key.as_bytes())
                    .expect("a valid dalek key pair is a valid aws-lc key pair");
            Self {
                key,
                verifying_key,
                encoded_header,
            }
        }

        /// From a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
        pub fn from_pkcs8_pem(pem: &str) -> anyhow::Result<Self> {
            let key = SigningKey::from_pkcs8_pem(pem)
                .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {error}"))?;
            Ok(Self::new(key))
        }

        pub fn verifying_key(&self) -> VerifyingKey {
            self.verifying_key
        }

        /// Signs any claims: [`super::TicketClaims`] or [`super::AdmissionClaims`].
        pub fn sign(&self, claims: &impl Serialize) -> String {
            let mut token = format!("{}.{}", self.encoded_header, encode_json(claims));
            let signature = self.key.sign(token.as_bytes());
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
            token
        }
    }
}

#[cfg(any(test, feature = "signing"))]
fn encode_json(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("claims serialize"))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    parse_json(&decode_part(part)?)
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, TokenError> {
    serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(all(test, feature = "signing"))]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn signer(seed: u8) -> TicketSigner {
        TicketSigner::new(SigningKey::from_bytes(&[seed; 32]))
    }

    fn claims(exp: i64) -> TicketClaims {
        TicketClaims {
            ticket_id: Uuid::now_v7(),
            event_id: "concert-1".into(),
            partition: 3,
            queue_number: 1234,
            iat: 1_000,
            exp,
            subject: Some("fan-7".into()),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let signer = signer(1);
        let verifier = TicketVerifier::new([signer.verifying_key()]);
        let claims = claims(2_000);
        let token = signer.sign(&claims);
        assert_eq!(verifier.verify(&token, 1_500), Ok(claims));
        assert!(token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte)));
    }

    #[test]
    fn signatures_are_the_ones_ed25519_dalek_makes() {
        use ed25519_dalek::Signer;
        let key = SigningKey::from_bytes(&[7; 32]);
        let token = TicketSigner::new(key.clone()).sign(&claims(2_000));
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let expected = key.sign(signing_input.as_bytes()).to_bytes();
        assert_eq!(URL_SAFE_NO_PAD.decode(signature), Ok(expected.to_vec()));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let signer = signer(1);
        let verifier = TicketVerifier::new([signer.verifying_key()]);
        let token = signer.sign(&claims(2_000));
        assert_eq!(verifier.verify(&token, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_payloads_are_refused() {
        let signer = signer(1);
        let verifier = TicketVerifier::new([signer.verifying_key()]);
        let token = signer.sign(&claims(2_000));
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(2_000);
        forged.queue_number = 0;
        let forged_payload = encode_json(&forged);
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verifier.verify(&tampered, 1_500),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tokens_from_a_foreign_key_are_refused() {
        let verifier = TicketVerifier::new([signer(1).verifying_key()]);
        let token = signer(2).sign(&claims(2_000));
        assert_eq!(verifier.verify(&token, 1_500), Err(TokenError::UnknownKey));
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_any_signature_check() {
        let signer = signer(1);
        let verifier = TicketVerifier::new([signer.verifying_key()]);
        let payload = encode_json(&claims(2_000));
        for alg in ["none", "HS256"] {
            let header = encode_json(
                &json!({"alg": alg, "typ": "JWT", "kid": key_id(&signer.verifying_key())}),
            );
            let token = format!("{header}.{payload}.");
            assert_eq!(
                verifier.verify(&token, 1_500),
                Err(TokenError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let verifier = TicketVerifier::new([signer(1).verifying_key()]);
        for garbage in ["", ".", "..", "a.b.c", "a.b.c.d", "ü.ü.ü", "eyJ.eyJ.AAAA"] {
            assert!(verifier.verify(garbage, 0).is_err(), "{garbage:?} accepted");
        }
    }

    #[test]
    fn an_admission_token_carries_standard_claims_and_reads_as_its_ticket() {
        let signer = signer(1);
        let verifier = TicketVerifier::new([signer.verifying_key()]);
        let ticket = claims(5_000);
        let admission = AdmissionClaims::of(&ticket, "https://shop.example", 1_200, 1_800);
        let token = signer.sign(&admission);
        let payload: Value = decode_json(token.split('.').nth(1).expect("payload")).expect("JSON");
        assert_eq!(payload["aud"], "https://shop.example");
        assert_eq!(payload["jti"], ticket.ticket_id.to_string());
        assert_eq!(payload["sub"], "fan-7");
        assert_eq!(payload["exp"], 1_800);
        assert_eq!(
            verifier.verify_admission(&token, 1_500),
            Ok(admission.clone())
        );
        // Expired with the active window, not with the ticket.
        assert_eq!(
            verifier.verify_admission(&token, 1_800),
            Err(TokenError::Expired)
        );
        let ours = ["https://shop.example".to_owned()];
        let as_ticket = verifier
            .verify_ticket_or_admission(&token, 1_500, &ours)
            .expect("an admission token for a site we admit is a ticket to us");
        assert_eq!(
            (
                as_ticket.ticket_id,
                as_ticket.partition,
                as_ticket.queue_number
            ),
            (ticket.ticket_id, ticket.partition, ticket.queue_number)
        );
        // A ticket token is no admission token: it names no site.
        let ticket_token = signer.sign(&ticket);
        assert_eq!(
            verifier.verify_admission(&ticket_token, 1_500),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verifier.verify_ticket_or_admission(&ticket_token, 1_500, &ours),
            Ok(ticket.clone())
        );
        // Another site's admission is not a ticket to a service that admits only its own.
        assert_eq!(
            verifier.verify_ticket_or_admission(
                &token,
                1_500,
                &["https://other.example".to_owned()]
            ),
            Err(TokenError::OtherAudience)
        );
        assert_eq!(
            verifier.verify_ticket_or_admission(&token, 1_500, &[]),
            Err(TokenError::OtherAudience)
        );
        // Nor is an admission token a ticket token where only tickets are taken, even
        // when its subject looks like a ticket id.
        assert_eq!(verifier.verify(&token, 1_500), Err(TokenError::Malformed));
        let uuid_subject = AdmissionClaims {
            sub: Some(Uuid::now_v7().to_string()),
            ..admission
        };
        assert_eq!(
            verifier.verify(&signer.sign(&uuid_subject), 1_500),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn an_anonymous_fans_tokens_carry_no_subject() {
        let signer = signer(1);
        let ticket = TicketClaims {
            subject: None,
            ..claims(5_000)
        };
        let token = signer.sign(&ticket);
        let payload: Value = decode_json(token.split('.').nth(1).expect("payload")).expect("JSON");
        assert!(payload.get("fan").is_none(), "{payload}");
        let admission = signer.sign(&AdmissionClaims::of(&ticket, "site", 1, 2));
        let payload: Value =
            decode_json(admission.split('.').nth(1).expect("payload")).expect("JSON");
        assert!(payload.get("sub").is_none(), "{payload}");
    }

    #[test]
    fn a_rotated_key_keeps_verifying_while_listed_in_the_jwks() {
        let old = signer(1);
        let new = signer(2);
        let verifier = TicketVerifier::new([new.verifying_key(), old.verifying_key()]);
        let jwks = verifier.jwks();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
        let from_jwks = TicketVerifier::from_jwks(&jwks).expect("parse JWKS");
        let claims = claims(2_000);
        assert_eq!(
            from_jwks.verify(&old.sign(&claims), 1_500),
            Ok(claims.clone())
        );
        assert_eq!(from_jwks.verify(&new.sign(&claims), 1_500), Ok(claims));
    }
}
