//! The test kit: what the integration tests of every crate share, and nothing a service
//! links (it is only ever a dev-dependency; CI checks that no service's normal build
//! pulls it in).
//!
//! - [`env`]: per-test isolation on the real PostgreSQL, Redis and Kafka.
//! - [`service`]: any service's configuration for a test, started in-process on port 0.
//! - [`checks`]: assertions every service must pass (operational routes, `--help`).
//! - [`client`]: admin and fan calls against a running waiting-room.
//! - [`issuer`]: ticketing sites that sign enqueue tokens (JWKS over HTTP, key files).
//! - [`kafka`]: reading records back from a topic.
//! - [`openapi`]: a service's OpenAPI document is checked in and lists every route.
//! - [`firewall`]: packet loss on one loopback port (a client that vanished).
//! - [`broker`]: a private Tansu broker, for tests that stop the broker.
//! - [`proxy`]: HAProxy with the deployment's settings in front of several instances.
//! - [`redis_server`]: a private Redis, for tests that make Redis stop answering, or
//!   serving TLS to an ACL user only.
//! - [`redis_cluster`]: a private six-node Redis Cluster, for the failover tests.
//! - [`postgres_server`]: a private PostgreSQL that accepts TLS connections only.
//! - [`tls`]: a certificate authority per test, and TLS in front of a plaintext server.
//! - [`wait`]: waiting for a condition with a deadline, instead of sleeping.

pub mod broker;
pub mod checks;
pub mod client;
pub mod env;
pub mod firewall;
pub mod issuer;
pub mod kafka;
pub mod openapi;
pub mod postgres_server;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_server;
pub mod service;
pub mod tls;
pub mod wait;

pub use env::TestEnv;
pub use service::RunningService;

/// What a test prints when a dependency is down.
pub(crate) const HOW_TO_START: &str = "start the local stack first: `deploy/local.sh up` (or run the whole suite with `deploy/local.sh test`)";
