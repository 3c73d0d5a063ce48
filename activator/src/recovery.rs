//! Rebuilding a queue's Redis state after Redis lost it (a restart without persistence,
//! a failover to an empty replica, a `FLUSHALL`), from what Kafka and PostgreSQL keep.
//!
//! The activation step does not run on a queue without a serving counter (see
//! [`crate::activation`]); its worker calls [`rebuild`] first. A queue whose partition
//! holds nothing before the counter's place is new: the counter is only created. Otherwise
//! the queue's tickets are read back from the tickets topic and its decisions from the
//! decisions topic, and written again:
//!
//! - activated tickets: `active` until their recorded `active_until` (in the capacity set
//!   while it runs), or `used` when PostgreSQL holds their confirmed reservation;
//! - abandoned tickets: `abandoned`;
//! - reached tickets without a published decision (deferred before the loss, or decided
//!   in the last moments before it): deferred again, with a grace period from now;
//! - the queue's and the events' counters (activated, abandoned, dead-lettered, the wait
//!   histogram; joins through the registration markers, so a join registered since the
//!   loss is not counted twice), the queue's highest issued number;
//! - the rebuild's time ([`QueueStats::RECOVERED_AT`]), which the step reads: the fans'
//!   `seen` times were lost, so nobody counts as gone for not being seen before it;
//! - last, the serving counter: until it exists, nothing is stepped.
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
use contract::topic_reader::TopicReader;
use redis::Script;
use uuid::Uuid;

use crate::queue_worker::WorkerContext;

/// Tickets written per Redis round trip.
const TICKETS_PER_WRITE: usize = 1_000;

/// What a rebuild needs to know about the queue.
pub struct QueueAtLoss<'a> {
    pub partition: i32,
    /// The place the queue had reached: every place before it was decided or deferred.
    pub serving: i64,
    pub draw: Option<Draw>,
    /// Each scheduled event's start (ms): its tickets count as issued no earlier.
    pub starts_ms: &'a HashMap<String, i64>,
    pub now_ms: i64,
    pub grace_ms: i64,
    /// For activations recorded without their `active_until`.
    pub active_ttl_ms: i64,
    pub ticket_ttl_seconds: i64,
}

/// What a rebuild restored.
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

/// A reached ticket, as Kafka tells it.
struct Reached {
    ticket_id: Uuid,
    event_id: String,
    queue_number: i64,
    issued_ms: i64,
    decision: Option<Decision>,
}

/// Marks tickets' joins as registered and counts those not marked yet, per event.
/// KEYS: none (derived). ARGV: marker prefix, marker ttl, event stats key before and
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
pub async fn rebuild(context: &WorkerContext, queue: QueueAtLoss<'_>) -> anyhow::Result<Rebuilt> {
    let partition = queue.partition;
    let keys = &context.keys;
    let mut redis = context.redis.clone();
    let (tickets, decisions) = read_history(context, partition, queue.serving).await?;
    if tickets.is_empty() {
        // A new queue: nothing was reached, nothing to restore.
        create_counter(&mut redis::pipe(), keys, &queue)
            .query_async::<()>(&mut redis)
            .await?;
        return Ok(Rebuilt::default());
    }
    let place = |offset: i64| queue.draw.map_or(offset, |draw| draw.queue_number(offset));
    let mut reached = Vec::new();
    let mut dead_lettered = 0_i64;
    let mut joins = Vec::new();
    let mut highest_issued = None;
    for record in &tickets {
        let queue_number = place(record.offset);
        let ticket = TicketRecord::parse(record.payload.as_deref());
        highest_issued = Some(record.offset);
        match ticket {
            Ok(ticket) => {
                joins.push((ticket.ticket_id, ticket.event_id.clone()));
                if queue_number < queue.serving {
                    let start = queue.starts_ms.get(&ticket.event_id).copied();
                    reached.push(Reached {
                        decision: decisions.get(&ticket.ticket_id).cloned(),
                        ticket_id: ticket.ticket_id,
                        queue_number,
                        issued_ms: ticket
                            .issued_at
                            .timestamp_millis()
                            .max(start.unwrap_or(i64::MIN)),
                        event_id: ticket.event_id,
                    });
                }
            }
            Err(_) if queue_number < queue.serving => dead_lettered += 1,
            Err(_) => {}
        }
    }
    let used = confirmed_tickets(context, &reached).await?;
    let mut rebuilt = Rebuilt::default();
    let mut queue_counts = (0_i64, 0_i64);
    let mut event_counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for chunk in reached.chunks(TICKETS_PER_WRITE) {
        let mut pipe = redis::pipe();
        for ticket in chunk {
            let key = keys.ticket(ticket.ticket_id);
            let counts = event_counts.entry(ticket.event_id.clone()).or_default();
            let common = [
                (TicketHash::EVENT_ID, ticket.event_id.clone()),
                (TicketHash::QUEUE_NUMBER, ticket.queue_number.to_string()),
            ];
            match &ticket.decision {
                Some(decision) if decision.outcome == Outcome::Activated => {
                    let until = decision
                        .active_until_ms
                        .unwrap_or(decision.at_ms + queue.active_ttl_ms);
                    let state = if used.contains(&ticket.ticket_id) {
                        rebuilt.ended += 1;
                        StoredState::Used
                    } else if until > queue.now_ms {
                        rebuilt.active += 1;
                        pipe.zadd(
                            keys.active_set(partition),
                            ticket.ticket_id.to_string(),
                            until,
                        )
                        .ignore();
                        StoredState::Active
                    } else {
                        rebuilt.ended += 1;
                        StoredState::Active
                    };
                    pipe.hset_multiple(
                        &key,
                        &[
                            (TicketHash::STATE, state.as_str().to_owned()),
                            (TicketHash::ACTIVE_UNTIL, until.to_string()),
                            (TicketHash::PARTITION, partition.to_string()),
                        ],
                    )
                    .ignore();
                    queue_counts.0 += 1;
                    *counts.entry(EventStats::ACTIVATED.to_owned()).or_default() += 1;
                    let waited = (decision.at_ms - ticket.issued_ms) as f64 / 1000.0;
                    *counts.entry(EventStats::wait_field(waited)).or_default() += 1;
                }
                Some(_) => {
                    rebuilt.abandoned += 1;
                    pipe.hset(&key, TicketHash::STATE, StoredState::Abandoned.as_str())
                        .ignore();
                    queue_counts.1 += 1;
                    *counts.entry(EventStats::ABANDONED.to_owned()).or_default() += 1;
                }
                None => {
                    rebuilt.deferred += 1;
                    pipe.hset_multiple(
                        &key,
                        &[
                            (TicketHash::STATE, StoredState::Deferred.as_str().to_owned()),
                            (TicketHash::ISSUED, ticket.issued_ms.to_string()),
                        ],
                    )
                    .ignore();
                    let since = ticket.issued_ms.max(queue.now_ms);
                    pipe.zadd(
                        keys.deferred(partition),
                        ticket.ticket_id.to_string(),
                        since + queue.grace_ms,
                    )
                    .ignore();
                }
            }
            pipe.hset_multiple(&key, &common)
                .ignore()
                .expire(&key, queue.ticket_ttl_seconds)
                .ignore();
        }
        pipe.query_async::<()>(&mut redis).await?;
    }
    count_joins(&mut redis, keys, &joins).await?;
    let mut pipe = redis::pipe();
    for (event_id, counts) in &event_counts {
        let fields: Vec<(&str, i64)> = counts.iter().map(|(f, n)| (f.as_str(), *n)).collect();
        pipe.hset_multiple(keys.event_stats(event_id), &fields)
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

/// The partition's ticket records and the queue's first decision per ticket; nothing
/// when no record of the partition comes before `serving` (a new queue).
async fn read_history(
    context: &WorkerContext,
    partition: i32,
    serving: i64,
) -> anyhow::Result<(
    Vec<contract::topic_reader::StoredRecord>,
    HashMap<Uuid, Decision>,
)> {
    let kafka = context.kafka.clone();
    let (topic, decisions_topic) = (context.topic.clone(), context.decisions_topic.clone());
    tokio::task::spawn_blocking(move || {
        let tickets = TopicReader::new(&kafka, &topic)?;
        let (low, _) = tickets.watermarks(partition)?;
        if serving <= low {
            return Ok((Vec::new(), HashMap::new()));
        }
        let records = tickets.partition(partition)?;
        let mut decisions = HashMap::new();
        for record in TopicReader::new(&kafka, &decisions_topic)?.all(|_| true)? {
            let Some(record) = record.payload.as_deref().and_then(DecisionRecord::parse) else {
                continue;
            };
            if record.partition != partition {
                continue;
            }
            // At least once: the first decision per ticket is the one.
            for decision in record.decisions {
                decisions.entry(decision.ticket_id).or_insert(decision);
            }
        }
        Ok((records, decisions))
    })
    .await?
}

/// The activated tickets among `reached` whose reservation was confirmed.
async fn confirmed_tickets(
    context: &WorkerContext,
    reached: &[Reached],
) -> anyhow::Result<HashSet<Uuid>> {
    let activated: Vec<Uuid> = reached
        .iter()
        .filter(|ticket| {
            ticket
                .decision
                .as_ref()
                .is_some_and(|decision| decision.outcome == Outcome::Activated)
        })
        .map(|ticket| ticket.ticket_id)
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
    redis: &mut redis::aio::ConnectionManager,
    keys: &RedisKeys,
    joins: &[(Uuid, String)],
) -> redis::RedisResult<()> {
    let marker_prefix = keys.registered_key_prefix();
    let (stats_before, stats_after) = keys.event_stats_key_parts();
    for chunk in joins.chunks(TICKETS_PER_WRITE) {
        let mut invocation = COUNT_JOINS.prepare_invoke();
        invocation
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
