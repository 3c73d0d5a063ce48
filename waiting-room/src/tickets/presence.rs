//! "Still here" for fans who stream instead of polling: an open stream counts as its
//! holder being seen, so the activator does not skip them as abandoned.
//!
//! Streams register here; one task per instance refreshes the `seen` field of every
//! registered ticket that is due, in pipelined batches, at the same pace a polling fan
//! would (see [`seen_refresh_ms`]). Thousands of open streams cost a few pipelined
//! writes per second, not a timer and a round trip each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::{RedisKeys, TicketHash};
use contract::ticket_state::seen_refresh_ms;
use platform::redis_connection::RedisConnection;
use platform::supervisor::Supervisor;
use uuid::Uuid;

/// How often the registry looks for tickets due a refresh.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Writes per pipeline.
const BATCH: usize = 1_000;

struct Holder {
    partition: i32,
    /// The token's expiry (seconds since the epoch): the hash lives that long.
    expires_at: i64,
    last_seen_ms: i64,
    /// Streams open for this ticket (a fan may have two tabs).
    streams: u32,
}

#[derive(Clone, Default)]
pub struct PresenceRegistry {
    holders: Arc<Mutex<HashMap<Uuid, Holder>>>,
}

/// Keeps a ticket registered while it lives; dropping it (the stream ended) stops the
/// refreshes.
pub struct PresenceGuard {
    registry: PresenceRegistry,
    ticket_id: Uuid,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut holders = self.registry.lock();
        if let Some(holder) = holders.get_mut(&self.ticket_id) {
            holder.streams -= 1;
            if holder.streams == 0 {
                holders.remove(&self.ticket_id);
            }
        }
    }
}

impl PresenceRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Holder>> {
        // The map stays consistent whatever panicked while holding it.
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream's ticket, whose `seen` was just written (at `seen_ms`).
    pub fn register(
        &self,
        ticket_id: Uuid,
        partition: i32,
        expires_at: i64,
        seen_ms: i64,
    ) -> PresenceGuard {
        self.lock()
            .entry(ticket_id)
            .or_insert(Holder {
                partition,
                expires_at,
                last_seen_ms: seen_ms,
                streams: 0,
            })
            .streams += 1;
        PresenceGuard {
            registry: self.clone(),
            ticket_id,
        }
    }

    /// Refreshes due tickets until shutdown, under `supervisor`.
    pub fn start(
        &self,
        redis: RedisConnection,
        keys: RedisKeys,
        catalog: LiveCatalog,
        supervisor: &Supervisor,
    ) {
        let registry = self.clone();
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("presence refresher", async move {
            let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    _ = sweep.tick() => registry.refresh_due(&redis, &keys, &catalog).await,
                }
            }
        });
    }

    async fn refresh_due(&self, redis: &RedisConnection, keys: &RedisKeys, catalog: &LiveCatalog) {
        let now_ms = Utc::now().timestamp_millis();
        let catalog = catalog.current();
        let due: Vec<(String, i64)> = {
            let mut holders = self.lock();
            holders
                .iter_mut()
                .filter(|(_, holder)| {
                    let grace = catalog.queue(holder.partition).activation.grace_seconds;
                    now_ms - holder.last_seen_ms >= seen_refresh_ms(grace)
                })
                .map(|(ticket_id, holder)| {
                    holder.last_seen_ms = now_ms;
                    (keys.ticket(holder.partition, *ticket_id), holder.expires_at)
                })
                .collect()
        };
        for chunk in due.chunks(BATCH) {
            let mut refreshes = Vec::with_capacity(chunk.len() * 2);
            for (key, expires_at) in chunk {
                let mut expire = redis::cmd("EXPIREAT");
                expire.arg(key).arg(*expires_at);
                refreshes.extend([redis::Cmd::hset(key, TicketHash::SEEN, now_ms), expire]);
            }
            // A cluster gets one pipeline per slot (the tickets of many queues).
            let refreshed = redis.clone().send_grouped(&refreshes).await;
            if let Err(error) = refreshed {
                tracing::warn!(%error, tickets = chunk.len(), "cannot refresh streaming holders");
            }
        }
        metrics::counter!("waiting_room_presence_refreshes_total").increment(due.len() as u64);
    }
}
