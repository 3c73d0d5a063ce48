//! Where a ticket stands, as every service reads it from Redis (one round trip), and
//! the changes other services make to it: a confirmed reservation spends it, a hold is
//! counted in its event's statistics.
//!
//! Multi-key updates are atomic and cost one round trip each: Lua scripts, built from
//! the names in [`crate::redis_schema`], where a write depends on a read.

use std::sync::LazyLock;

use platform::redis_connection::RedisConnection;
use redis::{RedisResult, Script};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::queue;
use crate::redis_schema::{EventStats, QueueStats, RedisKeys, StoredState, TicketHash};
use crate::token::TicketClaims;

/// How often a holder's "last seen" is refreshed: at most every 5 s (polling every
/// second costs one Redis write every few seconds, not one per poll), and always several
/// times per grace period, so a fan who keeps polling is never taken for gone.
pub fn seen_refresh_ms(grace_seconds: u32) -> i64 {
    (i64::from(grace_seconds) * 1000 / 4).clamp(250, 5_000)
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    /// Joined a scheduled sale that has not started (or whose draw is not fixed yet).
    Prequeued,
    Waiting,
    Active {
        active_until_ms: i64,
    },
    Used,
    Expired,
    Abandoned,
    /// The protected site said the fan left (the slot API's release).
    Released,
}

/// As its name (`"waiting"`, `"active"`, …): the session's end travels separately.
impl Serialize for TicketState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The names [`Serialize`] writes.
impl utoipa::PartialSchema for TicketState {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some([
                "prequeued",
                "waiting",
                "active",
                "used",
                "expired",
                "abandoned",
                "released",
            ]))
            .into()
    }
}

impl utoipa::ToSchema for TicketState {}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prequeued => "prequeued",
            Self::Waiting => "waiting",
            Self::Active { .. } => "active",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
            Self::Released => "released",
        }
    }

    /// Derives the state from the ticket's Redis hash fields and its queue's serving
    /// counter. An activation whose `active_until` has passed is expired; a deferred
    /// ticket (passed before its holder first read it) is still waiting, next in line; a
    /// ticket the activator passed without any recorded state (Redis lost it) counts as
    /// expired rather than pretending it is still waiting or active.
    pub fn derive(
        stored_state: Option<StoredState>,
        active_until_ms: Option<i64>,
        queue_number: i64,
        serving: i64,
        now_ms: i64,
    ) -> Self {
        match (stored_state, active_until_ms) {
            (Some(StoredState::Used), _) => Self::Used,
            (Some(StoredState::Abandoned), _) => Self::Abandoned,
            (Some(StoredState::Released), _) => Self::Released,
            (Some(StoredState::Expired), _) => Self::Expired,
            (Some(StoredState::Active), Some(until)) if until > now_ms => Self::Active {
                active_until_ms: until,
            },
            (Some(StoredState::Active), _) => Self::Expired,
            (Some(StoredState::Deferred), _) => Self::Waiting,
            (None, _) if queue::is_reached(queue_number, serving) => Self::Expired,
            (None, _) => Self::Waiting,
        }
    }
}

/// A ticket's state and its queue's serving counter, read together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TicketView {
    pub serving: i64,
    pub state: TicketState,
    /// The queue's observed activation rate (tickets per second), once the activator
    /// has measured one.
    pub observed_rate: Option<f64>,
}

/// The outcome of [`TicketStore::mark_used`] and [`TicketStore::end_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkUsed {
    /// The ticket was active; it now has the asked outcome and its capacity slot is free.
    Marked,
    /// The ticket already had the asked outcome (a repeated call changes nothing).
    AlreadyEnded,
    /// The ticket is not active: it is waiting, expired, or ended otherwise.
    NotActive(TicketState),
}

/// How a site ends an active session through the slot API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The fan bought: the ticket is used.
    Completed,
    /// The fan left without buying: the ticket ends as released.
    Released,
}

impl SessionEnd {
    /// The ticket's state once its session ended this way.
    pub fn outcome(self) -> TicketState {
        match self {
            Self::Completed => TicketState::Used,
            Self::Released => TicketState::Released,
        }
    }

    fn stored_state(self) -> StoredState {
        match self {
            Self::Completed => StoredState::Used,
            Self::Released => StoredState::Released,
        }
    }

    fn timestamp_field(self) -> &'static str {
        match self {
            Self::Completed => TicketHash::USED_AT,
            Self::Released => TicketHash::RELEASED_AT,
        }
    }
}

/// Where an activated ticket's slot is, from its own hash (see [`TicketHash::PARTITION`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub event_id: String,
    pub partition: i32,
    pub queue_number: i64,
}

/// Reads and changes tickets' state in Redis.
#[derive(Clone)]
pub struct TicketStore {
    redis: RedisConnection,
    keys: RedisKeys,
}

/// `status`: KEYS serving, ticket, queue stats. ARGV now_ms, refresh_ms (0 = do not
/// touch), ttl_s. Returns serving, state, active_until, rate. A ticket never read before
/// has no `seen` (the join does not write one), so its first touching read always
/// writes it: that read is what makes the ticket count as received.
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        local serving = tonumber(redis.call('GET', KEYS[1]) or '0')
        local rate = redis.call('HGET', KEYS[3], '{rate}') or ''
        local fields = redis.call('HMGET', KEYS[2], '{state}', '{active_until}', '{seen}')
        local refresh = tonumber(ARGV[2])
        if refresh > 0 and tonumber(ARGV[1]) - tonumber(fields[3] or '0') >= refresh then
          redis.call('HSET', KEYS[2], '{seen}', ARGV[1])
          redis.call('EXPIRE', KEYS[2], ARGV[3])
        end
        return {{serving, fields[1] or '', fields[2] or '', rate}}
        ",
        rate = QueueStats::RATE,
        state = TicketHash::STATE,
        active_until = TicketHash::ACTIVE_UNTIL,
        seen = TicketHash::SEEN,
    ))
});

/// `end_session`: KEYS ticket, active set, serving. ARGV now_ms, ticket id, the outcome
/// (a stored state), the field that records when.
static END_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        local fields = redis.call('HMGET', KEYS[1], '{state}', '{active_until}')
        if fields[1] == ARGV[3] then return {{'already'}} end
        if fields[1] == '{active}' and tonumber(fields[2]) > tonumber(ARGV[1]) then
          redis.call('HSET', KEYS[1], '{state}', ARGV[3], ARGV[4], ARGV[1])
          redis.call('ZREM', KEYS[2], ARGV[2])
          return {{'marked'}}
        end
        return {{fields[1] or '', fields[2] or '', redis.call('GET', KEYS[3]) or '0'}}
        ",
        state = TicketHash::STATE,
        active_until = TicketHash::ACTIVE_UNTIL,
        active = StoredState::Active.as_str(),
    ))
});

impl TicketStore {
    pub fn new(redis: RedisConnection, keys: RedisKeys) -> Self {
        Self { redis, keys }
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    /// The ticket's state and its queue's serving counter in one round trip; when
    /// `seen_refresh_ms` is set, also records that the holder is still there (at most
    /// that often; see [`seen_refresh_ms`]).
    pub async fn status(
        &self,
        claims: &TicketClaims,
        now_ms: i64,
        seen_refresh_ms: Option<i64>,
    ) -> RedisResult<TicketView> {
        self.status_in_line(claims, claims.queue_number, now_ms, seen_refresh_ms)
            .await
    }

    /// [`TicketStore::status`] for a ticket whose place in line is `queue_number` (its
    /// drawn place, when a pre-queue was shuffled).
    pub async fn status_in_line(
        &self,
        claims: &TicketClaims,
        queue_number: i64,
        now_ms: i64,
        seen_refresh_ms: Option<i64>,
    ) -> RedisResult<TicketView> {
        let refresh = seen_refresh_ms.unwrap_or(0);
        let (serving, state, active_until, rate): (i64, String, String, String) = STATUS
            .key(self.keys.serving(claims.partition))
            .key(self.keys.ticket(claims.partition, claims.ticket_id))
            .key(self.keys.queue_stats(claims.partition))
            .arg(now_ms)
            .arg(refresh)
            .arg((claims.exp - now_ms / 1000).max(1))
            .invoke_async(&mut self.redis.clone())
            .await?;
        let stored_state = StoredState::parse(&state);
        let active_until_ms = active_until.parse().ok();
        let state =
            TicketState::derive(stored_state, active_until_ms, queue_number, serving, now_ms);
        let observed_rate = rate.parse().ok().filter(|rate: &f64| *rate > 0.0);
        Ok(TicketView {
            serving,
            state,
            observed_rate,
        })
    }

    /// Marks an active ticket used (its reservation was confirmed) and frees its
    /// capacity slot at once, so the activator refills it on its next tick.
    pub async fn mark_used(&self, claims: &TicketClaims, now_ms: i64) -> RedisResult<MarkUsed> {
        let admitted = Admitted {
            event_id: claims.event_id.clone(),
            partition: claims.partition,
            queue_number: claims.queue_number,
        };
        self.end_session(claims.ticket_id, &admitted, SessionEnd::Completed, now_ms)
            .await
    }

    /// Ends an active ticket's session as `end` and frees its capacity slot at once.
    pub async fn end_session(
        &self,
        ticket_id: Uuid,
        admitted: &Admitted,
        end: SessionEnd,
        now_ms: i64,
    ) -> RedisResult<MarkUsed> {
        let reply: Vec<String> = END_SESSION
            .key(self.keys.ticket(admitted.partition, ticket_id))
            .key(self.keys.active_set(admitted.partition))
            .key(self.keys.serving(admitted.partition))
            .arg(now_ms)
            .arg(ticket_id.to_string())
            .arg(end.stored_state().as_str())
            .arg(end.timestamp_field())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match reply.first().map(String::as_str) {
            Some("marked") => MarkUsed::Marked,
            Some("already") => MarkUsed::AlreadyEnded,
            _ => {
                let stored = reply.first().and_then(|state| StoredState::parse(state));
                let active_until = reply.get(1).and_then(|value| value.parse().ok());
                let serving = reply
                    .get(2)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0);
                MarkUsed::NotActive(TicketState::derive(
                    stored,
                    active_until,
                    admitted.queue_number,
                    serving,
                    now_ms,
                ))
            }
        })
    }

    /// Where the activated ticket `ticket_id` is, looked up in the queues it may be in
    /// (`partitions`: a ticket's key carries its queue's hash tag); `None` if it was
    /// never activated there (or Redis no longer has it).
    pub async fn admitted(
        &self,
        ticket_id: Uuid,
        partitions: &[i32],
    ) -> RedisResult<Option<Admitted>> {
        let lookups: Vec<redis::Cmd> = partitions
            .iter()
            .map(|partition| {
                let mut lookup = redis::cmd("HMGET");
                lookup
                    .arg(self.keys.ticket(*partition, ticket_id))
                    .arg(TicketHash::EVENT_ID)
                    .arg(TicketHash::PARTITION)
                    .arg(TicketHash::QUEUE_NUMBER);
                lookup
            })
            .collect();
        let replies = self.redis.clone().send_grouped(&lookups).await?;
        for reply in replies {
            let (event_id, partition, queue_number): (Option<String>, Option<i32>, Option<i64>) =
                redis::from_redis_value(reply)?;
            if let (Some(event_id), Some(partition), Some(queue_number)) =
                (event_id, partition, queue_number)
            {
                return Ok(Some(Admitted {
                    event_id,
                    partition,
                    queue_number,
                }));
            }
        }
        Ok(None)
    }

    /// Remembers that event `event_id` had tickets in queue `partition` (it is moving
    /// to another queue, or giving this one back): its counters keep a share there.
    pub async fn remember_queue(&self, event_id: &str, partition: i32) -> RedisResult<()> {
        redis::Cmd::sadd(self.keys.event_queues(event_id), partition)
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Every queue event `event_id` has had tickets in: `current` and those remembered.
    pub async fn event_queues(
        &self,
        event_id: &str,
        current: Option<i32>,
    ) -> RedisResult<Vec<i32>> {
        let mut partitions: Vec<i32> = redis::Cmd::smembers(self.keys.event_queues(event_id))
            .query_async(&mut self.redis.clone())
            .await?;
        partitions.extend(current);
        partitions.sort_unstable();
        partitions.dedup();
        Ok(partitions)
    }

    /// Event `event_id`'s counters ([`EventStats`] fields): the sum of its shares in
    /// every queue it has had (`current` and those remembered).
    pub async fn event_counters(
        &self,
        event_id: &str,
        current: Option<i32>,
    ) -> RedisResult<Vec<(String, i64)>> {
        let reads: Vec<redis::Cmd> = self
            .event_queues(event_id, current)
            .await?
            .into_iter()
            .map(|partition| redis::Cmd::hgetall(self.keys.event_stats(partition, event_id)))
            .collect();
        let shares = self
            .redis
            .clone()
            .send_grouped(&reads)
            .await?
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<Vec<Vec<(String, i64)>>, _>>()?;
        Ok(EventStats::sum(shares))
    }

    /// Counts a seat hold in its event's statistics (`reserved`), in the share of the
    /// queue its ticket came from.
    pub async fn count_hold(&self, partition: i32, event_id: &str) -> RedisResult<()> {
        redis::cmd("HINCRBY")
            .arg(self.keys.event_stats(partition, event_id))
            .arg(EventStats::RESERVED)
            .arg(1)
            .query_async(&mut self.redis.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_until_reached_then_the_recorded_outcome() {
        assert_eq!(
            TicketState::derive(None, None, 10, 5, 0),
            TicketState::Waiting
        );
        assert_eq!(
            TicketState::derive(Some(StoredState::Active), Some(2_000), 10, 11, 1_000),
            TicketState::Active {
                active_until_ms: 2_000
            }
        );
        assert_eq!(
            TicketState::derive(Some(StoredState::Active), Some(2_000), 10, 11, 2_000),
            TicketState::Expired
        );
        assert_eq!(
            TicketState::derive(Some(StoredState::Used), Some(2_000), 10, 11, 1_000),
            TicketState::Used
        );
        assert_eq!(
            TicketState::derive(Some(StoredState::Abandoned), None, 10, 11, 0),
            TicketState::Abandoned
        );
        assert_eq!(
            TicketState::derive(Some(StoredState::Released), Some(2_000), 10, 11, 1_000),
            TicketState::Released,
            "released by its site before its window ended"
        );
    }

    #[test]
    fn last_seen_is_refreshed_several_times_per_grace_period() {
        assert_eq!(seen_refresh_ms(60), 5_000);
        assert_eq!(seen_refresh_ms(2), 500);
        assert_eq!(seen_refresh_ms(1), 250);
    }

    #[test]
    fn a_reached_ticket_without_an_outcome_is_not_reported_waiting() {
        assert_eq!(
            TicketState::derive(None, None, 10, 11, 0),
            TicketState::Expired
        );
    }

    #[test]
    fn a_deferred_ticket_is_still_waiting_after_the_counter_passed_it() {
        assert_eq!(
            TicketState::derive(Some(StoredState::Deferred), None, 10, 11, 0),
            TicketState::Waiting
        );
    }
}
