//! The admin handlers: events (create, update, read with live statistics) and the
//! partition mapping.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::catalog::{Catalog, EventState, QueueConfig};
use platform::error::Json as JsonBody;
use serde_json::{json, Value};

use super::catalog_store::{CatalogChange, EventRecord};
use super::requests::{self, EventUpdate, PartitionUpdate};
use super::stats;
use crate::config::PartitionMode;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// `PUT /admin/events/{id}`: creates the event (201) or updates it (200), and the
/// configuration of its queue.
pub async fn put_event(
    State(state): State<SharedState>,
    Path(raw_event_id): Path<String>,
    JsonBody(update): JsonBody<EventUpdate>,
) -> Result<Response, WaitingRoomError> {
    let event_id = requests::parse_event_id(&raw_event_id)?;
    let name = update
        .name
        .as_deref()
        .map(requests::event_name)
        .transpose()?;
    let requested_partition = update
        .partition
        .map(|value| requests::partition("partition", value, state.partitions))
        .transpose()?;
    let layout = update
        .seats
        .as_ref()
        .map(|seats| seats.layout())
        .transpose()?;
    let trusted_issuers = state.issuers.names();

    let mut change = CatalogChange::begin(&state.postgres).await?;
    change.lock_partition_assignment().await?;
    let existing = change.existing_event(event_id.as_str()).await?;
    let partition = match (requested_partition, &existing) {
        (Some(partition), _) => partition,
        (None, Some(existing)) => existing.partition,
        (None, None) => default_partition(&state, &mut change).await?,
    };
    let current_entry = existing
        .as_ref()
        .map(|existing| existing.entry.clone())
        .unwrap_or_default();
    let entry = match &update.entry {
        Some(entry) => entry.apply(current_entry, &trusted_issuers)?,
        None => current_entry,
    };
    change.ensure_queue(partition).await?;
    if let Some(activation) = &update.activation {
        let current = change.policy(partition).await?;
        change
            .store_policy(partition, activation.apply("activation", current)?)
            .await?;
    }
    if let Some(mode) = update.state.and_then(EventState::queue_mode) {
        change.store_mode(partition, mode).await?;
    }
    change
        .upsert_event(&EventRecord {
            event_id: event_id.as_str(),
            name,
            state: update.state,
            partition,
            layout,
            entry: &entry,
        })
        .await?;
    if let Some(layout) = layout {
        if existing.as_ref().and_then(|existing| existing.layout) != Some(layout) {
            change.replace_layout(event_id.as_str(), layout).await?;
        }
    }
    change.commit(&state.catalog).await?;

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
) -> Result<Json<Value>, WaitingRoomError> {
    event_view(&state, &state.catalog.current(), &event_id)
        .await
        .map(Json)
}

/// Configuration plus live statistics of one event.
async fn event_view(
    state: &SharedState,
    catalog: &Catalog,
    event_id: &str,
) -> Result<Value, WaitingRoomError> {
    let event = catalog
        .event(event_id)
        .ok_or_else(|| WaitingRoomError::EventNotFound(event_id.to_owned()))?;
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
        "entry": event.entry,
        "shared_queue_with": shared_with,
    });
    if let (Some(view), Value::Object(stats)) = (
        view.as_object_mut(),
        serde_json::to_value(stats).map_err(WaitingRoomError::internal)?,
    ) {
        view.extend(stats);
    }
    Ok(view)
}

/// Where a new event goes when the admin names no partition.
async fn default_partition(
    state: &SharedState,
    change: &mut CatalogChange,
) -> Result<i32, WaitingRoomError> {
    if state.partition_mode == PartitionMode::Global {
        return Ok(0);
    }
    change
        .free_partition(state.partitions)
        .await?
        .ok_or(WaitingRoomError::NoFreePartition {
            partitions: state.partitions,
        })
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
        "default_mode": state.partition_mode,
        "partition_count": state.partitions,
        "partitions": partitions,
    }))
}

/// Maps the listed events to the partition (their new tickets go there; tickets already
/// issued stay in their old queue) and updates the queue's mode and policy.
pub async fn put_partition(
    State(state): State<SharedState>,
    Path(raw_partition): Path<String>,
    JsonBody(update): JsonBody<PartitionUpdate>,
) -> Result<Json<Value>, WaitingRoomError> {
    let raw_partition: i64 = raw_partition.parse().map_err(|_| {
        WaitingRoomError::invalid(format!("partition must be a number, got {raw_partition:?}"))
    })?;
    let partition = requests::partition("partition", raw_partition, state.partitions)?;
    let mut change = CatalogChange::begin(&state.postgres).await?;
    change.ensure_queue(partition).await?;
    for raw_event_id in &update.events {
        let event_id = requests::parse_event_id(raw_event_id)?;
        if !change.move_event(event_id.as_str(), partition).await? {
            return Err(WaitingRoomError::EventNotFound(event_id.to_string()));
        }
    }
    if let Some(activation) = &update.activation {
        let current = change.policy(partition).await?;
        change
            .store_policy(partition, activation.apply("activation", current)?)
            .await?;
    }
    if let Some(mode) = update.mode {
        change.store_mode(partition, mode).await?;
    }
    change.commit(&state.catalog).await?;
    let catalog = state.catalog.current();
    Ok(Json(partition_view(&catalog, &catalog.queue(partition))))
}
