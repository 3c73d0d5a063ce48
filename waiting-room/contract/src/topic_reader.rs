//! Reading a topic's records back, for the batch jobs that recompute from Kafka: the
//! draw's verification and the post-sale report. Blocking (librdkafka's consumer
//! polls): run it on a blocking thread.
//!
//! The reader assigns partitions itself (no consumer group, nothing committed) and
//! insists on contiguous offsets: a record missing in the middle is an error, not a
//! silently smaller result.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka;
use crate::kafka_connection::KafkaConnection;

/// How long the broker may stay silent before a read gives up.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// After the high watermark, how long to wait for more (a broker may report it
/// before the end of its last batch, as Tansu's memory engine does)...
const TAIL_WAIT: Duration = Duration::from_millis(500);
/// ... and at most how long to keep reading past it: a partition that keeps growing
/// (another sale running) must not keep the read going.
const TAIL_LIMIT: Duration = Duration::from_secs(2);

/// One record as stored.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
}

/// A reader of one topic.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
}

impl TopicReader {
    pub fn new(kafka: &KafkaConnection, topic: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer =
            kafka::consumer_config(kafka, &format!("reader-{}", uuid::Uuid::new_v4()))
                .create()
                .context("cannot create a Kafka consumer")?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }

    /// The records at offsets `[first, end)` of `partition`.
    pub fn range(&self, partition: i32, first: i64, end: i64) -> anyhow::Result<Vec<StoredRecord>> {
        self.read(partition, first, end, false, &|_| true)
    }

    /// Every record the topic holds now whose payload `keep` accepts, partition by
    /// partition. A topic the broker does not know is an error, not an empty result.
    pub fn all(&self, keep: impl Fn(Option<&[u8]>) -> bool) -> anyhow::Result<Vec<StoredRecord>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))
            .context("cannot read the topic's metadata")?;
        let topic = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == self.topic)
            .with_context(|| format!("topic {} is not on the broker", self.topic))?;
        if let Some(error) = topic.error() {
            bail!(
                "topic {}: {:?}",
                self.topic,
                rdkafka::types::RDKafkaErrorCode::from(error)
            );
        }
        if topic.partitions().is_empty() {
            bail!("topic {} has no partitions", self.topic);
        }
        let mut records = Vec::new();
        for partition in 0..i32::try_from(topic.partitions().len()).unwrap_or(0) {
            records.extend(self.partition(partition, &keep)?);
        }
        Ok(records)
    }

    /// The first offset `partition` holds and the one after its last.
    pub fn watermarks(&self, partition: i32) -> anyhow::Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, Duration::from_secs(10))
            .with_context(|| format!("cannot read partition {partition}'s offsets"))
    }

    /// Every record `partition` holds now whose payload `keep` accepts (the others are
    /// never held in memory).
    pub fn partition(
        &self,
        partition: i32,
        keep: &dyn Fn(Option<&[u8]>) -> bool,
    ) -> anyhow::Result<Vec<StoredRecord>> {
        let (low, high) = self.watermarks(partition)?;
        if high <= low {
            return Ok(Vec::new());
        }
        self.read(partition, low, high, true, keep)
    }

    /// Reads `[first, end)`, and with `tail` whatever follows until the broker has no
    /// more for a moment (at most [`TAIL_LIMIT`]), keeping the records `keep` accepts.
    fn read(
        &self,
        partition: i32,
        first: i64,
        end: i64,
        tail: bool,
        keep: &dyn Fn(Option<&[u8]>) -> bool,
    ) -> anyhow::Result<Vec<StoredRecord>> {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, partition, Offset::Offset(first))?;
        self.consumer.assign(&assignment)?;
        let mut records = Vec::new();
        let mut next = first;
        let mut silent = Duration::ZERO;
        let mut tail_started: Option<Instant> = None;
        let poll = Duration::from_millis(100);
        loop {
            let reached = next >= end;
            if reached {
                let tailing = tail_started.get_or_insert_with(Instant::now).elapsed();
                if !tail || silent >= TAIL_WAIT || tailing >= TAIL_LIMIT {
                    return Ok(records);
                }
            }
            match self.consumer.poll(poll) {
                Some(message) => {
                    let message = message?;
                    let offset = message.offset();
                    if offset < next {
                        continue;
                    }
                    if offset > next {
                        bail!("offsets {next}..{offset} are missing from partition {partition}");
                    }
                    if keep(message.payload()) {
                        records.push(StoredRecord {
                            partition,
                            offset,
                            payload: message.payload().map(<[u8]>::to_vec),
                        });
                    }
                    next = offset + 1;
                    silent = Duration::ZERO;
                }
                None => {
                    silent += poll;
                    if !reached && silent >= SILENCE_LIMIT {
                        bail!(
                            "no records from partition {partition} after offset {next} for {SILENCE_LIMIT:?}"
                        );
                    }
                }
            }
        }
    }
}
