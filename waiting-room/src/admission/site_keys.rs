//! The sites' API keys for the slot API. A key reads `wrsk_<key id>_<secret>`: the id
//! finds its row, the secret proves it. Only the secret's SHA-256 is stored (a key is
//! 256 random bits, so a plain hash cannot be reversed by guessing), and it is shown
//! once, in the response that created it. Every request reads the row, so a revoked
//! key stops working at once on every instance.

use chrono::{DateTime, Utc};
use platform::bearer::digests_equal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

const PREFIX: &str = "wrsk_";
/// Hex characters of a key id.
const KEY_ID_LEN: usize = 16;

/// A key just made: the only time its secret exists outside the site's hands.
pub struct NewSiteKey {
    pub key_id: String,
    secret: String,
}

impl NewSiteKey {
    pub fn generate() -> Self {
        let id: [u8; KEY_ID_LEN / 2] = rand::random();
        let secret: [u8; 32] = rand::random();
        Self {
            key_id: platform::hex::encode(&id),
            secret: platform::hex::encode(&secret),
        }
    }

    /// The key as the site sends it (`Authorization: Bearer …`).
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.key_id, self.secret)
    }

    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

/// A presented key, split into the id that finds it and the secret that proves it.
#[derive(Debug, PartialEq, Eq)]
struct PresentedKey<'a> {
    key_id: &'a str,
    secret: &'a str,
}

/// Whether `raw` could be a key id (anything else names no key).
pub fn is_key_id(raw: &str) -> bool {
    raw.len() == KEY_ID_LEN && raw.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn parse(presented: &str) -> Option<PresentedKey<'_>> {
    let rest = presented.strip_prefix(PREFIX)?;
    let key_id = rest.get(..KEY_ID_LEN)?;
    let secret = rest.get(KEY_ID_LEN..)?.strip_prefix('_')?;
    let plausible = is_key_id(key_id) && !secret.is_empty() && secret.len() <= 64;
    plausible.then_some(PresentedKey { key_id, secret })
}

/// A key as the admin API lists it: never its secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SiteKeyRecord {
    pub key_id: String,
    /// The site it acts for: the `aud` of the admission tokens it may settle.
    pub audience: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The site (audience) a presented key acts for; `None` for an unknown, wrong or
/// revoked key.
pub async fn authenticate(pool: &PgPool, presented: &str) -> Result<Option<String>, sqlx::Error> {
    let Some(key) = parse(presented) else {
        return Ok(None);
    };
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT audience, secret_hash FROM site_api_keys WHERE key_id = $1 AND revoked_at IS NULL",
    )
    .bind(key.key_id)
    .fetch_optional(pool)
    .await?;
    let presented_hash: [u8; 32] = Sha256::digest(key.secret.as_bytes()).into();
    Ok(row
        .and_then(|(audience, stored)| digests_equal(&stored, &presented_hash).then_some(audience)))
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<SiteKeyRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id, audience, label, created_at, created_by, revoked_at
         FROM site_api_keys ORDER BY created_at DESC, key_id",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_as_its_id_and_secret() {
        let key = NewSiteKey::generate();
        let revealed = key.reveal();
        let parsed = parse(&revealed).expect("parses");
        assert_eq!(parsed.key_id, key.key_id);
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(parsed.secret.as_bytes())),
            key.secret_hash()
        );
        assert_ne!(NewSiteKey::generate().reveal(), revealed, "random");
    }

    #[test]
    fn anything_else_is_no_key() {
        for garbage in [
            "",
            "wrsk_",
            "wrsk_0123456789abcdef",
            "wrsk_0123456789abcdef_",
            "wrsk_0123456789abcdeg_secret",
            "wrsk_0123456789abcde_xsecret",
            "sk_0123456789abcdef_secret",
            "wrsk_ü123456789abcdef_secret",
        ] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
    }
}
