//! The fans' pages and their embedded files (plain HTML, CSS and JavaScript, no build
//! step), served the same way by every service that has a page, and the stylesheet they
//! share.
//!
//! Every page goes out with a content security policy that allows only the page's own
//! origin (the pages have no inline script or style and load nothing from elsewhere), may
//! not be framed (clickjacking a "hold these seats" button), and sends no referrer.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use crate::error::RequestError;

/// One embedded file under `/assets/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const CSS: &str = "text/css; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The stylesheet of every fan page (the waiting page and the seat page look alike).
pub const STYLE_CSS: Asset = Asset {
    name: "style.css",
    content_type: CSS,
    body: include_str!("../assets/style.css"),
};

/// The headers every fan page carries.
const PAGE_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// An HTML page with the fan pages' security headers.
pub fn page(html: impl Into<String>) -> Response {
    let mut response = Html(html.into()).into_response();
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `file` from `assets`, or 404 `route_not_found`.
pub fn serve(assets: &[Asset], file: &str) -> Result<Response, RequestError> {
    let asset = assets
        .iter()
        .find(|asset| asset.name == file)
        .ok_or(RequestError::RouteNotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Small files; revalidating keeps a redeploy visible at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response())
}
