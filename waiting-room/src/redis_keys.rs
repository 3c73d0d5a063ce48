//! The Redis key schema, defined once for all services.
//!
//! Every key starts with the deployment's prefix (`REDIS_KEY_PREFIX`), so several
//! deployments or test runs can share one Redis. Per-queue keys embed the Kafka
//! partition number, which is the queue's identity.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:q:{partition}:serving` | string | serving counter: next queue number not yet reached |
//! | `{p}:q:{partition}:issued_max` | sorted set | one member, `max`, scored by the highest queue number issued |
//! | `{p}:q:{partition}:active` | sorted set | active ticket ids scored by `active_until` (ms) |
//! | `{p}:q:{partition}:stats` | hash | activated / abandoned / dead-lettered counters |
//! | `{p}:t:{ticket_id}` | hash | `seen` (ms), `state`, `active_until` (ms) |
//! | `{p}:u:{event_id}:{user_id}` | string | the user's ticket token for the event (or a pending claim) |
//! | `{p}:e:{event_id}:stats` | hash | joined / activated / abandoned per event |
//! | `{p}:serving` | pub/sub channel | serving counter announcements |

use uuid::Uuid;

/// The one member of a queue's `issued_max` sorted set.
pub const ISSUED_MAX_MEMBER: &str = "max";

/// Builds the keys of one deployment.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pattern matching every key of this deployment (for clean-up and SCAN).
    pub fn all_keys_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    pub fn serving(&self, partition: i32) -> String {
        format!("{}:q:{partition}:serving", self.prefix)
    }

    /// A sorted set, not a string: `ZADD GT` raises it only when a joining ticket's number
    /// is higher, one native command where a string would need a script.
    pub fn issued_max(&self, partition: i32) -> String {
        format!("{}:q:{partition}:issued_max", self.prefix)
    }

    pub fn active_set(&self, partition: i32) -> String {
        format!("{}:q:{partition}:active", self.prefix)
    }

    pub fn queue_stats(&self, partition: i32) -> String {
        format!("{}:q:{partition}:stats", self.prefix)
    }

    pub fn ticket(&self, ticket_id: Uuid) -> String {
        format!("{}:t:{ticket_id}", self.prefix)
    }

    pub fn user_ticket(&self, event_id: &str, user_id: &str) -> String {
        format!("{}:u:{event_id}:{user_id}", self.prefix)
    }

    pub fn event_stats(&self, event_id: &str) -> String {
        format!("{}:e:{event_id}:stats", self.prefix)
    }

    pub fn serving_channel(&self) -> String {
        format!("{}:serving", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix() {
        let keys = RedisKeys::new("test-1");
        let ticket = Uuid::nil();
        for key in [
            keys.serving(3),
            keys.issued_max(3),
            keys.active_set(3),
            keys.queue_stats(3),
            keys.ticket(ticket),
            keys.user_ticket("e", "u"),
            keys.event_stats("e"),
            keys.serving_channel(),
        ] {
            assert!(key.starts_with("test-1:"), "{key}");
        }
        assert_eq!(keys.serving(3), "test-1:q:3:serving");
        assert_eq!(keys.all_keys_pattern(), "test-1:*");
    }
}
