//! The admin API's side of the sites' API keys: create (the secret is in that response
//! only), list, revoke. Every change is in the audit log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::policy_update::audience;
use super::site_keys::{self, NewSiteKey};
use crate::admin::audit::{AuditAction, Operator, Subject};
use crate::admin::catalog_store::CatalogChange;
use crate::error::WaitingRoomError;
use crate::state::SharedState;
use platform::error::Json as JsonBody;

/// `POST /admin/site-keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// The site: the `aud` its events' admission tokens carry.
    audience: String,
    /// What the key is for (who holds it), for the list and the audit log.
    label: String,
}

const MAX_LABEL: usize = 200;

/// `POST /admin/site-keys`: 201 with the key, shown this once.
#[utoipa::path(
    post,
    path = "/admin/site-keys",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = NewKeyRequest,
    responses(
        (status = 201, description = "The key's record and `api_key`, shown this once", body = Object),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn create(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
    JsonBody(request): JsonBody<NewKeyRequest>,
) -> Result<(StatusCode, Json<Value>), WaitingRoomError> {
    let audience = audience("audience", &request.audience)?;
    let label = request.label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control)
    {
        return Err(WaitingRoomError::invalid(format!(
            "label must be 1-{MAX_LABEL} characters without control characters"
        )));
    }
    let key = NewSiteKey::generate();
    let mut change = CatalogChange::begin(&state.postgres).await?;
    change
        .insert_site_key(&key, &audience, label, &operator)
        .await?;
    let subject = Subject::SiteKey(&key.key_id);
    let after = change.snapshot(subject).await?;
    change
        .record(
            &operator,
            AuditAction::SiteKeyCreated,
            subject,
            None,
            after.clone(),
        )
        .await?;
    change.commit_outside_catalog().await?;
    let mut body = after.unwrap_or_else(|| json!({}));
    body["api_key"] = json!(key.reveal());
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /admin/site-keys`: every key, revoked ones too, never a secret.
#[utoipa::path(
    get,
    path = "/admin/site-keys",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`{\"site_keys\": [...]}`, newest first", body = Object),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn list(State(state): State<SharedState>) -> Result<Json<Value>, WaitingRoomError> {
    let keys = site_keys::list(&state.postgres)
        .await
        .map_err(WaitingRoomError::internal)?;
    Ok(Json(json!({ "site_keys": keys })))
}

/// `DELETE /admin/site-keys/{key_id}`: 204; the key stops working on every instance
/// at once. Revoking it again changes nothing.
#[utoipa::path(
    delete,
    path = "/admin/site-keys/{key_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 404, description = "`site_key_not_found`"),
        (status = 401, description = "`unauthorized`: missing or wrong admin token"),
    )
)]
pub async fn revoke(
    State(state): State<SharedState>,
    Extension(operator): Extension<Operator>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, WaitingRoomError> {
    if !site_keys::is_key_id(&key_id) {
        return Err(WaitingRoomError::SiteKeyNotFound(key_id));
    }
    let mut change = CatalogChange::begin(&state.postgres).await?;
    let subject = Subject::SiteKey(&key_id);
    let before = change.snapshot(subject).await?;
    let already_revoked = before
        .as_ref()
        .is_some_and(|record| !record["revoked_at"].is_null());
    if !change.revoke_site_key(&key_id).await? {
        return Err(WaitingRoomError::SiteKeyNotFound(key_id));
    }
    if !already_revoked {
        let after = change.snapshot(subject).await?;
        change
            .record(
                &operator,
                AuditAction::SiteKeyRevoked,
                subject,
                before,
                after,
            )
            .await?;
    }
    change.commit_outside_catalog().await?;
    Ok(StatusCode::NO_CONTENT)
}
