//! The I/O shell: start and stop mosquitto, modbus-sim and the mapper as separate
//! processes, the MQTT subscriber, the Modbus probe client and `/proc` sampling.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::measure::{self, SimStats};
use crate::scenario::Target;

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F: FnMut() -> bool>(
    timeout: Duration,
    what: &str,
    mut cond: F,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A started process, stopped by PID (SIGTERM, then SIGKILL after 3 s) on [`Proc::stop`]
/// or killed on drop.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM by PID and waits up to 3 s, then kills.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
    }
}

fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
    let child = cmd
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Proc {
        name: name.to_string(),
        child,
    })
}

/// A free loopback port (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// `set_tcp_nodelay true` unless `BENCH_BROKER_NAGLE` is set (mosquitto's default keeps
/// Nagle's algorithm on, which delays small publishes by up to a delayed-ACK period).
fn nodelay_line() -> &'static str {
    if std::env::var_os("BENCH_BROKER_NAGLE").is_some() {
        ""
    } else {
        "set_tcp_nodelay true\n"
    }
}

/// Starts mosquitto on a free loopback port; returns it and the port once it accepts.
pub async fn start_broker(mosquitto: &Path, dir: &Path) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n{}",
        nodelay_line()
    );
    if !user.is_empty() {
        conf.push_str(&format!("user {user}\n"));
    }
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, conf)?;
    let log = std::fs::File::create(dir.join("mosquitto.log"))?;
    let p = spawn(
        "mosquitto",
        Command::new(mosquitto)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((p, port));
        }
        if Instant::now() > deadline {
            bail!(
                "mosquitto did not listen on port {port}; see {}",
                dir.join("mosquitto.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `socat` with a pty pair linked at `device` and `mapper` (a serial line: the
/// simulator serves one end, the mapper opens the other exclusively, as on hardware).
pub async fn start_line(device: &Path, mapper: &Path) -> Result<Proc> {
    let _ = std::fs::remove_file(device);
    let _ = std::fs::remove_file(mapper);
    let mut cmd = Command::new("socat");
    cmd.arg(format!("pty,raw,echo=0,link={}", device.display()))
        .arg(format!("pty,raw,echo=0,link={}", mapper.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let p = spawn("socat", &mut cmd)?;
    wait_until(Duration::from_secs(10), "the socat pty pair", || {
        device.exists() && mapper.exists()
    })
    .await?;
    Ok(p)
}

/// A running simulator: the process, one target per endpoint (`bus0`, `bus1`, ... in
/// order) and its stats file.
pub struct Sim {
    /// The process.
    pub proc: Proc,
    /// Where each bus is reachable.
    pub targets: Vec<Target>,
    /// `--stats-file`.
    pub stats_file: PathBuf,
}

impl Sim {
    /// Latest stats written by the simulator.
    pub fn stats(&self) -> Result<SimStats> {
        let text = std::fs::read_to_string(&self.stats_file)
            .with_context(|| format!("cannot read {}", self.stats_file.display()))?;
        Ok(SimStats::parse(&text)?)
    }
}

/// Parses an `endpoint=busN tcp=ADDR` / `rtu=PATH` line into (index, target).
pub fn parse_endpoint_line(line: &str) -> Option<(usize, Target)> {
    let rest = line.strip_prefix("endpoint=bus")?;
    let (idx, what) = rest.split_once(' ')?;
    let idx = idx.parse().ok()?;
    if let Some(addr) = what.strip_prefix("tcp=") {
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        Some((idx, Target::Tcp(port)))
    } else {
        what.strip_prefix("rtu=")
            .map(|p| (idx, Target::Rtu(p.to_string())))
    }
}

/// Starts modbus-sim with `map` and waits for `ready`.
pub async fn start_sim(sim: &Path, map: &str, dir: &Path) -> Result<Sim> {
    let map_path = dir.join("sim.yaml");
    std::fs::write(&map_path, map)?;
    let stats_file = dir.join("sim-stats.json");
    let log = std::fs::File::create(dir.join("sim.log"))?;
    let mut cmd = Command::new(sim);
    cmd.arg("--map")
        .arg(&map_path)
        .arg("--stats-file")
        .arg(&stats_file)
        .arg("--stats-interval")
        .arg("0.5");
    cmd.arg("--log")
        .arg("warn")
        .stdout(Stdio::piped())
        .stderr(log);
    let mut proc = spawn("modbus-sim", &mut cmd)?;
    let stdout = proc.child.stdout.take().context("no simulator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut targets = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if line == "ready" {
                return Ok::<bool, std::io::Error>(true);
            }
            if let Some(t) = parse_endpoint_line(&line) {
                targets.push(t);
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(true)) => {}
        _ => bail!(
            "modbus-sim did not become ready; see {}",
            dir.join("sim.log").display()
        ),
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    targets.sort_by_key(|(i, _)| *i);
    let targets = targets.into_iter().map(|(_, t)| t).collect();
    let s = Sim {
        proc,
        targets,
        stats_file,
    };
    wait_until(Duration::from_secs(10), "the simulator stats file", || {
        s.stats().is_ok()
    })
    .await?;
    Ok(s)
}

/// Expands `{broker}` and `{profile}` in the mapper command template.
pub fn expand_command(template: &str, broker: &str, profile: &str) -> String {
    template
        .replace("{broker}", broker)
        .replace("{profile}", profile)
}

/// Starts the mapper command (through `sh -c exec`, so the PID is the mapper's).
pub async fn start_mapper(command: &str, dir: &Path) -> Result<Proc> {
    let log = std::fs::File::create(dir.join("mapper.log"))?;
    spawn(
        "mapper",
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// One received `twin/update`.
#[derive(Debug, Clone)]
pub struct Update {
    /// Device id from the topic.
    pub device: String,
    /// Property values.
    pub values: Vec<(String, String)>,
    /// When it arrived.
    pub at: Instant,
}

/// Subscribes to every device's `twin/update` and counts the properties delivered.
pub struct Subscriber {
    /// Client handle (also used to publish deltas).
    pub client: AsyncClient,
    /// Properties received.
    pub properties: Arc<AtomicU64>,
    /// Updates, when forwarding was asked for.
    pub updates: Option<mpsc::UnboundedReceiver<Update>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects to the broker, subscribes and waits for the SUBACK.
    pub async fn start(port: u16, forward: bool) -> Result<Self> {
        let mut opts = MqttOptions::new(
            format!("bench-sub-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let properties = Arc::new(AtomicU64::new(0));
        let (tx, rx) = if forward {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (sub_tx, mut sub_rx) = watch::channel(false);
        let counter = properties.clone();
        let sub_client = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub_client
                            .subscribe("$hw/events/device/+/twin/update", QoS::AtMostOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let values = measure::twin_values(&p.payload);
                        counter.fetch_add(values.len() as u64, Ordering::Relaxed);
                        if let (Some(tx), Some(dev)) = (&tx, measure::device_of_topic(&p.topic)) {
                            let _ = tx.send(Update {
                                device: dev.to_string(),
                                values,
                                at,
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), sub_rx.wait_for(|s| *s))
            .await
            .context("no SUBACK from the broker")??;
        Ok(Self {
            client,
            properties,
            updates: rx,
            task,
        })
    }

    /// Properties received so far.
    pub fn count(&self) -> u64 {
        self.properties.load(Ordering::Relaxed)
    }

    /// Waits for an update of `device` whose `property` equals `value`; its arrival time.
    pub async fn wait_value(
        &mut self,
        device: &str,
        property: &str,
        value: &str,
        timeout: Duration,
    ) -> Option<Instant> {
        let rx = self.updates.as_mut()?;
        let find = async {
            while let Some(u) = rx.recv().await {
                if u.device == device && u.values.iter().any(|(p, v)| p == property && v == value) {
                    return Some(u.at);
                }
            }
            None
        };
        tokio::time::timeout(timeout, find).await.ok().flatten()
    }

    /// Stops the event loop.
    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// A Modbus TCP client for one holding register (the benchmark's probe).
pub struct Probe {
    stream: TcpStream,
    tid: u16,
}

impl Probe {
    /// Connects to the simulator.
    pub async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, tid: 0 })
    }

    /// Reads one holding register.
    pub async fn read(&mut self, unit: u8, address: u16) -> Result<u16> {
        self.tid = self.tid.wrapping_add(1);
        self.stream
            .write_all(&measure::mbap_read_holding(self.tid, unit, address))
            .await?;
        let mut buf = [0u8; 11];
        self.stream.read_exact(&mut buf[..9]).await?;
        if buf[7] == 3 {
            self.stream.read_exact(&mut buf[9..]).await?;
        }
        Ok(measure::parse_read_reply(self.tid, &buf)?)
    }

    /// Writes one holding register (FC6) and waits for the echo.
    pub async fn write(&mut self, unit: u8, address: u16, value: u16) -> Result<()> {
        self.tid = self.tid.wrapping_add(1);
        self.stream
            .write_all(&measure::mbap_write_holding(self.tid, unit, address, value))
            .await?;
        let mut buf = [0u8; 12];
        self.stream.read_exact(&mut buf[..9]).await?;
        if buf[7] != 6 {
            bail!("write refused (function {:#x})", buf[7]);
        }
        self.stream.read_exact(&mut buf[9..]).await?;
        Ok(())
    }
}

/// CPU ticks (utime + stime) of a process.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(measure::parse_stat_cpu_ticks(&s)?)
}

/// Memory of a process from `/proc/PID/status`, bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: resident set.
    pub rss: u64,
    /// `VmHWM`: peak resident set.
    pub hwm: u64,
    /// `RssAnon`: resident anonymous memory (heap, stacks).
    pub anon: u64,
    /// `RssFile`: resident file-backed pages (the binary's and shared libraries' code).
    pub file: u64,
}

/// Memory figures of a process.
pub fn memory(pid: u32) -> Result<Memory> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = measure::parse_status_kb(&s, "VmRSS").context("no VmRSS")?;
    Ok(Memory {
        rss,
        hwm: measure::parse_status_kb(&s, "VmHWM").unwrap_or(rss),
        anon: measure::parse_status_kb(&s, "RssAnon").unwrap_or(0),
        file: measure::parse_status_kb(&s, "RssFile").unwrap_or(0),
    })
}

/// `Pss` of `/proc/PID/smaps_rollup`, bytes: the resident set with each shared page
/// divided among the processes that map it (libc's code counts a fraction); 0 if unknown.
/// The kernel walks the process's page tables for it, so it is read once per run, not
/// while sampling.
pub fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|r| measure::parse_status_kb(&r, "Pss"))
        .unwrap_or(0)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lines() {
        assert_eq!(
            parse_endpoint_line("endpoint=bus3 tcp=127.0.0.1:40755"),
            Some((3, Target::Tcp(40755)))
        );
        assert_eq!(
            parse_endpoint_line("endpoint=bus0 rtu=/dev/pts/7"),
            Some((0, Target::Rtu("/dev/pts/7".into())))
        );
        assert_eq!(parse_endpoint_line("ready"), None);
        assert_eq!(parse_endpoint_line("endpoint=other tcp=127.0.0.1:1"), None);
    }

    #[test]
    fn command_template() {
        assert_eq!(
            expand_command(
                "m --mqtt-address {broker} --profile {profile}",
                "tcp://127.0.0.1:9",
                "/tmp/p.json"
            ),
            "m --mqtt-address tcp://127.0.0.1:9 --profile /tmp/p.json"
        );
    }
}
