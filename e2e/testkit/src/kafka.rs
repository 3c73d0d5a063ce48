//! Reading records back from a topic, to check what a service appended.

use std::time::Duration;

use contract::config::CommonConfig;
use contract::kafka;
use contract::kafka_connection::KafkaConnection;
use uuid::Uuid;

/// Reads the record at `partition`/`offset` of `topic`, if it arrives within 10 s.
pub async fn read_record(
    kafka: &KafkaConnection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: StreamConsumer =
        kafka::consumer_config(kafka, &format!("test-reader-{}", Uuid::new_v4()))
            .create()
            .expect("create a consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
        .await
        .ok()?
        .ok()?;
    Some(message.detach())
}

/// A record read back: its key and JSON value.
pub type KeyedRecord = (Option<String>, serde_json::Value);

/// Reads `topic` from the beginning until `enough` says so (60 s at most), in the order
/// each partition delivered the records.
pub async fn read_topic(
    common: &CommonConfig,
    topic: &str,
    enough: impl Fn(&[KeyedRecord]) -> bool,
) -> Vec<KeyedRecord> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer =
        kafka::consumer_config(&common.kafka, &format!("test-reader-{}", Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("create a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !enough(&records) {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} records arrived on {topic}",
            records.len()
        );
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        {
            let key = message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned());
            let value = serde_json::from_slice(message.payload().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null);
            records.push((key, value));
        }
    }
    records
}
