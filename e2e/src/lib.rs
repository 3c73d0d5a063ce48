//! Cross-service checks and load tools for the fan's side of the waiting room.
//!
//! The tests under `tests/` start the three services in-process against the real
//! PostgreSQL, Redis and Kafka (`tests/support`, which reuses each service's own test
//! support), follow tickets over their live streams ([`sse`]) and drive the fan's pages
//! in headless Chromium ([`browser`]). The load tools share [`load`]: `sse-load` holds
//! thousands of ticket streams against a running stack, `seat-load` thousands of
//! seat-map viewers while seats are held, `chaos-load` a sale while faults are injected
//! (and what each cost, checked against the stores). The test kit (`testkit/`) is a
//! dev-dependency only.

pub mod browser;
pub mod load;
pub mod sse;
