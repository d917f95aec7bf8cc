//! The binary's control endpoint, driven the way a CI script would: start
//! `ble-sim --control 127.0.0.1:0`, change a peripheral's faults with
//! `ble-sim fault`, and watch btleplug (in a child process, see
//! `common::run_in_child`) see them and the peripheral come back.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use btleplug::api::{
    Central, CentralEvent, Peripheral as _, ScanFilter, ValueNotification, WriteType,
};
use btleplug::platform::{Manager, Peripheral};
use common::central::*;
use common::*;
use futures::StreamExt;
use tokio::time::timeout;

/// Tells the child scenario where the control endpoint is.
const CONTROL_ENV: &str = "BLE_SIM_TEST_CONTROL";

/// The `ble-sim` binary serving the lab file, with its printed lines.
struct SimProcess {
    child: Child,
    control: String,
}

impl SimProcess {
    fn start(socket: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ble-sim"))
            .arg("--devices")
            .arg(lab_file())
            .arg("--socket")
            .arg(socket)
            .args(["--control", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        let control = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no control= line within 30 s: {lines:?}"));
            if let Some(c) = line.strip_prefix("control=") {
                break c.to_owned();
            }
            lines.push(line);
        };
        assert!(
            lines[0].starts_with("DBUS_SYSTEM_BUS_ADDRESS=unix:path="),
            "{lines:?}"
        );
        Self { child, control }
    }

    /// End of stdin stops it; waits with a deadline.
    fn stop(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "ble-sim did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // a failing test: SIGTERM (never SIGKILL: its dbus-daemon would survive)
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.child.wait();
        }
    }
}

#[test]
fn cli_faults_are_seen_by_btleplug_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let sim = SimProcess::start(&socket);
    run_in_child_with(
        "scenario_cli_faults",
        Duration::from_secs(180),
        &socket,
        &[(CONTROL_ENV, &sim.control)],
    );
    let st = sim.stop();
    assert!(st.success(), "{st}");
}

/// Runs `ble-sim fault --control ADDR --device MAC ARGS...`; its stdout as JSON.
fn fault(control: &str, device: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ble-sim"))
        .args(["fault", "--control", control, "--device", device])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ble-sim fault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether a notification of `uuid` arrives within `wait`.
async fn notified_within(
    stream: &mut Events<ValueNotification>,
    uuid: &str,
    wait: Duration,
) -> bool {
    timeout(wait, async {
        while let Some(n) = stream.next().await {
            if n.uuid.to_string() == uuid {
                return;
            }
        }
        std::future::pending::<()>().await;
    })
    .await
    .is_ok()
}

async fn connect(p: &Peripheral) {
    timeout(STEP, p.connect()).await.unwrap().unwrap();
    timeout(STEP, p.discover_services()).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by cli_faults_are_seen_by_btleplug_and_cleared"]
async fn scenario_cli_faults() {
    let Some(control) = std::env::var(CONTROL_ENV).ok() else {
        eprintln!("skipped: this scenario runs in a child process started by its wrapper test");
        return;
    };
    timeout(Duration::from_secs(150), cli_faults(&control))
        .await
        .expect("scenario exceeded its deadline");
}

async fn cli_faults(control: &str) {
    let manager = Manager::new().await.unwrap();
    let hci0 = adapter_named(&manager, "hci0").await;
    let mut events = hci0.events().await.unwrap();
    hci0.start_scan(ScanFilter::default()).await.unwrap();
    let sensor = timeout(STEP, async {
        loop {
            if let Some(p) = peripheral_by_mac(&hci0, SENSOR).await {
                return p;
            }
            let _ = events.next().await;
        }
    })
    .await
    .expect("sensor not discovered");
    hci0.stop_scan().await.unwrap();
    connect(&sensor).await;
    let conf = characteristic(&sensor, TEMP_CONF);
    let temp = characteristic(&sensor, TEMP_DATA);
    sensor
        .write(&conf, &[1], WriteType::WithResponse)
        .await
        .unwrap();
    let mut notes = sensor.notifications().await.unwrap();
    sensor.subscribe(&temp).await.unwrap();
    assert!(
        notified_within(&mut notes, TEMP_DATA, STEP).await,
        "no notification before the fault"
    );

    // stop notifying: nothing for many ticks (the lab file ticks every 100 ms)
    let v = fault(control, SENSOR, &["mute-notifications"]);
    assert_eq!(v["faults"]["mute_notifications"], true, "{v}");
    // signals sent before the change may still be on their way
    while notified_within(&mut notes, TEMP_DATA, Duration::from_millis(300)).await {}
    assert!(
        !notified_within(&mut notes, TEMP_DATA, Duration::from_millis(1500)).await,
        "notifications kept coming while muted"
    );

    // refuse reads, on top
    fault(control, SENSOR, &["refuse-reads"]);
    let e = sensor.read(&conf).await;
    assert!(e.is_err(), "read succeeded while refused: {e:?}");
    let shown = fault(control, SENSOR, &["show"]);
    assert_eq!(shown["devices"][SENSOR]["read_error"], "failed", "{shown}");
    assert_eq!(
        shown["devices"][SENSOR]["mute_notifications"], true,
        "{shown}"
    );

    // come back: reads and notifications again
    fault(control, SENSOR, &["clear"]);
    assert_eq!(sensor.read(&conf).await.unwrap(), vec![1]);
    assert!(
        notified_within(&mut notes, TEMP_DATA, STEP).await,
        "notifications did not resume"
    );

    // out of range: refuse connects, drop the link; btleplug sees the disconnect
    fault(control, SENSOR, &["refuse-connect"]);
    let v = fault(control, SENSOR, &["drop-link"]);
    assert_eq!(v["was_connected"], true, "{v}");
    let id = sensor.id();
    timeout(STEP, async {
        loop {
            match events.next().await {
                Some(CentralEvent::DeviceDisconnected(d)) if d == id => return,
                Some(_) => {}
                None => panic!("central event stream ended"),
            }
        }
    })
    .await
    .expect("no DeviceDisconnected event after drop-link");
    assert!(!sensor.is_connected().await.unwrap());
    let e = timeout(STEP, sensor.connect()).await.unwrap();
    assert!(e.is_err(), "connect succeeded while refused");

    // and back in range
    fault(control, SENSOR, &["clear"]);
    connect(&sensor).await;
    let conf = characteristic(&sensor, TEMP_CONF);
    assert_eq!(sensor.read(&conf).await.unwrap(), vec![1]);
    sensor.disconnect().await.unwrap();
}

/// Sends raw bytes to the control port and returns the whole answer.
fn raw(control: &str, request: &str) -> String {
    let mut s = TcpStream::connect(control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    answer
}

#[test]
fn hostile_control_requests_get_400_and_the_simulator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimProcess::start(&dir.path().join("bus.sock"));
    for (body, status, needle) in [
        ("{\"device\": ", "400", "POST /faults"),
        (
            "device: A4:C1:38:00:00:02\nfaults: { read_error: sometimes }",
            "400",
            "POST /faults",
        ),
        (
            "{\"faults\": {\"refuse_connect\": true}}",
            "400",
            "several devices",
        ),
        ("{\"device\": \"nope\"}", "400", "nope"),
        (
            "{\"device\": \"A4:C1:38:00:00:09\"}",
            "404",
            "no simulated device",
        ),
        (
            "{\"device\": \"A4:C1:38:00:00:02\", \"faults\": {\"characteristics\": {\"ffff\": {}}}}",
            "404",
            "no characteristic",
        ),
    ] {
        let req = format!(
            "POST /faults HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = raw(&sim.control, &req);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{body}: {answer}"
        );
        assert!(answer.contains(needle), "{body}: {answer}");
    }
    let answer = raw(
        &sim.control,
        "GET /faults HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"refuse_connect\": true"),
        "the file's fault of the flaky beacon: {answer}"
    );
    let st = sim.stop();
    assert!(st.success(), "{st}");
}
