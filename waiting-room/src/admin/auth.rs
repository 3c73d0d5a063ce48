//! The admin credentials: a bearer token compared in constant time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use platform::bearer::BearerToken;
use sha2::{Digest, Sha256};

use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// Refuses every admin request without the right bearer token.
pub async fn require_admin(
    State(state): State<SharedState>,
    bearer: BearerToken,
    request: Request,
    next: Next,
) -> Result<Response, WaitingRoomError> {
    match bearer.token() {
        Some(token) if constant_time_eq(token, &state.admin_token) => Ok(next.run(request).await),
        _ => Err(WaitingRoomError::Unauthorized),
    }
}

/// Compares digests so the time taken does not depend on where the strings differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_compare_exactly() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", ""));
    }
}
