//! The in-memory view of the [`Catalog`], kept current without restarts.
//!
//! A background task LISTENs on PostgreSQL's `config_changed` channel (a trigger
//! notifies on every change to events and queues) and reloads on each notification,
//! plus a periodic resync that covers notifications lost while the listener was
//! reconnecting. Readers get the latest snapshot from a `watch` channel: no lock, no
//! database round trip.

use std::sync::Arc;
use std::time::Duration;

use platform::retry::Backoff;
use platform::supervisor::Supervisor;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;

const CHANNEL: &str = "config_changed";
const RESYNC_EVERY: Duration = Duration::from_secs(5);
const INITIAL_LOAD_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct LiveCatalog {
    pool: PgPool,
    sender: Arc<watch::Sender<Arc<Catalog>>>,
    /// One reload at a time, so a slow read that began before a change can never
    /// publish its older snapshot over the reload that follows the change.
    reloading: Arc<Mutex<()>>,
}

impl LiveCatalog {
    /// Loads the catalog (waiting up to a few seconds for PostgreSQL) and starts
    /// following changes. If PostgreSQL does not answer in time the view starts empty
    /// (`loaded == false`) and fills in as soon as it does.
    pub async fn start(pool: PgPool, supervisor: &Supervisor) -> Self {
        let (sender, _) = watch::channel(Arc::new(Catalog::default()));
        let live = Self {
            pool,
            sender: Arc::new(sender),
            reloading: Arc::new(Mutex::new(())),
        };
        match tokio::time::timeout(INITIAL_LOAD_WAIT, live.reload()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "configuration not loaded yet; retrying in the background")
            }
            Err(_) => tracing::warn!("configuration not loaded yet; retrying in the background"),
        }
        supervisor.spawn(
            "configuration listener",
            live.clone().follow_changes(supervisor.shutdown().clone()),
        );
        live
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.sender.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Catalog>> {
        self.sender.subscribe()
    }

    /// The database the catalog is read from (the activator records draws in it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reloads now (e.g. right after this instance changed the configuration, so it
    /// reads its own writes).
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let catalog = Catalog::load(&self.pool).await?;
        self.sender.send_replace(Arc::new(catalog));
        Ok(())
    }

    async fn follow_changes(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        loop {
            match self.listen(&shutdown).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "configuration listener failed; reconnecting");
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Listens until shutdown (Ok) or a connection error (Err).
    async fn listen(&self, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        // Changes made while we were not listening.
        self.reload().await?;
        loop {
            tokio::select! {
                notification = listener.recv() => {
                    notification?;
                    self.reload().await?;
                }
                () = tokio::time::sleep(RESYNC_EVERY) => self.reload().await?,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}
