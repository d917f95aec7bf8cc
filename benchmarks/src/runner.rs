//! Scenario runners: set up broker, simulator and mapper for a workload, measure a window
//! after a warm-up, and return a [`RunResult`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::QoS;
use serde::{Deserialize, Serialize};

use crate::procs::{self, Probe, Proc, Sim, Subscriber};
use crate::scenario::{self, Link, SETPOINT, SETPOINT_ADDRESS, Target, Workload};

/// What the runner needs besides the workload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mapper command template with `{broker}` and `{profile}`.
    pub mapper_cmd: String,
    /// modbus-sim binary.
    pub sim_bin: PathBuf,
    /// mosquitto binary.
    pub mosquitto: PathBuf,
    /// Measurement window.
    pub window: Duration,
    /// Warm-up after the first report.
    pub warmup: Duration,
    /// Output directory (a `work/` directory below it holds logs of the last run).
    pub out: PathBuf,
}

/// The outcome of one run of one scenario variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// Scenario (`p1`...`p5`, `sweep`).
    pub scenario: String,
    /// Variant within the scenario (e.g. the device count or `merged`).
    pub variant: String,
    /// Run number, from 1.
    pub run: usize,
    /// Devices in the profile.
    pub devices: usize,
    /// Properties in the profile.
    pub properties: usize,
    /// Collect cycle, ms.
    pub cycle_ms: f64,
    /// Measured window, s.
    pub window_s: f64,
    /// Named measurements.
    pub metrics: BTreeMap<String, f64>,
    /// Latency samples, ms, per kind.
    pub samples: BTreeMap<String, Vec<f64>>,
}

/// Everything running for one measurement.
struct Setup {
    broker: Proc,
    sim: Sim,
    mapper: Proc,
    sub: Subscriber,
    pid: u32,
    lines: Vec<Proc>,
}

impl Setup {
    async fn start(w: &Workload, s: &Settings, forward: bool) -> Result<Self> {
        let dir = s.out.join("work");
        std::fs::create_dir_all(&dir)?;
        let (broker, port) = procs::start_broker(&s.mosquitto, &dir).await?;
        let mut lines = Vec::new();
        let rtu_dir = matches!(w.link, Link::Rtu { .. }).then_some(dir.as_path());
        if let Some(d) = rtu_dir {
            for e in 0..w.endpoints {
                lines.push(
                    procs::start_line(
                        &scenario::rtu_device_end(d, e),
                        &scenario::rtu_mapper_end(d, e),
                    )
                    .await?,
                );
            }
        }
        let mut sim = procs::start_sim(&s.sim_bin, &scenario::sim_map(w, rtu_dir), &dir).await?;
        if let Some(d) = rtu_dir {
            sim.targets = (0..w.endpoints)
                .map(|e| Target::Rtu(scenario::rtu_mapper_end(d, e).display().to_string()))
                .collect();
        }
        let sub = Subscriber::start(port, forward).await?;
        // In a directory of its own, as a mounted ConfigMap is: the mapper re-reads the
        // profile on any change in its directory, and the simulator's stats file
        // changes every second.
        let profile_dir = dir.join("profile");
        std::fs::create_dir_all(&profile_dir)?;
        let profile = profile_dir.join("deviceProfile.json");
        std::fs::write(
            &profile,
            serde_json::to_vec_pretty(&scenario::profile(w, &sim.targets))?,
        )?;
        let cmd = procs::expand_command(
            &s.mapper_cmd,
            &format!("tcp://127.0.0.1:{port}"),
            &profile.display().to_string(),
        );
        let mapper = procs::start_mapper(&cmd, &dir).await?;
        let pid = mapper.pid().context("the mapper exited at once")?;
        let first = Duration::from_secs(30).max(w.cycle * 3);
        procs::wait_until(first, "the first twin/update from the mapper", || {
            sub.count() > 0
        })
        .await
        .with_context(|| format!("see {}", dir.join("mapper.log").display()))?;
        Ok(Self {
            broker,
            sim,
            mapper,
            sub,
            pid,
            lines,
        })
    }

    async fn stop(self) {
        self.mapper.stop().await;
        self.sub.stop().await;
        self.sim.proc.stop().await;
        for l in self.lines {
            l.stop().await;
        }
        self.broker.stop().await;
    }
}

/// Counters at one moment.
struct Mark {
    at: Instant,
    props: u64,
    ticks: u64,
    sim: crate::measure::SimStats,
}

fn mark(setup: &Setup) -> Result<Mark> {
    Ok(Mark {
        at: Instant::now(),
        props: setup.sub.count(),
        ticks: procs::cpu_ticks(setup.pid)?,
        sim: setup.sim.stats()?,
    })
}

fn base(name: &str, variant: &str, run: usize, w: &Workload, window: Duration) -> RunResult {
    RunResult {
        scenario: name.into(),
        variant: variant.into(),
        run,
        devices: w.devices(),
        properties: w.properties(),
        cycle_ms: w.cycle.as_secs_f64() * 1000.0,
        window_s: window.as_secs_f64(),
        ..RunResult::default()
    }
}

/// Throughput run (P1, P2, P5, sweep): delivered properties/s, reads/s, CPU, RSS.
pub async fn throughput(
    name: &str,
    variant: &str,
    run: usize,
    w: &Workload,
    s: &Settings,
) -> Result<RunResult> {
    let setup = Setup::start(w, s, false).await?;
    let r = measure_window(name, variant, run, w, s, &setup).await;
    setup.stop().await;
    r
}

async fn measure_window(
    name: &str,
    variant: &str,
    run: usize,
    w: &Workload,
    s: &Settings,
    setup: &Setup,
) -> Result<RunResult> {
    tokio::time::sleep(s.warmup).await;
    let a = mark(setup)?;
    // A whole number of cycles (see measure::aligned_pair), for the subscriber's count.
    let cycles = (s.window.as_secs_f64() / w.cycle.as_secs_f64())
        .round()
        .max(1.0);
    let end = a.at + w.cycle.mul_f64(cycles);
    let mut rss_max = 0u64;
    let mut snapshots = vec![a.sim.clone()];
    while Instant::now() < end {
        rss_max = rss_max.max(procs::memory(setup.pid)?.rss);
        if let Ok(snap) = setup.sim.stats()
            && snapshots
                .last()
                .is_none_or(|l| l.timestamp_ms != snap.timestamp_ms)
        {
            snapshots.push(snap);
        }
        tokio::time::sleep_until(
            (Instant::now() + Duration::from_millis(250))
                .min(end)
                .into(),
        )
        .await;
    }
    let b = mark(setup)?;
    if snapshots
        .last()
        .is_none_or(|l| l.timestamp_ms != b.sim.timestamp_ms)
    {
        snapshots.push(b.sim.clone());
    }
    let mem = procs::memory(setup.pid)?;
    let (rss, hwm) = (mem.rss, mem.hwm);
    let wall = (b.at - a.at).as_secs_f64();
    let cycle_ms = u64::try_from(w.cycle.as_millis()).unwrap_or(u64::MAX);
    let min_span = u64::try_from(s.window.as_millis() / 2).unwrap_or(0);
    let (sa, sb) = match crate::measure::aligned_pair(&snapshots, cycle_ms, min_span) {
        Some((i, j)) => (&snapshots[i], &snapshots[j]),
        None => (&a.sim, &b.sim),
    };
    let sim_secs = (sb.timestamp_ms.saturating_sub(sa.timestamp_ms)) as f64 / 1000.0;
    let per_sim = |x: u64, y: u64| {
        if sim_secs > 0.0 {
            y.saturating_sub(x) as f64 / sim_secs
        } else {
            f64::NAN
        }
    };
    let due = w.properties_per_second();
    let props = (b.props - a.props) as f64 / wall;
    let regs = per_sim(sa.registers_read(), sb.registers_read());
    let mut r = base(name, variant, run, w, b.at - a.at);
    let m = &mut r.metrics;
    m.insert("properties_due_per_s".into(), due);
    m.insert("properties_delivered_per_s".into(), props);
    m.insert("delivered_vs_due".into(), props / due);
    m.insert(
        "modbus_requests_per_s".into(),
        per_sim(sa.requests(), sb.requests()),
    );
    m.insert("registers_read_per_s".into(), regs);
    m.insert("reads_vs_due".into(), regs / due);
    m.insert("delivered_vs_read".into(), props / regs);
    m.insert(
        "cpu_percent".into(),
        crate::measure::cpu_percent(a.ticks, b.ticks, procs::clk_tck(), wall),
    );
    m.insert("rss_mb".into(), rss as f64 / 1_048_576.0);
    m.insert("rss_max_mb".into(), rss_max.max(rss) as f64 / 1_048_576.0);
    m.insert("rss_hwm_mb".into(), hwm as f64 / 1_048_576.0);
    m.insert("rss_anon_mb".into(), mem.anon as f64 / 1_048_576.0);
    m.insert("rss_file_mb".into(), mem.file as f64 / 1_048_576.0);
    m.insert("pss_mb".into(), procs::pss(setup.pid) as f64 / 1_048_576.0);
    Ok(r)
}

/// P3: twin delta -> register written, and register changed -> twin/update received.
pub async fn latency(run: usize, w: &Workload, s: &Settings) -> Result<RunResult> {
    let mut setup = Setup::start(w, s, true).await?;
    let r = latency_inner(run, w, s, &mut setup).await;
    setup.stop().await;
    r
}

async fn latency_inner(
    run: usize,
    w: &Workload,
    s: &Settings,
    setup: &mut Setup,
) -> Result<RunResult> {
    let Some(Target::Tcp(port)) = setup.sim.targets.first().cloned() else {
        anyhow::bail!("the latency scenario needs a TCP simulator");
    };
    let device = Workload::device_id(0, 0);
    let mut probe = Probe::connect(port).await?;
    tokio::time::sleep(s.warmup).await;
    let (mut to_register, mut to_twin) = (Vec::new(), Vec::new());
    let mut timeouts = 0.0;
    let start = Instant::now();
    let mut value: u16 = 1000 + (run as u16) * 3000;
    let topic = format!("$hw/events/device/{device}/twin/update/delta");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (run as u64);
    while start.elapsed() < s.window {
        // Delta -> register.
        value += 1;
        let v = value.to_string();
        let payload = format!(
            r#"{{"event_id":"bench","timestamp":0,"twin":{{"{SETPOINT}":{{"expected":{{"value":"{v}"}},"metadata":{{"type":"int"}}}}}},"delta":{{"{SETPOINT}":"{v}"}}}}"#
        );
        let t0 = Instant::now();
        setup
            .sub
            .client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await?;
        let mut written = false;
        while t0.elapsed() < Duration::from_secs(2) {
            if probe.read(1, SETPOINT_ADDRESS).await? == value {
                to_register.push(t0.elapsed().as_secs_f64() * 1000.0);
                written = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        if !written {
            timeouts += 1.0;
        }
        // Let the read-back report arrive before the next step.
        let _ = setup
            .sub
            .wait_value(&device, SETPOINT, &v, w.cycle * 3 + Duration::from_secs(1))
            .await;
        // Register -> twin/update, at a random phase of the collect cycle (otherwise the
        // loop locks onto the mapper's schedule and samples a single phase).
        let phase = phase_fraction(&mut rng) * w.cycle.as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64(phase)).await;
        value += 1;
        let t0 = Instant::now();
        probe.write(1, SETPOINT_ADDRESS, value).await?;
        match setup
            .sub
            .wait_value(
                &device,
                SETPOINT,
                &value.to_string(),
                w.cycle * 3 + Duration::from_secs(1),
            )
            .await
        {
            Some(at) => to_twin.push((at - t0).as_secs_f64() * 1000.0),
            None => timeouts += 1.0,
        }
    }
    let mut r = base("p3", "tcp", run, w, start.elapsed());
    let q = |v: &[f64], p: f64| crate::measure::quantile(v, p).unwrap_or(f64::NAN);
    let m = &mut r.metrics;
    m.insert("delta_to_register_p50_ms".into(), q(&to_register, 0.5));
    m.insert("delta_to_register_p99_ms".into(), q(&to_register, 0.99));
    m.insert("register_to_twin_p50_ms".into(), q(&to_twin, 0.5));
    m.insert("register_to_twin_p99_ms".into(), q(&to_twin, 0.99));
    m.insert("register_to_twin_max_ms".into(), q(&to_twin, 1.0));
    m.insert("timeouts".into(), timeouts);
    r.samples.insert("delta_to_register_ms".into(), to_register);
    r.samples.insert("register_to_twin_ms".into(), to_twin);
    Ok(r)
}

/// A pseudo-random fraction in [0, 1) (xorshift64; reproducible per run).
pub fn phase_fraction(state: &mut u64) -> f64 {
    let mut x = (*state).max(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// P4: one RTU line; measured cycle time against the wire-time minimum.
pub async fn rtu(variant: &str, run: usize, w: &Workload, s: &Settings) -> Result<RunResult> {
    let setup = Setup::start(w, s, false).await?;
    let r = async {
        let mut r = measure_window("p4", variant, run, w, s, &setup).await?;
        let Link::Rtu { baud } = w.link else {
            anyhow::bail!("p4 needs an RTU link")
        };
        let req_s = r.metrics["modbus_requests_per_s"];
        let per_cycle =
            scenario::requests_per_cycle(&w.units, w.single_request_per_property) as f64;
        let cycle_ms = per_cycle / req_s * 1000.0;
        let min_ms = scenario::rtu_cycle_minimum(&w.units, baud, w.single_request_per_property)
            .as_secs_f64()
            * 1000.0;
        r.metrics.insert("requests_per_cycle".into(), per_cycle);
        r.metrics.insert("cycle_ms".into(), cycle_ms);
        r.metrics.insert("wire_minimum_ms".into(), min_ms);
        r.metrics
            .insert("cycle_vs_minimum".into(), cycle_ms / min_ms);
        Ok(r)
    }
    .await;
    setup.stop().await;
    r
}

/// Writes one result as `DIR/SCENARIO-VARIANT-runN.json`.
pub fn write_result(dir: &Path, r: &RunResult) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-{}-run{}.json", r.scenario, r.variant, r.run));
    std::fs::write(&path, serde_json::to_vec_pretty(r)?)?;
    Ok(path)
}

/// Every `*-run*.json` result in `dir`, sorted by file name.
pub fn load_results(dir: &Path) -> Result<Vec<RunResult>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("-run"))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p)?;
            serde_json::from_slice(&bytes).with_context(|| format!("cannot parse {}", p.display()))
        })
        .collect()
}

/// Median of every metric over the runs of each (scenario, variant), in first-seen order.
pub fn summarize(results: &[RunResult]) -> Vec<(String, String, BTreeMap<String, f64>)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in results {
        let k = (r.scenario.clone(), r.variant.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(sc, va)| {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.scenario == sc && r.variant == va)
                .collect();
            let mut med = BTreeMap::new();
            for name in runs
                .iter()
                .flat_map(|r| r.metrics.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let vals: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.metrics.get(name).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                if let Some(m) = crate::measure::median(&vals) {
                    med.insert(name.clone(), m);
                }
            }
            med.insert("runs".into(), runs.len() as f64);
            (sc, va, med)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_fractions() {
        let mut s = 42;
        let v: Vec<f64> = (0..1000).map(|_| phase_fraction(&mut s)).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < 0.1) && v.iter().any(|&x| x > 0.9));
    }

    #[test]
    fn summary_takes_medians_per_variant() {
        let mk = |v: &str, run: usize, x: f64| {
            let mut r = RunResult {
                scenario: "p1".into(),
                variant: v.into(),
                run,
                ..RunResult::default()
            };
            r.metrics.insert("cpu_percent".into(), x);
            r
        };
        let s = summarize(&[
            mk("a", 1, 3.0),
            mk("a", 2, 1.0),
            mk("b", 1, 9.0),
            mk("a", 3, 2.0),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1, "a");
        assert_eq!(s[0].2["cpu_percent"], 2.0);
        assert_eq!(s[0].2["runs"], 3.0);
        assert_eq!(s[1].2["cpu_percent"], 9.0);
    }
}
