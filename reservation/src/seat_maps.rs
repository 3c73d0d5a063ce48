//! The seat maps this instance shows: one live copy per watched event, however many
//! fans watch it. An event's seats are read from PostgreSQL once per change (a burst
//! within [`COALESCE`] is one read), and every viewer's stream and `GET /seats` are
//! served from that read. Each copy also carries the seats that changed since the copy
//! before, so a viewer of a 50,000-seat map can be sent a few seats per hold, not the
//! whole map.
//!
//! A copy lives while somebody watches it: the first viewer of an event starts its
//! refresher, the last one to leave stops it. Changes arrive from the instance's
//! [`ChangeFeed`] (any instance's writes) and from this instance's own writes through
//! [`SeatMaps::changed`], so a fan reads their own hold at once.
//!
//! [`ChangeFeed`]: crate::changes::ChangeFeed

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use platform::supervisor::Supervisor;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::changes::{Change, ChangeFeed};
use crate::error::ReservationError;
use crate::store::{ReservationStore, Seat};

/// Seat changes arriving within this window are read once.
const COALESCE: Duration = Duration::from_millis(150);
/// How many past changes a copy keeps, so a viewer a few copies behind is sent those
/// changes rather than the whole map.
const RECENT_CHANGES: usize = 32;
/// How long a reader waits for a copy that includes the changes it knows of before it
/// reads the seats itself.
const FRESH_COPY_WAIT: Duration = Duration::from_secs(1);
/// After a failed read, the next try.
const RETRY: Duration = Duration::from_secs(1);
const READS: &str = "reservation_seat_map_reads_total";
const LIVE_MAPS: &str = "reservation_seat_maps_live";

/// The live seat maps of this instance.
#[derive(Clone)]
pub struct SeatMaps {
    shared: Arc<Shared>,
}

struct Shared {
    store: ReservationStore,
    changes: ChangeFeed,
    live: Mutex<HashMap<String, Arc<LiveMap>>>,
    shutdown: CancellationToken,
}

/// One watched event's map.
struct LiveMap {
    /// Counts the changes signalled; a copy covers those signalled before its read.
    signalled: AtomicU64,
    wake: Notify,
    latest: watch::Sender<Latest>,
}

/// What a live map holds: its latest reading, and which changes it covers.
#[derive(Clone)]
pub struct Latest {
    covers: u64,
    pub reading: Reading,
}

#[derive(Clone)]
pub enum Reading {
    /// Not read yet.
    Pending,
    /// The event does not exist.
    Missing,
    /// The last read failed (viewers keep the map they have).
    Unavailable,
    Seats(Arc<SeatMapCopy>),
}

/// An event's seats in the store's order (rows, then seat numbers).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatMap {
    pub event_id: String,
    pub seats: Vec<Seat>,
}

/// One read of an event's seats, serialised once for every viewer.
pub struct SeatMapCopy {
    /// 1 for the first read of this live map, then one more per read that changed it.
    pub version: u64,
    map: SeatMap,
    /// `map` as JSON.
    pub map_json: Bytes,
    /// The changes that led to this copy, oldest first, each tagged with the version it
    /// produced; empty after the first read or a new layout.
    pub recent: Vec<Arc<SeatChanges>>,
}

/// The seats that changed between two copies, as JSON
/// (`{"event_id", "version", "seats"}`).
pub struct SeatChanges {
    pub version: u64,
    pub json: Bytes,
}

#[derive(Serialize)]
struct ChangesBody<'a> {
    event_id: &'a str,
    version: u64,
    seats: Vec<&'a Seat>,
}

impl Reading {
    /// The copy, or the refusal a reader gets instead.
    pub fn into_copy(self, event_id: &str) -> Result<Arc<SeatMapCopy>, ReservationError> {
        match self {
            Self::Seats(copy) => Ok(copy),
            Self::Missing => Err(ReservationError::EventNotFound(event_id.to_owned())),
            Self::Pending | Self::Unavailable => Err(ReservationError::Unavailable),
        }
    }
}

impl SeatMapCopy {
    /// The copy after `previous` (if any) from a new read.
    fn next(previous: Option<&SeatMapCopy>, map: SeatMap) -> Self {
        let map_json = to_json(&map);
        let Some(previous) = previous else {
            return Self {
                version: 1,
                map,
                map_json,
                recent: Vec::new(),
            };
        };
        let version = previous.version + 1;
        let recent = match changed_seats(&previous.map.seats, &map.seats) {
            Some(changed) => {
                let changes = Arc::new(SeatChanges {
                    version,
                    json: to_json(&ChangesBody {
                        event_id: &map.event_id,
                        version,
                        seats: changed,
                    }),
                });
                let keep = previous.recent.len().min(RECENT_CHANGES - 1);
                let mut recent = previous.recent[previous.recent.len() - keep..].to_vec();
                recent.push(changes);
                recent
            }
            // A new layout: viewers get the whole map.
            None => Vec::new(),
        };
        Self {
            version,
            map,
            map_json,
            recent,
        }
    }

    /// The changes a viewer that last saw version `seen` needs, or `None` when they are
    /// no longer all kept (the viewer needs the whole map).
    pub fn changes_since(&self, seen: u64) -> Option<&[Arc<SeatChanges>]> {
        if seen >= self.version {
            return Some(&[]);
        }
        let first_needed = self
            .recent
            .iter()
            .position(|changes| changes.version > seen)?;
        (self.recent[first_needed].version == seen + 1).then(|| &self.recent[first_needed..])
    }
}

/// The seats of `now` whose state differs from `before`; `None` when the seats
/// themselves differ (a new layout). Both are in the store's order.
fn changed_seats<'a>(before: &[Seat], now: &'a [Seat]) -> Option<Vec<&'a Seat>> {
    if before.len() != now.len() {
        return None;
    }
    let mut changed = Vec::new();
    for (old, new) in before.iter().zip(now) {
        if old.seat_id != new.seat_id {
            return None;
        }
        if old.state != new.state {
            changed.push(new);
        }
    }
    Some(changed)
}

fn to_json(body: &impl Serialize) -> Bytes {
    // Seats and ids serialise without fail.
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

impl SeatMaps {
    /// Follows `changes` until shutdown, under `supervisor`.
    pub fn start(store: ReservationStore, changes: &ChangeFeed, supervisor: &Supervisor) -> Self {
        metrics::counter!(READS).increment(0);
        metrics::gauge!(LIVE_MAPS).set(0.0);
        let maps = Self {
            shared: Arc::new(Shared {
                store,
                changes: changes.clone(),
                live: Mutex::new(HashMap::new()),
                shutdown: supervisor.shutdown().clone(),
            }),
        };
        let following = maps.clone();
        let changes = BroadcastStream::new(changes.subscribe());
        supervisor.spawn("seat map follower", async move {
            following.follow(changes).await;
            Ok(())
        });
        maps
    }

    async fn follow(self, mut changes: BroadcastStream<Change>) {
        loop {
            let change = tokio::select! {
                () = self.shared.shutdown.cancelled() => return,
                change = changes.next() => change,
            };
            match change {
                None => return,
                Some(Ok(Change::Seats { event_id })) => self.changed(&event_id),
                // Changes may have been missed: every map re-reads.
                Some(Ok(Change::Resync) | Err(BroadcastStreamRecvError::Lagged(_))) => {
                    for live in self.live().values() {
                        live.signal();
                    }
                }
                Some(Ok(Change::Reservation(_))) => {}
            }
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveMap>>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.shared
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `event_id`'s seats changed: its live map (if watched) reads them again.
    pub fn changed(&self, event_id: &str) {
        if let Some(live) = self.live().get(event_id) {
            live.signal();
        }
    }

    /// Watches `event_id`'s map, starting it if nobody watched it.
    pub fn watch(&self, event_id: &str) -> watch::Receiver<Latest> {
        let mut live_maps = self.live();
        if let Some(live) = live_maps.get(event_id) {
            return live.latest.subscribe();
        }
        let (latest, receiver) = watch::channel(Latest {
            covers: 0,
            reading: Reading::Pending,
        });
        let live = Arc::new(LiveMap {
            signalled: AtomicU64::new(1),
            wake: Notify::new(),
            latest,
        });
        live_maps.insert(event_id.to_owned(), live.clone());
        metrics::gauge!(LIVE_MAPS).set(live_maps.len() as f64);
        let maps = self.clone();
        let event_id = event_id.to_owned();
        tokio::spawn(async move { maps.refresh(event_id, live).await });
        receiver
    }

    /// `event_id`'s map: a watched one's copy that includes every change signalled so
    /// far, else a read of its own.
    pub async fn current(&self, event_id: &str) -> Reading {
        if let Some(reading) = self.fresh(event_id).await {
            return reading;
        }
        match self.read(event_id).await {
            Ok(Some(map)) => Reading::Seats(Arc::new(SeatMapCopy::next(None, map))),
            Ok(None) => Reading::Missing,
            Err(error) => {
                tracing::warn!(%error, event_id, "cannot read the seat map");
                Reading::Unavailable
            }
        }
    }

    /// A watched map's copy (or `Missing`) that includes every change signalled so far;
    /// `None` when the caller had better read the seats itself: nobody watches
    /// `event_id` here, the change feed is reconnecting (other instances' changes would
    /// be missed), or the map's reads fail or lag.
    async fn fresh(&self, event_id: &str) -> Option<Reading> {
        if !self.shared.changes.is_connected() {
            return None;
        }
        let (wanted, mut receiver) = {
            let live_maps = self.live();
            let live = live_maps.get(event_id)?;
            (
                live.signalled.load(Ordering::SeqCst),
                live.latest.subscribe(),
            )
        };
        let fresh = receiver.wait_for(|latest| latest.covers >= wanted);
        let reading = match tokio::time::timeout(FRESH_COPY_WAIT, fresh).await {
            Ok(Ok(latest)) => latest.reading.clone(),
            _ => return None,
        };
        matches!(reading, Reading::Seats(_) | Reading::Missing).then_some(reading)
    }

    /// Reads `event_id`'s seats after each change until the last viewer leaves.
    async fn refresh(self, event_id: String, live: Arc<LiveMap>) {
        let mut previous: Option<Arc<SeatMapCopy>> = None;
        loop {
            let covers = live.signalled.load(Ordering::SeqCst);
            let span = tracing::debug_span!("seat map read", event_id = %event_id);
            let read = self.read(&event_id).instrument(span).await;
            metrics::counter!(READS).increment(1);
            let failed = read.is_err();
            let reading = match read {
                Ok(Some(map)) => {
                    let copy = match previous {
                        // Nothing changed (a resync, a burst's second signal): same copy.
                        Some(copy) if copy.map.seats == map.seats => copy,
                        _ => Arc::new(SeatMapCopy::next(previous.as_deref(), map)),
                    };
                    previous = Some(copy.clone());
                    Reading::Seats(copy)
                }
                Ok(None) => Reading::Missing,
                Err(error) => {
                    tracing::warn!(%error, event_id, "cannot read the seat map");
                    Reading::Unavailable
                }
            };
            live.latest.send_replace(Latest { covers, reading });
            if !self.wait_for_change(&event_id, &live, covers, failed).await {
                return;
            }
        }
    }

    /// One read from PostgreSQL; `None` when the event does not exist.
    async fn read(&self, event_id: &str) -> sqlx::Result<Option<SeatMap>> {
        let seats = self.shared.store.seats(event_id).await?;
        if seats.is_empty() && !self.shared.store.event_exists(event_id).await? {
            return Ok(None);
        }
        Ok(Some(SeatMap {
            event_id: event_id.to_owned(),
            seats,
        }))
    }

    /// Waits for a change signalled after the read that covered `covers` (then for the
    /// rest of its burst), or for `RETRY` after a failed read; `false` when the map is no
    /// longer watched or the server stops.
    async fn wait_for_change(
        &self,
        event_id: &str,
        live: &Arc<LiveMap>,
        covers: u64,
        retry: bool,
    ) -> bool {
        // The counter decides: a wake-up may be left over from a change the read
        // already covered.
        while retry || live.signalled.load(Ordering::SeqCst) == covers {
            tokio::select! {
                () = self.shared.shutdown.cancelled() => {
                    self.stop(event_id, live, true);
                    return false;
                }
                () = live.latest.closed() => {
                    if self.stop(event_id, live, false) {
                        return false;
                    }
                    // Somebody started watching again while it closed.
                }
                () = live.wake.notified() => {}
                () = tokio::time::sleep(RETRY), if retry => break,
            }
        }
        tokio::select! {
            () = self.shared.shutdown.cancelled() => {
                self.stop(event_id, live, true);
                false
            }
            () = tokio::time::sleep(COALESCE) => true,
        }
    }

    /// Forgets `event_id`'s live map if nobody watches it (or `always`); whether it did.
    fn stop(&self, event_id: &str, live: &Arc<LiveMap>, always: bool) -> bool {
        let mut live_maps = self.live();
        if !always && live.latest.receiver_count() > 0 {
            return false;
        }
        if live_maps
            .get(event_id)
            .is_some_and(|current| Arc::ptr_eq(current, live))
        {
            live_maps.remove(event_id);
        }
        metrics::gauge!(LIVE_MAPS).set(live_maps.len() as f64);
        true
    }
}

impl LiveMap {
    fn signal(&self) {
        self.signalled.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use contract::seats::SeatState;

    use super::*;

    fn map(states: &[SeatState]) -> SeatMap {
        SeatMap {
            event_id: "gig".to_owned(),
            seats: states
                .iter()
                .zip(1..)
                .map(|(state, number)| Seat {
                    seat_id: format!("A-{number}"),
                    row_index: 0,
                    seat_number: number,
                    state: *state,
                })
                .collect(),
        }
    }

    fn json(bytes: &Bytes) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    use SeatState::{Available, Held, Sold};

    #[test]
    fn a_copy_carries_only_the_seats_that_changed() {
        let first = SeatMapCopy::next(None, map(&[Available, Available, Available]));
        assert_eq!(first.version, 1);
        assert!(first.recent.is_empty());
        assert_eq!(json(&first.map_json)["seats"][2]["seat_id"], "A-3");

        let second = SeatMapCopy::next(Some(&first), map(&[Held, Available, Sold]));
        assert_eq!(second.version, 2);
        let changes = second.changes_since(1).expect("one change");
        assert_eq!(changes.len(), 1);
        let body = json(&changes[0].json);
        assert_eq!(body["version"], 2);
        assert_eq!(body["event_id"], "gig");
        let ids: Vec<&str> = body["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|seat| seat["seat_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["A-1", "A-3"]);
        assert_eq!(body["seats"][1]["state"], "sold");
        assert!(second.changes_since(2).unwrap().is_empty(), "nothing newer");
    }

    #[test]
    fn a_viewer_behind_gets_the_changes_it_missed_or_the_whole_map() {
        let mut copy = SeatMapCopy::next(None, map(&[Available, Available]));
        for step in 0..RECENT_CHANGES + 5 {
            let state = if step % 2 == 0 { Held } else { Available };
            copy = SeatMapCopy::next(Some(&copy), map(&[state, Available]));
        }
        let newest = copy.version;
        assert_eq!(copy.recent.len(), RECENT_CHANGES);
        let missed = copy.changes_since(newest - 3).expect("kept");
        let versions: Vec<u64> = missed.iter().map(|changes| changes.version).collect();
        assert_eq!(versions, [newest - 2, newest - 1, newest]);
        assert!(
            copy.changes_since(newest - RECENT_CHANGES as u64 - 1)
                .is_none(),
            "older than what is kept: the whole map"
        );
        assert!(copy.changes_since(1).is_none());
    }

    #[test]
    fn a_new_layout_is_sent_whole() {
        let first = SeatMapCopy::next(None, map(&[Available, Available]));
        let relaid = SeatMapCopy::next(Some(&first), map(&[Available, Available, Available]));
        assert!(relaid.recent.is_empty());
        assert!(relaid.changes_since(1).is_none());
        let mut renamed = map(&[Available, Available]);
        renamed.seats[1].seat_id = "B-1".to_owned();
        let renamed = SeatMapCopy::next(Some(&first), renamed);
        assert!(renamed.changes_since(1).is_none());
    }
}
