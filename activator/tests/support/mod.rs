//! Helpers for the activator's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::{Duration, Instant};

use chrono::Utc;
use contract::kafka::{self, DurableProducer};
use contract::redis_schema::TicketHash;
use contract::serving_announcement::ServingAnnouncement;
use contract::ticket_record::TicketRecord;
use futures::StreamExt;
use testkit::TestEnv;
use uuid::Uuid;

mod service;
pub use service::*;

/// A queue's mode and activation policy.
pub struct Policy {
    pub mode: &'static str,
    pub batch_size: i32,
    pub interval_ms: i32,
    pub max_active: Option<i32>,
    pub active_ttl_seconds: i32,
    pub grace_seconds: i32,
}

/// `Policy` in the order the admin API lists the fields.
pub fn policy(
    mode: &'static str,
    batch_size: i32,
    interval_ms: i32,
    max_active: Option<i32>,
    active_ttl_seconds: i32,
    grace_seconds: i32,
) -> Policy {
    Policy {
        mode,
        batch_size,
        interval_ms,
        max_active,
        active_ttl_seconds,
        grace_seconds,
    }
}

/// Sets a queue's mode and policy in PostgreSQL, as the admin API would.
pub async fn set_queue(env: &TestEnv, partition: i32, policy: Policy) {
    sqlx::query(
        "INSERT INTO queues (partition, mode, batch_size, interval_ms, max_active, active_ttl_seconds, grace_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (partition) DO UPDATE SET mode = $2, batch_size = $3, interval_ms = $4,
             max_active = $5, active_ttl_seconds = $6, grace_seconds = $7, updated_at = now()",
    )
    .bind(partition)
    .bind(policy.mode)
    .bind(policy.batch_size)
    .bind(policy.interval_ms)
    .bind(policy.max_active)
    .bind(policy.active_ttl_seconds)
    .bind(policy.grace_seconds)
    .execute(&env.postgres)
    .await
    .expect("set the queue policy");
}

/// Appends `count` ticket records to `partition`, as the waiting-room does, whose
/// holders have read them (marked before they are appended, so a running activator
/// never finds one unread); returns (queue number, ticket id) in queue order.
pub async fn produce_tickets(
    env: &TestEnv,
    partition: i32,
    event_id: &str,
    count: usize,
) -> Vec<(i64, Uuid)> {
    let ticket_ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let received: Vec<(i32, Uuid)> = ticket_ids.iter().map(|id| (partition, *id)).collect();
    env.mark_received(&received).await;
    produce(env, partition, event_id, ticket_ids).await
}

/// Appends `count` ticket records whose holders never read them (they joined and hung
/// up); returns (queue number, ticket id) in queue order.
pub async fn produce_unread_tickets(
    env: &TestEnv,
    partition: i32,
    event_id: &str,
    count: usize,
) -> Vec<(i64, Uuid)> {
    let ticket_ids = (0..count).map(|_| Uuid::now_v7()).collect();
    produce(env, partition, event_id, ticket_ids).await
}

async fn produce(
    env: &TestEnv,
    partition: i32,
    event_id: &str,
    ticket_ids: Vec<Uuid>,
) -> Vec<(i64, Uuid)> {
    let tickets: Vec<(i32, String, Uuid)> = ticket_ids
        .into_iter()
        .map(|ticket_id| (partition, event_id.to_owned(), ticket_id))
        .collect();
    produce_all(env, &tickets)
        .await
        .into_iter()
        .map(|(_, offset, ticket_id)| (offset, ticket_id))
        .collect()
}

/// Appends ticket records (partition, event, ticket id) with one producer, in the order
/// given within each partition; returns (partition, queue number, ticket id) by
/// partition and queue number.
pub async fn produce_all(env: &TestEnv, tickets: &[(i32, String, Uuid)]) -> Vec<(i32, i64, Uuid)> {
    let config = kafka::producer_config(&env.common.kafka, 5, Duration::from_secs(10));
    let producer = DurableProducer::new(config).expect("producer");
    let mut produced = Vec::with_capacity(tickets.len());
    // Tansu's memory engine sets the high watermark to the base offset of the last batch
    // plus one, hiding the rest of that batch from consumers that start past it (e.g. a
    // restarted activator). Each partition's last ticket goes alone, as its own batch, so
    // the watermark covers every ticket.
    let mut last_of = std::collections::HashMap::new();
    for (index, (partition, _, _)) in tickets.iter().enumerate() {
        last_of.insert(*partition, index);
    }
    let (lasts, most): (Vec<_>, Vec<_>) = tickets
        .iter()
        .enumerate()
        .partition(|(index, (partition, _, _))| last_of[partition] == *index);
    for chunk in most.chunks(1000).chain([lasts.as_slice()]) {
        let sends = chunk.iter().map(|(_, (partition, event_id, ticket_id))| {
            let record =
                TicketRecord::new(*ticket_id, event_id.clone(), None, Utc::now()).to_json();
            let producer = &producer;
            let topic = env.common.tickets_topic.as_str();
            async move {
                let acknowledged = producer
                    .send(
                        topic,
                        Some(*partition),
                        event_id,
                        &record,
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("produce a ticket");
                (*partition, acknowledged.offset, *ticket_id)
            }
        });
        produced.extend(futures::future::join_all(sends).await);
    }
    produced.sort_unstable();
    produced
}

/// Appends a raw value (e.g. garbage) to `partition`; returns its offset.
pub async fn produce_raw(env: &TestEnv, partition: i32, value: &[u8]) -> i64 {
    let config = kafka::producer_config(&env.common.kafka, 0, Duration::from_secs(10));
    let producer = DurableProducer::new(config).expect("producer");
    producer
        .send(
            &env.common.tickets_topic,
            Some(partition),
            "garbage",
            value,
            Duration::from_secs(10),
        )
        .await
        .expect("produce")
        .offset
}

pub async fn serving(env: &TestEnv, partition: i32) -> i64 {
    let value: Option<i64> = redis::cmd("GET")
        .arg(env.redis_keys().serving(partition))
        .query_async(&mut env.redis.clone())
        .await
        .expect("GET serving");
    value.unwrap_or(0)
}

/// Waits (up to `limit`) until the queue's serving counter reaches `target`.
pub async fn wait_for_serving(env: &TestEnv, partition: i32, target: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let current = serving(env, partition).await;
        if current >= target {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "serving counter stuck at {current}, expected {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state and active_until of a ticket of queue `partition` from Redis.
pub async fn ticket_state(
    env: &TestEnv,
    partition: i32,
    ticket_id: Uuid,
) -> (Option<String>, Option<i64>) {
    redis::cmd("HMGET")
        .arg(env.redis_keys().ticket(partition, ticket_id))
        .arg(TicketHash::STATE)
        .arg(TicketHash::ACTIVE_UNTIL)
        .query_async(&mut env.redis.clone())
        .await
        .expect("HMGET ticket")
}

/// Subscribes to the serving announcements of this environment.
pub struct Announcements {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = ServingAnnouncement> + Send>>,
}

impl Announcements {
    pub async fn subscribe(env: &TestEnv) -> Self {
        // Any node of a cluster hears every message.
        let client = env.common.redis_client().expect("redis url").subscribers()[0].clone();
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub connection");
        pubsub
            .subscribe(env.redis_keys().serving_channel())
            .await
            .expect("SUBSCRIBE");
        let stream = pubsub.into_on_message().filter_map(|message| async move {
            ServingAnnouncement::parse(message.get_payload_bytes())
        });
        Self {
            stream: Box::pin(stream),
        }
    }

    pub async fn next(&mut self, limit: Duration) -> ServingAnnouncement {
        tokio::time::timeout(limit, self.stream.next())
            .await
            .expect("an announcement in time")
            .expect("announcement stream open")
    }
}
