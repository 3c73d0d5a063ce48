//! Queue arithmetic: positions and wait estimates from one serving counter per queue.
//!
//! A ticket's queue number is its Kafka offset. The queue's serving counter is the
//! next queue number the activator has not reached yet, so every ticket with a lower
//! number has been reached (activated, or skipped as abandoned) and a waiting ticket has
//! `queue_number - serving` tickets ahead of it.

use crate::catalog::{ActivationPolicy, QueueMode};

/// Tickets ahead of `queue_number` in a queue whose serving counter is `serving`.
pub fn tickets_ahead(queue_number: i64, serving: i64) -> i64 {
    (queue_number - serving).max(0)
}

/// Whether the activator has reached this ticket.
pub fn is_reached(queue_number: i64, serving: i64) -> bool {
    queue_number < serving
}

/// The queue's steady activation rate in tickets per second: `batch_size` per
/// `interval_ms`, bounded by how fast capacity slots free up when `max_active` is set
/// (at worst every slot is held for the full session length).
pub fn policy_rate_per_second(policy: &ActivationPolicy) -> f64 {
    let batch_rate = f64::from(policy.batch_size) * 1000.0 / f64::from(policy.interval_ms.max(1));
    match policy.max_active {
        Some(max_active) => {
            batch_rate.min(f64::from(max_active) / f64::from(policy.active_ttl_seconds.max(1)))
        }
        None => batch_rate,
    }
}

/// An honest wait estimate for a ticket with `ahead` tickets in front of it: `None`
/// when nobody can know (the queue is paused); otherwise the time to activate everyone
/// ahead plus this ticket at the observed rate, or at the policy's rate before there is
/// an observation.
pub fn estimated_wait_seconds(
    ahead: i64,
    mode: QueueMode,
    policy: &ActivationPolicy,
    observed_rate_per_second: Option<f64>,
) -> Option<u64> {
    if mode == QueueMode::Paused {
        return None;
    }
    let rate = observed_rate_per_second
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .unwrap_or_else(|| policy_rate_per_second(policy));
    if rate <= 0.0 {
        return None;
    }
    let seconds = (ahead.max(0) as f64 + 1.0) / rate;
    Some(seconds.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(batch_size: u32, interval_ms: u32, max_active: Option<u32>) -> ActivationPolicy {
        ActivationPolicy {
            batch_size,
            interval_ms,
            max_active,
            active_ttl_seconds: 600,
            grace_seconds: 60,
        }
    }

    #[test]
    fn position_is_queue_number_minus_serving_and_never_negative() {
        assert_eq!(tickets_ahead(1234, 913), 321);
        assert_eq!(tickets_ahead(10, 10), 0);
        assert_eq!(tickets_ahead(5, 10), 0);
        assert!(!is_reached(10, 10));
        assert!(is_reached(9, 10));
    }

    #[test]
    fn policy_rate_is_bounded_by_capacity_turnover() {
        assert_eq!(policy_rate_per_second(&policy(100, 1000, None)), 100.0);
        assert_eq!(policy_rate_per_second(&policy(50, 500, None)), 100.0);
        // 600 slots each held up to 600 s free one slot per second.
        assert_eq!(policy_rate_per_second(&policy(100, 1000, Some(600))), 1.0);
    }

    #[test]
    fn wait_estimates_use_the_observed_rate_when_there_is_one() {
        let policy = policy(100, 1000, None);
        assert_eq!(
            estimated_wait_seconds(299, QueueMode::Open, &policy, None),
            Some(3)
        );
        assert_eq!(
            estimated_wait_seconds(299, QueueMode::Open, &policy, Some(10.0)),
            Some(30)
        );
        assert_eq!(
            estimated_wait_seconds(299, QueueMode::Open, &policy, Some(0.0)),
            Some(3)
        );
        assert_eq!(
            estimated_wait_seconds(0, QueueMode::Open, &policy, None),
            Some(1)
        );
    }

    #[test]
    fn a_paused_queue_has_no_estimate() {
        assert_eq!(
            estimated_wait_seconds(5, QueueMode::Paused, &policy(1, 1, None), None),
            None
        );
    }
}
