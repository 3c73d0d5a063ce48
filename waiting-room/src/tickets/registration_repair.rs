//! Registrations that Redis refused after the broker had acknowledged the ticket.
//!
//! Such a ticket exists (its record is in Kafka and will be reached), so the fan gets it
//! at once and its registration is retried here, in the background, until Redis takes
//! it. Each retry is [`JoinStore::register_once`]: if the first attempt did reach Redis
//! (its reply was what got lost), nothing is counted twice.

use std::time::Duration;

use platform::retry::Backoff;
use platform::supervisor::Supervisor;
use tokio::sync::mpsc;

use super::join_store::{JoinStore, Registration};

/// Registrations waiting for Redis at most; beyond it they are logged and counted as
/// lost (Redis has been down for a long time, and counters will be off).
const CAPACITY: usize = 100_000;
const MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RegistrationRepair {
    pending: mpsc::Sender<Registration>,
}

impl RegistrationRepair {
    pub fn start(joins: JoinStore, supervisor: &Supervisor) -> Self {
        let (pending, queued) = mpsc::channel(CAPACITY);
        metrics::gauge!("waiting_room_registrations_pending").increment(0.0);
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("registration repair", async move {
            repair(joins, queued, shutdown).await;
            Ok(())
        });
        Self { pending }
    }

    /// Queues `registration` for retries.
    pub fn later(&self, registration: Registration) {
        let ticket_id = registration.claims.ticket_id;
        match self.pending.try_send(registration) {
            Ok(()) => metrics::gauge!("waiting_room_registrations_pending").increment(1.0),
            Err(_) => {
                metrics::counter!("waiting_room_registrations_lost_total").increment(1);
                tracing::error!(%ticket_id, "too many registrations wait for Redis; this one is lost");
            }
        }
    }
}

async fn repair(
    joins: JoinStore,
    mut queued: mpsc::Receiver<Registration>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Backoff::new(MAX_DELAY);
    while let Some(registration) = queued.recv().await {
        loop {
            match joins.register_once(&registration).await {
                Ok(applied) => {
                    tracing::info!(ticket_id = %registration.claims.ticket_id, applied, "registration repaired");
                    metrics::gauge!("waiting_room_registrations_pending").decrement(1.0);
                    backoff.reset();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "registration still refused by Redis; retrying");
                    if !backoff.wait(&shutdown).await {
                        let left = queued.len() + 1;
                        tracing::error!(left, "shutting down with registrations Redis never took");
                        return;
                    }
                }
            }
        }
    }
}
