//! Publishes each queue's journal of decisions (written by the activation step, in
//! Redis, atomically with the decisions) to the decisions topic, then trims what the
//! broker acknowledged. At least once: a crash after the acknowledgement and before the
//! trim publishes those decisions again, and readers keep the first per ticket.

use std::time::Duration;

use contract::kafka::DurableProducer;
use contract::redis_schema::RedisKeys;
use contract::ticket_decision::DecisionRecord;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::LazyLock;

/// Journal lines read and published per round.
const LINES_PER_ROUND: isize = 5_000;

/// Trims the journal's first `n` lines only if its first line is still the one read:
/// a journal only grows at its end, so then the first `n` are the lines published. (A
/// queue moving between activators could otherwise trim lines nobody published.)
static TRIM_PUBLISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
          redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
          return 1
        end
        return 0
        ",
    )
});

pub struct DecisionJournal {
    producer: DurableProducer,
    topic: String,
    timeout: Duration,
}

impl DecisionJournal {
    pub fn new(producer: DurableProducer, topic: String, timeout: Duration) -> Self {
        Self {
            producer,
            topic,
            timeout,
        }
    }

    /// Publishes `partition`'s journal until it is empty. An error leaves the rest in
    /// Redis for the next call.
    pub async fn publish(
        &self,
        redis: &mut ConnectionManager,
        keys: &RedisKeys,
        partition: i32,
    ) -> anyhow::Result<()> {
        let key = keys.decisions(partition);
        loop {
            let lines: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(LINES_PER_ROUND - 1)
                .query_async(redis)
                .await?;
            let Some(first) = lines.first() else {
                return Ok(());
            };
            for record in DecisionRecord::from_journal(partition, &lines) {
                self.producer
                    .send(
                        &self.topic,
                        None,
                        &record.event_id,
                        &record.to_json(),
                        self.timeout,
                    )
                    .await
                    .map_err(|error| anyhow::anyhow!("decisions not acknowledged: {error}"))?;
            }
            let trimmed: i64 = TRIM_PUBLISHED
                .key(&key)
                .arg(first)
                .arg(lines.len())
                .invoke_async(redis)
                .await?;
            metrics::counter!("activator_decisions_published_total", "partition" => partition.to_string())
                .increment(lines.len() as u64);
            if trimmed == 0 {
                // Another activator trimmed meanwhile; its journal view is as good.
                return Ok(());
            }
        }
    }
}
