//! Per-test isolation on the real PostgreSQL, Redis and Kafka.
//!
//! [`TestEnv::new`] reads the same environment as the services (`deploy/local.env`,
//! exported by `deploy/local.sh test`, or the defaults), then gives the test a fresh
//! database migrated from `migrations/`, a unique Redis key prefix and unique topics.
//! Dropping it removes all three, so the suite can run twice in a row and in parallel
//! against the same services. A dependency that is down fails the test with a message
//! saying how to start it; nothing is skipped silently.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use contract::config::{CommonConfig, ServiceConfig};
use contract::kafka;
use contract::redis_schema::{RedisKeys, TicketHash};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use platform::observability::{self, LogFormat};
use platform::redis_connection::RedisConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

use crate::service::{self, any_port};
use crate::HOW_TO_START;

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
    pub redis: RedisConnection,
    /// The key this test's waiting-room signs tickets with.
    pub signing_key: SigningKey,
    pub signing_key_file: PathBuf,
    pub admin_token: String,
    /// The server's maintenance database, where test databases are created and dropped.
    maintenance: PgConnectOptions,
    database_name: String,
}

impl TestEnv {
    /// A fresh environment whose tickets topic has 4 partitions.
    pub async fn new() -> Self {
        Self::with_partitions(4).await
    }

    pub async fn with_partitions(partitions: i32) -> Self {
        Self::on(Self::environment(), partitions).await
    }

    /// The dependencies' settings as the services would read them.
    pub fn environment() -> CommonConfig {
        let mut common = EnvironmentConfig::parse_from(["test"]).common;
        // The tests' broker is a single node: without a setting, expect one copy.
        if std::env::var_os("KAFKA_REPLICATION_FACTOR").is_none() {
            common.kafka.replication_factor = 1;
            common.kafka.min_insync_replicas = 1;
        }
        common
    }

    /// A fresh environment on the dependencies `common` names (e.g. private servers
    /// reached over TLS).
    pub async fn on(mut common: CommonConfig, partitions: i32) -> Self {
        observability::init_tracing(LogFormat::Text);
        platform::tls::install_crypto_provider();
        let unique = Uuid::now_v7().simple().to_string();

        let maintenance = PgConnectOptions::from_str(&common.database_url)
            .expect("DATABASE_URL is a PostgreSQL URL")
            .database("postgres");
        let database_name = format!("wr_test_{unique}");
        let mut admin = maintenance.connect().await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL at {} is not reachable ({error}); {HOW_TO_START}",
                common.database_url
            )
        });
        sqlx::query(&format!(r#"CREATE DATABASE "{database_name}""#))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let mut database_url =
            url::Url::parse(&common.database_url).expect("DATABASE_URL is a URL");
        database_url.set_path(&database_name);
        common.database_url = database_url.into();
        let postgres = PgPoolOptions::new()
            .max_connections(5)
            .connect(&common.database_url)
            .await
            .expect("connect to the test database");
        contract::db::MIGRATOR
            .run(&postgres)
            .await
            .expect("apply migrations to the test database");

        common.redis_key_prefix = format!("test:{unique}");
        let redis_client = common.redis_client().expect("valid REDIS_URL");
        let redis = tokio::time::timeout(Duration::from_secs(5), redis_client.connect())
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
        common.decisions_topic = format!("test.{unique}.decisions");
        common.reservations_topic = format!("test.{unique}.reservations");
        common.tickets_partitions = partitions;
        let topics = common.topics();
        tokio::time::timeout(
            Duration::from_secs(20),
            kafka::ensure_topics(&common.kafka, &topics),
        )
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|result| result.map_err(|error| error.to_string()))
        .unwrap_or_else(|error| {
            panic!(
                "Kafka at {} is not usable ({error}); {HOW_TO_START}",
                common.kafka.brokers
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
            maintenance,
            database_name,
        }
    }

    /// A service's configuration for this environment: `args` as flags, then the
    /// environment's variables and the defaults, pointed at this test's database, key
    /// prefix and topics, on a port-0 listener.
    pub fn config<C: ServiceConfig>(&self, args: &[String]) -> C {
        let mut config: C = service::parse(args);
        *config.common_mut() = self.common.clone();
        *config.listen_mut() = any_port();
        config
    }

    /// The flags that give the entry API this environment's secrets: its admin token and
    /// the key it signs tickets with.
    pub fn entry_api_args(&self) -> Vec<String> {
        vec![
            "--admin-token".into(),
            self.admin_token.clone(),
            "--signing-key-file".into(),
            self.signing_key_file.display().to_string(),
            // Tests join many times from one loopback address; the limits' own tests
            // turn them back on.
            "--join-rate-limit-per-second".into(),
            "0".into(),
            "--client-join-rate-limit-per-second".into(),
            "0".into(),
        ]
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
            .env(
                "REDIS_CLUSTER",
                if common.redis_cluster { "1" } else { "0" },
            )
            .env("REDIS_KEY_PREFIX", &common.redis_key_prefix)
            .env("KAFKA_BROKERS", &common.kafka.brokers)
            .env(
                "KAFKA_REPLICATION_FACTOR",
                common.kafka.replication_factor.to_string(),
            )
            .env(
                "KAFKA_MIN_INSYNC_REPLICAS",
                common.kafka.min_insync_replicas.to_string(),
            )
            .env("TICKETS_TOPIC", &common.tickets_topic)
            .env("TICKETS_PARTITIONS", common.tickets_partitions.to_string())
            .env("TICKETS_DLQ_TOPIC", &common.tickets_dlq_topic)
            .env("DECISIONS_TOPIC", &common.decisions_topic)
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

    /// Deletes every Redis key of this test's deployment, as losing Redis's data would
    /// (other tests' keys stay).
    pub async fn lose_redis_data(&self) {
        delete_redis_keys(&self.common)
            .await
            .expect("delete the test's Redis keys");
    }

    /// Records that these tickets' holders have just read them, as a status read or an
    /// open stream does (their `seen` time): the activator then treats them as received
    /// rather than deferring them as tickets nobody took. For tests and tools that append
    /// tickets to Kafka themselves, with no fan behind them (each of its queue).
    pub async fn mark_received(&self, tickets: &[(i32, Uuid)]) {
        let keys = self.redis_keys();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        for chunk in tickets.chunks(10_000) {
            let marks: Vec<redis::Cmd> = chunk
                .iter()
                .map(|(partition, ticket_id)| {
                    redis::Cmd::hset(
                        keys.ticket(*partition, *ticket_id),
                        TicketHash::SEEN,
                        now_ms,
                    )
                })
                .collect();
            let replies = self
                .redis
                .clone()
                .send_grouped(&marks)
                .await
                .expect("mark tickets received");
            platform::redis_connection::replies_or_refusal(replies).expect("mark tickets received");
        }
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
        let maintenance = self.maintenance.clone();
        let database_name = self.database_name.clone();
        let common = self.common.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("clean-up runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = maintenance.connect().await {
                    let drop = format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#);
                    if let Err(error) = sqlx::query(&drop).execute(&mut admin).await {
                        eprintln!("test clean-up: cannot drop {database_name}: {error}");
                    }
                }
                if let Err(error) = delete_redis_keys(&common).await {
                    eprintln!("test clean-up: cannot delete redis keys: {error}");
                }
                let topics = common.topics().map(|(topic, _)| topic);
                if delete_topics {
                    let deletion = kafka::delete_topics(&common.kafka, &topics);
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
/// (KEYS would block a shared Redis that holds millions of other keys) on every node
/// (of a cluster: a replica lists its primary's keys, hence the dedup; a node that is
/// down is skipped while another answers).
async fn deployment_keys(common: &CommonConfig) -> anyhow::Result<Vec<String>> {
    let pattern = RedisKeys::new(common.redis_key_prefix.clone()).all_keys_pattern();
    let mut found = std::collections::BTreeSet::new();
    let nodes = common.redis_client()?.subscribers();
    let mut answered = false;
    let mut last_error = None;
    for node in nodes {
        let mut connection = match node.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(error) => {
                last_error = Some(error);
                continue;
            }
        };
        answered = true;
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
                break;
            }
            cursor = next;
        }
    }
    match last_error {
        Some(error) if !answered => Err(error.into()),
        _ => Ok(found.into_iter().collect()),
    }
}

async fn delete_redis_keys(common: &CommonConfig) -> anyhow::Result<()> {
    let keys = deployment_keys(common).await?;
    let mut connection = common.redis_client()?.connect().await?;
    // One transaction per slot (one for a single server): a loss happens at one
    // instant, never half seen by a service; a queue's keys share one slot.
    let mut by_slot: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for key in keys {
        let slot = if connection.is_cluster() {
            platform::redis_connection::key_slot(key.as_bytes())
        } else {
            0
        };
        by_slot.entry(slot).or_default().push(key);
    }
    for keys in by_slot.values() {
        let mut loss = redis::pipe();
        loss.atomic();
        for chunk in keys.chunks(10_000) {
            loss.unlink(chunk).ignore();
        }
        loss.query_async::<()>(&mut connection).await?;
    }
    Ok(())
}
