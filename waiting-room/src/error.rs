//! The one place where failures become HTTP responses.
//!
//! Every error any service returns is `{"error": {"code": "...", "message": "..."}}` with
//! a stable, machine-readable `code` (see `../shared/API.md`). Handlers return
//! [`ApiError`]; the mapping to status codes and codes lives in [`ApiError::status`] and
//! [`ApiError::code`] only.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong admin credentials")]
    Unauthorized,
    #[error("invalid ticket token: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("ticket is not active: it is {state}")]
    TicketNotActive { state: String },
    #[error("event '{0}' does not exist")]
    EventNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("event '{0}' is closed to new joins")]
    EventClosed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no free partition: all {partitions} partitions of the tickets topic have events; name a partition to share one")]
    NoFreePartition { partitions: i32 },
    #[error("seats are not available: {}", seat_ids.join(", "))]
    SeatsUnavailable { seat_ids: Vec<String> },
    #[error("the reservation is {status}, no longer held")]
    ReservationNotHeld { status: String },
    #[error("this ticket already holds a reservation")]
    ReservationExists { existing: Value },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("unsupported content type: send application/json")]
    UnsupportedMediaType,
    #[error("too many requests, retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the queue is unavailable, retry in {retry_after_seconds} s; no ticket was issued")]
    QueueUnavailable { retry_after_seconds: u64 },
    #[error("too many live streams on this server, retry in {retry_after_seconds} s or poll the status URL")]
    TooManyStreams { retry_after_seconds: u64 },
    #[error("{message}")]
    ServiceUnavailable {
        message: String,
        retry_after_seconds: u64,
    },
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::TicketNotActive { .. } => StatusCode::FORBIDDEN,
            Self::EventNotFound(_) | Self::NotFound(_) | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::EventClosed(_)
            | Self::Conflict(_)
            | Self::NoFreePartition { .. }
            | Self::SeatsUnavailable { .. }
            | Self::ReservationNotHeld { .. }
            | Self::ReservationExists { .. } => StatusCode::CONFLICT,
            Self::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueUnavailable { .. }
            | Self::TooManyStreams { .. }
            | Self::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::TicketNotActive { .. } => "ticket_not_active",
            Self::EventNotFound(_) => "event_not_found",
            Self::NotFound(_) => "not_found",
            Self::EventClosed(_) => "event_closed",
            Self::Conflict(_) => "conflict",
            Self::NoFreePartition { .. } => "no_free_partition",
            Self::SeatsUnavailable { .. } => "seats_unavailable",
            Self::ReservationNotHeld { .. } => "reservation_not_held",
            Self::ReservationExists { .. } => "reservation_exists",
            Self::InvalidRequest(_) => "invalid_request",
            Self::MalformedJson(_) => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::QueueUnavailable { .. } => "queue_unavailable",
            Self::TooManyStreams { .. } => "too_many_streams",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Internal(_) => "internal_error",
        }
    }

    fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_seconds,
            }
            | Self::QueueUnavailable {
                retry_after_seconds,
            }
            | Self::TooManyStreams {
                retry_after_seconds,
            }
            | Self::ServiceUnavailable {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }

    /// The JSON body: the standard envelope plus the variant's extra fields.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        match self {
            Self::TicketNotActive { state } => error["state"] = json!(state),
            Self::SeatsUnavailable { seat_ids } => error["seat_ids"] = json!(seat_ids),
            Self::ReservationNotHeld { status } => error["status"] = json!(status),
            Self::ReservationExists { existing } => error["reservation"] = existing.clone(),
            _ => {}
        }
        let mut body = json!({ "error": error });
        if let Self::ReservationExists { existing } = self {
            // The contract returns the existing reservation in the body.
            if let (Some(target), Some(fields)) = (body.as_object_mut(), existing.as_object()) {
                for (key, value) in fields {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(source) = &self {
            tracing::error!(error = ?source, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_seconds() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => Self::InvalidRequest(error.body_text()),
            JsonRejection::JsonSyntaxError(error) => Self::MalformedJson(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::PayloadTooLarge
            }
            other => Self::InvalidRequest(other.body_text()),
        }
    }
}

/// A JSON body extractor whose rejections are [`ApiError`]s, so malformed, mistyped and
/// oversized bodies get the same envelope as every other error.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// An optional JSON body: an empty body is `None`. Same rejections as [`ApiJson`].
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidRequest(rejection.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes)
            .map(|value| Self(Some(value)))
            .map_err(|error| {
                if error.is_data() {
                    ApiError::InvalidRequest(error.to_string())
                } else {
                    ApiError::MalformedJson(error.to_string())
                }
            })
    }
}

/// Fallback for unknown routes.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// Fallback for known routes called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_uses_the_envelope_with_a_snake_case_code() {
        let error = ApiError::SeatsUnavailable {
            seat_ids: vec!["A-1".into()],
        };
        let body = error.body();
        assert_eq!(body["error"]["code"], "seats_unavailable");
        assert_eq!(body["error"]["seat_ids"][0], "A-1");
        assert_eq!(error.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn retry_after_is_sent_with_queue_unavailable() {
        let response = ApiError::QueueUnavailable {
            retry_after_seconds: 2,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn existing_reservation_is_returned_alongside_the_error() {
        let existing = json!({"reservation_id": "r1", "status": "held"});
        let body = ApiError::ReservationExists { existing }.body();
        assert_eq!(body["reservation_id"], "r1");
        assert_eq!(body["error"]["code"], "reservation_exists");
    }
}
