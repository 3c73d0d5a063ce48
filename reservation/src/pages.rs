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

pub async fn asset(Path(file): Path<String>) -> Result<Response, RequestError> {
    assets::serve(ASSETS, &file)
}
