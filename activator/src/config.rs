//! The activator's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;

use clap::Args;
use contract::config::CommonConfig;

#[derive(Debug, Clone, Args)]
pub struct ActivatorConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health, readiness and metrics endpoints.
    #[arg(long, env = "ACTIVATOR_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Kafka consumer group shared by all activators; each partition is owned by one.
    #[arg(
        long,
        env = "ACTIVATOR_GROUP_ID",
        default_value = "waiting-room-activator"
    )]
    pub group_id: String,

    /// How long a dead letter or a batch of decisions may wait for the broker's
    /// acknowledgement before the queue retries it on its next tick.
    #[arg(long, env = "DEAD_LETTER_TIMEOUT_MS", default_value_t = 5_000)]
    pub dead_letter_timeout_ms: u64,
}

contract::service_config!(ActivatorConfig);
