//! The waiting-room service: the fans' entry API and the operators' admin API.
//!
//! [`build`] wires configuration to real connections and a router; `main.rs` and the
//! integration tests both start the service through it, so tests run exactly what
//! production runs (on a port-0 listener).

mod admin;
mod config;
mod join;
mod pages;
mod rate_limit;
mod state;
mod stats;
mod status;
mod stream;
mod stream_slots;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{middleware, Router};
use tokio_util::sync::CancellationToken;

pub use config::{PartitionMode, WaitingRoomConfig};

use self::rate_limit::RateLimiter;
use self::state::{AppState, Keys, SharedState};
use self::stream_slots::StreamSlots;
use crate::connections::Connections;
use crate::error;
use crate::live_catalog::LiveCatalog;
use crate::ops::{self, HttpServer};
use crate::presence::PresenceRegistry;
use crate::redis_keys::RedisKeys;
use crate::serving_feed::ServingFeed;
use crate::ticket_store::TicketStore;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: WaitingRoomConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let admin_token = config
        .admin_token
        .clone()
        .filter(|token| !token.is_empty())
        .context("ADMIN_TOKEN (--admin-token) is required to serve")?;
    let Keys { signer, verifier } = Keys::load(&config)?;
    let Connections {
        postgres,
        redis,
        readiness,
    } = Connections::open(common, &common.tickets_topic, &shutdown).await?;
    let keys = RedisKeys::new(common.redis_key_prefix.clone());
    let catalog = LiveCatalog::start(postgres.clone(), shutdown.clone()).await;
    let (serving_feed, feed_task) = ServingFeed::start(
        &common.redis_url,
        redis.clone(),
        keys.clone(),
        common.tickets_partitions,
        shutdown.clone(),
    )?;
    let presence = PresenceRegistry::default();
    let presence_task = presence.start(
        redis.clone(),
        keys.clone(),
        catalog.clone(),
        shutdown.clone(),
    );
    let state = Arc::new(AppState {
        catalog,
        tickets: TicketStore::new(redis.clone(), keys),
        producer: state::producer(&config)?,
        postgres,
        redis,
        signer,
        verifier,
        admin_token,
        rate_limiter: RateLimiter::new(
            config.join_rate_limit_per_second,
            config.join_rate_limit_burst,
        ),
        tickets_topic: common.tickets_topic.clone(),
        partitions: common.tickets_partitions,
        partition_mode: config.partition_mode,
        ticket_ttl_seconds: i64::try_from(config.ticket_ttl_seconds)
            .context("TICKET_TTL_SECONDS is too large")?,
        produce_timeout: Duration::from_millis(config.produce_timeout_ms),
        retry_after_seconds: config.queue_retry_after_seconds,
        trust_forwarded_for: config.trust_forwarded_for,
        serving_feed,
        presence,
        stream_slots: StreamSlots::new(config.max_streams),
        stream_keepalive: Duration::from_secs(config.stream_keepalive_seconds.max(1)),
        stream_retry: Duration::from_millis(config.stream_retry_ms),
        reservation_base_url: config.reservation_base_url.clone(),
        shutdown: shutdown.clone(),
    });
    let router = ops::finish(
        routes(state).layer(DefaultBodyLimit::max(config.max_body_bytes)),
        readiness,
    );
    let grace = Duration::from_secs(common.shutdown_grace_seconds);
    Ok(HttpServer::bind(config.listen, router, shutdown, grace)
        .await?
        .with_background(feed_task)
        .with_background(presence_task))
}

fn routes(state: SharedState) -> Router {
    let admin = Router::new()
        .route(
            "/events/{event_id}",
            get(admin::get_event).put(admin::put_event),
        )
        .route("/partitions", get(admin::list_partitions))
        .route("/partitions/{partition}", put(admin::put_partition))
        .fallback(error::route_not_found)
        // A layer, not a route layer: unknown admin paths are refused without credentials too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    Router::new()
        .route("/", get(pages::index))
        .route("/events/{event_id}", get(pages::event_page))
        .route("/assets/{file}", get(pages::asset))
        .route("/v1/events", get(pages::list_events))
        .route("/v1/events/{event_id}", get(pages::get_event))
        .route("/v1/events/{event_id}/tickets", post(join::join))
        .route("/v1/tickets/me", get(status::me))
        .route("/v1/tickets/{token}", get(status::by_path))
        .route("/v1/tickets/{token}/events", get(stream::events))
        .route("/.well-known/jwks.json", get(status::jwks))
        .nest("/admin", admin)
        .with_state(state)
}
