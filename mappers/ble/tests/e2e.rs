//! End to end: the `ble-mapper` binary (btleplug -> bluez-async -> libdbus) against the
//! BLE simulator (a BlueZ stand-in on a private D-Bus) and a real mosquitto, with a peer
//! playing edgecore.
//!
//! libdbus reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, so the mapper runs as a child
//! process with its own environment; the simulator (zbus, pure Rust) runs in the test
//! process on a private bus of its own, one per test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ble_sim::{BleSim, Fault, SimConfig, WriteKind};
use mapper_sdk::testing::{Mosquitto, TwinPeer, wait_until};
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(30);
const SENSOR: &str = "A4:C1:38:1A:49:90";
const LED: &str = "A4:C1:38:00:00:02";
const FLAKY: &str = "A4:C1:38:00:00:03";
const TEMP_DATA: &str = "f000aa01-0451-4000-b000-000000000000";
const TEMP_CONF: &str = "f000aa02-0451-4000-b000-000000000000";
const LED_SWITCH: &str = "0000ff11-0000-1000-8000-00805f9b34fb";

fn lab_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulators/ble-sim/devices/lab.yaml")
}

fn dbus_daemon_available() -> bool {
    let found = [
        "/usr/bin/dbus-daemon",
        "/bin/dbus-daemon",
        "/usr/local/bin/dbus-daemon",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if !found {
        mapper_sdk::testing::missing_tool("dbus-daemon");
    }
    found
}

fn visitor(name: &str, data_type: &str, cycle_ns: i64, config: Json) -> (Json, Json, Json) {
    (
        json!({"name": name, "propertyName": name, "modelName": "m", "protocol": "bluetooth",
               "collectCycle": cycle_ns, "reportCycle": 60_000_000_000i64, "visitorConfig": config}),
        json!({"name": name, "dataType": data_type, "accessMode": "ReadWrite"}),
        json!({"propertyName": name}),
    )
}

fn device(id: &str, mac: &str, common: Json, props: Vec<(Json, Json, Json)>) -> (Json, Json, Json) {
    let model = format!("m-{id}");
    let mut visitors = Vec::new();
    let mut properties = Vec::new();
    let mut twins = Vec::new();
    for (mut v, p, t) in props {
        v["modelName"] = json!(model);
        visitors.push(v);
        properties.push(p);
        twins.push(t);
    }
    (
        json!({"id": id, "name": id, "protocol": format!("bluetooth-{id}"), "model": model,
               "twins": twins, "propertyVisitors": visitors}),
        json!({"name": model, "properties": properties}),
        json!({"name": format!("bluetooth-{id}"), "protocol": "bluetooth",
               "protocolConfig": {"macAddress": mac}, "protocolCommonConfig": common}),
    )
}

/// The lab: the sensor (found by scanning, on hci0 although hci1 is listed first), the LED
/// (adapter named explicitly) and a beacon that refuses every connect.
fn lab_profile() -> String {
    const MS: i64 = 1_000_000;
    let sensor = device(
        "sensortag",
        SENSOR,
        Json::Null,
        vec![
            // Notification only (a negative cycle: never polled).
            visitor(
                "temperature",
                "float",
                -1,
                json!({"characteristicUUID": "f000aa0104514000b000000000000000",
                "dataConverter": {"startIndex": 1, "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.0078125}]}}),
            ),
            // Polled from the same characteristic.
            visitor(
                "ambient",
                "float",
                200 * MS,
                json!({"characteristicUUID": TEMP_DATA, "notify": false,
                "dataConverter": {"startIndex": 3, "endIndex": 2, "orderOfOperations": [{"operationType": "Divide", "operationValue": 128}]}}),
            ),
            visitor(
                "temperature-enable",
                "string",
                200 * MS,
                json!({"characteristicUUID": TEMP_CONF,
                "dataWrite": {"ON": "AQ==", "OFF": [0]}, "dataConverter": {}}),
            ),
            // Bad visitors: each fails alone.
            visitor(
                "missing",
                "int",
                200 * MS,
                json!({"characteristicUUID": "beef"}),
            ),
            visitor(
                "outside",
                "int",
                200 * MS,
                json!({"characteristicUUID": TEMP_DATA,
                "dataConverter": {"startIndex": 6, "endIndex": 7}}),
            ),
        ],
    );
    let led = device(
        "led",
        LED,
        json!({"customizedValues": {"adapter": "hci0"}}),
        vec![visitor(
            "switch",
            "string",
            200 * MS,
            json!({"characteristicUUID": "ff11",
            "dataWrite": {"ON": [1], "OFF": [0]}}),
        )],
    );
    let flaky = device(
        "flaky",
        FLAKY,
        json!({"customizedValues": {"adapter": "hci1", "connectTimeout": 2000}}),
        vec![visitor(
            "battery",
            "int",
            200 * MS,
            json!({"characteristicUUID": "2a19"}),
        )],
    );
    let all = [sensor, led, flaky];
    json!({
        "deviceInstances": all.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        "deviceModels": all.iter().map(|d| d.1.clone()).collect::<Vec<_>>(),
        "protocols": all.iter().map(|d| d.2.clone()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The mapper binary as a child process; stopped with SIGTERM on drop, its log printed
/// when the test fails.
struct MapperProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MapperProcess {
    fn start(broker: &Mosquitto, bus: &str, profile: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile_path = dir.path().join("deviceProfile.json");
        std::fs::write(&profile_path, profile).unwrap();
        let log = dir.path().join("mapper.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ble-mapper"))
            .current_dir(dir.path())
            .arg("--mqtt-server")
            .arg(broker.url())
            .arg("--mqtt-client-id")
            .arg(format!("ble-e2e-{}", std::process::id()))
            .arg("--profile")
            .arg(&profile_path)
            .arg("--log-level")
            .arg("info,ble_mapper=debug")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DEVICE_PROFILE")
            .env_remove("MAPPER_CONFIG_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (with a deadline) for a clean exit.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
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
            eprintln!("----- ble-mapper log -----\n{}", self.log());
        }
    }
}

/// No panic anywhere in the mapper's log: neither in the mapper nor in a dependency's
/// background task (bluez-async's "No match with that id found", issue 13).
fn assert_no_panic(log: &str) {
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panics.is_empty(),
        "no panic in the mapper's log: {panics:?}"
    );
}

/// The LED alone, its switch polled every 200 ms with a 500 ms heartbeat (so a stale
/// value while the link is down would show within the outage).
fn led_profile() -> String {
    const MS: i64 = 1_000_000;
    let (mut v, p, t) = visitor(
        "switch",
        "string",
        200 * MS,
        json!({"characteristicUUID": "ff11", "dataWrite": {"ON": [1], "OFF": [0]}}),
    );
    v["reportCycle"] = json!(500 * MS);
    let led = device("led", LED, Json::Null, vec![(v, p, t)]);
    json!({"deviceInstances": [led.0], "deviceModels": [led.1], "protocols": [led.2]}).to_string()
}

/// The position of the first message on `topic` at or after `from` that `pred` accepts.
fn position_after(
    peer: &TwinPeer,
    from: usize,
    topic: &str,
    pred: impl Fn(&Json) -> bool,
) -> Option<usize> {
    let r = peer.received.lock().unwrap();
    r.iter()
        .enumerate()
        .skip(from)
        .find(|(_, m)| m.topic == topic && pred(&m.payload))
        .map(|(i, _)| i)
}

fn received_len(peer: &TwinPeer) -> usize {
    peer.received.lock().unwrap().len()
}

/// Delays measured over one outage.
#[derive(Debug)]
struct Outage {
    offline: Duration,
    online: Duration,
    fresh: Duration,
    stale: Vec<Json>,
}

/// One outage of the LED: `down` applied and the link dropped, 10 s later `up` applied.
/// Measures the delay from the drop to `offline` and from `up` to `online` and to the
/// first reading of the value set while it was down (`value`, reported as `text`), and
/// collects what was reported for the device between `offline` and `online`.
async fn outage(
    sim: &BleSim,
    peer: &TwinPeer,
    down: Fault,
    up: Fault,
    value: u8,
    text: &str,
) -> Outage {
    const OUTAGE: Duration = Duration::from_secs(10);
    let state_topic = "$hw/events/device/led/state/update";
    let twin_topic = "$hw/events/device/led/twin/update";
    sim.set_fault(LED, down).unwrap();
    let mark = received_len(peer);
    let dropped = Instant::now();
    assert!(sim.drop_link(LED).await.unwrap(), "was connected");
    let is_offline = |m: &Json| m["state"] == "offline";
    assert!(
        peer.wait(WAIT, |p| position_after(p, mark, state_topic, is_offline)
            .is_some())
            .await,
        "offline after the link loss"
    );
    let offline = dropped.elapsed();
    let offline_at = position_after(peer, mark, state_topic, is_offline).unwrap();
    // The value changes while the device is away: what comes after is a fresh reading.
    sim.set_value(LED, LED_SWITCH, &[value]).await.unwrap();
    // The outage lasts until nothing was reported for the device (the heartbeat is
    // 500 ms) for the rest of the 10 s.
    peer.wait(OUTAGE.saturating_sub(dropped.elapsed()), |p| {
        position_after(p, offline_at, twin_topic, |_| true).is_some()
    })
    .await;
    sim.set_fault(LED, up).unwrap();
    let back = Instant::now();
    let is_online = |m: &Json| m["state"] == "online";
    assert!(
        peer.wait(WAIT, |p| position_after(
            p,
            offline_at,
            state_topic,
            is_online
        )
        .is_some())
            .await,
        "online again"
    );
    let online = back.elapsed();
    assert!(
        actual_is(peer, "led", "switch", text).await,
        "fresh reading {text}"
    );
    let fresh = back.elapsed();
    let online_at = position_after(peer, offline_at, state_topic, is_online).unwrap();
    let stale = peer.received.lock().unwrap()[offline_at..online_at]
        .iter()
        .filter(|m| m.topic == twin_topic)
        .map(|m| m.payload.clone())
        .collect();
    Outage {
        offline,
        online,
        fresh,
        stale,
    }
}

/// Issue 13: the link of a peripheral drops and it stays away for 10 s, first out of
/// range (its connects stay pending, as BlueZ's do), then refusing connects (they fail at
/// once). Each time `offline` must be published within 2 s of the drop, nothing may be
/// reported for it while it is down (heartbeats included), and once it is back `online`
/// and a fresh reading (a value set during the outage) follow within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_loss_is_offline_within_2s_and_online_with_a_fresh_reading() {
    const PROMPT: Duration = Duration::from_secs(2);
    if !dbus_daemon_available() {
        return;
    }
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let sim = BleSim::start(SimConfig::load(&lab_file()).unwrap())
        .await
        .unwrap();
    sim.set_value(LED, LED_SWITCH, &[0]).await.unwrap();
    let mapper = MapperProcess::start(&broker, sim.bus_address(), &led_profile());
    assert!(state_is(&peer, "led", "online").await, "led online");
    assert!(actual_is(&peer, "led", "switch", "OFF").await);

    let pending = outage(
        &sim,
        &peer,
        Fault::OutOfRange(true),
        Fault::OutOfRange(false),
        1,
        "ON",
    )
    .await;
    eprintln!("out of range for 10 s: {pending:?}");
    let refused = outage(
        &sim,
        &peer,
        Fault::RefuseConnect(true),
        Fault::RefuseConnect(false),
        0,
        "OFF",
    )
    .await;
    eprintln!("connects refused for 10 s: {refused:?}");

    for (what, o) in [("out of range", &pending), ("connects refused", &refused)] {
        assert!(
            o.offline <= PROMPT,
            "{what}: offline must be published within {PROMPT:?} of the link loss: {o:?}"
        );
        assert!(
            o.stale.is_empty(),
            "{what}: no value may be reported while the link is down: {o:?}"
        );
        assert!(
            o.online <= PROMPT && o.fresh <= PROMPT,
            "{what}: online and a fresh reading within {PROMPT:?} of the device coming back: {o:?}"
        );
    }
    assert_no_panic(&mapper.log());
    drop(mapper);
    sim.shutdown().await;
}

/// Issue 13: connect/disconnect cycles print no panic (bluez-async 0.9.0 unwraps a failed
/// match-rule removal in a background task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_print_no_panic() {
    const CYCLES: usize = 8;
    if !dbus_daemon_available() {
        return;
    }
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let sim = BleSim::start(SimConfig::load(&lab_file()).unwrap())
        .await
        .unwrap();
    let mapper = MapperProcess::start(&broker, sim.bus_address(), &led_profile());
    let state_topic = "$hw/events/device/led/state/update";
    assert!(state_is(&peer, "led", "online").await, "led online");
    for cycle in 1..=CYCLES {
        let mark = received_len(&peer);
        assert!(
            wait_until(WAIT, || sim.is_connected(LED).unwrap()).await,
            "cycle {cycle}: connected"
        );
        assert!(sim.drop_link(LED).await.unwrap(), "cycle {cycle}: dropped");
        let offline = |m: &Json| m["state"] == "offline";
        assert!(
            peer.wait(WAIT, |p| position_after(p, mark, state_topic, offline)
                .is_some())
                .await,
            "cycle {cycle}: offline"
        );
        let at = position_after(&peer, mark, state_topic, offline).unwrap();
        assert!(
            peer.wait(WAIT, |p| position_after(p, at, state_topic, |m| m["state"]
                == "online")
            .is_some())
                .await,
            "cycle {cycle}: online again"
        );
    }
    assert_eq!(sim.connect_count(LED).unwrap(), 1 + CYCLES as u64);
    let mut mapper = mapper;
    let status = mapper.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_no_panic(&mapper.log());
    sim.shutdown().await;
}

async fn state_is(peer: &TwinPeer, device: &str, state: &str) -> bool {
    peer.wait(WAIT, |p| p.last_state(device).as_deref() == Some(state))
        .await
}

async fn actual_is(peer: &TwinPeer, device: &str, property: &str, value: &str) -> bool {
    peer.wait(WAIT, |p| {
        p.last_actual(device, property).as_deref() == Some(value)
    })
    .await
}

fn ever_reported(peer: &TwinPeer, device: &str, property: &str) -> bool {
    peer.on_topic(&format!("$hw/events/device/{device}/twin/update"))
        .iter()
        .any(|m| m["twin"].get(property).is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_reads_notifies_writes_and_recovers_a_dropped_link() {
    if !dbus_daemon_available() {
        return;
    }
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let sim = BleSim::start(SimConfig::load(&lab_file()).unwrap())
        .await
        .unwrap();
    // Object 25.5 °C (3264 = 0x0CC0), ambient 21 °C (2688 = 0x0A80), little-endian; pinned
    // against the simulator's dynamics. The sensor measures once enabled.
    sim.set_value(SENSOR, TEMP_DATA, &[0xC0, 0x0C, 0x80, 0x0A])
        .await
        .unwrap();
    let mut mapper = MapperProcess::start(&broker, sim.bus_address(), &lab_profile());

    // Connected (the sensor only after a scan), the beacon that refuses connects is offline
    // without disturbing the others.
    assert!(
        state_is(&peer, "sensortag", "online").await,
        "sensor online"
    );
    assert!(state_is(&peer, "led", "online").await, "led online");
    assert!(state_is(&peer, "flaky", "offline").await, "beacon offline");
    assert!(
        sim.is_notifying(SENSOR, TEMP_DATA).unwrap(),
        "subscribed (notify: auto)"
    );

    // Disabled: configuration reads back through dataWrite, data reads as zeros.
    assert!(actual_is(&peer, "sensortag", "temperature-enable", "OFF").await);
    assert!(actual_is(&peer, "sensortag", "ambient", "0").await);

    // A desired value goes through dataWrite, lands as a write request, reads back.
    assert!(peer.wait_subscribed("sensortag", WAIT).await);
    peer.send_delta("sensortag", &[("temperature-enable", "ON")])
        .await;
    assert!(
        wait_until(WAIT, || sim.writes(SENSOR, TEMP_CONF).unwrap()
            == vec![vec![1]])
        .await,
        "write landed: {:?}",
        sim.write_records(SENSOR, TEMP_CONF)
    );
    assert_eq!(
        sim.write_records(SENSOR, TEMP_CONF).unwrap()[0].kind,
        WriteKind::Request
    );
    assert!(actual_is(&peer, "sensortag", "temperature-enable", "ON").await);

    // Exact conversion of the polled value (bytes 3, 2 / 128).
    assert!(actual_is(&peer, "sensortag", "ambient", "21").await);

    // The notification-only property is reported from notifications.
    sim.set_value(SENSOR, TEMP_DATA, &[0xC0, 0x0C, 0x80, 0x0A])
        .await
        .unwrap();
    assert!(actual_is(&peer, "sensortag", "temperature", "25.5").await);
    sim.set_value(SENSOR, TEMP_DATA, &[0x00, 0x0D, 0x80, 0x0A])
        .await
        .unwrap();
    assert!(actual_is(&peer, "sensortag", "temperature", "26").await);

    // The LED, on an adapter named in the profile.
    assert!(peer.wait_subscribed("led", WAIT).await);
    peer.send_delta("led", &[("switch", "ON")]).await;
    assert!(
        wait_until(WAIT, || sim.writes(LED, LED_SWITCH).unwrap()
            == vec![vec![1]])
        .await
    );
    assert!(actual_is(&peer, "led", "switch", "ON").await);

    // Bad visitors fail alone: never reported, logged with the reason, device online.
    assert!(!ever_reported(&peer, "sensortag", "missing"));
    assert!(!ever_reported(&peer, "sensortag", "outside"));
    assert_eq!(peer.last_state("sensortag").as_deref(), Some("online"));

    // Link loss with connects refused: offline; connects allowed again: reconnected,
    // re-subscribed, online, notifications flow again.
    sim.set_fault(SENSOR, Fault::RefuseConnect(true)).unwrap();
    assert!(sim.drop_link(SENSOR).await.unwrap());
    assert!(
        state_is(&peer, "sensortag", "offline").await,
        "offline after link loss"
    );
    assert_eq!(peer.last_state("led").as_deref(), Some("online"));
    sim.set_fault(SENSOR, Fault::RefuseConnect(false)).unwrap();
    assert!(state_is(&peer, "sensortag", "online").await, "online again");
    assert!(
        wait_until(WAIT, || sim.is_notifying(SENSOR, TEMP_DATA).unwrap()).await,
        "re-subscribed after reconnect"
    );
    assert_eq!(sim.connect_count(SENSOR).unwrap(), 2);
    sim.set_value(SENSOR, TEMP_DATA, &[0x40, 0x0D, 0x80, 0x0A])
        .await
        .unwrap();
    assert!(actual_is(&peer, "sensortag", "temperature", "26.5").await);

    let log = mapper.log();
    assert!(
        log.contains("characteristic 0000beef-0000-1000-8000-00805f9b34fb not found"),
        "the missing characteristic is logged"
    );
    assert!(
        log.contains("the byte range 6..=7 is outside the 4-byte value"),
        "the bad range is logged"
    );
    assert_no_panic(&log);
    if std::env::var_os("BLE_E2E_PRINT_LOG").is_some() {
        eprintln!("{log}");
    }

    // Graceful stop: devices reported offline.
    let status = mapper.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(state_is(&peer, "led", "offline").await);
    sim.shutdown().await;
}
