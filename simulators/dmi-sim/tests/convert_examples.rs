//! The examples of docs/kubeedge-dmi.md#example-a-modbus-tcp-device-as-edgecore-123-sends-it
//! and docs/kubeedge-dmi.md#example-a-ble-device: the CRDs converted must equal the
//! messages edgecore sends for them.

use dmi_sim::convert::{convert_device, convert_model};
use dmi_sim::json::{device_json, model_json};
use dmi_sim::{Fixtures, Key, Version};
use serde_json::json;

const BOILER: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: boiler-model, namespace: plant-a}
spec:
  protocol: modbus
  properties:
  - {name: temperature, description: water temperature, type: FLOAT, accessMode: ReadOnly, minimum: "-20", maximum: "150", unit: degC}
  - {name: setpoint, description: target temperature, type: INT, accessMode: ReadWrite, minimum: "30", maximum: "90", unit: degC}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: boiler-1, namespace: plant-a}
spec:
  deviceModelRef: {name: boiler-model}
  nodeName: edge-01
  protocol:
    protocolName: modbus
    configData: {ip: 192.168.10.50, port: 502, slaveID: 1}
  properties:
  - name: temperature
    collectCycle: 1000
    reportCycle: 10000
    reportToCloud: true
    visitors:
      protocolName: modbus
      configData: {register: InputRegister, offset: 0, limit: 2, scale: 0.1, isSwap: false, isRegisterSwap: true}
  - name: setpoint
    desired: {value: "65"}
    collectCycle: 5000
    reportToCloud: true
    visitors:
      protocolName: modbus
      configData: {register: HoldingRegister, offset: 10, limit: 1, scale: 1}
  methods:
  - {name: set-setpoint, propertyNames: [setpoint]}
  stateReport: {reportToCloud: true, reportCycle: 30000}
"#;

fn s(v: &str) -> serde_json::Value {
    json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": v})
}
fn f(v: serde_json::Value) -> serde_json::Value {
    json!({"@type": "type.googleapis.com/google.protobuf.FloatValue", "value": v})
}
fn b(v: bool) -> serde_json::Value {
    json!({"@type": "type.googleapis.com/google.protobuf.BoolValue", "value": v})
}

#[test]
fn modbus_example_converts_like_edgecore_1_23() {
    let fx = Fixtures::from_yaml(BOILER).unwrap();
    let model = &fx.models[&Key::new("plant-a", "boiler-model")];
    let device = &fx.devices[&Key::new("plant-a", "boiler-1")];
    let m = convert_model(model, Version::V1_23).unwrap();
    assert_eq!(
        model_json(&m),
        json!({"name": "boiler-model", "namespace": "plant-a", "spec": {"properties": [
            {"name": "temperature", "description": "water temperature", "type": "FLOAT",
             "accessMode": "ReadOnly", "minimum": "-20", "maximum": "150", "unit": "degC"},
            {"name": "setpoint", "description": "target temperature", "type": "INT",
             "accessMode": "ReadWrite", "minimum": "30", "maximum": "90", "unit": "degC"}]}})
    );
    let d = convert_device(device, Some(model), Version::V1_23).unwrap();
    let expected = json!({
        "name": "boiler-1", "namespace": "plant-a",
        "spec": {
            "deviceModelReference": "boiler-model",
            "protocol": {"protocolName": "modbus", "configData": {"data": {
                "ip": s("192.168.10.50"), "port": f(json!(502)), "slaveID": f(json!(1))}}},
            "properties": [
                {"name": "temperature", "desired": {},
                 "visitors": {"protocolName": "modbus", "configData": {"data": {
                    "register": s("InputRegister"), "offset": f(json!(0)), "limit": f(json!(2)),
                    "scale": f(json!(0.1)), "isSwap": b(false), "isRegisterSwap": b(true)}}},
                 "reportCycle": "10000", "collectCycle": "1000", "reportToCloud": true},
                {"name": "setpoint", "desired": {"value": "65"},
                 "visitors": {"protocolName": "modbus", "configData": {"data": {
                    "register": s("HoldingRegister"), "offset": f(json!(10)), "limit": f(json!(1)),
                    "scale": f(json!(1))}}},
                 "collectCycle": "5000", "reportToCloud": true}],
            "methods": [{"name": "set-setpoint", "propertyNames": ["setpoint"]}]
        },
        "status": {"reportToCloud": true, "reportCycle": "30000"}
    });
    assert_eq!(device_json(&d), expected);
    // Zero values travel as Anys without bytes.
    let visitors = d.spec.as_ref().unwrap().properties[0]
        .visitors
        .as_ref()
        .unwrap();
    let data = &visitors.config_data.as_ref().unwrap().data;
    assert!(data["offset"].value.is_empty() && data["isSwap"].value.is_empty());
    assert_eq!(
        d.spec
            .as_ref()
            .unwrap()
            .protocol
            .as_ref()
            .unwrap()
            .config_data
            .as_ref()
            .unwrap()
            .data["port"]
            .value,
        vec![0x0d, 0x00, 0x00, 0xfb, 0x43]
    );
}

#[test]
fn modbus_example_in_1_15_mode_has_no_namespace_methods_or_settings() {
    let fx = Fixtures::from_yaml(BOILER).unwrap();
    let model = &fx.models[&Key::new("plant-a", "boiler-model")];
    let device = &fx.devices[&Key::new("plant-a", "boiler-1")];
    let d = convert_device(device, Some(model), Version::V1_15).unwrap();
    let j = device_json(&d);
    assert!(j.get("namespace").is_none());
    assert!(j["spec"].get("methods").is_none());
    assert_eq!(j["status"], json!({}));
    assert!(
        convert_model(model, Version::V1_15)
            .unwrap()
            .namespace
            .is_empty()
    );
}

const CC2650: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: cc2650-1, namespace: lab}
spec:
  deviceModelRef: {name: cc2650-model}
  nodeName: edge-02
  protocol:
    protocolName: bluetooth
    configData: {macAddress: "A0:E6:F8:12:34:56"}
  properties:
  - name: temperature
    collectCycle: 5000
    reportCycle: 30000
    reportToCloud: true
    visitors:
      protocolName: bluetooth
      configData:
        characteristicUUID: f000aa0104514000b000000000000000
        startIndex: 2
        endIndex: 1
        shiftRight: 2
        orderOfOperations: '[{"operationType":"Multiply","operationValue":0.03125}]'
  - name: io-control
    desired: {value: "ON"}
    reportToCloud: true
    visitors:
      protocolName: bluetooth
      configData:
        characteristicUUID: f000aa6504514000b000000000000000
        dataWrite: '{"ON":"AQ==","OFF":"AA=="}'
"#;

#[test]
fn ble_example_converts_with_empty_status() {
    let fx = Fixtures::from_yaml(CC2650).unwrap();
    let device = &fx.devices[&Key::new("lab", "cc2650-1")];
    let d = convert_device(device, None, Version::V1_23).unwrap();
    let expected = json!({
        "name": "cc2650-1", "namespace": "lab",
        "spec": {
            "deviceModelReference": "cc2650-model",
            "protocol": {"protocolName": "bluetooth", "configData": {"data": {"macAddress": s("A0:E6:F8:12:34:56")}}},
            "properties": [
                {"name": "temperature", "desired": {},
                 "visitors": {"protocolName": "bluetooth", "configData": {"data": {
                    "characteristicUUID": s("f000aa0104514000b000000000000000"),
                    "startIndex": f(json!(2)), "endIndex": f(json!(1)), "shiftRight": f(json!(2)),
                    "orderOfOperations": s("[{\"operationType\":\"Multiply\",\"operationValue\":0.03125}]")}}},
                 "reportCycle": "30000", "collectCycle": "5000", "reportToCloud": true},
                {"name": "io-control", "desired": {"value": "ON"},
                 "visitors": {"protocolName": "bluetooth", "configData": {"data": {
                    "characteristicUUID": s("f000aa6504514000b000000000000000"),
                    "dataWrite": s("{\"ON\":\"AQ==\",\"OFF\":\"AA==\"}")}}},
                 "reportToCloud": true}]
        },
        "status": {}
    });
    assert_eq!(device_json(&d), expected);
}

#[test]
fn nested_values_and_data_keys_make_the_device_unconvertible() {
    let nested = CC2650.replace(
        "dataWrite: '{\"ON\":\"AQ==\",\"OFF\":\"AA==\"}'",
        "dataWrite: {\"ON\": \"AQ==\"}",
    );
    let fx = Fixtures::from_yaml(&nested).unwrap();
    let err = convert_device(
        &fx.devices[&Key::new("lab", "cc2650-1")],
        None,
        Version::V1_23,
    )
    .unwrap_err();
    assert!(err.to_string().contains("dataWrite"), "{err}");
    let data_key = CC2650.replace("macAddress:", "Data:");
    let fx = Fixtures::from_yaml(&data_key).unwrap();
    assert!(
        convert_device(
            &fx.devices[&Key::new("lab", "cc2650-1")],
            None,
            Version::V1_23
        )
        .is_err()
    );
}

#[test]
fn model_defaults_merge_from_1_22_with_device_keys_winning() {
    let yaml = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: ns}
spec:
  protocol: modbus
  protocolConfigData: {port: 502, slaveID: 9}
  properties:
  - name: t
    type: INT
    visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 3}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d, namespace: ns}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: modbus, configData: {ip: 10.0.0.1, slaveID: 2}}
  properties:
  - name: t
    visitors: {protocolName: modbus, configData: {offset: 4}}
"#;
    let fx = Fixtures::from_yaml(yaml).unwrap();
    let dev = &fx.devices[&Key::new("ns", "d")];
    let model = fx.models.get(&dev.model_key());
    let merged = device_json(&convert_device(dev, model, Version::V1_22).unwrap());
    assert_eq!(
        merged["spec"]["protocol"]["configData"]["data"],
        json!({"ip": s("10.0.0.1"), "port": f(json!(502)), "slaveID": f(json!(2))})
    );
    assert_eq!(
        merged["spec"]["properties"][0]["visitors"]["configData"]["data"],
        json!({"register": s("HoldingRegister"), "offset": f(json!(4))})
    );
    let plain = device_json(&convert_device(dev, model, Version::V1_21).unwrap());
    assert_eq!(
        plain["spec"]["protocol"]["configData"]["data"],
        json!({"ip": s("10.0.0.1"), "slaveID": f(json!(2))})
    );
}
