//! The admin API's request bodies and their validation: every error names the field.

use contract::catalog::{ActivationPolicy, EventId, EventState, QueueMode, SeatLayout};
use contract::seats::{MAX_ROWS, MAX_SEATS_PER_ROW};
use serde::Deserialize;

use crate::error::WaitingRoomError;

/// `PUT /admin/events/{id}` body. Every field is optional on update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventUpdate {
    pub name: Option<String>,
    pub state: Option<EventState>,
    pub partition: Option<i64>,
    pub activation: Option<ActivationUpdate>,
    pub seats: Option<SeatsUpdate>,
}

/// Activation policy fields; absent fields keep their value. `max_active: null` means
/// no capacity limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationUpdate {
    batch_size: Option<i64>,
    interval_ms: Option<i64>,
    #[serde(default, deserialize_with = "present_or_null")]
    max_active: Option<Option<i64>>,
    active_ttl_seconds: Option<i64>,
    grace_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatsUpdate {
    rows: i64,
    seats_per_row: i64,
}

/// `PUT /admin/partitions/{partition}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionUpdate {
    #[serde(default)]
    pub events: Vec<String>,
    pub mode: Option<QueueMode>,
    pub activation: Option<ActivationUpdate>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
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
    fn partitions_are_within_the_topic() {
        assert_eq!(partition("partition", 3, 4).ok(), Some(3));
        assert!(partition("partition", 4, 4).is_err());
        assert!(partition("partition", -1, 4).is_err());
    }
}
