//! The stock KubeEdge `config.yaml` samples, unchanged, start the real `modbus-mapper`
//! binary: it connects to the broker, runs a device from `modbus-sim`, and exits 0 on
//! SIGTERM. Any sample that makes the mapper stop fails its test.
#![allow(clippy::unwrap_used, missing_docs)]

mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mapper_sdk::testing::{Mosquitto, TwinPeer};
use modbus_sim::{MapFile, Simulator};
use process::{MapperProcess, command};

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// The thermostat model, static (no dynamics ticks during the test).
fn thermostat() -> Simulator {
    let yaml =
        read("device-models/thermostat/sim.yaml").replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, "thermostat").unwrap();
    Simulator::from_map(&map.endpoints[0].device)
}

/// Starts the mapper with a copy of the sample `name`, the broker from the flag and the
/// thermostat profile; checks it runs, reports the device online and stops cleanly.
async fn sample_config_runs(name: &str) {
    let sample = repo().join("tests/fixtures/kubeedge-samples").join(name);
    assert!(sample.is_file(), "{} is missing", sample.display());
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let sim = thermostat();
    let port = sim.serve_tcp("127.0.0.1:0").await.unwrap().port();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(name);
    std::fs::copy(&sample, &config).unwrap();
    let profile = dir.path().join("deviceProfile.json");
    std::fs::write(
        &profile,
        read("device-models/thermostat/profile.json")
            .replace("\"port\": 1502", &format!("\"port\": {port}")),
    )
    .unwrap();

    let mut cmd = command(dir.path());
    cmd.arg("--config-file")
        .arg(&config)
        .arg("--mqtt-address")
        .arg(broker.url())
        .arg("--profile")
        .arg(&profile);
    let mut mapper = MapperProcess::spawn(cmd, dir.path());

    let online = peer
        .wait(WAIT, |p| {
            // Give up early when the mapper exits: that is the failure.
            p.last_state("thermostat").as_deref() == Some("online") || !mapper.running()
        })
        .await;
    assert!(
        mapper.running(),
        "{name}: the mapper exited: {:?}\n{}",
        mapper.child.try_wait(),
        mapper.log()
    );
    assert!(
        online,
        "{name}: the thermostat was never reported online (last state {:?})",
        peer.last_state("thermostat")
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("thermostat", "humidity").is_some())
            .await,
        "{name}: no twin report from the thermostat"
    );
    let status = mapper
        .stop()
        .expect("the mapper stops within 15 s of SIGTERM");
    assert!(
        status.success(),
        "{name}: exit status {status:?} after SIGTERM"
    );
    assert!(
        peer.wait(WAIT, |p| p.last_state("thermostat").as_deref()
            == Some("offline"))
            .await,
        "{name}: the thermostat was not reported offline at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappers_go_modbus_config_starts_the_mapper() {
    sample_config_runs("modbus-config.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_sdk_go_config_starts_the_mapper() {
    sample_config_runs("mapper-sdk-go-config.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_mapper_config_starts_the_mapper() {
    sample_config_runs("bluetooth_mapper-config.yaml").await;
}

/// Every `*config*.yaml` sample has a test above.
#[test]
fn every_config_sample_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures/kubeedge-samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("config") && n.ends_with(".yaml"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "bluetooth_mapper-config.yaml",
            "mapper-sdk-go-config.yaml",
            "modbus-config.yaml"
        ]
    );
}
