//! Drain-speed benchmark: how many tickets per second one activator activates when the
//! queue is unthrottled (huge batch, short interval), on the real Kafka, Redis and
//! PostgreSQL. Run through `k6/run.sh drain`, which records the result.
//!
//! `DRAIN_TICKETS` (default 200000) tickets are appended to a fresh one-partition topic,
//! each marked as read by its holder (only received tickets are activated; unread ones
//! would be deferred, not activated), then an in-process activator drains them; the
//! rate is measured from the first serving-counter move to the last.

use std::time::{Duration, Instant};

use activator::ActivatorConfig;
use chrono::Utc;
use contract::kafka::{self, DurableProducer};
use contract::ticket_record::TicketRecord;
use testkit::{RunningService, TestEnv};
use uuid::Uuid;

async fn serving(env: &TestEnv) -> i64 {
    let value: Option<i64> = redis::cmd("GET")
        .arg(env.redis_keys().serving(0))
        .query_async(&mut env.redis.clone())
        .await
        .expect("GET serving");
    value.unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let tickets: usize = std::env::var("DRAIN_TICKETS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000);
    let env = TestEnv::with_partitions(1).await;
    sqlx::query(
        "INSERT INTO queues (partition, mode, batch_size, interval_ms, active_ttl_seconds, grace_seconds)
         VALUES (0, 'open', 1000000, 10, 3600, 3600)",
    )
    .execute(&env.postgres)
    .await
    .expect("unthrottled queue");

    eprintln!("producing {tickets} tickets");
    let producer = DurableProducer::new(kafka::producer_config(
        &env.common.kafka,
        5,
        Duration::from_secs(30),
    ))
    .expect("producer");
    let started = Instant::now();
    let ticket_ids: Vec<Uuid> = (0..=tickets).map(|_| Uuid::now_v7()).collect();
    let received: Vec<(i32, Uuid)> = ticket_ids.iter().map(|id| (0, *id)).collect();
    env.mark_received(&received).await;
    let (most, last) = ticket_ids.split_at(tickets);
    for chunk in most.chunks(10_000) {
        let sends = chunk.iter().map(|&ticket_id| {
            let record = TicketRecord::new(ticket_id, "drain".into(), None, Utc::now()).to_json();
            let producer = &producer;
            let topic = env.common.tickets_topic.clone();
            async move {
                producer
                    .send(&topic, Some(0), "drain", &record, Duration::from_secs(30))
                    .await
                    .expect("produce")
            }
        });
        futures::future::join_all(sends).await;
    }
    // A last single-record batch, so Tansu's high watermark covers every ticket.
    let last = TicketRecord::new(last[0], "drain".into(), None, Utc::now()).to_json();
    producer
        .send(
            &env.common.tickets_topic,
            Some(0),
            "drain",
            &last,
            Duration::from_secs(30),
        )
        .await
        .expect("produce");
    let total = tickets as i64 + 1;
    eprintln!(
        "produced in {:.1} s; starting the activator",
        started.elapsed().as_secs_f64()
    );

    let mut config: ActivatorConfig = env.config(&[]);
    config.group_id = format!("{}.drain", env.common.redis_key_prefix);
    let activator = RunningService::start(|shutdown| activator::build(config, shutdown)).await;

    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_move: Option<(Instant, i64)> = None;
    let mut last_report = Instant::now();
    loop {
        let now_serving = serving(&env).await;
        if first_move.is_none() && now_serving > 0 {
            first_move = Some((Instant::now(), now_serving));
        }
        if now_serving >= total {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("serving {now_serving} / {total}");
            last_report = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "drain did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let finished = Instant::now();
    let (first_at, first_serving) = first_move.expect("the counter moved");
    let drained = total - first_serving;
    let seconds = finished.duration_since(first_at).as_secs_f64().max(1e-3);
    activator.stop().await.expect("clean shutdown");
    // One machine-readable line for k6/run.sh.
    println!(
        "drained={drained} seconds={seconds:.3} rate={:.0}",
        drained as f64 / seconds
    );
}
