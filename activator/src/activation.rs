//! One activation step of one queue, as a single atomic Redis script.
//!
//! Only received tickets take capacity: a ticket counts once its holder has read its
//! status or opened its stream (its hash's `seen` field). The script first re-examines
//! the queue's deferred tickets (passed earlier before anyone read them, and ahead of
//! everything still at the counter): one read since is activated first, one never read
//! within the grace period since issue is abandoned, the rest wait. Then it walks the
//! next tickets in queue order, starting at the serving counter: it skips tickets
//! already decided (a replay after a crash changes nothing, and never extends an
//! `active_until`), refuses to jump over missing offsets, marks tickets whose holder has
//! gone abandoned and defers tickets nobody has read yet, both without using a slot and
//! without holding up the line (or joining and hanging up would stall everyone),
//! activates the rest up to the batch limit and the queue's free capacity (expired
//! activations are pruned from the capacity set before counting), and moves the serving
//! counter forward only. All of it happens in one `EVALSHA`, so a crash leaves either
//! the whole step or none of it.
//!
//! A queue without a serving counter is not stepped: the step changes nothing and says
//! so ([`StepOutcome::counter_missing`]), and the worker rebuilds the queue first (see
//! [`crate::recovery`]), since Redis may have lost the decisions before the counter.
//!
//! The script touches per-ticket and per-event keys it derives from the key schema's
//! parts ([`RedisKeys::ticket_key_prefix`], [`RedisKeys::event_stats_key_parts`]) and
//! writes the schema's field names: it needs one Redis (or hash-tagged keys in a
//! cluster).

use std::sync::LazyLock;

use contract::redis_schema::{EventStats, QueueStats, RedisKeys, StoredState, TicketHash};
use contract::ticket_decision::Outcome;
use platform::redis_connection::RedisConnection;
use redis::{RedisResult, Script};
use uuid::Uuid;

/// A record of the queue, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEntry {
    Ticket {
        queue_number: i64,
        ticket_id: Uuid,
        event_id: String,
        issued_ms: i64,
    },
    /// A record that was not a ticket and has been dead-lettered: it only moves the
    /// serving counter.
    DeadLettered { queue_number: i64 },
}

impl QueueEntry {
    pub fn queue_number(&self) -> i64 {
        match self {
            Self::Ticket { queue_number, .. } | Self::DeadLettered { queue_number } => {
                *queue_number
            }
        }
    }
}

/// Deferred tickets one step examines at most, those due first first: bounds the
/// step's work when an attacker leaves many unread tickets behind. A ticket further
/// back is examined once those ahead of it are settled, within its grace period.
const DEFERRED_PER_STEP: u32 = 1_000;

/// The queue's rules for one step.
#[derive(Debug, Clone, Copy)]
pub struct StepLimits {
    pub now_ms: i64,
    pub active_until_ms: i64,
    /// Tickets this step may activate at most.
    pub batch_limit: u64,
    pub max_active: Option<u32>,
    pub grace_ms: i64,
    /// How long an activated ticket's Redis hash is kept.
    pub ticket_ttl_seconds: i64,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepOutcome {
    pub reached_from: i64,
    pub serving: i64,
    pub activated: u64,
    pub expired: u64,
    pub active: u64,
    /// True when the batch limit or capacity stopped the step before the entries ran out.
    pub blocked: bool,
    /// True when the entries started past the serving counter: records are missing
    /// from the buffer and must be read again.
    pub gap: bool,
    /// Queue numbers abandoned: reached ones, and deferred ones whose time ran out.
    pub abandoned: Vec<i64>,
    pub dead_lettered: Vec<i64>,
    /// Reached queue numbers deferred because nobody had read them yet.
    pub deferred: Vec<i64>,
    /// Queue numbers deferred earlier and activated now (counted in `activated`).
    pub activated_deferred: Vec<i64>,
    /// Tickets in the queue's deferred set after the step.
    pub deferred_waiting: u64,
    /// The queue had no serving counter: nothing was done.
    pub counter_missing: bool,
}

impl StepOutcome {
    /// Folds a later step of the same tick into this one.
    pub fn merge(&mut self, step: StepOutcome) {
        self.serving = step.serving;
        self.activated += step.activated;
        self.expired += step.expired;
        self.active = step.active;
        self.blocked = step.blocked;
        self.abandoned.extend(step.abandoned);
        self.dead_lettered.extend(step.dead_lettered);
        self.deferred.extend(step.deferred);
        self.activated_deferred.extend(step.activated_deferred);
        self.deferred_waiting = step.deferred_waiting;
        self.counter_missing = step.counter_missing;
    }

    /// Whether the step changed anything fans can see: the counter moved, or a deferred
    /// ticket was settled.
    pub fn changed_the_line(&self) -> bool {
        self.serving > self.reached_from
            || !self.activated_deferred.is_empty()
            || !self.abandoned.is_empty()
    }
}

static STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        -- KEYS: serving, active set, queue stats, deferred set, decisions journal
        -- ARGV: now, active_until, max_active (-1: none), batch_limit, grace_ms,
        --       ticket key prefix, ticket_ttl_s, event stats key before and after the id,
        --       deferred tickets to examine at most, the partition,
        --       then per entry: queue_number, ticket_id ('' = dead letter), event_id,
        --       issued_ms (no earlier than its sale's start)
        local now = tonumber(ARGV[1])
        local active_until = ARGV[2]
        local max_active = tonumber(ARGV[3])
        local limit = tonumber(ARGV[4])
        local grace = tonumber(ARGV[5])
        local ticket_prefix = ARGV[6]
        local ticket_ttl = ARGV[7]
        local event_stats_before, event_stats_after = ARGV[8], ARGV[9]
        local deferred_scan = tonumber(ARGV[10])
        local partition = ARGV[11]
        local first_entry = 12
        -- No counter: a new queue, or Redis lost it. The caller rebuilds the queue first.
        local serving = tonumber(redis.call('GET', KEYS[1]) or '-1')
        if serving < 0 then return {{-1, -1, 0, 0, 0, 4, 0, 0, 0, 0}} end
        local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
        local active = redis.call('ZCARD', KEYS[2])
        -- Fans' `seen` times before a rebuild were lost: nobody counts as gone for not
        -- having been seen before it.
        local recovered = tonumber(redis.call('HGET', KEYS[3], '{recovered_at}') or '0')
        local from = serving
        local activated, blocked, gap = 0, 0, 0
        local abandoned, dead, deferred, activated_deferred = {{}}, {{}}, {{}}, {{}}
        local per_event = {{}}
        -- Every decision, journalled with the decision itself (published to Kafka next).
        local journal = {{}}
        local function decided(letter, ticket, event, qn, suffix)
          table.insert(journal, letter .. '|' .. ticket .. '|' .. event .. '|' .. qn .. '|' .. now .. suffix)
        end
        local function count(event, field)
          per_event[event] = per_event[event] or {{activated = 0, abandoned = 0, waits = {{}}}}
          per_event[event][field] = per_event[event][field] + 1
        end
        -- The join-to-active wait, into the event's histogram (unknown: not counted).
        local wait_bounds = {{{wait_bounds}}}
        local function count_wait(event, issued)
          if not issued then return end
          local waited, field = (now - issued) / 1000, nil
          for _, bound in ipairs(wait_bounds) do
            if waited <= bound then field = '{wait_prefix}' .. bound break end
          end
          field = field or '{wait_prefix}' .. wait_bounds[#wait_bounds]
          local waits = per_event[event].waits
          waits[field] = (waits[field] or 0) + 1
        end
        local function full()
          return activated >= limit or (max_active >= 0 and active >= max_active)
        end
        local function activate(key, ticket, event, qn, issued)
          decided('{activated_letter}', ticket, event, qn, '|' .. active_until)
          -- Where it is, so a site can free its slot knowing only the ticket id.
          redis.call('HSET', key, '{state}', '{active}', '{active_until}', active_until,
            '{event_id}', event, '{queue_number}', qn, '{partition}', partition)
          redis.call('EXPIRE', key, ticket_ttl)
          redis.call('ZADD', KEYS[2], active_until, ticket)
          active = active + 1
          activated = activated + 1
          count(event, 'activated')
          count_wait(event, issued)
        end
        local function abandon(key, ticket, qn, event)
          decided('{abandoned_letter}', ticket, event, qn, '')
          redis.call('HSET', key, '{state}', '{abandoned}')
          redis.call('EXPIRE', key, ticket_ttl)
          table.insert(abandoned, qn)
          count(event, 'abandoned')
        end
        -- Deferred tickets first: each was ahead of everything still at the counter.
        -- Read since: activated (capacity and batch allowing), unless its holder has
        -- gone again. Never read and past its deadline: abandoned. Otherwise it stays.
        local pending = redis.call('ZRANGE', KEYS[4], 0, deferred_scan - 1, 'WITHSCORES')
        for i = 1, #pending, 2 do
          local ticket, deadline = pending[i], tonumber(pending[i + 1])
          local key = ticket_prefix .. ticket
          local fields = redis.call('HMGET', key, '{state}', '{seen}', '{event_id}', '{queue_number}', '{issued}')
          if fields[1] ~= '{deferred}' then
            -- Its hash was lost with Redis data: nothing left to settle.
            redis.call('ZREM', KEYS[4], ticket)
          else
            local qn, event = tonumber(fields[4]), fields[3]
            if fields[2] and now - tonumber(fields[2]) > grace
                or not fields[2] and now > deadline then
              abandon(key, ticket, qn, event)
              redis.call('ZREM', KEYS[4], ticket)
            elseif fields[2] and not full() then
              activate(key, ticket, event, qn, tonumber(fields[5] or ''))
              table.insert(activated_deferred, qn)
              redis.call('ZREM', KEYS[4], ticket)
            end
          end
        end
        for i = first_entry, #ARGV, 4 do
          local qn = tonumber(ARGV[i])
          if qn > serving then
            -- Offsets are contiguous: records between the counter and this one are missing
            -- from what we were given. Never skip them; the caller re-reads.
            gap = 1
            break
          end
          if qn == serving then
            local ticket, event, issued = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
            if ticket == '' then
              table.insert(dead, qn)
              serving = qn + 1
            else
              local key = ticket_prefix .. ticket
              local fields = redis.call('HMGET', key, '{state}', '{seen}')
              local seen = tonumber(fields[2] or '')
              -- Its grace runs from its issue, its sale's start (issued is the start
              -- then) or the last rebuild, whichever is last; a read before that counts
              -- as a read at it.
              local since = math.max(issued, recovered)
              if seen and seen < since then seen = since end
              if fields[1] then
                -- Decided before (a replay): leave it exactly as it is.
                serving = qn + 1
              elseif not seen and now - since > grace or seen and now - seen > grace then
                abandon(key, ticket, qn, event)
                serving = qn + 1
              elseif not seen then
                -- Nobody has read it yet: it takes no slot and does not hold up the line.
                redis.call('HSET', key, '{state}', '{deferred}', '{event_id}', event, '{queue_number}', qn,
                  '{issued}', issued)
                redis.call('EXPIRE', key, ticket_ttl)
                redis.call('ZADD', KEYS[4], since + grace, ticket)
                table.insert(deferred, qn)
                serving = qn + 1
              elseif full() then
                blocked = 1
                break
              else
                activate(key, ticket, event, qn, issued)
                serving = qn + 1
              end
            end
          end
        end
        if serving > from then
          redis.call('SET', KEYS[1], serving)
        end
        -- In slices: Lua's unpack has a bounded stack.
        for first = 1, #journal, 1000 do
          redis.call('RPUSH', KEYS[5], unpack(journal, first, math.min(first + 999, #journal)))
        end
        if activated + #abandoned + #dead > 0 then
          redis.call('HINCRBY', KEYS[3], '{queue_activated}', activated)
          redis.call('HINCRBY', KEYS[3], '{queue_abandoned}', #abandoned)
          redis.call('HINCRBY', KEYS[3], '{queue_dead_lettered}', #dead)
          for event, counts in pairs(per_event) do
            local stats = event_stats_before .. event .. event_stats_after
            redis.call('HINCRBY', stats, '{event_activated}', counts.activated)
            redis.call('HINCRBY', stats, '{event_abandoned}', counts.abandoned)
            for field, waited in pairs(counts.waits) do
              redis.call('HINCRBY', stats, field, waited)
            end
          end
        end
        local reply = {{from, serving, activated, expired, active, blocked + 2 * gap,
          redis.call('ZCARD', KEYS[4]), #abandoned, #deferred, #activated_deferred}}
        for _, list in ipairs({{abandoned, deferred, activated_deferred, dead}}) do
          for _, qn in ipairs(list) do table.insert(reply, qn) end
        end
        return reply
        ",
        state = TicketHash::STATE,
        seen = TicketHash::SEEN,
        active_until = TicketHash::ACTIVE_UNTIL,
        event_id = TicketHash::EVENT_ID,
        queue_number = TicketHash::QUEUE_NUMBER,
        issued = TicketHash::ISSUED,
        partition = TicketHash::PARTITION,
        wait_prefix = EventStats::WAIT_FIELD_PREFIX,
        wait_bounds = EventStats::WAIT_BOUNDS
            .map(|bound| bound.to_string())
            .join(", "),
        active = StoredState::Active.as_str(),
        abandoned = StoredState::Abandoned.as_str(),
        deferred = StoredState::Deferred.as_str(),
        queue_activated = QueueStats::ACTIVATED,
        queue_abandoned = QueueStats::ABANDONED,
        queue_dead_lettered = QueueStats::DEAD_LETTERED,
        recovered_at = QueueStats::RECOVERED_AT,
        event_activated = EventStats::ACTIVATED,
        event_abandoned = EventStats::ABANDONED,
        activated_letter = Outcome::Activated.letter(),
        abandoned_letter = Outcome::Abandoned.letter(),
    ))
});

/// Runs one step over `entries` (in queue order) for `partition`.
pub async fn step(
    redis: &mut RedisConnection,
    keys: &RedisKeys,
    partition: i32,
    entries: &[QueueEntry],
    limits: StepLimits,
) -> RedisResult<StepOutcome> {
    let mut invocation = STEP.prepare_invoke();
    invocation
        .key(keys.serving(partition))
        .key(keys.active_set(partition))
        .key(keys.queue_stats(partition))
        .key(keys.deferred(partition))
        .key(keys.decisions(partition))
        .arg(limits.now_ms)
        .arg(limits.active_until_ms)
        .arg(limits.max_active.map_or(-1, i64::from))
        .arg(limits.batch_limit)
        .arg(limits.grace_ms)
        .arg(keys.ticket_key_prefix(partition))
        .arg(limits.ticket_ttl_seconds);
    let (event_stats_before, event_stats_after) = keys.event_stats_key_parts(partition);
    invocation
        .arg(event_stats_before)
        .arg(event_stats_after)
        .arg(DEFERRED_PER_STEP)
        .arg(partition);
    for entry in entries {
        match entry {
            QueueEntry::Ticket {
                queue_number,
                ticket_id,
                event_id,
                issued_ms,
            } => {
                invocation
                    .arg(*queue_number)
                    .arg(ticket_id.to_string())
                    .arg(event_id)
                    .arg(*issued_ms);
            }
            QueueEntry::DeadLettered { queue_number } => {
                invocation.arg(*queue_number).arg("").arg("").arg(0);
            }
        }
    }
    let reply: Vec<i64> = invocation.invoke_async(redis).await?;
    Ok(parse_reply(&reply))
}

fn parse_reply(reply: &[i64]) -> StepOutcome {
    let field = |index: usize| reply.get(index).copied().unwrap_or(0);
    let count = |index: usize| usize::try_from(field(index)).unwrap_or(0);
    let mut lists = reply.get(10..).unwrap_or_default();
    let mut take = |len: usize| {
        let (list, rest) = lists.split_at(len.min(lists.len()));
        lists = rest;
        list.to_vec()
    };
    let abandoned = take(count(7));
    let deferred = take(count(8));
    let activated_deferred = take(count(9));
    let dead_lettered = take(usize::MAX);
    StepOutcome {
        reached_from: field(0),
        serving: field(1),
        activated: u64::try_from(field(2)).unwrap_or(0),
        expired: u64::try_from(field(3)).unwrap_or(0),
        active: u64::try_from(field(4)).unwrap_or(0),
        blocked: field(5) & 1 == 1,
        gap: field(5) & 2 == 2,
        counter_missing: field(5) & 4 == 4,
        deferred_waiting: u64::try_from(field(6)).unwrap_or(0),
        abandoned,
        dead_lettered,
        deferred,
        activated_deferred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_counts_and_queue_number_lists() {
        let outcome = parse_reply(&[10, 15, 3, 1, 7, 1, 4, 2, 1, 1, 12, 3, 13, 2, 14]);
        assert_eq!(outcome.reached_from, 10);
        assert_eq!(outcome.serving, 15);
        assert_eq!(outcome.activated, 3);
        assert!(outcome.blocked);
        assert!(!outcome.gap);
        assert_eq!(outcome.deferred_waiting, 4);
        assert!(parse_reply(&[10, 10, 0, 0, 0, 2, 0, 0, 0, 0]).gap);
        assert!(!outcome.counter_missing);
        assert!(parse_reply(&[-1, -1, 0, 0, 0, 4, 0, 0, 0, 0]).counter_missing);
        assert_eq!(outcome.abandoned, vec![12, 3]);
        assert_eq!(outcome.deferred, vec![13]);
        assert_eq!(outcome.activated_deferred, vec![2]);
        assert_eq!(outcome.dead_lettered, vec![14]);
    }
}
