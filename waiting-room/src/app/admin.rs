//! The operators' API under `/admin`, behind `Authorization: Bearer <admin token>`.
//!
//! Events and queues live in PostgreSQL. The activation policy and mode belong to the
//! queue (partition): `PUT /admin/events/{id}` with `activation` or a state of `open`,
//! `paused` or `passthrough` changes the queue of that event, and so every event sharing
//! the queue (all events, in global mode). `closed` is per event: it refuses the event's
//! joins while its queue keeps draining. Every change reloads this instance's catalog at
//! once and the others' through LISTEN/NOTIFY.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};

use super::config::PartitionMode;
use super::state::SharedState;
use super::stats;
use crate::bearer::bearer_token;
use crate::catalog::{
    ActivationPolicy, Catalog, EventId, EventState, QueueConfig, QueueMode, SeatLayout,
};
use crate::error::{ApiError, ApiJson};

/// Refuses every admin request without the right bearer token.
pub async fn require_admin(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer_token(request.headers()) {
        Some(token) if constant_time_eq(token, &state.admin_token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Compares digests so the time taken does not depend on where the strings differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

/// `PUT /admin/events/{id}` body. Every field is optional on update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventUpdate {
    name: Option<String>,
    state: Option<String>,
    partition: Option<i64>,
    activation: Option<ActivationUpdate>,
    seats: Option<SeatsUpdate>,
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
    events: Vec<String>,
    mode: Option<String>,
    activation: Option<ActivationUpdate>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i32, ApiError> {
    if (min..=max).contains(&value) {
        Ok(i32::try_from(value).expect("range fits i32"))
    } else {
        Err(ApiError::InvalidRequest(format!(
            "{field} must be between {min} and {max}, got {value}"
        )))
    }
}

impl ActivationUpdate {
    /// Applies the update to `current`, validating each field (errors name the field).
    fn apply(&self, prefix: &str, current: ActivationPolicy) -> Result<ActivationPolicy, ApiError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let positive = |value: i32| u32::try_from(value).expect("validated positive");
        let mut policy = current;
        if let Some(value) = self.batch_size {
            policy.batch_size = positive(in_range(&field("batch_size"), value, 1, 1_000_000)?);
        }
        if let Some(value) = self.interval_ms {
            policy.interval_ms = positive(in_range(&field("interval_ms"), value, 10, 3_600_000)?);
        }
        if let Some(value) = self.max_active {
            policy.max_active = value
                .map(|max| in_range(&field("max_active"), max, 1, 100_000_000).map(positive))
                .transpose()?;
        }
        if let Some(value) = self.active_ttl_seconds {
            policy.active_ttl_seconds =
                positive(in_range(&field("active_ttl_seconds"), value, 1, 86_400)?);
        }
        if let Some(value) = self.grace_seconds {
            policy.grace_seconds = positive(in_range(&field("grace_seconds"), value, 1, 86_400)?);
        }
        Ok(policy)
    }
}

fn parse_event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(ApiError::InvalidRequest)
}

fn check_partition(state: &SharedState, field: &str, value: i64) -> Result<i32, ApiError> {
    in_range(field, value, 0, i64::from(state.partitions) - 1)
}

pub async fn put_event(
    State(state): State<SharedState>,
    Path(raw_event_id): Path<String>,
    ApiJson(update): ApiJson<EventUpdate>,
) -> Result<Response, ApiError> {
    let event_id = parse_event_id(&raw_event_id)?;
    let name = update.name.as_deref().map(str::trim);
    if let Some(name) = name {
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::InvalidRequest(
                "name must be 1-200 characters".into(),
            ));
        }
    }
    let new_state = update
        .state
        .as_deref()
        .map(|raw| {
            EventState::parse(raw).ok_or_else(|| {
                ApiError::InvalidRequest(
                    "state must be one of open, paused, closed, passthrough".into(),
                )
            })
        })
        .transpose()?;
    let requested_partition = update
        .partition
        .map(|value| check_partition(&state, "partition", value))
        .transpose()?;
    let seats = update
        .seats
        .as_ref()
        .map(|seats| -> Result<SeatLayout, ApiError> {
            Ok(SeatLayout {
                rows: u32::try_from(in_range("seats.rows", seats.rows, 1, 702)?).expect("positive"),
                seats_per_row: u32::try_from(in_range(
                    "seats.seats_per_row",
                    seats.seats_per_row,
                    1,
                    1_000,
                )?)
                .expect("positive"),
            })
        })
        .transpose()?;

    let mut transaction = state.postgres.begin().await.map_err(ApiError::internal)?;
    // One writer at a time picks partitions, so two new events never take the same free one.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('waiting-room.partition-assignment'))")
        .execute(&mut *transaction)
        .await
        .map_err(ApiError::internal)?;
    let existing: Option<(i32, Option<i32>, Option<i32>)> = sqlx::query_as(
        "SELECT partition, seat_rows, seats_per_row FROM events WHERE event_id = $1 FOR UPDATE",
    )
    .bind(event_id.as_str())
    .fetch_optional(&mut *transaction)
    .await
    .map_err(ApiError::internal)?;
    let partition = match (requested_partition, existing) {
        (Some(partition), _) => partition,
        (None, Some((partition, _, _))) => partition,
        (None, None) => default_partition(&state, &mut transaction).await?,
    };
    ensure_queue(&mut transaction, partition).await?;
    if let Some(activation) = &update.activation {
        let current = load_policy(&mut transaction, partition)
            .await?
            .unwrap_or_default();
        let policy = activation.apply("activation", current)?;
        store_policy(&mut transaction, partition, &policy).await?;
    }
    if let Some(mode) = new_state.and_then(EventState::queue_mode) {
        store_mode(&mut transaction, partition, mode).await?;
    }
    sqlx::query(
        "INSERT INTO events (event_id, name, state, partition, seat_rows, seats_per_row)
         VALUES ($1, COALESCE($2, $1), COALESCE($3, 'open'), $4, $5, $6)
         ON CONFLICT (event_id) DO UPDATE SET
             name = COALESCE($2, events.name),
             state = COALESCE($3, events.state),
             partition = $4,
             seat_rows = CASE WHEN $7 THEN $5 ELSE events.seat_rows END,
             seats_per_row = CASE WHEN $7 THEN $6 ELSE events.seats_per_row END,
             updated_at = now()",
    )
    .bind(event_id.as_str())
    .bind(name)
    .bind(new_state.map(EventState::as_str))
    .bind(partition)
    .bind(seats.map(|layout| i64::from(layout.rows)))
    .bind(seats.map(|layout| i64::from(layout.seats_per_row)))
    .bind(seats.is_some())
    .execute(&mut *transaction)
    .await
    .map_err(ApiError::internal)?;
    if let Some(layout) = seats {
        let current = existing.and_then(|(_, rows, per_row)| Some((rows?, per_row?)));
        if current != Some((layout.rows as i32, layout.seats_per_row as i32)) {
            crate::seats::replace_layout(&mut transaction, event_id.as_str(), layout).await?;
        }
    }
    transaction.commit().await.map_err(ApiError::internal)?;
    state.catalog.reload().await.map_err(ApiError::internal)?;

    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let view = event_view(&state, &state.catalog.current(), event_id.as_str()).await?;
    Ok((status, Json(view)).into_response())
}

pub async fn get_event(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    event_view(&state, &state.catalog.current(), &event_id)
        .await
        .map(Json)
}

/// Configuration plus live statistics of one event.
async fn event_view(
    state: &SharedState,
    catalog: &Catalog,
    event_id: &str,
) -> Result<Value, ApiError> {
    let event = catalog
        .event(event_id)
        .ok_or_else(|| ApiError::EventNotFound(event_id.to_owned()))?;
    let queue = catalog.queue(event.partition);
    let stats = stats::event_stats(state, event, &queue).await?;
    let shared_with: Vec<&str> = catalog
        .events_on(event.partition)
        .into_iter()
        .map(|other| other.event_id.as_str())
        .filter(|other| *other != event_id)
        .collect();
    let mut view = json!({
        "event_id": event.event_id,
        "name": event.name,
        "state": event.state,
        "partition": event.partition,
        "queue_mode": queue.mode,
        "activation": queue.activation,
        "seats": event.seats,
        "shared_queue_with": shared_with,
    });
    if let (Some(view), Value::Object(stats)) = (view.as_object_mut(), stats) {
        view.extend(stats);
    }
    Ok(view)
}

async fn default_partition(
    state: &SharedState,
    transaction: &mut Transaction<'_, Postgres>,
) -> Result<i32, ApiError> {
    if state.partition_mode == PartitionMode::Global {
        return Ok(0);
    }
    let free: Option<(i32,)> = sqlx::query_as(
        "SELECT p FROM generate_series(0, $1 - 1) AS p
         WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.partition = p)
         ORDER BY p LIMIT 1",
    )
    .bind(state.partitions)
    .fetch_optional(&mut **transaction)
    .await
    .map_err(ApiError::internal)?;
    free.map(|(partition,)| partition)
        .ok_or(ApiError::NoFreePartition {
            partitions: state.partitions,
        })
}

async fn ensure_queue(
    transaction: &mut Transaction<'_, Postgres>,
    partition: i32,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO queues (partition) VALUES ($1) ON CONFLICT (partition) DO NOTHING")
        .bind(partition)
        .execute(&mut **transaction)
        .await
        .map(drop)
        .map_err(ApiError::internal)
}

async fn load_policy(
    transaction: &mut Transaction<'_, Postgres>,
    partition: i32,
) -> Result<Option<ActivationPolicy>, ApiError> {
    let row: Option<(i32, i32, Option<i32>, i32, i32)> = sqlx::query_as(
        "SELECT batch_size, interval_ms, max_active, active_ttl_seconds, grace_seconds FROM queues WHERE partition = $1 FOR UPDATE",
    )
    .bind(partition)
    .fetch_optional(&mut **transaction)
    .await
    .map_err(ApiError::internal)?;
    let positive = |value: i32| u32::try_from(value).unwrap_or(1);
    Ok(row.map(
        |(batch_size, interval_ms, max_active, active_ttl_seconds, grace_seconds)| {
            ActivationPolicy {
                batch_size: positive(batch_size),
                interval_ms: positive(interval_ms),
                max_active: max_active.map(positive),
                active_ttl_seconds: positive(active_ttl_seconds),
                grace_seconds: positive(grace_seconds),
            }
        },
    ))
}

async fn store_mode(
    transaction: &mut Transaction<'_, Postgres>,
    partition: i32,
    mode: QueueMode,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE queues SET mode = $2, updated_at = now() WHERE partition = $1")
        .bind(partition)
        .bind(mode.as_str())
        .execute(&mut **transaction)
        .await
        .map(drop)
        .map_err(ApiError::internal)
}

async fn store_policy(
    transaction: &mut Transaction<'_, Postgres>,
    partition: i32,
    policy: &ActivationPolicy,
) -> Result<(), ApiError> {
    let signed = |value: u32| i64::from(value);
    sqlx::query(
        "UPDATE queues SET batch_size = $2, interval_ms = $3, max_active = $4,
             active_ttl_seconds = $5, grace_seconds = $6, updated_at = now()
         WHERE partition = $1",
    )
    .bind(partition)
    .bind(signed(policy.batch_size))
    .bind(signed(policy.interval_ms))
    .bind(policy.max_active.map(signed))
    .bind(signed(policy.active_ttl_seconds))
    .bind(signed(policy.grace_seconds))
    .execute(&mut **transaction)
    .await
    .map(drop)
    .map_err(ApiError::internal)
}

fn partition_view(catalog: &Catalog, queue: &QueueConfig) -> Value {
    let events: Vec<&str> = catalog
        .events_on(queue.partition)
        .into_iter()
        .map(|event| event.event_id.as_str())
        .collect();
    json!({
        "partition": queue.partition,
        "mode": queue.mode,
        "activation": queue.activation,
        "events": events,
    })
}

pub async fn list_partitions(State(state): State<SharedState>) -> Json<Value> {
    let catalog = state.catalog.current();
    let partitions: Vec<Value> = (0..state.partitions)
        .map(|partition| partition_view(&catalog, &catalog.queue(partition)))
        .collect();
    Json(json!({
        "default_mode": state.partition_mode.as_str(),
        "partition_count": state.partitions,
        "partitions": partitions,
    }))
}

/// Maps the listed events to the partition (their new tickets go there; tickets already
/// issued stay in their old queue) and updates the queue's mode and policy.
pub async fn put_partition(
    State(state): State<SharedState>,
    Path(raw_partition): Path<String>,
    ApiJson(update): ApiJson<PartitionUpdate>,
) -> Result<Json<Value>, ApiError> {
    let raw_partition: i64 = raw_partition.parse().map_err(|_| {
        ApiError::InvalidRequest(format!("partition must be a number, got {raw_partition:?}"))
    })?;
    let partition = check_partition(&state, "partition", raw_partition)?;
    let mode = update
        .mode
        .as_deref()
        .map(|raw| {
            QueueMode::parse(raw).ok_or_else(|| {
                ApiError::InvalidRequest("mode must be one of open, paused, passthrough".into())
            })
        })
        .transpose()?;
    let mut transaction = state.postgres.begin().await.map_err(ApiError::internal)?;
    ensure_queue(&mut transaction, partition).await?;
    for raw_event_id in &update.events {
        let event_id = parse_event_id(raw_event_id)?;
        let moved =
            sqlx::query("UPDATE events SET partition = $2, updated_at = now() WHERE event_id = $1")
                .bind(event_id.as_str())
                .bind(partition)
                .execute(&mut *transaction)
                .await
                .map_err(ApiError::internal)?;
        if moved.rows_affected() == 0 {
            return Err(ApiError::EventNotFound(event_id.to_string()));
        }
    }
    if let Some(activation) = &update.activation {
        let current = load_policy(&mut transaction, partition)
            .await?
            .unwrap_or_default();
        store_policy(
            &mut transaction,
            partition,
            &activation.apply("activation", current)?,
        )
        .await?;
    }
    if let Some(mode) = mode {
        store_mode(&mut transaction, partition, mode).await?;
    }
    transaction.commit().await.map_err(ApiError::internal)?;
    state.catalog.reload().await.map_err(ApiError::internal)?;
    let catalog = state.catalog.current();
    Ok(Json(partition_view(&catalog, &catalog.queue(partition))))
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
    fn admin_tokens_compare_exactly() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", ""));
    }
}
