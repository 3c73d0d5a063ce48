//! The fan's seat page, embedded in the binary (plain HTML and JavaScript, the waiting
//! room's stylesheet, no build step, no external resources): `GET /events/{event_id}/seats`
//! shows the live seat map and lets an active fan hold, confirm or release seats.
//! The ticket token arrives in the URL fragment from the waiting page.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use waiting_room::error::ApiError;

use crate::state::SharedState;

const SEATS_HTML: &str = include_str!("../assets/seats.html");
const SEATS_JS: &str = include_str!("../assets/seats.js");
const STYLE_CSS: &str = include_str!("../../waiting-room/assets/style.css");
const SEATS_CSS: &str = include_str!("../assets/seats.css");

pub async fn seat_page(
    State(state): State<SharedState>,
    Path(_event_id): Path<String>,
) -> Html<String> {
    // The only server-side value the page needs: where the waiting room is.
    let base = state.waiting_room_base_url.trim_end_matches('/');
    let escaped = base
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    Html(SEATS_HTML.replace("{{WAITING_ROOM_URL}}", &escaped))
}

pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = match file.as_str() {
        "style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        "seats.css" => ("text/css; charset=utf-8", SEATS_CSS),
        "seats.js" => ("text/javascript; charset=utf-8", SEATS_JS),
        _ => return Err(ApiError::RouteNotFound),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
