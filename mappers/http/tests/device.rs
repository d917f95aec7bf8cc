//! The driver against http-sim, without the SDK runtime: batched reads, writes, keep-alive,
//! and every fault mapped to the right `DriverError`. Also: the device-model files bind.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{plug_profile, plug_sim, read};
use http_mapper::{HttpDevice, HttpDriver};
use http_sim::Fault;
use mapper_sdk::driver::{Device, DeviceSpec, Driver, DriverError, PropertySpec};
use mapper_sdk::model::Value;
use mapper_sdk::profile::ResolveOptions;
use serde_json::json;

fn spec(profile: &str) -> DeviceSpec<HttpDriver> {
    let mut loaded = mapper_sdk::load(&HttpDriver, profile, &ResolveOptions::default());
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    loaded.devices.remove(0)
}

fn prop<'a>(
    spec: &'a DeviceSpec<HttpDriver>,
    name: &str,
) -> &'a PropertySpec<http_mapper::HttpVisitor> {
    spec.properties
        .iter()
        .find(|p| p.def.name.as_str() == name)
        .unwrap()
}

async fn connected(
    port: u16,
    edit: impl Fn(&str) -> String,
) -> (DeviceSpec<HttpDriver>, HttpDevice) {
    let s = spec(&edit(&plug_profile(port).to_string()));
    let dev = HttpDriver.connect(&s).await.unwrap();
    (s, dev)
}

#[tokio::test]
async fn one_get_per_document_and_keep_alive() {
    let sim = plug_sim(&[]);
    let server = sim.serve("127.0.0.1:0").await.unwrap();
    let (s, mut dev) = connected(server.port(), str::to_owned).await;
    let all: Vec<_> = s.properties.iter().collect();
    for _ in 0..10 {
        let values = dev.read_many(&all).await;
        let by_name: Vec<(String, Value)> = s
            .properties
            .iter()
            .zip(values)
            .map(|(p, v)| (p.def.name.to_string(), v.unwrap()))
            .collect();
        assert_eq!(
            by_name,
            [
                ("relay".into(), Value::Bool(true)),
                ("power".into(), Value::Float(48.2)),
                ("voltage".into(), Value::Float(230.1)),
                ("energy".into(), Value::Float(1234.5)),
                ("power-limit".into(), Value::Int(2000)),
            ]
        );
    }
    let stats = sim.stats();
    assert_eq!(
        stats.gets["/status"], 10,
        "four properties, one GET per read"
    );
    assert_eq!(stats.gets["/settings"], 10);
    // The connect probe, then one kept-alive connection for all 20 requests.
    assert!(stats.connections <= 2, "{} connections", stats.connections);
}

#[tokio::test]
async fn writes_use_the_method_path_and_body_of_the_visitor() {
    let sim = plug_sim(&[("max: 3600", "max: 3000")]);
    let server = sim.serve("127.0.0.1:0").await.unwrap();
    let (s, mut dev) = connected(server.port(), str::to_owned).await;
    dev.write(prop(&s, "relay"), &Value::Bool(false))
        .await
        .unwrap();
    assert_eq!(sim.value("/status", "/relay/on"), Some(json!(false)));
    dev.write(prop(&s, "power-limit"), &Value::Int(1500))
        .await
        .unwrap();
    assert_eq!(sim.value("/settings", "/limitW"), Some(json!(1500)));
    let writes = sim.stats().writes;
    assert_eq!(
        (writes[0].method.as_str(), writes[0].path.as_str()),
        ("PUT", "/status")
    );
    assert_eq!(writes[0].body, r#"{"relay": {"on": false}}"#);
    assert_eq!(
        (writes[1].method.as_str(), writes[1].body.as_str()),
        ("POST", r#"{"limitW": 1500}"#)
    );
    // The device refuses the value itself (422): Invalid, which the SDK drops at once.
    let e = dev
        .write(prop(&s, "power-limit"), &Value::Int(3500))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Invalid(m) if m.contains("422") && m.contains("/settings")),
        "{e:?}"
    );
    // Writing a read-only field of the device's document is refused too.
    assert_eq!(sim.value("/settings", "/limitW"), Some(json!(1500)));
}

#[track_caller]
fn check(r: Result<Value, DriverError>, want: &str, text: &str) {
    let e = r.unwrap_err();
    let kind = match &e {
        DriverError::Link(_) => "link",
        DriverError::Timeout(_) => "timeout",
        DriverError::Refused(_) => "refused",
        DriverError::Invalid(_) => "invalid",
    };
    assert_eq!(kind, want, "{e}");
    assert!(e.to_string().contains(text), "{text:?} not in: {e}");
}

#[tokio::test]
async fn faults_become_the_right_driver_errors() {
    let sim = plug_sim(&[]);
    let server = sim.serve("127.0.0.1:0").await.unwrap();
    let (s, mut dev) = connected(server.port(), |t| {
        assert!(t.contains("\"timeoutMs\":2000"));
        t.replace(
            "\"timeoutMs\":2000",
            "\"timeoutMs\":300,\"maxBodyBytes\":4096",
        )
    })
    .await;
    let relay = prop(&s, "relay");

    sim.set_fault(Fault::Status(503));
    check(dev.read(relay).await, "refused", "HTTP 503");
    sim.clear_faults();
    sim.set_fault(Fault::InvalidJson);
    check(dev.read(relay).await, "invalid", "not JSON");
    sim.clear_faults();
    sim.set_fault(Fault::HugeBody(100_000));
    check(dev.read(relay).await, "invalid", "larger than 4096 bytes");
    sim.clear_faults();
    sim.set_fault(Fault::Delay(Duration::from_millis(1000)));
    check(dev.read(relay).await, "timeout", "300ms");
    sim.clear_faults();
    assert_eq!(dev.read(relay).await.unwrap(), Value::Bool(true));

    // A pointer the document lacks names the pointer and what is there instead.
    assert!(sim.set_value("/status", "/relay", json!({"state": "on"})));
    check(dev.read(relay).await, "invalid", "pointer /relay/on");

    // The server goes away: the open connection is cut, new ones are refused.
    sim.set_fault(Fault::Down);
    check(dev.read(relay).await, "link", "GET http://127.0.0.1");
    let e = HttpDriver.connect(&s).await.err().unwrap();
    assert!(e.is_link(), "{e}");
    // In a batch, the first lost link fails the rest without more requests.
    let all: Vec<_> = s.properties.iter().collect();
    let results = dev.read_many(&all).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(DriverError::is_link))
    );
    sim.clear_faults();
    let mut back = None;
    for _ in 0..100 {
        if let Ok(d) = HttpDriver.connect(&s).await {
            back = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut dev = back.expect("the server listens again");
    assert_eq!(
        dev.read(prop(&s, "power")).await.unwrap(),
        Value::Float(48.2)
    );
}

/// The device-model files bind to the driver without errors or warnings, in both forms.
#[test]
fn device_model_files_bind_to_the_http_driver() {
    for file in ["profile.json", "v1beta1.yaml"] {
        let text = read(&format!("device-models/smart-plug/{file}"));
        let loaded = mapper_sdk::load(&HttpDriver, &text, &ResolveOptions::default());
        assert!(loaded.errors.is_empty(), "{file}: {:#?}", loaded.errors);
        assert!(loaded.warnings.is_empty(), "{file}: {:#?}", loaded.warnings);
        assert_eq!(loaded.devices.len(), 1, "{file}");
        let d = &loaded.devices[0];
        assert_eq!(d.properties.len(), 5, "{file}");
        assert_eq!(d.protocol.base.to_string(), "http://127.0.0.1:8080");
        let limit = d
            .properties
            .iter()
            .find(|p| p.def.name.as_str() == "power-limit")
            .unwrap();
        assert_eq!(limit.visitor.write.method, http::Method::POST, "{file}");
        assert_eq!(limit.def.maximum, Some(3600.0), "{file}");
    }
}
