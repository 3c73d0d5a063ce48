//! The activators' consumer group as this instance sees it: the consumer type, the
//! rebalances librdkafka reports from its own thread, and the work-around that keeps a
//! dead member's queues from being orphaned on Tansu.

use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use tokio::sync::mpsc;

/// The group's consumer: one per activator, shared by its queue workers (to commit and
/// to seek).
pub type GroupConsumer = StreamConsumer<RebalanceContext>;

/// Rejoin the group with a fresh member id at most this often (see [`Rejoin`]).
const REJOIN_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// A rebalance as the dispatcher sees it.
pub enum RebalanceEvent {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Reports rebalances from librdkafka's thread to the dispatcher.
pub struct RebalanceContext {
    pub events: mpsc::UnboundedSender<RebalanceEvent>,
}

impl ClientContext for RebalanceContext {
    /// librdkafka's statistics: each owned queue's consumer lag (records in the partition
    /// past the committed offset), for the lag alert.
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                // -1: librdkafka's internal partition; a negative lag: not known yet; a
                // partition not being fetched is not ours (any more).
                if partition.partition >= 0
                    && partition.consumer_lag >= 0
                    && partition.fetch_state == "active"
                {
                    metrics::gauge!("activator_consumer_lag", "partition" => partition.partition.to_string())
                        .set(partition.consumer_lag as f64);
                }
            }
        }
    }
}

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

/// Works around Tansu 0.6's group coordinator: when a member dies, Tansu drops it on
/// the missed heartbeat but keeps the group's generation, so the survivors rejoin and
/// get their old assignment back and the dead member's partitions are never consumed.
/// A rebalance that hands back exactly the partial assignment we had is that case (or a
/// harmless coincidence); leaving and rejoining with a fresh member id makes the
/// coordinator form a new generation from the live members. Rate-limited, so two live
/// activators cannot keep each other rebalancing.
#[derive(Default)]
pub struct Rejoin {
    held: Vec<i32>,
    last: Option<Instant>,
}

impl Rejoin {
    pub fn after_assignment(&mut self, mut assigned: Vec<i32>, partitions: i32) -> bool {
        assigned.sort_unstable();
        let unchanged_partial =
            assigned == self.held && assigned.len() < usize::try_from(partitions).unwrap_or(0);
        self.held = assigned;
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= REJOIN_AT_MOST_EVERY);
        if unchanged_partial && due {
            self.last = Some(Instant::now());
            return true;
        }
        false
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
