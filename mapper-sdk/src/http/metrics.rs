//! The shared telemetry handle: per-device counters, gauges and a read-latency histogram,
//! MQTT counters, readiness facts and the last value of every property; rendered as
//! Prometheus text format 0.0.4. Pure: atomics and short-held mutexes, no I/O.
//!
//! Rendered by hand rather than with `prometheus-client`: the format is a few lines per
//! family, devices come and go with profiles (a device that leaves is removed from the
//! output at once), and it keeps a dependency out of every mapper binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::driver::DriverError;
use crate::model::{AccessMode, DataType, DeviceId, DeviceState, PropertyName};
use crate::profile::PropertyDef;

/// Upper bounds (seconds) of the read-latency histogram buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What kind of failure a read was, as the `kind` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer in time.
    Timeout,
    /// The link is lost.
    Link,
    /// The device refused.
    Refused,
    /// The value cannot be decoded or encoded.
    Invalid,
}

impl ErrorKind {
    const ALL: [Self; 4] = [Self::Timeout, Self::Link, Self::Refused, Self::Invalid];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Link => "link",
            Self::Refused => "refused",
            Self::Invalid => "invalid",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<&DriverError> for ErrorKind {
    fn from(e: &DriverError) -> Self {
        match e {
            DriverError::Timeout(_) => Self::Timeout,
            DriverError::Link(_) => Self::Link,
            DriverError::Refused(_) => Self::Refused,
            DriverError::Invalid(_) => Self::Invalid,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the API shows of one property.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyView {
    /// The property.
    pub name: PropertyName,
    /// Its value type.
    pub data_type: DataType,
    /// Whether desired values may be written.
    pub writable: bool,
    /// The twin type edgecore stores, when the model says.
    pub stored_type: Option<String>,
    /// The last value read (canonical text) and when (milliseconds since the epoch).
    pub last: Option<(String, u64)>,
}

/// The counters and views of one device; workers update it, the HTTP side reads it.
#[derive(Debug, Default)]
pub struct DeviceMetrics {
    reads: AtomicU64,
    read_errors: [AtomicU64; 4],
    latency: Histogram,
    writes: AtomicU64,
    write_errors: AtomicU64,
    pending: AtomicU64,
    /// 0 unknown, 1 online, 2 offline.
    state: AtomicU8,
    properties: Mutex<Vec<PropertyView>>,
}

impl DeviceMetrics {
    /// One batch of reads took `elapsed`.
    pub fn observe_read_latency(&self, elapsed: Duration) {
        self.latency.observe(elapsed);
    }

    /// One property read finished; `error` when it failed.
    pub fn count_read(&self, error: Option<ErrorKind>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = error {
            self.read_errors[k.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One write finished; `ok` when the device took it.
    pub fn count_write(&self, ok: bool) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Desired values waiting to be written.
    pub fn set_pending(&self, n: usize) {
        self.pending
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The device's state.
    pub fn set_state(&self, state: DeviceState) {
        let v = match state {
            DeviceState::Online => 1,
            DeviceState::Offline => 2,
        };
        self.state.store(v, Ordering::Relaxed);
    }

    /// The device's state, if known yet.
    pub fn state(&self) -> Option<DeviceState> {
        match self.state.load(Ordering::Relaxed) {
            1 => Some(DeviceState::Online),
            2 => Some(DeviceState::Offline),
            _ => None,
        }
    }

    /// A property was read (or pushed) with this canonical text.
    pub fn record_value(&self, property: &PropertyName, text: String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut props = lock(&self.properties);
        if let Some(p) = props.iter_mut().find(|p| &p.name == property) {
            p.last = Some((text, now));
        }
    }

    /// The properties with their last values.
    pub fn properties(&self) -> Vec<PropertyView> {
        lock(&self.properties).clone()
    }

    /// Replaces the property list (a new definition), keeping the last values of the
    /// properties that remain.
    fn define(&self, defs: &[&PropertyDef]) {
        let mut props = lock(&self.properties);
        let old = std::mem::take(&mut *props);
        *props = defs
            .iter()
            .map(|d| PropertyView {
                name: d.name.clone(),
                data_type: d.data_type,
                writable: d.access != AccessMode::ReadOnly,
                stored_type: d.stored_type.clone(),
                last: old
                    .iter()
                    .find(|o| o.name == d.name)
                    .and_then(|o| o.last.clone()),
            })
            .collect();
    }
}

/// MQTT counters.
#[derive(Debug, Default)]
pub struct MqttMetrics {
    connected: AtomicBool,
    ever_connected: AtomicBool,
    publishes: AtomicU64,
    reconnects: AtomicU64,
    dropped: AtomicU64,
    /// The store-and-forward buffer's counts, once the MQTT client runs.
    buffer: std::sync::OnceLock<Arc<crate::buffer::BufferStats>>,
}

impl MqttMetrics {
    /// Reports the store-and-forward buffer's counts from now on.
    pub fn set_buffer(&self, stats: Arc<crate::buffer::BufferStats>) {
        let _ = self.buffer.set(stats);
    }

    /// The session is up (a ConnAck); counts a reconnect after the first.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        if self.ever_connected.swap(true, Ordering::Relaxed) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The session is down.
    pub fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Whether the session is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A publish was handed to the client.
    pub fn published(&self) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// A message was dropped (a publish the client refused, an oversized incoming one).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where reports go, which decides readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportPath {
    /// The MQTT twin contract: ready when the broker session is up.
    #[default]
    Mqtt,
    /// edgecore over DMI: ready once the mapper registered.
    Dmi,
}

/// Whether the mapper is ready, and what is missing when not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// A profile (or DMI device list) was loaded.
    pub profile_loaded: bool,
    /// The report path.
    pub report_path: ReportPath,
    /// The report path is connected (MQTT) or registered (DMI).
    pub report_connected: bool,
}

impl Readiness {
    /// Ready to serve.
    pub fn ready(&self) -> bool {
        self.profile_loaded && self.report_connected
    }

    /// What is missing, in words.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.profile_loaded {
            m.push(match self.report_path {
                ReportPath::Mqtt => "no device profile loaded yet",
                ReportPath::Dmi => "no device list from edgecore yet",
            });
        }
        if !self.report_connected {
            m.push(match self.report_path {
                ReportPath::Mqtt => "not connected to the MQTT broker",
                ReportPath::Dmi => "not registered with edgecore over DMI",
            });
        }
        m
    }
}

#[derive(Debug, Default)]
struct Inner {
    devices: Mutex<BTreeMap<DeviceId, Arc<DeviceMetrics>>>,
    mqtt: Arc<MqttMetrics>,
    profile_loaded: AtomicBool,
    dmi: AtomicBool,
    dmi_registered: AtomicBool,
}

/// The cheap shared handle (clone freely): the runtime and the MQTT adapter write to it,
/// the HTTP endpoint reads it.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl Telemetry {
    /// The metrics of a device starting with these properties (kept across restarts).
    pub fn device(&self, id: &DeviceId, defs: &[&PropertyDef]) -> Arc<DeviceMetrics> {
        let m = Arc::clone(lock(&self.inner.devices).entry(id.clone()).or_default());
        m.define(defs);
        m
    }

    /// A device left the profile: its series go.
    pub fn remove_device(&self, id: &DeviceId) {
        lock(&self.inner.devices).remove(id);
    }

    /// The devices, by id.
    pub fn devices(&self) -> Vec<(DeviceId, Arc<DeviceMetrics>)> {
        lock(&self.inner.devices)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// One device.
    pub fn find(&self, id: &DeviceId) -> Option<Arc<DeviceMetrics>> {
        lock(&self.inner.devices).get(id).cloned()
    }

    /// The MQTT counters.
    pub fn mqtt(&self) -> Arc<MqttMetrics> {
        Arc::clone(&self.inner.mqtt)
    }

    /// A profile was loaded and applied.
    pub fn set_profile_loaded(&self) {
        self.inner.profile_loaded.store(true, Ordering::Relaxed);
    }

    /// Reports go to edgecore over DMI (readiness waits for registration).
    pub fn set_report_path(&self, path: ReportPath) {
        self.inner
            .dmi
            .store(path == ReportPath::Dmi, Ordering::Relaxed);
    }

    /// The mapper registered with edgecore.
    pub fn set_dmi_registered(&self) {
        self.inner.dmi_registered.store(true, Ordering::Relaxed);
    }

    /// The readiness facts now.
    pub fn readiness(&self) -> Readiness {
        let dmi = self.inner.dmi.load(Ordering::Relaxed);
        Readiness {
            profile_loaded: self.inner.profile_loaded.load(Ordering::Relaxed),
            report_path: if dmi {
                ReportPath::Dmi
            } else {
                ReportPath::Mqtt
            },
            report_connected: if dmi {
                self.inner.dmi_registered.load(Ordering::Relaxed)
            } else {
                self.inner.mqtt.is_connected()
            },
        }
    }

    /// Everything in Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let devices = self.devices();
        let mut out = String::with_capacity(1024 + devices.len() * 2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let family = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn Fn(&DeviceMetrics) -> u64| {
            header(out, name, kind, help);
            for (id, m) in &devices {
                let _ = writeln!(out, "{name}{{device=\"{}\"}} {}", escape(&id.0), value(m));
            }
        };
        family(
            &mut out,
            "mapper_device_reads_total",
            "counter",
            "Property reads, failed ones included.",
            &|m| load(&m.reads),
        );
        header(
            &mut out,
            "mapper_device_read_errors_total",
            "counter",
            "Failed property reads by kind (timeout, link, refused, invalid).",
        );
        for (id, m) in &devices {
            for k in ErrorKind::ALL {
                let _ = writeln!(
                    out,
                    "mapper_device_read_errors_total{{device=\"{}\",kind=\"{}\"}} {}",
                    escape(&id.0),
                    k.label(),
                    load(&m.read_errors[k.index()])
                );
            }
        }
        header(
            &mut out,
            "mapper_device_read_duration_seconds",
            "histogram",
            "Time one batch of reads of a device took.",
        );
        for (id, m) in &devices {
            let id = escape(&id.0);
            let mut cumulative = 0;
            for (i, b) in m.latency.buckets.iter().enumerate() {
                cumulative += load(b);
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
                let _ = writeln!(
                    out,
                    "mapper_device_read_duration_seconds_bucket{{device=\"{id}\",le=\"{le}\"}} {cumulative}"
                );
            }
            #[allow(clippy::cast_precision_loss)]
            let sum = load(&m.latency.sum_nanos) as f64 / 1e9;
            let _ = writeln!(
                out,
                "mapper_device_read_duration_seconds_sum{{device=\"{id}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "mapper_device_read_duration_seconds_count{{device=\"{id}\"}} {}",
                load(&m.latency.count)
            );
        }
        family(
            &mut out,
            "mapper_device_writes_total",
            "counter",
            "Writes of desired values, failed ones included.",
            &|m| load(&m.writes),
        );
        family(
            &mut out,
            "mapper_device_write_errors_total",
            "counter",
            "Failed writes of desired values.",
            &|m| load(&m.write_errors),
        );
        family(
            &mut out,
            "mapper_device_pending_writes",
            "gauge",
            "Desired values waiting to be written.",
            &|m| load(&m.pending),
        );
        family(
            &mut out,
            "mapper_device_online",
            "gauge",
            "1 when the device is online, else 0.",
            &|m| u64::from(m.state() == Some(DeviceState::Online)),
        );
        let mq = &self.inner.mqtt;
        let single = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        };
        single(
            &mut out,
            "mapper_mqtt_connected",
            "gauge",
            "1 while the MQTT session is up.",
            u64::from(mq.is_connected()),
        );
        single(
            &mut out,
            "mapper_mqtt_publishes_total",
            "counter",
            "Messages handed to the MQTT client.",
            load(&mq.publishes),
        );
        single(
            &mut out,
            "mapper_mqtt_reconnects_total",
            "counter",
            "MQTT sessions established after the first.",
            load(&mq.reconnects),
        );
        let (buffered, buffer_dropped) = mq
            .buffer
            .get()
            .map_or((0, 0), |b| (b.buffered(), b.dropped()));
        single(
            &mut out,
            "mapper_mqtt_buffered_messages",
            "gauge",
            "Reports kept while the broker is unreachable.",
            buffered,
        );
        single(
            &mut out,
            "mapper_mqtt_buffer_dropped_total",
            "counter",
            "Buffered reports dropped (over the count or age limit).",
            buffer_dropped,
        );
        single(
            &mut out,
            "mapper_mqtt_dropped_messages_total",
            "counter",
            "Messages dropped: publishes the client refused, oversized incoming ones.",
            load(&mq.dropped),
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId(s.to_owned())
    }

    #[test]
    fn renders_device_and_mqtt_families() {
        let t = Telemetry::default();
        let m = t.device(&id("ns/pump\"1"), &[]);
        m.count_read(None);
        m.count_read(Some(ErrorKind::Timeout));
        m.observe_read_latency(Duration::from_millis(3));
        m.observe_read_latency(Duration::from_secs(60));
        m.count_write(false);
        m.set_pending(2);
        m.set_state(DeviceState::Online);
        t.mqtt().connected();
        t.mqtt().disconnected();
        t.mqtt().connected();
        t.mqtt().published();
        let text = t.render();
        for line in [
            "# TYPE mapper_device_reads_total counter",
            "mapper_device_reads_total{device=\"ns/pump\\\"1\"} 2",
            "mapper_device_read_errors_total{device=\"ns/pump\\\"1\",kind=\"timeout\"} 1",
            "mapper_device_read_errors_total{device=\"ns/pump\\\"1\",kind=\"link\"} 0",
            "# TYPE mapper_device_read_duration_seconds histogram",
            "mapper_device_read_duration_seconds_bucket{device=\"ns/pump\\\"1\",le=\"0.001\"} 0",
            "mapper_device_read_duration_seconds_bucket{device=\"ns/pump\\\"1\",le=\"0.005\"} 1",
            "mapper_device_read_duration_seconds_bucket{device=\"ns/pump\\\"1\",le=\"10\"} 1",
            "mapper_device_read_duration_seconds_bucket{device=\"ns/pump\\\"1\",le=\"+Inf\"} 2",
            "mapper_device_read_duration_seconds_count{device=\"ns/pump\\\"1\"} 2",
            "mapper_device_read_duration_seconds_sum{device=\"ns/pump\\\"1\"} 60.003",
            "mapper_device_writes_total{device=\"ns/pump\\\"1\"} 1",
            "mapper_device_write_errors_total{device=\"ns/pump\\\"1\"} 1",
            "mapper_device_pending_writes{device=\"ns/pump\\\"1\"} 2",
            "mapper_device_online{device=\"ns/pump\\\"1\"} 1",
            "mapper_mqtt_connected 1",
            "mapper_mqtt_publishes_total 1",
            "mapper_mqtt_reconnects_total 1",
            "mapper_mqtt_dropped_messages_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.set_state(DeviceState::Offline);
        assert!(
            t.render()
                .contains("mapper_device_online{device=\"ns/pump\\\"1\"} 0")
        );
        t.remove_device(&id("ns/pump\"1"));
        assert!(!t.render().contains("pump"));
    }

    #[test]
    fn readiness_needs_a_profile_and_the_report_path() {
        let t = Telemetry::default();
        let r = t.readiness();
        assert!(!r.ready());
        assert_eq!(r.missing().len(), 2);
        t.set_profile_loaded();
        assert_eq!(
            t.readiness().missing(),
            ["not connected to the MQTT broker"]
        );
        t.mqtt().connected();
        assert!(t.readiness().ready());
        t.set_report_path(ReportPath::Dmi);
        assert_eq!(
            t.readiness().missing(),
            ["not registered with edgecore over DMI"]
        );
        t.set_dmi_registered();
        assert!(t.readiness().ready());
    }
}
