//! The contract every service of the waiting room shares, defined once.
//!
//! - [`config`]: the settings every service reads (flags with environment variables).
//! - [`kafka`]: client settings (durable producer, consumer group), typed produce errors.
//! - [`kafka_connection`]: how clients reach the brokers (TLS, SASL) and the replication.
//! - [`redis_schema`]: every Redis key and hash field, and the scripts built from them.
//! - [`ticket_record`]: the Kafka record written for every ticket.
//! - [`token`]: ticket tokens (EdDSA JWT); signing only with the `signing` feature.
//! - [`ticket_state`]: where a ticket stands, read and changed in Redis.
//! - [`queue`]: positions and wait estimates from one serving counter per queue.
//! - [`catalog`], [`live_catalog`]: events and queues as operators configure them.
//! - [`schedule`], [`draw`]: scheduled sales and the pre-queue's verifiable draw.
//! - [`serving_announcement`]: what the activator publishes after each tick.
//! - [`ticket_decision`]: the activator's decisions, journalled and published to Kafka.
//! - [`seats`]: seat naming and layout bounds.
//! - [`topic_reader`]: a topic's records read back, for the jobs that recompute from Kafka.
//! - [`db`]: the PostgreSQL schema (`migrations/`), embedded.
//! - [`connections`]: the dependencies every service opens at start.

pub mod catalog;
pub mod config;
pub mod connections;
pub mod db;
pub mod draw;
pub mod kafka;
pub mod kafka_connection;
pub mod live_catalog;
pub mod queue;
pub mod redis_schema;
pub mod schedule;
pub mod seats;
pub mod serving_announcement;
pub mod ticket_decision;
pub mod ticket_record;
pub mod ticket_state;
pub mod token;
pub mod topic_reader;
