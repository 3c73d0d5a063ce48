//! The activator's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;

use clap::Args;
use waiting_room::config::CommonConfig;

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
}
