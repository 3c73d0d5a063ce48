//! The outbox relay against real PostgreSQL and Kafka: the reservation binary is killed
//! (SIGKILL) while it publishes a backlog; a second relay finishes it. Nothing is lost,
//! every reservation's changes arrive in order, duplicates are detectable by message id.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::kafka::{read_topic, KeyedRecord};
use testkit::TestEnv;
use uuid::Uuid;

const RESERVATIONS: usize = 200;
const CHANGES_EACH: usize = 5;

async fn published(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        .fetch_one(&env.postgres)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_relay_killed_mid_batch_loses_nothing() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO queues (partition) VALUES (0);
         INSERT INTO events (event_id, name, state, partition) VALUES ('relay', 'Relay', 'open', 0)",
    )
    .execute(&env.postgres)
    .await
    .ok();
    // A backlog as the service writes it: each reservation's changes in order.
    let reservations: Vec<Uuid> = (0..RESERVATIONS).map(|_| Uuid::now_v7()).collect();
    for step in 0..CHANGES_EACH {
        for reservation in &reservations {
            let message_id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO outbox (message_id, event_id, reservation_id, payload)
                 VALUES ($1, 'relay', $2, $3)",
            )
            .bind(message_id)
            .bind(reservation)
            .bind(
                json!({"message_id": message_id, "reservation_id": reservation,
                         "event_id": "relay", "step": step}),
            )
            .execute(&env.postgres)
            .await
            .unwrap();
        }
    }
    let total = (RESERVATIONS * CHANGES_EACH) as i64;

    let key_file = std::env::temp_dir().join(format!("relay-{}.pem", Uuid::now_v7()));
    std::fs::write(&key_file, env.public_key_pem()).unwrap();
    let spawn = || {
        env.service_command(env!("CARGO_BIN_EXE_reservation"))
            .env("RESERVATION_LISTEN", "127.0.0.1:0")
            .env("TICKET_PUBLIC_KEY_FILES", &key_file)
            .env("OUTBOX_BATCH_SIZE", "25")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the reservation binary")
    };

    let mut first = spawn();
    let started = Instant::now();
    loop {
        let done = published(&env).await;
        if done > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL, mid-backlog
    first.wait().unwrap();
    let at_kill = published(&env).await;
    assert!(
        at_kill < total,
        "killed before the backlog was done ({at_kill} of {total})"
    );

    let mut second = spawn();
    let started = Instant::now();
    while published(&env).await < total {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second relay stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let _ = std::fs::remove_file(&key_file);

    // Read until every change arrived (duplicates add records).
    let unique = |records: &[KeyedRecord]| {
        records
            .iter()
            .map(|(_, value)| value["message_id"].to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    let records = read_topic(&env.common, &env.common.reservations_topic, |records| {
        unique(records) >= total as usize
    })
    .await;
    let mut steps: HashMap<String, Vec<i64>> = HashMap::new();
    let mut message_ids = HashSet::new();
    for (key, value) in &records {
        assert_eq!(key.as_deref(), Some("relay"));
        message_ids.insert(value["message_id"].as_str().unwrap().to_owned());
        steps
            .entry(value["reservation_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(value["step"].as_i64().unwrap());
    }
    assert_eq!(message_ids.len(), total as usize, "every change published");
    for (reservation, seen) in steps {
        // Duplicates are allowed; the first delivery of each change is in order.
        let mut first_seen = Vec::new();
        for step in seen {
            if !first_seen.contains(&step) {
                first_seen.push(step);
            }
        }
        assert_eq!(
            first_seen,
            (0..CHANGES_EACH as i64).collect::<Vec<_>>(),
            "{reservation}"
        );
    }
}
