//! End to end: `modbus-mapper`'s driver in the SDK runtime, a real mosquitto, a peer
//! playing edgecore, and the device played by `modbus-sim` or by pymodbus.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mapper_sdk::config::ProfileSetting;
use mapper_sdk::profile::ResolveOptions;
use mapper_sdk::testing::{
    InProcessMapper, Mosquitto, TwinPeer, free_port, test_settings, wait_until,
};
use modbus_mapper::ModbusDriver;
use modbus_sim::{Fault, MapFile, RtuOptions, Simulator};
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(20);

/// What the thermostat reports first, whoever plays it (modbus-sim with its temperature set
/// to -12.3, or tests/pymodbus_server.py).
const THERMOSTAT_AT_START: &[(&str, &str)] = &[
    ("temperature", "-12.3"),
    ("humidity", "45"),
    ("setpoint", "20"),
    ("mode", "1"),
    ("heating", "true"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// A device-model simulator map with static values (no dynamics ticks during the test).
fn sim_for(model: &str) -> Simulator {
    let yaml = read(&format!("device-models/{model}/sim.yaml"))
        .replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, model).unwrap();
    Simulator::from_map(&map.endpoints[0].device)
}

/// A device-model profile with faster cycles and the given replacements applied.
fn profile_for(model: &str, replace: &[(&str, String)]) -> Json {
    let mut text = read(&format!("device-models/{model}/profile.json"))
        .replace(
            "\"collectCycle\": 1000000000",
            "\"collectCycle\": 200000000",
        )
        .replace("\"collectCycle\":2000000000", "\"collectCycle\":300000000");
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

fn merge(profiles: &[Json]) -> String {
    let mut out = serde_json::json!({"deviceInstances": [], "deviceModels": [], "protocols": []});
    for p in profiles {
        for key in ["deviceInstances", "deviceModels", "protocols"] {
            out[key]
                .as_array_mut()
                .unwrap()
                .extend(p[key].as_array().unwrap().iter().cloned());
        }
    }
    out.to_string()
}

struct Mapper;

impl Mapper {
    fn start(broker: &Mosquitto, profile: String, name: &str) -> InProcessMapper {
        let settings = test_settings(
            broker,
            &format!("modbus-test-{name}"),
            ProfileSetting::Inline(profile),
        );
        InProcessMapper::start(ModbusDriver::new(), settings)
    }
}

async fn expect(peer: &TwinPeer, device: &str, values: &[(&str, &str)]) {
    for (prop, want) in values {
        let ok = peer
            .wait(WAIT, |p| {
                p.last_actual(device, prop).as_deref() == Some(*want)
            })
            .await;
        assert!(
            ok,
            "{device}.{prop}: want {want:?}, last reported {:?}",
            peer.last_actual(device, prop)
        );
    }
}

/// Every value ever reported for a property of a device.
fn all_reported(peer: &TwinPeer, device: &str, prop: &str) -> Vec<String> {
    peer.on_topic(&format!("$hw/events/device/{device}/twin/update"))
        .iter()
        .filter_map(|m| {
            m["twin"][prop]["actual"]["value"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_devices_report_exactly_and_deltas_land_in_the_registers() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let thermo = sim_for("thermostat");
    let meter = sim_for("energy-meter");
    thermo.write_value(1, "temperature", -12.3).unwrap();
    meter.write_value(1, "power", -1208.0).unwrap();
    let tp = thermo.serve_tcp("127.0.0.1:0").await.unwrap().port();
    let mp = meter.serve_tcp("127.0.0.1:0").await.unwrap().port();
    let profile = merge(&[
        profile_for(
            "thermostat",
            &[("\"port\": 1502", format!("\"port\": {tp}"))],
        ),
        profile_for(
            "energy-meter",
            &[("\"port\": 1503", format!("\"port\": {mp}"))],
        ),
    ]);
    let mapper = Mapper::start(&broker, profile, "tcp");

    // Every table and type exactly as the simulator holds it.
    expect(&peer, "thermostat", THERMOSTAT_AT_START).await;
    expect(
        &peer,
        "energy-meter",
        &[
            ("voltage", "230.1"),
            ("current", "5.25"),
            ("power", "-1208"),
            ("energy", "12345.67"),
            ("frequency", "50"),
        ],
    )
    .await;
    assert!(
        peer.wait(WAIT, |p| !p
            .on_topic("$ke/events/device/energy-meter/data/update")
            .is_empty())
            .await
    );
    let data = &peer.on_topic("$ke/events/device/energy-meter/data/update")[0];
    assert_eq!(data["data"]["power"]["value"], "-1208");
    assert_eq!(peer.last_state("thermostat").as_deref(), Some("online"));

    // Deltas of every writable type land in the right registers and are reported back.
    assert!(peer.wait_subscribed("thermostat", WAIT).await);
    peer.send_delta(
        "thermostat",
        &[("setpoint", "23.5"), ("mode", "3"), ("heating", "false")],
    )
    .await;
    assert!(
        wait_until(WAIT, || thermo.read_holding(1, 10).unwrap() == 235).await,
        "setpoint x 10 in holding 10"
    );
    assert!(
        wait_until(WAIT, || thermo.read_holding(1, 11).unwrap() == 3).await,
        "mode in holding 11"
    );
    assert!(
        wait_until(WAIT, || !thermo.read_coil(1, 0).unwrap()).await,
        "heating coil 0"
    );
    expect(
        &peer,
        "thermostat",
        &[("setpoint", "23.5"), ("mode", "3"), ("heating", "false")],
    )
    .await;
    peer.send_delta("thermostat", &[("setpoint", "5.5")]).await;
    assert!(wait_until(WAIT, || thermo.read_holding(1, 10).unwrap() == 55).await);

    // Out of the model's range, not representable, or read-only: nothing is written.
    let writes_before = thermo.stats().snapshot().registers_written;
    peer.send_delta("thermostat", &[("setpoint", "99"), ("temperature", "30")])
        .await;
    peer.send_delta("thermostat", &[("setpoint", "21.55")])
        .await;
    peer.send_delta("thermostat", &[("mode", "2")]).await;
    assert!(wait_until(WAIT, || thermo.read_holding(1, 11).unwrap() == 2).await);
    assert_eq!(
        thermo.read_holding(1, 10).unwrap(),
        55,
        "refused setpoints never reach the device"
    );
    assert_eq!(
        thermo.stats().snapshot().registers_written,
        writes_before + 1,
        "only the mode was written"
    );
    mapper.stop().await;
    assert!(
        peer.wait(WAIT, |p| p.last_state("thermostat").as_deref()
            == Some("offline"))
            .await
    );
}

/// Runs the energy meter until `n` requests were served; returns registers per request.
async fn registers_per_request(broker: &Mosquitto, single: bool) -> (u64, u64) {
    let meter = sim_for("energy-meter");
    let port = meter.serve_tcp("127.0.0.1:0").await.unwrap().port();
    let mut common = format!("\"tcp\": {{\"ip\": \"127.0.0.1\", \"port\": {port}}}");
    if single {
        common.push_str(", \"customizedValues\": {\"singleRequestPerProperty\": true}");
    }
    let profile = profile_for(
        "energy-meter",
        &[("\"tcp\": {\"ip\": \"127.0.0.1\", \"port\": 1503}", common)],
    );
    let mapper = Mapper::start(
        broker,
        merge(&[profile]),
        if single { "single" } else { "merged" },
    );
    let stats = meter.stats();
    assert!(wait_until(WAIT, || stats.snapshot().requests >= 25).await);
    mapper.stop().await;
    let s = stats.snapshot();
    (s.requests, s.registers_read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_reads_the_energy_meter_in_one_request_per_cycle() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    // Five properties over input registers 0..=8: one FC4 of 9 registers per cycle
    // merged, five requests (2+2+2+2+1 registers) per cycle without merging.
    let (merged_req, merged_regs) = registers_per_request(&broker, false).await;
    let (single_req, single_regs) = registers_per_request(&broker, true).await;
    println!(
        "merged: {merged_req} requests / {merged_regs} registers; single: {single_req} / {single_regs}"
    );
    assert_eq!(
        merged_regs,
        merged_req * 9,
        "every merged request reads all 9 registers"
    );
    // The opt-out reads 9 registers in 5 requests per cycle (a run may stop mid-cycle).
    let cycles = single_regs as f64 / 9.0;
    assert!(
        (single_req as f64 / cycles - 5.0).abs() < 0.5,
        "{single_req} requests for {cycles} cycles"
    );
}

/// A serial line made of a socat pty pair: the simulator serves one end, the mapper
/// opens the other (exclusively, as on real hardware).
struct Line {
    _socat: Proc,
    _dir: tempfile::TempDir,
    mapper_end: PathBuf,
}

async fn socat_line() -> Option<Line> {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("device"), dir.path().join("mapper"));
    let socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(socat) = socat else {
        mapper_sdk::testing::missing_tool("socat");
        return None;
    };
    let socat = Proc(socat);
    assert!(wait_until(WAIT, || a.exists() && b.exists()).await);
    Some(Line {
        _socat: socat,
        _dir: dir,
        mapper_end: b,
    })
}

impl Line {
    fn device_end(&self) -> PathBuf {
        self.mapper_end.with_file_name("device")
    }
}

async fn rtu_sim(wire_time: bool) -> Option<(Simulator, Line)> {
    let line = socat_line().await?;
    let yaml =
        read("device-models/rs485-line/sim.yaml").replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, "rs485-line").unwrap();
    let sim = Simulator::from_map(&map.endpoints[0].device);
    sim.serve_rtu_path(
        &line.device_end(),
        9600,
        RtuOptions {
            wire_time_baud: wire_time.then_some(9600),
        },
    )
    .unwrap();
    Some((sim, line))
}

fn rtu_profile(path: &Path) -> String {
    merge(&[profile_for(
        "rs485-line",
        &[("/dev/ttyUSB0", path.display().to_string())],
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_line_serves_three_units_and_a_silent_one_does_not_starve_the_others() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let Some((sim, line)) = rtu_sim(true).await else {
        return;
    };
    let mapper = Mapper::start(&broker, rtu_profile(&line.mapper_end), "rtu");
    // Each unit answers with its own id (mappers-go polled all with the first one).
    expect(
        &peer,
        "line-sensor-1",
        &[("temperature", "21.5"), ("humidity", "45")],
    )
    .await;
    expect(
        &peer,
        "line-sensor-2",
        &[("temperature", "22.5"), ("humidity", "50")],
    )
    .await;
    expect(
        &peer,
        "line-sensor-3",
        &[("temperature", "23.5"), ("humidity", "55")],
    )
    .await;
    for unit in 1..=3u8 {
        assert!(
            sim.stats().snapshot().units[&unit].requests > 0,
            "unit {unit} polled"
        );
    }

    sim.set_fault(2, Fault::Silent).unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("line-sensor-2").as_deref()
            == Some("offline"))
            .await
    );
    // The healthy units keep their schedule: fresh values still arrive.
    sim.write_value(1, "temperature", -3.2).unwrap();
    sim.write_value(3, "temperature", 30.1).unwrap();
    expect(&peer, "line-sensor-1", &[("temperature", "-3.2")]).await;
    expect(&peer, "line-sensor-3", &[("temperature", "30.1")]).await;
    assert_eq!(peer.last_state("line-sensor-1").as_deref(), Some("online"));

    sim.clear_faults(2).unwrap();
    sim.write_value(2, "humidity", 61.0).unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("line-sensor-2").as_deref()
            == Some("online"))
            .await
    );
    expect(&peer, "line-sensor-2", &[("humidity", "61")]).await;

    // A write on the shared line reaches the right unit.
    assert!(peer.wait_subscribed("line-sensor-3", WAIT).await);
    peer.send_delta("line-sensor-3", &[("alarm-threshold", "41.5")])
        .await;
    assert!(wait_until(WAIT, || sim.read_holding(3, 0).unwrap() == 415).await);
    assert_eq!(sim.read_holding(1, 0).unwrap(), 300);
    assert_eq!(sim.read_holding(2, 0).unwrap(), 300);
    mapper.stop().await;
    drop(line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_replies_and_crc_errors_never_produce_a_wrong_value() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let Some((sim, line)) = rtu_sim(false).await else {
        return;
    };
    for (unit, t, h) in [(1u8, 11.1, 11.0), (2, 22.2, 22.0), (3, 33.3, 33.0)] {
        sim.write_value(unit, "temperature", t).unwrap();
        sim.write_value(unit, "humidity", h).unwrap();
    }
    // Unit 1 corrupts every other CRC; unit 3 answers every other request after the
    // mapper's 500 ms timeout, when the line already carries the next request.
    sim.set_fault(1, Fault::CorruptCrc { every: 2 }).unwrap();
    sim.set_fault(
        3,
        Fault::Late {
            delay: Duration::from_millis(700),
            every: 2,
        },
    )
    .unwrap();
    let mapper = Mapper::start(&broker, rtu_profile(&line.mapper_end), "faults");
    let enough = |p: &TwinPeer| {
        (1..=3).all(|u| !all_reported(p, &format!("line-sensor-{u}"), "temperature").is_empty())
            && p.on_topic("$hw/events/device/line-sensor-3/twin/update")
                .len()
                >= 2
    };
    assert!(peer.wait(Duration::from_secs(30), enough).await);
    // Let the faults hit a good number of transactions.
    let stats = sim.stats();
    let start = stats.snapshot().requests;
    assert!(
        wait_until(Duration::from_secs(30), || stats.snapshot().requests
            >= start + 40)
        .await
    );
    mapper.stop().await;
    for (unit, t, h) in [(1, "11.1", "11"), (2, "22.2", "22"), (3, "33.3", "33")] {
        let dev = format!("line-sensor-{unit}");
        for v in all_reported(&peer, &dev, "temperature") {
            assert_eq!(v, t, "{dev} temperature");
        }
        for v in all_reported(&peer, &dev, "humidity") {
            assert_eq!(v, h, "{dev} humidity");
        }
    }
    drop(line);
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("PYMODBUS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pytools/bin/python"));
    if p.exists() {
        return Some(p);
    }
    mapper_sdk::testing::missing_tool("pymodbus (target/pytools)");
    None
}

fn pymodbus(args: &[&str]) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pymodbus_server.py");
    Proc(
        Command::new(python().unwrap())
            .arg(script)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interoperates_with_a_pymodbus_server_over_tcp() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    if python().is_none() {
        return;
    }
    let peer = TwinPeer::connect(broker.port).await;
    let port = free_port();
    let _server = pymodbus(&["--tcp", &port.to_string()]);
    assert!(
        wait_until(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await
    );
    let profile = merge(&[profile_for(
        "thermostat",
        &[("\"port\": 1502", format!("\"port\": {port}"))],
    )]);
    let mapper = Mapper::start(&broker, profile, "pymodbus-tcp");
    expect(&peer, "thermostat", THERMOSTAT_AT_START).await;
    assert!(peer.wait_subscribed("thermostat", WAIT).await);
    peer.send_delta("thermostat", &[("setpoint", "23.5"), ("heating", "false")])
        .await;
    expect(
        &peer,
        "thermostat",
        &[("setpoint", "23.5"), ("heating", "false")],
    )
    .await;
    mapper.stop().await;
    // A third implementation (libmodbus, through mbpoll) confirms the register.
    if let Ok(out) = Command::new("mbpoll")
        .args([
            "-m",
            "tcp",
            "-p",
            &port.to_string(),
            "-a",
            "1",
            "-r",
            "10",
            "-c",
            "1",
            "-t",
            "4",
            "-0",
            "-1",
            "127.0.0.1",
        ])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[10]: \t235"), "{text}");
    } else {
        mapper_sdk::testing::missing_tool("mbpoll");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interoperates_with_a_pymodbus_server_over_rtu() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    if python().is_none() {
        return;
    }
    let Some(line) = socat_line().await else {
        return;
    };
    let (a, b) = (line.device_end(), line.mapper_end.clone());
    let peer = TwinPeer::connect(broker.port).await;
    let _server = pymodbus(&["--serial", a.to_str().unwrap(), "--baud", "9600"]);
    // The thermostat profile, moved onto the serial line.
    let profile = profile_for(
        "thermostat",
        &[(
            "\"tcp\": {\"ip\": \"127.0.0.1\", \"port\": 1502}",
            format!(
                "\"com\": {{\"serialPort\": \"{}\", \"baudRate\": 9600, \"dataBits\": 8, \"parity\": \"none\", \"stopBits\": 1}}",
                b.display()
            ),
        )],
    );
    let mapper = Mapper::start(&broker, merge(&[profile]), "pymodbus-rtu");
    expect(&peer, "thermostat", THERMOSTAT_AT_START).await;
    assert!(peer.wait_subscribed("thermostat", WAIT).await);
    peer.send_delta("thermostat", &[("setpoint", "19.5"), ("mode", "2")])
        .await;
    expect(&peer, "thermostat", &[("setpoint", "19.5"), ("mode", "2")]).await;
    mapper.stop().await;
}

/// Every profile in device-models/ that uses Modbus binds to the driver without errors.
#[test]
fn device_model_profiles_bind_to_the_modbus_driver() {
    let driver = ModbusDriver::new();
    for model in ["thermostat", "energy-meter", "rs485-line"] {
        for file in ["profile.json", "v1beta1.yaml"] {
            let text = read(&format!("device-models/{model}/{file}"));
            let loaded = mapper_sdk::load(&driver, &text, &ResolveOptions::default());
            assert!(
                loaded.errors.is_empty(),
                "{model}/{file}: {:#?}",
                loaded.errors
            );
            assert!(!loaded.devices.is_empty(), "{model}/{file}");
            assert!(
                loaded.warnings.is_empty(),
                "{model}/{file}: {:#?}",
                loaded.warnings
            );
        }
    }
}

/// The tester's scenario (issue 13): one unit of an RS-485 line (9600 baud, wire time
/// emulated, default timing) goes silent long enough to be skipped, then comes back right
/// after a probe. It
/// is reported online with a fresh value within the probe interval (about 1 s) plus one
/// collect cycle (300 ms), not after a skip interval that doubled while it was dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_back_on_the_rtu_line_is_online_again_within_a_second_and_a_cycle() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let Some((sim, line)) = rtu_sim(true).await else {
        return;
    };
    let profile = merge(&[profile_for(
        "rs485-line",
        &[
            ("/dev/ttyUSB0", line.mapper_end.display().to_string()),
            (
                "\"collectCycle\": 2000000000",
                "\"collectCycle\": 300000000".to_owned(),
            ),
        ],
    )]);
    let mapper = Mapper::start(&broker, profile, "rtu-recovery");
    expect(&peer, "line-sensor-2", &[("humidity", "50")]).await;

    sim.set_fault(2, Fault::Silent).unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("line-sensor-2").as_deref()
            == Some("offline"))
            .await
    );
    // It stays silent for four more probes (the old skip interval doubled meanwhile, to
    // 8 s after the third), and comes back right after the last one: the next probe
    // decides how soon it is seen again.
    let probes = || sim.stats().snapshot().units[&2].requests;
    let offline_at = probes();
    assert!(wait_until(Duration::from_secs(40), || probes() >= offline_at + 4).await);
    sim.write_value(2, "humidity", 61.0).unwrap();
    sim.clear_faults(2).unwrap();
    let back = std::time::Instant::now();
    assert!(
        peer.wait(WAIT, |p| p.last_state("line-sensor-2").as_deref()
            == Some("online")
            && p.last_actual("line-sensor-2", "humidity").as_deref()
                == Some("61"))
            .await
    );
    let took = back.elapsed();
    println!(
        "line-sensor-2 online again {} ms after it came back",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    mapper.stop().await;
    drop(line);
}
