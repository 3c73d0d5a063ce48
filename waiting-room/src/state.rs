//! What every waiting-room handler shares: configuration, the live catalog, the ticket
//! store, the Kafka producer and the token keys.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use contract::config::CommonConfig;
use contract::kafka::{self, DurableProducer};
use contract::kafka_connection::KafkaConnection;
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::RedisKeys;
use contract::ticket_state::TicketStore;
use contract::token::{TicketSigner, TicketVerifier};
use platform::redis_connection::RedisConnection;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminCredentials, LiveStats};
use crate::config::{PartitionMode, WaitingRoomConfig};
use crate::entry::challenge::ChallengeKeys;
use crate::entry::issuers::TrustedIssuers;
use crate::error::WaitingRoomError;
use crate::page_messages::PageMessages;
use crate::tickets::join_store::JoinStore;
use crate::tickets::presence::PresenceRegistry;
use crate::tickets::rate_limit::RateLimiter;
use crate::tickets::registration_repair::RegistrationRepair;
use crate::tickets::serving_feed::ServingFeed;
use crate::tickets::stream_slots::StreamSlots;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    /// The shared settings (the post-sale report reads every topic they name).
    pub common: CommonConfig,
    pub postgres: PgPool,
    pub redis: RedisConnection,
    pub catalog: LiveCatalog,
    pub tickets: TicketStore,
    pub joins: JoinStore,
    /// Registrations Redis refused after the broker acknowledged their ticket.
    pub registration_repair: RegistrationRepair,
    pub keys: RedisKeys,
    /// The ticketing sites whose enqueue tokens admit fans.
    pub issuers: TrustedIssuers,
    pub challenges: ChallengeKeys,
    pub producer: DurableProducer,
    pub signer: TicketSigner,
    pub verifier: TicketVerifier,
    pub admin_credentials: AdminCredentials,
    /// The admin stats streams' aggregators, one per watched event.
    pub live_stats: LiveStats,
    pub rate_limiter: RateLimiter,
    pub tickets_topic: String,
    /// The tickets topic's partition count at start (`TICKETS_PARTITIONS`); see
    /// [`AppState::partition_count`].
    pub configured_partitions: i32,
    pub kafka: KafkaConnection,
    pub partition_mode: PartitionMode,
    pub ticket_ttl_seconds: i64,
    pub produce_timeout: Duration,
    /// How long a closed event settles before its partition can go (see the setting).
    pub event_settle: Duration,
    pub retry_after_seconds: u64,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub serving_feed: ServingFeed,
    pub presence: PresenceRegistry,
    pub stream_slots: StreamSlots,
    pub stream_keepalive: Duration,
    pub stream_retry: Duration,
    pub reservation_base_url: String,
    /// The fan pages' words, per language.
    pub page_messages: PageMessages,
    /// Ends live streams when the server shuts down.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The tickets topic's partitions now: more than at start once raised online.
    pub fn partition_count(&self) -> i32 {
        self.catalog
            .current()
            .partition_count(&self.tickets_topic, self.configured_partitions)
    }

    /// Redis did not answer: the fan should retry shortly; nothing was half-done that
    /// a retry cannot repeat.
    pub fn store_unavailable(&self, error: redis::RedisError) -> WaitingRoomError {
        tracing::warn!(%error, "redis request failed");
        WaitingRoomError::StoreUnavailable {
            retry_after_seconds: self.retry_after_seconds,
        }
    }
}

/// The signing key, the verifier (current plus rotated-out keys) and the challenge
/// secrets derived from the signing key, from configuration.
pub struct Keys {
    pub signer: TicketSigner,
    pub verifier: TicketVerifier,
    pub challenges: ChallengeKeys,
}

impl Keys {
    pub fn load(config: &WaitingRoomConfig) -> anyhow::Result<Self> {
        let path = config
            .signing_key_file
            .as_ref()
            .context("SIGNING_KEY_FILE (--signing-key-file) is required to serve")?;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signing key {}", path.display()))?;
        let signer = TicketSigner::from_pkcs8_pem(&pem)?;
        // The current key plus the rotated-out ones: tickets they signed stay valid.
        let verifier = TicketVerifier::from_public_pem_files(&config.previous_public_key_files)?
            .with_key(signer.verifying_key());
        let challenges = ChallengeKeys::derive(&pem, config.challenge_ttl_seconds);
        Ok(Self {
            signer,
            verifier,
            challenges,
        })
    }
}

pub fn producer(config: &WaitingRoomConfig) -> anyhow::Result<DurableProducer> {
    let timeout = Duration::from_millis(config.produce_timeout_ms);
    let mut client_config =
        kafka::producer_config(&config.common.kafka, config.producer_linger_ms, timeout);
    client_config.set(
        "batch.num.messages",
        config.producer_batch_messages.to_string(),
    );
    Ok(DurableProducer::new(client_config)?)
}
