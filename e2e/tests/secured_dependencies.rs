//! The whole stack over secured connections to every dependency, each server of the
//! test's own and refusing plaintext: Kafka over TLS (`KAFKA_SECURITY_PROTOCOL=ssl`),
//! Redis over TLS as an ACL user (`rediss://user:password@…` with `REDIS_CA_FILE`),
//! PostgreSQL over TLS with the server's certificate checked
//! (`sslmode=verify-full&sslrootcert=…`), and the reservation service fetching the
//! ticket keys over https from a key server a private authority signed
//! (`JWKS_CA_FILE`). A fan's purchase through all of them shows every client spoke TLS;
//! the refusals show that nothing got through in plaintext or to an unknown authority.

mod support;

use std::time::{Duration, Instant};

use contract::config::CommonConfig;
use contract::kafka;
use contract::kafka_connection::{KafkaConnection, SecurityProtocol};
use serde_json::json;
use sqlx::ConnectOptions;
use support::{buy, Stack};
use testkit::broker::PrivateBroker;
use testkit::postgres_server::PrivatePostgres;
use testkit::redis_server::{PrivateRedis, TLS_REDIS_USER};
use testkit::tls::{TestCertificates, TlsForwarder};
use testkit::TestEnv;

const PATIENCE: Duration = Duration::from_secs(60);
const EVENT: &str = "secured-sale";

#[tokio::test]
async fn a_fan_buys_with_every_dependency_reached_over_tls() {
    let certs = TestCertificates::generate();
    let postgres = PrivatePostgres::start_tls(&certs).await;
    let redis = PrivateRedis::start_tls(&certs).await;
    let (_broker, kafka_listener) = PrivateBroker::start_behind_tls(&certs).await;

    let mut common = TestEnv::environment();
    common.database_url = postgres.url("postgres", "verify-full", Some(&certs.ca_file));
    redis.configure(&mut common);
    common.redis_ca_file = Some(certs.ca_file.clone());
    common.kafka = KafkaConnection {
        security_protocol: SecurityProtocol::Ssl,
        ssl_ca_location: Some(certs.ca_file.clone()),
        ..KafkaConnection::local(kafka_listener.address())
    };
    common.jwks_ca_file = Some(certs.ca_file.clone());

    // The environment connects to all three with the right settings: the servers are
    // up, so what they refuse next is refused for its own reason.
    let env = TestEnv::on(common, 2).await;
    refusals(&env.common, &postgres, &certs).await;
    let waiting_room =
        support::entry_api::start_waiting_room(support::entry_api::waiting_room_config(&env)).await;
    // The ticket keys over https: TLS in front of the waiting-room, as a gateway would.
    let key_server = TlsForwarder::start(
        testkit::service::reserve_port(),
        waiting_room
            .base_url
            .trim_start_matches("http://")
            .to_owned(),
        &certs,
    );
    let jwks_url = format!(
        "https://127.0.0.1:{}/.well-known/jwks.json",
        key_server.port
    );
    let activator = support::activator::start_activator(&env).await;
    let reservation = support::reservations::start_reservation(
        support::reservations::reservation_config(&env, jwks_url),
    )
    .await;
    let stack = Stack {
        waiting_room,
        activator,
        reservation,
        env,
    };
    for service in [&stack.waiting_room, &stack.activator, &stack.reservation] {
        assert_eq!(
            reqwest::get(service.url("/readyz"))
                .await
                .expect("GET /readyz")
                .status(),
            200,
            "{} is ready over TLS",
            service.base_url
        );
    }

    let client = stack.client();
    client
        .put_event(
            EVENT,
            json!({
                "name": "Secured sale",
                "state": "open",
                "activation": {"batch_size": 10, "interval_ms": 100,
                               "active_ttl_seconds": 600, "grace_seconds": 600},
                "seats": {"rows": 1, "seats_per_row": 4},
            }),
        )
        .await;
    let ticket = client.join_ok(EVENT, Some("fan-over-tls")).await;
    let token = ticket["token"].as_str().expect("token").to_owned();
    let started = Instant::now();
    loop {
        let status: serde_json::Value = client.status(&token).await.json().await.expect("JSON");
        if status["state"] == "active" {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never active: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    buy(&stack, EVENT, &token, &["A-1"]).await;
    let sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE event_id = $1 AND status = 'confirmed'",
    )
    .bind(EVENT)
    .fetch_one(&stack.env.postgres)
    .await
    .expect("count over TLS");
    assert_eq!(
        sold, 1,
        "the confirmed reservation is in the secured database"
    );
    stack.stop().await;
}

/// Each server refuses what the services must not do: plaintext, and TLS to a server
/// whose authority the client was not told to trust. The right settings succeed first,
/// so a refusal is an answer, not a server that was not there.
async fn refusals(common: &CommonConfig, postgres: &PrivatePostgres, certs: &TestCertificates) {
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;

    let connect = |url: String| async move {
        PgConnectOptions::from_str(&url)
            .expect("URL")
            .connect()
            .await
            .map(drop)
    };
    connect(postgres.url("postgres", "verify-full", Some(&certs.ca_file)))
        .await
        .expect("PostgreSQL over TLS with the test's authority");
    for (url, why) in [
        (postgres.url("postgres", "disable", None), "plaintext"),
        (
            postgres.url("postgres", "verify-full", None),
            "an authority the client does not trust",
        ),
    ] {
        assert!(connect(url).await.is_err(), "PostgreSQL accepted {why}");
    }

    let ping = |config: CommonConfig| async move {
        let client = config.redis_client().expect("client");
        tokio::time::timeout(Duration::from_secs(10), async move {
            let mut connection = client.connect().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await
        .expect("Redis answers or refuses within 10 s")
    };
    ping(common.clone())
        .await
        .expect("Redis over TLS as the ACL user");
    let untrusted = CommonConfig {
        redis_ca_file: None,
        ..common.clone()
    };
    let plaintext = CommonConfig {
        redis_url: common.redis_url.replace("rediss://", "redis://"),
        ..untrusted.clone()
    };
    let wrong_password = CommonConfig {
        redis_url: common
            .redis_url
            .replace(TLS_REDIS_USER.1, "not-the-password"),
        ..common.clone()
    };
    for (config, why) in [
        (untrusted, "an unknown authority"),
        (plaintext, "plaintext"),
        (wrong_password, "a wrong password"),
    ] {
        assert!(ping(config).await.is_err(), "Redis answered over {why}");
    }

    let metadata = |kafka: KafkaConnection, topic: String| async move {
        tokio::task::spawn_blocking(move || {
            let client = kafka::metadata_client(&kafka).map_err(|error| error.to_string())?;
            kafka::topic_partition_count(&client, &topic, Duration::from_secs(3))
        })
        .await
        .expect("metadata task")
    };
    let topic = common.tickets_topic.clone();
    metadata(common.kafka.clone(), topic.clone())
        .await
        .expect("the broker's metadata over TLS");
    for (kafka, why) in [
        (
            KafkaConnection::local(common.kafka.brokers.clone()),
            "plaintext",
        ),
        (
            KafkaConnection {
                ssl_ca_location: Some(certs.dir.join("missing-ca.pem")),
                ..common.kafka.clone()
            },
            "a missing authority file",
        ),
        (
            KafkaConnection {
                ssl_ca_location: None,
                ..common.kafka.clone()
            },
            "an unknown authority",
        ),
    ] {
        assert!(
            metadata(kafka, topic.clone()).await.is_err(),
            "the broker answered over {why}"
        );
    }
}
