//! The fan's pages, embedded in the binary (plain HTML, CSS and JavaScript, no build
//! step, no external resources), and the public event listing they read.
//!
//! `GET /` lists the events on sale; `GET /events/{event_id}` is the waiting page (join,
//! then the live place in line; see `assets/waiting.js`). Both are served in the fan's
//! language (see [`crate::page_messages`]): the page names it in `<html lang>` and
//! loads its words from `/assets/messages/{language}.json`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use contract::catalog::{EntryChallenge, EntryIdentity, EventConfig, EventState};
use platform::assets::{self, Asset, JAVASCRIPT, STYLE_CSS};
use platform::error::RequestError;

use crate::admin::console;
use crate::draw_audit::SaleView;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const EVENT_HTML: &str = include_str!("../assets/event.html");

/// The events page, in the fan's language.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String))
)]
pub async fn index(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    localized_page(&state, &headers, INDEX_HTML)
}

/// The same page for every event: the script reads the event id from the path, so an
/// unknown event still gets a page that says so.
#[utoipa::path(
    get,
    path = "/events/{event_id}",
    tag = "pages",
    params(("event_id" = String, Path, description = "The event's id")),
    responses((status = 200, description = "HTML page (for unknown events too: the page says so)", content_type = "text/html", body = String))
)]
pub async fn event_page(
    State(state): State<SharedState>,
    Path(_event_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    localized_page(&state, &headers, EVENT_HTML)
}

/// `html` in the fan's language: the `lang` cookie (the page's switch), else
/// `Accept-Language`.
fn localized_page(state: &SharedState, headers: &HeaderMap, html: &str) -> Response {
    let chosen = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix("lang="));
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok());
    let messages = &state.page_messages;
    let language = messages.negotiate(chosen, accept_language);
    let languages: Vec<&str> = messages.languages().collect();
    let html = html.replacen(
        r#"<html lang="en">"#,
        &format!(
            r#"<html lang="{language}" data-languages="{}">"#,
            languages.join(",")
        ),
        1,
    );
    let mut response = assets::page(html);
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    response
}

/// `GET /assets/messages/{language}.json`: a language's words for the pages.
#[utoipa::path(
    get,
    path = "/assets/messages/{file}",
    tag = "pages",
    params(("file" = String, Path, description = "`{language}.json`, e.g. `en.json`")),
    responses(
        (status = 200, description = "The language's messages", body = Object),
        (status = 404, description = "`route_not_found`: no such language"),
    )
)]
pub async fn messages(
    State(state): State<SharedState>,
    Path(file): Path<String>,
) -> Result<Response, RequestError> {
    let catalog = file
        .strip_suffix(".json")
        .and_then(|language| state.page_messages.catalog(language))
        .ok_or(RequestError::RouteNotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        catalog.to_owned(),
    )
        .into_response())
}

const ASSETS: &[Asset] = &[
    STYLE_CSS,
    console::CONSOLE_JS,
    console::CONSOLE_CSS,
    Asset {
        name: "i18n.js",
        content_type: JAVASCRIPT,
        body: include_str!("../assets/i18n.js"),
    },
    Asset {
        name: "index.js",
        content_type: JAVASCRIPT,
        body: include_str!("../assets/index.js"),
    },
    Asset {
        name: "waiting.js",
        content_type: JAVASCRIPT,
        body: include_str!("../assets/waiting.js"),
    },
    Asset {
        name: "pow-worker.js",
        content_type: JAVASCRIPT,
        body: include_str!("../assets/pow-worker.js"),
    },
];

/// The pages' scripts and styles.
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

/// What a fan may know about an event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicEvent {
    pub event_id: String,
    pub name: String,
    pub state: EventState,
    pub entry: PublicEntry,
    #[serde(flatten)]
    pub sale: SaleView,
}

/// How to get in: the waiting page tells a fan without the site's link what to do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicEntry {
    pub identity: EntryIdentity,
    pub challenge: EntryChallenge,
}

impl From<&EventConfig> for PublicEvent {
    fn from(event: &EventConfig) -> Self {
        Self {
            sale: SaleView::of(event, Utc::now()),
            event_id: event.event_id.as_str().to_owned(),
            name: event.name.clone(),
            state: event.state,
            entry: PublicEntry {
                identity: event.entry.identity,
                challenge: event.entry.challenge,
            },
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicEvents {
    pub events: Vec<PublicEvent>,
}

/// `GET /v1/events`: the events a fan can join (every state but closed), by name.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    responses((status = 200, description = "The events on sale, by name", body = PublicEvents))
)]
pub async fn list_events(State(state): State<SharedState>) -> Json<PublicEvents> {
    let catalog = state.catalog.current();
    let mut events: Vec<PublicEvent> = catalog
        .events()
        .filter(|event| event.state != EventState::Closed)
        .map(PublicEvent::from)
        .collect();
    events.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    Json(PublicEvents { events })
}

/// `GET /v1/events/{event_id}`: name and state, or 404 `event_not_found`.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "events",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event", body = PublicEvent),
        (status = 404, description = "`event_not_found`"),
    )
)]
pub async fn get_event(
    State(state): State<SharedState>,
    Path(event_id): Path<String>,
) -> Result<Json<PublicEvent>, WaitingRoomError> {
    let catalog = state.catalog.current();
    catalog
        .event(&event_id)
        .map(|event| Json(PublicEvent::from(event)))
        .ok_or(WaitingRoomError::EventNotFound(event_id))
}
