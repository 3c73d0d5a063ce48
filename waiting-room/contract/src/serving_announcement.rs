//! What the activator announces on Redis pub/sub after each tick that moved a queue or
//! settled one of its deferred tickets: one message per queue per tick. Every waiting
//! fan's position follows from `serving`; the tickets in `[reached_from, serving)` were
//! just reached, and those listed in `deferred` (or `dead_lettered`) were passed without
//! being activated, so a stream can tell its fan's outcome without asking Redis. A
//! deferred ticket is settled by a later tick, which names it in `activated_deferred` or
//! `abandoned`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingAnnouncement {
    pub partition: i32,
    /// The serving counter before this tick.
    pub reached_from: i64,
    /// The serving counter after this tick.
    pub serving: i64,
    /// Queue numbers this tick abandoned: in the reached range, or deferred earlier.
    #[serde(default)]
    pub abandoned: Vec<i64>,
    /// Queue numbers in the reached range that were not tickets (dead letters).
    #[serde(default)]
    pub dead_lettered: Vec<i64>,
    /// Queue numbers in the reached range deferred because nobody had read them yet:
    /// still waiting, first in line.
    #[serde(default)]
    pub deferred: Vec<i64>,
    /// Queue numbers deferred by an earlier tick that this tick activated (their holders
    /// have read them since).
    #[serde(default)]
    pub activated_deferred: Vec<i64>,
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

    /// What this tick did to the ticket numbered `queue_number`, when it said so. `None`
    /// when the tick did not touch the ticket (or does not tell), and the caller must
    /// look the ticket up.
    pub fn outcome_for(&self, queue_number: i64) -> Option<ReachedOutcome> {
        if self.abandoned.contains(&queue_number) {
            return Some(ReachedOutcome::Abandoned);
        }
        let activated = self
            .active_until_ms
            .map(|active_until_ms| ReachedOutcome::Activated { active_until_ms });
        if self.activated_deferred.contains(&queue_number) {
            return activated;
        }
        if queue_number < self.reached_from || queue_number >= self.serving {
            return None;
        }
        if self.deferred.contains(&queue_number) {
            return Some(ReachedOutcome::Deferred);
        }
        if self.dead_lettered.contains(&queue_number) {
            return None;
        }
        activated
    }
}

/// What a tick did to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReachedOutcome {
    Activated {
        active_until_ms: i64,
    },
    Abandoned,
    /// Passed unread: still waiting, first in line, until its holder reads it.
    Deferred,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(reached_from: i64, serving: i64, abandoned: Vec<i64>) -> ServingAnnouncement {
        ServingAnnouncement {
            partition: 0,
            reached_from,
            serving,
            abandoned,
            dead_lettered: vec![12],
            deferred: Vec::new(),
            activated_deferred: Vec::new(),
            active_until_ms: Some(5_000),
            rate_per_second: 1.0,
        }
    }

    #[test]
    fn a_tick_settles_only_the_tickets_in_its_range() {
        let announcement = tick(10, 15, vec![11]);
        assert_eq!(announcement.outcome_for(9), None);
        assert_eq!(
            announcement.outcome_for(10),
            Some(ReachedOutcome::Activated {
                active_until_ms: 5_000
            })
        );
        assert_eq!(
            announcement.outcome_for(11),
            Some(ReachedOutcome::Abandoned)
        );
        assert_eq!(
            announcement.outcome_for(12),
            None,
            "dead letters are not tickets"
        );
        assert_eq!(
            announcement.outcome_for(14),
            Some(ReachedOutcome::Activated {
                active_until_ms: 5_000
            })
        );
        assert_eq!(announcement.outcome_for(15), None);
    }

    #[test]
    fn a_tick_without_activations_leaves_the_outcome_to_a_lookup() {
        let mut announcement = tick(10, 12, vec![]);
        announcement.active_until_ms = None;
        assert_eq!(announcement.outcome_for(10), None);
    }

    #[test]
    fn deferred_tickets_wait_until_a_later_tick_names_them() {
        let mut reached = tick(10, 15, vec![]);
        reached.deferred = vec![13];
        assert_eq!(reached.outcome_for(13), Some(ReachedOutcome::Deferred));
        assert_eq!(
            reached.outcome_for(14),
            Some(ReachedOutcome::Activated {
                active_until_ms: 5_000
            })
        );
        // A later tick that did not move the counter settles deferred tickets by name.
        let mut settling = tick(15, 15, vec![3]);
        settling.activated_deferred = vec![13];
        assert_eq!(
            settling.outcome_for(13),
            Some(ReachedOutcome::Activated {
                active_until_ms: 5_000
            })
        );
        assert_eq!(settling.outcome_for(3), Some(ReachedOutcome::Abandoned));
        assert_eq!(settling.outcome_for(4), None, "not named: look it up");
    }
}
