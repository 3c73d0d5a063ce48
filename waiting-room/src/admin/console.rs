//! The operators' console at `GET /admin`: one page (plain HTML and JavaScript from
//! `assets/console.*`, no build step, nothing loaded from elsewhere) over the admin API.
//!
//! The page itself holds no data and needs no credentials; everything it shows comes
//! from the admin API with the operator's token, which the page keeps in the tab's
//! session storage and sends as an `Authorization` header. No cookie carries it, so a
//! cross-site request cannot act as the operator (nothing for CSRF to ride on), and the
//! page's content security policy allows no script but its own.

use axum::response::Response;
use platform::assets::{self, Asset, CSS, JAVASCRIPT};

pub const CONSOLE_JS: Asset = Asset {
    name: "console.js",
    content_type: JAVASCRIPT,
    body: include_str!("../../assets/console.js"),
};

pub const CONSOLE_CSS: Asset = Asset {
    name: "console.css",
    content_type: CSS,
    body: include_str!("../../assets/console.css"),
};

/// The operators' console page (it signs in itself, so no credentials).
#[utoipa::path(
    get,
    path = "/admin",
    tag = "admin",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String))
)]
pub async fn page() -> Response {
    assets::page(include_str!("../../assets/console.html"))
}
