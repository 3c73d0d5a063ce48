//! Test support: per-test isolation on the real PostgreSQL, Redis and Kafka.
//!
//! [`TestEnv::new`] reads the same environment as the services (`deploy/local.env`,
//! exported by `deploy/local.sh test`, or the defaults), then gives the test a fresh
//! database migrated from `migrations/`, a unique Redis key prefix and unique topics.
//! Dropping it removes all three, so the suite can run twice in a row and in parallel
//! against the same services. A dependency that is down fails the test with a message
//! saying how to start it; nothing is skipped silently.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use redis::aio::ConnectionManager;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::WaitingRoomConfig;
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

#[derive(Debug, Parser)]
struct WaitingRoomEnvironment {
    #[command(flatten)]
    config: WaitingRoomConfig,
}

/// One test's private slice of the real services.
pub struct TestEnv {
    /// Configuration pointing at this test's database, key prefix and topics.
    pub common: CommonConfig,
    pub postgres: PgPool,
    pub redis: ConnectionManager,
    /// The key this test's waiting-room signs tickets with.
    pub signing_key: SigningKey,
    pub signing_key_file: PathBuf,
    pub admin_token: String,
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

        let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
        let signing_key_file = std::env::temp_dir().join(format!("wr-test-{unique}.pem"));
        let pem = signing_key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode the signing key");
        std::fs::write(&signing_key_file, pem.as_bytes()).expect("write the signing key");

        Self {
            common,
            postgres,
            redis,
            signing_key,
            signing_key_file,
            admin_token: format!("admin-{unique}"),
            server_url,
            database_name,
        }
    }

    /// The waiting-room's configuration for this environment: defaults, this test's
    /// database, prefix, topics and keys, and a port-0 listener.
    pub fn waiting_room_config(&self) -> WaitingRoomConfig {
        let mut config = WaitingRoomEnvironment::parse_from(["test"]).config;
        config.common = self.common.clone();
        config.listen = any_port();
        config.admin_token = Some(self.admin_token.clone());
        config.signing_key_file = Some(self.signing_key_file.clone());
        config.previous_public_key_files = Vec::new();
        config.join_rate_limit_per_second = 0.0;
        config
    }

    /// Starts a waiting-room with `config`.
    pub async fn start_waiting_room(&self, config: WaitingRoomConfig) -> RunningService {
        RunningService::start(|shutdown| crate::app::build(config, shutdown)).await
    }

    /// A service binary to run as a child process (for tests that SIGKILL it), pointed
    /// at this environment's database, key prefix and topics; the caller adds the
    /// service's own settings.
    pub fn service_command(&self, binary: &str) -> std::process::Command {
        let common = &self.common;
        let mut command = std::process::Command::new(binary);
        command
            .env("DATABASE_URL", &common.database_url)
            .env("REDIS_URL", &common.redis_url)
            .env("REDIS_KEY_PREFIX", &common.redis_key_prefix)
            .env("KAFKA_BROKERS", &common.kafka_brokers)
            .env("TICKETS_TOPIC", &common.tickets_topic)
            .env("TICKETS_PARTITIONS", common.tickets_partitions.to_string())
            .env("TICKETS_DLQ_TOPIC", &common.tickets_dlq_topic)
            .env("RESERVATIONS_TOPIC", &common.reservations_topic);
        command
    }

    /// The public half of the test's signing key (SPKI PEM).
    pub fn public_key_pem(&self) -> String {
        self.signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the public key")
    }

    pub fn redis_keys(&self) -> RedisKeys {
        RedisKeys::new(self.common.redis_key_prefix.clone())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Clean-up needs its own runtime: Drop cannot await, and the test's runtime may be
        // shutting down.
        let _ = std::fs::remove_file(&self.signing_key_file);
        // After a failure, services the test started may still hold Kafka clients; deleting
        // their topics under them crashes librdkafka on Tansu's metadata. Keep the topics.
        let delete_topics = !std::thread::panicking();
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
                if delete_topics {
                    let deletion = kafka::delete_topics(&common.kafka_brokers, &topics);
                    if let Ok(Err(error)) =
                        tokio::time::timeout(Duration::from_secs(10), deletion).await
                    {
                        eprintln!("test clean-up: cannot delete topics: {error}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Every Redis key of the deployment `common` names, found with SCAN in large steps
/// (KEYS would block a shared Redis that holds millions of other keys).
async fn deployment_keys(common: &CommonConfig) -> redis::RedisResult<Vec<String>> {
    let client = redis::Client::open(common.redis_url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let pattern = RedisKeys::new(common.redis_key_prefix.clone()).all_keys_pattern();
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(100_000)
            .query_async(&mut connection)
            .await?;
        found.extend(keys);
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

async fn delete_redis_keys(common: &CommonConfig) -> redis::RedisResult<()> {
    let keys = deployment_keys(common).await?;
    let client = redis::Client::open(common.redis_url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    for chunk in keys.chunks(10_000) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(&mut connection)
            .await?;
    }
    Ok(())
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

/// Admin and fan calls against a running waiting-room, for tests.
pub struct WaitingRoomClient<'a> {
    pub service: &'a RunningService,
    pub admin_token: &'a str,
    pub http: reqwest::Client,
}

impl<'a> WaitingRoomClient<'a> {
    pub fn new(service: &'a RunningService, env: &'a TestEnv) -> Self {
        Self {
            service,
            admin_token: &env.admin_token,
            http: reqwest::Client::new(),
        }
    }

    /// `PUT /admin/events/{event_id}`; panics unless it succeeds.
    pub async fn put_event(&self, event_id: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .put(self.service.url(&format!("/admin/events/{event_id}")))
            .bearer_auth(self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("PUT /admin/events");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert!(
            status.is_success(),
            "PUT /admin/events/{event_id}: {status} {body}"
        );
        body
    }

    /// `GET /admin/events/{event_id}`: configuration and live statistics.
    pub async fn get_event(&self, event_id: &str) -> serde_json::Value {
        self.http
            .get(self.service.url(&format!("/admin/events/{event_id}")))
            .bearer_auth(self.admin_token)
            .send()
            .await
            .expect("GET /admin/events")
            .json()
            .await
            .expect("JSON body")
    }

    /// `POST /v1/events/{event_id}/tickets` with an optional user id.
    pub async fn join(&self, event_id: &str, user_id: Option<&str>) -> reqwest::Response {
        let request = self
            .http
            .post(self.service.url(&format!("/v1/events/{event_id}/tickets")));
        let request = match user_id {
            Some(user_id) => request.json(&serde_json::json!({ "user_id": user_id })),
            None => request,
        };
        request.send().await.expect("POST join")
    }

    /// Joins and returns the ticket; panics unless the join succeeds.
    pub async fn join_ok(&self, event_id: &str, user_id: Option<&str>) -> serde_json::Value {
        let response = self.join(event_id, user_id).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert!(status.is_success(), "join {event_id}: {status} {body}");
        body
    }

    /// `GET /v1/tickets/{token}`.
    pub async fn status(&self, token: &str) -> reqwest::Response {
        self.http
            .get(self.service.url(&format!("/v1/tickets/{token}")))
            .send()
            .await
            .expect("GET status")
    }
}

/// Reads the record at `partition`/`offset` of `topic`, if it arrives within 10 s.
pub async fn read_record(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: StreamConsumer =
        kafka::consumer_config(brokers, &format!("test-reader-{}", Uuid::new_v4()))
            .create()
            .expect("create a consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
        .await
        .ok()?
        .ok()?;
    Some(message.detach())
}

/// A record read back: its key and JSON value.
pub type KeyedRecord = (Option<String>, serde_json::Value);

/// Reads `topic` from the beginning until `enough` says so (60 s at most), in the order
/// each partition delivered the records.
pub async fn read_topic(
    common: &CommonConfig,
    topic: &str,
    enough: impl Fn(&[KeyedRecord]) -> bool,
) -> Vec<KeyedRecord> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer = kafka::consumer_config(
        &common.kafka_brokers,
        &format!("test-reader-{}", Uuid::new_v4()),
    )
    .set("auto.offset.reset", "earliest")
    .create()
    .expect("create a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !enough(&records) {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} records arrived on {topic}",
            records.len()
        );
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        {
            let key = message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned());
            let value = serde_json::from_slice(message.payload().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null);
            records.push((key, value));
        }
    }
    records
}

/// A Tansu broker of the test's own on a free port, for tests that stop the broker.
pub struct PrivateBroker {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut broker = Self { port, child: None };
        broker.restart().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port; the memory engine starts empty.
    pub async fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run tansu ({error}); {HOW_TO_START}"));
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private tansu did not listen on port {}", self.port);
    }

    /// Kills the broker and waits until its port is closed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
