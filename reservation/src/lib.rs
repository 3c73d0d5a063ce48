//! The reservation service: accepts reservations only from tickets that are active right
//! now, holds seats in PostgreSQL without overselling, pushes reservation status and the
//! seat map over SSE, and publishes every status change to Kafka through a
//! transactional outbox. It also serves the fan's seat page.
//!
//! [`store`] owns the SQL (holds, transitions, outbox rows); [`api`] the HTTP API;
//! [`streams`] the live pushes fed by [`changes`], seat maps through [`seat_maps`] (one
//! read per change, whatever the number of viewers); [`outbox`] the relay to Kafka;
//! [`sweeper`] expires holds; [`error`] says how each refusal looks over HTTP;
//! [`openapi`] describes the API.

mod api;
mod changes;
mod config;
mod error;
pub mod openapi;
mod outbox;
mod pages;
mod seat_maps;
mod state;
mod store;
mod streams;
mod sweeper;
mod ticket_keys;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use contract::connections::Connections;
use contract::kafka::{self, DurableProducer};
use contract::redis_schema::RedisKeys;
use contract::ticket_state::TicketStore;
use platform::http::HttpServer;
use tokio_util::sync::CancellationToken;

pub use config::ReservationConfig;

use self::changes::ChangeFeed;
use self::outbox::OutboxRelay;
use self::seat_maps::SeatMaps;
use self::state::{AppState, SharedState};
use self::store::{ReservationStatus, ReservationStore};
use self::ticket_keys::TicketKeys;

/// Connects to the dependencies and binds the listener; run the result to serve.
pub async fn build(
    config: ReservationConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let common = &config.common;
    let supervisor = common.supervisor(shutdown);
    let server = common.server_settings(config.listen);
    let Connections {
        postgres,
        redis,
        readiness,
    } = Connections::open(common, &[&common.reservations_topic], &supervisor).await?;
    let keys = TicketKeys::load(&config, &supervisor).await?;
    let changes = ChangeFeed::start(postgres.clone(), &supervisor);
    let store = ReservationStore::new(postgres.clone());
    let seat_maps = SeatMaps::start(store.clone(), &changes, &supervisor);
    // Every outcome is a series from the start, so rates over it are never absent.
    for status in ReservationStatus::ALL {
        status.count(0);
    }
    let produce_timeout = Duration::from_millis(config.outbox_produce_timeout_ms);
    OutboxRelay {
        postgres: postgres.clone(),
        producer: DurableProducer::new(kafka::producer_config(&common.kafka, 5, produce_timeout))?,
        topic: common.reservations_topic.clone(),
        batch_size: config.outbox_batch_size.max(1),
        idle_poll: Duration::from_millis(config.outbox_poll_ms),
        produce_timeout,
    }
    .start(&supervisor);
    sweeper::start(
        store.clone(),
        Duration::from_millis(config.hold_sweep_interval_ms.max(10)),
        &supervisor,
    );
    let state = Arc::new(AppState {
        store,
        tickets: TicketStore::new(redis, RedisKeys::new(common.redis_key_prefix.clone())),
        keys,
        admission_audiences: config.admission_audiences.clone(),
        changes,
        seat_maps,
        max_seats: config.max_seats_per_reservation.max(1),
        hold_slots: tokio::sync::Semaphore::new(common.database_max_connections.max(1) as usize),
        hold: chrono::Duration::seconds(i64::try_from(config.hold_seconds)?),
        stream_keepalive: Duration::from_secs(config.stream_keepalive_seconds.max(1)),
        shutdown: supervisor.shutdown().clone(),
        seat_page: pages::render_seat_page(&config.waiting_room_base_url),
    });
    HttpServer::bind(server, routes(state), readiness, supervisor).await
}

fn routes(state: SharedState) -> Router {
    Router::new()
        .route("/events/{event_id}/seats", get(pages::seat_page))
        .route("/assets/{file}", get(pages::asset))
        .route("/v1/events/{event_id}/seats", get(api::seats))
        .route(
            "/v1/events/{event_id}/seats/events",
            get(streams::seat_events),
        )
        .route("/v1/events/{event_id}/reservations", post(api::reserve))
        .route(
            "/v1/reservations/{reservation_id}",
            get(api::get).delete(api::release),
        )
        .route(
            "/v1/reservations/{reservation_id}/confirm",
            post(api::confirm),
        )
        .route(
            "/v1/reservations/{reservation_id}/events",
            get(streams::reservation_events),
        )
        .route(
            "/openapi.json",
            platform::openapi::get(&openapi::document()),
        )
        .with_state(state)
}
