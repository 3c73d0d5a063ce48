//! The activator's settings (flags with environment-variable equivalents).

use std::net::SocketAddr;

use clap::Args;
use contract::config::CommonConfig;

#[derive(Debug, Clone, Args)]
pub struct ActivatorConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health, readiness and metrics endpoints.
    #[arg(long, env = "ACTIVATOR_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Kafka consumer group shared by all activators; each partition is owned by one.
    #[arg(
        long,
        env = "ACTIVATOR_GROUP_ID",
        default_value = "waiting-room-activator"
    )]
    pub group_id: String,

    /// How long a dead letter or a batch of decisions may wait for the broker's
    /// acknowledgement before the queue retries it on its next tick.
    #[arg(long, env = "DEAD_LETTER_TIMEOUT_MS", default_value_t = 5_000)]
    pub dead_letter_timeout_ms: u64,

    /// Replicas that must hold a queue's step before its decisions are announced and
    /// published (Redis `WAIT`): with 1, a primary that fails over to its replica
    /// cannot take back a step fans or the decisions topic have seen. 0: do not wait
    /// (a single Redis; a step lost in a failover is then decided again).
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// How long a step waits for those replicas at most; the queue then goes on (and
    /// `activator_replica_ack_timeouts_total` counts it).
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 100)]
    pub redis_wait_timeout_ms: u64,
}

impl ActivatorConfig {
    /// What a step waits for before it is announced.
    pub fn replica_acks(&self) -> ReplicaAcks {
        ReplicaAcks {
            replicas: self.redis_wait_replicas,
            timeout_ms: self.redis_wait_timeout_ms,
        }
    }
}

/// Replicas a step must reach (Redis `WAIT`) before anyone hears of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaAcks {
    pub replicas: u32,
    pub timeout_ms: u64,
}

contract::service_config!(ActivatorConfig);
