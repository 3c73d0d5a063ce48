//! The `admission` object of `PUT /admin/events/{id}`: the site an event's active fans
//! are admitted to, validated field by field (errors name the field).

use contract::catalog::{AdmissionPolicy, TokenPlacement};
use serde::Deserialize;

use crate::error::WaitingRoomError;

/// `admission` in an event update: a whole policy (`null` removes it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionUpdate {
    /// The site (the admission token's `aud`): 1-256 printable characters, no spaces.
    audience: String,
    /// An absolute http(s) URL, at most 2,048 characters.
    #[serde(default)]
    return_url: Option<String>,
    #[serde(default)]
    token_in: TokenPlacement,
}

const MAX_AUDIENCE: usize = 256;
const MAX_RETURN_URL: usize = 2048;

impl AdmissionUpdate {
    pub fn policy(&self) -> Result<AdmissionPolicy, WaitingRoomError> {
        Ok(AdmissionPolicy {
            audience: audience("admission.audience", &self.audience)?,
            return_url: self.return_url.as_deref().map(return_url).transpose()?,
            token_in: self.token_in,
        })
    }
}

/// A site's name as tokens carry it in `aud` (usually its origin, e.g.
/// `https://shop.example`): 1-256 printable characters without spaces.
pub fn audience(field: &str, raw: &str) -> Result<String, WaitingRoomError> {
    let valid =
        (1..=MAX_AUDIENCE).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_graphic());
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(WaitingRoomError::invalid(format!(
            "{field} must be 1-{MAX_AUDIENCE} printable ASCII characters without spaces"
        )))
    }
}

/// An absolute http(s) URL: where a fan's browser is sent with the token.
fn return_url(raw: &str) -> Result<String, WaitingRoomError> {
    // The parser drops tabs and newlines and keeps NUL; none belongs in a stored URL.
    let clean = !raw.chars().any(|c| c.is_control() || c.is_whitespace());
    let parsed = reqwest::Url::parse(raw)
        .ok()
        .filter(|_| clean)
        .filter(|url| {
            matches!(url.scheme(), "https" | "http")
                && url.host().is_some()
                && raw.len() <= MAX_RETURN_URL
        });
    match parsed {
        Some(_) => Ok(raw.to_owned()),
        None => Err(WaitingRoomError::invalid(format!(
            "admission.return_url must be an absolute http(s) URL of at most {MAX_RETURN_URL} characters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(audience: &str, return_url: Option<&str>) -> AdmissionUpdate {
        AdmissionUpdate {
            audience: audience.into(),
            return_url: return_url.map(Into::into),
            token_in: TokenPlacement::Query,
        }
    }

    #[test]
    fn a_site_and_its_return_url_are_taken_as_given() {
        let policy = update("https://shop.example", Some("https://shop.example/buy?x=1"))
            .policy()
            .expect("valid");
        assert_eq!(policy.audience, "https://shop.example");
        assert_eq!(
            policy.return_url.as_deref(),
            Some("https://shop.example/buy?x=1")
        );
        assert_eq!(policy.token_in, TokenPlacement::Query);
    }

    #[test]
    fn bad_sites_and_urls_are_refused_naming_the_field() {
        for (audience, url, field) in [
            ("", None, "admission.audience"),
            ("a site", None, "admission.audience"),
            (&*"x".repeat(257), None, "admission.audience"),
            ("ok", Some("/relative"), "admission.return_url"),
            ("ok", Some("javascript:alert(1)"), "admission.return_url"),
            ("ok", Some("ftp://shop.example/"), "admission.return_url"),
            (
                "ok",
                Some("https://shop.example/\0"),
                "admission.return_url",
            ),
            (
                "ok",
                Some("https://shop.example/a\tb"),
                "admission.return_url",
            ),
        ] {
            let error = update(audience, url).policy().expect_err("refused");
            assert!(error.to_string().contains(field), "{error}");
        }
    }
}
