//! End to end: the `http-mapper` binary, a real mosquitto, a peer playing edgecore, and
//! the smart plug played by http-sim.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{plug_profile, plug_sim};
use http_sim::Fault;
use mapper_sdk::testing::{MapperProcess, Mosquitto, TwinPeer, mapper_command, wait_until};
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(20);

/// Writes `profile` into `dir` and starts the binary on it and the broker.
fn start_mapper(dir: &Path, broker: &Mosquitto, profile: &Json) -> MapperProcess {
    let file = dir.join("deviceProfile.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let mut cmd = mapper_command(env!("CARGO_BIN_EXE_http-mapper"), dir);
    cmd.arg("--mqtt-address")
        .arg(broker.url())
        .arg("--profile")
        .arg(&file);
    MapperProcess::spawn(cmd, dir)
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

async fn expect_state(peer: &TwinPeer, device: &str, state: &str) {
    assert!(
        peer.wait(WAIT, |p| p.last_state(device).as_deref() == Some(state))
            .await,
        "{device}: want {state}, last {:?}",
        peer.last_state(device)
    );
}

/// A second plug, `plug-2`, on its own simulator, whose `power` visitor is broken (a
/// pointer without its leading '/').
fn second_plug(port: u16) -> Json {
    let mut p = plug_profile(port);
    let text = p
        .to_string()
        .replace("smart-plug", "plug-2")
        .replace("\"pointer\":\"/power\"", "\"pointer\":\"power\"");
    p = serde_json::from_str(&text).unwrap();
    p
}

fn merge(profiles: &[Json]) -> Json {
    let mut out = json!({"deviceInstances": [], "deviceModels": [], "protocols": []});
    for p in profiles {
        for key in ["deviceInstances", "deviceModels", "protocols"] {
            out[key]
                .as_array_mut()
                .unwrap()
                .extend(p[key].as_array().unwrap().iter().cloned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_writes_goes_offline_and_recovers() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    // The device refuses limits above 3000 W, which the model allows (up to 3600).
    let plug = plug_sim(&[("max: 3600", "max: 3000")]);
    let other = plug_sim(&[]);
    let plug_server = plug.serve("127.0.0.1:0").await.unwrap();
    let other_server = other.serve("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profile = merge(&[
        plug_profile(plug_server.port()),
        second_plug(other_server.port()),
    ]);
    let mapper = start_mapper(dir.path(), &broker, &profile);

    // Every property reaches the twin, exactly as the device holds it.
    expect(
        &peer,
        "smart-plug",
        &[
            ("relay", "true"),
            ("power", "48.2"),
            ("voltage", "230.1"),
            ("energy", "1234.5"),
            ("power-limit", "2000"),
        ],
    )
    .await;
    expect_state(&peer, "smart-plug", "online").await;

    // The bad visitor is an error naming the device, the property and the field; the
    // rest of that device runs.
    assert!(
        wait_until(WAIT, || mapper
            .log()
            .contains("visitorConfig.configData.pointer"))
        .await
    );
    let log = mapper.log();
    let line = log
        .lines()
        .find(|l| l.contains("visitorConfig.configData.pointer"))
        .unwrap();
    assert!(line.contains("plug-2") && line.contains("power"), "{line}");
    expect(&peer, "plug-2", &[("relay", "true"), ("voltage", "230.1")]).await;
    assert_eq!(peer.last_actual("plug-2", "power"), None);

    // Four properties on /status, one on /settings: one GET of each per cycle, over
    // kept-alive connections.
    let settings_gets = || plug.stats().gets.get("/settings").copied().unwrap_or(0);
    assert!(wait_until(WAIT, || settings_gets() >= 3).await);
    let stats = plug.stats();
    assert!(
        stats.gets["/status"] <= stats.gets["/settings"] + 1,
        "{stats:?}"
    );

    // Desired values (twin deltas) arrive at the device through PUT and POST.
    assert!(peer.wait_subscribed("smart-plug", WAIT).await);
    peer.send_delta("smart-plug", &[("relay", "false"), ("power-limit", "1500")])
        .await;
    assert!(
        wait_until(WAIT, || plug.value("/status", "/relay/on")
            == Some(json!(false)))
        .await
    );
    assert!(
        wait_until(WAIT, || plug.value("/settings", "/limitW")
            == Some(json!(1500)))
        .await
    );
    expect(
        &peer,
        "smart-plug",
        &[("relay", "false"), ("power-limit", "1500")],
    )
    .await;
    let writes = plug.stats().writes;
    assert!(
        writes.iter().any(|w| w.method == "PUT"
            && w.path == "/status"
            && w.body == r#"{"relay": {"on": false}}"#),
        "{writes:?}"
    );
    assert!(
        writes.iter().any(|w| w.method == "POST"
            && w.path == "/settings"
            && w.body == r#"{"limitW": 1500}"#),
        "{writes:?}"
    );

    // A value the device refuses (422) is dropped at once, not retried.
    peer.send_delta("smart-plug", &[("power-limit", "3500")])
        .await;
    assert!(
        wait_until(WAIT, || mapper
            .log()
            .contains("desired value cannot be written; dropped"))
        .await
    );
    let refused = |s: &http_sim::Stats| s.writes.iter().filter(|w| w.status == 422).count();
    assert_eq!(refused(&plug.stats()), 1);
    assert_eq!(plug.value("/settings", "/limitW"), Some(json!(1500)));

    // The device goes away: offline; it comes back with a new value: online, and the
    // value is reported.
    assert!(wait_until(WAIT, || plug.stats().requests >= 20).await);
    let s = plug.stats();
    assert!(
        s.connections * 4 <= s.requests,
        "{} connections for {} requests",
        s.connections,
        s.requests
    );
    plug.set_fault(Fault::Down);
    expect_state(&peer, "smart-plug", "offline").await;
    assert!(plug.set_value("/status", "/power", json!(55.5)));
    plug.clear_faults();
    expect_state(&peer, "smart-plug", "online").await;
    expect(&peer, "smart-plug", &[("power", "55.5")]).await;
    assert_eq!(
        refused(&plug.stats()),
        1,
        "the refused value was never retried"
    );
    // The other plug never noticed.
    assert_eq!(peer.last_state("plug-2").as_deref(), Some("online"));

    let mut mapper = mapper;
    let status = mapper.stop().expect("the mapper exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    expect_state(&peer, "smart-plug", "offline").await;
}
