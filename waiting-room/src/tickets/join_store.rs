//! The join's Redis writes: the one-place-per-fan claim and registering a ticket the
//! broker acknowledged. Both go through a [`RedisBatcher`], which shares one write among
//! the joins that issue theirs at about the same moment.

use std::sync::LazyLock;

use contract::redis_schema::{
    EventStats, RedisKeys, ISSUED_MAX_MEMBER, REGISTERED_MARKER_TTL_SECONDS,
};
use contract::token::TicketClaims;
use platform::redis_connection::RedisConnection;
use redis::{Cmd, RedisResult, Script, Value};
use uuid::Uuid;

use super::redis_batch::{last_reply, RedisBatcher};

/// A fan's slot in the one-place-per-fan map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceClaim {
    /// The caller now holds the claim and must issue the ticket (or release the claim).
    Claimed,
    /// Another request is issuing this fan's ticket right now.
    Pending,
    /// The fan already holds this ticket token.
    Issued(String),
}

/// A claim's value while its ticket is being issued: this prefix and the claimant's nonce.
const PENDING: &str = "pending:";

/// KEYS place. ARGV the claim. Deletes the slot if this request still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
    )
});

/// KEYS place. ARGV old token, new claim, ttl ms. Claims the slot if it still holds
/// the old token.
static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0",
    )
});

#[derive(Clone)]
pub struct JoinStore {
    redis: RedisConnection,
    batcher: RedisBatcher,
    keys: RedisKeys,
}

impl JoinStore {
    /// Sends the hot writes through `batcher`.
    pub fn new(redis: RedisConnection, keys: RedisKeys, batcher: RedisBatcher) -> Self {
        Self {
            batcher,
            redis,
            keys,
        }
    }

    /// Claims `place` with `SET NX GET`, one round trip: exactly one of any number of
    /// racing requests gets [`PlaceClaim::Claimed`].
    pub async fn claim_place(&self, place: &Place, ttl_ms: u64) -> RedisResult<PlaceClaim> {
        let mut claim = redis::cmd("SET");
        claim
            .arg(&place.key)
            .arg(&place.claim)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ttl_ms);
        let previous: Option<String> = last_reply(self.batcher.send(vec![claim]).await?)?;
        Ok(match previous {
            None => PlaceClaim::Claimed,
            Some(value) if value.starts_with(PENDING) => PlaceClaim::Pending,
            Some(token) => PlaceClaim::Issued(token),
        })
    }

    /// Spends a proof-of-work challenge: true the first time its nonce is seen. The mark
    /// lives as long as the challenge could still verify.
    pub async fn spend_challenge(&self, nonce: &str, ttl_seconds: u64) -> RedisResult<bool> {
        let mut spend = redis::cmd("SET");
        spend
            .arg(self.keys.spent_challenge(nonce))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1));
        let spent: Option<String> = last_reply(self.batcher.send(vec![spend]).await?)?;
        Ok(spent.is_some())
    }

    /// Gives up a claim this request holds (issuing failed), so a retry can claim again.
    pub async fn release_claim(&self, place: &Place) -> RedisResult<()> {
        RELEASE
            .key(&place.key)
            .arg(&place.claim)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }

    /// Replaces the place's ticket (e.g. after the old one was abandoned), claiming the
    /// slot for a new one only if it still holds `old_token`.
    pub async fn reclaim_place(
        &self,
        place: &Place,
        old_token: &str,
        ttl_ms: u64,
    ) -> RedisResult<bool> {
        RECLAIM
            .key(&place.key)
            .arg(old_token)
            .arg(&place.claim)
            .arg(ttl_ms)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(|replaced| replaced == 1)
    }

    /// Records a ticket the broker acknowledged: its place (if any) holds its token, the
    /// queue's highest issued number and the event's join count move, and a marker says
    /// it is registered (so a repair never counts it twice). Returns the queue's serving
    /// counter (for the ticket's first position). One round trip of native commands, the
    /// queue's in MULTI/EXEC: the Lua script that did this cost Redis about three times
    /// the CPU, on the hottest path. The place is in its event's slot, the rest in the
    /// queue's, so the place is set before the transaction, not in it.
    ///
    /// The ticket's own hash is not created here (one key fewer per join): it appears
    /// with the holder's first status read or stream, which is what makes the ticket
    /// count as received, or when the activator defers a ticket nobody has read.
    pub async fn register_issued(&self, registration: &Registration) -> RedisResult<i64> {
        let claims = &registration.claims;
        let mut commands = Vec::with_capacity(7);
        if let Some(place) = &registration.place {
            commands.push(Cmd::set_ex(
                &place.key,
                &registration.token,
                registration.place_ttl_seconds(),
            ));
        }
        commands.push(redis::cmd("MULTI"));
        let mut issued_max = redis::cmd("ZADD");
        issued_max
            .arg(self.keys.issued_max(claims.partition))
            .arg("GT")
            .arg(claims.queue_number)
            .arg(ISSUED_MAX_MEMBER);
        commands.extend([
            Cmd::set_ex(
                self.keys.registered(claims.partition, claims.ticket_id),
                1,
                REGISTERED_MARKER_TTL_SECONDS,
            ),
            issued_max,
            Cmd::hincr(
                self.keys.event_stats(claims.partition, &claims.event_id),
                EventStats::JOINED,
                1,
            ),
            Cmd::get(self.keys.serving(claims.partition)),
            redis::cmd("EXEC"),
        ]);
        let executed: Vec<Value> = last_reply(self.batcher.send(commands).await?)?;
        let serving: Option<i64> = last_reply(executed)?;
        Ok(serving.unwrap_or(0))
    }

    /// Applies a registration unless it already happened (the first attempt may have
    /// reached Redis although its reply never came back). True when it applied now.
    ///
    /// It runs on the same multiplexed connection as the first attempt, so Redis sees
    /// that attempt first. Only if the connection was replaced in between, and Redis
    /// ran the old socket's last bytes after this, could a join count twice.
    pub async fn register_once(&self, registration: &Registration) -> RedisResult<bool> {
        let claims = &registration.claims;
        let applied = REGISTER_ONCE
            .key(self.keys.registered(claims.partition, claims.ticket_id))
            .key(self.keys.issued_max(claims.partition))
            .key(self.keys.event_stats(claims.partition, &claims.event_id))
            .arg(REGISTERED_MARKER_TTL_SECONDS)
            .arg(claims.queue_number)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await?
            == 1;
        // The place is in the event's slot: a step of its own, whether or not the
        // first attempt's transaction applied (its place write may not have). Should
        // it fail, the fan's pending claim expires and their next join issues again.
        if let Some(place) = &registration.place {
            TAKE_PLACE
                .key(&place.key)
                .arg(&registration.token)
                .arg(&place.claim)
                .arg(registration.place_ttl_seconds())
                .invoke_async::<i64>(&mut self.redis.clone())
                .await?;
        }
        Ok(applied)
    }
}

/// KEYS marker, issued_max, event stats (the queue's share). ARGV marker ttl, queue
/// number.
static REGISTER_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
        redis.call('ZADD', KEYS[2], 'GT', ARGV[2], '{max}')
        redis.call('HINCRBY', KEYS[3], '{joined}', 1)
        return 1
        ",
        max = ISSUED_MAX_MEMBER,
        joined = EventStats::JOINED,
    ))
});

/// KEYS place. ARGV token, the place's pending claim, ttl seconds. The place takes the
/// token only if it still holds this join's claim (or nothing): a later ticket of the
/// same fan is never overwritten.
static TAKE_PLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local current = redis.call('GET', KEYS[1]) \
         if not current or current == ARGV[2] then \
           redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3]) return 1 end return 0",
    )
});

/// A fan's one place (a key of [`Entrant::place_key`]) and the claim this join puts
/// on it while it issues the ticket.
///
/// [`Entrant::place_key`]: crate::entry::Entrant::place_key
#[derive(Debug, Clone)]
pub struct Place {
    pub key: String,
    pub claim: String,
}

impl Place {
    /// The claim of the join with `nonce` on `key`.
    pub fn claimed(key: &str, nonce: Uuid) -> Self {
        Self {
            key: key.to_owned(),
            claim: format!("{PENDING}{nonce}"),
        }
    }
}

/// Everything Redis must learn about a ticket the broker acknowledged.
#[derive(Debug, Clone)]
pub struct Registration {
    pub claims: TicketClaims,
    pub token: String,
    pub place: Option<Place>,
    pub now_ms: i64,
}

impl Registration {
    /// The place keeps the token as long as the token is valid.
    fn place_ttl_seconds(&self) -> u64 {
        (self.claims.exp - self.now_ms / 1000).max(1).unsigned_abs()
    }
}
