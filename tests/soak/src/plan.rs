//! Pure decisions of the soak: which disturbance comes next, and whether memory stayed
//! flat.

use std::time::Duration;

use rand::Rng;

/// One disturbance.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Kill the broker and start it again after `down`.
    BrokerRestart {
        /// How long the broker stays down.
        down: Duration,
    },
    /// Make a unit silent for `down`.
    UnitOutage {
        /// Index of the device (0-based).
        device: usize,
        /// How long it stays silent.
        down: Duration,
    },
    /// Rewrite the profile: new collect cycles, and the spare device toggled.
    ProfileEdit,
    /// Send `count` desired values for one device, back to back.
    DeltaBurst {
        /// Index of the device.
        device: usize,
        /// How many deltas.
        count: u32,
    },
}

/// Counts of what happened, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Broker restarts.
    pub broker_restarts: u32,
    /// Unit outages.
    pub unit_outages: u32,
    /// Profile edits.
    pub profile_edits: u32,
    /// Delta bursts.
    pub bursts: u32,
    /// Desired values sent in all.
    pub deltas: u64,
}

impl Tally {
    /// Counts `e`.
    pub fn count(&mut self, e: &Event) {
        match e {
            Event::BrokerRestart { .. } => self.broker_restarts += 1,
            Event::UnitOutage { .. } => self.unit_outages += 1,
            Event::ProfileEdit => self.profile_edits += 1,
            Event::DeltaBurst { count, .. } => {
                self.bursts += 1;
                self.deltas += u64::from(*count);
            }
        }
    }
}

/// Picks the next disturbance for `devices` devices (weights: broker 2, unit outage 3,
/// profile edit 2, burst 3), and the pause before it (3-12 s).
pub fn next_event(rng: &mut impl Rng, devices: usize) -> (Duration, Event) {
    let pause = Duration::from_millis(rng.random_range(3_000..12_000));
    let device = rng.random_range(0..devices.max(1));
    let event = match rng.random_range(0..10) {
        0..=1 => Event::BrokerRestart {
            down: Duration::from_millis(rng.random_range(500..5_000)),
        },
        2..=4 => Event::UnitOutage {
            device,
            down: Duration::from_millis(rng.random_range(1_000..10_000)),
        },
        5..=6 => Event::ProfileEdit,
        _ => Event::DeltaBurst {
            device,
            count: rng.random_range(50..1_000),
        },
    };
    (pause, event)
}

/// Resident-set samples over the run and the verdict on them.
#[derive(Debug, Clone, PartialEq)]
pub struct RssVerdict {
    /// Median of the first quarter after the warm-up, KiB.
    pub early_kib: u64,
    /// Median of the last quarter, KiB.
    pub late_kib: u64,
    /// Largest sample, KiB.
    pub peak_kib: u64,
    /// Least-squares slope over the samples after the warm-up, KiB per hour.
    pub slope_kib_per_hour: f64,
    /// Whether the late median is within the margin of the early one.
    pub flat: bool,
}

/// Judges samples of `(seconds since start, RSS KiB)`: the first `warmup` seconds are
/// left out; flat when the last quarter's median is at most the first quarter's median
/// plus 10 % or 2 MiB, whichever is larger. `None` with fewer than 8 samples after the
/// warm-up.
pub fn rss_verdict(samples: &[(f64, u64)], warmup: f64) -> Option<RssVerdict> {
    let kept: Vec<(f64, u64)> = samples.iter().copied().filter(|s| s.0 >= warmup).collect();
    if kept.len() < 8 {
        return None;
    }
    let q = kept.len() / 4;
    let early = median(kept[..q].iter().map(|s| s.1).collect());
    let late = median(kept[kept.len() - q..].iter().map(|s| s.1).collect());
    let peak = kept.iter().map(|s| s.1).max().unwrap_or(0);
    let margin = (early / 10).max(2048);
    Some(RssVerdict {
        early_kib: early,
        late_kib: late,
        peak_kib: peak,
        slope_kib_per_hour: slope(&kept) * 3600.0,
        flat: late <= early + margin,
    })
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Least-squares slope of y over x (KiB per second).
fn slope(s: &[(f64, u64)]) -> f64 {
    let n = s.len() as f64;
    let mx = s.iter().map(|p| p.0).sum::<f64>() / n;
    let my = s.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let num: f64 = s.iter().map(|p| (p.0 - mx) * (p.1 as f64 - my)).sum();
    let den: f64 = s.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_of_event_comes_up_with_bounded_parameters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = Tally::default();
        for _ in 0..1000 {
            let (pause, e) = next_event(&mut rng, 4);
            assert!((3..12).contains(&pause.as_secs()));
            if let Event::UnitOutage { device, .. } | Event::DeltaBurst { device, .. } = &e {
                assert!(*device < 4, "{e:?}");
            }
            assert!(down_of(&e) <= Duration::from_secs(10), "{e:?}");
            t.count(&e);
        }
        assert!(t.broker_restarts > 100 && t.unit_outages > 200, "{t:?}");
        assert!(t.profile_edits > 100 && t.bursts > 200, "{t:?}");
    }

    fn down_of(e: &Event) -> Duration {
        match e {
            Event::BrokerRestart { down } | Event::UnitOutage { down, .. } => *down,
            _ => Duration::ZERO,
        }
    }

    #[test]
    fn steady_memory_is_flat_and_a_leak_is_not() {
        let steady: Vec<(f64, u64)> = (0..100u32)
            .map(|i| (f64::from(i) * 10.0, 12_000 + u64::from(i % 3) * 100))
            .collect();
        let v = rss_verdict(&steady, 60.0).unwrap();
        assert!(v.flat, "{v:?}");
        assert!(v.slope_kib_per_hour.abs() < 500.0, "{v:?}");
        let leak: Vec<(f64, u64)> = (0..100u32)
            .map(|i| (f64::from(i) * 10.0, 12_000 + u64::from(i) * 100))
            .collect();
        let v = rss_verdict(&leak, 60.0).unwrap();
        assert!(!v.flat, "{v:?}");
        assert!(v.slope_kib_per_hour > 30_000.0, "{v:?}");
        assert_eq!(v.peak_kib, 12_000 + 99 * 100);
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        assert_eq!(rss_verdict(&[(100.0, 1), (200.0, 2)], 0.0), None);
    }
}
