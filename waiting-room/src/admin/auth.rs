//! The admin credentials: bearer tokens, each with an operator's label (the audit log's
//! "who"), compared in constant time.

use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use platform::bearer::{digests_equal, BearerToken};
use sha2::{Digest, Sha256};

use super::audit::Operator;
use crate::error::WaitingRoomError;
use crate::state::SharedState;

/// The label of the single `ADMIN_TOKEN`.
const DEFAULT_LABEL: &str = "admin";

/// Every operator's token with its label.
#[derive(Clone)]
pub struct AdminCredentials {
    operators: Vec<(Arc<str>, [u8; 32])>,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.operators.iter().map(|(label, _)| &**label).collect();
        formatter
            .debug_struct("AdminCredentials")
            .field("labels", &labels)
            .finish()
    }
}

impl AdminCredentials {
    /// From `ADMIN_TOKEN` (labelled `admin`) and `ADMIN_TOKENS` (`label=token` each).
    /// Refuses none at all, an empty token, a label outside `[A-Za-z0-9._-]{1,64}` and a
    /// label or token given twice.
    pub fn new(admin_token: Option<&str>, named: &[String]) -> anyhow::Result<Self> {
        let mut operators: Vec<(Arc<str>, [u8; 32])> = Vec::new();
        let default = admin_token
            .filter(|token| !token.is_empty())
            .map(|token| (DEFAULT_LABEL, token));
        let named = named.iter().map(|entry| {
            entry
                .split_once('=')
                .with_context(|| "ADMIN_TOKENS entries are label=token".to_owned())
        });
        for entry in default.into_iter().map(Ok).chain(named) {
            let (label, token) = entry?;
            let label = label.trim();
            if label.is_empty()
                || label.len() > 64
                || !label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
            {
                bail!("admin token label {label:?} must be 1-64 of A-Z a-z 0-9 . _ -");
            }
            if token.is_empty() {
                bail!("the admin token labelled {label:?} is empty");
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if operators
                .iter()
                .any(|(known, known_digest)| **known == *label || *known_digest == digest)
            {
                bail!("admin token label {label:?} or its token is given twice");
            }
            operators.push((Arc::from(label), digest));
        }
        if operators.is_empty() {
            bail!(
                "ADMIN_TOKEN or ADMIN_TOKENS (--admin-token, --admin-tokens) is required to serve"
            );
        }
        Ok(Self { operators })
    }

    /// The operator whose token this is. Every token is compared, each in constant
    /// time, so the time taken does not tell which one (or which byte) differed.
    pub fn operator(&self, token: &str) -> Option<Operator> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.operators
            .iter()
            .fold(None, |found, (label, digest)| {
                if digests_equal(digest, &presented) {
                    Some(label.clone())
                } else {
                    found
                }
            })
            .map(Operator)
    }
}

/// Refuses every admin request without a known bearer token, and tells the handlers
/// which operator it is.
pub async fn require_admin(
    State(state): State<SharedState>,
    bearer: BearerToken,
    mut request: Request,
    next: Next,
) -> Result<Response, WaitingRoomError> {
    let operator = bearer
        .token()
        .and_then(|token| state.admin_credentials.operator(token))
        .ok_or(WaitingRoomError::Unauthorized)?;
    request.extensions_mut().insert(operator);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(admin: Option<&str>, named: &[&str]) -> anyhow::Result<AdminCredentials> {
        let named: Vec<String> = named.iter().map(|entry| (*entry).to_owned()).collect();
        AdminCredentials::new(admin, &named)
    }

    fn label(credentials: &AdminCredentials, token: &str) -> Option<String> {
        credentials
            .operator(token)
            .map(|operator| operator.0.to_string())
    }

    #[test]
    fn each_token_names_its_operator_exactly() {
        let known = credentials(Some("secret"), &["alice=a-token", "bob=b-token"]).unwrap();
        assert_eq!(label(&known, "secret").as_deref(), Some("admin"));
        assert_eq!(label(&known, "a-token").as_deref(), Some("alice"));
        assert_eq!(label(&known, "b-token").as_deref(), Some("bob"));
        assert_eq!(label(&known, "secreT"), None);
        assert_eq!(label(&known, ""), None);
        assert_eq!(label(&known, "alice"), None);
    }

    #[test]
    fn unusable_credentials_are_refused_at_start() {
        assert!(credentials(None, &[]).is_err());
        assert!(credentials(Some(""), &[]).is_err());
        assert!(credentials(None, &["alice"]).is_err());
        assert!(credentials(None, &["alice="]).is_err());
        assert!(credentials(None, &["=token"]).is_err());
        assert!(credentials(None, &["al ice=token"]).is_err());
        assert!(credentials(None, &["alice=one", "alice=two"]).is_err());
        assert!(credentials(None, &["alice=same", "bob=same"]).is_err());
        assert!(credentials(Some("x"), &["admin=y"]).is_err());
        assert!(credentials(None, &["alice=token=with=equals"]).is_ok());
    }
}
