//! Cross-service checks and load tools for the fan's side of the waiting room.
//!
//! The tests under `tests/` start a waiting-room and an activator in-process against the
//! real PostgreSQL, Redis and Kafka ([`stack`]), follow tickets over their live streams
//! ([`sse`]) and drive the fan's pages in headless Chromium ([`browser`]). The
//! `sse-load` binary holds thousands of streams against a running stack.

pub mod browser;
pub mod sse;
pub mod stack;
