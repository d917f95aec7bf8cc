//! Store and forward: reports made while the broker is down reach it after it comes
//! back, with their original timestamps, in order, before newer ones, and once.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mapper_sdk::config::ProfileSetting;
use mapper_sdk::driver::DriverError;
use mapper_sdk::model::Value;
use mapper_sdk::testing::{
    InProcessMapper, MemoryDriver, MemoryState, Mosquitto, TwinPeer, test_settings, wait_until,
};
use mapper_sdk::twin::now_millis;
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(15);

/// One device: two twin properties and one data property, read every 100 ms and
/// reported on change only (the report cycle is an hour).
fn profile() -> String {
    let c = 100_000_000u64;
    let r = 3_600_000_000_000u64;
    format!(
        r#"{{"deviceInstances":[{{"id":"dev1","name":"dev1","protocol":"p","model":"m",
        "twins":[{{"propertyName":"temperature"}},{{"propertyName":"mode"}}],
        "data":{{"dataProperties":[{{"propertyName":"humidity","metadata":{{"type":"int"}}}}]}},
        "propertyVisitors":[
          {{"propertyName":"temperature","collectCycle":{c},"reportCycle":{r},"visitorConfig":{{}}}},
          {{"propertyName":"mode","collectCycle":{c},"reportCycle":{r},"visitorConfig":{{}}}},
          {{"propertyName":"humidity","collectCycle":{c},"reportCycle":{r},"visitorConfig":{{}}}}]}}],
        "deviceModels":[{{"name":"m","properties":[
          {{"name":"temperature","dataType":"int","accessMode":"ReadOnly"}},
          {{"name":"mode","dataType":"string","accessMode":"ReadWrite"}},
          {{"name":"humidity","dataType":"int","accessMode":"ReadOnly"}}]}}],
        "protocols":[{{"name":"p","protocol":"memory","protocolConfig":null,"protocolCommonConfig":null}}]}}"#
    )
}

/// A TCP forwarder between the mapper and the broker, so that the test decides when the
/// mapper may reconnect (after the peer has subscribed again). Counts the connection
/// attempts it sees.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
}

impl Gate {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let attempts = Arc::new(AtomicU64::new(0));
        let (o, a) = (Arc::clone(&open), Arc::clone(&attempts));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the mapper sees the connection fail
                }
                tokio::spawn(async move {
                    if let Ok(mut broker) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
            }
        });
        Self {
            port,
            open,
            attempts,
        }
    }
}

/// Waits until the device has been read at least twice more (so a change set before is
/// read and reported).
async fn wait_reads(state: &MemoryState) {
    let before = state.with("dev1", |d| d.reads);
    assert!(wait_until(WAIT, || state.with("dev1", |d| d.reads) >= before + 6).await);
}

fn ts(p: &Json) -> i64 {
    p["timestamp"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_made_while_the_broker_is_down_arrive_after_it_returns() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let gate = Gate::start(broker.port).await;
    let state = MemoryState::default();
    state.set("dev1", "temperature", Value::Int(25));
    state.set("dev1", "mode", Value::String("auto".into()));
    state.set("dev1", "humidity", Value::Int(40));
    let mut settings = test_settings(&broker, "test-store", ProfileSetting::Inline(profile()));
    settings.mqtt.port = gate.port;
    let mapper = InProcessMapper::start(MemoryDriver::new(state.clone()), settings);
    assert!(peer.wait_subscribed("dev1", WAIT).await);
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("25"))
            .await
    );

    // The broker goes away; the mapper notices (it tries to reconnect).
    let attempts = gate.attempts.load(Ordering::SeqCst);
    broker.kill();
    gate.open.store(false, Ordering::SeqCst);
    peer.clear();
    assert!(wait_until(WAIT, || gate.attempts.load(Ordering::SeqCst) > attempts).await);

    // Changes while it is down.
    state.set("dev1", "temperature", Value::Int(26));
    state.set("dev1", "humidity", Value::Int(41));
    wait_reads(&state).await;
    // The device drops off and comes back: offline, then online (the latest state).
    state.with("dev1", |d| {
        d.io_error = Some(DriverError::Link("cable".into()))
    });
    assert!(wait_until(WAIT, || state.with("dev1", |d| d.io_failures) >= 2).await);
    state.with("dev1", |d| d.io_error = None);
    let connects = state.with("dev1", |d| d.connects);
    assert!(wait_until(WAIT, || state.with("dev1", |d| d.connects) > connects).await);
    let set_27 = now_millis();
    state.set("dev1", "temperature", Value::Int(27));
    state.set("dev1", "humidity", Value::Int(42));
    state.set("dev1", "mode", Value::String("eco".into()));
    wait_reads(&state).await;

    // The broker is back; the peer subscribes before the mapper may reconnect.
    let subscribed = peer.subscriptions();
    let restart = now_millis();
    broker.restart();
    assert!(
        peer.wait(WAIT, |p| p.subscriptions() > subscribed).await,
        "the peer subscribes again"
    );
    gate.open.store(true, Ordering::SeqCst);
    assert!(
        peer.wait(WAIT, |p| p
            .on_topic("$hw/events/device/dev1/state/update")
            .iter()
            .any(|s| ts(s) >= restart))
            .await,
        "the state is republished after reconnect"
    );
    assert!(
        peer.wait(WAIT, |p| p
            .on_topic("$hw/events/device/dev1/twin/update")
            .iter()
            .any(|s| ts(s) >= restart))
            .await,
        "new reports follow"
    );

    let received = peer.received.lock().unwrap().clone();
    let dev1: Vec<(String, Json)> = received
        .iter()
        .filter(|m| {
            m.topic.contains("/dev1/")
                && ["/twin/update", "/data/update", "/state/update"]
                    .iter()
                    .any(|k| m.topic.ends_with(k))
        })
        .map(|m| (m.topic.clone(), m.payload.clone()))
        .collect();
    // Everything made before the restart comes before everything made after it.
    let first_new = dev1.iter().position(|(_, p)| ts(p) >= restart).unwrap();
    assert!(
        dev1[first_new..].iter().all(|(_, p)| ts(p) >= restart),
        "buffered reports arrive before newer ones: {dev1:#?}"
    );
    let old = &dev1[..first_new];
    // Nothing twice.
    for (i, m) in dev1.iter().enumerate() {
        assert!(!dev1[..i].contains(m), "sent twice: {m:?}");
    }
    // Twin values coalesced per property: the latest, with its original timestamp.
    let twins: Vec<&Json> = old
        .iter()
        .filter(|(t, _)| t.ends_with("/twin/update"))
        .map(|(_, p)| p)
        .collect();
    let values_of = |prop: &str| -> Vec<(String, i64)> {
        twins
            .iter()
            .filter_map(|p| {
                let v = p["twin"].get(prop)?["actual"]["value"].as_str()?;
                Some((v.to_owned(), ts(p)))
            })
            .collect()
    };
    let temps = values_of("temperature");
    assert_eq!(temps.len(), 1, "coalesced: {twins:#?}");
    assert_eq!(temps[0].0, "27");
    assert!(
        temps[0].1 >= set_27 && temps[0].1 < restart,
        "original timestamp"
    );
    let modes = values_of("mode");
    assert_eq!(modes.len(), 1, "coalesced: {twins:#?}");
    assert_eq!(modes[0].0, "eco");
    // Data samples: all kept, in order.
    let samples: Vec<String> = old
        .iter()
        .filter(|(t, _)| t.ends_with("/data/update"))
        .map(|(_, p)| p["data"]["humidity"]["value"].as_str().unwrap().to_owned())
        .collect();
    let i41 = samples.iter().position(|v| v == "41");
    let i42 = samples.iter().position(|v| v == "42");
    assert!(
        matches!((i41, i42), (Some(a), Some(b)) if a < b),
        "{samples:?}"
    );
    // The latest state only.
    let states: Vec<&str> = old
        .iter()
        .filter(|(t, _)| t.ends_with("/state/update"))
        .map(|(_, p)| p["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["online"], "{old:#?}");
    mapper.stop().await;
}

/// The mapper's own publishes about dev1, in arrival order.
fn mapper_reports(peer: &TwinPeer) -> Vec<(String, Json)> {
    peer.received
        .lock()
        .unwrap()
        .iter()
        .filter(|m| {
            m.topic.contains("/dev1/")
                && ["/twin/update", "/data/update", "/state/update"]
                    .iter()
                    .any(|k| m.topic.ends_with(k))
        })
        .map(|m| (m.topic.clone(), m.payload.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_file_carries_reports_across_a_mapper_restart() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buffer.json");
    let peer = TwinPeer::connect(broker.port).await;
    let gate = Gate::start(broker.port).await;
    let state = MemoryState::default();
    state.set("dev1", "temperature", Value::Int(25));
    state.set("dev1", "mode", Value::String("auto".into()));
    state.set("dev1", "humidity", Value::Int(40));
    let mut base = test_settings(&broker, "test-file", ProfileSetting::Inline(profile()));
    base.mqtt.port = gate.port;
    base.mqtt.buffer_file = Some(file.clone());
    let settings = || base.clone();
    let mapper = InProcessMapper::start(MemoryDriver::new(state.clone()), settings());
    assert!(peer.wait_subscribed("dev1", WAIT).await);

    let attempts = gate.attempts.load(Ordering::SeqCst);
    broker.kill();
    gate.open.store(false, Ordering::SeqCst);
    peer.clear();
    assert!(wait_until(WAIT, || gate.attempts.load(Ordering::SeqCst) > attempts).await);
    let set_41 = now_millis();
    state.set("dev1", "humidity", Value::Int(41));
    wait_reads(&state).await;
    // The mapper stops with the broker still away: the buffer goes to the file.
    mapper.stop().await;
    let stopped = now_millis();
    assert!(file.exists(), "written on shutdown");

    let mapper = InProcessMapper::start(MemoryDriver::new(state.clone()), settings());
    let subscribed = peer.subscriptions();
    broker.restart();
    assert!(peer.wait(WAIT, |p| p.subscriptions() > subscribed).await);
    gate.open.store(true, Ordering::SeqCst);
    // The sample taken by the first run arrives, first, with its own timestamp.
    assert!(
        peer.wait(WAIT, |p| mapper_reports(p)
            .iter()
            .any(|(t, m)| t.ends_with("/data/update")
                && m["data"]["humidity"]["value"] == "41"
                && (set_41..stopped).contains(&ts(m))))
            .await,
        "{:#?}",
        mapper_reports(&peer)
    );
    let reports = mapper_reports(&peer);
    assert!(
        ts(&reports[0].1) < stopped,
        "restored reports go first: {reports:#?}"
    );
    for (i, m) in reports.iter().enumerate() {
        assert!(!reports[..i].contains(m), "sent twice: {m:?}");
    }
    // Delivered, the file is gone: a later restart does not send it again.
    assert!(wait_until(WAIT, || !file.exists()).await);
    mapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_buffer_file_is_a_warning_and_an_empty_start() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buffer.json");
    std::fs::write(&file, b"not json").unwrap();
    let peer = TwinPeer::connect(broker.port).await;
    let state = MemoryState::default();
    state.set("dev1", "temperature", Value::Int(25));
    state.set("dev1", "mode", Value::String("auto".into()));
    state.set("dev1", "humidity", Value::Int(40));
    let mut settings = test_settings(&broker, "test-corrupt", ProfileSetting::Inline(profile()));
    settings.mqtt.buffer_file = Some(file.clone());
    let mapper = InProcessMapper::start(MemoryDriver::new(state.clone()), settings);
    assert!(
        peer.wait(WAIT, |p| p.last_actual("dev1", "temperature").as_deref()
            == Some("25"))
            .await
    );
    mapper.stop().await;
    // Nothing was left undelivered: the broken file was replaced by an empty buffer.
    assert!(!file.exists());
}
