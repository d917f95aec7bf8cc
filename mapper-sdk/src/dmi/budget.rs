//! A token bucket: the mapper's own budget of calls to edgecore, kept below edgecore's
//! shared limiter (1 call per second sustained, burst 100, for every mapper of the node
//! and all three of its methods). Pure: the caller passes the time.
//!
//! When edgecore's limiter refuses a call anyway (other mappers share it), the rate is
//! halved and the bucket emptied; every accepted call then adds back a twentieth of
//! the configured rate (additive increase, multiplicative decrease), so the mapper
//! settles just under what is left for it instead of retrying in bursts.

use std::time::Duration;

use tokio::time::Instant;

/// Calls allowed: `rate` per second sustained, `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// The configured sustained rate (the ceiling).
    configured: f64,
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of 0 or less allows no call after the burst.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            configured: rate.max(0.0),
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// Empties the bucket (after edgecore said "too many requests": its bucket is empty,
    /// so ours should not be fuller) and halves the rate (down to a sixteenth of the
    /// configured one).
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = 0.0;
        self.rate = (self.rate / 2.0).max(self.configured / 16.0);
    }

    /// An accepted call: the rate climbs back towards the configured one.
    pub fn accepted(&mut self) {
        self.rate = (self.rate + self.configured / 20.0).min(self.configured);
    }

    /// The sustained rate now (calls per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.5, 3, t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert!(b.take(t0 + Duration::from_millis(1999)).is_err());
        assert!(b.take(t0 + Duration::from_secs(4)).is_ok());
        // Never more than the burst, however long it was idle.
        let later = t0 + Duration::from_secs(1000);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
        b.drain(later + Duration::from_secs(10));
        assert!(b.take(later + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn refusals_halve_the_rate_and_acceptance_restores_it() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, 1, t0);
        b.drain(t0);
        assert!((b.rate() - 2.0).abs() < 1e-9);
        for _ in 0..10 {
            b.drain(t0);
        }
        assert!((b.rate() - 0.25).abs() < 1e-9, "floor: a sixteenth");
        for _ in 0..100 {
            b.accepted();
        }
        assert!(
            (b.rate() - 4.0).abs() < 1e-9,
            "ceiling: the configured rate"
        );
        // At half the rate a token takes twice as long.
        let mut b = TokenBucket::new(2.0, 1, t0);
        b.drain(t0);
        assert_eq!(b.take(t0).unwrap_err(), Duration::from_secs(1));
    }
}
