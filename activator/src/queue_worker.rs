//! One queue (partition): buffers its records in offset order and runs activation steps
//! on the queue's schedule.
//!
//! Per tick: dead-letter poison records at the front (acknowledged before they are
//! skipped), run [`activation::step`] until the batch is full, capacity is reached or
//! the buffer is empty, then announce the new serving counter on Redis pub/sub, then
//! commit the Kafka offset. A queue keeps ticking while it has deferred tickets (passed
//! before anyone read them), even with nothing buffered, so that a holder who reads one
//! late is activated on the next tick. Each queue has its own task, so a slow queue
//! never delays another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use contract::catalog::{QueueConfig, QueueMode};
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::{QueueStats, RedisKeys};
use contract::serving_announcement::ServingAnnouncement;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::activation::{self, QueueEntry, StepLimits, StepOutcome};
use crate::backlog::{Backlog, Incoming};
use crate::dead_letter::DeadLetter;
use crate::group::GroupConsumer;
use crate::rate::RateWindow;

/// Entries passed to one script call; bigger batches take several calls per tick.
const ENTRIES_PER_STEP: usize = 5_000;
/// Passthrough queues also tick this often, to refill capacity freed by expiry.
const PASSTHROUGH_TICK: Duration = Duration::from_millis(100);
/// How far back the first re-read after a gap starts; it doubles while gaps persist.
const REREAD_LOOKBACK: i64 = 1_000;
/// A re-read that delivers nothing at or before the gap within this time goes further back.
const REREAD_STALL: Duration = Duration::from_secs(2);
/// An activated ticket's Redis state outlives its session by this long, so status
/// reads still say "expired" or "used" after it ends.
const TICKET_STATE_RETENTION_SECONDS: i64 = 86_400;

/// What every queue worker of an activator shares.
pub struct WorkerContext {
    pub catalog: LiveCatalog,
    pub redis: ConnectionManager,
    pub keys: RedisKeys,
    pub consumer: Arc<GroupConsumer>,
    pub dead_letters: Arc<DeadLetter>,
    pub topic: String,
}

/// One queue's worker and all of its state.
pub struct QueueWorker {
    partition: i32,
    context: Arc<WorkerContext>,
    backlog: Backlog,
    rate: RateWindow,
    reread: Reread,
    next_tick: Instant,
    /// Whether the queue's deferred set held tickets after the last step (assumed at
    /// start: a previous owner may have left some).
    deferred_waiting: bool,
    stop: CancellationToken,
}

impl QueueWorker {
    pub fn new(
        partition: i32,
        context: Arc<WorkerContext>,
        backlog: Backlog,
        stop: CancellationToken,
    ) -> Self {
        Self {
            partition,
            context,
            backlog,
            rate: RateWindow::default(),
            reread: Reread::default(),
            next_tick: Instant::now(),
            deferred_waiting: true,
            stop,
        }
    }

    pub async fn run(mut self) {
        let partition = self.partition;
        let mut catalog_changes = self.context.catalog.subscribe();
        loop {
            let queue = self.context.catalog.current().queue(partition);
            let can_tick = queue.mode != QueueMode::Paused
                && (!self.backlog.is_empty() || self.deferred_waiting);
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                received = self.backlog.receive() => {
                    let Some(first) = received else { break };
                    self.admit(first);
                    while let Some(more) = self.backlog.try_receive() {
                        self.admit(more);
                    }
                    // Passthrough activates on arrival.
                    if queue.mode == QueueMode::Passthrough {
                        self.next_tick = Instant::now();
                    }
                }
                () = tokio::time::sleep_until(self.next_tick.into()), if can_tick => {
                    let lateness = Instant::now().saturating_duration_since(self.next_tick);
                    let span = tracing::info_span!("activation_tick", partition, mode = ?queue.mode);
                    self.tick(&queue, lateness).instrument(span).await;
                    self.next_tick = (self.next_tick + tick_interval(&queue)).max(Instant::now());
                }
                () = sleep_until_stalled(self.reread.stalled_at()), if self.reread.pending.is_some() => {
                    if let Some((gap_at, _)) = self.reread.pending {
                        self.read_again(gap_at).await;
                    }
                }
                changed = catalog_changes.changed() => {
                    if changed.is_err() { break; }
                    // A new interval takes effect from the next tick.
                    let interval = tick_interval(&self.context.catalog.current().queue(partition));
                    self.next_tick = self.next_tick.min(Instant::now() + interval);
                }
            }
        }
        tracing::debug!(partition, "queue worker stopped");
    }

    /// Buffers a received record, unless a re-read is under way and the record is past
    /// the gap: it is still in flight from before the seek (or the broker skipped the
    /// hole again) and comes back with the re-read.
    fn admit(&mut self, incoming: Incoming) {
        if let Some((gap_at, _)) = self.reread.pending {
            if incoming.offset() > gap_at {
                self.backlog.discard(incoming);
                return;
            }
            self.reread.pending = None;
        }
        self.backlog.push(incoming);
    }

    async fn tick(&mut self, queue: &QueueConfig, lateness: Duration) {
        let partition = self.partition;
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
        // The steps of this tick, merged; None while no step has run.
        let mut total: Option<StepOutcome> = None;
        loop {
            let entries = self.front_entries().await;
            // One step runs even with nothing buffered: it settles deferred tickets.
            if entries.is_empty() && total.is_some() {
                break;
            }
            let activated_so_far = total.as_ref().map_or(0, |total| total.activated);
            let limits = StepLimits {
                batch_limit: batch.saturating_sub(activated_so_far),
                ..limits
            };
            let context = self.context.clone();
            let mut redis = context.redis.clone();
            let outcome = match activation::step(
                &mut redis,
                &context.keys,
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
            let (gap, serving) = (outcome.gap, outcome.serving);
            let consumed_all = serving > entries.last().map_or(i64::MIN, QueueEntry::queue_number);
            // Merged even at a gap: the step may have settled deferred tickets.
            let merged = match total.take() {
                Some(mut merged) => {
                    merged.merge(outcome);
                    merged
                }
                None => outcome,
            };
            let done = merged.blocked || !consumed_all || merged.activated >= batch;
            total = Some(merged);
            if gap {
                self.read_again(serving).await;
                break;
            }
            self.reread.lookback = REREAD_LOOKBACK;
            self.backlog.drop_reached(serving);
            if done {
                break;
            }
        }
        let Some(total) = total else {
            return;
        };
        self.deferred_waiting = total.deferred_waiting > 0;
        self.rate.record(Instant::now(), total.activated);
        metrics::counter!("activator_activations_total", "partition" => label.clone())
            .increment(total.activated);
        metrics::counter!("activator_abandoned_total", "partition" => label.clone())
            .increment(total.abandoned.len() as u64);
        metrics::counter!("activator_expirations_total", "partition" => label.clone())
            .increment(total.expired);
        metrics::gauge!("activator_active", "partition" => label.clone()).set(total.active as f64);
        metrics::gauge!("activator_waiting", "partition" => label.clone())
            .set(self.backlog.len() as f64);
        metrics::gauge!("activator_deferred", "partition" => label.clone())
            .set(total.deferred_waiting as f64);
        // Nothing to announce below zero: Redis lost the counter and nothing buffered
        // rebuilt it.
        if total.changed_the_line() && total.serving >= 0 {
            let rate = self.rate.per_second(Instant::now());
            self.announce(&total, limits.active_until_ms, rate).await;
        }
        if total.serving > total.reached_from {
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
    async fn front_entries(&mut self) -> Vec<QueueEntry> {
        let (partition, context) = (self.partition, self.context.clone());
        let mut entries = Vec::new();
        for incoming in self.backlog.front_mut().take(ENTRIES_PER_STEP) {
            if let Incoming::Poison(raw) = incoming {
                if let Err(error) = context.dead_letters.send(&context.topic, raw).await {
                    tracing::warn!(partition, offset = raw.offset, %error, "cannot dead-letter a record yet");
                    return entries;
                }
                metrics::counter!("activator_dead_letters_total", "partition" => partition.to_string()).increment(1);
                *incoming = Incoming::Entry(QueueEntry::DeadLettered {
                    queue_number: raw.offset,
                });
            }
            if let Incoming::Entry(entry) = incoming {
                entries.push(entry.clone());
            }
        }
        entries
    }

    /// Records between the serving counter and the buffer are missing (the broker
    /// returned a later batch than asked for). Drop the buffer and read the partition
    /// again from before the counter; each further gap reaches further back, down to the
    /// first offset, so the missing records are always found.
    async fn read_again(&mut self, serving: i64) {
        let partition = self.partition;
        let target = (serving - self.reread.lookback).max(0);
        self.reread.lookback = self.reread.lookback.saturating_mul(2);
        self.backlog.clear();
        let consumer = self.context.consumer.clone();
        let topic = self.context.topic.clone();
        let seek = tokio::task::spawn_blocking(move || {
            consumer.seek(
                &topic,
                partition,
                Offset::Offset(target),
                Duration::from_secs(5),
            )
        })
        .await;
        match seek {
            Ok(Ok(())) => {
                self.reread.pending = Some((serving, Instant::now()));
                metrics::counter!("activator_rereads_total", "partition" => partition.to_string())
                    .increment(1);
                tracing::warn!(
                    partition,
                    serving,
                    target,
                    "records missing before the buffer; reading again"
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(partition, %error, "cannot seek to re-read missing records")
            }
            Err(error) => tracing::warn!(partition, %error, "seek task failed"),
        }
    }

    async fn announce(&self, outcome: &StepOutcome, active_until_ms: i64, rate_per_second: f64) {
        let context = &self.context;
        let announcement = ServingAnnouncement {
            partition: self.partition,
            reached_from: outcome.reached_from,
            serving: outcome.serving,
            abandoned: outcome.abandoned.clone(),
            dead_lettered: outcome.dead_lettered.clone(),
            deferred: outcome.deferred.clone(),
            activated_deferred: outcome.activated_deferred.clone(),
            active_until_ms: (outcome.activated > 0).then_some(active_until_ms),
            rate_per_second,
        };
        let result: redis::RedisResult<()> = redis::pipe()
            .hset_multiple(
                context.keys.queue_stats(self.partition),
                &[
                    (QueueStats::RATE, rate_per_second.to_string()),
                    (
                        QueueStats::RATE_AT,
                        Utc::now().timestamp_millis().to_string(),
                    ),
                ],
            )
            .ignore()
            .publish(context.keys.serving_channel(), announcement.to_json())
            .ignore()
            .query_async(&mut context.redis.clone())
            .await;
        if let Err(error) = result {
            // Streams resynchronise on the next announcement; the state itself is stored.
            tracing::warn!(partition = self.partition, %error, "cannot announce the serving counter");
        }
    }

    /// Commits `serving` as the partition's next offset. Asynchronous: the serving
    /// counter in Redis is the authoritative position; the commit only bounds replay.
    fn commit(&self, serving: i64) {
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&self.context.topic, self.partition, Offset::Offset(serving))
            .is_ok()
        {
            if let Err(error) = self.context.consumer.commit(&offsets, CommitMode::Async) {
                tracing::debug!(partition = self.partition, %error, "offset commit refused (partition revoked?)");
            }
        }
    }
}

/// Re-reading after a gap.
struct Reread {
    lookback: i64,
    /// Set after a seek: the serving counter at the gap and when the seek happened.
    /// Records past the gap point are still in flight from before the seek (or the
    /// broker skipped the hole again) and are dropped until the re-read reaches it.
    pending: Option<(i64, Instant)>,
}

impl Default for Reread {
    fn default() -> Self {
        Self {
            lookback: REREAD_LOOKBACK,
            pending: None,
        }
    }
}

impl Reread {
    /// When a re-read has produced nothing usable for a while, the time to go further back.
    fn stalled_at(&self) -> Option<(i64, Instant)> {
        self.pending
            .map(|(gap_at, since)| (gap_at, since + REREAD_STALL))
    }
}

async fn sleep_until_stalled(stalled: Option<(i64, Instant)>) {
    match stalled {
        Some((_, at)) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
