//! The reservation service's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;

use clap::Args;
use waiting_room::config::CommonConfig;

#[derive(Debug, Clone, Args)]
pub struct ReservationConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the reservation API listens on.
    #[arg(long, env = "RESERVATION_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}
