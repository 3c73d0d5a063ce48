//! Only received tickets take capacity: the activation step against the real Redis.
//! Tickets nobody has read are deferred without a slot while read ones behind them are
//! activated; a deferred ticket read later is activated first; one never read within
//! its grace period is abandoned, counted once; replaying a step changes nothing.

use std::collections::BTreeMap;

use activator::activation::{self, QueueEntry, StepLimits, StepOutcome};
use chrono::Utc;
use contract::redis_schema::{EventStats, QueueStats, StoredState, TicketHash};
use contract::ticket_state::{seen_refresh_ms, MarkUsed, TicketState, TicketStore};
use contract::token::TicketClaims;
use testkit::TestEnv;
use uuid::Uuid;

const PARTITION: i32 = 0;
const EVENT: &str = "gig";

/// A ticket of the test's queue, issued at `issued_ms`.
struct Ticket {
    claims: TicketClaims,
    issued_ms: i64,
}

impl Ticket {
    fn new(queue_number: i64, issued_ms: i64) -> Self {
        Self {
            claims: TicketClaims {
                ticket_id: Uuid::now_v7(),
                event_id: EVENT.into(),
                partition: PARTITION,
                queue_number,
                iat: issued_ms / 1000,
                exp: Utc::now().timestamp() + 3600,
                subject: None,
            },
            issued_ms,
        }
    }

    fn entry(&self) -> QueueEntry {
        QueueEntry::Ticket {
            queue_number: self.claims.queue_number,
            ticket_id: self.claims.ticket_id,
            event_id: EVENT.into(),
            issued_ms: self.issued_ms,
        }
    }

    /// Its holder reads its status, through the same script `GET /v1/tickets/{token}` runs
    /// (refreshing `seen` at the pace of the shortest grace here, 2 s).
    async fn read(&self, store: &TicketStore, now_ms: i64) -> TicketState {
        store
            .status(&self.claims, now_ms, Some(seen_refresh_ms(2)))
            .await
            .expect("status read")
            .state
    }

    /// Its state as anyone would derive it, without counting as its holder's read.
    async fn state(&self, store: &TicketStore, now_ms: i64) -> TicketState {
        store
            .status(&self.claims, now_ms, None)
            .await
            .expect("status")
            .state
    }
}

fn limits(now_ms: i64, max_active: u32, grace_ms: i64) -> StepLimits {
    StepLimits {
        now_ms,
        active_until_ms: now_ms + 600_000,
        batch_limit: 10,
        max_active: Some(max_active),
        grace_ms,
        ticket_ttl_seconds: 3600,
    }
}

/// Runs one step, creating the queue's counter at its first entry first, as the worker
/// does for a new queue.
async fn step(env: &TestEnv, entries: &[QueueEntry], limits: StepLimits) -> StepOutcome {
    if let Some(first) = entries.first() {
        let _: () = redis::cmd("SET")
            .arg(env.redis_keys().serving(PARTITION))
            .arg(first.queue_number())
            .arg("NX")
            .query_async(&mut env.redis.clone())
            .await
            .expect("SET NX");
    }
    activation::step(
        &mut env.redis.clone(),
        &env.redis_keys(),
        PARTITION,
        entries,
        limits,
    )
    .await
    .expect("activation step")
}

/// Everything a step may write, to compare before and after a replay.
async fn snapshot(env: &TestEnv, tickets: &[&Ticket]) -> BTreeMap<String, String> {
    let keys = env.redis_keys();
    let mut redis = env.redis.clone();
    let mut seen = BTreeMap::new();
    for key in [
        keys.queue_stats(PARTITION),
        keys.event_stats(PARTITION, EVENT),
    ]
    .into_iter()
    .chain(
        tickets
            .iter()
            .map(|ticket| keys.ticket(PARTITION, ticket.claims.ticket_id)),
    ) {
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("HGETALL");
        seen.insert(key, format!("{fields:?}"));
    }
    for key in [keys.active_set(PARTITION), keys.deferred(PARTITION)] {
        let members: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await
            .expect("ZRANGE");
        seen.insert(key, format!("{members:?}"));
    }
    let serving: Option<i64> = redis::cmd("GET")
        .arg(keys.serving(PARTITION))
        .query_async(&mut redis)
        .await
        .expect("GET");
    seen.insert(keys.serving(PARTITION), format!("{serving:?}"));
    seen
}

async fn counter(env: &TestEnv, key: String, field: &str) -> i64 {
    let value: Option<i64> = redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut env.redis.clone())
        .await
        .expect("HGET");
    value.unwrap_or(0)
}

async fn stored_state(env: &TestEnv, ticket: &Ticket) -> Option<String> {
    redis::cmd("HGET")
        .arg(env.redis_keys().ticket(PARTITION, ticket.claims.ticket_id))
        .arg(TicketHash::STATE)
        .query_async(&mut env.redis.clone())
        .await
        .expect("HGET state")
}

#[tokio::test]
async fn unread_tickets_take_no_slot_and_are_activated_first_once_read() {
    let env = TestEnv::new().await;
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let now = Utc::now().timestamp_millis();
    let issued = now - 1_000;
    // Two fans joined and hung up; the two behind them read their status.
    let tickets: Vec<Ticket> = (0..4).map(|n| Ticket::new(n, issued)).collect();
    let [hung_up, late_reader, fan, other_fan] = &tickets[..] else {
        unreachable!()
    };
    for reader in [fan, other_fan] {
        assert_eq!(reader.read(&store, now).await, TicketState::Waiting);
    }
    let entries: Vec<QueueEntry> = tickets.iter().map(Ticket::entry).collect();

    // max_active 2: the unread tickets would have taken both slots.
    let first = step(&env, &entries, limits(now, 2, 60_000)).await;
    assert_eq!(
        first.serving, 4,
        "the line is not held up by unread tickets"
    );
    assert_eq!(first.deferred, vec![0, 1]);
    assert_eq!(first.activated, 2);
    assert_eq!(first.active, 2);
    assert_eq!(first.deferred_waiting, 2);
    assert!(first.abandoned.is_empty());
    for reader in [fan, other_fan] {
        assert!(matches!(
            reader.state(&store, now).await,
            TicketState::Active { .. }
        ));
    }
    for unread in [hung_up, late_reader] {
        assert_eq!(
            stored_state(&env, unread).await.as_deref(),
            Some(StoredState::Deferred.as_str())
        );
        // Passed by the counter yet still waiting, next in line: not expired.
        assert_eq!(unread.state(&store, now).await, TicketState::Waiting);
    }
    let queue_stats = env.redis_keys().queue_stats(PARTITION);
    let event_stats = env.redis_keys().event_stats(PARTITION, EVENT);
    assert_eq!(
        counter(&env, queue_stats.clone(), QueueStats::ACTIVATED).await,
        2
    );
    assert_eq!(
        counter(&env, event_stats.clone(), EventStats::ACTIVATED).await,
        2
    );

    // Replaying the same step (a crash before the offset commit) changes nothing.
    let everything: Vec<&Ticket> = tickets.iter().collect();
    let before = snapshot(&env, &everything).await;
    let replay = step(&env, &entries, limits(now, 2, 60_000)).await;
    assert_eq!(replay.activated, 0);
    assert!(replay.deferred.is_empty() && replay.activated_deferred.is_empty());
    assert_eq!(
        snapshot(&env, &everything).await,
        before,
        "the replay wrote"
    );

    // One deferred holder reads at last, and a slot frees; a read ticket arrives behind.
    let later = now + 500;
    assert_eq!(late_reader.read(&store, later).await, TicketState::Waiting);
    let newcomer = Ticket::new(4, later);
    newcomer.read(&store, later).await;
    assert_eq!(
        store
            .mark_used(&fan.claims, later)
            .await
            .expect("mark used"),
        MarkUsed::Marked
    );
    let second = step(&env, &[newcomer.entry()], limits(later, 2, 60_000)).await;
    assert_eq!(
        second.activated_deferred,
        vec![1],
        "the deferred reader was ahead in line"
    );
    assert_eq!(second.activated, 1);
    assert!(second.blocked, "capacity holds the newcomer back");
    assert_eq!(second.serving, 4);
    assert_eq!(second.deferred_waiting, 1, "the unread ticket still waits");
    assert!(matches!(
        late_reader.state(&store, later).await,
        TicketState::Active { .. }
    ));
    assert_eq!(newcomer.state(&store, later).await, TicketState::Waiting);
    assert_eq!(hung_up.state(&store, later).await, TicketState::Waiting);
    assert_eq!(counter(&env, queue_stats, QueueStats::ACTIVATED).await, 3);
    assert_eq!(counter(&env, event_stats, EventStats::ACTIVATED).await, 3);
}

#[tokio::test]
async fn tickets_never_read_within_grace_are_abandoned_and_counted_once() {
    let env = TestEnv::new().await;
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let now = Utc::now().timestamp_millis();
    let grace = 2_000;
    let stale = Ticket::new(0, now - 5_000); // unread for longer than the grace already
    let fresh = Ticket::new(1, now - 1_000); // unread, 1 s of grace left
    let came_and_went = Ticket::new(2, now - 1_000); // read once, right after joining
    let fan = Ticket::new(3, now - 1_000);
    fan.read(&store, now).await;
    let entries: Vec<QueueEntry> = [&stale, &fresh, &came_and_went, &fan]
        .iter()
        .map(|ticket| ticket.entry())
        .collect();

    let first = step(&env, &entries, limits(now, 10, grace)).await;
    assert_eq!(first.abandoned, vec![0], "past its grace when reached");
    assert_eq!(first.deferred, vec![1, 2]);
    assert_eq!(first.activated, 1);
    assert_eq!(first.serving, 4);
    // A read after the counter passed it: the ticket is received.
    came_and_went.read(&store, now + 100).await;

    // 1.5 s later the unread ticket's grace has run out; the one read is activated.
    let later = now + 1_500;
    let second = step(&env, &[], limits(later, 10, grace)).await;
    assert_eq!(second.abandoned, vec![1]);
    assert_eq!(second.activated_deferred, vec![2]);
    assert_eq!(second.deferred_waiting, 0);
    assert_eq!(fresh.state(&store, later).await, TicketState::Abandoned);
    assert_eq!(stale.state(&store, later).await, TicketState::Abandoned);

    let queue_stats = env.redis_keys().queue_stats(PARTITION);
    let event_stats = env.redis_keys().event_stats(PARTITION, EVENT);
    let everything = [&stale, &fresh, &came_and_went, &fan];
    let before = snapshot(&env, &everything).await;
    let replay = step(&env, &entries, limits(later, 10, grace)).await;
    assert!(replay.abandoned.is_empty() && replay.activated == 0);
    assert_eq!(
        snapshot(&env, &everything).await,
        before,
        "the replay wrote"
    );
    assert_eq!(
        counter(&env, queue_stats.clone(), QueueStats::ABANDONED).await,
        2
    );
    assert_eq!(
        counter(&env, event_stats.clone(), EventStats::ABANDONED).await,
        2
    );
    assert_eq!(counter(&env, queue_stats, QueueStats::ACTIVATED).await, 2);
    assert_eq!(counter(&env, event_stats, EventStats::ACTIVATED).await, 2);
}

#[tokio::test]
async fn a_deferred_ticket_read_once_then_left_is_abandoned_and_a_waiting_reader_is_not() {
    let env = TestEnv::new().await;
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let now = Utc::now().timestamp_millis();
    let grace = 2_000;
    let holder = Ticket::new(0, now - 500);
    let left = Ticket::new(1, now - 500);
    let step_now = |at| limits(at, 0, grace); // no capacity at all: nothing activates
    let first = step(&env, &[holder.entry(), left.entry()], step_now(now)).await;
    assert_eq!(first.deferred, vec![0, 1]);
    holder.read(&store, now).await;
    left.read(&store, now).await;

    // Past both deadlines. The holder keeps reading and waits for a slot; the other read
    // once and has been gone for longer than the grace period.
    let later = now + 2_500;
    holder.read(&store, later).await;
    let second = step(&env, &[], step_now(later)).await;
    assert_eq!(second.abandoned, vec![1]);
    assert!(second.activated_deferred.is_empty());
    assert_eq!(second.deferred_waiting, 1);
    assert_eq!(holder.state(&store, later).await, TicketState::Waiting);
    assert_eq!(left.state(&store, later).await, TicketState::Abandoned);
}

#[tokio::test]
async fn a_queue_without_a_counter_is_not_stepped_and_says_so() {
    let env = TestEnv::new().await;
    let now = Utc::now().timestamp_millis();
    let fan = Ticket::new(7, now);
    let outcome = activation::step(
        &mut env.redis.clone(),
        &env.redis_keys(),
        PARTITION,
        &[fan.entry()],
        limits(now, 10, 60_000),
    )
    .await
    .expect("activation step");
    assert!(outcome.counter_missing);
    assert_eq!(outcome.activated, 0);
    assert_eq!(
        stored_state(&env, &fan).await,
        None,
        "nothing decided without a counter"
    );
    let serving: Option<i64> = redis::cmd("GET")
        .arg(env.redis_keys().serving(PARTITION))
        .query_async(&mut env.redis.clone())
        .await
        .expect("GET");
    assert_eq!(serving, None, "the step does not guess the counter");
}

#[tokio::test]
async fn after_a_rebuild_nobody_counts_as_gone_for_not_being_seen_before_it() {
    let env = TestEnv::new().await;
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let now = Utc::now().timestamp_millis();
    let grace = 2_000;
    // Issued long ago; their holders' reads were lost with Redis, rebuilt just now.
    let unread = Ticket::new(0, now - 60_000);
    let reader = Ticket::new(1, now - 60_000);
    let _: () = redis::cmd("HSET")
        .arg(env.redis_keys().queue_stats(PARTITION))
        .arg(QueueStats::RECOVERED_AT)
        .arg(now - 500)
        .query_async(&mut env.redis.clone())
        .await
        .expect("HSET");
    reader.read(&store, now).await;

    let first = step(
        &env,
        &[unread.entry(), reader.entry()],
        limits(now, 10, grace),
    )
    .await;
    assert!(first.abandoned.is_empty(), "{first:?}");
    assert_eq!(
        first.deferred,
        vec![0],
        "waits for a read, from the rebuild"
    );
    assert_eq!(first.activated, 1);
    // Its grace runs from the rebuild: gone once that has passed without a read.
    let later = now + grace;
    let second = step(&env, &[], limits(later, 10, grace)).await;
    assert_eq!(second.abandoned, vec![0]);
    assert_eq!(unread.state(&store, later).await, TicketState::Abandoned);
}
