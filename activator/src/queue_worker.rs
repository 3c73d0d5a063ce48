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
//!
//! A queue found without its serving counter (new, or Redis lost it) is rebuilt before
//! it is stepped ([`recovery`]). An idle queue is still stepped every
//! [`IDLE_CHECK`], so a loss is noticed, and repaired, while nobody joins.
//!
//! Scheduled sales (see [`QueueSchedule`]): the queue is held until the start and the
//! worker wakes at it by itself. A shuffled pre-queue is drawn first: the worker records
//! the pre-queue's offsets in PostgreSQL (once; a restarted worker finds them), then
//! serves the pre-queue in drawn order, only once all of it is buffered, and commits no
//! offset inside it until all of it is reached, so a crash neither skips nor repeats
//! anyone.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use contract::catalog::{QueueConfig, QueueMode};
use contract::draw::{self, Draw, DrawRange};
use contract::kafka_connection::KafkaConnection;
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::{QueueStats, RedisKeys};
use contract::serving_announcement::ServingAnnouncement;
use platform::redis_connection::{replies_or_refusal, RedisConnection};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::activation::{self, QueueEntry, StepLimits, StepOutcome};
use crate::backlog::{Backlog, Incoming};
use crate::config::ReplicaAcks;
use crate::dead_letter::DeadLetter;
use crate::decision_journal::DecisionJournal;
use crate::group::GroupConsumer;
use crate::queue_schedule::QueueSchedule;
use crate::rate::RateWindow;
use crate::recovery::{self, QueueAtLoss};

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
/// After a failed attempt to fix a draw (PostgreSQL, Redis or the broker down).
const DRAW_RETRY: Duration = Duration::from_secs(1);
/// How often a queue with nothing to do is stepped anyway: it notices a lost Redis
/// (and rebuilds it) within this, not at its next join.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The per-queue counters of a queue's outcomes.
const QUEUE_COUNTERS: &[&str] = &[
    "activator_activations_total",
    "activator_abandoned_total",
    "activator_expirations_total",
    "activator_dead_letters_total",
    "activator_decisions_published_total",
    "activator_rebuilds_total",
];
/// The per-queue gauges an instance reports only while it owns the queue.
const QUEUE_GAUGES: &[&str] = &[
    "activator_queue_serving",
    "activator_waiting",
    "activator_active",
    "activator_deferred",
    "activator_consumer_lag",
];

/// What every queue worker of an activator shares.
pub struct WorkerContext {
    pub catalog: LiveCatalog,
    pub redis: RedisConnection,
    pub keys: RedisKeys,
    pub consumer: Arc<GroupConsumer>,
    pub dead_letters: Arc<DeadLetter>,
    pub decisions: Arc<DecisionJournal>,
    pub topic: String,
    /// Read back, with the tickets topic, to rebuild a queue Redis lost.
    pub decisions_topic: String,
    pub kafka: KafkaConnection,
    /// One rebuild at a time: each holds its queue's history in memory.
    pub rebuilds: tokio::sync::Semaphore,
    /// Replicas a step must reach before it is announced and published.
    pub replica_acks: ReplicaAcks,
}

/// One queue's worker and all of its state.
pub struct QueueWorker {
    partition: i32,
    context: Arc<WorkerContext>,
    backlog: Backlog,
    rate: RateWindow,
    reread: Reread,
    next_tick: Instant,
    /// When the last tick ran: an idle queue is stepped every [`IDLE_CHECK`] after it.
    last_tick: Instant,
    /// The serving counter after the last step, once one ran: where a rebuild starts.
    known_serving: Option<i64>,
    /// Whether the queue's deferred set held tickets after the last step (assumed at
    /// start: a previous owner may have left some).
    deferred_waiting: bool,
    /// The draw the buffer is ordered by, once one is fixed for this queue.
    draw: Option<Draw>,
    /// The highest offset received since the buffer was last emptied by a re-read: a
    /// drawn pre-queue is served only once all of it is buffered.
    max_received: i64,
    /// Wakes the queue's decision publisher after a step that decided something.
    journal: Arc<Notify>,
    stop: CancellationToken,
}

impl QueueWorker {
    pub fn new(
        partition: i32,
        context: Arc<WorkerContext>,
        backlog: Backlog,
        stop: CancellationToken,
    ) -> Self {
        let journal = context.decisions.clone().start_publisher(
            context.redis.clone(),
            context.keys.clone(),
            partition,
            stop.clone(),
        );
        Self {
            partition,
            context,
            backlog,
            rate: RateWindow::default(),
            reread: Reread::default(),
            next_tick: Instant::now(),
            last_tick: Instant::now(),
            known_serving: None,
            deferred_waiting: true,
            draw: None,
            max_received: -1,
            journal,
            stop,
        }
    }

    pub async fn run(mut self) {
        let partition = self.partition;
        // The queue's outcome counters are series from the start, so their rates read
        // zero rather than nothing.
        for counter in QUEUE_COUNTERS {
            metrics::counter!(*counter, "partition" => partition.to_string()).increment(0);
        }
        let mut catalog_changes = self.context.catalog.subscribe();
        loop {
            let catalog = self.context.catalog.current();
            let queue = catalog.queue(partition);
            let schedule = QueueSchedule::of(&catalog, partition, Utc::now());
            // A fixed draw never changes; a catalog read that lacks it (a reload that
            // started before the draw was recorded) must not undo it.
            if let Some(draw) = schedule.draw.filter(|draw| Some(*draw) != self.draw) {
                self.follow_draw(draw);
            }
            if let Some(event_id) = &schedule.undrawn {
                if !self.fix_draw(event_id).await {
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(DRAW_RETRY) => {}
                    }
                }
                continue;
            }
            let draw_incomplete = self.draw_incomplete();
            self.backlog.set_unbounded(draw_incomplete);
            // Without the catalog, neither the schedules nor the draws are known.
            let serving =
                catalog.loaded && queue.mode != QueueMode::Paused && schedule.serving_allowed();
            self.report_queue(serving);
            let can_tick = serving && !draw_incomplete;
            let idle = self.backlog.is_empty() && !self.deferred_waiting;
            let tick_at = if idle {
                self.next_tick.max(self.last_tick + IDLE_CHECK)
            } else {
                self.next_tick
            };
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = sleep_until_change(schedule.next_change()), if schedule.next_change().is_some() => {
                    // A pre-queue opens (the queue is held from now) or a sale starts (the
                    // next pass opens the queue, or draws first).
                    self.next_tick = Instant::now();
                }
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
                () = tokio::time::sleep_until(tick_at.into()), if can_tick => {
                    // Tick lateness: from the instant the tick was due (its place on the
                    // queue's grid, or the idle check's) to the instant it starts running;
                    // the tick's own Redis and Kafka work is its duration, measured apart.
                    let lateness = Instant::now().saturating_duration_since(tick_at);
                    let span = tracing::info_span!("activation_tick", partition, mode = ?queue.mode);
                    self.tick(&queue, &schedule, lateness).instrument(span).await;
                    self.last_tick = Instant::now();
                    let interval = tick_interval(&queue);
                    self.next_tick = on_grid(
                        (self.next_tick + interval).max(Instant::now()),
                        interval,
                        self.partition,
                    );
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
        self.forget_queue();
        tracing::debug!(partition, "queue worker stopped");
    }

    /// Whether the queue may serve now (an alert compares it with the ticks) and how many
    /// records wait, refreshed on every pass so a worker that stopped ticking still shows
    /// its line.
    fn report_queue(&self, serving: bool) {
        let label = self.partition.to_string();
        metrics::gauge!("activator_queue_serving", "partition" => label.clone())
            .set(f64::from(u8::from(serving)));
        metrics::gauge!("activator_waiting", "partition" => label).set(self.backlog.len() as f64);
    }

    /// The queue's gauges read zero here once another instance owns it, so sums across
    /// instances count each queue once.
    fn forget_queue(&self) {
        let label = self.partition.to_string();
        for gauge in QUEUE_GAUGES {
            metrics::gauge!(*gauge, "partition" => label.clone()).set(0.0);
        }
    }

    /// Buffers a received record, unless a re-read is under way and the record is past
    /// the gap: it is still in flight from before the seek (or the broker skipped the
    /// hole again) and comes back with the re-read.
    fn admit(&mut self, incoming: Incoming) {
        let offset = incoming.offset();
        if let Some((gap_at, _)) = self.reread.pending {
            if offset > gap_at {
                self.backlog.discard(incoming);
                return;
            }
            self.reread.pending = None;
        }
        self.max_received = self.max_received.max(offset);
        let number = self.place(offset);
        self.backlog.push(number, incoming);
    }

    /// The place in line of the record at `offset`.
    fn place(&self, offset: i64) -> i64 {
        self.draw.map_or(offset, |draw| draw.queue_number(offset))
    }

    /// Orders the buffer by a newly fixed draw.
    fn follow_draw(&mut self, draw: Draw) {
        tracing::info!(
            partition = self.partition,
            first = draw.range.first,
            end = draw.range.end,
            "serving the pre-queue in drawn order"
        );
        self.backlog.renumber(|offset| draw.queue_number(offset));
        self.draw = Some(draw);
    }

    /// Whether part of a drawn pre-queue is buffered but not all of it yet: serving it
    /// now would skip the places still in flight. Meanwhile the partition is never
    /// paused (the whole pre-queue is held in memory, about 200 bytes a ticket).
    fn draw_incomplete(&self) -> bool {
        self.draw.is_some_and(|draw| {
            self.max_received < draw.range.end - 1
                && self
                    .backlog
                    .first_number()
                    .is_some_and(|first| first < draw.range.end)
        })
    }

    /// Fixes the pre-queue of `event_id` as the offsets from the queue's serving counter
    /// (nothing was served since the pre-queue opened) to the partition's end now, unless
    /// an earlier attempt fixed it already; then reloads the catalog. False on failure.
    async fn fix_draw(&mut self, event_id: &str) -> bool {
        let partition = self.partition;
        let context = self.context.clone();
        let serving: redis::RedisResult<Option<i64>> = redis::cmd("GET")
            .arg(context.keys.serving(partition))
            .query_async(&mut context.redis.clone())
            .await;
        let serving = match serving {
            Ok(serving) => serving,
            Err(error) => {
                tracing::warn!(partition, %error, "cannot read the serving counter to draw");
                return false;
            }
        };
        // Without a counter (Redis lost it), the records before the committed offset were
        // reached before the pre-queue.
        let (reached, high) = match self.positions().await {
            Ok(positions) => positions,
            Err(error) => {
                tracing::warn!(partition, %error, "cannot read the partition's end to draw");
                return false;
            }
        };
        let first = serving.unwrap_or(reached);
        let proposed = DrawRange {
            partition,
            first,
            end: high.max(first),
        };
        let pool = context.catalog.pool();
        match draw::fix_range(pool, event_id, proposed).await {
            Ok(range) => {
                tracing::info!(
                    partition,
                    event_id,
                    first = range.first,
                    end = range.end,
                    "pre-queue drawn"
                );
                metrics::counter!("activator_draws_total", "partition" => partition.to_string())
                    .increment(1);
            }
            Err(error) => {
                tracing::warn!(partition, %error, "cannot record the draw");
                return false;
            }
        }
        if let Err(error) = context.catalog.reload().await {
            tracing::warn!(partition, %error, "cannot reload the catalog after the draw");
            return false;
        }
        true
    }

    /// Where the group stands in the partition (its committed offset, or the partition's
    /// first without one) and the partition's end.
    async fn positions(&self) -> anyhow::Result<(i64, i64)> {
        let (partition, consumer) = (self.partition, self.context.consumer.clone());
        let topic = self.context.topic.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(5);
            let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
            let mut wanted = TopicPartitionList::new();
            wanted.add_partition(&topic, partition);
            let committed = consumer
                .committed_offsets(wanted, timeout)?
                .find_partition(&topic, partition)
                .and_then(|entry| match entry.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            Ok((committed.unwrap_or(low), high))
        })
        .await?
    }

    /// Rebuilds the queue's Redis state (see [`recovery`]) before its first step, from
    /// the counter this worker last saw, else the first record buffered, else the
    /// group's position (inside a drawn pre-queue that is its first offset: decided places
    /// are then skipped as replays). `None` on failure or when the worker is stopped: the
    /// queue is not stepped until a later tick succeeds.
    async fn rebuild(
        &mut self,
        entries: &[QueueEntry],
        limits: &StepLimits,
        schedule: &QueueSchedule,
        active_ttl_ms: i64,
    ) -> Option<recovery::Rebuilt> {
        let partition = self.partition;
        let serving = match self
            .known_serving
            .or_else(|| entries.first().map(QueueEntry::queue_number))
        {
            Some(serving) => serving,
            None => match self.positions().await {
                Ok((reached, _)) => reached,
                Err(error) => {
                    tracing::warn!(partition, %error, "cannot read the group's position to rebuild the queue");
                    return None;
                }
            },
        };
        let queue = QueueAtLoss {
            partition,
            serving,
            counter_seen: self.known_serving.is_some(),
            draw: self.draw,
            starts_ms: &schedule.starts_ms,
            now_ms: limits.now_ms,
            grace_ms: limits.grace_ms,
            active_ttl_ms,
            ticket_ttl_seconds: limits.ticket_ttl_seconds,
        };
        // A worker whose queue moved to another owner stops writing at once.
        let rebuilt = tokio::select! {
            () = self.stop.cancelled() => return None,
            rebuilt = recovery::rebuild(&self.context, queue) => rebuilt,
        };
        match rebuilt {
            Ok(rebuilt) => {
                if !rebuilt.is_empty() {
                    metrics::counter!("activator_rebuilds_total", "partition" => partition.to_string())
                        .increment(1);
                    tracing::warn!(
                        partition,
                        serving,
                        ?rebuilt,
                        "queue rebuilt from Kafka after Redis lost it"
                    );
                }
                Some(rebuilt)
            }
            Err(error) => {
                tracing::warn!(partition, %error, "cannot rebuild the queue's Redis state; retrying next tick");
                None
            }
        }
    }

    async fn tick(&mut self, queue: &QueueConfig, schedule: &QueueSchedule, lateness: Duration) {
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
        let mut limits = StepLimits {
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
        // Whether this tick rebuilt the queue, and restored anything.
        let (mut rebuilt, mut restored) = (false, false);
        loop {
            let entries = self.front_entries(schedule).await;
            // One step runs even with nothing buffered: it settles deferred tickets.
            if entries.is_empty() && total.is_some() {
                break;
            }
            let activated_so_far = total.as_ref().map_or(0, |total| total.activated);
            let step_limits = StepLimits {
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
                step_limits,
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(partition, %error, "activation step failed; retrying next tick");
                    break;
                }
            };
            if outcome.counter_missing {
                let active_ttl_ms = i64::from(policy.active_ttl_seconds) * 1000;
                if rebuilt {
                    break;
                }
                let Some(outcome) = self
                    .rebuild(&entries, &step_limits, schedule, active_ttl_ms)
                    .await
                else {
                    break;
                };
                (rebuilt, restored) = (true, !outcome.is_empty());
                // The rebuild took time: sessions opened next start from now.
                let now_ms = Utc::now().timestamp_millis();
                limits.now_ms = now_ms;
                limits.active_until_ms = now_ms + i64::from(policy.active_ttl_seconds) * 1000;
                continue;
            }
            let (gap, serving) = (outcome.gap, outcome.serving);
            self.known_serving = Some(serving);
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
        metrics::gauge!("activator_deferred", "partition" => label.clone())
            .set(total.deferred_waiting as f64);
        if total.changed_the_line() {
            self.await_replicas().await;
        }
        // After a rebuild, streams that read the queue while it had no counter learn
        // where it is.
        if total.changed_the_line() || restored {
            let rate = self.rate.per_second(Instant::now());
            self.announce(&total, limits.active_until_ms, rate).await;
        }
        if total.activated > 0 || !total.abandoned.is_empty() {
            self.journal.notify_one();
        }
        if total.serving > total.reached_from {
            self.commit(
                self.draw
                    .map_or(total.serving, |draw| draw.committable_offset(total.serving)),
            );
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

    /// Waits until the configured replicas hold this queue's writes so far (`WAIT` on
    /// the connection that made them, at the queue's primary), so a failover cannot
    /// take back what is announced next. Gives up after the timeout: the queue goes on.
    async fn await_replicas(&self) {
        let acks = self.context.replica_acks;
        if acks.replicas == 0 {
            return;
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(acks.replicas).arg(acks.timeout_ms);
        let key = self.context.keys.serving(self.partition);
        let reached: redis::RedisResult<u32> =
            self.context.redis.clone().query_where(&key, &wait).await;
        if !matches!(reached, Ok(reached) if reached >= acks.replicas) {
            metrics::counter!("activator_replica_ack_timeouts_total", "partition" => self.partition.to_string())
                .increment(1);
            tracing::warn!(
                partition = self.partition,
                ?reached,
                "a step reached fewer Redis replicas than asked"
            );
        }
    }

    /// The next entries in offset order, dead-lettering poison records on the way. Stops
    /// before a poison record whose dead letter was not acknowledged: it is never skipped
    /// unless it is safely in the dead-letter topic.
    ///
    /// A ticket of a scheduled sale issued before the start counts as issued at the
    /// start (see [`QueueSchedule::starts_ms`]).
    async fn front_entries(&mut self, schedule: &QueueSchedule) -> Vec<QueueEntry> {
        let (partition, context) = (self.partition, self.context.clone());
        let mut entries = Vec::new();
        for (number, incoming) in self.backlog.front_mut().take(ENTRIES_PER_STEP) {
            if let Incoming::Poison(raw) = incoming {
                if let Err(error) = context.dead_letters.send(&context.topic, raw).await {
                    tracing::warn!(partition, offset = raw.offset, %error, "cannot dead-letter a record yet");
                    return entries;
                }
                metrics::counter!("activator_dead_letters_total", "partition" => partition.to_string()).increment(1);
                *incoming = Incoming::Entry(QueueEntry::DeadLettered {
                    queue_number: number,
                });
            }
            if let Incoming::Entry(entry) = incoming {
                let mut entry = entry.clone();
                if let QueueEntry::Ticket {
                    event_id,
                    issued_ms,
                    ..
                } = &mut entry
                {
                    if let Some(start) = schedule.starts_ms.get(event_id.as_str()) {
                        *issued_ms = (*issued_ms).max(*start);
                    }
                }
                entries.push(entry);
            }
        }
        entries
    }

    /// Records between the serving counter and the buffer are missing (the broker
    /// returned a later batch than asked for). Drop the buffer and read the partition
    /// again from before the counter; each further gap reaches further back, down to the
    /// first offset, so the missing records are always found.
    ///
    /// Inside a drawn pre-queue the counter is a place, not an offset: the re-read starts
    /// before the pre-queue and takes any of its records.
    async fn read_again(&mut self, serving: i64) {
        let partition = self.partition;
        let (floor, gap_at) = self.draw.map_or((serving, serving), |draw| {
            (
                draw.committable_offset(serving),
                draw.last_offset_for(serving),
            )
        });
        let target = (floor - self.reread.lookback).max(0);
        self.reread.lookback = self.reread.lookback.saturating_mul(2);
        self.backlog.clear();
        self.max_received = target - 1;
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
                self.reread.pending = Some((gap_at, Instant::now()));
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
        let rate = redis::Cmd::hset_multiple(
            context.keys.queue_stats(self.partition),
            &[
                (QueueStats::RATE, rate_per_second.to_string()),
                (
                    QueueStats::RATE_AT,
                    Utc::now().timestamp_millis().to_string(),
                ),
            ],
        );
        let publish = redis::Cmd::publish(context.keys.serving_channel(), announcement.to_json());
        // Two slots in a cluster (the channel's name has one too): grouped, not piped.
        let result = context
            .redis
            .clone()
            .send_grouped(&[rate, publish])
            .await
            .and_then(replies_or_refusal);
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

/// Sleeps until the wall-clock instant when the queue's schedule next changes (a
/// pre-queue opening or a sale's start); forever without one.
async fn sleep_until_change(change: Option<chrono::DateTime<Utc>>) {
    let Some(change) = change else {
        return std::future::pending().await;
    };
    let wait = (change - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
}

async fn sleep_until_stalled(stalled: Option<(i64, Instant)>) {
    match stalled {
        Some((_, at)) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The first instant at or after `at` on the queue's tick grid: every `interval` from
/// a phase of its own. Queues with the same interval whose workers started together (an
/// assignment of hundreds of partitions at once) would otherwise tick in the same
/// instant forever, and the last of such a burst runs late by the whole burst's work;
/// on the grid their ticks are spread evenly over the interval.
fn on_grid(at: Instant, interval: Duration, partition: i32) -> Instant {
    static ANCHOR: LazyLock<Instant> = LazyLock::new(Instant::now);
    let period = interval.as_nanos();
    if period == 0 {
        return at;
    }
    // Consecutive partitions land far apart (the golden ratio's fractional part).
    let phase = (u128::from(partition.unsigned_abs()) * 618_034 % 1_000_000) * period / 1_000_000;
    let first = *ANCHOR + Duration::from_nanos(u64::try_from(phase).unwrap_or(0));
    if at <= first {
        return first;
    }
    let into_period = (at - first).as_nanos() % period;
    let wait = if into_period == 0 {
        0
    } else {
        period - into_period
    };
    at + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

fn tick_interval(queue: &QueueConfig) -> Duration {
    let interval = Duration::from_millis(u64::from(queue.activation.interval_ms));
    if queue.mode == QueueMode::Passthrough {
        interval.min(PASSTHROUGH_TICK)
    } else {
        interval
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::on_grid;

    #[test]
    fn a_queue_ticks_every_interval_and_queues_are_spread_over_it() {
        let interval = Duration::from_millis(1000);
        let start = Instant::now();
        let first = on_grid(start, interval, 7);
        assert!(first >= start && first < start + interval);
        assert_eq!(
            on_grid(first, interval, 7),
            first,
            "a grid point is on the grid"
        );
        assert_eq!(on_grid(first + interval, interval, 7), first + interval);
        assert_eq!(
            on_grid(first + Duration::from_millis(1), interval, 7),
            first + interval
        );
        // A thousand queues started together: no 10 ms of the interval holds more than a
        // few of their ticks.
        let mut per_slot = [0_u32; 100];
        for partition in 0..1000 {
            let due = on_grid(start, interval, partition).duration_since(start);
            per_slot[(due.as_millis() / 10) as usize] += 1;
        }
        assert!(per_slot.iter().all(|&ticks| ticks <= 20), "{per_slot:?}");
    }
}
