//! The admin handlers: events (create, update, list and read with live statistics,
//! delete) and the partition mapping.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use contract::catalog::{Catalog, EventState, QueueConfig};
use contract::draw::DrawSeed;
use contract::kafka;
use platform::error::Json as JsonBody;
use serde_json::{json, Value};

use super::audit::{AuditAction, Operator, Subject};
use super::catalog_store::{CatalogChange, EventRecord};
use super::reports;
use super::requests::{self, EventUpdate, PartitionCountUpdate, PartitionUpdate};
use super::stats;
use crate::config::PartitionMode;
use crate::draw_audit::SaleView;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// `PUT /admin/events/{id}`: creates the event (201) or updates it (200), and the
/// configuration of its queue.
#[utoipa::path(
    put,
    path = "/admin/events/{event_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    request_body = EventUpdate,
    responses(
        (status = 200, description = "Updated: the event as `GET` shows it", body = Object),
        (status = 201, description = "Created: the event as `GET` shows it", body = Object),
        (status = 409, description = "`conflict` (seat layout in use), `draw_needs_own_queue`, `draw_already_made`, `queue_fixed_by_schedule` or `no_free_partition`"),
        (status = 503, description = "`service_unavailable`: Redis is unreachable"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn put_event(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
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
        .map(|value| requests::partition("partition", value, state.partition_count()))
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
    let subject = Subject::Event(event_id.as_str());
    let before = change.snapshot(subject).await?;
    // A released event gets a queue again only when the change needs one.
    let needs_queue = update.activation.is_some()
        || update
            .state
            .is_some_and(|state| state != EventState::Closed);
    if let (Some(requested), Some(existing)) = (requested_partition, &existing) {
        if existing.partition != Some(requested) && existing.queue_fixed(Utc::now()) {
            return Err(WaitingRoomError::QueueFixedBySchedule(event_id.to_string()));
        }
    }
    let partition = match (requested_partition, existing.as_ref().map(|e| e.partition)) {
        (Some(partition), _) => Some(partition),
        (None, Some(Some(partition))) => Some(partition),
        (None, Some(None)) if !needs_queue => None,
        (None, _) => Some(default_partition(&state, &mut change).await?),
    };
    let current_entry = existing
        .as_ref()
        .map(|existing| existing.entry.clone())
        .unwrap_or_default();
    let entry = match &update.entry {
        Some(entry) => entry.apply(current_entry, &trusted_issuers)?,
        None => current_entry,
    };
    let schedule = requests::change_schedule(
        event_id.as_str(),
        existing.as_ref().and_then(|existing| existing.schedule),
        existing.as_ref().and_then(|existing| existing.draw),
        update.schedule.as_ref().map(Option::as_ref),
        Utc::now(),
        || DrawSeed::from_bytes(rand::random()),
    )?;
    let admission = match &update.admission {
        None => existing
            .as_ref()
            .and_then(|existing| existing.admission.clone()),
        Some(None) => None,
        Some(Some(admission)) => Some(admission.policy()?),
    };
    if let Some(partition) = partition {
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
    }
    change
        .upsert_event(&EventRecord {
            event_id: event_id.as_str(),
            name,
            state: update.state,
            partition,
            layout,
            entry: &entry,
            schedule: schedule.schedule,
            draw_seed: schedule.draw_seed,
            admission: admission.as_ref(),
        })
        .await?;
    change.stamp_closing(event_id.as_str()).await?;
    if let Some(partition) = partition {
        if let Some(shuffling) = change.shared_shuffle(partition).await? {
            return Err(WaitingRoomError::DrawNeedsOwnQueue(shuffling));
        }
    }
    if let Some(layout) = layout {
        if existing.as_ref().and_then(|existing| existing.layout) != Some(layout) {
            change.replace_layout(event_id.as_str(), layout).await?;
        }
    }
    let after = change.snapshot(subject).await?;
    let action = if existing.is_some() {
        AuditAction::EventUpdated
    } else {
        AuditAction::EventCreated
    };
    change
        .record(&operator, action, subject, before, after)
        .await?;
    change.commit(&state.catalog).await?;
    let closed_now = update.state == Some(EventState::Closed)
        && existing
            .as_ref()
            .is_none_or(|existing| existing.state != EventState::Closed);
    if closed_now {
        reports::compute_after_close(&state, event_id.as_str());
    }

    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let view = event_view(&state, &state.catalog.current(), event_id.as_str()).await?;
    Ok((status, Json(view)).into_response())
}

/// `GET /admin/events`: every event, by id, as `GET /admin/events/{id}` shows it.
#[utoipa::path(
    get,
    path = "/admin/events",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`{\"events\": [...]}`", body = Object),
        (status = 503, description = "`service_unavailable`: Redis is unreachable"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn list_events(
    State(state): State<SharedState>,
) -> Result<Json<Value>, WaitingRoomError> {
    let catalog = state.catalog.current();
    let mut ids: Vec<&str> = catalog
        .events()
        .map(|event| event.event_id.as_str())
        .collect();
    ids.sort_unstable();
    let events = futures::future::try_join_all(
        ids.into_iter()
            .map(|event_id| event_view(&state, &catalog, event_id)),
    )
    .await?;
    Ok(Json(json!({ "events": events })))
}

/// `DELETE /admin/events/{id}`: removes an event closed for at least the settling time
/// whose queue has no live ticket left (none waiting, none active) and that has no
/// reservations (they are the sale's record); its seats, counters and fans' places go
/// with it and its partition is free for the next new event.
#[utoipa::path(
    delete,
    path = "/admin/events/{event_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`event_not_found`"),
        (status = 409, description = "`event_not_closed`, `event_closing` (with `Retry-After`), `event_has_live_tickets` or `event_has_reservations`"),
        (status = 422, description = "`invalid_request`: not an event id"),
        (status = 503, description = "`service_unavailable`: Redis is unreachable"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn delete_event(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
    Path(raw_event_id): Path<String>,
) -> Result<StatusCode, WaitingRoomError> {
    let event_id = requests::parse_event_id(&raw_event_id)?;
    let event_id = event_id.as_str();
    let mut change = CatalogChange::begin(&state.postgres).await?;
    change.lock_partition_assignment().await?;
    let existing = change
        .existing_event(event_id)
        .await?
        .ok_or_else(|| WaitingRoomError::EventNotFound(event_id.to_owned()))?;
    if existing.state != EventState::Closed {
        return Err(WaitingRoomError::EventNotClosed(event_id.to_owned()));
    }
    let reservations = change.reservation_count(event_id).await?;
    if reservations > 0 {
        return Err(WaitingRoomError::EventHasReservations {
            event_id: event_id.to_owned(),
            reservations,
        });
    }
    if let Some(partition) = existing.partition {
        let load = stats::queue_load(&state, partition).await?;
        if !load.drained() {
            return Err(WaitingRoomError::EventHasLiveTickets {
                event_id: event_id.to_owned(),
                waiting: load.waiting,
                active: load.active,
            });
        }
        let settled_at = existing
            .closed_at
            .map(|closed_at| closed_at + state.event_settle)
            .unwrap_or_default();
        let left = (settled_at - Utc::now()).num_seconds();
        if left >= 0 {
            return Err(WaitingRoomError::EventClosing {
                event_id: event_id.to_owned(),
                retry_after_seconds: left.unsigned_abs() + 1,
            });
        }
    }
    let subject = Subject::Event(event_id);
    let before = change.snapshot(subject).await?;
    change.delete_event(event_id).await?;
    change
        .record(&operator, AuditAction::EventDeleted, subject, before, None)
        .await?;
    if let Some(partition) = existing.partition {
        if !change.partition_in_use(partition).await? {
            change.reset_queue(partition).await?;
        }
    }
    // Before the commit, under the lock: an event created again under this id (which
    // waits for the lock) starts from nothing, without this one's counters or fans'
    // old tickets standing in their places.
    forget_event(&state, event_id, existing.partition).await?;
    change.commit(&state.catalog).await?;
    tracing::info!(event_id, partition = ?existing.partition, "event deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an event's counters and its fans' places from Redis, scanning in steps (the
/// instance may hold millions of keys).
async fn forget_event(
    state: &SharedState,
    event_id: &str,
    current: Option<i32>,
) -> Result<(), WaitingRoomError> {
    let keys = state.tickets.keys();
    let mut redis = state.redis.clone();
    // Its counters' shares in every queue it had; then its places, all in its slot.
    let queues = state
        .tickets
        .event_queues(event_id, current)
        .await
        .map_err(|error| state.store_unavailable(error))?;
    let mut forgotten: Vec<String> = queues
        .into_iter()
        .map(|partition| keys.event_stats(partition, event_id))
        .collect();
    forgotten.push(keys.event_queues(event_id));
    for pattern in keys.event_place_patterns(event_id) {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000);
            let (next, found): (u64, Vec<String>) = redis
                .query_where(&pattern, &scan)
                .await
                .map_err(|error| state.store_unavailable(error))?;
            forgotten.extend(found);
            if !forgotten.is_empty() {
                redis::cmd("UNLINK")
                    .arg(std::mem::take(&mut forgotten))
                    .query_async::<i64>(&mut redis)
                    .await
                    .map_err(|error| state.store_unavailable(error))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// Keeps the share of an event's counters in a queue it leaves (see
/// `TicketStore::remember_queue`).
async fn remember_queue(
    state: &SharedState,
    event_id: &str,
    partition: i32,
) -> Result<(), WaitingRoomError> {
    state
        .tickets
        .remember_queue(event_id, partition)
        .await
        .map_err(|error| state.store_unavailable(error))
}

/// Configuration plus live statistics of one event.
#[utoipa::path(
    get,
    path = "/admin/events/{event_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event, its queue and live statistics", body = Object),
        (status = 404, description = "`event_not_found`"),
        (status = 503, description = "`service_unavailable`: Redis is unreachable"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn get_event(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Json<Value>, WaitingRoomError> {
    event_view(&state, &state.catalog.current(), &event_id)
        .await
        .map(Json)
}

/// Configuration plus live statistics of one event.
pub(super) async fn event_view(
    state: &SharedState,
    catalog: &Catalog,
    event_id: &str,
) -> Result<Value, WaitingRoomError> {
    let event = catalog
        .event(event_id)
        .ok_or_else(|| WaitingRoomError::EventNotFound(event_id.to_owned()))?;
    let queue = event.partition.map(|partition| catalog.queue(partition));
    let stats = stats::event_stats(state, event_id, queue.as_ref()).await?;
    let shared_with: Vec<&str> = event
        .partition
        .map(|partition| catalog.events_on(partition))
        .unwrap_or_default()
        .into_iter()
        .map(|other| other.event_id.as_str())
        .filter(|other| *other != event_id)
        .collect();
    let mut view = json!({
        "event_id": event.event_id,
        "name": event.name,
        "state": event.state,
        "partition": event.partition,
        "queue_mode": queue.as_ref().map(|queue| queue.mode),
        "activation": queue.as_ref().map(|queue| queue.activation),
        "seats": event.seats,
        "entry": event.entry,
        "admission": event.admission,
        "shared_queue_with": shared_with,
    });
    let sale = SaleView::of(event, Utc::now());
    for extra in [
        serde_json::to_value(sale).map_err(WaitingRoomError::internal)?,
        serde_json::to_value(stats).map_err(WaitingRoomError::internal)?,
    ] {
        if let (Some(view), Value::Object(extra)) = (view.as_object_mut(), extra) {
            view.extend(extra);
        }
    }
    Ok(view)
}

/// Where a new event goes when the admin names no partition: the shared one; or the
/// lowest one no event uses whose queue has drained (events moved away leave their
/// issued tickets behind); or, when there is none, one that closed events have drained
/// and give back, which starts again from the default mode and policy.
async fn default_partition(
    state: &SharedState,
    change: &mut CatalogChange,
) -> Result<i32, WaitingRoomError> {
    if state.partition_mode == PartitionMode::Global {
        return Ok(0);
    }
    for partition in change.free_partitions(state.partition_count()).await? {
        if stats::queue_load(state, partition).await?.drained() {
            return Ok(partition);
        }
    }
    for partition in change.settled_partitions(state.event_settle).await? {
        if stats::queue_load(state, partition).await?.drained() {
            for event_id in change.release_partition(partition).await? {
                remember_queue(state, &event_id, partition).await?;
            }
            change.reset_queue(partition).await?;
            tracing::info!(
                partition,
                "closed events drained: their partition is released"
            );
            return Ok(partition);
        }
    }
    Err(WaitingRoomError::NoFreePartition {
        partitions: state.partition_count(),
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

/// The partition mapping: each queue, its mode, policy and events.
#[utoipa::path(
    get,
    path = "/admin/partitions",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every partition of the tickets topic", body = Object),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn list_partitions(State(state): State<SharedState>) -> Json<Value> {
    let catalog = state.catalog.current();
    let partition_count = state.partition_count();
    let partitions: Vec<Value> = (0..partition_count)
        .map(|partition| partition_view(&catalog, &catalog.queue(partition)))
        .collect();
    Json(json!({
        "default_mode": state.partition_mode,
        "partition_count": partition_count,
        "partitions": partitions,
    }))
}

/// `PUT /admin/partitions`: raises the tickets topic's partition count online. Under the
/// partition lock (one raise at a time, PostgreSQL reachable before the broker is
/// touched) the broker adds the partitions, then the count it has is recorded, and
/// every instance (its catalog) and every activator (its group's metadata refresh)
/// takes them up. Runs as its own task: a client that hangs up cannot leave a raise
/// unrecorded.
#[utoipa::path(
    put,
    path = "/admin/partitions",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = PartitionCountUpdate,
    responses(
        (status = 200, description = "The partition mapping after the raise", body = Object),
        (status = 502, description = "`partitions_not_raised`: the broker refused or did not answer"),
        (status = 503, description = "`service_unavailable`: configuration not loaded yet"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn raise_partitions(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
    JsonBody(update): JsonBody<PartitionCountUpdate>,
) -> Result<Json<Value>, WaitingRoomError> {
    if !state.catalog.current().loaded {
        return Err(WaitingRoomError::CatalogNotLoaded {
            retry_after_seconds: state.retry_after_seconds,
        });
    }
    let raising = tokio::spawn(async move {
        let mut change = CatalogChange::begin(&state.postgres).await?;
        change.lock_partition_assignment().await?;
        let recorded = change.partition_count(&state.tickets_topic).await?;
        let subject = Subject::Topic(&state.tickets_topic);
        let before = change.snapshot(subject).await?;
        let count = update.count(recorded.unwrap_or(0).max(state.configured_partitions))?;
        let wanted = usize::try_from(count).unwrap_or(0);
        let raised = kafka::raise_partitions(&state.kafka, &state.tickets_topic, wanted)
            .await
            .map_err(|error| WaitingRoomError::PartitionsNotRaised(format!("{error:#}")))?;
        let raised = i32::try_from(raised).unwrap_or(count);
        change
            .store_partition_count(&state.tickets_topic, raised)
            .await?;
        let after = change.snapshot(subject).await?;
        change
            .record(
                &operator,
                AuditAction::PartitionsRaised,
                subject,
                before,
                after,
            )
            .await?;
        change.commit(&state.catalog).await?;
        tracing::info!(partitions = raised, "tickets topic raised");
        Ok::<_, WaitingRoomError>(list_partitions(State(state)).await)
    });
    raising.await.map_err(WaitingRoomError::internal)?
}

/// Maps the listed events to the partition (their new tickets go there; tickets already
/// issued stay in their old queue) and updates the queue's mode and policy.
#[utoipa::path(
    put,
    path = "/admin/partitions/{partition}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("partition" = String, Path, description = "A partition number of the tickets topic")),
    request_body = PartitionUpdate,
    responses(
        (status = 200, description = "The partition after the change", body = Object),
        (status = 404, description = "`event_not_found`: a listed event does not exist"),
        (status = 409, description = "`queue_fixed_by_schedule` or `draw_needs_own_queue`"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn put_partition(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
    Path(raw_partition): Path<String>,
    JsonBody(update): JsonBody<PartitionUpdate>,
) -> Result<Json<Value>, WaitingRoomError> {
    let raw_partition: i64 = raw_partition.parse().map_err(|_| {
        WaitingRoomError::invalid(format!("partition must be a number, got {raw_partition:?}"))
    })?;
    let partition = requests::partition("partition", raw_partition, state.partition_count())?;
    let mut change = CatalogChange::begin(&state.postgres).await?;
    change.lock_partition_assignment().await?;
    let subject = Subject::Queue(partition);
    let before = change.snapshot(subject).await?;
    change.ensure_queue(partition).await?;
    for raw_event_id in &update.events {
        let event_id = requests::parse_event_id(raw_event_id)?;
        if let Some(existing) = change.existing_event(event_id.as_str()).await? {
            if existing.partition != Some(partition) && existing.queue_fixed(Utc::now()) {
                return Err(WaitingRoomError::QueueFixedBySchedule(event_id.to_string()));
            }
            if let Some(old) = existing.partition.filter(|old| *old != partition) {
                remember_queue(&state, event_id.as_str(), old).await?;
            }
        }
        if !change.move_event(event_id.as_str(), partition).await? {
            return Err(WaitingRoomError::EventNotFound(event_id.to_string()));
        }
    }
    if let Some(shuffling) = change.shared_shuffle(partition).await? {
        return Err(WaitingRoomError::DrawNeedsOwnQueue(shuffling));
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
    let after = change.snapshot(subject).await?;
    change
        .record(&operator, AuditAction::QueueUpdated, subject, before, after)
        .await?;
    change.commit(&state.catalog).await?;
    let catalog = state.catalog.current();
    Ok(Json(partition_view(&catalog, &catalog.queue(partition))))
}
