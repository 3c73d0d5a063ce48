//! The fans' pages' embedded files (plain CSS and JavaScript, no build step), served the
//! same way by every service that has a page, and the stylesheet they share.

use axum::http::header;
use axum::response::{IntoResponse, Response};

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
