//! The `reservation` binary.

use clap::Parser;
use platform::{observability, shutdown};
use reservation::ReservationConfig;

// Holds and streams allocate per request; mimalloc's thread-local free lists keep that
// cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
