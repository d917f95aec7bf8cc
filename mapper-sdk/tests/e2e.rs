//! End to end: the SDK's `run` with the in-memory driver against a real mosquitto, with a
//! peer client playing edgecore.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use mapper_sdk::config::ProfileSetting;
use mapper_sdk::driver::DriverError;
use mapper_sdk::model::Value;
use mapper_sdk::testing::{
    InProcessMapper, MemoryDriver, MemoryState, Mosquitto, TwinPeer, test_settings, wait_until,
};

const WAIT: Duration = Duration::from_secs(15);

fn profile(devices: &[(&str, u64)]) -> String {
    let instances: Vec<String> = devices
        .iter()
        .map(|(name, cycle_ms)| {
            format!(
                r#"{{"id":"{name}","name":"{name}","protocol":"p-{name}","model":"m",
                "twins":[{{"propertyName":"temperature","desired":{{"value":"","metadata":{{"type":"int"}}}}}},
                         {{"propertyName":"setpoint","desired":{{"value":"","metadata":{{"type":"float"}}}}}},
                         {{"propertyName":"enable"}},{{"propertyName":"mode"}}],
                "data":{{"dataProperties":[{{"propertyName":"humidity","metadata":{{"type":"int"}}}}]}},
                "propertyVisitors":[
                  {{"propertyName":"temperature","collectCycle":{c},"visitorConfig":{{"key":"temperature"}}}},
                  {{"propertyName":"setpoint","collectCycle":{c},"visitorConfig":{{}}}},
                  {{"propertyName":"enable","collectCycle":{c},"visitorConfig":{{}}}},
                  {{"propertyName":"mode","collectCycle":{c},"visitorConfig":{{}}}},
                  {{"propertyName":"humidity","collectCycle":{c},"visitorConfig":{{}}}}]}}"#,
                c = cycle_ms * 1_000_000
            )
        })
        .collect();
    let protocols: Vec<String> = devices
        .iter()
        .map(|(name, _)| format!(r#"{{"name":"p-{name}","protocol":"memory","protocolConfig":null,"protocolCommonConfig":null}}"#))
        .collect();
    format!(
        r#"{{"deviceInstances":[{}],
        "deviceModels":[{{"name":"m","properties":[
          {{"name":"temperature","dataType":"int","accessMode":"ReadOnly","minimum":-40,"maximum":120}},
          {{"name":"setpoint","dataType":"float","accessMode":"ReadWrite","minimum":5,"maximum":35}},
          {{"name":"enable","dataType":"boolean","accessMode":"ReadWrite"}},
          {{"name":"mode","dataType":"string","accessMode":"ReadWrite"}},
          {{"name":"humidity","dataType":"int","accessMode":"ReadOnly"}}]}}],
        "protocols":[{}]}}"#,
        instances.join(","),
        protocols.join(",")
    )
}

fn seed(state: &MemoryState, device: &str) {
    state.set(device, "temperature", Value::Int(25));
    state.set(device, "setpoint", Value::Float(20.0));
    state.set(device, "enable", Value::Bool(false));
    state.set(device, "mode", Value::String("auto".into()));
    state.set(device, "humidity", Value::Int(40));
}

struct Mapper;

impl Mapper {
    fn start(
        broker: &Mosquitto,
        state: &MemoryState,
        profile: ProfileSetting,
        name: &str,
    ) -> InProcessMapper {
        let settings = test_settings(broker, &format!("test-{name}"), profile);
        InProcessMapper::start(MemoryDriver::new(state.clone()), settings)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_values_state_and_data_on_kubeedge_topics() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    seed(&state, "dev1");
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::Inline(profile(&[("dev1", 100)])),
        "report",
    );

    assert!(
        peer.wait(WAIT, |p| p.last_state("dev1").as_deref() == Some("online"))
            .await
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("25"))
            .await
    );
    let updates = peer.on_topic("$hw/events/device/dev1/twin/update");
    let first = &updates[0];
    // One twin/update carries every twin property read in the same tick.
    let twin = first["twin"].as_object().unwrap();
    assert_eq!(twin.len(), 4, "{first}");
    assert_eq!(first["event_id"], "");
    assert!(first["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(twin["temperature"]["metadata"]["type"], "int");
    assert_eq!(twin["setpoint"]["actual"]["value"], "20");
    assert_eq!(twin["enable"]["actual"]["value"], "false");
    assert_eq!(twin["mode"]["actual"]["value"], "auto");
    assert!(
        twin.values().all(|t| t.get("expected").is_none()),
        "never send expected"
    );
    assert!(
        !twin.contains_key("humidity"),
        "data-only property is not a twin"
    );
    // The data property goes to the data topic.
    assert!(
        peer.wait(WAIT, |p| !p
            .on_topic("$ke/events/device/dev1/data/update")
            .is_empty())
            .await
    );
    let data = &peer.on_topic("$ke/events/device/dev1/data/update")[0];
    assert_eq!(data["data"]["humidity"]["value"], "40");
    assert_eq!(data["data"]["humidity"]["metadata"]["type"], "int");
    // The mapper asked for the twin once connected.
    assert!(peer.wait_subscribed("dev1", WAIT).await);

    // A change is reported; the heartbeat (report cycle = collect cycle here) keeps going.
    state.set("dev1", "temperature", Value::Int(-3));
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("-3"))
            .await
    );

    mapper.stop().await;
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev1").as_deref() == Some("offline"))
            .await,
        "offline on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_is_written_read_back_and_reported() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    seed(&state, "dev1");
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::Inline(profile(&[("dev1", 200)])),
        "delta",
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "setpoint").as_deref()
            == Some("20"))
            .await
    );
    assert!(peer.wait_subscribed("dev1", WAIT).await);

    peer.send_delta(
        "dev1",
        &[("setpoint", "22.50"), ("enable", "true"), ("mode", "eco")],
    )
    .await;
    assert!(
        wait_until(WAIT, || state.get("dev1", "mode")
            == Some(Value::String("eco".into())))
        .await
    );
    assert_eq!(state.get("dev1", "setpoint"), Some(Value::Float(22.5)));
    assert_eq!(state.get("dev1", "enable"), Some(Value::Bool(true)));
    // Reported back with the expected text, so edgecore's string-compare delta clears.
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "setpoint").as_deref()
            == Some("22.50"))
            .await
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "enable").as_deref()
            == Some("true"))
            .await
    );

    // Repeated deltas (edgecore re-sends them after every update) are idempotent.
    let writes = state.with("dev1", |d| d.writes.len());
    for _ in 0..3 {
        peer.send_delta("dev1", &[("setpoint", "22.50")]).await;
    }
    peer.send_delta("dev1", &[("mode", "eco2")]).await;
    assert!(
        wait_until(WAIT, || state.get("dev1", "mode")
            == Some(Value::String("eco2".into())))
        .await
    );
    assert_eq!(
        state.with("dev1", |d| d.writes.len()),
        writes + 1,
        "only the new value was written"
    );
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_get_on_connect_is_treated_like_a_delta() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    peer.expected.lock().unwrap().insert(
        "dev1".into(),
        [("setpoint".to_owned(), "30".to_owned())].into(),
    );
    let state = MemoryState::default();
    seed(&state, "dev1");
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::Inline(profile(&[("dev1", 200)])),
        "get",
    );
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
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_write_survives_a_broker_restart() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    seed(&state, "dev1");
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::Inline(profile(&[("dev1", 100)])),
        "restart",
    );
    assert!(peer.wait_subscribed("dev1", WAIT).await);

    // The device refuses writes for now: the desired value stays pending.
    state.with("dev1", |d| {
        d.io_error = Some(DriverError::Refused("busy".into()))
    });
    peer.send_delta("dev1", &[("mode", "manual")]).await;
    assert!(
        wait_until(WAIT, || state.with("dev1", |d| d.write_attempts >= 2)).await,
        "write retried"
    );

    broker.kill();
    peer.clear();
    state.with("dev1", |d| d.io_error = None);
    // A desired value set while the mapper was cut off reaches it only through twin/get.
    peer.expected
        .lock()
        .unwrap()
        .get_mut("dev1")
        .unwrap()
        .insert("enable".into(), "true".into());
    broker.restart();
    // After the restart the pending write lands, and the mapper re-subscribes and asks
    // for the twin (again, until edgecore answers).
    assert!(
        wait_until(WAIT, || state.get("dev1", "mode")
            == Some(Value::String("manual".into())))
        .await
    );
    assert!(
        peer.wait(WAIT, |p| !p
            .on_topic("$hw/events/device/dev1/twin/get")
            .is_empty())
            .await,
        "twin/get after reconnect"
    );
    assert!(
        wait_until(WAIT, || state.get("dev1", "enable")
            == Some(Value::Bool(true)))
        .await
    );
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "mode").as_deref()
            == Some("manual"))
            .await
    );
    // Deltas reach the mapper again: the subscription was renewed.
    peer.send_delta("dev1", &[("mode", "after-restart")]).await;
    assert!(
        wait_until(WAIT, || state.get("dev1", "mode")
            == Some(Value::String("after-restart".into())))
        .await
    );
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_deltas_are_refused_and_healthy_devices_keep_running() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    seed(&state, "dev1");
    seed(&state, "dev2");
    state.with("dev2", |d| {
        d.connect_error = Some(DriverError::Link("unplugged".into()))
    });
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::Inline(profile(&[("dev1", 100), ("dev2", 100)])),
        "hostile",
    );
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev1").as_deref() == Some("online"))
            .await
    );
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev2").as_deref() == Some("offline"))
            .await,
        "unreachable device is offline"
    );
    assert!(peer.wait_subscribed("dev1", WAIT).await);

    let delta = "$hw/events/device/dev1/twin/update/delta";
    for bad in [
        &b"not json"[..],
        b"[]",
        br#"{"delta": "x"}"#,
        br#"{"delta": {"setpoint": {"nested": 1}}}"#,
        br#"{"delta": {"temperature": "99"}}"#, // ReadOnly
        br#"{"delta": {"unknown": "1"}}"#,      // no such property
        br#"{"delta": {"setpoint": "abc"}}"#,   // not a float
        br#"{"delta": {"setpoint": "99"}}"#,    // above the model's maximum 35
        br#"{"delta": {"enable": "maybe"}}"#,   // not a boolean
    ] {
        peer.publish_raw(delta, bad).await;
    }
    peer.publish_raw("$hw/events/device/dev1/twin/get/result", b"\xff\xfe")
        .await;
    peer.publish_raw(
        "$hw/events/device/nobody/twin/update/delta",
        br#"{"delta": {"mode": "x"}}"#,
    )
    .await;
    // A good delta after the bad ones still lands, and nothing bad was written.
    peer.send_delta("dev1", &[("mode", "ok")]).await;
    assert!(
        wait_until(WAIT, || state.get("dev1", "mode")
            == Some(Value::String("ok".into())))
        .await
    );
    let writes = state.with("dev1", |d| d.writes.clone());
    assert_eq!(
        writes,
        vec![("mode".to_owned(), Value::String("ok".into()))]
    );
    // The healthy device keeps reporting.
    state.set("dev1", "temperature", Value::Int(31));
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("31"))
            .await
    );
    // The unplugged device comes back by itself.
    state.with("dev2", |d| d.connect_error = None);
    assert!(
        peer.wait(WAIT, |p| p.last_state("dev2").as_deref() == Some("online"))
            .await
    );
    mapper.stop().await;
}

fn write_profile(path: &Path, text: &str) {
    // Replace atomically, as the kubelet does.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_edit_restarts_only_the_changed_device() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    for d in ["a", "b", "c"] {
        seed(&state, d);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deviceProfile.json");
    write_profile(&path, &profile(&[("a", 100), ("b", 100), ("c", 100)]));
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::File(path.clone()),
        "reload",
    );
    for d in ["a", "b", "c"] {
        assert!(
            peer.wait(WAIT, |p| p.last_state(d).as_deref() == Some("online"))
                .await,
            "{d}"
        );
    }
    let connects = |d: &str| state.with(d, |s| s.connects);
    assert_eq!((connects("a"), connects("b"), connects("c")), (1, 1, 1));

    // b's cycle changes, c disappears, d appears, a is untouched.
    seed(&state, "d");
    write_profile(&path, &profile(&[("a", 100), ("b", 300), ("d", 100)]));
    assert!(wait_until(WAIT, || connects("b") == 2 && connects("d") == 1).await);
    assert!(
        peer.wait(WAIT, |p| p.last_state("c").as_deref() == Some("offline"))
            .await,
        "removed device reported offline"
    );
    assert_eq!(connects("a"), 1, "unchanged device not restarted");

    // A broken profile keeps the running devices; a fixed one is picked up again.
    write_profile(&path, "{ this is not json");
    // Nothing may change: the condition must hold for a while after the edit.
    let changed = wait_until(Duration::from_secs(1), || {
        (connects("a"), connects("b"), connects("d")) != (1, 2, 1)
    })
    .await;
    assert!(
        !changed,
        "a broken profile must not stop or restart devices"
    );
    state.set("a", "temperature", Value::Int(77));
    assert!(
        peer.wait(WAIT, |p| p.last_actual("a", "temperature").as_deref()
            == Some("77"))
            .await
    );
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_profiles_never_stop_healthy_devices() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    for d in ["a", "b", "c"] {
        seed(&state, d);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deviceProfile.json");
    let good = profile(&[("a", 100), ("b", 100), ("c", 100)]);
    write_profile(&path, &good);
    let mapper = Mapper::start(
        &broker,
        &state,
        ProfileSetting::File(path.clone()),
        "badprof",
    );
    for d in ["a", "b", "c"] {
        assert!(
            peer.wait(WAIT, |p| p.last_state(d).as_deref() == Some("online"))
                .await,
            "{d}"
        );
    }
    let connects = |d: &str| state.with(d, |s| s.connects);
    let offline = |d: &str| {
        peer.on_topic(&format!("$hw/events/device/{d}/state/update"))
            .iter()
            .filter(|p| p.get("state").and_then(|s| s.as_str()) == Some("offline"))
            .count()
    };
    let all_failing = good.replace(r#""model":"m""#, r#""model":"gone""#);
    let bad = [
        r#"{"deviceInstances":[[[1]]]}"#.to_owned(),
        format!(
            r#"{{"deviceInstances":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        ),
        good.replacen('{', r#"{"propertyVisitors":null,"#, 1),
        good.replacen('{', r#"{"deviceModels":{"name":"m"},"#, 1),
        all_failing,
    ];
    for text in &bad {
        write_profile(&path, text);
        // Nothing may change: the condition must hold for a while after the edit.
        let changed = wait_until(Duration::from_secs(1), || {
            (connects("a"), connects("b"), connects("c")) != (1, 1, 1)
                || offline("a") + offline("b") + offline("c") > 0
        })
        .await;
        assert!(
            !changed,
            "a broken profile stopped or restarted devices: {}",
            &text[..60.min(text.len())]
        );
    }
    // b gets an error and c leaves: c stops, b keeps running on its old definition.
    let b_broken = profile(&[("a", 100), ("b", 100)]).replace(
        r#""id":"b","name":"b","protocol":"p-b","model":"m""#,
        r#""id":"b","name":"b","protocol":"p-b","model":"missing""#,
    );
    assert!(b_broken.contains(r#""model":"missing""#));
    write_profile(&path, &b_broken);
    assert!(
        peer.wait(WAIT, |p| p.last_state("c").as_deref() == Some("offline"))
            .await,
        "a device really absent from the profile stops"
    );
    assert_eq!((connects("a"), connects("b")), (1, 1));
    assert_eq!(offline("a") + offline("b"), 0);
    state.set("b", "temperature", Value::Int(66));
    assert!(
        peer.wait(WAIT, |p| p.last_actual("b", "temperature").as_deref()
            == Some("66"))
            .await,
        "the device with errors still runs"
    );
    mapper.stop().await;
}
