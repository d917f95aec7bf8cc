//! Test doubles for this crate's tests and other crates' (feature `testing`):
//! - [`MemoryDriver`]: devices held in memory, with fault switches and counters;
//! - [`Mosquitto`]: a real mosquitto broker on a free loopback port;
//! - [`TwinPeer`]: an MQTT client that plays edgecore: records what the mapper publishes,
//!   answers `twin/get`, and sends deltas.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::driver::{
    ConfigError, ConfigWarning, Device, DeviceSpec, Driver, DriverError, PropertySpec,
    config_from_json_noting,
};
use crate::model::{DeviceId, Value};
use crate::profile::{PropertyDef, ProtocolDef};

/// The state of one in-memory device.
#[derive(Debug, Default, Clone)]
pub struct MemoryDevice {
    /// Current values by key.
    pub values: HashMap<String, Value>,
    /// Refuse connects with this error.
    pub connect_error: Option<DriverError>,
    /// Fail every read and write with this error.
    pub io_error: Option<DriverError>,
    /// Successful connects.
    pub connects: u32,
    /// Reads served.
    pub reads: u32,
    /// Writes attempted, including refused ones.
    pub write_attempts: u32,
    /// Writes applied, in order.
    pub writes: Vec<(String, Value)>,
    /// Reads and writes failed with `io_error`.
    pub io_failures: u32,
}

/// Shared state of a [`MemoryDriver`]; tests hold a clone to inspect and steer devices.
#[derive(Debug, Default, Clone)]
pub struct MemoryState(Arc<Mutex<HashMap<String, MemoryDevice>>>);

impl MemoryState {
    /// Runs `f` on the device named `name` (created when missing).
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&mut MemoryDevice) -> R) -> R {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(name.to_owned()).or_default())
    }

    /// Sets a value.
    pub fn set(&self, device: &str, key: &str, v: Value) {
        self.with(device, |d| {
            d.values.insert(key.to_owned(), v);
        });
    }

    /// Reads a value.
    pub fn get(&self, device: &str, key: &str) -> Option<Value> {
        self.with(device, |d| d.values.get(key).cloned())
    }
}

/// A driver whose devices live in memory (protocol kind `memory` by default): the
/// reference implementation of [`Driver`] and [`Device`], complete and small enough to
/// read in one sitting. What each part shows:
///
/// - `handles`: claims its protocol kind (case-insensitively), as a real driver claims
///   `modbus` or its custom-protocol name (see [`crate::driver::CustomProtocol`] for the
///   `customized-protocol` wrapping of KubeEdge profiles).
/// - `parse_protocol_noting` / `parse_visitor_noting`: typed configs parsed once at
///   resolve time with [`config_from_json_noting`], so unknown keys become warnings with
///   suggestions and bad values errors that name the field (`visitorConfig.key`).
/// - `connect`: one handle per device; a [`MemoryDevice::connect_error`] is returned as
///   is, so tests can see what the SDK does with `Link`, `Timeout` or `Refused` there.
/// - `read` / `write`: [`MemoryDevice::io_error`] fails every transaction (the SDK's
///   offline counting and write retries), a missing key is `Refused` (the device is
///   online but cannot serve that property).
///
/// [`MemoryState`] is shared: a test keeps a clone to set values, switch faults and count
/// connects, reads and writes. `docs/writing-a-mapper.md` walks through a network driver
/// (`mappers/http`) built the same way.
#[derive(Debug, Clone)]
pub struct MemoryDriver {
    /// The protocol kind this driver handles (`memory` unless a test changes it).
    pub kind: String,
    /// The devices, shared with the test.
    pub state: MemoryState,
}

impl MemoryDriver {
    /// A driver for the devices in `state`, protocol kind `memory`.
    pub fn new(state: MemoryState) -> Self {
        Self {
            kind: "memory".into(),
            state,
        }
    }
}

/// Protocol config: `{"device": "name"}` (default: the device name).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MemoryProtocol {
    pub device: Option<String>,
}

/// Visitor config: `{"key": "name"}` (default: the property name).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MemoryVisitor {
    pub key: String,
}

pub struct MemoryHandle {
    name: String,
    state: MemoryState,
}

impl Driver for MemoryDriver {
    type Protocol = MemoryProtocol;
    type Visitor = MemoryVisitor;
    type Device = MemoryHandle;

    fn name(&self) -> &'static str {
        "memory"
    }

    fn handles(&self, protocol: &ProtocolDef) -> bool {
        protocol.kind.eq_ignore_ascii_case(&self.kind)
    }

    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<MemoryProtocol, ConfigError> {
        self.parse_protocol_noting(protocol).map(|(p, _)| p)
    }

    fn parse_visitor(
        &self,
        property: &PropertyDef,
        protocol: &MemoryProtocol,
    ) -> Result<MemoryVisitor, ConfigError> {
        self.parse_visitor_noting(property, protocol)
            .map(|(v, _)| v)
    }

    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(MemoryProtocol, Vec<ConfigWarning>), ConfigError> {
        let (p, unknown) = config_from_json_noting("protocolConfig", &protocol.config)?;
        Ok((p, unknown.into_iter().map(ConfigWarning::from).collect()))
    }

    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        _: &MemoryProtocol,
    ) -> Result<(MemoryVisitor, Vec<ConfigWarning>), ConfigError> {
        let (mut v, unknown): (MemoryVisitor, _) =
            config_from_json_noting("visitorConfig", &property.visitor)?;
        let warnings = unknown.into_iter().map(ConfigWarning::from).collect();
        if v.key.is_empty() {
            v.key = property.name.to_string();
        }
        if v.key.contains(' ') {
            return Err(ConfigError::new(
                "visitorConfig.key",
                "keys may not contain spaces",
            ));
        }
        Ok((v, warnings))
    }

    async fn connect(&self, spec: &DeviceSpec<Self>) -> Result<MemoryHandle, DriverError> {
        let name = spec
            .protocol
            .device
            .clone()
            .unwrap_or_else(|| spec.def.name.clone());
        self.state.with(&name, |d| match &d.connect_error {
            Some(e) => Err(e.clone()),
            None => {
                d.connects += 1;
                Ok(())
            }
        })?;
        Ok(MemoryHandle {
            name,
            state: self.state.clone(),
        })
    }
}

impl Device for MemoryHandle {
    type Visitor = MemoryVisitor;

    async fn read(&mut self, p: &PropertySpec<MemoryVisitor>) -> Result<Value, DriverError> {
        self.state.with(&self.name, |d| {
            if let Some(e) = &d.io_error {
                d.io_failures += 1;
                return Err(e.clone());
            }
            d.reads += 1;
            d.values
                .get(&p.visitor.key)
                .cloned()
                .ok_or_else(|| DriverError::Refused(format!("no value at {}", p.visitor.key)))
        })
    }

    async fn write(
        &mut self,
        p: &PropertySpec<MemoryVisitor>,
        value: &Value,
    ) -> Result<(), DriverError> {
        self.state.with(&self.name, |d| {
            d.write_attempts += 1;
            if let Some(e) = &d.io_error {
                d.io_failures += 1;
                return Err(e.clone());
            }
            d.values.insert(p.visitor.key.clone(), value.clone());
            d.writes.push((p.visitor.key.clone(), value.clone()));
            Ok(())
        })
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The environment variable that lets a test skip, instead of fail, when a tool it needs
/// (mosquitto, socat, mbpoll, pymodbus, dbus-daemon) is not installed: set it to `1`.
pub const ALLOW_SKIP_ENV: &str = "MAPPER_TESTS_ALLOW_SKIP";

/// Where the install hint points.
pub const INSTALL_HINT: &str = "run scripts/deps.sh, which installs every tool the tests need";

/// What a test does about a missing tool: `Ok(message)` to print and skip (only when
/// [`ALLOW_SKIP_ENV`] is `1`), `Err(message)` to fail with.
pub fn missing_tool_verdict(
    tool: &str,
    allow_skip: Option<&std::ffi::OsStr>,
) -> Result<String, String> {
    if allow_skip.is_some_and(|v| v == "1") {
        Ok(format!(
            "SKIPPED: {tool} is not installed and {ALLOW_SKIP_ENV}=1 is set; this test did not run ({INSTALL_HINT})"
        ))
    } else {
        Err(format!(
            "{tool} is not installed: {INSTALL_HINT} (or set {ALLOW_SKIP_ENV}=1 to skip the tests that need it)"
        ))
    }
}

/// Reports a missing tool a test needs: panics with the install hint, unless
/// `MAPPER_TESTS_ALLOW_SKIP=1` is set, in which case it prints that the test is skipped
/// and returns (the caller then returns early). A green run therefore means the test ran,
/// or that skipping was asked for explicitly.
pub fn missing_tool(tool: &str) {
    match missing_tool_verdict(tool, std::env::var_os(ALLOW_SKIP_ENV).as_deref()) {
        Ok(msg) => eprintln!("{msg}"),
        Err(msg) => panic!("{msg}"),
    }
}

/// A mosquitto broker on a free loopback port, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: String,
}

/// Finds a free loopback port (bind to port 0 and release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn mosquitto_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl Mosquitto {
    /// Starts a broker. When mosquitto is not installed this panics with the install hint,
    /// or, with `MAPPER_TESTS_ALLOW_SKIP=1` ([`ALLOW_SKIP_ENV`]), prints that the test is
    /// skipped and returns `None`.
    pub fn start() -> Option<Self> {
        Self::start_with(String::new())
    }

    /// Like [`Mosquitto::start`], with more configuration appended (e.g. a TLS listener).
    pub fn start_with(extra: String) -> Option<Self> {
        let Some(_) = mosquitto_binary() else {
            missing_tool("mosquitto");
            return None;
        };
        let mut m = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            extra,
        };
        m.spawn();
        Some(m)
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user {}\nper_listener_settings false\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlistener {} 127.0.0.1\n{}\n",
                // Keep the invoking user: as root, mosquitto would switch to its own
                // user and could not read the test's key files.
                std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into()),
                self.port,
                self.extra
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary().unwrap())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The broker URL.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (clients see the connection drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment variables the mapper binaries read; [`mapper_command`] clears them so
/// the caller's shell does not leak into a test.
pub const MAPPER_ENV: &[&str] = &[
    "MAPPER_CONFIG_FILE",
    "MQTT_SERVER",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "MQTT_CLIENT_ID",
    "DEVICE_PROFILE_PATH",
    "DEVICE_PROFILE",
    "NODE_NAME",
    "MAPPER_SOURCE",
    "META_SERVER",
    "RUST_LOG",
    "LOG_FORMAT",
    "NO_COLOR",
];

/// A command for the mapper binary `bin`, run in `dir`, with [`MAPPER_ENV`] cleared and
/// stdin closed.
pub fn mapper_command(bin: impl AsRef<std::ffi::OsStr>, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).stdin(Stdio::null());
    for v in MAPPER_ENV {
        cmd.env_remove(v);
    }
    cmd
}

/// A mapper binary as a child process for tests: its stderr in a file, stopped with
/// SIGTERM (and waited for) on drop, its log printed when the test fails.
pub struct MapperProcess {
    pub child: Child,
    pub log: PathBuf,
    name: String,
}

impl MapperProcess {
    /// Starts `cmd` with stderr into `dir/mapper.log`.
    pub fn spawn(mut cmd: Command, dir: &std::path::Path) -> Self {
        let log = dir.join("mapper.log");
        let name = std::path::Path::new(cmd.get_program())
            .file_name()
            .map_or_else(|| "mapper".into(), |n| n.to_string_lossy().into_owned());
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log, name }
    }

    /// What the mapper logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until the log holds `text` (true) or `limit` passes or the mapper exits
    /// (false).
    pub fn wait_for_log(&mut self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(text) {
                return true;
            }
            if Instant::now() >= deadline || !self.running() {
                return self.log().contains(text);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (with a deadline) for the exit; `None` if it did not exit (it
    /// is killed then).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for MapperProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// One message the peer received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Json,
}

/// Plays edgecore on the broker: records `$hw/events/device/#` and `$ke/events/device/#`
/// traffic, answers `twin/get` from a twin store, and publishes deltas.
#[derive(Clone)]
pub struct TwinPeer {
    client: AsyncClient,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Device id -> property -> expected value served by twin/get.
    pub expected: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>,
    pub notify: Arc<Notify>,
    /// SUBACKs received: one per (re)connect.
    subacks: Arc<std::sync::atomic::AtomicU64>,
}

impl TwinPeer {
    /// Connects to the broker and subscribes; returns once the subscriptions are active.
    pub async fn connect(port: u16) -> Self {
        let mut o = MqttOptions::new(format!("edgecore-peer-{}", free_port()), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut ev) = AsyncClient::new(o, 1000);
        let peer = Self {
            client: client.clone(),
            received: Arc::default(),
            expected: Arc::default(),
            notify: Arc::new(Notify::new()),
            subacks: Arc::default(),
        };
        let subscribed = Arc::new(Notify::new());
        let p = peer.clone();
        let sub = Arc::clone(&subscribed);
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let filters = ["$hw/events/device/#", "$ke/events/device/#"]
                            .map(|t| rumqttc::SubscribeFilter::new(t.to_owned(), QoS::AtLeastOnce));
                        let _ = p.client.subscribe_many(filters).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        p.subacks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        sub.notify_one();
                    }
                    Ok(Event::Incoming(Packet::Publish(m))) => {
                        p.on_publish(&m.topic, &m.payload).await
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
            .await
            .unwrap();
        peer
    }

    async fn on_publish(&self, topic: &str, payload: &[u8]) {
        let json: Json = serde_json::from_slice(payload).unwrap_or(Json::Null);
        if let Some(id) = topic
            .strip_prefix("$hw/events/device/")
            .and_then(|r| r.strip_suffix("/twin/get"))
        {
            // edgecore always answers, with every twin it has (possibly none).
            let twins = self
                .expected
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or_default();
            {
                let twin: serde_json::Map<String, Json> = twins
                    .iter()
                    .map(|(k, v)| {
                        (k.clone(), serde_json::json!({"expected": {"value": v, "metadata": {"timestamp": 1}}, "optional": false, "metadata": {"type": "string"}}))
                    })
                    .collect();
                let body = serde_json::json!({"event_id": json.get("event_id").cloned().unwrap_or(Json::Null), "timestamp": 1, "twin": twin});
                let _ = self
                    .client
                    .publish(
                        format!("{topic}/result"),
                        QoS::AtLeastOnce,
                        false,
                        body.to_string(),
                    )
                    .await;
            }
        }
        self.received.lock().unwrap().push(Received {
            topic: topic.to_owned(),
            payload: json,
        });
        self.notify.notify_waiters();
    }

    /// Publishes a delta as edgecore would, and remembers the values as expected (so a
    /// later twin/get returns them, as edgecore's twin store does).
    pub async fn send_delta(&self, device: &str, values: &[(&str, &str)]) {
        {
            let mut exp = self.expected.lock().unwrap();
            let twins = exp.entry(device.to_owned()).or_default();
            for (k, v) in values {
                twins.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        let delta: serde_json::Map<String, Json> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Json::String((*v).to_owned())))
            .collect();
        let twin: serde_json::Map<String, Json> = values
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    serde_json::json!({"expected": {"value": v}, "metadata": {"type": "string"}}),
                )
            })
            .collect();
        let body =
            serde_json::json!({"event_id": "e", "timestamp": 1, "twin": twin, "delta": delta});
        self.publish_raw(
            &format!("$hw/events/device/{device}/twin/update/delta"),
            body.to_string().as_bytes(),
        )
        .await;
    }

    /// Publishes raw bytes.
    pub async fn publish_raw(&self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
    }

    /// Messages received on `topic` so far.
    pub fn on_topic(&self, topic: &str) -> Vec<Json> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload.clone())
            .collect()
    }

    /// The last reported actual value of a property of a device.
    pub fn last_actual(&self, device: &str, property: &str) -> Option<String> {
        let topic = format!("$hw/events/device/{device}/twin/update");
        self.on_topic(&topic).iter().rev().find_map(|p| {
            p.get("twin")?
                .get(property)?
                .get("actual")?
                .get("value")?
                .as_str()
                .map(str::to_owned)
        })
    }

    /// The last reported state of a device.
    pub fn last_state(&self, device: &str) -> Option<String> {
        let topic = format!("$hw/events/device/{device}/state/update");
        self.on_topic(&topic)
            .last()
            .and_then(|p| p.get("state")?.as_str().map(str::to_owned))
    }

    /// Waits until `cond` holds on the peer.
    pub async fn wait(&self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        wait_until(limit, || cond(self)).await
    }

    /// Waits until the mapper asked for the device's twin, which it does right after its
    /// subscriptions are acknowledged: from then on deltas reach it.
    pub async fn wait_subscribed(&self, device: &str, limit: Duration) -> bool {
        let topic = format!("$hw/events/device/{device}/twin/get");
        self.wait(limit, |p| !p.on_topic(&topic).is_empty()).await
    }

    /// How many times the peer's subscriptions were acknowledged (once per connection):
    /// after a broker restart, more than before means it receives again.
    pub fn subscriptions(&self) -> u64 {
        self.subacks.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets everything received so far.
    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }
}

/// Settings for a mapper under test: the broker, a client id, the profile, and short
/// reconnect and write-retry delays so that recovery happens within test deadlines.
pub fn test_settings(
    broker: &Mosquitto,
    client_id: &str,
    profile: crate::config::ProfileSetting,
) -> crate::config::Settings {
    crate::config::Settings {
        mqtt: crate::mqtt::MqttSettings::from_url(&broker.url(), client_id).unwrap(),
        profile,
        resolve: crate::profile::ResolveOptions::default(),
        runtime: crate::runtime::RuntimeOptions {
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            write_retry_min: Duration::from_millis(100),
            write_retry_max: Duration::from_millis(500),
            ..crate::runtime::RuntimeOptions::default()
        },
        about: crate::about::About::SDK,
        http: None,
    }
}

/// A mapper running in this process ([`crate::run`]) until [`InProcessMapper::stop`].
pub struct InProcessMapper {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::app::RunError>>,
}

impl InProcessMapper {
    /// Starts `driver` with `settings`.
    pub fn start<D: Driver>(driver: D, settings: crate::config::Settings) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(driver, settings, async {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            task,
        }
    }

    /// Shuts the mapper down (devices reported offline, MQTT flushed) and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the mapper stops within 30 s")
            .expect("the mapper task does not panic")
            .expect("the mapper ends without error");
    }
}

/// Whether `tool` is on the `PATH`; when it is not, [`missing_tool`] decides (fail, or
/// skip with `MAPPER_TESTS_ALLOW_SKIP=1`).
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        missing_tool(tool);
    }
    found
}

/// A device id for tests.
pub fn id(s: &str) -> DeviceId {
    DeviceId(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_fails_unless_skipping_is_asked_for() {
        let fail = missing_tool_verdict("mosquitto", None).unwrap_err();
        assert!(
            fail.contains("scripts/deps.sh") && fail.contains(ALLOW_SKIP_ENV),
            "{fail}"
        );
        // CI or not, anything but an explicit 1 fails.
        assert!(missing_tool_verdict("socat", Some("0".as_ref())).is_err());
        assert!(missing_tool_verdict("socat", Some("".as_ref())).is_err());
        let skip = missing_tool_verdict("socat", Some("1".as_ref())).unwrap();
        assert!(skip.starts_with("SKIPPED: socat"), "{skip}");
    }
}
