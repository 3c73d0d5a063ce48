//! The join's Redis writes: the one-place-per-user claim and registering a ticket the
//! broker acknowledged. Both go through a [`RedisBatcher`], which shares one write among
//! the joins that issue theirs at about the same moment.

use std::sync::LazyLock;

use contract::redis_schema::{EventStats, RedisKeys, ISSUED_MAX_MEMBER};
use contract::token::TicketClaims;
use platform::supervisor::Supervisor;
use redis::aio::ConnectionManager;
use redis::{Cmd, RedisResult, Script, Value};
use uuid::Uuid;

use super::redis_batch::{last_reply, RedisBatcher};

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

/// A claim's value while its ticket is being issued: this prefix and the claimant's nonce.
const PENDING: &str = "pending:";

/// KEYS user slot. ARGV the claim. Deletes the slot if this request still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
    )
});

/// KEYS user slot. ARGV old token, new claim, ttl ms. Claims the slot if it still holds
/// the old token.
static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0",
    )
});

#[derive(Clone)]
pub struct JoinStore {
    redis: ConnectionManager,
    batcher: RedisBatcher,
    keys: RedisKeys,
}

impl JoinStore {
    /// Starts the batching task under `supervisor`.
    pub fn start(redis: ConnectionManager, keys: RedisKeys, supervisor: &Supervisor) -> Self {
        Self {
            batcher: RedisBatcher::start(redis.clone(), supervisor),
            redis,
            keys,
        }
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
    /// The ticket's own hash is not created here (one key fewer per join): it appears
    /// with the holder's first status read or stream, which is what makes the ticket
    /// count as received, or when the activator defers a ticket nobody has read.
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
            Cmd::hincr(
                self.keys.event_stats(&claims.event_id),
                EventStats::JOINED,
                1,
            ),
            Cmd::get(self.keys.serving(claims.partition)),
            redis::cmd("EXEC"),
        ]);
        let executed: Vec<Value> = last_reply(self.batcher.send(registration).await?)?;
        let serving: Option<i64> = last_reply(executed)?;
        Ok(serving.unwrap_or(0))
    }
}
