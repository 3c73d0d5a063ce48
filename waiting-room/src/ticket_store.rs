//! Ticket state in Redis, shared by the services: where a ticket stands (one round
//! trip), the one-place-per-user claim, and registering a freshly issued ticket.
//!
//! Multi-key updates are atomic and cost one round trip each: MULTI/EXEC where native
//! commands suffice (the join's registration), Lua scripts where a write depends on a read.
//! The join's two round trips go through a [`RedisBatcher`], which shares one write among
//! the joins that issue theirs at about the same moment.

use redis::aio::ConnectionManager;
use redis::{Cmd, RedisResult, Script, Value};
use uuid::Uuid;

use crate::queue;
use crate::redis_batch::{last_reply, RedisBatcher};
use crate::redis_keys::{RedisKeys, ISSUED_MAX_MEMBER};
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
    Waiting,
    Active { active_until_ms: i64 },
    Used,
    Expired,
    Abandoned,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Active { .. } => "active",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
        }
    }

    /// Derives the state from the ticket's Redis hash fields and its queue's serving
    /// counter. An activation whose `active_until` has passed is expired; a ticket the
    /// activator passed without a recorded outcome (Redis lost it) counts as expired
    /// rather than pretending it is still waiting or active.
    pub fn derive(
        stored_state: Option<&str>,
        active_until_ms: Option<i64>,
        queue_number: i64,
        serving: i64,
        now_ms: i64,
    ) -> Self {
        match (stored_state, active_until_ms) {
            (Some("used"), _) => Self::Used,
            (Some("abandoned"), _) => Self::Abandoned,
            (Some("expired"), _) => Self::Expired,
            (Some("active"), Some(until)) if until > now_ms => Self::Active {
                active_until_ms: until,
            },
            (Some("active"), _) => Self::Expired,
            _ if queue::is_reached(queue_number, serving) => Self::Expired,
            _ => Self::Waiting,
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

/// The outcome of [`TicketStore::mark_used`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkUsed {
    /// The ticket was active; it is now used and its capacity slot is free.
    Marked,
    /// The ticket was already used (a repeated call changes nothing).
    AlreadyUsed,
    /// The ticket is not active: it is waiting, expired or abandoned.
    NotActive(TicketState),
}

/// The user's slot in the one-place-per-user map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserClaim {
    /// The caller now holds the claim and must issue the ticket (or release the claim).
    Claimed,
    /// Another request is issuing this user's ticket right now.
    Pending,
    /// The user already holds this ticket token.
    Issued(String),
}

const PENDING: &str = "pending:";

#[derive(Clone)]
pub struct TicketStore {
    redis: ConnectionManager,
    batcher: RedisBatcher,
    keys: RedisKeys,
}

impl TicketStore {
    /// Starts the store's batching task: call from within a Tokio runtime.
    pub fn new(redis: ConnectionManager, keys: RedisKeys) -> Self {
        Self {
            batcher: RedisBatcher::start(redis.clone()),
            redis,
            keys,
        }
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    /// Claims the user's place for an event (`SET NX GET`, one round trip): exactly one
    /// of any number of racing requests gets [`UserClaim::Claimed`].
    pub async fn claim_user(
        &self,
        event_id: &str,
        user_id: &str,
        nonce: Uuid,
        ttl_ms: u64,
    ) -> RedisResult<UserClaim> {
        let mut claim = redis::cmd("SET");
        claim
            .arg(self.keys.user_ticket(event_id, user_id))
            .arg(format!("{PENDING}{nonce}"))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ttl_ms);
        let previous: Option<String> = last_reply(self.batcher.send(vec![claim]).await?)?;
        Ok(match previous {
            None => UserClaim::Claimed,
            Some(value) if value.starts_with(PENDING) => UserClaim::Pending,
            Some(token) => UserClaim::Issued(token),
        })
    }

    /// Gives up a claim this request holds (issuing failed), so a retry can claim again.
    pub async fn release_claim(
        &self,
        event_id: &str,
        user_id: &str,
        nonce: Uuid,
    ) -> RedisResult<()> {
        static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
            )
        });
        RELEASE
            .key(self.keys.user_ticket(event_id, user_id))
            .arg(format!("{PENDING}{nonce}"))
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }

    /// Replaces the user's ticket (e.g. after the old one was abandoned), claiming the
    /// slot for a new one only if it still holds `old_token`.
    pub async fn reclaim_user(
        &self,
        event_id: &str,
        user_id: &str,
        old_token: &str,
        nonce: Uuid,
        ttl_ms: u64,
    ) -> RedisResult<bool> {
        static RECLAIM: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0",
            )
        });
        RECLAIM
            .key(self.keys.user_ticket(event_id, user_id))
            .arg(old_token)
            .arg(format!("{PENDING}{nonce}"))
            .arg(ttl_ms)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(|replaced| replaced == 1)
    }

    /// Records a ticket the broker acknowledged: the user's slot holds its token, the
    /// queue's highest issued number and the event's join count move. Returns the
    /// queue's serving counter (for the ticket's first position). One round trip of
    /// native commands in MULTI/EXEC: the Lua script that did this cost Redis about
    /// three times the CPU, on the hottest path.
    ///
    /// The ticket's own hash is not created here: the record's `issued_at` already
    /// counts as the holder's first sighting, so the hash appears with the first status
    /// read or stream (one key fewer per join).
    pub async fn register_issued(
        &self,
        claims: &TicketClaims,
        token: &str,
        user_id: Option<&str>,
        now_ms: i64,
    ) -> RedisResult<i64> {
        let mut registration = vec![redis::cmd("MULTI")];
        if let Some(user_id) = user_id {
            let ttl_seconds = (claims.exp - now_ms / 1000).max(1).unsigned_abs();
            registration.push(Cmd::set_ex(
                self.keys.user_ticket(&claims.event_id, user_id),
                token,
                ttl_seconds,
            ));
        }
        let mut issued_max = redis::cmd("ZADD");
        issued_max
            .arg(self.keys.issued_max(claims.partition))
            .arg("GT")
            .arg(claims.queue_number)
            .arg(ISSUED_MAX_MEMBER);
        registration.extend([
            issued_max,
            Cmd::hincr(self.keys.event_stats(&claims.event_id), "joined", 1),
            Cmd::get(self.keys.serving(claims.partition)),
            redis::cmd("EXEC"),
        ]);
        let executed: Vec<Value> = last_reply(self.batcher.send(registration).await?)?;
        let serving: Option<i64> = last_reply(executed)?;
        Ok(serving.unwrap_or(0))
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
        static STATUS: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                r"
                -- KEYS: serving, ticket, queue stats. ARGV: now_ms, refresh_ms (0 = do not touch), ttl_s
                local serving = tonumber(redis.call('GET', KEYS[1]) or '0')
                local rate = redis.call('HGET', KEYS[3], 'rate') or ''

                local fields = redis.call('HMGET', KEYS[2], 'state', 'active_until', 'seen')
                local refresh = tonumber(ARGV[2])
                if refresh > 0 and tonumber(ARGV[1]) - tonumber(fields[3] or '0') >= refresh then
                  redis.call('HSET', KEYS[2], 'seen', ARGV[1])
                  redis.call('EXPIRE', KEYS[2], ARGV[3])
                end
                return {serving, fields[1] or '', fields[2] or '', rate}
                ",
            )
        });
        let refresh = seen_refresh_ms.unwrap_or(0);
        let (serving, state, active_until, rate): (i64, String, String, String) = STATUS
            .key(self.keys.serving(claims.partition))
            .key(self.keys.ticket(claims.ticket_id))
            .key(self.keys.queue_stats(claims.partition))
            .arg(now_ms)
            .arg(refresh)
            .arg((claims.exp - now_ms / 1000).max(1))
            .invoke_async(&mut self.redis.clone())
            .await?;
        let stored_state = Some(state.as_str()).filter(|state| !state.is_empty());
        let active_until_ms = active_until.parse().ok();
        let state = TicketState::derive(
            stored_state,
            active_until_ms,
            claims.queue_number,
            serving,
            now_ms,
        );
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
        static MARK_USED: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                r"
                -- KEYS: ticket, active set, serving. ARGV: now_ms, ticket id
                local fields = redis.call('HMGET', KEYS[1], 'state', 'active_until')
                if fields[1] == 'used' then return {'used'} end
                if fields[1] == 'active' and tonumber(fields[2]) > tonumber(ARGV[1]) then
                  redis.call('HSET', KEYS[1], 'state', 'used', 'used_at', ARGV[1])
                  redis.call('ZREM', KEYS[2], ARGV[2])
                  return {'marked'}
                end
                return {fields[1] or '', fields[2] or '', redis.call('GET', KEYS[3]) or '0'}
                ",
            )
        });
        let reply: Vec<String> = MARK_USED
            .key(self.keys.ticket(claims.ticket_id))
            .key(self.keys.active_set(claims.partition))
            .key(self.keys.serving(claims.partition))
            .arg(now_ms)
            .arg(claims.ticket_id.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match reply.first().map(String::as_str) {
            Some("marked") => MarkUsed::Marked,
            Some("used") => MarkUsed::AlreadyUsed,
            _ => {
                let stored = reply
                    .first()
                    .map(String::as_str)
                    .filter(|state| !state.is_empty());
                let active_until = reply.get(1).and_then(|value| value.parse().ok());
                let serving = reply
                    .get(2)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0);
                MarkUsed::NotActive(TicketState::derive(
                    stored,
                    active_until,
                    claims.queue_number,
                    serving,
                    now_ms,
                ))
            }
        })
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
            TicketState::derive(Some("active"), Some(2_000), 10, 11, 1_000),
            TicketState::Active {
                active_until_ms: 2_000
            }
        );
        assert_eq!(
            TicketState::derive(Some("active"), Some(2_000), 10, 11, 2_000),
            TicketState::Expired
        );
        assert_eq!(
            TicketState::derive(Some("used"), Some(2_000), 10, 11, 1_000),
            TicketState::Used
        );
        assert_eq!(
            TicketState::derive(Some("abandoned"), None, 10, 11, 0),
            TicketState::Abandoned
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
}
