//! The operators' API under `/admin`, behind `Authorization: Bearer <admin token>`.
//!
//! Events and queues live in PostgreSQL. The activation policy and mode belong to the
//! queue (partition): `PUT /admin/events/{id}` with `activation` or a state of `open`,
//! `paused` or `passthrough` changes the queue of that event, and so every event sharing
//! the queue (all events, in global mode). `closed` is per event: it refuses the event's
//! joins while its queue keeps draining. Every change reloads this instance's catalog at
//! once and the others' through LISTEN/NOTIFY.
//!
//! [`auth`] checks the credentials and names the operator, [`audit`] logs every change, [`requests`] parses and validates bodies,
//! [`handlers`] answers, [`catalog_store`] holds the SQL, [`stats`] reads the live
//! counters from Redis, [`live_stats`] streams them to the console, [`reports`] serves the post-sale report.
//! The sites' API keys (`/admin/site-keys`) are handled in [`crate::admission`].

pub(crate) mod audit;
mod auth;
pub(crate) mod catalog_store;
pub mod console;
pub(crate) mod handlers;
pub(crate) mod live_stats;
pub(crate) mod reports;
mod requests;
mod stats;

use axum::routing::{delete, get, put};
use axum::{middleware, Router};
use platform::error;

pub use self::auth::AdminCredentials;
pub use self::live_stats::LiveStats;
use crate::admission::admin_keys;
use crate::state::SharedState;

/// The admin routes, every one of them (unknown paths included) behind the credentials,
/// but the console's page.
pub fn routes(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/events", get(handlers::list_events))
        .route("/audit", get(audit::list_audit))
        .route(
            "/events/{event_id}",
            get(handlers::get_event)
                .put(handlers::put_event)
                .delete(handlers::delete_event),
        )
        .route(
            "/events/{event_id}/stats/events",
            get(live_stats::stats_events),
        )
        .route(
            "/events/{event_id}/report",
            get(reports::get).post(reports::recompute),
        )
        .route(
            "/partitions",
            get(handlers::list_partitions).put(handlers::raise_partitions),
        )
        .route("/partitions/{partition}", put(handlers::put_partition))
        .route("/site-keys", get(admin_keys::list).post(admin_keys::create))
        .route("/site-keys/{key_id}", delete(admin_keys::revoke))
        .fallback(error::route_not_found)
        // A layer, not a route layer: unknown admin paths are refused without credentials too.
        .layer(middleware::from_fn_with_state(state, auth::require_admin))
        // Added after the layer, so outside it: the console page is the sign-in.
        .route("/", get(console::page))
}
