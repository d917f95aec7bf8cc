//! Driving a mapper like edgecore: route by the registered address, convert, one
//! connection per call, grpc-go's authority.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Got, Mapper};
use dmi_api::transport::{Address, connect};
use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_manager_service_client::DeviceManagerServiceClient;
use dmi_sim::client::ClientError;
use dmi_sim::{Edgecore, Fixtures, Key, MapperClient, Version};

const FIXTURES: &str = include_str!("../fixtures/modbus-tcp.yaml");

async fn registered(dir: &std::path::Path, version: Version, mapper: &Mapper) -> Edgecore {
    let fx = Fixtures::from_yaml(FIXTURES).unwrap();
    let ec = Edgecore::start(dir.join("dmi.sock"), version, fx, None)
        .await
        .unwrap();
    let ch = connect(&Address::Path(ec.socket().to_owned()), "localhost")
        .await
        .unwrap();
    DeviceManagerServiceClient::new(ch)
        .mapper_register(pb::MapperRegisterRequest {
            with_data: true,
            mapper: Some(pb::MapperInfo {
                name: "m".into(),
                protocol: "modbus".into(),
                address: mapper.address.to_text().into_bytes(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    ec
}

fn desired(d: &pb::Device, property: &str) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .properties
        .iter()
        .find(|p| p.name == property)
        .and_then(|p| p.desired.as_ref())
        .map(|t| t.value.clone())
        .unwrap()
}

#[tokio::test]
async fn life_cycle_calls_reach_the_registered_mapper() {
    let mapper = Mapper::start_abstract().await;
    let dir = tempfile::tempdir().unwrap();
    let ec = registered(dir.path(), Version::V1_23, &mapper).await;
    let dev = Key::new("default", "thermostat-1");
    let model = Key::new("default", "thermostat-model");

    let created = ec.create_device_model(&model).await.unwrap();
    assert_eq!(created.device_model_name, "thermostat-model");
    let resp = ec.register_device(&dev).await.unwrap();
    assert_eq!(resp.device_name, "thermostat-1");
    let sent = ec.set_desired(&dev, "temperature", "25").unwrap();
    assert_eq!(desired(&sent, "temperature"), "25");
    ec.update_device(&dev).await.unwrap();
    ec.update_device_model(&model).await.unwrap();
    ec.get_device("modbus", &dev).await.unwrap();
    ec.remove_device(&dev).await.unwrap();
    ec.remove_device_model(&model).await.unwrap();

    let got = mapper.got();
    assert_eq!(got.len(), 7, "{got:?}");
    let Got::Register(d) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(desired(d, "temperature"), "21");
    let slave = &d
        .spec
        .as_ref()
        .unwrap()
        .protocol
        .as_ref()
        .unwrap()
        .config_data
        .as_ref()
        .unwrap()
        .data["slaveID"];
    assert_eq!(
        slave.type_url,
        "type.googleapis.com/google.protobuf.FloatValue"
    );
    let Got::Update(d) = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(desired(d, "temperature"), "25");
    assert!(
        matches!(&got[6], Got::RemoveModel(ns, n) if ns == "default" && n == "thermostat-model")
    );
    assert!(matches!(&got[5], Got::Remove(ns, n) if ns == "default" && n == "thermostat-1"));
    // Removed from the cache too.
    assert!(matches!(
        ec.register_device(&dev).await,
        Err(ClientError::NotCached(_))
    ));
}

#[tokio::test]
async fn no_registered_mapper_is_edgecores_error() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixtures::from_yaml(FIXTURES).unwrap();
    let ec = Edgecore::start(dir.path().join("dmi.sock"), Version::V1_23, fx, None)
        .await
        .unwrap();
    let err = ec
        .register_device(&Key::new("default", "thermostat-1"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "fail to get dmi client of protocol modbus");
}

#[tokio::test]
async fn one_fifteen_sends_no_namespace() {
    let mapper = Mapper::start_abstract().await;
    let dir = tempfile::tempdir().unwrap();
    let ec = registered(dir.path(), Version::V1_15, &mapper).await;
    let dev = Key::new("default", "thermostat-1");
    ec.register_device(&dev).await.unwrap();
    ec.remove_device(&dev).await.unwrap();
    let got = mapper.got();
    let Got::Register(d) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(d.namespace, "");
    assert!(matches!(&got[1], Got::Remove(ns, _) if ns.is_empty()));
}

#[tokio::test]
async fn unreachable_mappers_fail_unavailable_and_file_sockets_hit_the_authority_trap() {
    let dir = tempfile::tempdir().unwrap();
    let missing = MapperClient::new(common::abstract_address());
    assert!(missing.authority().starts_with('@'));
    let err = missing.remove_device("ns", "d").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");

    // A stock tonic mapper on a socket file: grpc-go's percent-encoded path is not an
    // authority tonic can even send, and h2 would reset it (see tests/probe.rs).
    let file = Mapper::start(Address::Path(dir.path().join("m.sock"))).await;
    let encoded = MapperClient::new(file.address.clone());
    let expected = dir
        .path()
        .join("m.sock")
        .display()
        .to_string()
        .replace('/', "%2F");
    assert_eq!(encoded.authority(), expected);
    let err = MapperClient::new(file.address.clone())
        .remove_device("ns", "d")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidAuthority(_)), "{err}");
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(file.got().is_empty());
    // With a valid authority the same mapper answers.
    MapperClient::new(file.address.clone())
        .with_authority("localhost")
        .with_timeout(Duration::from_secs(2))
        .remove_device("ns", "d")
        .await
        .unwrap();
    assert_eq!(file.got().len(), 1);
}
