//! Expires holds whose time is up and gives their seats back. Safe with several
//! instances sweeping at once (each takes different holds; see
//! [`ReservationStore::expire_due`]).

use std::time::Duration;

use platform::supervisor::Supervisor;

use crate::store::{ReservationStatus, ReservationStore};

const PER_ROUND: i64 = 500;

/// Sweeps every `every` until shutdown, under `supervisor`.
pub fn start(store: ReservationStore, every: Duration, supervisor: &Supervisor) {
    let shutdown = supervisor.shutdown().clone();
    supervisor.spawn("hold sweeper", async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
            // Keep going while rounds come back full: a backlog drains at once.
            loop {
                match store.expire_due(PER_ROUND).await {
                    Ok(expired) => {
                        ReservationStatus::Expired.count(expired.len() as u64);
                        if (expired.len() as i64) < PER_ROUND {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "hold sweep failed");
                        break;
                    }
                }
            }
        }
    });
}
