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

    #[tokio::test]
    async fn only_non_empty_bearer_credentials_count() {
        assert_eq!(token_of(Some("Bearer abc")).await.as_deref(), Some("abc"));
        assert_eq!(token_of(Some("bearer abc")).await.as_deref(), Some("abc"));
        assert_eq!(token_of(Some("Basic abc")).await, None);
        assert_eq!(token_of(Some("Bearer ")).await, None);
        assert_eq!(token_of(None).await, None);
    }
}
