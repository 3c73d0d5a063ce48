//! The post-sale report over HTTP: `POST /admin/events/{id}/report` computes and
//! stores it (see [`crate::report`]), `GET` returns the stored one as JSON or, with
//! `?format=csv`, CSV. Closing an event computes one in the background.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use platform::error::Query;
use serde::Deserialize;

use super::requests;
use crate::error::WaitingRoomError;
use crate::report::{self, EventReport};
use crate::state::SharedState;

/// Session length assumed for an event that no longer has a queue to read it from.
const DEFAULT_ACTIVE_TTL_SECONDS: i64 = 600;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Json,
    Csv,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (the default) or `csv`.
    #[param(inline)]
    format: Option<ReportFormat>,
}

/// Computes and stores `event_id`'s report now.
pub async fn compute(state: &SharedState, event_id: &str) -> Result<EventReport, WaitingRoomError> {
    let catalog = state.catalog.current();
    let ttl = catalog
        .event(event_id)
        .and_then(|event| event.partition)
        .map_or(DEFAULT_ACTIVE_TTL_SECONDS, |partition| {
            i64::from(catalog.queue(partition).activation.active_ttl_seconds)
        });
    report::compute_and_store(&state.common, &state.postgres, event_id, ttl)
        .await
        .map_err(|error| WaitingRoomError::ReportUnavailable(format!("{error:#}")))
}

/// Computes the report of an event that just closed, without holding up the answer.
pub fn compute_after_close(state: &SharedState, event_id: &str) {
    let (state, event_id) = (state.clone(), event_id.to_owned());
    tokio::spawn(async move {
        match compute(&state, &event_id).await {
            Ok(report) => {
                tracing::info!(%event_id, joined = report.totals.joined, "post-sale report computed")
            }
            Err(error) => {
                tracing::warn!(%event_id, %error, "post-sale report not computed; POST /admin/events/{{id}}/report retries")
            }
        }
    });
}

/// `POST /admin/events/{id}/report`.
#[utoipa::path(
    post,
    path = "/admin/events/{event_id}/report",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The report, computed now and stored", body = Object),
        (status = 404, description = "`event_not_found`"),
        (status = 422, description = "`invalid_request`: not an event id"),
        (status = 502, description = "`report_unavailable`: Kafka or PostgreSQL did not answer"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn recompute(
    State(state): State<SharedState>,
    Path(raw_event_id): Path<String>,
) -> Result<Json<EventReport>, WaitingRoomError> {
    let event_id = requests::parse_event_id(&raw_event_id)?;
    if state.catalog.current().event(event_id.as_str()).is_none() {
        return Err(WaitingRoomError::EventNotFound(event_id.to_string()));
    }
    compute(&state, event_id.as_str()).await.map(Json)
}

/// `GET /admin/events/{id}/report[?format=csv]`: the stored report (also of a deleted
/// event).
#[utoipa::path(
    get,
    path = "/admin/events/{event_id}/report",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event's id"), ReportQuery),
    responses(
        (status = 200, description = "The stored report", content((Object = "application/json"), (String = "text/csv"))),
        (status = 404, description = "`report_not_found`"),
        (status = 422, description = "`invalid_request`: not an event id, or an unknown `format`"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(raw_event_id): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, WaitingRoomError> {
    let event_id = requests::parse_event_id(&raw_event_id)?;
    let report = report::stored(&state.postgres, event_id.as_str())
        .await
        .map_err(WaitingRoomError::internal)?
        .ok_or_else(|| WaitingRoomError::ReportNotFound(event_id.to_string()))?;
    Ok(match query.format.unwrap_or(ReportFormat::Json) {
        ReportFormat::Json => Json(report).into_response(),
        ReportFormat::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{event_id}-report.csv\""),
                ),
            ],
            report.to_csv(),
        )
            .into_response(),
    })
}
