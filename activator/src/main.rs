//! The `activator` binary.

use activator::ActivatorConfig;
use clap::Parser;
use platform::{observability, shutdown};

// Ticks allocate (script arguments, announcements); mimalloc's thread-local free lists
// keep that cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "activator",
    version,
    about = "Queue-token waiting room: activator"
)]
struct Cli {
    #[command(flatten)]
    config: ActivatorConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    observability::init_tracing(cli.config.common.log_format);
    let shutdown = shutdown::on_signals();
    activator::build(cli.config, shutdown).await?.run().await
}
