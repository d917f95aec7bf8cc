//! Whether a unit on a bus is worth the line's time: pure logic, no I/O.
//!
//! After `backoffAfterTimeouts` consecutive timeouts a unit is *skipped*: its requests are
//! answered at once with a timeout, except for one *probe* per probe interval. A probe is
//! one short request (one register or bit, see [`crate::bus`]) with a short timeout; when
//! it is answered the unit is healthy again and the request that triggered it goes out
//! right after. So a unit that comes back is read again within one probe interval plus
//! one collect cycle, and a dead unit costs the line one short probe per interval.
//!
//! The probe timeout is learnt from the unit's answers while it was healthy: three times
//! the slowest recent answer, at least [`PROBE_TIMEOUT_FLOOR`], at most the request
//! timeout (the request timeout when the unit never answered). The probe interval is
//! `backoffMin`, stretched so that a probe (its timeout plus the RTU grace period) takes
//! at most 1/[`LINE_SHARE_DIVISOR`] of the line's time, and capped at `backoffMax`.

use std::time::{Duration, Instant};

/// A probe waits at least this long for its answer.
pub const PROBE_TIMEOUT_FLOOR: Duration = Duration::from_millis(20);

/// A skipped unit's probes take at most 1/5 of the line's time.
pub const LINE_SHARE_DIVISOR: u32 = 5;

/// The settings a unit's health follows (from the bus timing and the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive timeouts after which the unit is skipped (at least 1).
    pub skip_after: u32,
    /// The shortest probe interval (`backoffMin`).
    pub min_interval: Duration,
    /// The longest probe interval (`backoffMax`).
    pub max_interval: Duration,
    /// The quiet time after a timeout on RTU framing (zero on Modbus TCP).
    pub grace: Duration,
}

/// What to do with a request for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The unit is healthy: send the request.
    Send,
    /// The unit is skipped and a probe is due: send one short request with this timeout
    /// first, and the real request only if the probe is answered.
    Probe {
        /// How long to wait for the probe's answer.
        timeout: Duration,
    },
    /// The unit is skipped: answer the request at once.
    Skip {
        /// Consecutive timeouts so far.
        timeouts: u32,
        /// Time until the next probe.
        next_probe_in: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skipped {
    next_probe: Instant,
}

/// The health of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitHealth {
    timeouts: u32,
    /// The slowest recent answer (decays towards faster answers).
    slowest: Option<Duration>,
    skipped: Option<Skipped>,
}

impl UnitHealth {
    /// Whether the unit is skipped.
    pub fn is_skipped(&self) -> bool {
        self.skipped.is_some()
    }

    /// Consecutive timeouts so far.
    pub fn timeouts(&self) -> u32 {
        self.timeouts
    }

    /// The timeout of a probe for a request with `request_timeout`.
    pub fn probe_timeout(&self, request_timeout: Duration) -> Duration {
        match self.slowest {
            Some(s) => (s * 3).max(PROBE_TIMEOUT_FLOOR).min(request_timeout),
            None => request_timeout,
        }
    }

    /// The time between two probes.
    pub fn probe_interval(&self, policy: &Policy, request_timeout: Duration) -> Duration {
        let cost = self.probe_timeout(request_timeout) + policy.grace;
        cost.saturating_mul(LINE_SHARE_DIVISOR)
            .max(policy.min_interval)
            .min(policy.max_interval.max(policy.min_interval))
    }

    /// Decides about a request at `now`. A [`Admit::Probe`] schedules the next probe, so
    /// at most one probe goes out per interval whatever its outcome.
    pub fn admit(&mut self, now: Instant, policy: &Policy, request_timeout: Duration) -> Admit {
        let interval = self.probe_interval(policy, request_timeout);
        let timeout = self.probe_timeout(request_timeout);
        let Some(s) = self.skipped.as_mut() else {
            return Admit::Send;
        };
        if now >= s.next_probe {
            s.next_probe = now + interval;
            Admit::Probe { timeout }
        } else {
            Admit::Skip {
                timeouts: self.timeouts,
                next_probe_in: s.next_probe - now,
            }
        }
    }

    /// The unit answered (data or an exception) after `latency`. Returns whether it was
    /// skipped until now (it "answers again").
    pub fn answered(&mut self, latency: Duration) -> bool {
        self.slowest = Some(match self.slowest {
            // Decay by an eighth of the difference towards faster answers.
            Some(s) if s > latency => s - (s - latency) / 8,
            _ => latency,
        });
        self.timeouts = 0;
        self.skipped.take().is_some()
    }

    /// A request (or probe) timed out at `now`. Returns the probe interval when the unit
    /// has just become skipped.
    pub fn timed_out(
        &mut self,
        now: Instant,
        policy: &Policy,
        request_timeout: Duration,
    ) -> Option<Duration> {
        self.timeouts = self.timeouts.saturating_add(1);
        if self.skipped.is_some() || self.timeouts < policy.skip_after.max(1) {
            return None;
        }
        let interval = self.probe_interval(policy, request_timeout);
        self.skipped = Some(Skipped {
            next_probe: now + interval,
        });
        Some(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RT: Duration = Duration::from_millis(1000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> Policy {
        Policy {
            skip_after: 3,
            min_interval: ms(1000),
            max_interval: ms(30_000),
            grace: ms(10),
        }
    }

    /// A unit that answered in `latency` and then timed out until it was skipped at `t0`.
    fn skipped_at(t0: Instant, latency: Duration) -> UnitHealth {
        skipped_with(&policy(), t0, latency)
    }

    fn skipped_with(p: &Policy, t0: Instant, latency: Duration) -> UnitHealth {
        let mut h = UnitHealth::default();
        assert!(!h.answered(latency));
        assert_eq!(h.timed_out(t0, p, RT), None);
        assert_eq!(h.timed_out(t0, p, RT), None);
        assert!(h.timed_out(t0, p, RT).is_some());
        h
    }

    #[test]
    fn healthy_units_are_sent_and_a_single_timeout_does_not_skip() {
        let p = policy();
        let t0 = Instant::now();
        let mut h = UnitHealth::default();
        assert_eq!(h.admit(t0, &p, RT), Admit::Send);
        assert_eq!(h.timed_out(t0, &p, RT), None);
        assert_eq!(h.timed_out(t0, &p, RT), None);
        assert!(!h.answered(ms(5)));
        assert_eq!(h.timeouts(), 0);
        // The count starts over after an answer.
        assert_eq!(h.timed_out(t0, &p, RT), None);
        assert_eq!(h.timed_out(t0, &p, RT), None);
        assert!(!h.is_skipped());
        assert_eq!(h.admit(t0, &p, RT), Admit::Send);
    }

    #[test]
    fn a_skipped_unit_is_probed_once_per_second_with_a_short_timeout() {
        let p = policy();
        let t0 = Instant::now();
        let mut h = skipped_at(t0, ms(5));
        assert!(h.is_skipped());
        assert!(
            matches!(h.admit(t0, &p, RT), Admit::Skip { timeouts: 3, next_probe_in } if next_probe_in == ms(1000))
        );
        assert!(matches!(h.admit(t0 + ms(999), &p, RT), Admit::Skip { .. }));
        // Probe due: 3 x 5 ms is below the floor.
        assert_eq!(
            h.admit(t0 + ms(1000), &p, RT),
            Admit::Probe {
                timeout: PROBE_TIMEOUT_FLOOR
            }
        );
        // Only one probe per interval, whatever else is queued.
        assert!(matches!(h.admit(t0 + ms(1001), &p, RT), Admit::Skip { .. }));
        assert_eq!(h.timed_out(t0 + ms(1020), &p, RT), None);
        // The interval does not grow with the time the unit has been dead.
        for k in 2..30u64 {
            assert!(matches!(
                h.admit(t0 + ms(1000 * k - 1), &p, RT),
                Admit::Skip { .. }
            ));
            assert!(matches!(
                h.admit(t0 + ms(1000 * k), &p, RT),
                Admit::Probe { .. }
            ));
            assert_eq!(h.timed_out(t0 + ms(1000 * k + 20), &p, RT), None);
        }
        // It comes back: the probe is answered and the unit is sent to again.
        assert!(matches!(
            h.admit(t0 + ms(30_000), &p, RT),
            Admit::Probe { .. }
        ));
        assert!(h.answered(ms(5)));
        assert!(!h.is_skipped());
        assert_eq!(h.admit(t0 + ms(30_001), &p, RT), Admit::Send);
    }

    #[test]
    fn probes_never_take_more_than_a_fifth_of_the_line() {
        let t0 = Instant::now();
        for latency in [1u64, 5, 20, 50, 100, 300, 900, 2000] {
            for grace in [0u64, 10, 100, 400] {
                let p = Policy {
                    grace: ms(grace),
                    ..policy()
                };
                let mut h = skipped_with(&p, t0, ms(latency));
                let timeout = h.probe_timeout(RT);
                let interval = h.probe_interval(&p, RT);
                assert!(timeout <= RT);
                assert!(timeout >= PROBE_TIMEOUT_FLOOR.min(RT));
                assert!(interval >= p.min_interval);
                assert!(
                    (timeout + p.grace) * LINE_SHARE_DIVISOR <= interval,
                    "latency {latency} grace {grace}: {timeout:?} per {interval:?}"
                );
                // Count the probes over a minute.
                let mut probes = 0;
                let mut t = t0;
                while t < t0 + ms(60_000) {
                    if let Admit::Probe { .. } = h.admit(t, &p, RT) {
                        probes += 1;
                        h.timed_out(t + timeout, &p, RT);
                    }
                    t += ms(10);
                }
                let busy = (timeout + p.grace) * probes;
                assert!(
                    busy * LINE_SHARE_DIVISOR <= ms(60_000),
                    "{busy:?} {probes} {timeout:?} {interval:?}"
                );
            }
        }
    }

    #[test]
    fn a_slow_unit_gets_a_long_enough_probe_and_a_unit_never_heard_the_full_timeout() {
        let p = policy();
        let h = skipped_at(Instant::now(), ms(200));
        assert_eq!(h.probe_timeout(RT), ms(600));
        assert_eq!(h.probe_interval(&p, RT), ms(610 * 5));
        let never = UnitHealth::default();
        assert_eq!(never.probe_timeout(RT), RT);
        // backoffMax caps the interval even then.
        let capped = Policy {
            max_interval: ms(2000),
            ..p
        };
        assert_eq!(never.probe_interval(&capped, RT), ms(2000));
    }

    #[test]
    fn the_slowest_answer_decays_towards_faster_ones() {
        let mut h = UnitHealth::default();
        h.answered(ms(800));
        for _ in 0..100 {
            h.answered(ms(10));
        }
        assert!(h.probe_timeout(RT) < ms(40), "{:?}", h.probe_timeout(RT));
        h.answered(ms(300));
        assert_eq!(h.probe_timeout(RT), ms(900));
    }
}
