//! The fake edgecore over a real socket: registration, reports, the limiter, restarts.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use dmi_api::transport::{Address, connect, dial};
use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_manager_service_client::DeviceManagerServiceClient;
use dmi_sim::limiter::LimiterConfig;
use dmi_sim::record::{Event, Method, Violation};
use dmi_sim::{Edgecore, Fixtures, Key, Version};
use tokio::io::AsyncReadExt as _;
use tonic::transport::Channel;

const FIXTURES: &str = include_str!("../fixtures/modbus-tcp.yaml");
const WAIT: Duration = Duration::from_secs(5);

async fn start(dir: &Path, version: Version, limiter: Option<LimiterConfig>) -> Edgecore {
    let fx = Fixtures::from_yaml(FIXTURES).unwrap();
    Edgecore::start(dir.join("dmi.sock"), version, fx, limiter)
        .await
        .unwrap()
}

async fn client(ec: &Edgecore) -> DeviceManagerServiceClient<Channel> {
    let ch = connect(&Address::Path(ec.socket().to_owned()), "localhost")
        .await
        .unwrap();
    DeviceManagerServiceClient::new(ch)
}

fn register(with_data: bool, address: &str) -> pb::MapperRegisterRequest {
    pb::MapperRegisterRequest {
        with_data,
        mapper: Some(pb::MapperInfo {
            name: "rust-modbus".into(),
            protocol: "modbus".into(),
            address: address.as_bytes().to_vec(),
            ..Default::default()
        }),
    }
}

fn twin(name: &str, value: &str, observed: bool) -> pb::Twin {
    pb::Twin {
        property_name: name.into(),
        observed_desired: observed.then(|| pb::TwinProperty {
            value: String::new(),
            metadata: Default::default(),
        }),
        reported: Some(pb::TwinProperty {
            value: value.into(),
            metadata: Default::default(),
        }),
    }
}

fn report(twins: Vec<pb::Twin>) -> pb::ReportDeviceStatusRequest {
    pb::ReportDeviceStatusRequest {
        device_name: "thermostat-1".into(),
        device_namespace: "default".into(),
        reported_device: Some(pb::DeviceStatus {
            twins,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn mapper_register_returns_the_protocols_devices_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ec = start(dir.path(), Version::V1_23, None).await;
    let mut c = client(&ec).await;

    let resp = c
        .mapper_register(register(true, "@x.modbus"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.device_list.len(), 1);
    assert_eq!(resp.model_list.len(), 1);
    let d = &resp.device_list[0];
    assert_eq!(
        (d.namespace.as_str(), d.name.as_str()),
        ("default", "thermostat-1")
    );
    assert_eq!(resp.model_list[0].name, "thermostat-model");
    let props = &d.spec.as_ref().unwrap().properties;
    assert_eq!(props[0].desired.as_ref().unwrap().value, "21");
    // configData numbers travel as FloatValue, as edgecore converts them.
    let port = &d
        .spec
        .as_ref()
        .unwrap()
        .protocol
        .as_ref()
        .unwrap()
        .config_data
        .as_ref()
        .unwrap()
        .data["port"];
    assert_eq!(
        port.type_url,
        "type.googleapis.com/google.protobuf.FloatValue"
    );

    let e = ec
        .wait_for(|e| matches!(e, Event::Registered(_)), WAIT)
        .await
        .unwrap();
    let Event::Registered(reg) = e else {
        unreachable!()
    };
    assert!(reg.address_recorded);
    assert_eq!(reg.devices, vec![Key::new("default", "thermostat-1")]);
    assert_eq!(ec.registrations().len(), 1);
    assert_eq!(ec.route("modbus"), Some(b"@x.modbus".to_vec()));
    ec.wait_for(
        |e| matches!(e, Event::Called(c) if c.method == Method::MapperRegister && c.code == tonic::Code::Ok),
        WAIT,
    )
    .await
    .unwrap();

    // Without withData: empty answer, address not recorded
    // (docs/kubeedge-dmi.md#quirk-withdata-false-does-not-route).
    let resp = c
        .mapper_register(register(false, "@other"))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.device_list.is_empty());
    assert_eq!(ec.registrations().len(), 2);
    assert!(!ec.registrations()[1].address_recorded);
    assert_eq!(ec.route("modbus"), Some(b"@x.modbus".to_vec()));
    ec.stop().await.unwrap();
    assert!(!dir.path().join("dmi.sock").exists());
}

#[tokio::test]
async fn reports_without_observed_desired_are_violations() {
    let dir = tempfile::tempdir().unwrap();
    let ec = start(dir.path(), Version::V1_23, None).await;
    let mut c = client(&ec).await;

    c.report_device_status(report(vec![twin("humidity", "40", true)]))
        .await
        .unwrap();
    let e = ec
        .wait_for(|e| matches!(e, Event::Reported(_)), WAIT)
        .await
        .unwrap();
    let Event::Reported(r) = e else {
        unreachable!()
    };
    assert_eq!(
        (r.property.as_str(), r.reported.as_str()),
        ("humidity", "40")
    );

    let err = c
        .report_device_status(report(vec![twin("humidity", "41", false)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    ec.wait_for(
        |e| matches!(e, Event::Violation(Violation::MissingObservedDesired { property, .. }) if property == "humidity"),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(ec.with_state(|s| s.reports.len()), 1);
}

#[tokio::test]
async fn a_tightened_limiter_refuses_with_edgecores_wording() {
    let dir = tempfile::tempdir().unwrap();
    let ec = start(dir.path(), Version::V1_23, Some(LimiterConfig::default())).await;
    let mut c = client(&ec).await;
    ec.set_limiter(Some(LimiterConfig {
        interval: Duration::from_secs(3600),
        burst: 1,
    }));
    c.report_device_status(report(vec![twin("humidity", "40", true)]))
        .await
        .unwrap();
    let err = c
        .report_device_status(report(vec![twin("humidity", "40", true)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unknown);
    assert_eq!(
        err.message(),
        "fail to report device status because of too many request: thermostat-1"
    );
    let err = c.mapper_register(register(true, "@x")).await.unwrap_err();
    assert_eq!(
        err.message(),
        "fail to register mapper because of too many request: rust-modbus"
    );
    ec.wait_for(
        |e| matches!(e, Event::Rejected(r) if r.method == Method::MapperRegister),
        WAIT,
    )
    .await
    .unwrap();
    ec.set_limiter(None);
    c.mapper_register(register(true, "@x")).await.unwrap();
}

#[tokio::test]
async fn latency_is_injected_per_method() {
    let dir = tempfile::tempdir().unwrap();
    let ec = start(dir.path(), Version::V1_23, None).await;
    let mut c = client(&ec).await;
    ec.set_method_latency(Method::MapperRegister, Duration::from_millis(400));
    let t = std::time::Instant::now();
    c.mapper_register(register(true, "@x")).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // A client deadline shorter than the latency fails the call (mapper-framework's 1 s).
    let mut req = tonic::Request::new(register(true, "@x"));
    req.set_timeout(Duration::from_millis(100));
    assert!(c.mapper_register(req).await.is_err());
    let t = std::time::Instant::now();
    c.report_device_status(report(vec![twin("humidity", "1", true)]))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_millis(400));
}

async fn restart_case(version: Version, restored: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut ec = start(dir.path(), version, None).await;
    let sock = dir.path().join("dmi.sock");
    let inode = std::fs::metadata(&sock).unwrap().ino();
    let mut c = client(&ec).await;
    c.mapper_register(register(true, "@x.modbus"))
        .await
        .unwrap();
    assert!(ec.route("modbus").is_some());
    let mut open = dial(&Address::Path(sock.clone())).await.unwrap();

    let mark = ec.event_count();
    ec.restart().await.unwrap();
    ec.wait_for_from(mark, |e| matches!(e, Event::Listening), WAIT)
        .await
        .unwrap();
    assert_ne!(std::fs::metadata(&sock).unwrap().ino(), inode, "{version}");
    assert_eq!(ec.route("modbus").is_some(), restored, "{version}");
    assert_eq!(ec.with_state(|s| s.starts), 2);
    // Connections open before the restart are closed.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, open.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "an old connection survived the restart");

    let mut c = client(&ec).await;
    c.mapper_register(register(true, "@x.modbus"))
        .await
        .unwrap();
    assert_eq!(ec.registrations().len(), 2);
    assert!(ec.route("modbus").is_some());
}

#[tokio::test]
async fn restart_forgets_registrations_up_to_1_22() {
    restart_case(Version::V1_22, false).await;
}

#[tokio::test]
async fn restart_restores_registrations_in_1_23() {
    restart_case(Version::V1_23, true).await;
}

#[tokio::test]
async fn states_follow_the_release_and_missing_mapper_is_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let ec = start(dir.path(), Version::V1_17, None).await;
    let mut c = client(&ec).await;
    let state = pb::ReportDeviceStatesRequest {
        device_name: "thermostat-1".into(),
        device_namespace: "default".into(),
        state: "online".into(),
    };
    let err = c.report_device_states(state.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    let err = c
        .mapper_register(pb::MapperRegisterRequest {
            with_data: true,
            mapper: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    ec.wait_for(
        |e| matches!(e, Event::Violation(Violation::MissingMapper)),
        WAIT,
    )
    .await
    .unwrap();
    ec.stop().await.unwrap();

    let ec = start(dir.path(), Version::V1_18, None).await;
    let mut c = client(&ec).await;
    c.report_device_states(state).await.unwrap();
    let e = ec
        .wait_for(|e| matches!(e, Event::State(_)), WAIT)
        .await
        .unwrap();
    assert_eq!(
        e.to_json()["device"],
        serde_json::json!("default/thermostat-1")
    );
}
