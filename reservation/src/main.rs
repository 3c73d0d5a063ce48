//! The `reservation` binary.

use clap::Parser;
use reservation::ReservationConfig;
use waiting_room::{observability, shutdown};

#[derive(Debug, Parser)]
#[command(
    name = "reservation",
    version,
    about = "Queue-token waiting room: reservations"
)]
struct Cli {
    #[command(flatten)]
    config: ReservationConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    observability::init_tracing(cli.config.common.log_format);
    let shutdown = shutdown::on_signals();
    reservation::build(cli.config, shutdown).await?.run().await
}
