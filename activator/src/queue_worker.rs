//! One queue (partition): buffers its records in offset order and runs activation steps
//! on the queue's schedule.
//!
//! Per tick: dead-letter poison records at the front (acknowledged before they are
//! skipped), run [`activation::step`] until the batch is full, capacity is reached or
//! the buffer is empty, then announce the new serving counter on Redis pub/sub, then
//! commit the Kafka offset. Each queue has its own task, so a slow queue never delays
//! another.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use waiting_room::catalog::{QueueConfig, QueueMode};
use waiting_room::live_catalog::LiveCatalog;
use waiting_room::redis_keys::RedisKeys;
use waiting_room::serving_announcement::ServingAnnouncement;

use crate::activation::{self, QueueEntry, StepLimits, StepOutcome};
use crate::consumer::RebalanceContext;
use crate::dead_letter::{DeadLetter, RawRecord};
use crate::rate::RateWindow;

/// Entries passed to one script call; bigger batches take several calls per tick.
const ENTRIES_PER_STEP: usize = 5_000;
/// Passthrough queues also tick this often, to refill capacity freed by expiry.
const PASSTHROUGH_TICK: Duration = Duration::from_millis(100);
/// An activated ticket's Redis state outlives its session by this long, so status
/// reads still say "expired" or "used" after it ends.
const TICKET_STATE_RETENTION_SECONDS: i64 = 86_400;

/// A record as it arrives: a ticket, or a record to dead-letter.
pub enum Incoming {
    Entry(QueueEntry),
    Poison(RawRecord),
}

/// What the worker shares with the dispatcher.
pub struct WorkerShared {
    pub partition: i32,
    /// Records received but not yet reached (channel plus buffer), for back-pressure.
    pub buffered: AtomicUsize,
}

pub struct QueueWorker {
    pub shared: Arc<WorkerShared>,
    pub records: mpsc::UnboundedReceiver<Incoming>,
    pub catalog: LiveCatalog,
    pub redis: ConnectionManager,
    pub keys: RedisKeys,
    pub consumer: Arc<StreamConsumer<RebalanceContext>>,
    pub dead_letters: Arc<DeadLetter>,
    pub topic: String,
    pub shutdown: CancellationToken,
}

impl QueueWorker {
    pub async fn run(mut self) {
        let partition = self.shared.partition;
        let mut buffer: VecDeque<Incoming> = VecDeque::new();
        let mut rate = RateWindow::default();
        let mut catalog_changes = self.catalog.subscribe();
        let mut next_tick = Instant::now();
        loop {
            let queue = self.catalog.current().queue(partition);
            let interval = tick_interval(&queue);
            let can_tick = queue.mode != QueueMode::Paused && !buffer.is_empty();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                received = self.records.recv() => {
                    let Some(first) = received else { break };
                    buffer.push_back(first);
                    while let Ok(more) = self.records.try_recv() {
                        buffer.push_back(more);
                    }
                    // Passthrough activates on arrival.
                    if queue.mode == QueueMode::Passthrough {
                        next_tick = Instant::now();
                    }
                }
                () = tokio::time::sleep_until(next_tick.into()), if can_tick => {
                    let lateness = Instant::now().saturating_duration_since(next_tick);
                    let span = tracing::info_span!("activation_tick", partition, mode = queue.mode.as_str());
                    self.tick(&queue, &mut buffer, &mut rate, lateness).instrument(span).await;
                    next_tick = (next_tick + interval).max(Instant::now());
                }
                changed = catalog_changes.changed() => {
                    if changed.is_err() { break; }
                    // A new interval takes effect from the next tick.
                    next_tick = next_tick.min(Instant::now() + tick_interval(&self.catalog.current().queue(partition)));
                }
            }
        }
        tracing::debug!(partition, "queue worker stopped");
    }

    async fn tick(
        &mut self,
        queue: &QueueConfig,
        buffer: &mut VecDeque<Incoming>,
        rate: &mut RateWindow,
        lateness: Duration,
    ) {
        let partition = self.shared.partition;
        let label = partition.to_string();
        let started = Instant::now();
        metrics::histogram!("activator_tick_lateness_seconds", "partition" => label.clone())
            .record(lateness.as_secs_f64());
        let policy = queue.activation;
        let batch = if queue.mode == QueueMode::Passthrough {
            u64::MAX
        } else {
            u64::from(policy.batch_size)
        };
        let now_ms = Utc::now().timestamp_millis();
        let limits = StepLimits {
            now_ms,
            active_until_ms: now_ms + i64::from(policy.active_ttl_seconds) * 1000,
            batch_limit: batch,
            max_active: policy.max_active,
            grace_ms: i64::from(policy.grace_seconds) * 1000,
            ticket_ttl_seconds: i64::from(policy.active_ttl_seconds)
                + TICKET_STATE_RETENTION_SECONDS,
        };
        let mut total = StepOutcome::default();
        let mut first = true;
        loop {
            let entries = match self.front_entries(buffer).await {
                Ok(entries) if !entries.is_empty() => entries,
                Ok(_) => break,
                Err(()) => break,
            };
            let limits = StepLimits {
                batch_limit: batch.saturating_sub(total.activated),
                ..limits
            };
            let outcome = match activation::step(
                &mut self.redis,
                &self.keys,
                partition,
                &entries,
                limits,
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(partition, %error, "activation step failed; retrying next tick");
                    break;
                }
            };
            let consumed_all =
                outcome.serving > entries.last().map_or(i64::MIN, QueueEntry::queue_number);
            drop_reached(buffer, outcome.serving, &self.shared);
            if first {
                total.reached_from = outcome.reached_from;
                first = false;
            }
            merge(&mut total, outcome);
            if total.blocked || !consumed_all || total.activated >= batch {
                break;
            }
        }
        if first {
            return;
        }
        rate.record(Instant::now(), total.activated);
        metrics::counter!("activator_activations_total", "partition" => label.clone())
            .increment(total.activated);
        metrics::counter!("activator_abandoned_total", "partition" => label.clone())
            .increment(total.abandoned.len() as u64);
        metrics::counter!("activator_expirations_total", "partition" => label.clone())
            .increment(total.expired);
        metrics::gauge!("activator_active", "partition" => label.clone()).set(total.active as f64);
        metrics::gauge!("activator_waiting", "partition" => label.clone())
            .set((total.issued_max + 1 - total.serving).max(0) as f64);
        if total.serving > total.reached_from {
            self.announce(
                &total,
                limits.active_until_ms,
                rate.per_second(Instant::now()),
            )
            .await;
            self.commit(total.serving);
        }
        metrics::histogram!("activator_tick_duration_seconds", "partition" => label)
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            partition,
            activated = total.activated,
            serving = total.serving,
            "tick"
        );
    }

    /// The next entries in offset order, dead-lettering poison records on the way. Stops
    /// before a poison record whose dead letter was not acknowledged: it is never skipped
    /// unless it is safely in the dead-letter topic.
    async fn front_entries(&self, buffer: &mut VecDeque<Incoming>) -> Result<Vec<QueueEntry>, ()> {
        let mut entries = Vec::new();
        for incoming in buffer.iter_mut().take(ENTRIES_PER_STEP) {
            if let Incoming::Poison(raw) = incoming {
                if let Err(error) = self.dead_letters.send(&self.topic, raw).await {
                    tracing::warn!(partition = self.shared.partition, offset = raw.offset, %error, "cannot dead-letter a record yet");
                    return if entries.is_empty() {
                        Err(())
                    } else {
                        Ok(entries)
                    };
                }
                metrics::counter!("activator_dead_letters_total", "partition" => self.shared.partition.to_string()).increment(1);
                *incoming = Incoming::Entry(QueueEntry::DeadLettered {
                    queue_number: raw.offset,
                });
            }
            if let Incoming::Entry(entry) = incoming {
                entries.push(entry.clone());
            }
        }
        Ok(entries)
    }

    async fn announce(&self, outcome: &StepOutcome, active_until_ms: i64, rate_per_second: f64) {
        let announcement = ServingAnnouncement {
            partition: self.shared.partition,
            reached_from: outcome.reached_from,
            serving: outcome.serving,
            abandoned: outcome.abandoned.clone(),
            dead_lettered: outcome.dead_lettered.clone(),
            active_until_ms: (outcome.activated > 0).then_some(active_until_ms),
            rate_per_second,
        };
        let result: redis::RedisResult<()> = redis::pipe()
            .hset(
                self.keys.queue_stats(self.shared.partition),
                "rate",
                rate_per_second,
            )
            .ignore()
            .publish(self.keys.serving_channel(), announcement.to_json())
            .ignore()
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(error) = result {
            // Streams resynchronise on the next announcement; the state itself is stored.
            tracing::warn!(partition = self.shared.partition, %error, "cannot announce the serving counter");
        }
    }

    /// Commits `serving` as the partition's next offset. Asynchronous: the serving
    /// counter in Redis is the authoritative position; the commit only bounds replay.
    fn commit(&self, serving: i64) {
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&self.topic, self.shared.partition, Offset::Offset(serving))
            .is_ok()
        {
            if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
                tracing::debug!(partition = self.shared.partition, %error, "offset commit refused (partition revoked?)");
            }
        }
    }
}

fn tick_interval(queue: &QueueConfig) -> Duration {
    let interval = Duration::from_millis(u64::from(queue.activation.interval_ms));
    if queue.mode == QueueMode::Passthrough {
        interval.min(PASSTHROUGH_TICK)
    } else {
        interval
    }
}

/// Drops buffered entries the serving counter has passed.
fn drop_reached(buffer: &mut VecDeque<Incoming>, serving: i64, shared: &WorkerShared) {
    let mut dropped = 0;
    while let Some(Incoming::Entry(entry)) = buffer.front() {
        if entry.queue_number() >= serving {
            break;
        }
        buffer.pop_front();
        dropped += 1;
    }
    shared.buffered.fetch_sub(dropped, Ordering::Relaxed);
}

fn merge(total: &mut StepOutcome, step: StepOutcome) {
    total.serving = step.serving;
    total.activated += step.activated;
    total.expired += step.expired;
    total.active = step.active;
    total.issued_max = step.issued_max;
    total.blocked = step.blocked;
    total.abandoned.extend(step.abandoned);
    total.dead_lettered.extend(step.dead_lettered);
}
