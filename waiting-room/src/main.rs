//! The `waiting-room` binary: serves the entry API, or runs a one-off set-up task
//! (database migrations, Kafka topics) for deployment scripts.

use clap::{Parser, Subcommand};
use contract::{db, kafka};
use platform::{observability, shutdown};
use waiting_room::draw_audit::VerifyDraw;
use waiting_room::report::ReportCommand;
use waiting_room::WaitingRoomConfig;

// Every request allocates (bodies, JSON, tokens); mimalloc's thread-local free lists
// cut glibc malloc's share of a join's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "waiting-room",
    version,
    about = "Queue-token waiting room: entry API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    config: WaitingRoomConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
    /// Create the tickets, dead-letter, decisions and reservation-events topics if
    /// missing, then exit.
    CreateTopics,
    /// Compute an event's post-sale report from Kafka and PostgreSQL, store it and
    /// print it (for a cron job).
    Report(ReportCommand),
    /// Recompute a shuffled pre-queue's ranks from the Kafka records and the published
    /// seed, checking the seed against its commitment (one JSON line per ticket, by rank).
    VerifyDraw(VerifyDraw),
    /// Print the API's OpenAPI 3.1 document (served at /openapi.json) and exit:
    /// `waiting-room openapi > docs/openapi/waiting-room.json` refreshes the checked-in copy.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = &cli.config.common;
    let command = cli.command.unwrap_or(Command::Serve);
    // The document alone goes to standard output, no logs.
    if !matches!(command, Command::Openapi) {
        observability::init_tracing(common.log_format);
    }
    match command {
        Command::Serve => {
            let shutdown = shutdown::on_signals();
            waiting_room::build(cli.config, shutdown).await?.run().await
        }
        Command::Migrate => db::migrate(&common.database_url).await,
        Command::VerifyDraw(verify) => verify.run(common).await,
        Command::Report(report) => report.run(common).await,
        Command::CreateTopics => {
            common.kafka.validate()?;
            kafka::ensure_topics(&common.kafka, &common.topics()).await
        }
        Command::Openapi => {
            println!("{}", waiting_room::openapi::document().to_pretty_json()?);
            Ok(())
        }
    }
}
