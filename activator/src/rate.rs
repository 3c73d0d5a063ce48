//! The observed activation rate of a queue: activations over a sliding window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub fn record(&mut self, at: Instant, activated: u64) {
        self.samples.push_back((at, activated));
        while self
            .samples
            .front()
            .is_some_and(|(sample_at, _)| at.duration_since(*sample_at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Tickets per second over the window (or since the first sample, if younger).
    pub fn per_second(&self, now: Instant) -> f64 {
        let Some((oldest, _)) = self.samples.front() else {
            return 0.0;
        };
        let total: u64 = self.samples.iter().map(|(_, count)| count).sum();
        let span = now
            .duration_since(*oldest)
            .max(Duration::from_secs(1))
            .as_secs_f64();
        total as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_covers_the_window_only() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        window.record(start, 100);
        window.record(start + Duration::from_secs(1), 100);
        window.record(start + Duration::from_secs(2), 100);
        assert!((window.per_second(start + Duration::from_secs(2)) - 150.0).abs() < 1e-9);
        window.record(start + Duration::from_secs(30), 10);
        assert!((window.per_second(start + Duration::from_secs(30)) - 10.0).abs() < 1e-9);
        assert_eq!(RateWindow::default().per_second(start), 0.0);
    }
}
