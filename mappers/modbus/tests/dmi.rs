//! End to end over DMI (KubeEdge 1.15+): the `modbus-mapper` binary with
//! `--source dmi`, `dmi-sim` playing edgecore (its DeviceManagerService, and the client
//! that drives the mapper's DeviceMapperService as edgecore does), and `modbus-sim`
//! playing the thermostat of `device-models/thermostat`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod process;
use process::MapperProcess;

use dmi_sim::limiter::LimiterConfig;
use dmi_sim::record::{Event, Method};
use dmi_sim::{Edgecore, Fixtures, Key, Version};
use mapper_sdk::testing::wait_until;
use modbus_sim::{MapFile, Simulator};

const WAIT: Duration = Duration::from_secs(20);

/// What the thermostat reports first (the simulator's map with static values).
const THERMOSTAT: &[(&str, &str)] = &[
    ("temperature", "21.5"),
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

/// The thermostat simulator with static values (no dynamics ticks during the test).
async fn thermostat_sim() -> (Simulator, u16) {
    let yaml =
        read("device-models/thermostat/sim.yaml").replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, "thermostat").unwrap();
    let sim = Simulator::from_map(&map.endpoints[0].device);
    let port = sim.serve_tcp("127.0.0.1:0").await.unwrap().port();
    (sim, port)
}

/// `device-models/thermostat/v1beta1.yaml` aimed at the simulator, polled every 200 ms,
/// with `copies` devices (`thermostat`, `thermostat-2`, ...) of the one model.
fn thermostat_fixtures(port: u16, copies: usize) -> String {
    let text = read("device-models/thermostat/v1beta1.yaml")
        .replace("port: 1502", &format!("port: {port}"))
        .replace("collectCycle: 1000", "collectCycle: 200");
    let (model, device) = text.split_once("\n---\n").unwrap();
    let mut out = model.to_owned();
    for i in 1..=copies {
        let name = if i == 1 {
            "thermostat".to_owned()
        } else {
            format!("thermostat-{i}")
        };
        out.push_str("\n---\n");
        out.push_str(&device.replace("name: thermostat\n", &format!("name: {name}\n")));
    }
    out
}

fn key(name: &str) -> Key {
    Key::new("default", name)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The mapper binary with `--source dmi` (stopped with SIGTERM on drop), and the
/// abstract name it serves on.
struct Mapper {
    process: MapperProcess,
    listen: String,
}

impl Mapper {
    fn start(dir: &Path, config: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let listen = format!("@modbus-dmi-test-{}-{n}", std::process::id());
        let config_path = dir.join(format!("config-{n}.yaml"));
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = process::command(dir);
        cmd.args(["--config-file".as_ref(), config_path.as_os_str()])
            .args(["--source", "dmi", "--dmi-listen", &listen])
            .arg("--edgecore-sock")
            .arg(dir.join("dmi.sock"))
            .args(["--log-level", "info"])
            .env("NO_COLOR", "1");
        Self {
            process: MapperProcess::spawn(cmd, dir),
            listen,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

/// Defaults but a faster heartbeat and, where given, a larger budget.
fn config(extra_dmi: &str) -> String {
    format!("mapper:\n  offlineAfter: 2\ndmi:\n  heartbeatSeconds: 60\n{extra_dmi}")
}

async fn edgecore(dir: &Path, fixtures: &str, limiter: Option<LimiterConfig>) -> Edgecore {
    edgecore_of(Version::V1_23, dir, fixtures, limiter).await
}

async fn edgecore_of(
    version: Version,
    dir: &Path,
    fixtures: &str,
    limiter: Option<LimiterConfig>,
) -> Edgecore {
    Edgecore::start(
        dir.join("dmi.sock"),
        version,
        Fixtures::from_yaml(fixtures).unwrap(),
        limiter,
    )
    .await
    .unwrap()
}

/// The last value edgecore accepted for a property.
fn last_reported(ec: &Edgecore, device: &str, property: &str) -> Option<(String, String)> {
    ec.events().iter().rev().find_map(|e| match e {
        Event::Reported(r) if r.device.name == device && r.property == property => {
            Some((r.reported.clone(), r.observed_desired.clone()))
        }
        _ => None,
    })
}

async fn expect_reported(ec: &Edgecore, mapper: &Mapper, device: &str, values: &[(&str, &str)]) {
    for (property, want) in values {
        let ok = wait_until(WAIT, || {
            last_reported(ec, device, property).is_some_and(|(v, _)| v == *want)
        })
        .await;
        assert!(
            ok,
            "{device}.{property}: want {want:?}, last reported {:?}\nlast edgecore events: {:#?}\nmapper log:\n{}",
            last_reported(ec, device, property),
            ec.events().iter().rev().take(12).collect::<Vec<_>>(),
            mapper.log()
        );
    }
}

fn no_violations(ec: &Edgecore) {
    let v: Vec<_> = ec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Violation(_) | Event::Dropped(_)))
        .collect();
    assert!(v.is_empty(), "edgecore would crash or drop: {v:?}");
}

fn registrations(ec: &Edgecore) -> usize {
    ec.events()
        .iter()
        .filter(|e| matches!(e, Event::Registered(_)))
        .count()
}

fn calls(ec: &Edgecore, method: Method) -> Vec<dmi_sim::record::Call> {
    ec.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Called(c) if c.method == method => Some(c),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_when_edgecore_comes_up_and_reports_the_registered_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port) = thermostat_sim().await;
    // The mapper first: edgecore is not there yet, and the mapper must not exit.
    let mut mapper = Mapper::start(dir.path(), &config(""));
    assert!(
        wait_until(WAIT, || mapper.log().contains("MapperRegister failed")).await,
        "{}",
        mapper.log()
    );
    assert!(
        mapper.process.running(),
        "the mapper exited without edgecore"
    );
    let up = Instant::now();
    let ec = edgecore(dir.path(), &thermostat_fixtures(port, 1), None).await;
    ec.wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap_or_else(|_| panic!("no registration\n{}", mapper.log()));
    let waited = up.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "registered {waited:?} after edgecore came up"
    );
    let reg = &ec.registrations()[0];
    assert_eq!(reg.mapper.protocol, "modbus");
    assert!(reg.with_data);
    assert_eq!(String::from_utf8_lossy(&reg.mapper.address), mapper.listen);
    expect_reported(&ec, &mapper, "thermostat", THERMOSTAT).await;
    // The desired value of the spec is written and echoed as observedDesired.
    let (_, observed) = last_reported(&ec, "thermostat", "setpoint").unwrap();
    assert_eq!(observed, "20");
    // GetDevice answers with the last values read.
    let got = ec.get_device("modbus", &key("thermostat")).await.unwrap();
    let twins = got
        .device
        .and_then(|d| d.status)
        .map(|s| s.twins)
        .unwrap_or_default();
    let value = |name: &str| {
        twins
            .iter()
            .find(|t| t.property_name == name)
            .and_then(|t| t.reported.as_ref())
            .map(|r| r.value.clone())
    };
    assert_eq!(value("temperature").as_deref(), Some("21.5"), "{twins:?}");
    assert_eq!(value("heating").as_deref(), Some("true"), "{twins:?}");
    assert!(
        ec.wait_for(
            |e| matches!(e, Event::State(s) if s.state == "online"),
            WAIT
        )
        .await
        .is_ok(),
        "no online state"
    );
    no_violations(&ec);
    // edgecore's own client reaches the registered abstract address with the
    // `:authority` grpc-go sends for it.
    let address = dmi_api::transport::Address::parse(&mapper.listen).unwrap();
    let outcome = dmi_sim::probe::probe_authority(&address, &address.grpc_go_authority())
        .await
        .unwrap();
    assert!(outcome.accepted(), "{outcome:?}");
    let status = mapper.process.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        mapper.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_values_are_written_without_a_restart_and_identical_updates_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore(dir.path(), &thermostat_fixtures(port, 1), None).await;
    let mapper = Mapper::start(dir.path(), &config(""));
    expect_reported(&ec, &mapper, "thermostat", THERMOSTAT).await;
    let connections = sim.stats().snapshot().connections;
    // The cloud sets a new desired value: edgecore sends UpdateDevice.
    ec.set_desired(&key("thermostat"), "setpoint", "23.5")
        .unwrap();
    let t = Instant::now();
    ec.update_device(&key("thermostat")).await.unwrap();
    let answered = t.elapsed();
    assert!(
        answered < Duration::from_millis(500),
        "UpdateDevice took {answered:?}"
    );
    assert!(
        wait_until(WAIT, || sim.read_holding(1, 10).unwrap() == 235).await,
        "register 10 = {}\n{}",
        sim.read_holding(1, 10).unwrap(),
        mapper.log()
    );
    assert!(
        wait_until(WAIT, || last_reported(&ec, "thermostat", "setpoint")
            == Some(("23.5".into(), "23.5".into())))
        .await,
        "{:?}",
        last_reported(&ec, "thermostat", "setpoint")
    );
    assert_eq!(
        sim.stats().snapshot().connections,
        connections,
        "the device was restarted"
    );
    let restarts = |log: &str| log.matches("restarted=1").count();
    assert_eq!(restarts(&mapper.log()), 0, "{}", mapper.log());
    // edgecore <= 1.20 re-sends the same spec every second: nothing may happen.
    let written = sim.stats().snapshot().units[&1].registers_written;
    for _ in 0..5 {
        ec.update_device(&key("thermostat")).await.unwrap();
    }
    // A write would happen within a collect cycle or two; give it ten.
    let settle = Instant::now() + Duration::from_secs(2);
    assert!(
        !wait_until(settle - Instant::now(), || sim.stats().snapshot().units[&1]
            .registers_written
            != written)
        .await
    );
    assert_eq!(restarts(&mapper.log()), 0, "{}", mapper.log());
    assert_eq!(sim.stats().snapshot().connections, connections);
    no_violations(&ec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_device_stops_polling_and_unknown_removes_answer_ok() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore(dir.path(), &thermostat_fixtures(port, 1), None).await;
    let mapper = Mapper::start(dir.path(), &config(""));
    expect_reported(&ec, &mapper, "thermostat", &THERMOSTAT[..1]).await;
    let client = ec.mapper_client("modbus").unwrap();
    // Unknown ids: OK (an error here leaves ghost devices in edgecore).
    client.remove_device("default", "ghost").await.unwrap();
    client
        .remove_device_model("default", "ghost-model")
        .await
        .unwrap();
    ec.remove_device(&key("thermostat")).await.unwrap();
    assert!(
        wait_until(WAIT, || mapper.log().contains("stopped=1")).await,
        "{}",
        mapper.log()
    );
    let requests = || sim.stats().snapshot().requests;
    let after = requests();
    // Polling every 200 ms would add ~10 requests in 2 s.
    let quiet = wait_until(Duration::from_secs(2), || requests() > after + 1).await;
    assert!(
        !quiet,
        "the removed device is still polled: {} -> {}",
        after,
        requests()
    );
    // GetDevice of the removed device: NotFound-like error, no crash.
    assert!(ec.get_device("modbus", &key("thermostat")).await.is_err());
    no_violations(&ec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgecore_restart_makes_the_mapper_register_again_and_reports_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let mut ec = edgecore(dir.path(), &thermostat_fixtures(port, 1), None).await;
    let mapper = Mapper::start(dir.path(), &config(""));
    expect_reported(&ec, &mapper, "thermostat", &THERMOSTAT[..1]).await;
    assert_eq!(registrations(&ec), 1);
    let mark = ec.event_count();
    ec.restart().await.unwrap();
    ec.wait_for_from(mark, |e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap_or_else(|_| panic!("no re-registration after the restart\n{}", mapper.log()));
    // A new reading after the restart reaches edgecore.
    sim.write_registers(1, modbus_sim::TableKind::InputRegisters, 0, &[222])
        .unwrap();
    ec.wait_for_from(
        mark,
        |e| matches!(e, Event::Reported(r) if r.property == "temperature" && r.reported == "22.2"),
        WAIT,
    )
    .await
    .unwrap_or_else(|_| panic!("no report after the restart\n{}", mapper.log()));
    // The route is known again: edgecore's calls reach the mapper.
    ec.set_desired(&key("thermostat"), "mode", "2").unwrap();
    ec.update_device(&key("thermostat")).await.unwrap();
    assert!(wait_until(WAIT, || sim.read_holding(1, 11).unwrap() == 2).await);
    no_violations(&ec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_errors_make_the_mapper_back_off_without_a_storm() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    // A tight limiter: one call per second, burst 2; the mapper is told it may make 5/s.
    let ec = edgecore(
        dir.path(),
        &thermostat_fixtures(port, 3),
        Some(LimiterConfig {
            interval: Duration::from_secs(1),
            burst: 2,
        }),
    )
    .await;
    let mapper = Mapper::start(dir.path(), &config("  rate: 5\n  burst: 10\n"));
    ec.wait_for(|e| matches!(e, Event::Rejected(_)), WAIT)
        .await
        .unwrap_or_else(|_| panic!("the limiter never refused\n{}", mapper.log()));
    // Values change every 300 ms for 6 s.
    let start = Instant::now();
    let mut v = 200u16;
    while start.elapsed() < Duration::from_secs(6) {
        v += 1;
        sim.write_registers(1, modbus_sim::TableKind::InputRegisters, 0, &[v])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rejected = ec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Rejected(_)))
        .count();
    let accepted = calls(&ec, Method::ReportDeviceStatus)
        .iter()
        .filter(|c| c.code == tonic::Code::Ok)
        .count();
    // A storm would be one refused call per change per device (dozens); backing off
    // after each refusal keeps it to a handful.
    assert!(
        rejected <= 6,
        "{rejected} calls refused, {accepted} accepted\n{}",
        mapper.log()
    );
    assert!(accepted >= 3, "{accepted} calls accepted");
    // Every device still got through.
    for name in ["thermostat", "thermostat-2", "thermostat-3"] {
        assert!(
            wait_until(WAIT, || last_reported(&ec, name, "temperature").is_some()).await,
            "{name} starved"
        );
    }
    no_violations(&ec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_data_is_an_error_naming_device_and_field_and_others_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port) = thermostat_sim().await;
    let good = thermostat_fixtures(port, 2);
    // thermostat-2's humidity visitor names a register table that does not exist.
    let (head, tail) = good.split_once("name: thermostat-2\n").unwrap();
    let tail = tail.replacen(
        "{register: InputRegister, offset: 1, limit: 1}",
        "{register: WeirdRegister, offset: 1, limit: 1}",
        1,
    );
    let fixtures = format!("{head}name: thermostat-2\n{tail}");
    let ec = edgecore(dir.path(), &fixtures, None).await;
    let mapper = Mapper::start(dir.path(), &config(""));
    expect_reported(&ec, &mapper, "thermostat", THERMOSTAT).await;
    assert!(
        wait_until(WAIT, || {
            let log = mapper.log();
            log.lines().any(|l| {
                l.contains("thermostat-2") && l.contains("humidity") && l.contains("WeirdRegister")
            })
        })
        .await,
        "{}",
        mapper.log()
    );
    // The healthy properties of the broken device still run (the error is per property).
    expect_reported(&ec, &mapper, "thermostat-2", &THERMOSTAT[..1]).await;
    assert!(last_reported(&ec, "thermostat-2", "humidity").is_none());
    no_violations(&ec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_waits_for_its_model_and_runs_when_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    // edgecore starts with nothing cached; the cloud then sends the device, and only
    // later its model.
    let ec = edgecore(dir.path(), "", None).await;
    let mapper = Mapper::start(dir.path(), &config(""));
    ec.wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap();
    ec.add_fixtures(Fixtures::from_yaml(&thermostat_fixtures(port, 1)).unwrap());
    ec.register_device(&key("thermostat")).await.unwrap();
    assert!(
        wait_until(WAIT, || mapper.log().contains("wait for their DeviceModel")).await,
        "{}",
        mapper.log()
    );
    let before = sim.stats().snapshot().requests;
    assert!(
        !wait_until(Duration::from_secs(1), || sim.stats().snapshot().requests
            > before)
        .await,
        "polled without a model"
    );
    ec.create_device_model(&key("thermostat-model"))
        .await
        .unwrap();
    expect_reported(&ec, &mapper, "thermostat", THERMOSTAT).await;
    // RegisterDevice again (cloudcore restart): no restart of the running device.
    ec.register_device(&key("thermostat")).await.unwrap();
    assert!(
        !wait_until(Duration::from_secs(1), || mapper
            .log()
            .contains("restarted=1"))
        .await
    );
    no_violations(&ec);
}

/// 100 devices, all changing, under the mapper's default budget (0.5 calls/s, burst 50)
/// and edgecore's own limiter (1/s, burst 100): no call is refused, the calls stay within
/// the budget, and the order is fair (no device gets a second twin report while another
/// waits for its first). Prints the measured calls per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_100_devices_stay_within_the_budget_and_none_starves() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore(
        dir.path(),
        &thermostat_fixtures(port, 100),
        Some(LimiterConfig::default()),
    )
    .await;
    let (rate, burst) = (0.5, 50.0);
    let mapper = Mapper::start(dir.path(), &config(""));
    ec.wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap();
    let start = Instant::now();
    let window = Duration::from_secs(30);
    let mut v = 300u16;
    while start.elapsed() < window {
        v += 1;
        sim.write_registers(1, modbus_sim::TableKind::InputRegisters, 0, &[v])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let status_calls = calls(&ec, Method::ReportDeviceStatus).len();
    let state_calls = calls(&ec, Method::ReportDeviceStates).len();
    let register_calls = calls(&ec, Method::MapperRegister).len();
    let total = status_calls + state_calls + register_calls;
    eprintln!(
        "100 devices, default budget: {status_calls} ReportDeviceStatus + {state_calls} ReportDeviceStates + {register_calls} MapperRegister in {elapsed:.1} s = {:.2} calls/s (budget {rate}/s, burst {burst})",
        total as f64 / elapsed
    );
    let rejected = ec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Rejected(_)))
        .count();
    assert_eq!(rejected, 0, "edgecore's limiter refused calls");
    assert!(
        (total as f64) <= burst + rate * elapsed + 2.0,
        "{total} calls in {elapsed:.1} s exceed the budget"
    );
    assert!(
        status_calls >= 10,
        "{status_calls} twin reports\n{}",
        mapper.log()
    );
    // Fair: every twin call so far went to a different device.
    let mut devices = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    for e in ec.events() {
        if let Event::Reported(r) = e
            && r.property == "temperature"
            && !devices.insert(r.device.name.clone())
        {
            twice.push(r.device.name);
        }
    }
    assert!(
        twice.is_empty() || devices.len() == 100,
        "{twice:?} reported twice while only {} of 100 devices were reported",
        devices.len()
    );
    no_violations(&ec);
}

/// The latest value wins: a burst of changes on 5 devices ends with every device's last
/// report holding the final value, under the default budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_value_of_every_device_arrives_under_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore(
        dir.path(),
        &thermostat_fixtures(port, 5),
        Some(LimiterConfig::default()),
    )
    .await;
    let mapper = Mapper::start(dir.path(), &config(""));
    ec.wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap();
    for v in 250..=260u16 {
        sim.write_registers(1, modbus_sim::TableKind::InputRegisters, 0, &[v])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let names: Vec<String> = std::iter::once("thermostat".to_owned())
        .chain((2..=5).map(|i| format!("thermostat-{i}")))
        .collect();
    // 5 devices at 0.5 calls/s after the burst: well within 40 s.
    let ok = wait_until(Duration::from_secs(40), || {
        names
            .iter()
            .all(|n| last_reported(&ec, n, "temperature").is_some_and(|(v, _)| v == "26"))
    })
    .await;
    assert!(
        ok,
        "{:?}\n{}",
        names
            .iter()
            .map(|n| last_reported(&ec, n, "temperature"))
            .collect::<Vec<_>>(),
        mapper.log()
    );
    no_violations(&ec);
}

/// KubeEdge 1.15: no namespaces (devices keyed by name) and no ReportDeviceStates: the
/// mapper registers, reports twins with an empty namespace, gets `Unimplemented` for
/// states once and stops sending them, and still takes UpdateDevice writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeedge_1_15_edgecore_gets_name_keyed_reports_and_no_state_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore_of(
        Version::V1_15,
        dir.path(),
        &thermostat_fixtures(port, 1),
        None,
    )
    .await;
    let mapper = Mapper::start(dir.path(), &config(""));
    expect_reported(&ec, &mapper, "thermostat", THERMOSTAT).await;
    assert!(
        ec.events().iter().all(|e| match e {
            Event::Reported(r) => r.device.namespace.is_empty(),
            _ => true,
        }),
        "a 1.15 report carried a namespace"
    );
    ec.set_desired(&key("thermostat"), "mode", "3").unwrap();
    ec.update_device(&key("thermostat")).await.unwrap();
    assert!(
        wait_until(WAIT, || sim.read_holding(1, 11).unwrap() == 3).await,
        "{}",
        mapper.log()
    );
    // States: refused once with Unimplemented, then never tried again.
    let states = calls(&ec, Method::ReportDeviceStates);
    assert!(
        states.len() <= 1,
        "{} state calls to a 1.15 edgecore",
        states.len()
    );
    assert!(states.iter().all(|c| c.code == tonic::Code::Unimplemented));
    no_violations(&ec);
}

/// `dmi.report: mqtt`: devices and desired values come over DMI, reports go to the broker
/// on `{namespace}/{name}` topics, and edgecore gets no report calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_report_path_publishes_on_namespace_name_topics() {
    let Some(broker) = mapper_sdk::testing::Mosquitto::start() else {
        return;
    };
    let peer = mapper_sdk::testing::TwinPeer::connect(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let (sim, port) = thermostat_sim().await;
    let ec = edgecore(dir.path(), &thermostat_fixtures(port, 1), None).await;
    let mapper = Mapper::start(
        dir.path(),
        &format!(
            "{}  report: mqtt\nmqtt:\n  server: {}\n  clientId: dmi-mqtt-{}\n",
            config(""),
            broker.url(),
            std::process::id()
        ),
    );
    for (property, want) in THERMOSTAT {
        assert!(
            peer.wait(WAIT, |p| p
                .last_actual("default/thermostat", property)
                .as_deref()
                == Some(*want))
                .await,
            "default/thermostat.{property}: {:?}\n{}",
            peer.last_actual("default/thermostat", property),
            mapper.log()
        );
    }
    assert!(
        peer.wait(WAIT, |p| p.last_state("default/thermostat").as_deref()
            == Some("online"))
            .await
    );
    // Writes still come from edgecore.
    ec.set_desired(&key("thermostat"), "setpoint", "21.5")
        .unwrap();
    ec.update_device(&key("thermostat")).await.unwrap();
    assert!(wait_until(WAIT, || sim.read_holding(1, 10).unwrap() == 215).await);
    assert!(
        peer.wait(WAIT, |p| p
            .last_actual("default/thermostat", "setpoint")
            .as_deref()
            == Some("21.5"))
            .await
    );
    assert!(calls(&ec, Method::ReportDeviceStatus).is_empty());
    assert!(calls(&ec, Method::ReportDeviceStates).is_empty());
    assert_eq!(registrations(&ec), 1);
}
