//! The activators' Kafka consumer group: which queues this instance owns, and feeding
//! each owned queue's records to its [`QueueWorker`].
//!
//! Ownership follows the group's assignment (classic protocol): when another activator
//! dies, its partitions are assigned here after the session timeout and continue from
//! the committed offset or the serving counter, whichever is further. Revoked queues'
//! workers are stopped. A worker whose backlog grows past a bound has its partition
//! paused until it catches up, so one slow queue never holds the others' records.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use contract::kafka;
use contract::kafka_connection::KafkaConnection;
use contract::live_catalog::LiveCatalog;
use contract::redis_schema::RedisKeys;
use contract::ticket_record::TicketRecord;
use platform::redis_connection::RedisConnection;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::activation::QueueEntry;
use crate::backlog::{self, BacklogSender, Incoming};
use crate::config::ReplicaAcks;
use crate::dead_letter::{DeadLetter, RawRecord};
use crate::decision_journal::DecisionJournal;
use crate::group::{GroupConsumer, RebalanceContext, RebalanceEvent, Rejoin};
use crate::queue_worker::{QueueWorker, WorkerContext};

/// Pause a partition with more records in its backlog than this; resume below half.
const PAUSE_ABOVE: usize = 200_000;
/// How often librdkafka reports the consumer lag (a gauge; scrapes come every 15 s).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// What the consumer needs besides the broker and the group.
pub struct Dependencies {
    pub catalog: LiveCatalog,
    pub redis: RedisConnection,
    pub keys: RedisKeys,
    pub dead_letters: Arc<DeadLetter>,
    pub decisions: Arc<DecisionJournal>,
    pub topic: String,
    pub decisions_topic: String,
    pub partitions: i32,
    pub replica_acks: ReplicaAcks,
}

struct WorkerHandle {
    backlog: BacklogSender,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    paused: bool,
}

/// The consumer loop's state: the group membership and the owned queues' workers.
struct Dispatcher {
    consumer: Arc<GroupConsumer>,
    context: Arc<WorkerContext>,
    workers: HashMap<i32, WorkerHandle>,
    /// Partitions the group assigned to this instance.
    owned: BTreeSet<i32>,
    rejoin: Rejoin,
    partitions: i32,
    shutdown: CancellationToken,
}

/// Consumes until `shutdown`, then stops the workers and leaves the group. An error when
/// the consumer cannot be created or subscribed, or a queue worker died: the activator
/// cannot do its work and must be restarted.
pub async fn run(
    kafka: KafkaConnection,
    group_id: String,
    dependencies: Dependencies,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (events, mut rebalances) = mpsc::unbounded_channel();
    let consumer: GroupConsumer = kafka::consumer_config(&kafka, &group_id)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(RebalanceContext { events })
        .context("cannot create the Kafka consumer")?;
    let consumer = Arc::new(consumer);
    consumer
        .subscribe(&[dependencies.topic.as_str()])
        .context("cannot subscribe to the tickets topic")?;
    let mut dispatcher = Dispatcher {
        context: Arc::new(WorkerContext {
            catalog: dependencies.catalog,
            redis: dependencies.redis,
            keys: dependencies.keys,
            consumer: consumer.clone(),
            dead_letters: dependencies.dead_letters,
            decisions: dependencies.decisions,
            topic: dependencies.topic,
            decisions_topic: dependencies.decisions_topic,
            kafka,
            rebuilds: tokio::sync::Semaphore::new(1),
            replica_acks: dependencies.replica_acks,
        }),
        consumer,
        workers: HashMap::new(),
        owned: BTreeSet::new(),
        rejoin: Rejoin::default(),
        partitions: dependencies.partitions,
        shutdown,
    };
    metrics::gauge!("activator_owned_queues").set(0.0);
    let mut upkeep = tokio::time::interval(Duration::from_millis(200));
    let consumer = dispatcher.consumer.clone();
    let shutdown = dispatcher.shutdown.clone();
    let result = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            Some(event) = rebalances.recv() => dispatcher.rebalanced(event),
            message = consumer.recv() => match message {
                Ok(message) => dispatcher.dispatch(&message),
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = upkeep.tick() => {
                if let Err(error) = dispatcher.upkeep() {
                    break Err(error);
                }
            }
        }
    };
    dispatcher.stop().await;
    result
}

impl Dispatcher {
    fn rebalanced(&mut self, event: RebalanceEvent) {
        match event {
            RebalanceEvent::Revoked(partitions) => {
                for partition in partitions {
                    self.owned.remove(&partition);
                    if let Some(worker) = self.workers.remove(&partition) {
                        worker.stop.cancel();
                    }
                }
            }
            RebalanceEvent::Assigned(partitions) => {
                self.owned.extend(partitions.iter().copied());
                // Every owned queue has its worker, records or not: it settles what a
                // previous owner deferred and notices a lost Redis.
                for partition in &partitions {
                    self.ensure_worker(*partition);
                }
                // The topic's partitions now (more than at start once raised online).
                let total = self
                    .context
                    .catalog
                    .current()
                    .partition_count(&self.context.topic, self.partitions);
                if self.rejoin.after_assignment(partitions, total) {
                    tracing::info!(
                        "rebalance returned a stale partial assignment; rejoining the group"
                    );
                    self.consumer.unsubscribe();
                    if let Err(error) = self.consumer.subscribe(&[self.context.topic.as_str()]) {
                        tracing::error!(%error, "cannot resubscribe to the tickets topic");
                    }
                }
            }
        }
        metrics::gauge!("activator_owned_queues").set(self.owned.len() as f64);
    }

    fn dispatch(&mut self, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
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
        self.ensure_worker(partition);
        let Some(worker) = self.workers.get_mut(&partition) else {
            return;
        };
        let backlog = worker.backlog.send(incoming);
        if backlog > PAUSE_ABOVE
            && !worker.paused
            && !worker.backlog.unbounded()
            && self
                .consumer
                .pause(&single(&self.context.topic, partition))
                .is_ok()
        {
            worker.paused = true;
            tracing::info!(
                partition,
                backlog,
                "queue far behind: pausing its partition"
            );
        }
    }

    /// Resumes partitions whose backlog shrank; fails when a worker died unasked.
    fn upkeep(&mut self) -> anyhow::Result<()> {
        for (partition, worker) in &mut self.workers {
            if worker.task.is_finished() {
                anyhow::bail!("the worker of queue {partition} stopped unexpectedly");
            }
            if worker.paused
                && (worker.backlog.len() < PAUSE_ABOVE / 2 || worker.backlog.unbounded())
                && self
                    .consumer
                    .resume(&single(&self.context.topic, *partition))
                    .is_ok()
            {
                worker.paused = false;
            }
        }
        Ok(())
    }

    /// Starts the queue's worker if it has none (a record may come before the
    /// assignment is handled).
    fn ensure_worker(&mut self, partition: i32) {
        if !self.workers.contains_key(&partition) {
            let worker = self.spawn_worker(partition);
            self.workers.insert(partition, worker);
        }
    }

    fn spawn_worker(&self, partition: i32) -> WorkerHandle {
        let (sender, backlog) = backlog::channel();
        let stop = self.shutdown.child_token();
        let worker = QueueWorker::new(partition, self.context.clone(), backlog, stop.clone());
        tracing::info!(partition, "queue worker started");
        WorkerHandle {
            backlog: sender,
            stop,
            task: tokio::spawn(worker.run()),
            paused: false,
        }
    }

    async fn stop(mut self) {
        for worker in self.workers.values() {
            worker.stop.cancel();
        }
        for (_, worker) in self.workers.drain() {
            let _ = worker.task.await;
        }
        self.consumer.unsubscribe();
        tracing::info!("consumer stopped");
    }
}

fn single(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    list
}
