//! Events and queues: the configuration operators set, as typed values.
//!
//! PostgreSQL holds it ([`Catalog::load`]); every service keeps an in-memory snapshot
//! (see [`crate::live_catalog`]) so that hot paths never query the database.
//!
//! A queue is one partition of the tickets topic. The activation policy and the
//! activation mode belong to the queue: events sharing a partition share them.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::draw::{DrawRange, DrawSeed};
use crate::schedule::{self, DrawState, SalePhase, Schedule, Standing};

/// An event id: 1–64 characters from `A-Z a-z 0-9 . _ -`, not only dots (safe in URLs,
/// paths, Redis keys and Kafka keys: `.` and `..` would name a directory).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
            && raw.bytes().any(|byte| byte != b'.');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err("event_id must be 1-64 characters from A-Z a-z 0-9 . _ -, not only dots".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What an operator says about an event (the `events.state` column).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EventState {
    /// Joins accepted, the queue activates in batches.
    Open,
    /// Joins accepted, the queue activates nothing.
    Paused,
    /// Joins refused; the existing line keeps draining.
    Closed,
    /// Joins accepted, tickets activate on arrival.
    Passthrough,
}

impl EventState {
    /// The queue mode this event state sets; `closed` leaves the queue as it is.
    pub fn queue_mode(self) -> Option<QueueMode> {
        match self {
            Self::Open => Some(QueueMode::Open),
            Self::Paused => Some(QueueMode::Paused),
            Self::Passthrough => Some(QueueMode::Passthrough),
            Self::Closed => None,
        }
    }
}

/// How a queue activates (the `queues.mode` column).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum QueueMode {
    Open,
    Paused,
    Passthrough,
}

/// Who may join an event (the `events.entry_identity` column).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EntryIdentity {
    /// Anyone; a `user_id` keeps one place per id but never returns the ticket again.
    #[default]
    Anonymous,
    /// Only fans the ticketing site vouches for with a signed enqueue token; the token's
    /// subject is the fan.
    EnqueueToken,
}

/// What a join must prove besides who it is (the `events.entry_challenge` column).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EntryChallenge {
    #[default]
    None,
    /// A solved proof-of-work challenge, once per join.
    ProofOfWork,
}

/// How fans get into an event's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryPolicy {
    pub identity: EntryIdentity,
    /// The one trusted issuer whose tokens this event takes; `None`: any trusted issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub challenge: EntryChallenge,
    /// The largest counter a proof of work may need (about that many hashes at most).
    pub challenge_difficulty: u32,
}

impl EntryPolicy {
    pub const DEFAULT_CHALLENGE_DIFFICULTY: u32 = 50_000;
}

impl Default for EntryPolicy {
    fn default() -> Self {
        Self {
            identity: EntryIdentity::default(),
            issuer: None,
            challenge: EntryChallenge::default(),
            challenge_difficulty: Self::DEFAULT_CHALLENGE_DIFFICULTY,
        }
    }
}

/// Where the admission token travels when the fan's browser is sent to the site (the
/// `events.admission_token_in` column).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum TokenPlacement {
    /// `#admission_token=…`: never sent to a server, so never in an access log; the
    /// site's page script reads it.
    #[default]
    Fragment,
    /// `?admission_token=…`: the site's server (or its edge) reads it directly.
    Query,
}

/// The site an event admits its active fans to (see docs/integration.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdmissionPolicy {
    /// The admission token's `aud`: the site that checks it.
    pub audience: String,
    /// Where an active fan's browser is sent, with the token added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    pub token_in: TokenPlacement,
}

impl AdmissionPolicy {
    /// `return_url` with `token` in its query or fragment.
    pub fn return_url_with(&self, token: &str) -> Option<String> {
        let url = self.return_url.as_deref()?;
        Some(match self.token_in {
            TokenPlacement::Fragment => {
                let url = url.split('#').next().unwrap_or(url);
                format!("{url}#admission_token={token}")
            }
            TokenPlacement::Query => {
                let (base, fragment) = url
                    .split_once('#')
                    .map_or((url, None), |(b, f)| (b, Some(f)));
                let separator = if base.contains('?') { '&' } else { '?' };
                let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
                format!("{base}{separator}admission_token={token}{fragment}")
            }
        })
    }
}

/// N every M, at most K active, each for T; abandoned after G unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationPolicy {
    pub batch_size: u32,
    pub interval_ms: u32,
    pub max_active: Option<u32>,
    pub active_ttl_seconds: u32,
    pub grace_seconds: u32,
}

impl Default for ActivationPolicy {
    fn default() -> Self {
        Self {
            batch_size: 100,
            interval_ms: 1000,
            max_active: None,
            active_ttl_seconds: 600,
            grace_seconds: 60,
        }
    }
}

/// A seat layout: rows lettered A, B, …, seats numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatLayout {
    pub rows: u32,
    pub seats_per_row: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventConfig {
    pub event_id: EventId,
    pub name: String,
    pub state: EventState,
    /// Its queue; `None` once the event closed, drained and gave the partition back.
    pub partition: Option<i32>,
    pub seats: Option<SeatLayout>,
    pub entry: EntryPolicy,
    pub schedule: Option<Schedule>,
    /// The site its active fans are admitted to, if it protects one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionPolicy>,
    /// The draw of a `shuffle_prequeue` schedule (its seed is never serialized).
    #[serde(skip)]
    pub draw: Option<DrawState>,
}

impl EventConfig {
    /// The phase of its schedule at `now`; an unscheduled event is on sale.
    pub fn phase(&self, now: DateTime<Utc>) -> SalePhase {
        self.schedule
            .map_or(SalePhase::OnSale, |schedule| schedule.phase(now))
    }

    /// Where the ticket at `offset` of `partition` stands at `now` (see
    /// [`schedule::standing`]).
    pub fn standing(&self, partition: i32, offset: i64, now: DateTime<Utc>) -> Standing {
        schedule::standing(
            self.schedule.as_ref(),
            self.draw.as_ref(),
            partition,
            offset,
            now,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueConfig {
    pub partition: i32,
    pub mode: QueueMode,
    pub activation: ActivationPolicy,
}

impl QueueConfig {
    /// The configuration of a queue nobody has configured yet.
    pub fn unconfigured(partition: i32) -> Self {
        Self {
            partition,
            mode: QueueMode::Open,
            activation: ActivationPolicy::default(),
        }
    }
}

/// A consistent snapshot of every event and queue.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    events: HashMap<String, EventConfig>,
    queues: HashMap<i32, QueueConfig>,
    /// Partition counts raised online, by topic.
    topic_partitions: HashMap<String, i32>,
    /// False until the first successful load: callers tell "unknown event" from
    /// "configuration not loaded yet".
    pub loaded: bool,
}

impl Catalog {
    pub fn event(&self, event_id: &str) -> Option<&EventConfig> {
        self.events.get(event_id)
    }

    pub fn events(&self) -> impl Iterator<Item = &EventConfig> {
        self.events.values()
    }

    /// The queue's configuration; unconfigured partitions get the defaults.
    pub fn queue(&self, partition: i32) -> QueueConfig {
        self.queues
            .get(&partition)
            .cloned()
            .unwrap_or_else(|| QueueConfig::unconfigured(partition))
    }

    /// How many partitions `topic` has: the count raised online, or `configured` (the
    /// count it was created with) before any raise.
    pub fn partition_count(&self, topic: &str, configured: i32) -> i32 {
        self.topic_partitions
            .get(topic)
            .map_or(configured, |raised| (*raised).max(configured))
    }

    /// Events mapped to `partition`, sorted by id.
    pub fn events_on(&self, partition: i32) -> Vec<&EventConfig> {
        let mut events: Vec<&EventConfig> = self
            .events
            .values()
            .filter(|event| event.partition == Some(partition))
            .collect();
        events.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
        events
    }

    pub async fn load(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let queue_rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT partition, mode, batch_size, interval_ms, max_active, active_ttl_seconds, grace_seconds FROM queues",
        )
        .fetch_all(pool)
        .await?;
        let event_rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT event_id, name, state, partition, {} FROM events",
            EventColumns::LIST
        ))
        .fetch_all(pool)
        .await?;
        let topic_partitions: Vec<(String, i32)> =
            sqlx::query_as("SELECT topic, partitions FROM topic_partitions")
                .fetch_all(pool)
                .await?;
        let queues = queue_rows
            .into_iter()
            .map(|row| (row.partition, row.into_config()))
            .collect();
        let events = event_rows
            .into_iter()
            .filter_map(EventRow::into_config)
            .map(|event| (event.event_id.as_str().to_owned(), event))
            .collect();
        Ok(Self {
            events,
            queues,
            topic_partitions: topic_partitions.into_iter().collect(),
            loaded: true,
        })
    }
}

/// The activation policy's columns of the `queues` table, as stored.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct PolicyColumns {
    pub batch_size: i32,
    pub interval_ms: i32,
    pub max_active: Option<i32>,
    pub active_ttl_seconds: i32,
    pub grace_seconds: i32,
}

impl From<PolicyColumns> for ActivationPolicy {
    fn from(row: PolicyColumns) -> Self {
        // The table's CHECK constraints guarantee positive values.
        let positive = |value: i32| u32::try_from(value).unwrap_or(1);
        Self {
            batch_size: positive(row.batch_size),
            interval_ms: positive(row.interval_ms),
            max_active: row.max_active.map(positive),
            active_ttl_seconds: positive(row.active_ttl_seconds),
            grace_seconds: positive(row.grace_seconds),
        }
    }
}

impl From<ActivationPolicy> for PolicyColumns {
    fn from(policy: ActivationPolicy) -> Self {
        // Policies are validated far below i32::MAX (see the admin API's ranges).
        let column = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        Self {
            batch_size: column(policy.batch_size),
            interval_ms: column(policy.interval_ms),
            max_active: policy.max_active.map(column),
            active_ttl_seconds: column(policy.active_ttl_seconds),
            grace_seconds: column(policy.grace_seconds),
        }
    }
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    partition: i32,
    mode: QueueMode,
    #[sqlx(flatten)]
    policy: PolicyColumns,
}

impl QueueRow {
    fn into_config(self) -> QueueConfig {
        QueueConfig {
            partition: self.partition,
            mode: self.mode,
            activation: self.policy.into(),
        }
    }
}

/// The seat-layout, entry and schedule columns of the `events` table, as stored (read
/// by the catalog and by the admin API's changes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventColumns {
    pub seat_rows: Option<i32>,
    pub seats_per_row: Option<i32>,
    pub entry_identity: EntryIdentity,
    pub entry_issuer: Option<String>,
    pub entry_challenge: EntryChallenge,
    pub entry_challenge_difficulty: i32,
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    pub sale_starts_at: Option<DateTime<Utc>>,
    pub sale_ends_at: Option<DateTime<Utc>>,
    pub queue_order: schedule::QueueOrder,
    pub draw_seed: Option<Vec<u8>>,
    pub draw_partition: Option<i32>,
    pub draw_first_offset: Option<i64>,
    pub draw_end_offset: Option<i64>,
    pub admission_audience: Option<String>,
    pub admission_return_url: Option<String>,
    pub admission_token_in: TokenPlacement,
}

impl EventColumns {
    /// The columns, in a `SELECT` list.
    pub const LIST: &'static str = "seat_rows, seats_per_row, entry_identity, entry_issuer, \
        entry_challenge, entry_challenge_difficulty, prequeue_opens_at, sale_starts_at, \
        sale_ends_at, queue_order, draw_seed, draw_partition, draw_first_offset, draw_end_offset, \
        admission_audience, admission_return_url, admission_token_in";

    /// The schedule, if the event has one (the table's CHECKs keep it complete).
    pub fn schedule(&self) -> Option<Schedule> {
        Some(Schedule {
            prequeue_opens_at: self.prequeue_opens_at?,
            sale_starts_at: self.sale_starts_at?,
            sale_ends_at: self.sale_ends_at,
            order: self.queue_order,
        })
    }

    /// The draw of a shuffled pre-queue: its seed, and its range once fixed.
    pub fn draw(&self) -> Option<DrawState> {
        self.draw_record()
            .filter(|_| self.queue_order == schedule::QueueOrder::ShufflePrequeue)
    }

    /// The draw's columns whatever the order: an event keeps its seed once it has one.
    pub fn draw_record(&self) -> Option<DrawState> {
        Some(DrawState {
            seed: DrawSeed::from_slice(self.draw_seed.as_deref()?)?,
            range: DrawRange::from_columns(
                self.draw_partition,
                self.draw_first_offset,
                self.draw_end_offset,
            ),
        })
    }

    /// The seat layout, if the event has one (the table's CHECKs keep both positive).
    pub fn layout(&self) -> Option<SeatLayout> {
        let (rows, per_row) = self.seat_rows.zip(self.seats_per_row)?;
        Some(SeatLayout {
            rows: u32::try_from(rows).ok()?,
            seats_per_row: u32::try_from(per_row).ok()?,
        })
    }

    /// The site its active fans are admitted to (a return URL needs an audience: the
    /// table's CHECK).
    pub fn admission(&self) -> Option<AdmissionPolicy> {
        Some(AdmissionPolicy {
            audience: self.admission_audience.clone()?,
            return_url: self.admission_return_url.clone(),
            token_in: self.admission_token_in,
        })
    }

    pub fn entry(self) -> EntryPolicy {
        EntryPolicy {
            identity: self.entry_identity,
            issuer: self.entry_issuer,
            challenge: self.entry_challenge,
            // The column's CHECK keeps it positive.
            challenge_difficulty: u32::try_from(self.entry_challenge_difficulty).unwrap_or(1),
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: String,
    name: String,
    state: EventState,
    partition: Option<i32>,
    #[sqlx(flatten)]
    columns: EventColumns,
}

impl EventRow {
    fn into_config(self) -> Option<EventConfig> {
        Some(EventConfig {
            event_id: EventId::parse(&self.event_id).ok()?,
            name: self.name,
            state: self.state,
            partition: self.partition,
            seats: self.columns.layout(),
            schedule: self.columns.schedule(),
            draw: self.columns.draw(),
            admission: self.columns.admission(),
            entry: self.columns.entry(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_url_and_key_safe() {
        assert!(EventId::parse("concert-2026.paris_1").is_ok());
        assert!(
            EventId::parse(".hidden").is_ok(),
            "a dot among other characters is fine"
        );
        for bad in [
            "",
            "a b",
            "a/b",
            "a:b",
            "ü",
            &"x".repeat(65),
            ".",
            "..",
            "...",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn closed_leaves_the_queue_mode_alone() {
        assert_eq!(EventState::Closed.queue_mode(), None);
        assert_eq!(EventState::Paused.queue_mode(), Some(QueueMode::Paused));
        for (state, name) in [
            (EventState::Open, "open"),
            (EventState::Paused, "paused"),
            (EventState::Closed, "closed"),
            (EventState::Passthrough, "passthrough"),
        ] {
            let json = serde_json::json!(name);
            assert_eq!(serde_json::to_value(state).expect("serializes"), json);
            assert_eq!(serde_json::from_value::<EventState>(json).ok(), Some(state));
        }
        assert!(serde_json::from_value::<EventState>(serde_json::json!("sleeping")).is_err());
    }

    #[test]
    fn the_admission_token_goes_into_the_return_url_where_configured() {
        let policy = |return_url: &str, token_in| AdmissionPolicy {
            audience: "https://shop.example".into(),
            return_url: Some(return_url.into()),
            token_in,
        };
        let cases = [
            (
                "https://shop.example/buy",
                TokenPlacement::Fragment,
                "https://shop.example/buy#admission_token=T",
            ),
            (
                "https://shop.example/buy#old",
                TokenPlacement::Fragment,
                "https://shop.example/buy#admission_token=T",
            ),
            (
                "https://shop.example/buy",
                TokenPlacement::Query,
                "https://shop.example/buy?admission_token=T",
            ),
            (
                "https://shop.example/buy?show=1#top",
                TokenPlacement::Query,
                "https://shop.example/buy?show=1&admission_token=T#top",
            ),
        ];
        for (url, token_in, expected) in cases {
            assert_eq!(
                policy(url, token_in).return_url_with("T").as_deref(),
                Some(expected)
            );
        }
        let no_url = AdmissionPolicy {
            return_url: None,
            ..policy("x", TokenPlacement::Query)
        };
        assert_eq!(no_url.return_url_with("T"), None);
    }

    #[test]
    fn policies_survive_their_columns() {
        let policy = ActivationPolicy {
            max_active: Some(7),
            ..ActivationPolicy::default()
        };
        assert_eq!(ActivationPolicy::from(PolicyColumns::from(policy)), policy);
    }
}
