//! The ticketing sites this deployment trusts to vouch for fans: each one's issuer name,
//! audience and signing keys, loaded from `TRUSTED_ISSUERS_FILE`.
//!
//! Keys come from a public key file (read once at start) or a JWKS URL, fetched at start,
//! refreshed in the background, and fetched again at once (at most every
//! [`REFETCH_AFTER`]) when a token names a key id we have not seen: an issuer that
//! rotates its key is followed within seconds, and a flood of made-up key ids costs at
//! most one fetch per issuer per [`REFETCH_AFTER`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use platform::supervisor::Supervisor;
use serde::Deserialize;
use tokio::sync::Mutex;

/// A token with an unknown key id fetches the issuer's JWKS again only this long after
/// the last fetch.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The signature algorithms an enqueue token may use: asymmetric only, so the waiting
/// room never holds a secret that could mint tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenAlgorithm {
    RS256,
    ES256,
    EdDSA,
}

impl TokenAlgorithm {
    pub fn of(algorithm: Algorithm) -> Option<Self> {
        match algorithm {
            Algorithm::RS256 => Some(Self::RS256),
            Algorithm::ES256 => Some(Self::ES256),
            Algorithm::EdDSA => Some(Self::EdDSA),
            _ => None,
        }
    }

    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// One entry of `TRUSTED_ISSUERS_FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The `aud` the tokens must carry (this waiting room's name at the issuer).
    pub audience: String,
    /// Where the issuer publishes its public keys (a JWK set).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or one public key (SPKI PEM), with its algorithm.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub algorithm: Option<TokenAlgorithm>,
    /// The claim naming the event the token admits to.
    #[serde(default = "default_event_claim")]
    pub event_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// Tokens must expire within this long of now: a leaked link stops working soon.
    #[serde(default = "default_max_lifetime_seconds")]
    pub max_lifetime_seconds: u64,
}

fn default_event_claim() -> String {
    "event_id".into()
}

const fn default_leeway_seconds() -> u64 {
    30
}

const fn default_max_lifetime_seconds() -> u64 {
    3_600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuersFile {
    issuers: Vec<IssuerSettings>,
}

/// A verification key and the one algorithm it verifies.
pub struct IssuerKey {
    pub key_id: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// A trusted issuer and its current keys.
pub struct Issuer {
    pub settings: IssuerSettings,
    keys: ArcSwap<Vec<IssuerKey>>,
    /// When the JWKS was last fetched (successfully or not); `None` for a key file.
    last_fetch: Option<Mutex<Option<Instant>>>,
}

impl Issuer {
    pub fn keys(&self) -> Arc<Vec<IssuerKey>> {
        self.keys.load_full()
    }

    /// Fetches the JWKS again unless that happened less than [`REFETCH_AFTER`] ago (or
    /// the keys come from a file). True when the keys were replaced.
    pub async fn refetch_if_stale(&self, client: &reqwest::Client) -> bool {
        let (Some(last_fetch), Some(url)) = (&self.last_fetch, &self.settings.jwks_url) else {
            return false;
        };
        let mut last = last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch(client, url).await
    }

    async fn fetch(&self, client: &reqwest::Client, url: &str) -> bool {
        let issuer = self.settings.issuer.as_str();
        match fetch_jwks(client, url).await {
            Ok(keys) if keys.is_empty() => {
                metrics::counter!("waiting_room_enqueue_token_key_fetch_failures_total", "issuer" => issuer.to_owned())
                    .increment(1);
                tracing::warn!(
                    issuer,
                    "the JWKS holds no usable key; keeping the last ones"
                );
                false
            }
            Ok(keys) => {
                tracing::info!(issuer, keys = keys.len(), "enqueue-token keys loaded");
                metrics::gauge!("waiting_room_enqueue_token_keys", "issuer" => issuer.to_owned())
                    .set(keys.len() as f64);
                self.keys.store(Arc::new(keys));
                true
            }
            Err(error) => {
                metrics::counter!("waiting_room_enqueue_token_key_fetch_failures_total", "issuer" => issuer.to_owned())
                    .increment(1);
                tracing::warn!(issuer, error = %format!("{error:#}"), "cannot fetch enqueue-token keys; keeping the last ones");
                false
            }
        }
    }
}

/// Every trusted issuer (none: enqueue tokens are refused and no event may require
/// them).
#[derive(Clone, Default)]
pub struct TrustedIssuers {
    issuers: Arc<Vec<Issuer>>,
    client: reqwest::Client,
}

impl TrustedIssuers {
    /// Reads `path` (JSON `{"issuers": [...]}`), loads key files and fetches every JWKS
    /// once; a JWKS that cannot be fetched yet is retried by the refresh task.
    pub async fn load(path: Option<&Path>, extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        let client = platform::tls::https_client(FETCH_TIMEOUT, extra_ca)?;
        let Some(path) = path else {
            return Ok(Self {
                issuers: Arc::default(),
                client,
            });
        };
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read TRUSTED_ISSUERS_FILE {}", path.display()))?;
        let file: IssuersFile = serde_json::from_str(&raw)
            .with_context(|| format!("TRUSTED_ISSUERS_FILE {} is not valid", path.display()))?;
        let mut issuers = Vec::with_capacity(file.issuers.len());
        for settings in file.issuers {
            issuers.push(Issuer::configure(settings)?);
        }
        for (index, issuer) in issuers.iter().enumerate() {
            if issuers[..index]
                .iter()
                .any(|other| other.settings.issuer == issuer.settings.issuer)
            {
                anyhow::bail!("issuer '{}' is listed twice", issuer.settings.issuer);
            }
        }
        let trusted = Self {
            issuers: Arc::new(issuers),
            client,
        };
        for issuer in trusted.issuers.iter() {
            issuer.refetch_if_stale(&trusted.client).await;
        }
        Ok(trusted)
    }

    /// Refreshes every JWKS every `interval` until shutdown.
    pub fn start_refresh(&self, interval: Duration, supervisor: &Supervisor) {
        if !self
            .issuers
            .iter()
            .any(|issuer| issuer.last_fetch.is_some())
        {
            return;
        }
        let trusted = self.clone();
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("enqueue-token key refresh", async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(interval) => {}
                }
                for issuer in trusted.issuers.iter() {
                    issuer.refetch_if_stale(&trusted.client).await;
                }
            }
        });
    }

    pub fn get(&self, issuer: &str) -> Option<&Issuer> {
        self.issuers
            .iter()
            .find(|candidate| candidate.settings.issuer == issuer)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The configured issuers' names.
    pub fn names(&self) -> Vec<&str> {
        self.issuers
            .iter()
            .map(|issuer| issuer.settings.issuer.as_str())
            .collect()
    }
}

impl Issuer {
    fn configure(settings: IssuerSettings) -> anyhow::Result<Self> {
        let name = settings.issuer.clone();
        anyhow::ensure!(!name.is_empty(), "an issuer needs a non-empty `issuer`");
        anyhow::ensure!(
            !settings.audience.is_empty(),
            "issuer '{name}' needs a non-empty `audience`"
        );
        let (keys, last_fetch) = match (&settings.jwks_url, &settings.public_key_file) {
            (Some(url), None) => {
                anyhow::ensure!(
                    url.starts_with("https://") || is_loopback_http(url),
                    "issuer '{name}': jwks_url must be https:// (plain http only on loopback)"
                );
                (Vec::new(), Some(Mutex::new(None)))
            }
            (None, Some(path)) => {
                let algorithm = settings.algorithm.with_context(|| {
                    format!("issuer '{name}': a public_key_file needs its `algorithm` (RS256, ES256 or EdDSA)")
                })?;
                (vec![key_from_pem(path, algorithm)?], None)
            }
            _ => anyhow::bail!(
                "issuer '{name}' needs exactly one of `jwks_url` and `public_key_file`"
            ),
        };
        Ok(Self {
            settings,
            keys: ArcSwap::from_pointee(keys),
            last_fetch,
        })
    }
}

/// Plain HTTP is fine where nobody can listen in: this machine.
fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| {
            url.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

fn key_from_pem(path: &Path, algorithm: TokenAlgorithm) -> anyhow::Result<IssuerKey> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the issuer key {}", path.display()))?;
    let key = match algorithm {
        TokenAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
        TokenAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        TokenAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
    }
    .with_context(|| format!("{} is not a {algorithm:?} public key", path.display()))?;
    Ok(IssuerKey {
        key_id: None,
        algorithm: algorithm.algorithm(),
        key,
    })
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<IssuerKey>> {
    let set: JwkSet = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(set.keys.iter().filter_map(key_from_jwk).collect())
}

/// A JWK this service can verify with; others (symmetric, unsupported curves or
/// algorithms) are skipped.
fn key_from_jwk(jwk: &Jwk) -> Option<IssuerKey> {
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_))
        | (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(ec))
        | (None, AlgorithmParameters::EllipticCurve(ec))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (Some(KeyAlgorithm::EdDSA), AlgorithmParameters::OctetKeyPair(okp))
        | (None, AlgorithmParameters::OctetKeyPair(okp))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    Some(IssuerKey {
        key_id: jwk.common.key_id.clone(),
        algorithm,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_needs_one_key_source() {
        let settings = |jwks_url: Option<&str>, file: Option<&str>| IssuerSettings {
            issuer: "https://tickets.example".into(),
            audience: "waiting-room".into(),
            jwks_url: jwks_url.map(str::to_owned),
            public_key_file: file.map(PathBuf::from),
            algorithm: None,
            event_claim: default_event_claim(),
            leeway_seconds: 30,
            max_lifetime_seconds: 3_600,
        };
        assert!(Issuer::configure(settings(None, None)).is_err());
        assert!(Issuer::configure(settings(Some("https://a"), Some("/k.pem"))).is_err());
        assert!(
            Issuer::configure(settings(None, Some("/k.pem"))).is_err(),
            "a key file needs its algorithm"
        );
        assert!(Issuer::configure(settings(Some("https://a.example/jwks"), None)).is_ok());
        assert!(Issuer::configure(settings(Some("http://127.0.0.1:9/jwks"), None)).is_ok());
        assert!(
            Issuer::configure(settings(Some("http://a.example/jwks"), None)).is_err(),
            "keys over plain http could be swapped in transit"
        );
        assert!(Issuer::configure(settings(Some("http://127.0.0.1.evil.example/"), None)).is_err());
    }

    #[test]
    fn symmetric_and_unknown_keys_are_skipped() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}))
        .expect("a JWK set");
        let keys: Vec<IssuerKey> = set.keys.iter().filter_map(key_from_jwk).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm, Algorithm::EdDSA);
        assert_eq!(keys[0].key_id.as_deref(), Some("ed"));
    }
}
