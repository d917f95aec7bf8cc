//! Exponential backoff with jitter.

use std::time::Duration;

/// Exponential backoff: doubles from `min` up to `max`, each delay jittered by up to
/// ±25% so that devices on one bus do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay; grows with each call until [`Backoff::reset`].
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        Self::delay_for(self.attempt, self.min, self.max)
    }

    /// Back to the smallest delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The jittered delay for the `attempt`-th retry (1-based).
    pub fn delay_for(attempt: u32, min: Duration, max: Duration) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = min.saturating_mul(1u32 << exp.min(20)).min(max);
        let jitter: f64 = rand::random_range(0.75..1.25);
        base.mul_f64(jitter).min(max.mul_f64(1.25))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(75) && d1 <= Duration::from_millis(125));
        let d3 = {
            b.next_delay();
            b.next_delay()
        };
        assert!(d3 >= Duration::from_millis(300) && d3 <= Duration::from_millis(500));
        for _ in 0..40 {
            assert!(b.next_delay() <= Duration::from_millis(2500));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
