//! The `reservation` binary: serves the reservation API, or prints its OpenAPI document.

use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    config: ReservationConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Print the API's OpenAPI 3.1 document (served at /openapi.json) and exit:
    /// `reservation openapi > docs/openapi/reservation.json` refreshes the checked-in copy.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            observability::init_tracing(cli.config.common.log_format);
            let shutdown = shutdown::on_signals();
            reservation::build(cli.config, shutdown).await?.run().await
        }
        Command::Openapi => {
            println!("{}", reservation::openapi::document().to_pretty_json()?);
            Ok(())
        }
    }
}
