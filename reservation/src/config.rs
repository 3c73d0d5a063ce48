//! The reservation service's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use contract::config::CommonConfig;

#[derive(Debug, Clone, Args)]
pub struct ReservationConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the reservation API listens on.
    #[arg(long, env = "RESERVATION_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Public keys (SPKI PEM) that verify ticket tokens, comma separated. When empty,
    /// the keys are fetched from TICKET_JWKS_URL. This service can verify tickets, never
    /// mint them.
    #[arg(long, env = "TICKET_PUBLIC_KEY_FILES", value_delimiter = ',')]
    pub ticket_public_key_files: Vec<PathBuf>,

    /// The waiting-room's JWKS, fetched at start and every JWKS_REFRESH_SECONDS (so a
    /// key rotation needs no restart).
    #[arg(
        long,
        env = "TICKET_JWKS_URL",
        default_value = "http://127.0.0.1:8080/.well-known/jwks.json"
    )]
    pub ticket_jwks_url: String,

    /// Sites (admission tokens' `aud`) whose admission tokens this service takes in
    /// place of ticket tokens, comma separated; none by default, so a token issued to a
    /// site cannot act as the fan here unless the operator says so.
    #[arg(long, env = "ADMISSION_AUDIENCES", value_delimiter = ',')]
    pub admission_audiences: Vec<String>,

    /// How often the JWKS is fetched again, in seconds.
    #[arg(long, env = "JWKS_REFRESH_SECONDS", default_value_t = 300)]
    pub jwks_refresh_seconds: u64,

    /// Most seats one reservation may hold.
    #[arg(long, env = "MAX_SEATS_PER_RESERVATION", default_value_t = 4)]
    pub max_seats_per_reservation: usize,

    /// How long a hold lasts before it expires and its seats return, in seconds.
    #[arg(long, env = "HOLD_SECONDS", default_value_t = 300)]
    pub hold_seconds: u64,

    /// How often expired holds are swept, in milliseconds.
    #[arg(long, env = "HOLD_SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub hold_sweep_interval_ms: u64,

    /// Outbox rows the relay publishes per round.
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 500)]
    pub outbox_batch_size: i64,

    /// How long the relay sleeps when the outbox is empty, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 200)]
    pub outbox_poll_ms: u64,

    /// How long the relay waits for the broker's acknowledgement, in milliseconds.
    #[arg(long, env = "OUTBOX_PRODUCE_TIMEOUT_MS", default_value_t = 5_000)]
    pub outbox_produce_timeout_ms: u64,

    /// Keep-alive comment interval on reservation and seat streams, in seconds.
    #[arg(long, env = "STREAM_KEEPALIVE_SECONDS", default_value_t = 15)]
    pub stream_keepalive_seconds: u64,

    /// Base URL of the waiting-room, for the seat page's way back to the line.
    #[arg(
        long,
        env = "WAITING_ROOM_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub waiting_room_base_url: String,
}

contract::service_config!(ReservationConfig);
