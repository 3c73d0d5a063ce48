//! The waiting-room service's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;

use clap::Args;

use crate::config::CommonConfig;

#[derive(Debug, Clone, Args)]
pub struct WaitingRoomConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the fan and admin API listens on.
    #[arg(long, env = "WAITING_ROOM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}
