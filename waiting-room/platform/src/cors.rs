//! Cross-origin access to the public API: a deployment names the origins whose own
//! front ends may call it from the browser (a ticketing site's checkout page that
//! joins the line or watches a ticket), and no others. The admin API and the pages
//! are never opened this way.
//!
//! The public API takes tickets in the `Authorization` header or the path, never in
//! cookies, so nothing is sent with credentials and no origin gains a fan's session.

use std::str::FromStr;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// One origin allowed to call the public API: `scheme://host[:port]`, as a browser
/// sends it in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin(HeaderValue);

impl FromStr for AllowedOrigin {
    type Err = String;

    fn from_str(origin: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = origin
            .split_once("://")
            .ok_or_else(|| format!("{origin:?} is not an origin (scheme://host[:port])"))?;
        let host_and_port_only = !rest.is_empty() && !rest.contains(['/', '?', '#', '@', '*', ' ']);
        if !matches!(scheme, "https" | "http") || !host_and_port_only {
            return Err(format!(
                "{origin:?} is not an origin: http(s)://host[:port], without path or wildcard"
            ));
        }
        HeaderValue::from_str(origin)
            .map(Self)
            .map_err(|_| format!("{origin:?} is not a valid header value"))
    }
}

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Where the public API lives: versioned routes, and the keys that verify tickets.
fn is_public_api(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1" || path == "/.well-known/jwks.json"
}

/// The layer opening the public API to calls from exactly `origins` (preflights
/// answered, the response headers a page may read); `None` when the list is empty. On
/// any other route the browser gets no CORS headers and refuses the call. It goes
/// around the whole router, so preflights reach it before method routing (a route
/// without OPTIONS would answer 405).
pub fn layer(origins: &[AllowedOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().map(|origin| origin.0.clone()).collect();
    let allowed = move |origin: &HeaderValue, request: &Parts| {
        is_public_api(request.uri.path()) && origins.contains(origin)
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(allowed))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            // A refused join says when to try again; the page must be able to read it.
            .expose_headers([header::RETRY_AFTER])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::AllowedOrigin;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in ["https://shop.example", "http://127.0.0.1:3000"] {
            assert!(good.parse::<AllowedOrigin>().is_ok(), "{good} refused");
        }
        for bad in [
            "*",
            "shop.example",
            "https://",
            "https://shop.example/checkout",
            "https://*.shop.example",
            "ftp://shop.example",
            "https://user@shop.example",
        ] {
            assert!(bad.parse::<AllowedOrigin>().is_err(), "{bad} accepted");
        }
    }
}
