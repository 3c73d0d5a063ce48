//! The activators' Kafka consumer group: which queues this instance owns, and feeding
//! each owned queue's records to its [`QueueWorker`].
//!
//! Ownership follows the group's assignment (classic protocol): when another activator
//! dies, its partitions are assigned here after the session timeout and continue from
//! the committed offset or the serving counter, whichever is further. Revoked queues'
//! workers are stopped. A worker whose buffer grows past a bound has its partition
//! paused until it catches up, so one slow queue never holds the others' records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::TopicPartitionList;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use waiting_room::kafka;
use waiting_room::live_catalog::LiveCatalog;
use waiting_room::redis_keys::RedisKeys;
use waiting_room::ticket_record::TicketRecord;

use crate::activation::QueueEntry;
use crate::dead_letter::{DeadLetter, RawRecord};
use crate::queue_worker::{Incoming, QueueWorker, WorkerShared};

/// Pause a partition with more records buffered than this; resume below half of it.
const PAUSE_ABOVE: usize = 200_000;

/// Rejoin the group with a fresh member id at most this often (see [`Rejoin`]).
const REJOIN_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// A rebalance as the dispatcher sees it.
pub enum RebalanceEvent {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Reports rebalances from librdkafka's thread to the dispatcher.
pub struct RebalanceContext {
    events: mpsc::UnboundedSender<RebalanceEvent>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let revoked: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                tracing::info!(?revoked, "partitions revoked");
                let _ = self.events.send(RebalanceEvent::Revoked(revoked));
            }
            Rebalance::Assign(partitions) => {
                let assigned: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                tracing::info!(?assigned, "partitions assigned");
                let _ = self.events.send(RebalanceEvent::Assigned(assigned));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// Everything a worker needs besides its partition.
pub struct Dependencies {
    pub catalog: LiveCatalog,
    pub redis: ConnectionManager,
    pub keys: RedisKeys,
    pub dead_letters: Arc<DeadLetter>,
    pub topic: String,
    pub partitions: i32,
}

/// Works around Tansu 0.6's group coordinator: when a member dies, Tansu drops it on
/// the missed heartbeat but keeps the group's generation, so the survivors rejoin and
/// get their old assignment back and the dead member's partitions are never consumed.
/// A rebalance that hands back exactly the partial assignment we had is that case (or a
/// harmless coincidence); leaving and rejoining with a fresh member id makes the
/// coordinator form a new generation from the live members. Rate-limited, so two live
/// activators cannot keep each other rebalancing.
#[derive(Default)]
struct Rejoin {
    held: Vec<i32>,
    last: Option<std::time::Instant>,
}

impl Rejoin {
    fn after_assignment(&mut self, mut assigned: Vec<i32>, partitions: i32) -> bool {
        assigned.sort_unstable();
        let unchanged_partial =
            assigned == self.held && assigned.len() < usize::try_from(partitions).unwrap_or(0);
        self.held = assigned;
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= REJOIN_AT_MOST_EVERY);
        if unchanged_partial && due {
            self.last = Some(std::time::Instant::now());
            return true;
        }
        false
    }
}

struct WorkerHandle {
    shared: Arc<WorkerShared>,
    records: mpsc::UnboundedSender<Incoming>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    paused: bool,
}

/// Consumes until `shutdown`, then stops the workers and leaves the group.
pub async fn run(
    brokers: String,
    group_id: String,
    dependencies: Dependencies,
    shutdown: CancellationToken,
) {
    let (events_sender, mut rebalances) = mpsc::unbounded_channel();
    let consumer: StreamConsumer<RebalanceContext> =
        match kafka::consumer_config(&brokers, &group_id).create_with_context(RebalanceContext {
            events: events_sender,
        }) {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::error!(%error, "cannot create the Kafka consumer");
                return;
            }
        };
    let consumer = Arc::new(consumer);
    if let Err(error) = consumer.subscribe(&[dependencies.topic.as_str()]) {
        tracing::error!(%error, "cannot subscribe to the tickets topic");
        return;
    }
    let mut workers: HashMap<i32, WorkerHandle> = HashMap::new();
    let mut rejoin = Rejoin::default();
    let mut backpressure = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(event) = rebalances.recv() => match event {
                RebalanceEvent::Revoked(partitions) => {
                    for partition in partitions {
                        if let Some(worker) = workers.remove(&partition) {
                            worker.stop.cancel();
                        }
                    }
                }
                RebalanceEvent::Assigned(partitions) => {
                    if rejoin.after_assignment(partitions, dependencies.partitions) {
                        tracing::info!("rebalance returned a stale partial assignment; rejoining the group");
                        consumer.unsubscribe();
                        if let Err(error) = consumer.subscribe(&[dependencies.topic.as_str()]) {
                            tracing::error!(%error, "cannot resubscribe to the tickets topic");
                        }
                    }
                }
            },
            message = consumer.recv() => match message {
                Ok(message) => dispatch(&message, &mut workers, &consumer, &dependencies, &shutdown),
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = backpressure.tick() => resume_caught_up(&mut workers, &consumer, &dependencies.topic),
        }
    }
    for worker in workers.values() {
        worker.stop.cancel();
    }
    for (_, worker) in workers.drain() {
        let _ = worker.task.await;
    }
    consumer.unsubscribe();
    tracing::info!("consumer stopped");
}

fn dispatch(
    message: &BorrowedMessage<'_>,
    workers: &mut HashMap<i32, WorkerHandle>,
    consumer: &Arc<StreamConsumer<RebalanceContext>>,
    dependencies: &Dependencies,
    shutdown: &CancellationToken,
) {
    let partition = message.partition();
    let worker = workers
        .entry(partition)
        .or_insert_with(|| spawn_worker(partition, consumer, dependencies, shutdown));
    let incoming = match TicketRecord::parse(message.payload()) {
        Ok(record) => Incoming::Entry(QueueEntry::Ticket {
            queue_number: message.offset(),
            ticket_id: record.ticket_id,
            event_id: record.event_id,
            issued_ms: record
                .issued_at
                .timestamp_millis()
                .min(Utc::now().timestamp_millis()),
        }),
        Err(error) => Incoming::Poison(RawRecord {
            partition,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            reason: error.to_string(),
        }),
    };
    let buffered = worker.shared.buffered.fetch_add(1, Ordering::Relaxed) + 1;
    if worker.records.send(incoming).is_err() {
        worker.shared.buffered.fetch_sub(1, Ordering::Relaxed);
    }
    if buffered > PAUSE_ABOVE
        && !worker.paused
        && consumer
            .pause(&single(&dependencies.topic, partition))
            .is_ok()
    {
        worker.paused = true;
        tracing::info!(
            partition,
            buffered,
            "queue far behind: pausing its partition"
        );
    }
}

fn resume_caught_up(
    workers: &mut HashMap<i32, WorkerHandle>,
    consumer: &StreamConsumer<RebalanceContext>,
    topic: &str,
) {
    for worker in workers.values_mut().filter(|worker| worker.paused) {
        if worker.shared.buffered.load(Ordering::Relaxed) < PAUSE_ABOVE / 2
            && consumer
                .resume(&single(topic, worker.shared.partition))
                .is_ok()
        {
            worker.paused = false;
        }
    }
}

fn single(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    list
}

fn spawn_worker(
    partition: i32,
    consumer: &Arc<StreamConsumer<RebalanceContext>>,
    dependencies: &Dependencies,
    shutdown: &CancellationToken,
) -> WorkerHandle {
    let shared = Arc::new(WorkerShared {
        partition,
        buffered: AtomicUsize::new(0),
    });
    let (records, receiver) = mpsc::unbounded_channel();
    let stop = shutdown.child_token();
    let worker = QueueWorker {
        shared: shared.clone(),
        records: receiver,
        catalog: dependencies.catalog.clone(),
        redis: dependencies.redis.clone(),
        keys: dependencies.keys.clone(),
        consumer: consumer.clone(),
        dead_letters: dependencies.dead_letters.clone(),
        topic: dependencies.topic.clone(),
        shutdown: stop.clone(),
    };
    tracing::info!(partition, "queue worker started");
    WorkerHandle {
        shared,
        records,
        stop,
        task: tokio::spawn(worker.run()),
        paused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::Rejoin;

    #[test]
    fn rejoins_only_when_a_partial_assignment_comes_back_unchanged() {
        let mut rejoin = Rejoin::default();
        assert!(
            !rejoin.after_assignment(vec![0, 1, 2, 3], 4),
            "first assignment, full"
        );
        assert!(!rejoin.after_assignment(vec![2, 3], 4), "changed");
        assert!(
            rejoin.after_assignment(vec![3, 2], 4),
            "same partial assignment again"
        );
        assert!(!rejoin.after_assignment(vec![2, 3], 4), "rate-limited");
        assert!(!rejoin.after_assignment(vec![0, 1, 2, 3], 4));
    }
}
