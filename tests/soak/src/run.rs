//! The soak's I/O: a mosquitto broker, an in-process modbus-sim, the mapper binary as a
//! child process, and a twin peer playing edgecore.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mapper_sdk::testing::{MapperProcess, Mosquitto, TwinPeer, mapper_command};
use modbus_sim::{Fault, MapFile, Simulator};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::plan::{Event, RssVerdict, Tally, next_event, rss_verdict};
use crate::world::{SETPOINT, device_name, profile, sim_map};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to disturb the mapper.
    pub duration: Duration,
    /// How many Modbus devices (units of one simulator).
    pub devices: usize,
    /// The `modbus-mapper` binary.
    pub mapper: PathBuf,
    /// Seed of the disturbance sequence (random when absent).
    pub seed: Option<u64>,
}

/// What the soak saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed used (to replay a run).
    pub seed: u64,
    /// Disturbances.
    pub tally: Tally,
    /// Desired values the mapper had not applied by the end: (device, register, expected).
    pub lost: Vec<(String, u16, u16)>,
    /// Devices not `online` at the end.
    pub not_online: Vec<String>,
    /// Whether the mapper exited before the end (a crash).
    pub crashed: Option<String>,
    /// Log lines of the mapper with "panicked".
    pub panics: usize,
    /// Warnings and errors the mapper logged.
    pub warnings: usize,
    /// RSS verdict (None if the run was too short to judge).
    pub rss: Option<RssVerdict>,
    /// How long the mapper took to apply every last desired value after the end.
    pub settle: Duration,
    /// For each broker restart, how long after the broker was back the mapper's first
    /// publish arrived (None: not within 10 s). Includes the peer's own reconnect.
    pub resume: Vec<Option<Duration>>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.not_online.is_empty()
            && self.crashed.is_none()
            && self.panics == 0
            && self.rss.as_ref().is_none_or(|r| r.flat)
    }
}

/// Runs the soak and judges it.
pub async fn run(o: &Options) -> Result<Report> {
    if !o.mapper.exists() {
        bail!(
            "no mapper binary at {} (build it: cargo build --release -p modbus-mapper)",
            o.mapper.display()
        );
    }
    let bin = std::fs::canonicalize(&o.mapper)?;
    let seed = o.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let n = o.devices.clamp(1, 200);
    let Some(mut broker) = Mosquitto::start() else {
        bail!("mosquitto is missing (apt-get install mosquitto)");
    };
    let map = MapFile::parse(&sim_map(n), "soak").context("soak map")?;
    let sim = Simulator::from_map(&map.endpoints[0].device);
    let addr = sim
        .serve_tcp("127.0.0.1:0")
        .await
        .context("serving Modbus TCP")?;

    let dir = tempfile::tempdir()?;
    let profile_dir = dir.path().join("profile");
    std::fs::create_dir(&profile_dir)?;
    let profile_path = profile_dir.join("deviceProfile.json");
    let mut cycles = vec![500u64; n];
    let mut spare = false;
    write_atomically(
        &profile_path,
        &profile(addr.port(), &cycles, spare).to_string(),
    )?;

    let peer = TwinPeer::connect(broker.port).await;
    let mut mapper = spawn_mapper(&bin, dir.path(), &broker.url(), &profile_path);
    let log_path = mapper.log.clone();
    let pid = mapper.child.id();
    println!(
        "soak: seed {seed}, {n} devices, mapper pid {pid}, broker port {}, modbus {addr}",
        broker.port
    );

    for i in 0..n {
        if !peer
            .wait_subscribed(&device_name(i), Duration::from_secs(60))
            .await
        {
            mapper.stop();
            bail!(
                "{} never asked for its twin; mapper log:\n{}",
                device_name(i),
                tail(&log_path)
            );
        }
    }

    let start = Instant::now();
    let mut tally = Tally::default();
    let mut value: u16 = 0;
    let mut next_value = || {
        value = value % 30_000 + 1;
        value
    };
    let mut rss = Vec::new();
    let mut crashed = None;
    let mut broker_back: Option<Instant> = None;
    let mut outages: Vec<(u8, Instant)> = Vec::new();
    let mut resumes = Vec::new();
    let (mut pause, mut event) = next_event(&mut rng, n);
    let mut event_at = Instant::now() + pause;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut ticks: u64 = 0;
    let mut last_print = Instant::now();

    while start.elapsed() < o.duration {
        tick.tick().await;
        ticks += 1;
        if let Some(status) = mapper.child.try_wait()? {
            crashed = Some(format!("the mapper exited with {status}"));
            break;
        }
        if ticks.is_multiple_of(10)
            && let Some(kib) = rss_kib(pid)
        {
            rss.push((start.elapsed().as_secs_f64(), kib));
        }
        let now = Instant::now();
        if broker_back.is_some_and(|t| now >= t) {
            tokio::task::block_in_place(|| broker.restart());
            broker_back = None;
            resumes.push(tokio::spawn(first_publish_after(peer.clone())));
        }
        outages.retain(|(unit, until)| {
            if now >= *until {
                let _ = sim.clear_faults(*unit);
                false
            } else {
                true
            }
        });
        // A steady desired value every second: sent as a delta when the broker is up,
        // changed in the twin store only when it is down (the mapper must fetch it with
        // twin/get after reconnecting, as from edgecore).
        if ticks.is_multiple_of(2) {
            let d = device_name(rng.random_range(0..n));
            let v = next_value().to_string();
            if broker_back.is_none() {
                peer.send_delta(&d, &[("setpoint", &v)]).await;
            } else {
                set_expected(&peer, &d, &v);
            }
            tally.deltas += 1;
        }
        if now < event_at {
            continue;
        }
        match &event {
            Event::BrokerRestart { down } if broker_back.is_none() => {
                tokio::task::block_in_place(|| broker.kill());
                broker_back = Some(now + *down);
            }
            Event::UnitOutage { device, down } => {
                let unit = u8::try_from(device + 1).unwrap_or(1);
                if !outages.iter().any(|(u, _)| *u == unit) {
                    sim.set_fault(unit, Fault::Silent)?;
                    outages.push((unit, now + *down));
                }
            }
            Event::ProfileEdit => {
                for c in cycles.iter_mut() {
                    *c = [300, 500, 800, 1000][rng.random_range(0..4)];
                }
                spare = !spare;
                write_atomically(
                    &profile_path,
                    &profile(addr.port(), &cycles, spare).to_string(),
                )?;
            }
            Event::DeltaBurst { device, count } => {
                let d = device_name(*device);
                for _ in 0..*count {
                    let v = next_value().to_string();
                    if broker_back.is_none() {
                        peer.send_delta(&d, &[("setpoint", &v)]).await;
                    } else {
                        set_expected(&peer, &d, &v);
                    }
                }
            }
            Event::BrokerRestart { .. } => {}
        }
        tally.count(&event);
        (pause, event) = next_event(&mut rng, n);
        event_at = Instant::now() + pause;
        if last_print.elapsed() >= Duration::from_secs(60) {
            last_print = Instant::now();
            println!(
                "soak: {:>5.0} s, {tally:?}, rss {} KiB",
                start.elapsed().as_secs_f64(),
                rss.last().map_or(0, |s| s.1)
            );
        }
    }

    // Calm: broker up, every unit answering; then every last desired value must land.
    if broker_back.is_some() {
        tokio::task::block_in_place(|| broker.restart());
    }
    for (unit, _) in outages.drain(..) {
        let _ = sim.clear_faults(unit);
    }
    let calm = Instant::now();
    let expected = |peer: &TwinPeer| -> Vec<(String, u16)> {
        (0..n)
            .filter_map(|i| {
                let d = device_name(i);
                let v = peer
                    .expected
                    .lock()
                    .ok()?
                    .get(&d)?
                    .get("setpoint")?
                    .parse()
                    .ok()?;
                Some((d, v))
            })
            .collect()
    };
    let register = |i: usize| {
        sim.read_holding(u8::try_from(i + 1).unwrap_or(1), SETPOINT)
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lost;
    let mut not_online;
    loop {
        lost = expected(&peer)
            .into_iter()
            .enumerate()
            .filter_map(|(i, (d, want))| {
                (register(i) != Some(want)).then(|| (d, register(i).unwrap_or(0), want))
            })
            .collect::<Vec<_>>();
        not_online = (0..n)
            .map(device_name)
            .filter(|d| peer.last_state(d).as_deref() != Some("online"))
            .collect::<Vec<_>>();
        if (lost.is_empty() && not_online.is_empty())
            || Instant::now() >= deadline
            || crashed.is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle = calm.elapsed();
    if crashed.is_none() {
        if let Some(status) = mapper.child.try_wait()? {
            crashed = Some(format!("the mapper exited with {status}"));
        } else {
            match mapper.stop() {
                Some(status) if status.success() => {}
                Some(status) => {
                    crashed = Some(format!("the mapper ended with {status} on SIGTERM"))
                }
                None => crashed = Some("the mapper did not exit within 15 s of SIGTERM".into()),
            }
        }
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    let warnings = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    if crashed.is_some() || panics > 0 {
        eprintln!("mapper log (tail):\n{}", tail(&log_path));
    }
    sim.shutdown().await;
    let mut resume = Vec::new();
    for r in resumes {
        resume.push(r.await.ok().flatten());
    }
    let warmup = (o.duration.as_secs_f64() / 10.0).min(120.0);
    Ok(Report {
        seed,
        tally,
        lost,
        not_online,
        crashed,
        panics,
        warnings,
        rss: rss_verdict(&rss, warmup),
        settle,
        resume,
    })
}

/// Waits (up to 10 s) for the mapper's first publish after now: a twin update, a state
/// or a twin/get (the peer also hears its own deltas, which do not count).
async fn first_publish_after(peer: TwinPeer) -> Option<Duration> {
    let t0 = Instant::now();
    let from = peer.received.lock().ok()?.len();
    while t0.elapsed() < Duration::from_secs(10) {
        let seen = peer.received.lock().ok()?.get(from..).is_some_and(|new| {
            new.iter().any(|m| {
                m.topic.ends_with("/twin/update")
                    || m.topic.ends_with("/state/update")
                    || m.topic.ends_with("/twin/get")
            })
        });
        if seen {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn set_expected(peer: &TwinPeer, device: &str, v: &str) {
    if let Ok(mut e) = peer.expected.lock() {
        e.entry(device.to_owned())
            .or_default()
            .insert("setpoint".to_owned(), v.to_owned());
    }
}

/// Starts the mapper in `dir` (its log in `dir/mapper.log`).
fn spawn_mapper(bin: &Path, dir: &Path, url: &str, profile: &Path) -> MapperProcess {
    let mut cmd = mapper_command(bin, dir);
    cmd.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .arg("--mqtt-address")
        .arg(url)
        .arg("--profile")
        .arg(profile);
    MapperProcess::spawn(cmd, dir)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
