//! The `Authorization: Bearer <token>` header as an extractor that never refuses: a
//! missing or malformed header is simply "no token", so each handler answers with its
//! own JSON 401 (`unauthorized` for operators, `invalid_token` for fans).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::Authorization;
use axum_extra::TypedHeader;

/// The bearer token of a request, if it carries a well-formed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerToken(pub Option<String>);

impl BearerToken {
    pub fn token(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header =
            <TypedHeader<Authorization<Bearer>> as OptionalFromRequestParts<S>>::from_request_parts(
                parts, state,
            )
            .await;
        let token = header
            .ok()
            .flatten()
            .map(|TypedHeader(Authorization(bearer))| bearer.token().trim().to_owned())
            .filter(|token| !token.is_empty());
        Ok(Self(token))
    }
}

/// Whether two digests of presented credentials are equal, compared in constant time:
/// how long it takes does not tell which byte differed.
pub fn digests_equal(stored: &[u8], presented: &[u8]) -> bool {
    stored.len() == presented.len()
        && stored
            .iter()
            .zip(presented)
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use axum::http::{header, Request};

    use super::*;

    async fn token_of(value: Option<&str>) -> Option<String> {
        let mut request = Request::builder();
        if let Some(value) = value {
            request = request.header(header::AUTHORIZATION, value);
        }
        let (mut parts, ()) = request.body(()).expect("request").into_parts();
        let Ok(BearerToken(token)) = BearerToken::from_request_parts(&mut parts, &()).await;
        token
    }

    #[test]
    fn digests_are_equal_only_byte_for_byte() {
        assert!(digests_equal(&[1, 2, 3], &[1, 2, 3]));
        assert!(!digests_equal(&[1, 2, 3], &[1, 2, 4]));
        assert!(!digests_equal(&[1, 2, 3], &[1, 2]));
    }

    #[tokio::test]
    async fn only_non_empty_bearer_credentials_count() {
        assert_eq!(token_of(Some("Bearer abc")).await.as_deref(), Some("abc"));
        assert_eq!(token_of(Some("bearer abc")).await.as_deref(), Some("abc"));
        assert_eq!(token_of(Some("Basic abc")).await, None);
        assert_eq!(token_of(Some("Bearer ")).await, None);
        assert_eq!(token_of(None).await, None);
    }
}
