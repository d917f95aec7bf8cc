//! What the bus and the driver log when a device goes down: the real cause (never a
//! placeholder), a reconnect backoff that grows, and "no device uses it any more" only
//! when that is true. Logs are captured with a thread-local `tracing` subscriber, so every
//! test runs on a current-thread runtime.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mapper_sdk::config::ProfileSetting;
use mapper_sdk::driver::{Device, Driver, DriverError};
use mapper_sdk::model::{DataType, Value};
use mapper_sdk::testing::{InProcessMapper, Mosquitto, test_settings, wait_until};
use modbus_mapper::ModbusDriver;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::subscriber::DefaultGuard;

const WAIT: Duration = Duration::from_secs(20);

/// Everything logged on this thread at debug level and above, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Self, DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

const NO_DEVICE: &str = "bus task stopped: no device uses it any more";
const RECONNECTING: &str = "bus task stopped: its devices dropped the link to reconnect";
const CONNECT_FAILED: &str = "bus task stopped: the connect that started it failed";

fn one_prop() -> Vec<mapper_sdk::profile::PropertyDef> {
    vec![prop(
        "v",
        DataType::Int,
        json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
    )]
}

#[tokio::test]
async fn the_bus_says_no_device_uses_it_only_when_its_devices_were_closed() {
    let (logs, _guard) = Logs::capture();
    let sim = Sim::with_units(&[1]);
    sim.mem(1, |m| m.holding[0] = 7);
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let s = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), one_prop());

    // Dropped without close: what the SDK does when the link is lost, to reconnect.
    let mut d = driver.connect(&s).await.unwrap();
    assert_eq!(d.read(&s.properties[0]).await.unwrap(), Value::Int(7));
    drop(d);
    assert!(wait_until(WAIT, || logs.count(RECONNECTING) == 1).await);
    assert_eq!(logs.count(NO_DEVICE), 0, "{}", logs.text());

    // A connect that fails never had a device on the bus.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let s_dead = spec(
        &driver,
        "dead",
        tcp_protocol(dead_addr, 1, json!({})),
        one_prop(),
    );
    let e = driver.connect(&s_dead).await.unwrap_err();
    assert!(matches!(e, DriverError::Link(_)), "{e}");
    assert!(wait_until(WAIT, || logs.count(CONNECT_FAILED) == 1).await);
    assert_eq!(logs.count(NO_DEVICE), 0, "{}", logs.text());

    // Closed (the device was removed): now it is true.
    let mut d = driver.connect(&s).await.unwrap();
    assert_eq!(d.read(&s.properties[0]).await.unwrap(), Value::Int(7));
    d.close().await;
    drop(d);
    assert!(wait_until(WAIT, || logs.count(NO_DEVICE) == 1).await);
    assert_eq!(driver.live_buses(), 0);
}

/// A TCP endpoint that accepts connections and closes them at once: the driver
/// "connects" and every request fails with a link error. Returns the address and the
/// accept times.
async fn slamming_endpoint() -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(Mutex::new(Vec::new()));
    let seen = accepts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.lock().unwrap().push(Instant::now());
            drop(stream);
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn a_batch_cut_short_by_a_lost_link_reports_the_real_error_for_every_request() {
    let (addr, accepts) = slamming_endpoint().await;
    let driver = ModbusDriver::new();
    let props = vec![
        prop(
            "a",
            DataType::Int,
            json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
        ),
        prop(
            "b",
            DataType::Int,
            json!({"register": "InputRegister", "offset": 0, "limit": 1}),
        ),
        prop(
            "c",
            DataType::Boolean,
            json!({"register": "CoilRegister", "offset": 0, "limit": 1}),
        ),
    ];
    let s = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), props);
    let mut d = driver.connect(&s).await.unwrap();
    assert!(wait_until(WAIT, || !accepts.lock().unwrap().is_empty()).await);
    let batch: Vec<_> = s.properties.iter().collect();
    let got = d.read_many(&batch).await;
    assert_eq!(got.len(), 3);
    let first = got[0].clone().unwrap_err();
    assert!(matches!(first, DriverError::Link(_)), "{first}");
    for r in &got {
        assert_eq!(r.as_ref().unwrap_err(), &first, "{got:?}");
    }
    assert!(
        !first.to_string().contains("earlier in this batch"),
        "{first}"
    );
}

fn thermostat_profile(port: u16) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-models/thermostat/profile.json");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("\"port\": 1502", &format!("\"port\": {port}"))
        .replace(
            "\"collectCycle\": 1000000000",
            "\"collectCycle\": 100000000",
        );
    assert!(text.contains(&format!("\"port\": {port}")));
    text
}

/// In the SDK runtime, against an endpoint that accepts and drops every connection: the
/// reconnect delay grows, the log names the real error, and the bus never claims that
/// no device uses it.
#[tokio::test]
async fn a_device_whose_link_keeps_dropping_backs_off_and_logs_the_real_error() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (logs, _guard) = Logs::capture();
    let (addr, accepts) = slamming_endpoint().await;
    let mut settings = test_settings(
        &broker,
        "modbus-test-logs",
        ProfileSetting::Inline(thermostat_profile(addr.port())),
    );
    settings.runtime.reconnect_min = Duration::from_millis(50);
    settings.runtime.reconnect_max = Duration::from_secs(5);
    let mapper = InProcessMapper::start(ModbusDriver::new(), settings);
    assert!(wait_until(WAIT, || accepts.lock().unwrap().len() >= 6).await);
    let times = accepts.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("gaps between connections: {gaps:?}");
    let text = logs.text();
    mapper.stop().await;

    // 50, 100, 200, 400, 800 ms nominal, each jittered by up to 25%.
    assert!(gaps[4] > gaps[0] * 3, "the backoff does not grow: {gaps:?}");
    assert!(text.contains("link lost; reconnecting"), "{text}");
    assert!(!text.contains("earlier in this batch"), "{text}");
    assert!(text.contains(RECONNECTING), "{text}");
    assert!(!text.contains(NO_DEVICE), "{text}");
}
