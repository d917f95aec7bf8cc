//! End to end with the `kube` feature: `run` with the in-memory driver, a real mosquitto,
//! and kube's whole client stack (HTTP client, watcher, backoff) against the fake API
//! server of `kube-api-sim`.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use kube_api_sim::{FakeApi, Kind};
use mapper_sdk::config::ProfileSetting;
use mapper_sdk::kube_source::{KubeConnection, KubeSettings, KubeWatch};
use mapper_sdk::model::Value;
use mapper_sdk::testing::{
    InProcessMapper, MemoryDriver, MemoryState, Mosquitto, TwinPeer, test_settings, wait_until,
};
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "default";
const NODE: &str = "edge-1";

struct Mapper;

impl Mapper {
    fn start(
        broker: &Mosquitto,
        state: &MemoryState,
        api: &FakeApi,
        watch: KubeWatch,
        name: &str,
    ) -> InProcessMapper {
        let profile = ProfileSetting::Kube(KubeSettings {
            connection: KubeConnection::MetaServer(api.url()),
            watch,
            namespace: Some(NS.into()),
            node_name: Some(NODE.into()),
        });
        let settings = test_settings(broker, &format!("test-{name}"), profile);
        InProcessMapper::start(MemoryDriver::new(state.clone()), settings)
    }
}

fn seed(state: &MemoryState, device: &str) {
    state.set(device, "temperature", Value::Int(25));
    state.set(device, "setpoint", Value::Float(20.0));
}

fn connects(state: &MemoryState, device: &str) -> u32 {
    state.with(device, |d| d.connects)
}

async fn online(peer: &TwinPeer, device: &str) -> bool {
    peer.wait(WAIT, |p| p.last_state(device).as_deref() == Some("online"))
        .await
}

/// A v1alpha2 device-profile JSON (what the ConfigMap holds) for `devices`.
fn profile(devices: &[(&str, u64)]) -> String {
    let instances: Vec<Json> = devices
        .iter()
        .map(|(name, cycle_ms)| {
            let c = cycle_ms * 1_000_000;
            json!({
                "id": name, "name": name, "protocol": format!("p-{name}"), "model": "m",
                "twins": [{"propertyName": "temperature", "desired": {"value": "", "metadata": {"type": "int"}}}],
                "propertyVisitors": [{"propertyName": "temperature", "collectCycle": c, "visitorConfig": {}}],
            })
        })
        .collect();
    let protocols: Vec<Json> = devices
        .iter()
        .map(|(name, _)| json!({"name": format!("p-{name}"), "protocol": "memory", "protocolConfig": null}))
        .collect();
    json!({
        "deviceInstances": instances,
        "deviceModels": [{"name": "m", "properties": [{"name": "temperature", "dataType": "int", "accessMode": "ReadOnly"}]}],
        "protocols": protocols,
    })
    .to_string()
}

fn config_map(text: &str) -> Json {
    json!({"metadata": {"name": format!("device-profile-config-{NODE}")}, "data": {"deviceProfile.json": text}})
}

fn model() -> Json {
    json!({
        "metadata": {"name": "thermostat"},
        "spec": {"protocol": "memory", "properties": [
            {"name": "temperature", "type": "INT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
        ]},
    })
}

fn device(name: &str, node: &str, cycle_ms: u64, setpoint: Option<&str>) -> Json {
    let visitors = json!({"protocolName": "memory", "configData": {}});
    let mut setpoint_prop =
        json!({"name": "setpoint", "collectCycle": cycle_ms, "visitors": visitors});
    if let Some(v) = setpoint {
        setpoint_prop["desired"] = json!({"value": v});
    }
    json!({
        "metadata": {"name": name},
        "spec": {
            "deviceModelRef": {"name": "thermostat"},
            "nodeName": node,
            "protocol": {"protocolName": "memory", "configData": {}},
            "properties": [
                {"name": "temperature", "collectCycle": cycle_ms, "visitors": visitors},
                setpoint_prop,
            ],
        },
    })
}

async fn setup() -> Option<(Mosquitto, TwinPeer, MemoryState, FakeApi)> {
    let broker = Mosquitto::start()?;
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    let api = FakeApi::start().await.unwrap();
    api.set_bookmark_interval(Duration::from_millis(200));
    Some((broker, peer, state, api))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_source_starts_restarts_only_changed_skips_malformed_and_stops() {
    let Some((broker, peer, state, api)) = setup().await else {
        return;
    };
    for d in ["dev1", "dev2"] {
        seed(&state, d);
    }
    api.create(
        Kind::ConfigMap,
        NS,
        config_map(&profile(&[("dev1", 100), ("dev2", 100)])),
    )
    .unwrap();
    let name = format!("device-profile-config-{NODE}");
    let mapper = Mapper::start(
        &broker,
        &state,
        &api,
        KubeWatch::ConfigMap { name: name.clone() },
        "cm",
    );

    // Initial list: both devices run and report.
    assert!(online(&peer, "dev1").await && online(&peer, "dev2").await);
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev2", "temperature").as_deref()
            == Some("25"))
            .await
    );

    // An update restarts only the changed device.
    let patch = json!({"data": {"deviceProfile.json": profile(&[("dev1", 100), ("dev2", 150)])}});
    api.patch(Kind::ConfigMap, NS, &name, &patch).unwrap();
    assert!(wait_until(WAIT, || connects(&state, "dev2") == 2).await);
    assert_eq!(connects(&state, "dev1"), 1, "dev1 did not change");

    // A malformed profile is reported and skipped: the running devices are kept.
    let patch = json!({"data": {"deviceProfile.json": "{\"deviceInstances\": [oops"}});
    api.patch(Kind::ConfigMap, NS, &name, &patch).unwrap();
    state.set("dev1", "temperature", Value::Int(31));
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("31"))
            .await,
        "dev1 keeps running"
    );
    assert_eq!((connects(&state, "dev1"), connects(&state, "dev2")), (1, 2));

    // A profile without dev2 stops it.
    let patch = json!({"data": {"deviceProfile.json": profile(&[("dev1", 100)])}});
    api.patch(Kind::ConfigMap, NS, &name, &patch).unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev2").as_deref() == Some("offline"))
            .await
    );
    // Deleting the ConfigMap stops everything.
    api.delete(Kind::ConfigMap, NS, &name).unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev1").as_deref() == Some("offline"))
            .await
    );
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_source_follows_devices_of_this_node_and_writes_desired_values() {
    let Some((broker, peer, state, api)) = setup().await else {
        return;
    };
    for d in ["dev1", "dev2", "other"] {
        seed(&state, d);
    }
    api.create(Kind::DeviceModel, NS, model()).unwrap();
    api.create(Kind::Device, NS, device("dev1", NODE, 100, None))
        .unwrap();
    api.create(Kind::Device, NS, device("dev2", NODE, 100, None))
        .unwrap();
    api.create(Kind::Device, NS, device("other", "edge-2", 100, None))
        .unwrap();
    // Malformed: properties is not a list. Reported by name, the others run.
    let mut bad = device("bad", NODE, 100, None);
    bad["spec"]["properties"] = json!("oops");
    api.create(Kind::Device, NS, bad).unwrap();
    let mapper = Mapper::start(&broker, &state, &api, KubeWatch::Devices, "dev");

    assert!(online(&peer, "dev1").await && online(&peer, "dev2").await);
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "setpoint").as_deref()
            == Some("20"))
            .await
    );
    assert_eq!(connects(&state, "other"), 0, "a device of another node");
    assert!(peer.last_state("bad").is_none());

    // A changed Device restarts only itself.
    api.patch(Kind::Device, NS, "dev2", &device("dev2", NODE, 150, None))
        .unwrap();
    assert!(wait_until(WAIT, || connects(&state, "dev2") == 2).await);
    assert_eq!(connects(&state, "dev1"), 1);

    // A desired value in the spec is written, without a restart.
    api.patch(
        Kind::Device,
        NS,
        "dev1",
        &device("dev1", NODE, 100, Some("30")),
    )
    .unwrap();
    assert!(
        wait_until(WAIT, || state.get("dev1", "setpoint")
            == Some(Value::Float(30.0)))
        .await
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "setpoint").as_deref()
            == Some("30"))
            .await
    );
    assert_eq!(
        connects(&state, "dev1"),
        1,
        "a desired value is not a restart"
    );

    // A Device moved to this node starts; a deleted one stops and is reported offline.
    api.patch(
        Kind::Device,
        NS,
        "other",
        &json!({"spec": {"nodeName": NODE}}),
    )
    .unwrap();
    assert!(online(&peer, "other").await);
    api.delete(Kind::Device, NS, "dev2").unwrap();
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev2").as_deref() == Some("offline"))
            .await
    );
    assert_eq!(connects(&state, "dev1"), 1);
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_and_410_relist_without_losing_anything() {
    let Some((broker, peer, state, api)) = setup().await else {
        return;
    };
    for d in ["dev1", "dev2", "dev3"] {
        seed(&state, d);
    }
    api.create(Kind::DeviceModel, NS, model()).unwrap();
    api.create(Kind::Device, NS, device("dev1", NODE, 100, None))
        .unwrap();
    api.create(Kind::Device, NS, device("dev2", NODE, 100, None))
        .unwrap();
    let mapper = Mapper::start(&broker, &state, &api, KubeWatch::Devices, "relist");
    assert!(online(&peer, "dev1").await && online(&peer, "dev2").await);

    // Expired watches resume from their version: a change made afterwards arrives.
    api.expire_watches();
    api.patch(
        Kind::Device,
        NS,
        "dev1",
        &device("dev1", NODE, 100, Some("12")),
    )
    .unwrap();
    assert!(
        wait_until(WAIT, || state.get("dev1", "setpoint")
            == Some(Value::Float(12.0)))
        .await
    );

    // Both watches resumed (two more watch requests) before the next step, so that the
    // changes below can only arrive through the re-list.
    let watches = |api: &FakeApi| {
        api.requests()
            .iter()
            .filter(|r| r.contains("watch=true"))
            .count()
    };
    assert!(
        wait_until(WAIT, || watches(&api) >= 4).await,
        "{:?}",
        api.requests()
    );

    // Changes the open watches never deliver, then 410: the re-list sees all of them.
    api.freeze_watches(true);
    api.create(Kind::Device, NS, device("dev3", NODE, 100, None))
        .unwrap();
    api.delete(Kind::Device, NS, "dev2").unwrap();
    api.patch(
        Kind::Device,
        NS,
        "dev1",
        &device("dev1", NODE, 100, Some("25")),
    )
    .unwrap();
    api.force_410();
    api.freeze_watches(false);
    assert!(
        online(&peer, "dev3").await,
        "created while the watch was stale"
    );
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev2").as_deref() == Some("offline"))
            .await,
        "deleted while the watch was stale"
    );
    assert!(
        wait_until(WAIT, || state.get("dev1", "setpoint")
            == Some(Value::Float(25.0)))
        .await
    );
    assert_eq!(
        connects(&state, "dev1"),
        1,
        "the re-list restarted nothing unchanged"
    );
    // The mapper went on watching: the 410 reached kube as an in-stream event and it
    // re-listed (a LIST after the first one).
    let lists = |api: &FakeApi| {
        api.requests()
            .iter()
            .filter(|r| r.contains("/devices?") && !r.contains("watch=true"))
            .count()
    };
    assert!(
        wait_until(WAIT, || lists(&api) >= 2).await,
        "{:?}",
        api.requests()
    );
    api.patch(
        Kind::Device,
        NS,
        "dev3",
        &device("dev3", NODE, 100, Some("7")),
    )
    .unwrap();
    assert!(
        wait_until(WAIT, || state.get("dev3", "setpoint")
            == Some(Value::Float(7.0)))
        .await
    );
    mapper.stop().await;
}
