//! End to end over DMI (KubeEdge 1.15+): the `ble-mapper` binary with `--source dmi`,
//! `dmi-sim` playing edgecore, and `ble-sim` playing the LED of `device-models/ble-led`
//! on a private D-Bus. edgecore carries the device's `dataWrite` map as a JSON string in
//! configData; the mapper must read it as the structure it is.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ble_sim::{BleSim, SimConfig};
use dmi_sim::record::Event;
use dmi_sim::{Edgecore, Fixtures, Key, Version};
use mapper_sdk::testing::wait_until;

const WAIT: Duration = Duration::from_secs(30);
const LED: &str = "A4:C1:38:00:00:02";
const SWITCH: &str = "0000ff11-0000-1000-8000-00805f9b34fb";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

struct Mapper {
    child: Child,
    log: PathBuf,
}

impl Mapper {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- ble-mapper log -----\n{}", self.log());
        }
    }
}

fn last_reported(ec: &Edgecore, property: &str) -> Option<(String, String)> {
    ec.events().iter().rev().find_map(|e| match e {
        Event::Reported(r) if r.device.name == "ble-led" && r.property == property => {
            Some((r.reported.clone(), r.observed_desired.clone()))
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_led_is_registered_over_dmi_switched_by_update_device_and_reported() {
    if !dbus_daemon_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = BleSim::start(
        SimConfig::load(&repo().join("simulators/ble-sim/devices/led.yaml")).unwrap(),
    )
    .await
    .unwrap();
    let fixtures = std::fs::read_to_string(repo().join("device-models/ble-led/v1beta1.yaml"))
        .unwrap()
        .replace("collectCycle: 1000", "collectCycle: 200");
    let ec = Edgecore::start(
        dir.path().join("dmi.sock"),
        Version::V1_22,
        Fixtures::from_yaml(&fixtures).unwrap(),
        None,
    )
    .await
    .unwrap();
    let log = dir.path().join("mapper.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ble-mapper"))
        .current_dir(dir.path())
        .args(["--source", "dmi"])
        .arg("--edgecore-sock")
        .arg(dir.path().join("dmi.sock"))
        .args([
            "--dmi-listen",
            &format!("@ble-dmi-test-{}", std::process::id()),
        ])
        .args(["--log-level", "info"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address())
        .env("NO_COLOR", "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("RUST_LOG")
        .env_remove("MAPPER_CONFIG_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mapper = Mapper { child, log };
    let reg = ec
        .wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap_or_else(|_| panic!("no registration\n{}", mapper.log()));
    let Event::Registered(reg) = reg else {
        unreachable!()
    };
    assert_eq!(reg.mapper.protocol, "bluetooth");
    assert_eq!(
        reg.devices,
        vec![Key::new("default", "ble-led")],
        "{:?}",
        ec.events()
            .iter()
            .filter(|e| matches!(e, Event::Skipped(_)))
            .collect::<Vec<_>>()
    );
    // The spec's desired OFF is written and reported back.
    assert!(
        wait_until(WAIT, || last_reported(&ec, "switch")
            == Some(("OFF".into(), "OFF".into())))
        .await,
        "{:?}\n{}",
        last_reported(&ec, "switch"),
        mapper.log()
    );
    // The cloud switches it on: UpdateDevice with desired ON -> byte 01 on the LED.
    ec.set_desired(&Key::new("default", "ble-led"), "switch", "ON")
        .unwrap();
    ec.update_device(&Key::new("default", "ble-led"))
        .await
        .unwrap();
    assert!(
        wait_until(WAIT, || sim.value(LED, SWITCH).unwrap() == vec![1]).await,
        "LED = {:?}\n{}",
        sim.value(LED, SWITCH),
        mapper.log()
    );
    assert!(
        wait_until(WAIT, || last_reported(&ec, "switch")
            == Some(("ON".into(), "ON".into())))
        .await,
        "{:?}",
        last_reported(&ec, "switch")
    );
    let bad: Vec<_> = ec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Violation(_) | Event::Dropped(_)))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}
