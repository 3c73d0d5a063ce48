//! The admin API's request bodies and their validation: every error names the field.

use chrono::{DateTime, SubsecRound, Utc};
use contract::catalog::{
    ActivationPolicy, EntryChallenge, EntryIdentity, EntryPolicy, EventId, EventState, QueueMode,
    SeatLayout,
};
use contract::draw::DrawSeed;
use contract::schedule::{DrawState, QueueOrder, Schedule};
use contract::seats::{MAX_ROWS, MAX_SEATS_PER_ROW};
use serde::Deserialize;

use crate::admission::policy_update::AdmissionUpdate;
use crate::error::WaitingRoomError;

/// `PUT /admin/events/{id}` body. Every field is optional on update.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventUpdate {
    pub name: Option<String>,
    pub state: Option<EventState>,
    pub partition: Option<i64>,
    pub activation: Option<ActivationUpdate>,
    pub seats: Option<SeatsUpdate>,
    pub entry: Option<EntryUpdate>,
    /// A whole schedule, or `null` to remove it.
    #[serde(default, deserialize_with = "present_or_null")]
    pub schedule: Option<Option<ScheduleUpdate>>,
    /// The site its active fans are admitted to, or `null` to stop admitting to one.
    #[serde(default, deserialize_with = "present_or_null")]
    pub admission: Option<Option<AdmissionUpdate>>,
}

/// A scheduled on-sale (RFC 3339 instants).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleUpdate {
    pub prequeue_opens_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    #[serde(default)]
    pub sale_ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub order: QueueOrder,
}

/// An event's schedule and draw seed after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleChange {
    pub schedule: Option<Schedule>,
    pub draw_seed: Option<DrawSeed>,
}

impl ScheduleUpdate {
    fn schedule(&self) -> Result<Schedule, WaitingRoomError> {
        if self.prequeue_opens_at > self.sale_starts_at {
            return Err(WaitingRoomError::invalid(
                "schedule.prequeue_opens_at must not be after schedule.sale_starts_at",
            ));
        }
        if self
            .sale_ends_at
            .is_some_and(|end| end <= self.sale_starts_at)
        {
            return Err(WaitingRoomError::invalid(
                "schedule.sale_ends_at must be after schedule.sale_starts_at",
            ));
        }
        // To the microsecond, as PostgreSQL keeps them: the same instants sent again
        // compare equal to the stored ones.
        let stored = |instant: DateTime<Utc>| instant.trunc_subsecs(6);
        Ok(Schedule {
            prequeue_opens_at: stored(self.prequeue_opens_at),
            sale_starts_at: stored(self.sale_starts_at),
            sale_ends_at: self.sale_ends_at.map(stored),
            order: self.order,
        })
    }
}

/// What `update` (absent: no change; `None`: remove) makes of the event's schedule at
/// `now`. An event keeps its seed once it has one (its commitment may be public, even
/// if the order went back to `fifo` for a while) and gets one from `new_seed` when it
/// first shuffles, which must be before its start. Once a shuffled sale has started
/// (or its draw is recorded), its draw is made: only its end may change.
pub fn change_schedule(
    event_id: &str,
    current: Option<Schedule>,
    current_draw: Option<DrawState>,
    update: Option<Option<&ScheduleUpdate>>,
    now: DateTime<Utc>,
    new_seed: impl FnOnce() -> DrawSeed,
) -> Result<ScheduleChange, WaitingRoomError> {
    let current_seed = current_draw.map(|draw| draw.seed);
    let Some(update) = update else {
        return Ok(ScheduleChange {
            schedule: current,
            draw_seed: current_seed,
        });
    };
    let schedule = update.map(ScheduleUpdate::schedule).transpose()?;
    let shuffling = |schedule: &Option<Schedule>| {
        schedule.is_some_and(|schedule| schedule.order == QueueOrder::ShufflePrequeue)
    };
    let drawn = current_draw.is_some_and(|draw| draw.range.is_some())
        || shuffling(&current) && current.is_some_and(|current| current.started(now));
    if drawn {
        let keeps_the_draw = |next: &Schedule| {
            current.is_some_and(|current| {
                next.order == current.order
                    && next.sale_starts_at == current.sale_starts_at
                    && next.prequeue_opens_at == current.prequeue_opens_at
            })
        };
        if !schedule.as_ref().is_some_and(keeps_the_draw) {
            return Err(WaitingRoomError::DrawAlreadyMade(event_id.to_owned()));
        }
    }
    if shuffling(&schedule)
        && !shuffling(&current)
        && schedule.is_some_and(|schedule| schedule.started(now))
    {
        return Err(WaitingRoomError::invalid(
            "schedule.sale_starts_at must be in the future for a shuffle_prequeue order: its seed's commitment is published before the start",
        ));
    }
    let draw_seed = match current_seed {
        Some(seed) => Some(seed),
        None if shuffling(&schedule) => Some(new_seed()),
        None => None,
    };
    Ok(ScheduleChange {
        schedule,
        draw_seed,
    })
}

/// Who may join; absent fields keep their value. `issuer: null` takes any trusted issuer.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryUpdate {
    identity: Option<EntryIdentity>,
    #[serde(default, deserialize_with = "present_or_null")]
    issuer: Option<Option<String>>,
    challenge: Option<EntryChallenge>,
    challenge_difficulty: Option<i64>,
}

/// The largest proof-of-work difficulty: about ten million hashes, tens of seconds in
/// a phone's browser.
const MAX_CHALLENGE_DIFFICULTY: u32 = 10_000_000;

/// Activation policy fields; absent fields keep their value. `max_active: null` means
/// no capacity limit.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationUpdate {
    batch_size: Option<i64>,
    interval_ms: Option<i64>,
    #[serde(default, deserialize_with = "present_or_null")]
    max_active: Option<Option<i64>>,
    active_ttl_seconds: Option<i64>,
    grace_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatsUpdate {
    rows: i64,
    seats_per_row: i64,
}

/// `PUT /admin/partitions` body: the tickets topic's new partition count.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionCountUpdate {
    pub partition_count: i64,
}

/// The most partitions the tickets topic may be raised to.
pub const MAX_PARTITIONS: u32 = 10_000;

impl PartitionCountUpdate {
    /// The new count: above `current` (Kafka only adds partitions), at most
    /// [`MAX_PARTITIONS`].
    pub fn count(&self, current: i32) -> Result<i32, WaitingRoomError> {
        let above = u32::try_from(current).unwrap_or(0).saturating_add(1);
        in_range(
            "partition_count",
            self.partition_count,
            above,
            MAX_PARTITIONS,
        )
        .map(|count| i32::try_from(count).unwrap_or(i32::MAX))
    }
}

/// `PUT /admin/partitions/{partition}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionUpdate {
    #[serde(default)]
    pub events: Vec<String>,
    pub mode: Option<QueueMode>,
    pub activation: Option<ActivationUpdate>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
fn present_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `value` if it lies in `min..=max` (bounds that fit `u32`), else 422 naming `field`.
fn in_range(field: &str, value: i64, min: u32, max: u32) -> Result<u32, WaitingRoomError> {
    u32::try_from(value)
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            WaitingRoomError::invalid(format!(
                "{field} must be between {min} and {max}, got {value}"
            ))
        })
}

impl ActivationUpdate {
    /// Applies the update to `current`, validating each field (errors name the field).
    pub fn apply(
        &self,
        prefix: &str,
        current: ActivationPolicy,
    ) -> Result<ActivationPolicy, WaitingRoomError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let mut policy = current;
        if let Some(value) = self.batch_size {
            policy.batch_size = in_range(&field("batch_size"), value, 1, 1_000_000)?;
        }
        if let Some(value) = self.interval_ms {
            policy.interval_ms = in_range(&field("interval_ms"), value, 10, 3_600_000)?;
        }
        if let Some(value) = self.max_active {
            policy.max_active = value
                .map(|max| in_range(&field("max_active"), max, 1, 100_000_000))
                .transpose()?;
        }
        if let Some(value) = self.active_ttl_seconds {
            policy.active_ttl_seconds = in_range(&field("active_ttl_seconds"), value, 1, 86_400)?;
        }
        if let Some(value) = self.grace_seconds {
            policy.grace_seconds = in_range(&field("grace_seconds"), value, 1, 86_400)?;
        }
        Ok(policy)
    }
}

impl EntryUpdate {
    /// Applies the update to `current`. An `enqueue_token` event needs a trusted issuer
    /// to verify its tokens, and a named issuer must be one of them.
    pub fn apply(
        &self,
        current: EntryPolicy,
        trusted_issuers: &[&str],
    ) -> Result<EntryPolicy, WaitingRoomError> {
        let mut entry = current;
        if let Some(identity) = self.identity {
            entry.identity = identity;
        }
        if let Some(issuer) = &self.issuer {
            entry.issuer.clone_from(issuer);
        }
        if let Some(challenge) = self.challenge {
            entry.challenge = challenge;
        }
        if let Some(difficulty) = self.challenge_difficulty {
            entry.challenge_difficulty = in_range(
                "entry.challenge_difficulty",
                difficulty,
                1,
                MAX_CHALLENGE_DIFFICULTY,
            )?;
        }
        if let Some(issuer) = &entry.issuer {
            if !trusted_issuers.contains(&issuer.as_str()) {
                return Err(WaitingRoomError::invalid(format!(
                    "entry.issuer '{issuer}' is not a trusted issuer of this deployment (see TRUSTED_ISSUERS_FILE)"
                )));
            }
        }
        if entry.identity == EntryIdentity::EnqueueToken && trusted_issuers.is_empty() {
            return Err(WaitingRoomError::invalid(
                "entry.identity enqueue_token needs a trusted issuer: configure TRUSTED_ISSUERS_FILE",
            ));
        }
        Ok(entry)
    }
}

impl SeatsUpdate {
    pub fn layout(&self) -> Result<SeatLayout, WaitingRoomError> {
        Ok(SeatLayout {
            rows: in_range("seats.rows", self.rows, 1, MAX_ROWS)?,
            seats_per_row: in_range(
                "seats.seats_per_row",
                self.seats_per_row,
                1,
                MAX_SEATS_PER_ROW,
            )?,
        })
    }
}

pub fn parse_event_id(raw: &str) -> Result<EventId, WaitingRoomError> {
    EventId::parse(raw).map_err(WaitingRoomError::invalid)
}

/// A partition of the tickets topic (`0..partitions`).
pub fn partition(field: &str, value: i64, partitions: i32) -> Result<i32, WaitingRoomError> {
    let last = u32::try_from(partitions - 1).unwrap_or(0);
    in_range(field, value, 0, last).map(|partition| i32::try_from(partition).unwrap_or(i32::MAX))
}

/// A display name: 1-200 characters once trimmed.
pub fn event_name(name: &str) -> Result<&str, WaitingRoomError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(WaitingRoomError::invalid("name must be 1-200 characters"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_updates_validate_and_name_the_field() {
        let update = ActivationUpdate {
            batch_size: Some(0),
            ..ActivationUpdate::default()
        };
        let error = update
            .apply("activation", ActivationPolicy::default())
            .expect_err("0 is refused");
        assert!(
            error.to_string().contains("activation.batch_size"),
            "{error}"
        );

        let update = ActivationUpdate {
            max_active: Some(None),
            interval_ms: Some(250),
            ..ActivationUpdate::default()
        };
        let current = ActivationPolicy {
            max_active: Some(5),
            ..ActivationPolicy::default()
        };
        let policy = update.apply("activation", current).expect("valid");
        assert_eq!(policy.max_active, None);
        assert_eq!(policy.interval_ms, 250);
        assert_eq!(policy.batch_size, current.batch_size);
    }

    #[test]
    fn entry_updates_need_a_trusted_issuer() {
        let token_entry = EntryUpdate {
            identity: Some(EntryIdentity::EnqueueToken),
            ..EntryUpdate::default()
        };
        let error = token_entry
            .apply(EntryPolicy::default(), &[])
            .expect_err("no issuer to verify with");
        assert!(error.to_string().contains("entry.identity"), "{error}");
        let entry = token_entry
            .apply(EntryPolicy::default(), &["https://tickets.example"])
            .expect("an issuer is trusted");
        assert_eq!(entry.identity, EntryIdentity::EnqueueToken);

        let named = EntryUpdate {
            issuer: Some(Some("https://elsewhere.example".into())),
            ..EntryUpdate::default()
        };
        let error = named
            .apply(entry.clone(), &["https://tickets.example"])
            .expect_err("an unknown issuer is refused");
        assert!(error.to_string().contains("entry.issuer"), "{error}");
        let cleared = EntryUpdate {
            issuer: Some(None),
            ..EntryUpdate::default()
        };
        let entry = cleared
            .apply(entry, &["https://tickets.example"])
            .expect("null takes any trusted issuer");
        assert_eq!(entry.issuer, None);
    }

    #[test]
    fn challenge_difficulty_is_bounded() {
        for bad in [0, 10_000_001, -5] {
            let update = EntryUpdate {
                challenge: Some(EntryChallenge::ProofOfWork),
                challenge_difficulty: Some(bad),
                ..EntryUpdate::default()
            };
            let error = update
                .apply(EntryPolicy::default(), &[])
                .expect_err("out of range");
            assert!(
                error.to_string().contains("entry.challenge_difficulty"),
                "{error}"
            );
        }
        let update = EntryUpdate {
            challenge: Some(EntryChallenge::ProofOfWork),
            challenge_difficulty: Some(1_000),
            ..EntryUpdate::default()
        };
        let entry = update.apply(EntryPolicy::default(), &[]).expect("valid");
        assert_eq!(
            (entry.challenge, entry.challenge_difficulty),
            (EntryChallenge::ProofOfWork, 1_000)
        );
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("an instant")
    }

    fn update(order: QueueOrder, starts: i64) -> ScheduleUpdate {
        ScheduleUpdate {
            prequeue_opens_at: at(starts - 600),
            sale_starts_at: at(starts),
            sale_ends_at: None,
            order,
        }
    }

    #[test]
    fn schedules_are_in_order() {
        let mut backwards = update(QueueOrder::Fifo, 0);
        backwards.prequeue_opens_at = at(1);
        let ends_first = ScheduleUpdate {
            sale_ends_at: Some(at(0)),
            ..update(QueueOrder::Fifo, 0)
        };
        for bad in [backwards, ends_first] {
            let error = change_schedule("e", None, None, Some(Some(&bad)), at(-900), || {
                DrawSeed::from_bytes([1; 32])
            })
            .expect_err("out of order");
            assert!(error.to_string().contains("schedule."), "{error}");
        }
        let started = update(QueueOrder::ShufflePrequeue, 0);
        let error = change_schedule("e", None, None, Some(Some(&started)), at(10), || {
            DrawSeed::from_bytes([1; 32])
        })
        .expect_err("a shuffle must be committed to before its start");
        assert!(
            error.to_string().contains("schedule.sale_starts_at"),
            "{error}"
        );
    }

    #[test]
    fn a_shuffle_keeps_its_seed_until_and_its_draw_after_the_start() {
        let seed = || DrawSeed::from_bytes([1; 32]);
        let shuffle = update(QueueOrder::ShufflePrequeue, 0);
        let first = change_schedule("e", None, None, Some(Some(&shuffle)), at(-900), seed)
            .expect("scheduled");
        assert_eq!(first.draw_seed, Some(seed()));
        let draw = first.draw_seed.map(|seed| DrawState { seed, range: None });

        // Moved before the start: the committed seed stays.
        let later = update(QueueOrder::ShufflePrequeue, 60);
        let moved = change_schedule(
            "e",
            first.schedule,
            draw,
            Some(Some(&later)),
            at(-10),
            || DrawSeed::from_bytes([2; 32]),
        )
        .expect("before the start");
        assert_eq!(moved.draw_seed, Some(seed()));

        // After the start: only the end may change.
        for refused in [Some(&later), Some(&update(QueueOrder::Fifo, 0)), None] {
            let error = change_schedule("e", first.schedule, draw, Some(refused), at(5), seed)
                .expect_err("drawn");
            assert!(matches!(error, WaitingRoomError::DrawAlreadyMade(_)));
        }
        let ends = ScheduleUpdate {
            sale_ends_at: Some(at(3600)),
            ..shuffle.clone()
        };
        let ended = change_schedule("e", first.schedule, draw, Some(Some(&ends)), at(5), seed)
            .expect("the end may change");
        assert_eq!(ended.schedule.and_then(|s| s.sale_ends_at), Some(at(3600)));

        // A recorded draw is made whatever the clock says (one instance's may lag).
        let recorded = first.draw_seed.map(|seed| DrawState {
            seed,
            range: Some(contract::draw::DrawRange {
                partition: 0,
                first: 0,
                end: 10,
            }),
        });
        let error = change_schedule(
            "e",
            first.schedule,
            recorded,
            Some(Some(&later)),
            at(-10),
            seed,
        )
        .expect_err("recorded");
        assert!(matches!(error, WaitingRoomError::DrawAlreadyMade(_)));

        // Back to arrival order and to shuffling again: the committed seed stays.
        let fifo_again = change_schedule(
            "e",
            first.schedule,
            draw,
            Some(Some(&update(QueueOrder::Fifo, 60))),
            at(-10),
            || DrawSeed::from_bytes([3; 32]),
        )
        .expect("before the start");
        assert_eq!(fifo_again.draw_seed, Some(seed()));

        // Arrival order has no seed; no change keeps everything.
        let fifo = change_schedule(
            "e",
            None,
            None,
            Some(Some(&update(QueueOrder::Fifo, 0))),
            at(-900),
            seed,
        )
        .expect("fifo");
        assert_eq!(fifo.draw_seed, None);
        assert_eq!(
            change_schedule("e", first.schedule, draw, None, at(5), seed).expect("kept"),
            first
        );
    }

    #[test]
    fn partition_counts_only_grow() {
        let raise = |count| PartitionCountUpdate {
            partition_count: count,
        };
        assert_eq!(raise(6).count(4).ok(), Some(6));
        for refused in [4, 3, -1, 10_001] {
            let error = raise(refused).count(4).expect_err("refused");
            assert!(error.to_string().contains("partition_count"), "{error}");
        }
    }

    #[test]
    fn partitions_are_within_the_topic() {
        assert_eq!(partition("partition", 3, 4).ok(), Some(3));
        assert!(partition("partition", 4, 4).is_err());
        assert!(partition("partition", -1, 4).is_err());
    }
}
