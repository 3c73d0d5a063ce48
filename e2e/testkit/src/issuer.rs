//! Ticketing sites for tests: issuers of enqueue tokens with real keys, one publishing a
//! JWKS over HTTP on port 0, one trusted through a public key file, and the
//! `TRUSTED_ISSUERS_FILE` naming both.

use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

pub const SITE: &str = "https://tickets.example";
pub const PARTNER: &str = "https://partner.example";
pub const AUDIENCE: &str = "waiting-room";

/// A key a test issuer signs with.
pub struct IssuerKey {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl IssuerKey {
    pub fn ed25519(kid: &'static str) -> (Self, SigningKey) {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = signing
            .to_pkcs8_pem(Default::default())
            .expect("PKCS#8 PEM");
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let key = Self {
            kid,
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pem.as_bytes()).expect("Ed25519 key"),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": x}),
        };
        (key, signing)
    }

    pub fn p256(kid: &'static str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("P-256 key");
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        Self {
            kid,
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// Claims of a valid token of `issuer` for `subject` and `event_id`.
pub fn claims(issuer: &str, subject: &str, event_id: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": subject, "event_id": event_id,
        "iat": now, "exp": now + 300,
    })
}

pub fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

/// Two trusted issuers: `SITE` publishes a JWKS (Ed25519 and P-256 keys) over HTTP,
/// `PARTNER` is trusted through a public key file.
pub struct TestIssuers {
    pub ed: IssuerKey,
    pub ec: IssuerKey,
    pub partner: IssuerKey,
    /// The `TRUSTED_ISSUERS_FILE` naming both issuers.
    pub file: PathBuf,
    partner_key_file: PathBuf,
    jwks_server: tokio::task::JoinHandle<()>,
}

impl TestIssuers {
    pub async fn start() -> Self {
        let (ed, _) = IssuerKey::ed25519("site-ed");
        let ec = IssuerKey::p256("site-ec");
        let (partner, partner_signing) = IssuerKey::ed25519("partner");
        let jwks = json!({"keys": [ed.jwk, ec.jwk]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS server");
        let jwks_url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let jwks_server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("JWKS server");
        });
        let unique = Uuid::now_v7().simple().to_string();
        let partner_key_file = std::env::temp_dir().join(format!("wr-test-partner-{unique}.pem"));
        let public_pem = partner_signing
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("SPKI PEM");
        std::fs::write(&partner_key_file, public_pem).expect("write the partner key");
        let file = std::env::temp_dir().join(format!("wr-test-issuers-{unique}.json"));
        let issuers = json!({"issuers": [
            {"issuer": SITE, "audience": AUDIENCE, "jwks_url": jwks_url, "max_lifetime_seconds": 600},
            {"issuer": PARTNER, "audience": AUDIENCE, "public_key_file": partner_key_file,
             "algorithm": "EdDSA", "event_claim": "show"},
        ]});
        std::fs::write(&file, issuers.to_string()).expect("write the issuers file");
        Self {
            ed,
            ec,
            partner,
            file,
            partner_key_file,
            jwks_server,
        }
    }
}

impl Drop for TestIssuers {
    fn drop(&mut self) {
        self.jwks_server.abort();
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.partner_key_file);
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
