//! The keys that verify ticket tokens: configured public keys, or the waiting-room's
//! JWKS fetched at start and refreshed periodically (a rotated-in key is picked up
//! without a restart). The reservation service holds no signing key.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use waiting_room::shutdown::retry_until_ok;
use waiting_room::token::TicketVerifier;

use crate::config::ReservationConfig;

#[derive(Clone)]
pub struct TicketKeys {
    current: Arc<RwLock<Arc<TicketVerifier>>>,
}

impl TicketKeys {
    fn new(verifier: TicketVerifier) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(verifier))),
        }
    }

    pub fn current(&self) -> Arc<TicketVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the keys; with a JWKS URL, retries until it answers (or `shutdown`) and
    /// returns the refresh task too.
    pub async fn load(
        config: &ReservationConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(Self, Option<tokio::task::JoinHandle<()>>)> {
        if !config.ticket_public_key_files.is_empty() {
            let verifier = TicketVerifier::from_public_pem_files(&config.ticket_public_key_files)?;
            return Ok((Self::new(verifier), None));
        }
        let url = config.ticket_jwks_url.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let verifier = retry_until_ok(
            &format!("the ticket keys at {url}"),
            Duration::from_secs(5),
            shutdown,
            || fetch(&http, &url),
        )
        .await?;
        let keys = Self::new(verifier);
        let refreshing = keys.clone();
        let every = Duration::from_secs(config.jwks_refresh_seconds.max(1));
        let shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match fetch(&http, &url).await {
                    Ok(verifier) => {
                        *refreshing
                            .current
                            .write()
                            .unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
                    }
                    // Keep verifying with the keys we have.
                    Err(error) => tracing::warn!(%error, url, "cannot refresh the ticket keys"),
                }
            }
        });
        Ok((keys, Some(task)))
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<TicketVerifier> {
    let jwks: serde_json::Value = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    TicketVerifier::from_jwks(&jwks)
}
