//! edgecore's token bucket (golang.org/x/time/rate with `Every(1s)`, burst 100): it
//! starts full, refills one token per interval up to the burst, and one call takes one
//! token. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Time per new token (edgecore: 1 s).
    pub interval: Duration,
    /// Bucket size (edgecore: 100).
    pub burst: u32,
}

impl Default for LimiterConfig {
    /// edgecore's constants (`Limit = 1000` ms, `Burst = 100`).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            burst: 100,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    config: LimiterConfig,
    /// Tokens available at `at`, in units of 1/1_000_000 token (exact integer math).
    micro_tokens: u128,
    at: Instant,
}

const MICRO: u128 = 1_000_000;

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(config: LimiterConfig, now: Instant) -> Self {
        Self {
            config,
            micro_tokens: u128::from(config.burst) * MICRO,
            at: now,
        }
    }

    /// The settings.
    pub fn config(&self) -> LimiterConfig {
        self.config
    }

    fn refill(&mut self, now: Instant) {
        let cap = u128::from(self.config.burst) * MICRO;
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let per = self.config.interval.as_nanos().max(1);
        let gained = elapsed.saturating_mul(MICRO) / per;
        self.micro_tokens = self.micro_tokens.saturating_add(gained).min(cap);
        if now > self.at {
            self.at = now;
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        u32::try_from(self.micro_tokens / MICRO).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(LimiterConfig::default(), t0);
        for _ in 0..100 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(999)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
        assert!(!b.try_take(t0 + Duration::from_millis(1500)));
        // Refill stops at the burst.
        assert_eq!(b.available(t0 + Duration::from_secs(1000)), 100);
    }

    #[test]
    fn small_buckets_and_fast_refill() {
        let t0 = Instant::now();
        let cfg = LimiterConfig {
            interval: Duration::from_millis(10),
            burst: 2,
        };
        let mut b = TokenBucket::new(cfg, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && !b.try_take(t0));
        assert_eq!(b.available(t0 + Duration::from_millis(25)), 2);
    }
}
