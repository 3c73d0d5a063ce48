//! The waiting room's shared contract and its entry API service.
//!
//! All three services (waiting-room, activator, reservation) link this library so that
//! there is exactly one definition of everything they must agree on: configuration,
//! Kafka client settings, the Redis key schema, the database schema (migrations), and the
//! operational HTTP surface every service exposes (`/healthz`, `/readyz`, `/metrics`).
//! The waiting-room service's own HTTP API lives in [`app`].

pub mod app;
pub mod bearer;
pub mod catalog;
pub mod config;
pub mod connections;
pub mod db;
pub mod error;
pub mod kafka;
pub mod live_catalog;
pub mod observability;
pub mod ops;
pub mod presence;
pub mod queue;
pub mod readiness;
pub mod redis_batch;
pub mod redis_keys;
pub mod redis_store;
pub mod seats;
pub mod serving_announcement;
pub mod serving_feed;
pub mod shutdown;
pub mod static_assets;
pub mod ticket_record;
pub mod ticket_store;
pub mod token;

#[cfg(feature = "test-support")]
pub mod testing;

// Every service allocates per request (bodies, JSON, tokens); mimalloc's thread-local
// free lists cut glibc malloc's share of a join's CPU. Defined here so the three
// binaries (and the tests) share it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
