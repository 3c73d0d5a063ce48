//! Test support: per-test isolation on the real PostgreSQL, Redis and Kafka.
//!
//! [`TestEnv::new`] reads the same environment as the services (`deploy/local.env`,
//! exported by `deploy/local.sh test`, or the defaults), then gives the test a fresh
//! database migrated from `migrations/`, a unique Redis key prefix and unique topics.
//! Dropping it removes all three, so the suite can run twice in a row and in parallel
//! against the same services. A dependency that is down fails the test with a message
//! saying how to start it; nothing is skipped silently.

use std::future::Future;
use std::time::Duration;

use clap::Parser;
use redis::aio::ConnectionManager;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::CommonConfig;
use crate::kafka;
use crate::ops::HttpServer;
use crate::redis_keys::RedisKeys;

const HOW_TO_START: &str = "start the local stack first: `deploy/local.sh up` (or run the whole suite with `deploy/local.sh test`)";

#[derive(Debug, Parser)]
struct EnvironmentConfig {
    #[command(flatten)]
    common: CommonConfig,
}

/// One test's private slice of the real services.
pub struct TestEnv {
    /// Configuration pointing at this test's database, key prefix and topics.
    pub common: CommonConfig,
    pub postgres: PgPool,
    pub redis: ConnectionManager,
    server_url: String,
    database_name: String,
}

impl TestEnv {
    /// A fresh environment whose tickets topic has 4 partitions.
    pub async fn new() -> Self {
        Self::with_partitions(4).await
    }

    pub async fn with_partitions(partitions: i32) -> Self {
        crate::observability::init_tracing(crate::config::LogFormat::Text);
        let mut common = EnvironmentConfig::parse_from(["test"]).common;
        let unique = Uuid::now_v7().simple().to_string();

        let (server_url, _) = split_database_url(&common.database_url);
        let database_name = format!("wr_test_{unique}");
        let mut admin = PgConnection::connect(&format!("{server_url}/postgres"))
            .await
            .unwrap_or_else(|error| {
                panic!("PostgreSQL at {server_url} is not reachable ({error}); {HOW_TO_START}")
            });
        sqlx::query(&format!(r#"CREATE DATABASE "{database_name}""#))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        common.database_url = format!("{server_url}/{database_name}");
        let postgres = PgPoolOptions::new()
            .max_connections(5)
            .connect(&common.database_url)
            .await
            .expect("connect to the test database");
        crate::db::MIGRATOR
            .run(&postgres)
            .await
            .expect("apply migrations to the test database");

        common.redis_key_prefix = format!("test:{unique}");
        let redis_client = redis::Client::open(common.redis_url.as_str()).expect("valid REDIS_URL");
        let redis =
            tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(redis_client))
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|result| result.map_err(|error| error.to_string()))
                .unwrap_or_else(|error| {
                    panic!(
                        "Redis at {} is not reachable ({error}); {HOW_TO_START}",
                        common.redis_url
                    )
                });

        common.tickets_topic = format!("test.{unique}.tickets");
        common.tickets_dlq_topic = format!("test.{unique}.tickets.dlq");
        common.reservations_topic = format!("test.{unique}.reservations");
        common.tickets_partitions = partitions;
        let topics = [
            (common.tickets_topic.as_str(), partitions),
            (common.tickets_dlq_topic.as_str(), 1),
            (common.reservations_topic.as_str(), partitions),
        ];
        tokio::time::timeout(
            Duration::from_secs(20),
            kafka::ensure_topics(&common.kafka_brokers, &topics),
        )
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|result| result.map_err(|error| error.to_string()))
        .unwrap_or_else(|error| {
            panic!(
                "Kafka at {} is not usable ({error}); {HOW_TO_START}",
                common.kafka_brokers
            )
        });

        Self {
            common,
            postgres,
            redis,
            server_url,
            database_name,
        }
    }

    pub fn redis_keys(&self) -> RedisKeys {
        RedisKeys::new(self.common.redis_key_prefix.clone())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Clean-up needs its own runtime: Drop cannot await, and the test's runtime may be
        // shutting down.
        let server_url = self.server_url.clone();
        let database_name = self.database_name.clone();
        let common = self.common.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("clean-up runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) =
                    PgConnection::connect(&format!("{server_url}/postgres")).await
                {
                    let drop = format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#);
                    if let Err(error) = sqlx::query(&drop).execute(&mut admin).await {
                        eprintln!("test clean-up: cannot drop {database_name}: {error}");
                    }
                }
                if let Err(error) = delete_redis_keys(&common).await {
                    eprintln!("test clean-up: cannot delete redis keys: {error}");
                }
                let topics = [
                    common.tickets_topic.as_str(),
                    common.tickets_dlq_topic.as_str(),
                    common.reservations_topic.as_str(),
                ];
                let deletion = kafka::delete_topics(&common.kafka_brokers, &topics);
                if let Ok(Err(error)) =
                    tokio::time::timeout(Duration::from_secs(10), deletion).await
                {
                    eprintln!("test clean-up: cannot delete topics: {error}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn delete_redis_keys(common: &CommonConfig) -> redis::RedisResult<()> {
    let client = redis::Client::open(common.redis_url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let pattern = RedisKeys::new(common.redis_key_prefix.clone()).all_keys_pattern();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut connection)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `postgres://user@host:port/db?opts` → (`postgres://user@host:port`, `db?opts`).
fn split_database_url(url: &str) -> (String, String) {
    let scheme_end = url.find("://").map(|index| index + 3).unwrap_or(0);
    match url[scheme_end..].find('/') {
        Some(slash) => {
            let split = scheme_end + slash;
            (url[..split].to_owned(), url[split + 1..].to_owned())
        }
        None => (url.to_owned(), String::new()),
    }
}

/// A service started in-process on a port-0 listener.
pub struct RunningService {
    pub base_url: String,
    pub shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    /// Builds a service with a fresh shutdown token and serves it in the background.
    pub async fn start<F, Fut>(build: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<HttpServer>>,
    {
        let shutdown = CancellationToken::new();
        let server = build(shutdown.clone()).await.expect("build the service");
        let base_url = format!("http://{}", server.local_addr());
        let handle = tokio::spawn(server.run());
        Self {
            base_url,
            shutdown,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

/// A service's address for a test: loopback, port chosen by the OS.
pub fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("valid socket address")
}

/// Checks the operational surface every service shares against a running service:
/// `/healthz` 200, `/readyz` 200 with every named dependency ok, `/metrics` counting
/// requests by route template and status, and JSON errors for unknown routes.
pub async fn assert_operational_endpoints(service: &RunningService, dependencies: &[&str]) {
    let http = reqwest::Client::new();
    let health = http
        .get(service.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);

    let ready = http
        .get(service.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.expect("readyz body is JSON");
    assert_eq!(status, 200, "not ready: {body}");
    for dependency in dependencies {
        assert_eq!(
            body["checks"][dependency], "ok",
            "{dependency} check in {body}"
        );
    }

    let missing = http
        .get(service.url("/no/such/route"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("404 body is JSON");
    assert_eq!(body["error"]["code"], "route_not_found");

    let metrics = http
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    assert!(
        text.lines()
            .any(|line| line.starts_with("http_requests_total")
                && line.contains(r#"route="/readyz""#)
                && line.contains(r#"status="200""#)),
        "request counter by route and status missing from:\n{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "latency histogram missing from:\n{text}"
    );
}

/// Runs a service binary with `--help` and checks every listed environment variable
/// is documented there.
pub fn assert_help_documents(binary: &str, variables: &[&str]) {
    let output = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .expect("run the binary with --help");
    assert!(output.status.success(), "--help failed");
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in variables {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help does not document {variable}:\n{help}"
        );
    }
}

/// The environment variables every service reads (documented by each `--help`).
pub const COMMON_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "KAFKA_BROKERS",
    "TICKETS_TOPIC",
    "TICKETS_PARTITIONS",
    "TICKETS_DLQ_TOPIC",
    "RESERVATIONS_TOPIC",
    "LOG_FORMAT",
    "SHUTDOWN_GRACE_SECONDS",
];

#[cfg(test)]
mod tests {
    use super::split_database_url;

    #[test]
    fn database_url_splits_into_server_and_database() {
        let (server, database) =
            split_database_url("postgres://postgres@127.0.0.1:5432/waiting_room");
        assert_eq!(server, "postgres://postgres@127.0.0.1:5432");
        assert_eq!(database, "waiting_room");
    }
}
