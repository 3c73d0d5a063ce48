//! What every service's OpenAPI document shares: the error body, `Retry-After`, the
//! refusals of a JSON body, bearer security schemes and serving the document at
//! `GET /openapi.json`.
//!
//! Handlers list the statuses they can answer with and say why; [`Conventions`] then
//! gives every 4xx and 5xx without a body of its own the one error schema ([`ErrorBody`],
//! what [`crate::error::respond`] writes), every such 429 and 503 the `Retry-After` header, and
//! every operation with a request body the refusals of [`crate::error::Json`], so that
//! none of this is repeated next to each handler.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{self, MethodRouter};
use axum::Extension;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

/// Every error: `{"error": {"code": "...", "message": "..."}}`. Some errors add fields
/// beside `code` and `message`, or at the top level (`reservation_exists` repeats the
/// existing reservation there).
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what clients branch on.
    pub code: String,
    /// For people; may change.
    pub message: String,
}

/// Statuses of a JSON request body the platform refuses before the handler runs.
const BODY_REFUSALS: [(&str, &str); 4] = [
    ("400", "`malformed_json`: the body is not JSON"),
    (
        "413",
        "`payload_too_large`: the body is larger than the limit",
    ),
    (
        "415",
        "`unsupported_media_type`: the body is not `application/json`",
    ),
    (
        "422",
        "`invalid_request`: a field is missing, mistyped or out of range",
    ),
];

/// Applies the conventions above to a generated document; see the module's docs.
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in [
            (ErrorBody::name(), ErrorBody::schema()),
            (ErrorDetail::name(), ErrorDetail::schema()),
        ] {
            components.schemas.insert(name.into_owned(), schema);
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                conventions(operation);
            }
        }
    }
}

fn conventions(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    if operation.request_body.is_some() {
        for (status, description) in BODY_REFUSALS {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| ResponseBuilder::new().description(description).into());
        }
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        // A response with a body of its own (`/readyz`'s report) is not an error body.
        if !response.content.is_empty() {
            continue;
        }
        response.content.insert(
            "application/json".into(),
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        );
        if status == "429" || status == "503" {
            response.headers.insert(
                "Retry-After".to_owned(),
                HeaderBuilder::new()
                    .schema(u64::schema())
                    .description(Some("Seconds to wait before trying again."))
                    .build(),
            );
        }
    }
}

/// Adds an `Authorization: Bearer` scheme named `name` to `openapi`.
pub fn bearer_scheme(openapi: &mut OpenApi, name: &str, description: &str) {
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            ),
        );
}

/// `GET` serving `document` (at `/openapi.json`), serialized once.
pub fn get<S: Clone + Send + Sync + 'static>(document: &OpenApi) -> MethodRouter<S> {
    let json: Arc<str> = document
        .to_json()
        .expect("an OpenAPI document serializes")
        .into();
    routing::get(openapi_json).layer(Extension(json))
}

/// This service's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(Extension(json): Extension<Arc<str>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[utoipa::path(
        post,
        path = "/things",
        request_body = String,
        responses((status = 201, description = "made"), (status = 503, description = "busy"))
    )]
    #[allow(dead_code)]
    fn make() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(make), modifiers(&Conventions))]
    struct Doc;

    #[test]
    fn errors_get_the_error_body_and_retry_after() {
        let document = serde_json::to_value(Doc::openapi()).expect("json");
        let responses = &document["paths"]["/things"]["post"]["responses"];
        let busy = &responses["503"];
        assert_eq!(
            busy["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(busy["headers"]["Retry-After"].is_object());
        assert!(responses["201"]["content"].is_null());
        assert!(responses["422"]["content"].is_object(), "body refusals");
        assert!(document["components"]["schemas"]["ErrorDetail"].is_object());
    }
}
