//! Configuration shared by every service.
//!
//! Each binary flattens [`CommonConfig`] into its own `clap` parser, so every setting is a
//! command-line flag with an environment-variable equivalent, and `deploy/local.env` can
//! configure all three services with one set of variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use platform::cors::AllowedOrigin;
use platform::http::ServerSettings;
use platform::observability::LogFormat;
use platform::redis_connection::RedisClient;
use platform::server::ConnectionPolicy;
use platform::supervisor::Supervisor;
use tokio_util::sync::CancellationToken;

use crate::kafka_connection::KafkaConnection;

/// Connections and names every service needs.
#[derive(Debug, Clone, Args)]
pub struct CommonConfig {
    /// PostgreSQL connection URL (source of truth for events, queues, seats, reservations).
    /// TLS through its parameters: `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/waiting_room"
    )]
    pub database_url: String,

    /// Maximum PostgreSQL connections in this process's pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Redis connection URL (serving counters, active tickets, pub/sub). `rediss://`
    /// for TLS; an ACL user and password go in the URL: `rediss://user:password@host:6380/`.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// Redis is a Redis Cluster: `REDIS_URL` lists seed nodes, comma-separated
    /// (`redis://10.0.0.1:7000/,redis://10.0.0.2:7000/`); the client finds the rest,
    /// routes by slot and follows failovers.
    #[arg(long, env = "REDIS_CLUSTER", value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_cluster: bool,

    /// PEM file of the certificate authorities that sign Redis's certificate (a
    /// `rediss://` URL), used instead of the system's trust store.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Prefix of every Redis key this deployment owns, so several deployments (or test
    /// runs) can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "wr")]
    pub redis_key_prefix: String,

    /// The brokers, how to reach them (TLS, SASL) and the replication expected.
    #[command(flatten)]
    pub kafka: KafkaConnection,

    /// Topic holding one record per ticket; each partition is one queue.
    #[arg(long, env = "TICKETS_TOPIC", default_value = "waiting-room.tickets")]
    pub tickets_topic: String,

    /// Number of partitions of the tickets topic (created up front; Tansu cannot add
    /// partitions later).
    #[arg(long, env = "TICKETS_PARTITIONS", default_value_t = 16)]
    pub tickets_partitions: i32,

    /// Dead-letter topic for ticket records that cannot be processed.
    #[arg(
        long,
        env = "TICKETS_DLQ_TOPIC",
        default_value = "waiting-room.tickets.dlq"
    )]
    pub tickets_dlq_topic: String,

    /// Topic receiving the activator's decisions (each ticket activated or abandoned,
    /// and when), which the post-sale report reads.
    #[arg(
        long,
        env = "DECISIONS_TOPIC",
        default_value = "waiting-room.decisions"
    )]
    pub decisions_topic: String,

    /// Topic receiving reservation status changes from the outbox relay.
    #[arg(
        long,
        env = "RESERVATIONS_TOPIC",
        default_value = "reservations.events"
    )]
    pub reservations_topic: String,

    /// Largest accepted request body, in bytes; a larger one is refused with 413
    /// `payload_too_large` before it is read.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// PEM file of certificate authorities trusted, besides the public ones, when a
    /// service fetches over https: the reservation service's TICKET_JWKS_URL, trusted
    /// issuers' JWKS, the published event `verify-draw` reads.
    #[arg(long, env = "JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,

    /// Origins whose front ends may call the public API (`/v1/...`) from the browser,
    /// comma separated, each `https://host[:port]`; none by default. The admin API and
    /// the pages are never opened to other origins.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<AllowedOrigin>,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long shutdown waits for in-flight requests before giving up, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// When set, `/readyz` and `/metrics` are served on this address instead of the
    /// service's own, so a deployment can keep them off the public port (`/healthz`
    /// stays on both, for load balancers).
    #[arg(long, env = "OPERATIONS_LISTEN")]
    pub operations_listen: Option<SocketAddr>,

    /// Seconds a client has to send a request's headers; also the longest a keep-alive
    /// connection may sit idle between requests (slow or silent clients are closed).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_read_timeout_seconds: u64,

    /// Client connections this process serves at once; more are closed as soon as they
    /// are accepted. 0: as many as the open-file limit allows after 512 descriptors kept
    /// for the process itself (a larger value is lowered to that, with a log line).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Seconds a client connection may be silent before TCP keepalive probes start; a
    /// peer that stops acknowledging (vanished without a reset) is dropped after twice
    /// this (`TCP_USER_TIMEOUT` on Linux), freeing its stream and its presence.
    #[arg(long, env = "TCP_KEEPALIVE_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub tcp_keepalive_seconds: u64,

    /// When a background task dies (a consumer loop, a listener), how long the service
    /// answers `/readyz` with 503 naming it before it shuts down and exits non-zero, in
    /// milliseconds: long enough for a load balancer to take it out of rotation.
    #[arg(long, env = "FAILED_TASK_EXIT_DELAY_MS", default_value_t = 2_000)]
    pub failed_task_exit_delay_ms: u64,
}

impl CommonConfig {
    /// Every topic of the deployment with its partition count at creation.
    pub fn topics(&self) -> [(&str, i32); 4] {
        [
            (self.tickets_topic.as_str(), self.tickets_partitions),
            (self.tickets_dlq_topic.as_str(), 1),
            (self.decisions_topic.as_str(), 1),
            (self.reservations_topic.as_str(), self.tickets_partitions),
        ]
    }

    /// The Redis client for `REDIS_URL` (a cluster's seed nodes with `REDIS_CLUSTER`),
    /// trusting `REDIS_CA_FILE` when set.
    pub fn redis_client(&self) -> anyhow::Result<RedisClient> {
        let certificates = || -> anyhow::Result<Option<redis::TlsCertificates>> {
            Ok(match &self.redis_ca_file {
                None => None,
                Some(path) => Some(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(platform::tls::read_ca_file(path)?),
                }),
            })
        };
        let open = |url: &str| -> anyhow::Result<redis::Client> {
            Ok(match certificates()? {
                None => redis::Client::open(url)?,
                Some(certificates) => redis::Client::build_with_tls(url, certificates)?,
            })
        };
        if !self.redis_cluster {
            return Ok(RedisClient::Single(open(&self.redis_url)?));
        }
        let nodes = self
            .redis_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(open)
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!nodes.is_empty(), "REDIS_URL lists no cluster node");
        Ok(RedisClient::cluster(nodes, certificates()?)?)
    }

    /// How long shutdown waits for requests and tasks.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Where and how the service serves HTTP, its own API on `listen`.
    pub fn server_settings(&self, listen: SocketAddr) -> ServerSettings {
        ServerSettings {
            listen,
            operations_listen: self.operations_listen,
            max_body_bytes: self.max_body_bytes,
            grace: self.shutdown_grace(),
            cors_origins: self.cors_allowed_origins.clone(),
            event_stream_paths: None,
            connections: ConnectionPolicy {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
                max_connections: ConnectionPolicy::connection_cap(self.max_connections),
                keepalive: Duration::from_secs(self.tcp_keepalive_seconds),
            },
        }
    }

    /// The supervisor of a service's background tasks, stopping with `shutdown`: the
    /// first thing a service builds, so the metrics recorder is installed here, before
    /// anything records (a metric registered earlier would never reach `/metrics`).
    pub fn supervisor(&self, shutdown: CancellationToken) -> Supervisor {
        platform::observability::prometheus();
        platform::tls::install_crypto_provider();
        platform::server::raise_open_file_limit();
        Supervisor::with_exit_delay(
            shutdown,
            Duration::from_millis(self.failed_task_exit_delay_ms),
        )
    }
}

/// A service's settings: the common ones plus its own, among them where it listens.
/// Lets one helper build any service's configuration (the test kit does). Implement it
/// with [`service_config!`](crate::service_config) for a struct with `common` and
/// `listen` fields.
pub trait ServiceConfig: Args + Clone {
    fn common_mut(&mut self) -> &mut CommonConfig;
    fn listen_mut(&mut self) -> &mut SocketAddr;
}

/// Implements [`ServiceConfig`] for a settings struct with `common: CommonConfig` and
/// `listen: SocketAddr` fields.
#[macro_export]
macro_rules! service_config {
    ($settings:ty) => {
        impl $crate::config::ServiceConfig for $settings {
            fn common_mut(&mut self) -> &mut $crate::config::CommonConfig {
                &mut self.common
            }
            fn listen_mut(&mut self) -> &mut ::std::net::SocketAddr {
                &mut self.listen
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::CommonConfig;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        common: CommonConfig,
    }

    fn parse(args: &[&str]) -> Result<CommonConfig, clap::Error> {
        Flags::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|flags| flags.common)
    }

    #[test]
    fn a_cluster_takes_its_seed_nodes_from_the_url_list_and_refuses_an_empty_one() {
        let cluster = parse(&[
            "--redis-cluster",
            "--redis-url",
            "redis://127.0.0.1:7000/, redis://127.0.0.1:7001/",
        ])
        .expect("valid settings");
        let client = cluster.redis_client().expect("a cluster client");
        assert!(client.is_cluster());
        assert_eq!(client.address(), "127.0.0.1:7000,127.0.0.1:7001");
        let empty = parse(&["--redis-cluster", "--redis-url", " , "]).expect("valid flags");
        assert!(empty.redis_client().is_err(), "a cluster without nodes");
        let bad = parse(&[
            "--redis-cluster",
            "--redis-url",
            "redis://127.0.0.1:7000/,nonsense",
        ])
        .expect("valid flags");
        assert!(bad.redis_client().is_err(), "a node that is no URL");
    }

    #[test]
    fn connection_settings_refuse_values_that_would_disable_them() {
        for bad in [
            ["--header-read-timeout-seconds", "0"],
            ["--tcp-keepalive-seconds", "0"],
            ["--operations-listen", "not-an-address"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} accepted");
        }
        let settings = parse(&[
            "--header-read-timeout-seconds",
            "3",
            "--max-connections",
            "7",
        ])
        .expect("valid settings")
        .server_settings("127.0.0.1:0".parse().expect("address"));
        assert_eq!(settings.connections.header_read_timeout.as_secs(), 3);
        assert!(settings.connections.max_connections <= 7);
        assert_eq!(settings.operations_listen, None);
    }
}
