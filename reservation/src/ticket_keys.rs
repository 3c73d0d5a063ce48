//! The keys that verify ticket tokens: configured public keys, or the waiting-room's
//! JWKS fetched at start and refreshed periodically (a rotated-in key is picked up
//! without a restart). The reservation service holds no signing key.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use waiting_room::token::TicketVerifier;

use crate::config::ReservationConfig;

#[derive(Clone)]
pub struct TicketKeys {
    current: Arc<RwLock<Arc<TicketVerifier>>>,
}

impl TicketKeys {
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
            let pems = config
                .ticket_public_key_files
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the public key {}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let verifier = TicketVerifier::from_public_pems(pems.iter().map(String::as_str))?;
            let keys = Self {
                current: Arc::new(RwLock::new(Arc::new(verifier))),
            };
            return Ok((keys, None));
        }
        let url = config.ticket_jwks_url.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut delay = Duration::from_millis(200);
        let verifier = loop {
            match fetch(&http, &url).await {
                Ok(verifier) => break verifier,
                Err(error) => {
                    tracing::warn!(%error, url, "ticket keys not available yet, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => anyhow::bail!("shut down while fetching the JWKS"),
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        let keys = Self {
            current: Arc::new(RwLock::new(Arc::new(verifier))),
        };
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
