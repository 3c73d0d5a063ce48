//! Per-client-IP token buckets for the join endpoint.
//!
//! In-memory and per instance: behind a load balancer each instance allows the rate, so
//! configure it as the per-instance share. Buckets that have refilled are forgotten, so
//! memory follows the number of recently active clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Forget full buckets once the map grows past this many clients.
const PRUNE_ABOVE: usize = 100_000;

impl RateLimiter {
    /// `None` when `per_second` is 0 (limiting off).
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second > 0.0).then(|| Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `client`; on refusal returns the seconds until one is free.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, bucket| refill(*bucket, now, per_second, burst).tokens < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        *bucket = refill(*bucket, now, self.per_second, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

fn refill(bucket: Bucket, now: Instant, per_second: f64, burst: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    Bucket {
        tokens: (bucket.tokens + elapsed * per_second).min(burst),
        updated: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let limiter = RateLimiter::new(2.0, 3).expect("limiting on");
        let client: IpAddr = "10.0.0.1".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        assert_eq!(limiter.check(client, start), Err(1));
        assert_eq!(
            limiter.check(client, start + Duration::from_millis(500)),
            Ok(())
        );
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(limiter.check(other, start), Ok(()));
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(RateLimiter::new(0.0, 10).is_none());
    }
}
