//! `external-checkout`: a stand-in for an existing ticketing site behind the waiting
//! room, and the Rust example of docs/integration.md. It knows only what a real site
//! would: the waiting room's JWKS URL, its own audience and its site API key.
//!
//! - `GET /checkout` with `Authorization: Bearer <admission token>` (or
//!   `?admission_token=`): 200 `{"admitted": jti, "sub": …}` (and `X-Admitted: jti`)
//!   for an admitted fan, 401
//!   `{"refused": reason}` otherwise.
//! - `POST /buy` and `POST /leave`, with the same token: the purchase is done (or the
//!   fan leaves), so the site frees the slot through the slot API and answers what the
//!   waiting room answered.
//!
//! Keys are fetched at start and again whenever a token names a key id not seen yet
//! (the waiting room rotated its key), at most once every few seconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::RwLock;

#[derive(Debug, Parser)]
#[command(about = "A stand-in checkout that admits fans with the waiting room's admission tokens")]
struct Args {
    /// Where to listen; the bound address is printed on stdout.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The waiting room's public keys (`…/.well-known/jwks.json`).
    #[arg(long, env = "JWKS_URL")]
    jwks_url: String,
    /// This site's name: the `aud` its admission tokens must carry.
    #[arg(long, env = "AUDIENCE")]
    audience: String,
    /// The waiting room's base URL, for the slot API.
    #[arg(long, env = "WAITING_ROOM_URL")]
    waiting_room_url: String,
    /// This site's API key (`POST /admin/site-keys`).
    #[arg(long, env = "SITE_API_KEY", hide_env_values = true)]
    api_key: String,
}

/// The claims this site reads; `aud` and `exp` are checked by the library.
#[derive(Debug, Deserialize)]
struct Admission {
    jti: String,
    sub: Option<String>,
    event_id: String,
}

struct Site {
    args: Args,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

/// Unknown key ids refetch the JWKS at most this often (a forger cannot make us hammer it).
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// The keys the JWKS at `url` publishes, by key id.
async fn fetch_keys(http: &reqwest::Client, url: &str) -> anyhow::Result<Keys> {
    let set: JwkSet = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let by_kid = set
        .keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
        .collect();
    Ok(Keys {
        by_kid,
        fetched_at: Instant::now(),
    })
}

impl Site {
    /// The admission a token proves, or why it proves none.
    async fn admit(&self, token: &str) -> Result<Admission, String> {
        let kid = decode_header(token)
            .map_err(|error| format!("not a JWT: {error}"))?
            .kid
            .ok_or("no key id")?;
        if !self.keys.read().await.by_kid.contains_key(&kid) {
            let mut keys = self.keys.write().await;
            if !keys.by_kid.contains_key(&kid) && keys.fetched_at.elapsed() >= REFETCH_AT_MOST_EVERY
            {
                *keys = fetch_keys(&self.http, &self.args.jwks_url)
                    .await
                    .map_err(|error| format!("JWKS: {error}"))?;
            }
        }
        let keys = self.keys.read().await;
        let key = keys.by_kid.get(&kid).ok_or("unknown key")?;
        // EdDSA only: the header's `alg` cannot choose a weaker check.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[&self.args.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "jti"]);
        validation.leeway = 5;
        decode::<Admission>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|error| error.to_string())
    }

    /// Tells the waiting room the fan bought (`complete`) or left (`release`).
    async fn settle(&self, jti: &str, action: &str) -> Response {
        let url = format!(
            "{}/v1/admissions/{jti}/{action}",
            self.args.waiting_room_url.trim_end_matches('/')
        );
        match self
            .http
            .post(url)
            .bearer_auth(&self.args.api_key)
            .send()
            .await
        {
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                (status, Json(body)).into_response()
            }
            Err(error) => (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": error.to_string()})),
            )
                .into_response(),
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    admission_token: Option<String>,
}

fn presented(headers: &HeaderMap, query: TokenQuery) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or(query.admission_token)
}

async fn admitted(
    site: &Site,
    headers: &HeaderMap,
    query: TokenQuery,
) -> Result<Admission, Response> {
    let refused = |reason: String| {
        (StatusCode::UNAUTHORIZED, Json(json!({"refused": reason}))).into_response()
    };
    let token = presented(headers, query).ok_or_else(|| refused("no admission token".into()))?;
    site.admit(&token).await.map_err(refused)
}

async fn checkout(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    match admitted(&site, &headers, query).await {
        Ok(admission) => (
            // For an edge in front (nginx `auth_request_set`): who was admitted.
            [("x-admitted", admission.jti.clone())],
            Json(json!({
                "admitted": admission.jti,
                "sub": admission.sub,
                "event_id": admission.event_id,
            })),
        )
            .into_response(),
        Err(refusal) => refusal,
    }
}

/// `POST /buy` (`complete`) and `POST /leave` (`release`) for an admitted fan.
async fn settle(site: Arc<Site>, headers: HeaderMap, query: TokenQuery, action: &str) -> Response {
    match admitted(&site, &headers, query).await {
        Ok(admission) => site.settle(&admission.jti, action).await,
        Err(refusal) => refusal,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let keys = fetch_keys(&http, &args.jwks_url)
        .await
        .context("fetch the JWKS")?;
    let listen = args.listen;
    let site = Site {
        args,
        http,
        keys: RwLock::new(keys),
    };
    let app = Router::new()
        .route("/checkout", get(checkout))
        .route(
            "/buy",
            post(|State(site), headers, Query(query)| settle(site, headers, query, "complete")),
        )
        .route(
            "/leave",
            post(|State(site), headers, Query(query)| settle(site, headers, query, "release")),
        )
        .with_state(Arc::new(site));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
