//! Kafka client settings shared by every producer and consumer, so that durability
//! (idempotent producer, `acks=all`) and group behaviour (classic protocol, short session
//! timeout) are decided once.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

/// Settings for a producer whose acknowledgements mean the record is durable:
/// idempotent (no duplicates on retry, order kept per partition) and `acks=all`.
pub fn producer_config(brokers: &str, linger_ms: u32, message_timeout: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        .set("socket.keepalive.enable", "true");
    config
}

/// Settings for a consumer in `group_id` that commits offsets itself, after the work a
/// record stands for is done. The classic group protocol and a 6 s session timeout make
/// joins and failover take seconds, not the ~45 s librdkafka's default costs on Tansu.
pub fn consumer_config(brokers: &str, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("group.protocol", "classic")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("socket.keepalive.enable", "true");
    config
}

/// A small client used only to ask the broker for topic metadata (readiness checks).
pub fn metadata_client(brokers: &str) -> Result<BaseProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("socket.keepalive.enable", "true")
        .create()
}

/// Asks the broker for `topic`'s metadata and returns its partition count. Blocking
/// (librdkafka's metadata call is synchronous): call it from `spawn_blocking`.
pub fn topic_partition_count(
    client: &BaseProducer,
    topic: &str,
    timeout: Duration,
) -> Result<usize, String> {
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
    match topic_metadata.partitions().len() {
        0 => Err(format!("topic {topic} has no partitions")),
        count => Ok(count),
    }
}

/// Creates each `(topic, partitions)` that does not exist yet. Existing topics are left
/// alone (their partition count is not changed).
pub async fn ensure_topics(brokers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
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
    Ok(())
}

/// Deletes topics (test clean-up). Missing topics are not an error.
pub async fn delete_topics(brokers: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
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
