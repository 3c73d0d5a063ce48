//! The waiting-room service: the fans' entry API (join, position by polling and over
//! SSE, the pages) and the operators' admin API.
//!
//! [`tickets`] holds the fans' side, [`admin`] the operators', [`admission`] the
//! protected site's (admission tokens' settings, site keys, the slot API), [`draw_audit`]
//! the public side of a shuffled pre-queue's draw, [`openapi`] the API's description;
//! [`build`] wires
//! configuration to real connections and a router. `main.rs` and the integration tests
//! both start the service through it, so tests run exactly what production runs (on a
//! port-0 listener).
//!
//! [`admin`]: crate::admin
//! [`admission`]: crate::admission

mod admin;
mod admission;
mod config;
pub mod draw_audit;
mod entry;
mod error;
pub mod openapi;
mod page_messages;
mod pages;
pub mod report;
mod state;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use axum::routing::{get, post};
use axum::Router;
use contract::connections::Connections;
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::RedisKeys;
use contract::ticket_state::TicketStore;
use platform::http::HttpServer;
use tokio_util::sync::CancellationToken;

pub use config::{PartitionMode, WaitingRoomConfig};
pub use entry::challenge::ChallengeKeys;

use self::admin::{AdminCredentials, LiveStats};
use self::entry::issuers::TrustedIssuers;
use self::page_messages::PageMessages;
use self::state::{AppState, Keys, SharedState};
use self::tickets::join;
use self::tickets::join_store::JoinStore;
use self::tickets::presence::PresenceRegistry;
use self::tickets::rate_limit::{Limit, RateLimiter};
use self::tickets::redis_batch::RedisBatcher;
use self::tickets::registration_repair::RegistrationRepair;
use self::tickets::serving_feed::ServingFeed;
use self::tickets::stream_slots::StreamSlots;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: WaitingRoomConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let supervisor = common.supervisor(shutdown);
    let mut server = common.server_settings(config.listen);
    if config.lean_streams {
        server.event_stream_paths = Some(tickets::stream::is_stream_path);
    }
    // Every stream holds a connection: more streams than connections cannot be served.
    let max_streams = if config.max_streams > server.connections.max_connections {
        tracing::warn!(
            max_streams = config.max_streams,
            max_connections = server.connections.max_connections,
            "MAX_STREAMS is above the connection cap; lowered to it"
        );
        server.connections.max_connections
    } else {
        config.max_streams
    };
    join::register_metrics();
    let admin_credentials =
        AdminCredentials::new(config.admin_token.as_deref(), &config.admin_tokens)?;
    let Keys {
        signer,
        verifier,
        challenges,
    } = Keys::load(&config)?;
    let Connections {
        postgres,
        redis,
        readiness,
    } = Connections::open(common, &[&common.tickets_topic], &supervisor).await?;
    let keys = RedisKeys::new(common.redis_key_prefix.clone());
    let catalog = LiveCatalog::start(postgres.clone(), &supervisor).await;
    let serving_feed = ServingFeed::start(
        common.redis_client()?,
        redis.clone(),
        keys.clone(),
        // Raised online since the topic was created, if the catalog says so.
        catalog
            .current()
            .partition_count(&common.tickets_topic, common.tickets_partitions),
        &supervisor,
    )?;
    let issuers = TrustedIssuers::load(
        config.trusted_issuers_file.as_deref(),
        common.jwks_ca_file.as_deref(),
    )
    .await?;
    let page_messages = PageMessages::load(config.page_messages_dir.as_deref())?;
    issuers.start_refresh(
        Duration::from_secs(config.issuer_keys_refresh_seconds),
        &supervisor,
    );
    let batcher = RedisBatcher::start(redis.clone(), &supervisor);
    let joins = JoinStore::new(redis.clone(), keys.clone(), batcher.clone());
    let registration_repair = RegistrationRepair::start(joins.clone(), &supervisor);
    let presence = PresenceRegistry::default();
    presence.start(redis.clone(), keys.clone(), catalog.clone(), &supervisor);
    let state = Arc::new(AppState {
        common: common.clone(),
        catalog,
        tickets: TicketStore::new(redis.clone(), keys.clone()),
        joins,
        registration_repair,
        rate_limiter: RateLimiter::new(
            Limit::new(
                config.join_rate_limit_per_second,
                config.join_rate_limit_burst,
            ),
            Limit::new(
                config.client_join_rate_limit_per_second,
                config.client_join_rate_limit_burst,
            ),
            Limit::new(
                config.event_join_rate_limit_per_second,
                config.event_join_rate_limit_burst,
            ),
            keys.clone(),
            batcher,
        ),
        keys,
        issuers,
        challenges,
        producer: state::producer(&config)?,
        postgres,
        redis,
        signer,
        verifier,
        admin_credentials,
        live_stats: LiveStats::default(),
        tickets_topic: common.tickets_topic.clone(),
        configured_partitions: common.tickets_partitions,
        kafka: common.kafka.clone(),
        partition_mode: config.partition_mode,
        ticket_ttl_seconds: i64::try_from(config.ticket_ttl_seconds)
            .context("TICKET_TTL_SECONDS is too large")?,
        produce_timeout: Duration::from_millis(config.produce_timeout_ms),
        event_settle: Duration::from_secs(config.event_settle_seconds),
        retry_after_seconds: config.queue_retry_after_seconds,
        trusted_proxies: config.trusted_proxies.clone(),
        serving_feed,
        presence,
        stream_slots: StreamSlots::new(
            max_streams,
            usize::try_from(config.max_streams_per_ticket).unwrap_or(usize::MAX),
        ),
        stream_keepalive: Duration::from_secs(config.stream_keepalive_seconds.max(1)),
        stream_retry: Duration::from_millis(config.stream_retry_ms),
        reservation_base_url: config.reservation_base_url.clone(),
        page_messages,
        shutdown: supervisor.shutdown().clone(),
    });
    HttpServer::bind(server, routes(state), readiness, supervisor).await
}

fn routes(state: SharedState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/events/{event_id}", get(pages::event_page))
        .route("/assets/{file}", get(pages::asset))
        .route("/assets/messages/{file}", get(pages::messages))
        .route("/v1/events", get(pages::list_events))
        .route("/v1/events/{event_id}", get(pages::get_event))
        .route("/v1/events/{event_id}/tickets", post(tickets::join::join))
        .route(
            "/v1/events/{event_id}/challenge",
            get(entry::challenge::issue),
        )
        .route("/v1/tickets/me", get(tickets::status::me))
        .route("/v1/tickets/me/events", get(tickets::stream::my_events))
        .route("/v1/tickets/{token}", get(tickets::status::by_path))
        .route("/v1/tickets/{token}/events", get(tickets::stream::events))
        .route("/.well-known/jwks.json", get(tickets::status::jwks))
        .route(
            "/v1/admissions/{jti}/complete",
            post(admission::slot_api::complete),
        )
        .route(
            "/v1/admissions/{jti}/release",
            post(admission::slot_api::release),
        )
        .route(
            "/openapi.json",
            platform::openapi::get(&openapi::document()),
        )
        .nest("/admin", admin::routes(state.clone()))
        .with_state(state)
}
