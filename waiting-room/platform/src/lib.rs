//! The service platform: what every service of the waiting room runs on, whatever it
//! does.
//!
//! An HTTP server bound before it serves (so tests can listen on port 0) with the
//! operational routes and graceful shutdown ([`http`]), bounding what a client may hold
//! ([`server`]: header and idle timeouts, a connection cap, TCP keepalive); long-lived background tasks
//! under one [`supervisor`], so a task that dies makes the service not ready and ends
//! it; [`readiness`] checks over named dependencies; logs and Prometheus metrics
//! ([`observability`]); shutdown on signals ([`shutdown`]) and one backoff for
//! everything that retries ([`retry`]); the JSON error body and request extractors
//! ([`error`], [`bearer`]); the public API's cross-origin allow-list ([`cors`]);
//! PostgreSQL and Redis connections ([`connections`]; a single Redis or a Redis Cluster:
//! [`redis_connection`]) and
//! TLS to them and to key servers ([`tls`]); event streams that proxies pass through
//! unbuffered ([`sse`]); the fan pages' shared assets ([`assets`]); what every
//! service's OpenAPI document shares ([`openapi`]); lower-case [`hex`] for the secrets
//! and digests the services show.
//!
//! Nothing here knows about tickets, queues or events: that is the contract crate.

pub mod assets;
pub mod bearer;
pub mod connections;
pub mod cors;
pub mod error;
pub mod event_streams;
pub mod hex;
pub mod http;
pub mod observability;
pub mod openapi;
pub mod readiness;
pub mod redis_connection;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod supervisor;
pub mod tls;
