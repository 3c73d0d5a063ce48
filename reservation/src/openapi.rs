//! The reservation service's OpenAPI 3.1 document, generated from the handlers'
//! annotations (each `#[utoipa::path]` sits next to its handler) and the request and
//! response types. It is served at `GET /openapi.json`, printed by `reservation openapi`
//! and checked in as `docs/openapi/reservation.json`; the shared pieces (error body,
//! `Retry-After`, body refusals, the operational routes) come from [`platform::openapi`].

use platform::openapi::{bearer_scheme, Conventions};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::{api, pages, streams};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reservation",
        description = "Seat reservations for active tickets, and the seat page. See docs/api.md."
    ),
    paths(
        pages::seat_page,
        pages::asset,
        api::seats,
        streams::seat_events,
        api::reserve,
        api::get,
        api::confirm,
        api::release,
        streams::reservation_events,
        platform::http::healthz,
        platform::http::readyz,
        platform::http::metrics,
        platform::openapi::openapi_json,
    ),
    modifiers(&Conventions, &SecuritySchemes)
)]
struct ReservationApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        bearer_scheme(
            openapi,
            "ticket_token",
            "An active ticket token of the waiting-room (its join response's `token`), or its admission token",
        );
    }
}

/// The document.
pub fn document() -> Document {
    ReservationApi::openapi()
}
