//! What the activator announces on Redis pub/sub after each tick that moved a queue:
//! one message per queue per tick. Every waiting fan's position follows from `serving`;
//! the tickets in `[reached_from, serving)` were just reached, and those listed in
//! `abandoned` (or `dead_lettered`) were skipped rather than activated, so a stream can
//! tell its fan's outcome without asking Redis.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingAnnouncement {
    pub partition: i32,
    /// The serving counter before this tick.
    pub reached_from: i64,
    /// The serving counter after this tick.
    pub serving: i64,
    /// Queue numbers in the reached range that were skipped as abandoned.
    #[serde(default)]
    pub abandoned: Vec<i64>,
    /// Queue numbers in the reached range that were not tickets (dead letters).
    #[serde(default)]
    pub dead_lettered: Vec<i64>,
    /// `active_until` (ms since the epoch) of the tickets activated by this tick.
    pub active_until_ms: Option<i64>,
    /// Observed activation rate of the queue, tickets per second.
    pub rate_per_second: f64,
}

impl ServingAnnouncement {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("announcements serialize")
    }

    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}
