//! The error body every service answers with, and the refusals the platform itself
//! makes (unknown routes, unreadable bodies).
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a stable,
//! machine-readable `code` (see `docs/api.md`). Each service owns an error enum and
//! implements [`ApiError`] for it: the mapping to status and code lives in that one
//! impl, and [`respond`] turns any of them into the same envelope.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// What a service error says about itself over HTTP.
pub trait ApiError: std::error::Error {
    fn status(&self) -> StatusCode;

    /// The stable, snake_case code clients branch on.
    fn code(&self) -> &'static str;

    /// Sent as `Retry-After` (seconds) when set.
    fn retry_after_seconds(&self) -> Option<u64> {
        None
    }

    /// Adds the error's own fields: beside `code` and `message` in `error`, or at the
    /// body's top level.
    fn add_fields(&self, _error: &mut Map<String, Value>, _body: &mut Map<String, Value>) {}
}

/// The JSON envelope of `error`.
pub fn body(error: &impl ApiError) -> Value {
    let mut fields = Map::new();
    fields.insert("code".into(), json!(error.code()));
    fields.insert("message".into(), json!(error.to_string()));
    let mut body = Map::new();
    error.add_fields(&mut fields, &mut body);
    body.insert("error".into(), Value::Object(fields));
    Value::Object(body)
}

/// The response for `error`: its status, the envelope and `Retry-After`. Server errors
/// are logged with their causes (the client only learns the code).
pub fn respond(error: &impl ApiError) -> Response {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(error = %Causes(error), "request failed");
    }
    let mut response = (status, axum::Json(body(error))).into_response();
    if let Some(seconds) = error.retry_after_seconds() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An error and its sources, `: `-separated.
struct Causes<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(formatter, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Requests the platform refuses before a handler runs, and the refusals every service
/// shares (an invalid field is `invalid_request` everywhere).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("unsupported content type: send application/json")]
    UnsupportedMediaType,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError for RequestError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::MalformedJson(_) => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        respond(&self)
    }
}

impl From<JsonRejection> for RequestError {
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

/// A JSON body whose refusals (malformed, mistyped, oversized, not JSON) are
/// [`RequestError`]s in the common envelope.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(RequestError))]
pub struct Json<T>(pub T);

impl From<QueryRejection> for RequestError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidRequest(rejection.body_text())
    }
}

/// Query parameters whose refusals (a missing or mistyped parameter) are
/// [`RequestError`]s in the common envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(RequestError))]
pub struct Query<T>(pub T);

/// An optional JSON body: an empty body is `None`, whatever the content type. Same
/// refusals as [`Json`] for a body that is there.
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = RequestError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RequestError::PayloadTooLarge
                } else {
                    RequestError::InvalidRequest(rejection.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes)
            .map(|value| Self(Some(value)))
            .map_err(|error| {
                if error.is_data() {
                    RequestError::InvalidRequest(error.to_string())
                } else {
                    RequestError::MalformedJson(error.to_string())
                }
            })
    }
}

/// Fallback for unknown routes.
pub async fn route_not_found() -> RequestError {
    RequestError::RouteNotFound
}

/// Fallback for known routes called with the wrong method.
pub async fn method_not_allowed() -> RequestError {
    RequestError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Example {
        #[error("seats are not available")]
        SeatsUnavailable { seat_ids: Vec<String> },
        #[error("this ticket already holds a reservation")]
        Exists,
        #[error("retry later")]
        Busy,
    }

    impl ApiError for Example {
        fn status(&self) -> StatusCode {
            match self {
                Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            }
        }
        fn code(&self) -> &'static str {
            match self {
                Self::SeatsUnavailable { .. } => "seats_unavailable",
                Self::Exists => "reservation_exists",
                Self::Busy => "service_unavailable",
            }
        }
        fn retry_after_seconds(&self) -> Option<u64> {
            matches!(self, Self::Busy).then_some(2)
        }
        fn add_fields(&self, error: &mut Map<String, Value>, body: &mut Map<String, Value>) {
            match self {
                Self::SeatsUnavailable { seat_ids } => {
                    error.insert("seat_ids".into(), json!(seat_ids));
                }
                Self::Exists => {
                    body.insert("reservation_id".into(), json!("r1"));
                }
                Self::Busy => {}
            }
        }
    }

    #[test]
    fn every_error_uses_the_envelope_with_a_snake_case_code() {
        let error = Example::SeatsUnavailable {
            seat_ids: vec!["A-1".into()],
        };
        let body = body(&error);
        assert_eq!(body["error"]["code"], "seats_unavailable");
        assert_eq!(body["error"]["seat_ids"][0], "A-1");
        assert_eq!(error.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn retry_after_is_sent_when_the_error_sets_it() {
        let response = respond(&Example::Busy);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert!(respond(&Example::Exists)
            .headers()
            .get(header::RETRY_AFTER)
            .is_none());
    }

    #[test]
    fn fields_can_go_beside_the_error() {
        let body = body(&Example::Exists);
        assert_eq!(body["reservation_id"], "r1");
        assert_eq!(body["error"]["code"], "reservation_exists");
    }
}
