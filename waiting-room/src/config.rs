//! The waiting-room service's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use contract::config::CommonConfig;
use serde::Serialize;

#[derive(Debug, Clone, Args)]
pub struct WaitingRoomConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the fan and admin API listens on.
    #[arg(long, env = "WAITING_ROOM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Bearer token for every /admin route, labelled `admin` in the audit log. This or
    /// ADMIN_TOKENS is required to serve.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Named operators' admin tokens, comma separated `label=token` (the label is who
    /// the audit log says made a change; 1-64 of A-Z a-z 0-9 . _ -).
    #[arg(
        long,
        env = "ADMIN_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub admin_tokens: Vec<String>,

    /// Ed25519 private key (PKCS#8 PEM) that signs ticket tokens. Required to serve.
    #[arg(long, env = "SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Public keys (SPKI PEM) of rotated-out signing keys, comma separated: still listed
    /// in the JWKS and still accepted, so tickets they signed stay valid.
    #[arg(long, env = "PREVIOUS_PUBLIC_KEY_FILES", value_delimiter = ',')]
    pub previous_public_key_files: Vec<PathBuf>,

    /// Ticketing sites whose enqueue tokens admit fans: a JSON file
    /// `{"issuers": [{"issuer", "audience", "jwks_url" | "public_key_file" + "algorithm",
    /// "event_claim"?, "leeway_seconds"?, "max_lifetime_seconds"?}]}` (see
    /// docs/security.md). Without it, no event can require an enqueue token.
    #[arg(long, env = "TRUSTED_ISSUERS_FILE")]
    pub trusted_issuers_file: Option<PathBuf>,

    /// How often every issuer's JWKS is fetched again, in seconds (a token naming an
    /// unknown key id also fetches it, at most every 30 s).
    #[arg(long, env = "ISSUER_KEYS_REFRESH_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub issuer_keys_refresh_seconds: u64,

    /// How long a proof-of-work challenge may be solved and used, in seconds.
    #[arg(long, env = "CHALLENGE_TTL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub challenge_ttl_seconds: u64,

    /// How long a ticket token is valid, in seconds.
    #[arg(long, env = "TICKET_TTL_SECONDS", default_value_t = 86_400)]
    pub ticket_ttl_seconds: u64,

    /// Where new events' queues go when the admin names no partition: `global` (every
    /// event on partition 0) or `per-event` (each new event gets a free partition).
    #[arg(long, env = "PARTITION_MODE", value_enum, default_value_t = PartitionMode::PerEvent)]
    pub partition_mode: PartitionMode,

    /// Joins per second one client (an IP; an IPv6 /64) may make into one event, shared
    /// by every instance through Redis; 0 turns this limit off.
    #[arg(long, env = "JOIN_RATE_LIMIT_PER_SECOND", default_value_t = 1.0)]
    pub join_rate_limit_per_second: f64,

    /// Joins one client may make into one event per window of `burst / rate` seconds
    /// (the window opens with its first join).
    #[arg(long, env = "JOIN_RATE_LIMIT_BURST", default_value_t = 10)]
    pub join_rate_limit_burst: u32,

    /// Joins per second one client may make across every event; 0 turns it off.
    #[arg(long, env = "CLIENT_JOIN_RATE_LIMIT_PER_SECOND", default_value_t = 2.0)]
    pub client_join_rate_limit_per_second: f64,

    /// Joins one client may make across every event per window of `burst / rate`
    /// seconds.
    #[arg(long, env = "CLIENT_JOIN_RATE_LIMIT_BURST", default_value_t = 20)]
    pub client_join_rate_limit_burst: u32,

    /// Joins per second into one event from every client together (protects the
    /// broker and the line's fairness under a flood); 0 (default) turns it off.
    #[arg(long, env = "EVENT_JOIN_RATE_LIMIT_PER_SECOND", default_value_t = 0.0)]
    pub event_join_rate_limit_per_second: f64,

    /// Joins into one event per window of `burst / rate` seconds, from every client.
    #[arg(long, env = "EVENT_JOIN_RATE_LIMIT_BURST", default_value_t = 1_000)]
    pub event_join_rate_limit_burst: u32,

    /// Proxies (CIDRs, comma separated) whose `X-Forwarded-For` is believed: the
    /// client is the right-most address there that is not one of them. Empty: the
    /// peer address is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// How long a join waits for the broker's acknowledgement before answering 503.
    #[arg(long, env = "PRODUCE_TIMEOUT_MS", default_value_t = 2_000)]
    pub produce_timeout_ms: u64,

    /// Seconds an event must have been closed before its partition is released or it is
    /// deleted: joins that passed the open check on any instance just before the close
    /// may still be producing their tickets (at least a few produce timeouts).
    #[arg(long, env = "EVENT_SETTLE_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub event_settle_seconds: u64,

    /// Producer batching delay: joins arriving within it share one broker round trip. An
    /// upper bound: a batch leaves as soon as `PRODUCER_BATCH_MESSAGES` joins wait.
    #[arg(long, env = "PRODUCER_LINGER_MS", default_value_t = 5)]
    pub producer_linger_ms: u32,

    /// Joins per produce batch at most (librdkafka's `batch.num.messages`). A full batch
    /// is sent at once: under load joins stop waiting out the linger, while each batch's
    /// fixed cost (measured: about 0.1 ms of CPU in this process, 0.05 ms in Tansu) is
    /// still shared by enough joins to stay small.
    #[arg(long, env = "PRODUCER_BATCH_MESSAGES", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub producer_batch_messages: u32,

    /// Live ticket streams (SSE) this instance holds open at most; more are refused
    /// with 503 `too_many_streams` (the page falls back to polling).
    #[arg(long, env = "MAX_STREAMS", default_value_t = 50_000)]
    pub max_streams: usize,

    /// Live streams one ticket may hold open at once (a fan with a second tab); more are
    /// refused with 429 `too_many_streams`.
    #[arg(long, env = "MAX_STREAMS_PER_TICKET", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub max_streams_per_ticket: u64,

    /// Keep-alive comment interval on idle ticket streams, in seconds (at most 15 keeps
    /// proxies from closing them).
    #[arg(long, env = "STREAM_KEEPALIVE_SECONDS", default_value_t = 15)]
    pub stream_keepalive_seconds: u64,

    /// Serve ticket streams off hyper, each a few hundred bytes of its own plus the
    /// socket (hyper keeps 16 KiB of buffers per connection); `false` serves them
    /// through hyper like every other request.
    #[arg(long, env = "LEAN_STREAMS", default_value_t = true, action = clap::ArgAction::Set)]
    pub lean_streams: bool,

    /// Reconnection delay suggested to EventSource clients (`retry:`), in milliseconds.
    #[arg(long, env = "STREAM_RETRY_MS", default_value_t = 3_000)]
    pub stream_retry_ms: u64,

    /// Base URL of the reservation service, for the seat page an active fan goes to.
    #[arg(
        long,
        env = "RESERVATION_BASE_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub reservation_base_url: String,

    /// A folder of page message catalogs (`{language}.json`, e.g. `ja.json`): each adds
    /// a language to the fan pages, or rewords an embedded one (English, Korean) key by
    /// key. Read at start (see docs/operations.md).
    #[arg(long, env = "PAGE_MESSAGES_DIR")]
    pub page_messages_dir: Option<PathBuf>,

    /// `Retry-After` sent with 503 `queue_unavailable`, in seconds.
    #[arg(long, env = "QUEUE_RETRY_AFTER_SECONDS", default_value_t = 2)]
    pub queue_retry_after_seconds: u64,
}

contract::service_config!(WaitingRoomConfig);

/// The default partition mapping for new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionMode {
    Global,
    PerEvent,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::WaitingRoomConfig;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: WaitingRoomConfig,
    }

    #[test]
    fn a_produce_batch_holds_at_least_one_join() {
        assert!(Flags::try_parse_from(["waiting-room", "--producer-batch-messages", "0"]).is_err());
        let flags = Flags::try_parse_from(["waiting-room", "--producer-batch-messages", "1"])
            .expect("1 is a valid batch size");
        assert_eq!(flags.config.producer_batch_messages, 1);
    }

    #[test]
    fn a_closed_event_settles_between_a_second_and_a_day() {
        for refused in ["0", "86401", "-1", "soon"] {
            assert!(
                Flags::try_parse_from(["waiting-room", "--event-settle-seconds", refused]).is_err(),
                "{refused}"
            );
        }
        let flags = Flags::try_parse_from(["waiting-room", "--event-settle-seconds", "1"])
            .expect("1 s is a valid settling time");
        assert_eq!(flags.config.event_settle_seconds, 1);
    }
}
