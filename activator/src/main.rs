//! The `activator` binary.

use activator::ActivatorConfig;
use clap::Parser;
use waiting_room::{observability, shutdown};

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
