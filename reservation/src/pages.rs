//! The fan's seat page, embedded in the binary (plain HTML and JavaScript, the waiting
//! room's stylesheet, no build step, no external resources): `GET /events/{event_id}/seats`
//! shows the live seat map and lets an active fan hold, confirm or release seats.
//! The ticket token arrives in the URL fragment from the waiting page.

use axum::extract::{Path, State};
use axum::response::Response;
use platform::assets::{self, Asset, CSS, JAVASCRIPT, STYLE_CSS};
use platform::error::RequestError;

use crate::state::SharedState;

const SEATS_HTML: &str = include_str!("../assets/seats.html");

/// The seat page with the only server-side value it needs, where the waiting room is;
/// rendered once at start.
pub fn render_seat_page(waiting_room_base_url: &str) -> String {
    let escaped = waiting_room_base_url
        .trim_end_matches('/')
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    SEATS_HTML.replace("{{WAITING_ROOM_URL}}", &escaped)
}

/// The seat page (the ticket token travels in the fragment).
#[utoipa::path(
    get,
    path = "/events/{event_id}/seats",
    tag = "pages",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
pub async fn seat_page(
    State(state): State<SharedState>,
    Path(_event_id): Path<String>,
) -> Response {
    assets::page(state.seat_page.as_str())
}

const ASSETS: &[Asset] = &[
    STYLE_CSS,
    Asset {
        name: "seats.css",
        content_type: CSS,
        body: include_str!("../assets/seats.css"),
    },
    Asset {
        name: "seats.js",
        content_type: JAVASCRIPT,
        body: include_str!("../assets/seats.js"),
    },
];

/// The seat page's scripts and styles.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "pages",
    params(("file" = String, Path, description = "An asset's file name")),
    responses(
        (status = 200, description = "The asset (JavaScript or CSS)", content_type = "text/plain", body = String),
        (status = 404, description = "`route_not_found`: no such asset"),
    )
)]
pub async fn asset(Path(file): Path<String>) -> Result<Response, RequestError> {
    assets::serve(ASSETS, &file)
}
