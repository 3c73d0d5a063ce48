//! The keys that verify ticket tokens: configured public keys, or the waiting-room's
//! JWKS fetched at start and refreshed periodically (a rotated-in key is picked up
//! without a restart). The reservation service holds no signing key.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use contract::token::TicketVerifier;
use platform::retry::retry_until_ok;
use platform::supervisor::Supervisor;

use crate::config::ReservationConfig;

#[derive(Clone)]
pub struct TicketKeys {
    current: Arc<ArcSwap<TicketVerifier>>,
}

impl TicketKeys {
    fn new(verifier: TicketVerifier) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(verifier)),
        }
    }

    pub fn current(&self) -> Arc<TicketVerifier> {
        self.current.load_full()
    }

    /// Loads the keys; with a JWKS URL, retries until it answers (or shutdown) and keeps
    /// refreshing them under `supervisor`.
    pub async fn load(config: &ReservationConfig, supervisor: &Supervisor) -> anyhow::Result<Self> {
        if !config.ticket_public_key_files.is_empty() {
            let verifier = TicketVerifier::from_public_pem_files(&config.ticket_public_key_files)?;
            return Ok(Self::new(verifier));
        }
        let url = config.ticket_jwks_url.clone();
        let http = platform::tls::https_client(
            Duration::from_secs(5),
            config.common.jwks_ca_file.as_deref(),
        )?;
        let shutdown = supervisor.shutdown().clone();
        let verifier = retry_until_ok(
            &format!("the ticket keys at {url}"),
            Duration::from_secs(5),
            &shutdown,
            || fetch(&http, &url),
        )
        .await?;
        let keys = Self::new(verifier);
        let refreshing = keys.clone();
        let every = Duration::from_secs(config.jwks_refresh_seconds.max(1));
        supervisor.spawn("ticket key refresher", async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(every) => {}
                }
                match fetch(&http, &url).await {
                    Ok(verifier) => refreshing.current.store(Arc::new(verifier)),
                    // Keep verifying with the keys we have.
                    Err(error) => tracing::warn!(%error, url, "cannot refresh the ticket keys"),
                }
            }
        });
        Ok(keys)
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
