//! Changes pushed to this instance, whichever instance made them: one PostgreSQL
//! `LISTEN` connection (channels `reservation_changed` and `seats_changed`, raised by
//! triggers) feeds a broadcast channel that every live stream of this instance reads.
//! After the listener reconnects, a `Resync` tells streams to re-read what they show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use platform::retry::retry_until_ok;
use platform::supervisor::Supervisor;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Reservation(Uuid),
    Seats {
        event_id: String,
    },
    /// Notifications may have been lost: re-read everything shown.
    Resync,
}

#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    /// Listening now: while it is not, other instances' changes go unnoticed.
    connected: Arc<AtomicBool>,
}

impl ChangeFeed {
    /// Listens until shutdown, under `supervisor`.
    pub fn start(postgres: PgPool, supervisor: &Supervisor) -> Self {
        let (sender, _) = broadcast::channel(4_096);
        let feed = Self {
            sender,
            connected: Arc::new(AtomicBool::new(false)),
        };
        let listening = feed.clone();
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("change listener", async move {
            listening.run(postgres, shutdown).await;
            Ok(())
        });
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    async fn run(self, postgres: PgPool, shutdown: CancellationToken) {
        loop {
            let connected = retry_until_ok(
                "the change listener",
                Duration::from_secs(2),
                &shutdown,
                || async {
                    let mut listener = PgListener::connect_with(&postgres).await?;
                    listener
                        .listen_all(["reservation_changed", "seats_changed"])
                        .await?;
                    Ok::<_, sqlx::Error>(listener)
                },
            )
            .await;
            let Ok(mut listener) = connected else {
                return; // shut down
            };
            // Changes made while nobody listened were not notified: re-read, now that
            // every later change will be.
            self.connected.store(true, Ordering::SeqCst);
            let _ = self.sender.send(Change::Resync);
            let relayed = self.relay(&mut listener, &shutdown).await;
            self.connected.store(false, Ordering::SeqCst);
            match relayed {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "change listener failed; reconnecting"),
            }
        }
    }

    /// Turns notifications into changes until shutdown (`Ok`) or a failure.
    async fn relay(
        &self,
        listener: &mut PgListener,
        shutdown: &CancellationToken,
    ) -> sqlx::Result<()> {
        loop {
            let notification = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = listener.try_recv() => notification?,
            };
            // The connection dropped: listen again on a new one (then resync), so
            // `connected` says when notifications flow again.
            let Some(notification) = notification else {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the LISTEN connection was lost",
                )));
            };
            let change = match notification.channel() {
                "reservation_changed" => match notification.payload().parse() {
                    Ok(id) => Change::Reservation(id),
                    Err(_) => continue,
                },
                _ => Change::Seats {
                    event_id: notification.payload().to_owned(),
                },
            };
            // No receivers is fine: nobody is streaming right now.
            let _ = self.sender.send(change);
        }
    }
}
