//! Publishes each queue's journal of decisions (written by the activation step, in
//! Redis, atomically with the decisions) to the decisions topic, then trims what the
//! broker acknowledged. At least once: a crash after the acknowledgement and before the
//! trim publishes those decisions again, and readers keep the first per ticket.
//!
//! Each queue's publisher is a task of its own, woken after every step that decided
//! something: activation never waits for the broker, and a refused publish is retried
//! every [`RETRY`] while the lines wait in Redis.

use std::time::Duration;

use contract::kafka::DurableProducer;
use contract::redis_schema::RedisKeys;
use contract::ticket_decision::DecisionRecord;
use platform::redis_connection::RedisConnection;
use redis::Script;
use std::sync::{Arc, LazyLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Journal lines read and published per round.
const LINES_PER_ROUND: isize = 5_000;
/// How soon a refused publish is tried again.
const RETRY: Duration = Duration::from_secs(1);

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

    /// Starts `partition`'s publisher, which runs until `stop`; notify the returned
    /// handle after a step that decided something. It publishes whatever a previous
    /// owner of the queue left at once.
    pub fn start_publisher(
        self: Arc<Self>,
        mut redis: RedisConnection,
        keys: RedisKeys,
        partition: i32,
        stop: CancellationToken,
    ) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        tokio::spawn(async move {
            let mut pending = true;
            loop {
                if !pending {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = woken.notified() => {}
                    }
                }
                pending = match self.publish(&mut redis, &keys, partition).await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::warn!(partition, %error, "decisions not published; retrying");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                        true
                    }
                };
            }
        });
        wake
    }

    /// Publishes one round (up to [`LINES_PER_ROUND`] lines) of `partition`'s journal,
    /// the round's records sent together. `Ok(true)` when lines remain (a backlog after
    /// an outage drains a round per tick, so activation never waits for all of it); an
    /// error leaves the lines in Redis for the next call.
    pub async fn publish(
        &self,
        redis: &mut RedisConnection,
        keys: &RedisKeys,
        partition: i32,
    ) -> anyhow::Result<bool> {
        let key = keys.decisions(partition);
        let lines: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(LINES_PER_ROUND - 1)
            .query_async(redis)
            .await?;
        let Some(first) = lines.first() else {
            return Ok(false);
        };
        let records = DecisionRecord::from_journal(partition, &lines);
        let sends = records.iter().map(|record| {
            let payload = record.to_json();
            async move {
                self.producer
                    .send(&self.topic, None, &record.event_id, &payload, self.timeout)
                    .await
            }
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|error| anyhow::anyhow!("decisions not acknowledged: {error}"))?;
        }
        let trimmed: i64 = TRIM_PUBLISHED
            .key(&key)
            .arg(first)
            .arg(lines.len())
            .invoke_async(redis)
            .await?;
        metrics::counter!("activator_decisions_published_total", "partition" => partition.to_string())
            .increment(lines.len() as u64);
        // Trimmed by another owner meanwhile: what remains is its to publish, or ours at
        // the next round.
        Ok(trimmed == 0 || lines.len() as isize == LINES_PER_ROUND)
    }
}
