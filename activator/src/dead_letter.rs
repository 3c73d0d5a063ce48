//! Poison records (not JSON, unknown version, missing fields) go to the dead-letter
//! topic with the reason and their original position, so they never stall a queue.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use contract::kafka::{DurableProducer, ProduceError};
use serde_json::json;

/// A record that could not be read as a ticket.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

pub struct DeadLetter {
    producer: DurableProducer,
    topic: String,
    timeout: Duration,
}

impl DeadLetter {
    pub fn new(producer: DurableProducer, topic: String, timeout: Duration) -> Self {
        Self {
            producer,
            topic,
            timeout,
        }
    }

    /// Publishes the dead letter and waits for the broker's acknowledgement. Keyed by
    /// the original position, so a replayed dead letter is recognisable as a duplicate.
    pub async fn send(&self, source_topic: &str, record: &RawRecord) -> Result<(), ProduceError> {
        let key = format!("{source_topic}/{}/{}", record.partition, record.offset);
        let value = json!({
            "reason": record.reason,
            "topic": source_topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.as_deref().map(|key| String::from_utf8_lossy(key).into_owned()),
            "payload_base64": record.payload.as_deref().map(|payload| STANDARD.encode(payload)),
            "dead_lettered_at": Utc::now(),
        });
        let payload = value.to_string().into_bytes();
        self.producer
            .send(&self.topic, None, &key, &payload, self.timeout)
            .await
            .map(drop)
    }
}
