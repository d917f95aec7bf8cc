//! KubeEdge's own BLE samples and this repository's BLE device models load with this driver,
//! with exactly the documented tolerances and errors.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use ble_mapper::BleDriver;
use ble_mapper::config::{DataConverter, NotifyMode, Operation, OperationKind, parse_uuid};
use ble_mapper::fake::FakeBle;
use mapper_sdk::model::DataType;
use mapper_sdk::profile::ResolveOptions;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/kubeedge-samples")
}

/// The samples are part of the repository: an unreadable one is a failure, never a skip.
fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn driver() -> BleDriver<FakeBle> {
    BleDriver::new(FakeBle::default())
}

fn visitor<'a>(
    spec: &'a mapper_sdk::driver::DeviceSpec<BleDriver<FakeBle>>,
    name: &str,
) -> &'a ble_mapper::BleVisitor {
    &spec
        .properties
        .iter()
        .find(|p| p.def.name.as_str() == name)
        .unwrap_or_else(|| panic!("no property {name}"))
        .visitor
}

/// Asserts that no warning of `loaded` is about an unknown key (the samples have none).
fn no_unknown_keys(loaded: &mapper_sdk::app::Loaded<BleDriver<FakeBle>>, what: &str) {
    let unknown: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|w| mapper_sdk::profile::unknown::is_unknown_key_message(&w.message))
        .map(ToString::to_string)
        .collect();
    assert!(unknown.is_empty(), "{what}: {unknown:?}");
}

fn cc2650_text() -> Option<String> {
    let model = read(&samples().join("CC2650-device-model.yaml"))?;
    let instance = read(&samples().join("CC2650-device-instance.yaml"))?;
    Some(format!("{model}\n---\n{instance}"))
}

#[test]
fn cc2650_sample_pair_loads_with_its_mis_indentation_tolerated() {
    let Some(text) = cc2650_text() else { return };
    let loaded = mapper_sdk::load(&driver(), &text, &ResolveOptions::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    no_unknown_keys(&loaded, "CC2650");
    assert_eq!(loaded.devices.len(), 1);
    let d = &loaded.devices[0];
    assert_eq!(d.id().as_str(), "sensor-tag-instance-01");
    assert_eq!(d.protocol.mac.to_string(), "BC:6A:29:AE:CC:96");
    assert_eq!(d.protocol.adapter, None);
    assert_eq!(d.properties.len(), 6);

    // `startIndex` etc. sit beside a null `dataConverter`: taken as the converter, with
    // `endIndex: 0` meaning absent (= 0).
    let t = visitor(d, "temperature");
    assert_eq!(
        t.characteristic,
        parse_uuid("f000aa01-0451-4000-b000-000000000000").unwrap()
    );
    assert_eq!(
        t.converter,
        DataConverter {
            start_index: Some(1),
            end_index: None,
            shift_left: None,
            shift_right: Some(2),
            operations: vec![Operation {
                kind: OperationKind::Multiply,
                value: 0.03125
            }],
        }
    );
    assert_eq!(t.notify, NotifyMode::Auto);
    // The converter gives the TMP sensor's object temperature: 0x0CC0 >> 2 * 0.03125 = 25.5.
    assert_eq!(
        ble_mapper::convert::decode(&[0xC0, 0x0C, 0, 0], t, DataType::Int).unwrap(),
        mapper_sdk::model::Value::Int(26)
    );

    // `"ON": [1]` etc. sit beside a null `dataWrite`: taken as dataWrite.
    let e = visitor(d, "temperature-enable");
    assert_eq!(
        e.data_write,
        vec![("ON".to_owned(), vec![1]), ("OFF".to_owned(), vec![0])]
    );
    let io = visitor(d, "io-data");
    let keys: Vec<&str> = io.data_write.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Red",
            "Green",
            "RedGreen",
            "Buzzer",
            "BuzzerRed",
            "BuzzerGreen",
            "BuzzerRedGreen"
        ]
    );
    assert_eq!(io.data_write[6].1, vec![7]);
    // Two properties on one characteristic are fine (read once per tick).
    assert_eq!(
        visitor(d, "io-config").characteristic,
        visitor(d, "io-config-initialize").characteristic
    );
    assert!(visitor(d, "io-config").data_write.is_empty());
}

#[test]
fn a_bad_visitor_in_the_cc2650_sample_drops_that_property_only() {
    let Some(text) = cc2650_text() else { return };
    let text = text
        .replacen(
            "characteristicUUID: f000aa6604514000b000000000000000",
            "characteristicUUID: not-a-uuid",
            1,
        )
        .replace("endIndex: 0", "endIndex: 9");
    let loaded = mapper_sdk::load(&driver(), &text, &ResolveOptions::default());
    assert_eq!(loaded.errors.len(), 2, "{:?}", loaded.errors);
    assert!(
        loaded.errors[0].contains("property \"temperature\"")
            && loaded.errors[0].contains("visitorConfig.endIndex")
            && loaded.errors[0].contains("at most 8 bytes"),
        "{}",
        loaded.errors[0]
    );
    assert!(
        loaded.errors[1].contains("property \"io-config-initialize\"")
            && loaded.errors[1].contains("visitorConfig.characteristicUUID")
            && loaded.errors[1].contains("\"not-a-uuid\""),
        "{}",
        loaded.errors[1]
    );
    assert_eq!(loaded.devices[0].properties.len(), 4);
}

#[test]
fn ble_configmap_sample_loads() {
    let Some(text) = read(&samples().join("ble-configmap_test.json")) else {
        return;
    };
    let loaded = mapper_sdk::load(&driver(), &text, &ResolveOptions::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    no_unknown_keys(&loaded, "ble-configmap_test.json");
    assert_eq!(loaded.devices.len(), 1);
    let d = &loaded.devices[0];
    assert_eq!(d.id().as_str(), "xiaomi-device");
    assert_eq!(d.protocol.mac.to_string(), "A4:C1:38:1A:49:90");
    let h = visitor(d, "humidity");
    assert_eq!(
        h.characteristic,
        parse_uuid("ebe0ccc17a0a4b0c8a1a6ff2997da3a6").unwrap()
    );
    assert_eq!(h.converter.start_index, Some(2));
    assert_eq!(h.converter.end_index, Some(2));
    assert_eq!(
        ble_mapper::convert::decode(&[0x10, 0x09, 0x37], h, DataType::Int).unwrap(),
        mapper_sdk::model::Value::Int(1),
        "55 / 100 rounds to 1 for an int property"
    );
}

#[test]
fn configmap_form_with_base64_data_write_and_a_missing_address() {
    // What cloudcore generates from the CC2650 CRD once its YAML is fixed: base64 bytes,
    // zero indices dropped by omitempty, and a second device without macAddress.
    let text = r#"{
      "deviceInstances": [
        {"id": "tag", "name": "tag", "protocol": "bluetooth-tag", "model": "m",
         "twins": [{"propertyName": "temperature-enable", "desired": {"value": "ON"}}],
         "propertyVisitors": [
           {"name": "temperature", "propertyName": "temperature", "modelName": "m", "protocol": "bluetooth",
            "visitorConfig": {"characteristicUUID": "f000aa0104514000b000000000000000",
              "dataConverter": {"startIndex": 1, "shiftRight": 2,
                "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}]}}},
           {"name": "temperature-enable", "propertyName": "temperature-enable", "modelName": "m", "protocol": "bluetooth",
            "visitorConfig": {"characteristicUUID": "f000aa02-0451-4000-b000-000000000000",
              "dataWrite": {"ON": "AQ==", "OFF": "AA=="}, "dataConverter": {}}}]},
        {"id": "anon", "name": "anon", "protocol": "bluetooth-anon", "model": "m", "propertyVisitors": []}
      ],
      "deviceModels": [{"name": "m", "properties": [
        {"name": "temperature", "dataType": "float", "accessMode": "ReadOnly"},
        {"name": "temperature-enable", "dataType": "string", "accessMode": "ReadWrite"}]}],
      "protocols": [
        {"name": "bluetooth-tag", "protocol": "bluetooth", "protocolConfig": {"macAddress": "bc:6a:29:ae:cc:96"}, "protocolCommonConfig": null},
        {"name": "bluetooth-anon", "protocol": "bluetooth", "protocolConfig": {}, "protocolCommonConfig": null}
      ]}"#;
    let loaded = mapper_sdk::load(&driver(), text, &ResolveOptions::default());
    assert_eq!(loaded.devices.len(), 1);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert!(
        loaded.errors[0].contains("device \"anon\"")
            && loaded.errors[0].contains("protocolConfig.macAddress"),
        "{}",
        loaded.errors[0]
    );
    let d = &loaded.devices[0];
    assert_eq!(d.protocol.mac.to_string(), "BC:6A:29:AE:CC:96");
    assert_eq!(
        visitor(d, "temperature-enable").data_write,
        vec![("ON".to_owned(), vec![1]), ("OFF".to_owned(), vec![0])]
    );
    assert_eq!(visitor(d, "temperature").converter.end_index, None);
}

/// Every BLE example in device-models/ loads without errors (other protocols are skipped).
#[test]
fn device_models_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-models");
    let mut ble = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in ["profile.json", "v1beta1.yaml"] {
            let path = dir.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let loaded = mapper_sdk::load(&driver(), &text, &ResolveOptions::default());
            assert!(
                loaded.errors.is_empty(),
                "{}: {:?}",
                path.display(),
                loaded.errors
            );
            no_unknown_keys(&loaded, &path.display().to_string());
            if !loaded.devices.is_empty() {
                ble += 1;
                for d in &loaded.devices {
                    assert!(!d.properties.is_empty(), "{}", path.display());
                }
            }
        }
    }
    assert!(
        ble >= 4,
        "expected the BLE examples (sensortag, ble-led) in two forms each"
    );
}

#[test]
fn misspelt_keys_are_warnings_with_suggestions() {
    let Some(text) = read(&samples().join("ble-configmap_test.json")) else {
        return;
    };
    let (from, to) = (
        "\"characteristicUUID\":",
        "\"notfy\": true, \"characteristicUUID\":",
    );
    assert!(text.contains(from));
    let typo = text.replacen(from, to, 1);
    let loaded = mapper_sdk::load(&driver(), &typo, &ResolveOptions::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|w| w.contains(
            "field \"visitorConfig.notfy\": unknown key (did you mean visitorConfig.notify?)"
        )),
        "{shown:?}"
    );
}
