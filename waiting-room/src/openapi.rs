//! The waiting-room's OpenAPI 3.1 document, generated from the handlers' annotations
//! (each `#[utoipa::path]` sits next to its handler) and the request and response types.
//! It is served at `GET /openapi.json`, printed by `waiting-room openapi` and checked in
//! as `docs/openapi/waiting-room.json`; the shared pieces (error body, `Retry-After`,
//! body refusals, the operational routes) come from [`platform::openapi`].

use platform::openapi::{bearer_scheme, Conventions};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::{admin, admission, entry, pages, tickets};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "waiting-room",
        description = "Queue-token waiting room: the fans' entry API, the pages and the operators' admin API. See docs/api.md."
    ),
    paths(
        pages::index,
        pages::event_page,
        pages::asset,
        pages::messages,
        pages::list_events,
        pages::get_event,
        entry::challenge::issue,
        tickets::join::join,
        tickets::status::by_path,
        tickets::status::me,
        tickets::status::jwks,
        tickets::stream::events,
        tickets::stream::my_events,
        admission::slot_api::complete,
        admission::slot_api::release,
        admin::console::page,
        admin::handlers::list_events,
        admin::handlers::get_event,
        admin::handlers::put_event,
        admin::handlers::delete_event,
        admin::handlers::list_partitions,
        admin::handlers::raise_partitions,
        admin::handlers::put_partition,
        admin::audit::list_audit,
        admin::live_stats::stats_events,
        admin::reports::get,
        admin::reports::recompute,
        admission::admin_keys::create,
        admission::admin_keys::list,
        admission::admin_keys::revoke,
        platform::http::healthz,
        platform::http::readyz,
        platform::http::metrics,
        platform::openapi::openapi_json,
    ),
    modifiers(&Conventions, &SecuritySchemes)
)]
struct WaitingRoomApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        bearer_scheme(
            openapi,
            "admin_token",
            "`ADMIN_TOKEN` or one of the operators' `ADMIN_TOKENS`",
        );
        bearer_scheme(
            openapi,
            "ticket_token",
            "A ticket token (the join response's `token`)",
        );
        bearer_scheme(
            openapi,
            "site_api_key",
            "A protected site's API key (`POST /admin/site-keys`), `wrsk_…`",
        );
    }
}

/// The document.
pub fn document() -> Document {
    WaitingRoomApi::openapi()
}
