//! The audit log of the admin API: which operator (their token's label) changed what,
//! with the configuration before and after, written in the change's own transaction by
//! [`CatalogChange::record`](super::catalog_store::CatalogChange::record) and read at
//! `GET /admin/audit`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use platform::error::Query;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog_store;
use super::requests;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// The operator behind an admin request: the label of the token they presented.
#[derive(Debug, Clone)]
pub struct Operator(pub Arc<str>);

/// What a recorded change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AuditAction {
    EventCreated,
    EventUpdated,
    EventDeleted,
    /// `PUT /admin/partitions/{p}`: events moved to a queue, its mode or policy.
    QueueUpdated,
    PartitionsRaised,
    /// `POST /admin/site-keys`: a site's API key for the slot API.
    SiteKeyCreated,
    /// `DELETE /admin/site-keys/{key_id}`.
    SiteKeyRevoked,
}

/// What a change is about; its snapshot is what the log shows before and after.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The event's row and its queue's (never the draw's secret seed).
    Event(&'a str),
    /// The queue's row and the events mapped to it.
    Queue(i32),
    /// The tickets topic's recorded partition count.
    Topic(&'a str),
    /// A site's API key (never its secret's hash).
    SiteKey(&'a str),
}

/// One entry as `GET /admin/audit` shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub event_id: Option<String>,
    pub partition: Option<i32>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which entries to read, newest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this event's entries.
    event_id: Option<String>,
    /// Entries older than this id (the previous page's `next`).
    before: Option<i64>,
    /// Entries per page, 1-500 (default 50).
    limit: Option<i64>,
}

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// `GET /admin/audit?event_id=&before=&limit=`: the log, newest first, in pages.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    security(("admin_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "`{\"entries\": [...], \"next\": id or null}`", body = Object),
        (status = 422, description = "`invalid_request`: a malformed parameter, or `limit` out of 1-500"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn list_audit(
    State(state): State<SharedState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, WaitingRoomError> {
    let event_id = query
        .event_id
        .as_deref()
        .map(requests::parse_event_id)
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(WaitingRoomError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let entries = catalog_store::audit_entries(
        &state.postgres,
        event_id.as_ref().map(|id| id.as_str()),
        query.before,
        limit,
    )
    .await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|entry| entry.audit_id))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next": next })))
}
