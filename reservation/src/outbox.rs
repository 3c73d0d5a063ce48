//! The transactional outbox relay: publishes outbox rows to Kafka (`reservations.events`,
//! key = event id) and marks them published, at least once and in order per reservation.
//!
//! Each round locks a batch with `FOR UPDATE SKIP LOCKED`, so several relays (one per
//! instance) share the work. A row is eligible only while no earlier row of its
//! reservation is unpublished, so two relays never publish one reservation's changes
//! out of order. Rows are marked in the transaction that locked them, after the broker
//! acknowledged every record: a relay killed mid-batch leaves its rows unpublished and
//! they go out again (consumers dedupe on `message_id`).

use std::time::{Duration, Instant};

use contract::kafka::DurableProducer;
use platform::retry::Backoff;
use platform::supervisor::Supervisor;
use sqlx::PgPool;

pub struct OutboxRelay {
    pub postgres: PgPool,
    pub producer: DurableProducer,
    pub topic: String,
    pub batch_size: i64,
    pub idle_poll: Duration,
    pub produce_timeout: Duration,
}

/// How often the backlog gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

impl OutboxRelay {
    /// Relays until shutdown, under `supervisor`.
    pub fn start(self, supervisor: &Supervisor) {
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("outbox relay", async move {
            let mut gauges_at = Instant::now() - GAUGE_EVERY;
            let mut backoff = Backoff::new(Duration::from_secs(2));
            while !shutdown.is_cancelled() {
                let pause = match self.round().await {
                    Ok(0) => self.idle_poll,
                    Ok(published) => {
                        backoff.reset();
                        metrics::counter!("reservation_outbox_published_total")
                            .increment(published as u64);
                        Duration::ZERO
                    }
                    Err(error) => {
                        tracing::warn!(%error, "outbox relay round failed; retrying");
                        backoff.next_delay()
                    }
                };
                if gauges_at.elapsed() >= GAUGE_EVERY {
                    gauges_at = Instant::now();
                    self.update_gauges().await;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
            }
            Ok(())
        });
    }

    /// Publishes one batch; returns how many rows it marked published.
    async fn round(&self) -> anyhow::Result<usize> {
        let mut transaction = self.postgres.begin().await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT o.id, o.event_id, o.payload::text FROM outbox o
             WHERE o.published_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM outbox earlier
                   WHERE earlier.reservation_id = o.reservation_id
                     AND earlier.published_at IS NULL AND earlier.id < o.id)
             ORDER BY o.id LIMIT $1
             FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *transaction)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let sends = rows.iter().map(|(_, event_id, payload)| {
            self.producer.send(
                &self.topic,
                None,
                event_id,
                payload.as_bytes(),
                self.produce_timeout,
            )
        });
        let results = futures::future::join_all(sends).await;
        if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
            // Nothing is marked: the batch goes out again (duplicates, never gaps).
            anyhow::bail!("the broker did not acknowledge the batch: {error}");
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(ids.len())
    }

    async fn update_gauges(&self) {
        let backlog: Result<(i64, Option<f64>), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.postgres)
        .await;
        if let Ok((count, oldest)) = backlog {
            metrics::gauge!("reservation_outbox_backlog").set(count as f64);
            metrics::gauge!("reservation_outbox_oldest_age_seconds").set(oldest.unwrap_or(0.0));
        }
    }
}
