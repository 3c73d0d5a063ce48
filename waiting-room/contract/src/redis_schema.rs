//! The Redis schema, defined once for all services: every key, every hash field, and
//! the values a ticket's `state` field takes. Lua scripts are built from these names
//! (see [`RedisKeys::ticket_key_prefix`]), never from copies of them.
//!
//! Every key starts with the deployment's prefix (`REDIS_KEY_PREFIX`, without braces),
//! so several deployments or test runs can share one Redis. Per-queue keys embed the
//! Kafka partition number, which is the queue's identity.
//!
//! Redis Cluster: the part in braces is the key's hash tag, and keys with the same tag
//! share a slot. Everything one script or transaction touches shares one: a queue's
//! keys, its tickets' hashes and registration markers, and its share of each event's
//! counters carry the queue's tag `{qN}`; a fan's places carry the event's tag
//! `{e:ID}` (so one SCAN on one node finds an event's places); a client's rate limits
//! carry the client's `{c:IP}`. An event's counters are kept per queue (an event moved
//! to another queue leaves its issued tickets behind): readers add up its shares, in
//! its current queue and those it had before (`{p}:{e:ID}:queues`).
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:{qN}:serving` | string | serving counter: next queue number not yet reached |
//! | `{p}:{qN}:issued_max` | sorted set | one member, `max`, scored by the highest queue number issued |
//! | `{p}:{qN}:active` | sorted set | active ticket ids scored by `active_until` (ms) |
//! | `{p}:{qN}:deferred` | sorted set | [deferred](StoredState::Deferred) ticket ids scored by their deadline: `issued_at` + grace (ms) |
//! | `{p}:{qN}:decisions` | list | the queue's decision journal |
//! | `{p}:{qN}:stats` | hash | [`QueueStats`] fields |
//! | `{p}:{qN}:t:{ticket_id}` | hash | [`TicketHash`] fields |
//! | `{p}:{qN}:r:{ticket_id}` | string | the ticket's join registration happened (an hour) |
//! | `{p}:{qN}:e:{event_id}:stats` | hash | [`EventStats`] fields counted in queue N |
//! | `{p}:{e:ID}:u:{user_id}` | string | the user's ticket token for event ID (or a pending claim) |
//! | `{p}:{e:ID}:v:{issuer length}:{issuer}:{subject}` | string | the same, for a fan an enqueue token vouched for |
//! | `{p}:{e:ID}:queues` | set | the partitions event ID had before its current one (its counters have a share in each) |
//! | `{p}:{e:ID}:rl:e` | string | join rate limit of the event: joins counted in the current window |
//! | `{p}:{c:IP}:rl:ce:{event_id}`, `{p}:{c:IP}:rl:c` | string | the client's join rate limits, per event and overall |
//! | `{p}:pow:{nonce}` | string | a spent proof-of-work challenge, until it expires |
//! | `{p}:serving` | pub/sub channel | serving counter announcements (classic pub/sub: a cluster forwards it to every node) |

use uuid::Uuid;

/// The one member of a queue's `issued_max` sorted set.
pub const ISSUED_MAX_MEMBER: &str = "max";

/// How long a ticket's "registered" marker (`{p}:r:{ticket_id}`) outlives its join: a
/// repair later than this (Redis down for over an hour while the instance kept the
/// registration) could count the join twice.
pub const REGISTERED_MARKER_TTL_SECONDS: u64 = 3_600;

/// Fields of a ticket's hash (`{p}:t:{ticket_id}`).
pub struct TicketHash;

impl TicketHash {
    /// A [`StoredState`]; absent while the ticket waits for the counter.
    pub const STATE: &'static str = "state";
    /// When its holder last read its status or held its stream open (ms since the
    /// epoch). Absent until the first read: a ticket nobody received has none.
    pub const SEEN: &'static str = "seen";
    /// Its event, written when the activator defers or activates it (for the counters it
    /// moves when it settles it later, and for the slot API).
    pub const EVENT_ID: &'static str = "event_id";
    /// Its queue number, written when the activator defers or activates it (for the
    /// announcement that settles it later, and for the slot API).
    pub const QUEUE_NUMBER: &'static str = "queue_number";
    /// End of the active session (ms since the epoch), once activated.
    pub const ACTIVE_UNTIL: &'static str = "active_until";
    /// When a confirmed reservation (or the site, through the slot API) spent it (ms
    /// since the epoch).
    pub const USED_AT: &'static str = "used_at";
    /// When the site said its fan left (the slot API's release; ms since the epoch).
    pub const RELEASED_AT: &'static str = "released_at";
    /// Its queue, written with its activation (with [`Self::EVENT_ID`] and
    /// [`Self::QUEUE_NUMBER`]), so a site can free its slot knowing only the ticket id.
    pub const PARTITION: &'static str = "partition";
    /// When it was issued (ms since the epoch; its sale's start for a pre-queued one),
    /// written when the activator defers it (for the wait it records at activation).
    pub const ISSUED: &'static str = "issued";
}

/// Fields of a queue's statistics hash (`{p}:q:{partition}:stats`).
pub struct QueueStats;

impl QueueStats {
    pub const ACTIVATED: &'static str = "activated";
    pub const ABANDONED: &'static str = "abandoned";
    pub const DEAD_LETTERED: &'static str = "dead_lettered";
    /// Observed activation rate, tickets per second.
    pub const RATE: &'static str = "rate";
    /// When the rate was measured (ms since the epoch).
    pub const RATE_AT: &'static str = "rate_at";
    /// When the activator last rebuilt the queue after Redis lost it (ms since the
    /// epoch): the holders' `seen` times were lost with it, so a ticket counts as issued
    /// no earlier than this when its grace period is judged.
    pub const RECOVERED_AT: &'static str = "recovered_at";
}

/// Fields of an event's statistics hash (`{p}:e:{event_id}:stats`): what the admin
/// stats count, each written by one service.
pub struct EventStats;

impl EventStats {
    /// Tickets issued (waiting-room, at registration).
    pub const JOINED: &'static str = "joined";
    /// Tickets activated (activator).
    pub const ACTIVATED: &'static str = "activated";
    /// Tickets skipped because their holder had gone (activator).
    pub const ABANDONED: &'static str = "abandoned";
    /// Seat holds made (reservation service).
    pub const RESERVED: &'static str = "reserved";
    /// The join-to-active wait histogram (activator): field `wait_le_{bound}` counts
    /// the activations that waited at most `bound` seconds and more than the bound
    /// before it; a longer wait counts in the last bucket.
    pub const WAIT_FIELD_PREFIX: &'static str = "wait_le_";
    /// The histogram's upper bounds, in seconds.
    pub const WAIT_BOUNDS: [u32; 15] = [
        1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600, 7_200, 86_400,
    ];

    /// The histogram's field counting a wait of `waited_seconds` (the activation
    /// script buckets the same way).
    pub fn wait_field(waited_seconds: f64) -> String {
        let bound = Self::WAIT_BOUNDS
            .into_iter()
            .find(|bound| waited_seconds <= f64::from(*bound))
            .unwrap_or(Self::WAIT_BOUNDS[Self::WAIT_BOUNDS.len() - 1]);
        format!("{}{bound}", Self::WAIT_FIELD_PREFIX)
    }

    /// An event's counters: the sum of its queues' shares (each an `HGETALL` reply).
    pub fn sum(shares: impl IntoIterator<Item = Vec<(String, i64)>>) -> Vec<(String, i64)> {
        let mut total: Vec<(String, i64)> = Vec::new();
        for (field, count) in shares.into_iter().flatten() {
            match total.iter_mut().find(|(name, _)| *name == field) {
                Some((_, sum)) => *sum += count,
                None => total.push((field, count)),
            }
        }
        total
    }

    /// The upper bound (seconds) under which `percentile` % of the waits counted in
    /// `counters` (an event stats hash's fields) fall; `None` before any activation.
    pub fn wait_percentile(counters: &[(String, i64)], percentile: f64) -> Option<u32> {
        let counts: Vec<(u32, i64)> = Self::WAIT_BOUNDS
            .iter()
            .map(|bound| {
                let field = format!("{}{bound}", Self::WAIT_FIELD_PREFIX);
                let count = counters
                    .iter()
                    .find(|(name, _)| *name == field)
                    .map_or(0, |(_, count)| (*count).max(0));
                (*bound, count)
            })
            .collect();
        let total: i64 = counts.iter().map(|(_, count)| count).sum();
        if total == 0 {
            return None;
        }
        let wanted = (percentile / 100.0 * total as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        counts.into_iter().find_map(|(bound, count)| {
            seen += count;
            (seen >= wanted).then_some(bound)
        })
    }
}

/// The `state` field of a ticket's hash: its recorded outcome, or [`Deferred`].
///
/// [`Deferred`]: StoredState::Deferred
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    Active,
    Used,
    Expired,
    Abandoned,
    /// Its site said the fan left (the slot API's release).
    Released,
    /// The serving counter passed it before its holder ever read it: it takes no slot
    /// and waits, first in line, in its queue's deferred set until the holder reads it
    /// (then it is activated before anyone behind it) or its grace period since issue
    /// runs out (then it is abandoned). Not an outcome: the ticket is still waiting.
    Deferred,
}

impl StoredState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Used => "used",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
            Self::Released => "released",
            Self::Deferred => "deferred",
        }
    }

    const ALL: [Self; 6] = [
        Self::Active,
        Self::Used,
        Self::Expired,
        Self::Abandoned,
        Self::Released,
        Self::Deferred,
    ];

    /// `None` for an empty or unknown value: the ticket has no recorded state.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == raw)
    }
}

/// Builds the keys of one deployment.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    /// Keys under `prefix`, which must not hold braces (they would become the hash tag).
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        debug_assert!(!prefix.contains(['{', '}']), "braces in {prefix:?}");
        Self { prefix }
    }

    /// Pattern matching every key of this deployment (for clean-up and SCAN).
    pub fn all_keys_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    /// Queue `partition`'s key `name`, under the queue's hash tag.
    fn queue_key(&self, partition: i32, name: &str) -> String {
        format!("{}:{{q{partition}}}:{name}", self.prefix)
    }

    pub fn serving(&self, partition: i32) -> String {
        self.queue_key(partition, "serving")
    }

    /// A sorted set, not a string: `ZADD GT` raises it only when a joining ticket's number
    /// is higher, one native command where a string would need a script.
    pub fn issued_max(&self, partition: i32) -> String {
        self.queue_key(partition, "issued_max")
    }

    pub fn active_set(&self, partition: i32) -> String {
        self.queue_key(partition, "active")
    }

    /// The queue's [deferred](StoredState::Deferred) tickets, scored by the time their
    /// grace runs out, so the ones due first come first.
    pub fn deferred(&self, partition: i32) -> String {
        self.queue_key(partition, "deferred")
    }

    /// The queue's journal of decisions not yet acknowledged by the decisions topic
    /// (see [`crate::ticket_decision`]).
    pub fn decisions(&self, partition: i32) -> String {
        self.queue_key(partition, "decisions")
    }

    pub fn queue_stats(&self, partition: i32) -> String {
        self.queue_key(partition, "stats")
    }

    /// The hash of a ticket of queue `partition`.
    pub fn ticket(&self, partition: i32, ticket_id: Uuid) -> String {
        format!("{}{ticket_id}", self.ticket_key_prefix(partition))
    }

    /// What the keys of queue `partition`'s tickets start with: a script that derives
    /// ticket keys from ticket ids appends the id to this.
    pub fn ticket_key_prefix(&self, partition: i32) -> String {
        self.queue_key(partition, "t:")
    }

    /// The queues event `event_id` had before its current one (a set of partitions):
    /// its counters have a share in each.
    pub fn event_queues(&self, event_id: &str) -> String {
        format!("{}queues", self.event_prefix(event_id))
    }

    /// The place of a fan who typed `user_id` in event `event_id`.
    pub fn user_ticket(&self, event_id: &str, user_id: &str) -> String {
        format!("{}u:{user_id}", self.event_prefix(event_id))
    }

    /// What every key tagged with event `event_id` starts with.
    fn event_prefix(&self, event_id: &str) -> String {
        format!("{}:{{e:{event_id}}}:", self.prefix)
    }

    /// Glob patterns of every fan's place in the event, typed ids and verified fans
    /// (event ids hold no `:` or glob characters, so nothing of another event matches).
    /// All in the event's slot: one node holds them.
    pub fn event_place_patterns(&self, event_id: &str) -> [String; 2] {
        let prefix = self.event_prefix(event_id);
        [format!("{prefix}u:*"), format!("{prefix}v:*")]
    }

    /// The place of a fan an enqueue token vouched for. Apart from the `user_id` keys,
    /// so a typed id can never take a verified fan's place; the issuer's length keeps
    /// every (issuer, subject) pair its own key whatever either contains.
    pub fn verified_fan_ticket(&self, event_id: &str, issuer: &str, subject: &str) -> String {
        format!(
            "{}v:{}:{issuer}:{subject}",
            self.event_prefix(event_id),
            issuer.len()
        )
    }

    /// What every key tagged with client `client` (a grouped IP) starts with.
    fn client_prefix(&self, client: &str) -> String {
        format!("{}:{{c:{client}}}:", self.prefix)
    }

    /// Joins in the current window of one client into one event (the client as a
    /// grouped IP).
    pub fn join_rate_client_event(&self, client: &str, event_id: &str) -> String {
        format!("{}rl:ce:{event_id}", self.client_prefix(client))
    }

    /// Joins in the current window of one client into every event.
    pub fn join_rate_client(&self, client: &str) -> String {
        format!("{}rl:c", self.client_prefix(client))
    }

    /// Joins in the current window of every client into one event.
    pub fn join_rate_event(&self, event_id: &str) -> String {
        format!("{}rl:e", self.event_prefix(event_id))
    }

    /// Marks a ticket's join registration as done, so a repair never repeats it.
    pub fn registered(&self, partition: i32, ticket_id: Uuid) -> String {
        format!("{}{ticket_id}", self.registered_key_prefix(partition))
    }

    /// What the registration markers of queue `partition` start with (for scripts; see
    /// [`Self::ticket_key_prefix`]).
    pub fn registered_key_prefix(&self, partition: i32) -> String {
        self.queue_key(partition, "r:")
    }

    /// A spent proof-of-work challenge (by its nonce), kept until the challenge expires.
    pub fn spent_challenge(&self, nonce: &str) -> String {
        format!("{}:pow:{nonce}", self.prefix)
    }

    /// Queue `partition`'s share of event `event_id`'s counters (see
    /// [`EventStats::sum`] for the event's).
    pub fn event_stats(&self, partition: i32, event_id: &str) -> String {
        let (before, after) = self.event_stats_key_parts(partition);
        format!("{before}{event_id}{after}")
    }

    /// What queue `partition`'s share of an event's counters is made of around the
    /// event id, for scripts.
    pub fn event_stats_key_parts(&self, partition: i32) -> (String, &'static str) {
        (self.queue_key(partition, "e:"), ":stats")
    }

    pub fn serving_channel(&self) -> String {
        format!("{}:serving", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fall_in_the_first_bucket_that_holds_them_and_the_longest_in_the_last() {
        assert_eq!(EventStats::wait_field(0.0), "wait_le_1");
        assert_eq!(EventStats::wait_field(1.0), "wait_le_1");
        assert_eq!(EventStats::wait_field(1.5), "wait_le_2");
        assert_eq!(EventStats::wait_field(700.0), "wait_le_1200");
        assert_eq!(EventStats::wait_field(1e9), "wait_le_86400");
    }

    #[test]
    fn wait_percentiles_are_bucket_upper_bounds() {
        let counters = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
            pairs
                .iter()
                .map(|(name, count)| ((*name).to_owned(), *count))
                .collect()
        };
        assert_eq!(
            EventStats::wait_percentile(&counters(&[("joined", 4)]), 50.0),
            None
        );
        let waits = counters(&[
            ("wait_le_1", 50),
            ("wait_le_10", 45),
            ("wait_le_600", 5),
            ("joined", 100),
        ]);
        assert_eq!(EventStats::wait_percentile(&waits, 50.0), Some(1));
        assert_eq!(EventStats::wait_percentile(&waits, 51.0), Some(10));
        assert_eq!(EventStats::wait_percentile(&waits, 95.0), Some(10));
        assert_eq!(EventStats::wait_percentile(&waits, 96.0), Some(600));
        assert_eq!(EventStats::wait_percentile(&waits, 100.0), Some(600));
    }

    #[test]
    fn every_key_is_under_the_prefix() {
        let keys = RedisKeys::new("test-1");
        let ticket = Uuid::nil();
        for key in [
            keys.serving(3),
            keys.issued_max(3),
            keys.active_set(3),
            keys.deferred(3),
            keys.queue_stats(3),
            keys.ticket(3, ticket),
            keys.user_ticket("e", "u"),
            keys.event_stats(3, "e"),
            keys.serving_channel(),
        ] {
            assert!(key.starts_with("test-1:"), "{key}");
        }
        assert_eq!(keys.serving(3), "test-1:{q3}:serving");
        assert_eq!(keys.all_keys_pattern(), "test-1:*");
    }

    /// The hash tag: the text between the first `{` and the next `}` (Redis Cluster).
    fn tag(key: &str) -> &str {
        let open = key.find('{').expect("a tag");
        let close = key[open..].find('}').expect("a closed tag");
        &key[open + 1..open + close]
    }

    #[test]
    fn what_one_script_touches_shares_the_queue_s_hash_tag() {
        let keys = RedisKeys::new("wr");
        let ticket = Uuid::now_v7();
        let (stats_before, _) = keys.event_stats_key_parts(7);
        for key in [
            keys.serving(7),
            keys.issued_max(7),
            keys.active_set(7),
            keys.deferred(7),
            keys.decisions(7),
            keys.queue_stats(7),
            keys.ticket(7, ticket),
            keys.ticket_key_prefix(7),
            keys.registered(7, ticket),
            keys.registered_key_prefix(7),
            keys.event_stats(7, "concert"),
            stats_before,
        ] {
            assert_eq!(tag(&key), "q7", "{key}");
        }
        assert_ne!(tag(&keys.serving(8)), "q7");
        // A fan's places and the event's limit: the event's slot; a client's limits: its own.
        for key in [
            keys.user_ticket("concert", "u{1}"),
            keys.verified_fan_ticket("concert", "https://iss", "sub"),
            keys.join_rate_event("concert"),
        ] {
            assert_eq!(tag(&key), "e:concert", "{key}");
        }
        for pattern in keys.event_place_patterns("concert") {
            assert_eq!(tag(&pattern), "e:concert", "{pattern}");
        }
        for key in [
            keys.join_rate_client("10.0.0.1"),
            keys.join_rate_client_event("10.0.0.1", "concert"),
        ] {
            assert_eq!(tag(&key), "c:10.0.0.1", "{key}");
        }
    }

    #[test]
    fn script_key_parts_make_the_same_keys() {
        let keys = RedisKeys::new("wr");
        let ticket = Uuid::now_v7();
        assert_eq!(
            format!("{}{ticket}", keys.ticket_key_prefix(2)),
            keys.ticket(2, ticket)
        );
        let (before, after) = keys.event_stats_key_parts(2);
        assert_eq!(
            format!("{before}concert{after}"),
            keys.event_stats(2, "concert")
        );
        assert_eq!(keys.event_stats(2, "concert"), "wr:{q2}:e:concert:stats");
    }

    #[test]
    fn an_event_s_counters_are_the_sum_of_its_queues_shares() {
        let share = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
            pairs
                .iter()
                .map(|(name, count)| ((*name).to_owned(), *count))
                .collect()
        };
        let total = EventStats::sum([
            share(&[("joined", 3), ("activated", 2)]),
            share(&[]),
            share(&[("joined", 4), ("wait_le_1", 1)]),
        ]);
        assert_eq!(
            total,
            share(&[("joined", 7), ("activated", 2), ("wait_le_1", 1)])
        );
    }

    #[test]
    fn stored_states_round_trip_and_unknown_values_are_none() {
        for state in StoredState::ALL {
            assert_eq!(StoredState::parse(state.as_str()), Some(state));
        }
        assert_eq!(StoredState::parse(""), None);
        assert_eq!(StoredState::parse("waiting"), None);
    }
}
