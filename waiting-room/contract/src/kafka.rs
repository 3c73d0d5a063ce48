//! Kafka client settings shared by every producer and consumer, so that durability
//! (idempotent producer, `acks=all`) and group behaviour (classic protocol, short session
//! timeout) are decided once; the producer every service appends with, the topics'
//! creation with the configured replication, and the readiness check on the topics a
//! service uses (present, and replicated as the deployment expects).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use platform::readiness::{Check, CHECK_TIMEOUT};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::kafka_connection::KafkaConnection;

/// Settings for a producer whose acknowledgements mean the record is durable:
/// idempotent (no duplicates on retry, order kept per partition) and `acks=all`.
pub fn producer_config(
    kafka: &KafkaConnection,
    linger_ms: u32,
    message_timeout: Duration,
) -> ClientConfig {
    let mut config = kafka.client();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        // A join may name a partition added online: learn of it within seconds.
        .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS);
    config
}

/// Settings for a consumer in `group_id` that commits offsets itself, after the work a
/// record stands for is done. The classic group protocol and a 6 s session timeout make
/// joins and failover take seconds, not the ~45 s librdkafka's default costs on Tansu.
/// Tansu keeps a dead member in a rebalance until the rebalance timeout (the member's
/// `max.poll.interval.ms`, 300 s by default), so that is bounded too: the consumer loop
/// polls continuously, far more often than every 10 s.
pub fn consumer_config(kafka: &KafkaConnection, group_id: &str) -> ClientConfig {
    let mut config = kafka.client();
    config
        .set("group.id", group_id)
        .set("group.protocol", "classic")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Partitions added online are assigned within seconds, not librdkafka's 5 min.
        .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS);
    config
}

/// How often clients look for partitions added to a topic online.
const METADATA_REFRESH_MS: &str = "10000";

/// Raises `topic` to at least `partitions` partitions (Kafka adds partitions, never
/// removes them) and returns how many it has. A topic that already has that many is
/// left alone, so a raise the broker made but whose recording failed (or a concurrent
/// one) is simply asked for again.
pub async fn raise_partitions(
    kafka: &KafkaConnection,
    topic: &str,
    partitions: usize,
) -> anyhow::Result<usize> {
    let current = partition_count_now(kafka, topic).await?;
    if current >= partitions {
        tracing::info!(
            topic,
            current,
            "the topic already has the partitions asked for"
        );
        return Ok(current);
    }
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let request = NewPartitions::new(topic, partitions);
    for result in admin.create_partitions([&request], &options).await? {
        if let Err((name, code)) = result {
            // Raised meanwhile by someone else: what counts is the count now.
            let now = partition_count_now(kafka, topic).await.unwrap_or(0);
            if now >= partitions {
                return Ok(now);
            }
            anyhow::bail!(
                "the broker refused to raise {name} to {partitions} partitions: {code:?}"
            );
        }
    }
    tracing::info!(topic, partitions, "raised the partition count");
    Ok(partitions)
}

/// `topic`'s partition count as the broker says now.
async fn partition_count_now(kafka: &KafkaConnection, topic: &str) -> anyhow::Result<usize> {
    let client = metadata_client(kafka)?;
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        topic_partition_count(&client, &name, Duration::from_secs(5))
    })
    .await?
    .map_err(anyhow::Error::msg)
}

/// A small client used only to ask the broker for topic metadata (readiness checks).
pub fn metadata_client(kafka: &KafkaConnection) -> Result<BaseProducer, KafkaError> {
    kafka
        .client()
        // A producer's metadata request would otherwise create a missing topic on a
        // broker that allows it, with the broker's partitions and replication.
        .set("allow.auto.create.topics", "false")
        .create()
}

/// Asks the broker for `topic`'s metadata and returns its partition count. Blocking
/// (librdkafka's metadata call is synchronous): call it from `spawn_blocking`.
pub fn topic_partition_count(
    client: &BaseProducer,
    topic: &str,
    timeout: Duration,
) -> Result<usize, String> {
    topic_shape(client, topic, timeout).map(|shape| shape.partitions)
}

/// A topic's size and redundancy as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicShape {
    pub partitions: usize,
    /// The least replicated partition and its count of distinct replica brokers (a
    /// single-node broker may list itself once per replica asked for).
    pub least_replicated: (i32, usize),
}

/// Why a topic cannot be relied on as configured.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The broker did not answer, or the topic is missing: may pass once it is up.
    #[error("{0}")]
    Unavailable(String),
    /// Fewer copies than `KAFKA_REPLICATION_FACTOR`: `acks=all` promises less than
    /// the operator planned for. Only an operator can fix it.
    #[error(
        "topic {topic} has {replicas} replica(s) on partition {partition}, fewer than \
         KAFKA_REPLICATION_FACTOR={wanted}: an acknowledged ticket would have fewer copies \
         than planned. Raise the topic's replication (kafka-reassign-partitions) or, for a \
         single-broker stack, set KAFKA_REPLICATION_FACTOR=1 and KAFKA_MIN_INSYNC_REPLICAS=1"
    )]
    UnderReplicated {
        topic: String,
        partition: i32,
        replicas: usize,
        wanted: i32,
    },
}

/// Asks the broker for `topic`'s metadata. Blocking: call it from `spawn_blocking`.
pub fn topic_shape(
    client: &BaseProducer,
    topic: &str,
    timeout: Duration,
) -> Result<TopicShape, String> {
    let metadata = client
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|error| format!("broker metadata request failed: {error}"))?;
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|candidate| candidate.name() == topic)
        .ok_or_else(|| format!("topic {topic} missing from metadata"))?;
    if let Some(error) = topic_metadata.error() {
        return Err(format!(
            "topic {topic}: {:?}",
            RDKafkaErrorCode::from(error)
        ));
    }
    let partitions = topic_metadata.partitions();
    let least_replicated = partitions
        .iter()
        .map(|partition| {
            let brokers: std::collections::BTreeSet<i32> =
                partition.replicas().iter().copied().collect();
            (partition.id(), brokers.len())
        })
        .min_by_key(|(_, replicas)| *replicas)
        .ok_or_else(|| format!("topic {topic} has no partitions"))?;
    Ok(TopicShape {
        partitions: partitions.len(),
        least_replicated,
    })
}

/// Checks that `topic` exists and every partition has the configured replicas.
/// Blocking: call it from `spawn_blocking`.
fn check_topic(
    client: &BaseProducer,
    kafka: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<(), TopicError> {
    let shape = topic_shape(client, topic, timeout).map_err(TopicError::Unavailable)?;
    let (partition, replicas) = shape.least_replicated;
    let wanted = kafka.replication_factor;
    if i32::try_from(replicas).unwrap_or(i32::MAX) < wanted {
        return Err(TopicError::UnderReplicated {
            topic: topic.to_owned(),
            partition,
            replicas,
            wanted,
        });
    }
    Ok(())
}

/// Ready when the broker returns metadata for every one of `topics` and each is
/// replicated as configured.
pub fn topics_check(kafka: &KafkaConnection, topics: Vec<String>) -> Result<Check, KafkaError> {
    let client = Arc::new(metadata_client(kafka)?);
    let (kafka, topics) = (Arc::new(kafka.clone()), Arc::new(topics));
    Ok(Check::new("kafka", move || {
        let (client, kafka, topics) = (client.clone(), kafka.clone(), topics.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                for topic in topics.iter() {
                    check_topic(&client, &kafka, topic, CHECK_TIMEOUT)
                        .map_err(|error| error.to_string())?;
                }
                Ok(())
            })
            .await
            .map_err(|error| format!("metadata task failed: {error}"))?
        }
    }))
}

/// At a service's start, and after `create-topics`: refuses (an error naming the topic
/// and the settings) when a topic has fewer replicas than configured. A broker that does not answer yet,
/// or a topic not created yet, is not a refusal: readiness reports it until it is fixed.
pub async fn refuse_under_replicated(
    kafka: &KafkaConnection,
    topics: &[String],
) -> anyhow::Result<()> {
    let client = metadata_client(kafka)?;
    let (kafka, topics) = (kafka.clone(), topics.to_vec());
    let outcome = tokio::task::spawn_blocking(move || {
        topics
            .iter()
            .try_for_each(|topic| check_topic(&client, &kafka, topic, Duration::from_secs(5)))
    })
    .await?;
    match outcome {
        Err(refusal @ TopicError::UnderReplicated { .. }) => Err(refusal.into()),
        Err(TopicError::Unavailable(reason)) => {
            tracing::warn!(%reason, "cannot check the topics' replication yet; readiness will");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Creates each `(topic, partitions)` that does not exist yet, with the configured
/// replication factor and `min.insync.replicas`. Existing topics are left alone (their
/// partition count and replication are not changed), but one with fewer replicas than
/// configured is an error, as it would be at every service's start.
pub async fn ensure_topics(kafka: &KafkaConnection, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let min_insync = kafka.min_insync_replicas.to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            )
            .set("min.insync.replicas", &min_insync)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new_topics.iter(), &options).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic already exists")
            }
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code:?}"),
        }
    }
    // Topics that existed are left alone, but one the services would refuse fails the
    // set-up step here, not every service at its start.
    let names: Vec<String> = topics.iter().map(|(name, _)| (*name).to_owned()).collect();
    refuse_under_replicated(kafka, &names).await
}

/// Deletes topics (test clean-up). Missing topics are not an error.
pub async fn delete_topics(kafka: &KafkaConnection, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(topics, &options).await? {
        if let Err((name, code)) = result {
            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                anyhow::bail!("cannot delete topic {name}: {code:?}");
            }
        }
    }
    Ok(())
}

/// How long produces must keep failing before the producer is suspected stuck.
const REBUILD_AFTER: Duration = Duration::from_secs(3);

/// Why the broker did not acknowledge a record.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the record: {0}")]
    Refused(#[from] KafkaError),
}

/// An idempotent producer that replaces itself when it is stuck.
///
/// librdkafka's idempotent producer keeps its producer id and sequence numbers across
/// reconnects. A broker that lost its state (Tansu's memory engine after a restart, or a
/// cluster rebuilt from scratch) can leave it timing out every produce forever without
/// reporting a fatal error. When produces have failed for [`REBUILD_AFTER`] while the
/// broker answers metadata requests, the client is replaced by a fresh one.
pub struct DurableProducer {
    config: ClientConfig,
    current: ArcSwap<FutureProducer>,
    failing_since: Mutex<Option<Instant>>,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
}

/// Producers replaced because they kept failing while the broker answered.
const PRODUCER_REBUILDS: &str = "kafka_producer_rebuilds_total";

impl DurableProducer {
    pub fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let producer = config.create()?;
        metrics::counter!(PRODUCER_REBUILDS).increment(0);
        Ok(Self {
            config,
            current: ArcSwap::from_pointee(producer),
            failing_since: Mutex::new(None),
        })
    }

    fn failing_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.failing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one record and waits up to `timeout` for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Acknowledged, ProduceError> {
        let producer = self.current.load_full();
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let delivery = producer.send(record, Timeout::After(timeout));
        // librdkafka's own timeout covers queueing; this bounds the wait whatever happens.
        let result =
            match tokio::time::timeout(timeout + Duration::from_millis(500), delivery).await {
                Err(_) => Err(ProduceError::Timeout(timeout)),
                Ok(Err((error, _))) => Err(ProduceError::Refused(error)),
                Ok(Ok(delivery)) => Ok(Acknowledged {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
            };
        match &result {
            Ok(_) => *self.failing_since() = None,
            Err(_) => self.after_failure(producer).await,
        }
        result
    }

    async fn after_failure(&self, failed: Arc<FutureProducer>) {
        let now = Instant::now();
        let since = *self.failing_since().get_or_insert(now);
        if now.duration_since(since) < REBUILD_AFTER {
            return;
        }
        let probe = failed.clone();
        let broker_answers = tokio::task::spawn_blocking(move || {
            probe
                .client()
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if !broker_answers {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                // Another request may have replaced it already.
                let previous = self.current.compare_and_swap(&failed, Arc::new(fresh));
                if Arc::ptr_eq(&previous, &failed) {
                    tracing::warn!("producer kept failing while the broker answers; replaced it");
                    metrics::counter!(PRODUCER_REBUILDS).increment(1);
                }
                *self.failing_since() = None;
            }
            Err(error) => tracing::error!(%error, "cannot create a replacement producer"),
        }
    }
}
