//! Rebuilding a queue's Redis state after Redis lost it (a restart without persistence,
//! a failover to an empty replica, a `FLUSHALL`), from what Kafka and PostgreSQL keep.
//!
//! The activation step does not run on a queue without a serving counter (see
//! [`crate::activation`]); its worker calls [`rebuild`] first. A queue whose partition is
//! empty, or (for a worker that never saw the counter) has no decision yet, is new: the
//! counter is only created. Otherwise the queue's tickets are read back from the tickets
//! topic and its decisions from the decisions topic, and written again, each ticket only
//! if its hash has no state (one that survived a partial loss is newer than Kafka):
//!
//! - every decided ticket, wherever the counter now starts (a worker that restarted
//!   starts from the committed offset, which may lag: those tickets must be skipped as
//!   replays): activated ones `active` until their recorded `active_until` (in the capacity
//!   set while it runs), or `used` when PostgreSQL holds their confirmed reservation;
//!   abandoned ones `abandoned`;
//! - reached tickets without a published decision (deferred before the loss, or decided
//!   in the last moments before it): deferred again, with a grace period from now;
//! - the queue's and the events' counters (activated, abandoned, dead-lettered, the wait
//!   histogram; joins through the registration markers, so a join registered since the
//!   loss is not counted twice), the queue's highest issued number;
//! - the rebuild's time ([`QueueStats::RECOVERED_AT`]), which the step reads: the fans'
//!   `seen` times were lost, so nobody counts as gone for not being seen before it;
//! - last, the serving counter: until it exists, nothing is stepped (and a rebuild that
//!   finds it made by another owner meanwhile stops writing tickets).
//!
//! One rebuild runs at a time per activator: each holds its queue's history in memory.
//!
//! Not rebuilt: the one-place-per-user claims (the place's token is not in Kafka; a fan
//! who joins again gets a second place, the first keeps its own), the slot API's
//! `used`/`released` outcomes (kept only in Redis: such a session is `active` again until
//! its `active_until`), the reservation service's hold counter, and decisions made in the
//! instant before the loss whose journal had not reached Kafka yet (those tickets are
//! decided again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use contract::draw::Draw;
use contract::redis_schema::{
    EventStats, QueueStats, RedisKeys, StoredState, TicketHash, ISSUED_MAX_MEMBER,
    REGISTERED_MARKER_TTL_SECONDS,
};
use contract::ticket_decision::{Decision, DecisionRecord, Outcome};
use contract::ticket_record::TicketRecord;
use contract::topic_reader::{StoredRecord, TopicReader};
use redis::Script;
use uuid::Uuid;

use crate::queue_worker::WorkerContext;

/// Tickets written per Redis round trip.
const TICKETS_PER_WRITE: usize = 1_000;

/// What a rebuild needs to know about the queue.
pub struct QueueAtLoss<'a> {
    pub partition: i32,
    /// The place the queue had reached, as far as this worker knows: every place before
    /// it was decided or deferred.
    pub serving: i64,
    /// Whether this worker saw the counter before: then its absence is a loss.
    pub counter_seen: bool,
    pub draw: Option<Draw>,
    /// Each scheduled event's start (ms): its tickets count as issued no earlier.
    pub starts_ms: &'a HashMap<String, i64>,
    pub now_ms: i64,
    pub grace_ms: i64,
    /// For activations recorded without their `active_until`.
    pub active_ttl_ms: i64,
    pub ticket_ttl_seconds: i64,
}

/// What a rebuild restored (as read from Kafka; hashes that survived are kept as they
/// are).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub active: usize,
    pub ended: usize,
    pub abandoned: usize,
    pub deferred: usize,
}

impl Rebuilt {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A ticket's state to write back.
struct Restored {
    ticket_id: Uuid,
    state: StoredState,
    event_id: String,
    queue_number: i64,
    active_until_ms: Option<i64>,
    issued_ms: Option<i64>,
    /// The queue's set it belongs in, with its score.
    member_of: Option<(QueueSet, i64)>,
}

#[derive(Clone, Copy)]
enum QueueSet {
    Active,
    Deferred,
}

/// Writes tickets back, each only if its hash has no state, unless the queue's counter
/// exists (another owner rebuilt it meanwhile): then nothing, and -1.
/// KEYS: serving, active set, deferred set. ARGV: ticket key prefix, ttl, partition,
/// then per ticket: id, state, event, queue number, active_until ('' none), issued ('' none),
/// set ('a' active, 'd' deferred, '' none), score.
static RESTORE_TICKETS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
        local prefix, ttl, partition = ARGV[1], ARGV[2], ARGV[3]
        local written = 0
        for i = 4, #ARGV, 8 do
          local key = prefix .. ARGV[i]
          if not redis.call('HGET', key, '{state}') then
            redis.call('HSET', key, '{state}', ARGV[i + 1], '{event_id}', ARGV[i + 2],
              '{queue_number}', ARGV[i + 3], '{partition}', partition)
            if ARGV[i + 4] ~= '' then redis.call('HSET', key, '{active_until}', ARGV[i + 4]) end
            if ARGV[i + 5] ~= '' then redis.call('HSET', key, '{issued}', ARGV[i + 5]) end
            if ARGV[i + 6] == 'a' then redis.call('ZADD', KEYS[2], ARGV[i + 7], ARGV[i]) end
            if ARGV[i + 6] == 'd' then redis.call('ZADD', KEYS[3], ARGV[i + 7], ARGV[i]) end
            redis.call('EXPIRE', key, ttl)
            written = written + 1
          end
        end
        return written
        ",
        state = TicketHash::STATE,
        event_id = TicketHash::EVENT_ID,
        queue_number = TicketHash::QUEUE_NUMBER,
        partition = TicketHash::PARTITION,
        active_until = TicketHash::ACTIVE_UNTIL,
        issued = TicketHash::ISSUED,
    ))
});

/// Marks tickets' joins as registered and counts those not marked yet, per event.
/// KEYS: the queue's stats (routing only; the keys written are derived). ARGV: marker
/// prefix, marker ttl, event stats key before and
/// after the id, joined field, then pairs of ticket id and event id.
static COUNT_JOINS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        for i = 6, #ARGV, 2 do
          if redis.call('SET', ARGV[1] .. ARGV[i], 1, 'NX', 'EX', ARGV[2]) then
            redis.call('HINCRBY', ARGV[3] .. ARGV[i + 1] .. ARGV[4], ARGV[5], 1)
          end
        end
        ",
    )
});

/// Rebuilds `queue` (see the module's documentation); the counter exists afterwards.
pub async fn rebuild(
    context: &WorkerContext,
    mut queue: QueueAtLoss<'_>,
) -> anyhow::Result<Rebuilt> {
    let _one_at_a_time = context.rebuilds.acquire().await?;
    let partition = queue.partition;
    let keys = &context.keys;
    let mut redis = context.redis.clone();
    let (tickets, end, decisions) = read_history(context, partition).await?;
    if queue.serving > end {
        // The partition ends before the counter this worker knew: the broker lost its
        // topics (Tansu's memory engine restarted) and the line started again. Nothing
        // of the old one is left; the new one starts at the partition's end.
        queue.serving = end;
        queue.counter_seen = false;
    }
    if tickets.is_empty() || decisions.is_empty() && !queue.counter_seen {
        // A new queue: nothing was decided, nothing to restore.
        create_counter(&mut redis::pipe(), keys, &queue)
            .query_async::<()>(&mut redis)
            .await?;
        return Ok(Rebuilt::default());
    }
    let place = |offset: i64| queue.draw.map_or(offset, |draw| draw.queue_number(offset));
    let mut issued_of = HashMap::new();
    let mut restored = Vec::new();
    let mut rebuilt = Rebuilt::default();
    let mut dead_lettered = 0_i64;
    let mut joins = Vec::new();
    let mut highest_issued = None;
    for record in &tickets {
        highest_issued = Some(record.offset);
        let queue_number = place(record.offset);
        let Ok(ticket) = TicketRecord::parse(record.payload.as_deref()) else {
            dead_lettered += i64::from(queue_number < queue.serving);
            continue;
        };
        let start = queue.starts_ms.get(&ticket.event_id).copied();
        let issued_ms = ticket
            .issued_at
            .timestamp_millis()
            .max(start.unwrap_or(i64::MIN));
        issued_of.insert(ticket.ticket_id, issued_ms);
        if queue_number < queue.serving && !decisions.contains_key(&ticket.ticket_id) {
            rebuilt.deferred += 1;
            let since = issued_ms.max(queue.now_ms);
            restored.push(Restored {
                ticket_id: ticket.ticket_id,
                state: StoredState::Deferred,
                event_id: ticket.event_id.clone(),
                queue_number,
                active_until_ms: None,
                issued_ms: Some(issued_ms),
                member_of: Some((QueueSet::Deferred, since + queue.grace_ms)),
            });
        }
        joins.push((ticket.ticket_id, ticket.event_id));
    }
    let used = confirmed_tickets(context, &decisions).await?;
    let mut queue_counts = (0_i64, 0_i64);
    let mut event_counts: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for (event_id, decision) in decisions.values() {
        let counts = event_counts.entry(event_id.as_str()).or_default();
        let (state, active_until_ms, member_of) = match decision.outcome {
            Outcome::Activated => {
                let until = decision
                    .active_until_ms
                    .unwrap_or(decision.at_ms + queue.active_ttl_ms);
                queue_counts.0 += 1;
                *counts.entry(EventStats::ACTIVATED.to_owned()).or_default() += 1;
                if let Some(issued) = issued_of.get(&decision.ticket_id) {
                    let waited = (decision.at_ms - issued) as f64 / 1000.0;
                    *counts.entry(EventStats::wait_field(waited)).or_default() += 1;
                }
                if used.contains(&decision.ticket_id) {
                    rebuilt.ended += 1;
                    (StoredState::Used, Some(until), None)
                } else if until > queue.now_ms {
                    rebuilt.active += 1;
                    (
                        StoredState::Active,
                        Some(until),
                        Some((QueueSet::Active, until)),
                    )
                } else {
                    rebuilt.ended += 1;
                    (StoredState::Active, Some(until), None)
                }
            }
            Outcome::Abandoned => {
                rebuilt.abandoned += 1;
                queue_counts.1 += 1;
                *counts.entry(EventStats::ABANDONED.to_owned()).or_default() += 1;
                (StoredState::Abandoned, None, None)
            }
        };
        restored.push(Restored {
            ticket_id: decision.ticket_id,
            state,
            event_id: event_id.clone(),
            queue_number: decision.queue_number,
            active_until_ms,
            issued_ms: None,
            member_of,
        });
    }
    for chunk in restored.chunks(TICKETS_PER_WRITE) {
        let written: i64 = restore_tickets(keys, &queue, chunk)
            .invoke_async(&mut redis)
            .await?;
        if written < 0 {
            anyhow::bail!("another owner rebuilt the queue meanwhile");
        }
    }
    count_joins(&mut redis, keys, partition, &joins).await?;
    let mut pipe = redis::pipe();
    for (event_id, counts) in event_counts.iter().filter(|(_, counts)| !counts.is_empty()) {
        let fields: Vec<(&str, i64)> = counts.iter().map(|(f, n)| (f.as_str(), *n)).collect();
        pipe.hset_multiple(keys.event_stats(partition, event_id), &fields)
            .ignore();
    }
    pipe.hset_multiple(
        keys.queue_stats(partition),
        &[
            (QueueStats::ACTIVATED, queue_counts.0),
            (QueueStats::ABANDONED, queue_counts.1),
            (QueueStats::DEAD_LETTERED, dead_lettered),
            (QueueStats::RECOVERED_AT, queue.now_ms),
        ],
    )
    .ignore();
    if let Some(highest) = highest_issued {
        pipe.cmd("ZADD")
            .arg(keys.issued_max(partition))
            .arg("GT")
            .arg(highest)
            .arg(ISSUED_MAX_MEMBER)
            .ignore();
    }
    // Last: the queue is stepped again from here.
    create_counter(&mut pipe, keys, &queue)
        .query_async::<()>(&mut redis)
        .await?;
    Ok(rebuilt)
}

fn restore_tickets(
    keys: &RedisKeys,
    queue: &QueueAtLoss<'_>,
    tickets: &[Restored],
) -> redis::ScriptInvocation<'static> {
    let mut invocation = RESTORE_TICKETS.prepare_invoke();
    invocation
        .key(keys.serving(queue.partition))
        .key(keys.active_set(queue.partition))
        .key(keys.deferred(queue.partition))
        .arg(keys.ticket_key_prefix(queue.partition))
        .arg(queue.ticket_ttl_seconds)
        .arg(queue.partition);
    let optional = |value: Option<i64>| value.map_or_else(String::new, |value| value.to_string());
    for ticket in tickets {
        let (set, score) = match ticket.member_of {
            Some((QueueSet::Active, score)) => ("a", score),
            Some((QueueSet::Deferred, score)) => ("d", score),
            None => ("", 0),
        };
        invocation
            .arg(ticket.ticket_id.to_string())
            .arg(ticket.state.as_str())
            .arg(&ticket.event_id)
            .arg(ticket.queue_number)
            .arg(optional(ticket.active_until_ms))
            .arg(optional(ticket.issued_ms))
            .arg(set)
            .arg(score);
    }
    invocation
}

/// Adds the creation of the queue's serving counter (unless another owner made it
/// meanwhile) to `pipe`.
fn create_counter<'p>(
    pipe: &'p mut redis::Pipeline,
    keys: &RedisKeys,
    queue: &QueueAtLoss<'_>,
) -> &'p mut redis::Pipeline {
    pipe.cmd("SET")
        .arg(keys.serving(queue.partition))
        .arg(queue.serving)
        .arg("NX")
        .ignore()
}

/// The partition's ticket records, the offset after its last, and the queue's first
/// decision per ticket (with its event); no decisions for an empty partition.
#[allow(clippy::type_complexity)]
async fn read_history(
    context: &WorkerContext,
    partition: i32,
) -> anyhow::Result<(Vec<StoredRecord>, i64, HashMap<Uuid, (String, Decision)>)> {
    let kafka = context.kafka.clone();
    let (topic, decisions_topic) = (context.topic.clone(), context.decisions_topic.clone());
    tokio::task::spawn_blocking(move || {
        let reader = TopicReader::new(&kafka, &topic)?;
        let (_, high) = reader.watermarks(partition)?;
        let tickets = reader.partition(partition, &|_| true)?;
        let end = tickets
            .last()
            .map_or(high, |last| high.max(last.offset + 1));
        let mut decisions = HashMap::new();
        if tickets.is_empty() {
            return Ok((tickets, end, decisions));
        }
        let ours = |payload: Option<&[u8]>| {
            payload
                .and_then(DecisionRecord::parse)
                .is_some_and(|record| record.partition == partition)
        };
        for record in TopicReader::new(&kafka, &decisions_topic)?.all(ours)? {
            let Some(record) = record.payload.as_deref().and_then(DecisionRecord::parse) else {
                continue;
            };
            // At least once: the first decision per ticket is the one.
            for decision in record.decisions {
                decisions
                    .entry(decision.ticket_id)
                    .or_insert_with(|| (record.event_id.clone(), decision));
            }
        }
        Ok((tickets, end, decisions))
    })
    .await?
}

/// The activated tickets whose reservation was confirmed.
async fn confirmed_tickets(
    context: &WorkerContext,
    decisions: &HashMap<Uuid, (String, Decision)>,
) -> anyhow::Result<HashSet<Uuid>> {
    let activated: Vec<Uuid> = decisions
        .values()
        .filter(|(_, decision)| decision.outcome == Outcome::Activated)
        .map(|(_, decision)| decision.ticket_id)
        .collect();
    if activated.is_empty() {
        return Ok(HashSet::new());
    }
    let used: Vec<Uuid> = sqlx::query_scalar(
        "SELECT ticket_id FROM reservations WHERE status = 'confirmed' AND ticket_id = ANY($1)",
    )
    .bind(&activated)
    .fetch_all(context.catalog.pool())
    .await?;
    Ok(used.into_iter().collect())
}

async fn count_joins(
    redis: &mut platform::redis_connection::RedisConnection,
    keys: &RedisKeys,
    partition: i32,
    joins: &[(Uuid, String)],
) -> redis::RedisResult<()> {
    let marker_prefix = keys.registered_key_prefix(partition);
    let (stats_before, stats_after) = keys.event_stats_key_parts(partition);
    for chunk in joins.chunks(TICKETS_PER_WRITE) {
        let mut invocation = COUNT_JOINS.prepare_invoke();
        // The queue's stats key routes the script to the queue's slot (a cluster); the
        // keys it writes are derived from the prefixes, all in that slot.
        invocation
            .key(keys.queue_stats(partition))
            .arg(&marker_prefix)
            .arg(REGISTERED_MARKER_TTL_SECONDS)
            .arg(&stats_before)
            .arg(stats_after)
            .arg(EventStats::JOINED);
        for (ticket_id, event_id) in chunk {
            invocation.arg(ticket_id.to_string()).arg(event_id);
        }
        invocation.invoke_async::<()>(redis).await?;
    }
    Ok(())
}
