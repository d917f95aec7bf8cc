#![allow(clippy::unwrap_used)]
use super::*;
use std::path::{Path, PathBuf};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kubeedge-samples")
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(samples_dir().join(name)).unwrap()
}

fn opts() -> ResolveOptions {
    ResolveOptions::default()
}

fn errors(r: &Resolved) -> Vec<String> {
    r.errors.iter().map(ToString::to_string).collect()
}

/// Every sample file, with what resolving it must give: (file, format, device ids,
/// substrings of the expected errors in order).
#[test]
fn every_kubeedge_sample_resolves_or_fails_as_documented() {
    type Case = (
        &'static str,
        Option<Format>,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        // Instances alone lack their model: a precise per-device error.
        (
            "CC2650-device-instance.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &[
                "device \"sensor-tag-instance-01\", field \"model\": device model \"cc2650-sensortag\" is not in the profile",
            ],
        ),
        (
            "CC2650-device-model.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &[],
        ),
        (
            "README.md",
            None,
            &[],
            &["the profile cannot be read: invalid YAML"],
        ),
        // The instance-level dataProperties/dataTopic are wrong and ignored, as Go does.
        (
            "ble-configmap_test.json",
            Some(Format::V1Alpha2Profile),
            &["xiaomi-device"],
            &[],
        ),
        (
            "bluetooth_mapper-config.yaml",
            None,
            &[],
            &["not a device profile"],
        ),
        (
            "create-device-instance.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &["device model \"sensor-tag-model\" is not in the profile"],
        ),
        (
            "create-device-model.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &[],
        ),
        (
            "devices_v1alpha2_device.yaml",
            None,
            &[],
            &["definition of the devices.devices.kubeedge.io CRD"],
        ),
        (
            "devices_v1alpha2_devicemodel.yaml",
            None,
            &[],
            &["definition of the devicemodels.devices.kubeedge.io CRD"],
        ),
        (
            "devices_v1beta1_device.yaml",
            None,
            &[],
            &["definition of the devices.devices.kubeedge.io CRD"],
        ),
        (
            "devices_v1beta1_devicemodel.yaml",
            None,
            &[],
            &["definition of the devicemodels.devices.kubeedge.io CRD"],
        ),
        (
            "devices_v1beta1_devicestatus.yaml",
            None,
            &[],
            &["definition of the devicestatuses.devices.kubeedge.io CRD"],
        ),
        (
            "mapper-sdk-go-config.yaml",
            None,
            &[],
            &["not a device profile"],
        ),
        // "CollectCycle" capitalised, as Go accepts it.
        (
            "mapper-sdk-go-configmap_test.json",
            Some(Format::V1Alpha2Profile),
            &["integer-generator-01", "integer-generator-02"],
            &[],
        ),
        ("modbus-config.yaml", None, &[], &["not a device profile"]),
        (
            "modbus-configmap_test.json",
            Some(Format::V1Alpha2Profile),
            &["sensor-tag-instance-01"],
            &[],
        ),
        (
            "modbus-deployment.yaml",
            None,
            &[],
            &["a Deployment (apps/v1) is not a device profile"],
        ),
        (
            "modbus-device-model.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &[],
        ),
        // The JS mapper's own sample: protocol_config, top-level visitors, accessMode "rw".
        (
            "modbus_mapper-deviceProfile.json",
            Some(Format::V1Alpha1Profile),
            &["f81e1dce-8152-4f76-b673-d6728b46e395"],
            &[],
        ),
        (
            "modbusrtu-device-instance.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &["device model \"modbus-sample-model\" is not in the profile"],
        ),
        (
            "modbustcp-device-instance.yaml",
            Some(Format::V1Alpha2Resources),
            &[],
            &["device model \"modbus-sample-model\" is not in the profile"],
        ),
        (
            "rtureadholding.json",
            Some(Format::V1Alpha2Profile),
            &["modbusrtu-device"],
            &[],
        ),
        (
            "writeint32.json",
            Some(Format::V1Alpha2Profile),
            &["modbustcp-device"],
            &[],
        ),
    ];
    let mut files: Vec<String> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = cases.iter().map(|c| c.0.to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed, "every sample file must have a case");
    for (file, format, ids, errs) in cases {
        let r = resolve(&sample(file), &opts());
        assert_eq!(r.format, *format, "{file}");
        let got: Vec<&str> = r.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(&got, ids, "{file}");
        let e = errors(&r);
        assert_eq!(e.len(), errs.len(), "{file}: {e:#?}");
        for (got, want) in e.iter().zip(errs.iter()) {
            assert!(
                got.contains(want),
                "{file}: {got:?} should contain {want:?}"
            );
        }
    }
}

fn pair(instance: &str, model: &str) -> Resolved {
    resolve(
        &format!("{}\n---\n{}", sample(model), sample(instance)),
        &opts(),
    )
}

#[test]
fn v1alpha2_resources_with_their_models() {
    let r = pair("modbustcp-device-instance.yaml", "modbus-device-model.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let d = &r.devices[0];
    assert_eq!(d.protocol.kind, "modbus");
    assert_eq!(d.protocol.config["slaveID"], 1);
    assert_eq!(d.protocol.common["tcp"]["port"], 502);
    let t = &d.properties[0];
    assert_eq!(t.name.as_str(), "temperature");
    assert_eq!(t.visitor["register"], "CoilRegister");
    assert_eq!(t.maximum, Some(100.0));
    // collectCycle 5000 is 5 µs in nanoseconds: clamped, with a warning that explains it.
    assert_eq!(t.collect_cycle, Some(MIN_CYCLE));
    let w: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("field \"collectCycle\"")
                && w.contains("for 5000 ms write 5000000000")),
        "{w:#?}"
    );
    // Twins typed "integer" are fine for edgecore (unlike mappers-go,
    // docs/kubeedge-contract.md#bug-the-decode-type-comes-from-the-twin).
    assert_eq!(d.properties[1].stored_type.as_deref(), Some("integer"));
    assert!(!w.iter().any(|w| w.contains("desired.metadata.type")));

    let r = pair("CC2650-device-instance.yaml", "CC2650-device-model.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let d = &r.devices[0];
    assert_eq!(d.protocol.kind, "bluetooth");
    assert_eq!(d.protocol.config["macAddress"], "BC:6A:29:AE:CC:96");
    // The mis-indented dataConverter children land beside it: kept for the driver to judge.
    let temp = d
        .properties
        .iter()
        .find(|p| p.name.as_str() == "temperature")
        .unwrap();
    assert_eq!(temp.visitor["startIndex"], 1);
    assert!(temp.visitor["dataConverter"].is_null());

    let with_cv = sample("modbustcp-device-instance.yaml").replace(
        "      collectCycle: 5000",
        "      collectCycle: 5000\n      customizedValues:\n        rawType: uint16",
    );
    let r = resolve(
        &format!("{}\n---\n{with_cv}", sample("modbus-device-model.yaml")),
        &opts(),
    );
    assert_eq!(
        r.devices[0].properties[0].visitor["customizedValues"]["rawType"],
        "uint16"
    );

    let r = pair("create-device-instance.yaml", "create-device-model.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let r = pair("modbusrtu-device-instance.yaml", "modbus-device-model.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.devices[0].protocol.common["com"]["serialPort"],
        "/dev/ttyS0"
    );
}

#[test]
fn legacy_v1alpha1_layout() {
    let r = resolve(&sample("modbus_mapper-deviceProfile.json"), &opts());
    let d = &r.devices[0];
    assert_eq!(d.name, "modbus-mock-instance-01");
    assert_eq!(d.protocol.kind, "modbus-tcp");
    assert_eq!(d.protocol.config["port"], 5028);
    let p = &d.properties[0];
    assert_eq!(p.access, AccessMode::ReadWrite);
    assert_eq!(p.visitor["offset"], 1);
    assert_eq!((p.minimum, p.maximum), (Some(0.0), Some(100.0)));
}

#[test]
fn go_tolerance_of_the_v1alpha2_profile() {
    let r = resolve(&sample("mapper-sdk-go-configmap_test.json"), &opts());
    assert_eq!(
        r.devices[0].properties[0].collect_cycle,
        Some(Duration::from_secs(2))
    );
    let r = resolve(&sample("rtureadholding.json"), &opts());
    let p = &r.devices[0].properties[0];
    assert_eq!(p.data_type, DataType::Double);
    assert_eq!(p.collect_cycle, Some(Duration::from_secs(10)));
    // "double" twins are rejected by edgecore for every update: said at startup.
    assert!(
        r.warnings[0]
            .to_string()
            .contains("\"double\" is refused by edgecore")
    );
    let r = resolve(&sample("ble-configmap_test.json"), &opts());
    assert_eq!(
        r.devices[0].data_topic, None,
        "instance-level dataTopic is ignored like Go"
    );
}

const GOOD_AND_BAD: &str = r#"{
 "deviceInstances": [
  {"id": "good", "name": "good", "protocol": "p-good", "model": "m",
   "twins": [{"propertyName": "t", "desired": {"value": "1", "metadata": {"timestamp": "1550049403598", "type": "int"}}}],
   "data": {"dataProperties": [{"propertyName": "h", "metadata": {"type": "int"}}], "dataTopic": "$ke/events/device/+/custom"},
   "propertyVisitors": [
     {"propertyName": "t", "collectCycle": 500000000, "reportCycle": 10000000000, "visitorConfig": {"k": 1}},
     {"propertyName": "h", "CollectCycle": "1000000000", "visitorConfig": {"k": 2}},
     {"propertyName": "bad-cycle", "collectCycle": "soon", "visitorConfig": {}},
     {"propertyName": "never", "collectCycle": -1, "visitorConfig": {}},
     {"propertyName": "missing", "visitorConfig": {}}
   ]},
  {"id": "no-model", "protocol": "p-good", "model": "nope", "propertyVisitors": []},
  {"id": "no-protocol", "protocol": "p-missing", "model": "m", "propertyVisitors": []},
  {"id": "broken", "twins": "not a list"},
  {"id": "good", "protocol": "p-good", "model": "m"}
 ],
 "deviceModels": [{"name": "m", "properties": [
   {"name": "t", "dataType": "int", "accessMode": "ReadWrite", "minimum": 0.5, "maximum": 99.5},
   {"name": "h", "dataType": "float", "accessMode": "ReadOnly", "minimum": 0, "maximum": 0},
   {"name": "bad-cycle", "dataType": "int"},
   {"name": "never", "dataType": "STRING", "defaultValue": {"any": "json"}}
 ]}],
 "protocols": [{"name": "p-good", "protocol": "memory", "protocolConfig": null, "protocolCommonConfig": null}]
}"#;

#[test]
fn one_bad_device_never_stops_the_others() {
    let r = resolve(GOOD_AND_BAD, &opts());
    let e = errors(&r);
    assert_eq!(r.devices.len(), 1, "{e:#?}");
    let d = &r.devices[0];
    assert_eq!(d.id.as_str(), "good");
    assert_eq!(d.data_topic.as_deref(), Some("$ke/events/device/+/custom"));
    let names: Vec<&str> = d.properties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["t", "h", "never"]);
    let t = &d.properties[0];
    assert_eq!(
        (t.minimum, t.maximum),
        (Some(0.5), Some(99.5)),
        "fractional limits"
    );
    assert_eq!(t.collect_cycle, Some(Duration::from_millis(500)));
    assert_eq!(t.report_cycle, Some(Duration::from_secs(10)));
    assert_eq!((t.twin, t.data), (true, false));
    assert_eq!(t.desired.as_deref(), Some("1"));
    assert_eq!(t.stored_type.as_deref(), Some("int"));
    let h = &d.properties[1];
    assert_eq!((h.twin, h.data), (false, true), "listed only as data");
    assert_eq!((h.minimum, h.maximum), (None, None), "0..0 means unset");
    assert_eq!(h.access, AccessMode::ReadOnly);
    assert_eq!(h.collect_cycle, Some(Duration::from_secs(1)));
    assert_eq!(
        h.report_cycle, h.collect_cycle,
        "absent reportCycle: every collect"
    );
    let never = &d.properties[2];
    assert_eq!(
        (never.collect_cycle, never.data_type),
        (None, DataType::String)
    );
    let expected = [
        "device \"broken\", field \"deviceInstances\": the device instance is malformed: invalid type",
        "device \"good\", property \"bad-cycle\", field \"collectCycle\": \"soon\" is not a whole number of nanoseconds",
        "device \"good\", property \"missing\", field \"propertyName\": model \"m\" has no property of this name",
        "device \"no-model\", field \"model\": device model \"nope\" is not in the profile",
        "device \"no-protocol\", field \"protocol\": protocol entry \"p-missing\" is not in the profile's protocols",
        "device \"good\", field \"id\": a device with this id appears more than once",
    ];
    assert_eq!(e.len(), expected.len(), "{e:#?}");
    for want in expected {
        assert!(
            e.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {e:#?}"
        );
    }
}

#[test]
fn namespace_name_topic_scheme() {
    let o = ResolveOptions {
        topic_scheme: TopicScheme::NamespaceName,
        namespace: "edge".into(),
        ..opts()
    };
    let r = resolve(GOOD_AND_BAD, &o);
    assert_eq!(r.devices[0].id.as_str(), "edge/good");
}

const V1BETA1: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermostat-model
  namespace: factory
spec:
  protocol: modbus
  properties:
    - name: setpoint
      type: FLOAT
      accessMode: ReadWrite
      minimum: "5"
      maximum: "35.5"
      unit: celsius
      visitors:
        protocolName: modbus
        configData:
          register: HoldingRegister
          scale: 0.1
    - name: temperature
      type: INT
      accessMode: ReadOnly
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermostat-1
  namespace: factory
spec:
  deviceModelRef:
    name: thermostat-model
  nodeName: edge-node-1
  protocol:
    protocolName: modbus
    configData:
      ip: 127.0.0.1
      port: 1502
      slaveID: 3
  properties:
    - name: setpoint
      desired:
        value: "21.5"
      collectCycle: 2000
      reportCycle: 60000
      visitors:
        protocolName: modbus
        configData:
          offset: 10
          limit: 1
    - name: temperature
      collectCycle: 5
      visitors:
        protocolName: modbus
        configData: {register: InputRegister, offset: 0, limit: 1}
"#;

#[test]
fn v1beta1_resources() {
    let r = resolve(V1BETA1, &opts());
    assert_eq!(r.format, Some(Format::V1Beta1Resources));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let d = &r.devices[0];
    assert_eq!(
        (
            d.id.as_str(),
            d.namespace.as_str(),
            d.protocol.kind.as_str()
        ),
        ("thermostat-1", "factory", "modbus")
    );
    assert_eq!(d.protocol.config["slaveID"], 3);
    let sp = &d.properties[0];
    assert_eq!(
        (sp.minimum, sp.maximum),
        (Some(5.0), Some(35.5)),
        "string limits"
    );
    assert_eq!(
        sp.collect_cycle,
        Some(Duration::from_secs(2)),
        "milliseconds"
    );
    assert_eq!(sp.report_cycle, Some(Duration::from_secs(60)));
    assert_eq!(sp.desired.as_deref(), Some("21.5"));
    // Model-level visitor defaults merged under the device's own.
    assert_eq!(sp.visitor["register"], "HoldingRegister");
    assert_eq!(sp.visitor["offset"], 10);
    assert_eq!(sp.visitor["scale"], 0.1);
    assert_eq!(
        d.properties[1].collect_cycle,
        Some(MIN_CYCLE),
        "5 ms clamped to the minimum"
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.to_string().contains("5 milliseconds"))
    );
    let o = ResolveOptions {
        topic_scheme: TopicScheme::NamespaceName,
        ..opts()
    };
    assert_eq!(
        resolve(V1BETA1, &o).devices[0].id.as_str(),
        "factory/thermostat-1"
    );
}

#[test]
fn configmap_resource_and_json_list() {
    let profile = sample("writeint32.json");
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "device-profile-config-node1"},
        "data": {"deviceProfile.json": profile}
    });
    let r = resolve(&cm.to_string(), &opts());
    assert_eq!(r.devices[0].id.as_str(), "modbustcp-device");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [cm]});
    assert_eq!(resolve(&list.to_string(), &opts()).devices.len(), 1);
}

#[test]
fn unreadable_profiles() {
    for (text, want) in [
        ("", "empty"),
        ("{", "invalid JSON"),
        ("[1, 2]", "expected a JSON or YAML object"),
        ("key: [unclosed", "invalid YAML"),
    ] {
        let r = resolve(text, &opts());
        assert!(r.devices.is_empty());
        assert!(errors(&r)[0].contains(want), "{text:?}: {:?}", r.errors);
    }
    // An empty profile object is valid and has no devices (KubeEdge writes "{}").
    let r = resolve("{}", &opts());
    assert!(r.errors.is_empty() || errors(&r)[0].contains("not a device profile"));
    let r = resolve(r#"{"deviceInstances": []}"#, &opts());
    assert!(r.errors.is_empty() && r.devices.is_empty());
}

/// Every file in the repository's device-models/ resolves without errors.
#[test]
fn every_device_model_file_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-models");
    let mut stack = vec![root];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let is_profile = p
                .extension()
                .is_some_and(|x| x == "json" || x == "yaml" || x == "yml")
                && !p.file_name().unwrap().to_string_lossy().starts_with("sim");
            if !is_profile {
                continue;
            }
            let r = resolve(&std::fs::read_to_string(&p).unwrap(), &opts());
            assert!(r.errors.is_empty(), "{}: {:#?}", p.display(), r.errors);
            assert!(!r.devices.is_empty(), "{}: no devices", p.display());
            seen += 1;
        }
    }
    println!("{seen} device-model files resolved");
}

#[test]
fn only_desired_values_may_change_without_a_restart() {
    let base = resolve(GOOD_AND_BAD, &opts()).devices.remove(0);
    let same = |f: &dyn Fn(&mut DeviceDef)| {
        let mut d = base.clone();
        f(&mut d);
        base.same_but_desired(&d)
    };
    assert!(same(&|_| {}));
    assert!(same(
        &|d| Arc::make_mut(&mut d.properties[0]).desired = Some("7".into())
    ));
    assert!(same(
        &|d| Arc::make_mut(&mut d.properties[0]).stored_type = None
    ));
    assert!(!same(
        &|d| Arc::make_mut(&mut d.properties[0]).visitor = Arc::new(serde_json::json!({"k": 2}))
    ));
    assert!(!same(
        &|d| Arc::make_mut(&mut d.properties[1]).collect_cycle = None
    ));
    assert!(!same(
        &|d| Arc::make_mut(&mut d.properties[2]).report_cycle = Some(Duration::from_secs(3))
    ));
    assert!(!same(
        &|d| Arc::make_mut(&mut d.properties[0]).maximum = Some(1.0)
    ));
    assert!(!same(
        &|d| Arc::make_mut(&mut d.properties[0]).access = AccessMode::ReadOnly
    ));
    assert!(!same(&|d| {
        d.properties.pop();
    }));
    assert!(!same(
        &|d| d.protocol.config = Arc::new(serde_json::json!({"slaveID": 9}))
    ));
    assert!(!same(&|d| d.data_topic = None));
    assert!(!same(&|d| d.model = "other".into()));
}

#[test]
fn devices_of_one_model_share_their_property_definitions() {
    let device = |id: &str, offset: u16, desired: &str| {
        format!(
            r#"{{"id": "{id}", "name": "{id}", "model": "m", "protocol": "p-{id}",
                "twins": [{{"propertyName": "b", "desired": {{"value": "{desired}"}}}}],
                "propertyVisitors": [
                  {{"propertyName": "a", "modelName": "m", "visitorConfig": {{"offset": {offset}}}}},
                  {{"propertyName": "b", "modelName": "m", "visitorConfig": {{"offset": 9}}}}]}}"#
        )
    };
    let protocol = |id: &str| {
        format!(r#"{{"name": "p-{id}", "protocol": "modbus", "protocolConfig": {{"slaveID": 1}}}}"#)
    };
    let text = format!(
        r#"{{"deviceInstances": [{}, {}, {}],
            "deviceModels": [{{"name": "m", "properties": [
              {{"name": "a", "dataType": "int", "accessMode": "ReadOnly"}},
              {{"name": "b", "dataType": "int", "accessMode": "ReadWrite"}}]}}],
            "protocols": [{}, {}, {}]}}"#,
        device("d1", 1, "5"),
        device("d2", 1, "5"),
        device("d3", 2, "6"),
        protocol("d1"),
        protocol("d2"),
        protocol("d3"),
    );
    let r = resolve(&text, &opts());
    assert_eq!(errors(&r), Vec::<String>::new());
    let [d1, d2, d3] = &r.devices[..] else {
        panic!("{:#?}", r.devices)
    };
    assert!(
        Arc::ptr_eq(&d1.properties[0], &d2.properties[0]),
        "equal: shared"
    );
    assert!(Arc::ptr_eq(&d1.properties[1], &d2.properties[1]));
    assert!(
        !Arc::ptr_eq(&d1.properties[0], &d3.properties[0]),
        "other offset"
    );
    assert_eq!(d3.properties[0].visitor["offset"], 2);
    // Another desired value: its own definition, the visitor config still shared.
    assert_eq!(d3.properties[1].desired.as_deref(), Some("6"));
    assert_eq!(d1.properties[1].desired.as_deref(), Some("5"));
    assert!(Arc::ptr_eq(
        &d1.properties[1].visitor,
        &d3.properties[1].visitor
    ));
}

/// A small valid v1alpha2 profile of two devices, as a tree to break in tests.
fn two_devices() -> serde_json::Value {
    serde_json::json!({
        "deviceInstances": [
            {"id": "a", "protocol": "p", "model": "m",
             "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"key": "t"}}]},
            {"id": "b", "protocol": "p", "model": "m",
             "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"key": "t"}}]}
        ],
        "deviceModels": [{"name": "m", "properties": [{"name": "t", "dataType": "int"}]}],
        "protocols": [{"name": "p", "protocol": "memory", "protocolConfig": {"slaveID": 1}}]
    })
}

#[test]
fn wrong_typed_or_null_top_level_lists_are_errors_naming_the_list() {
    for (key, value, kind) in [
        ("propertyVisitors", serde_json::Value::Null, "null"),
        (
            "deviceInstances",
            serde_json::json!({"id": "a"}),
            "an object",
        ),
        ("deviceModels", serde_json::json!("m"), "a string"),
        ("protocols", serde_json::json!(7), "a number"),
    ] {
        let mut p = two_devices();
        p[key] = value;
        let r = resolve(&p.to_string(), &opts());
        let e = errors(&r);
        assert!(r.devices.is_empty() && r.format.is_none(), "{key}: {e:?}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(&format!("\"{key}\" must be a list, got {kind}")),
            "{e:?}"
        );
    }
}

#[test]
fn instances_that_are_not_objects_are_named() {
    let r = resolve(
        r#"{"deviceInstances": [[[1]], 5, {"id": "x", "protocol": 3}]}"#,
        &opts(),
    );
    let e = errors(&r);
    assert!(r.devices.is_empty());
    assert!(
        e.iter().any(|e| e.contains(
            "field \"deviceInstances[0]\": a device instance must be a JSON object, got a list"
        )),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|e| e.contains(
            "field \"deviceInstances[1]\": a device instance must be a JSON object, got a number"
        )),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|e| e.starts_with(
            "device \"x\", field \"deviceInstances\": the device instance is malformed"
        )),
        "{e:#?}"
    );
    assert_eq!(
        r.failed,
        [DeviceId("x".into())],
        "a named entry is a failed device"
    );
}

#[test]
fn deep_nesting_is_refused_with_a_clear_error() {
    let json = format!(
        r#"{{"deviceInstances": {}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let mut yaml = String::from("deviceInstances:\n");
    for i in 0..100 {
        yaml.push_str(&" ".repeat(2 * i + 2));
        yaml.push_str("- \n");
    }
    for text in [json, yaml] {
        let r = resolve(&text, &opts());
        let e = errors(&r);
        assert!(r.devices.is_empty() && r.format.is_none(), "{e:?}");
        assert!(e[0].contains("more than 64 levels deep"), "{e:?}");
    }
}

#[test]
fn out_of_range_numbers_name_their_field() {
    let text = two_devices()
        .to_string()
        .replace(r#""slaveID":1"#, r#""slaveID":1e400"#);
    assert!(text.contains("1e400"));
    let r = resolve(&text, &opts());
    let e = errors(&r);
    assert_eq!(e.len(), 1, "one problem, both devices named: {e:#?}");
    assert!(
        e[0].starts_with("devices \"a\", \"b\", field \"protocolConfig.slaveID\": protocol entry \"p\": 1e400 is out of range"),
        "{e:#?}"
    );
    assert_eq!(r.failed.len(), 2);
    // In a model property and in an instance, too.
    let text = two_devices().to_string().replace(
        r#""dataType":"int""#,
        r#""dataType":"int","minimum":-1e999"#,
    );
    let e = errors(&resolve(&text, &opts()));
    assert!(
        e[0].contains("property \"t\": minimum: -1e999 is out of range"),
        "{e:#?}"
    );
}

#[test]
fn duplicate_ids_are_named_and_the_first_entry_decides() {
    let mut p = two_devices();
    p["deviceInstances"][1]["id"] = "a".into();
    p["deviceInstances"][0]["model"] = "nope".into();
    let r = resolve(&p.to_string(), &opts());
    let e = errors(&r);
    assert!(
        r.devices.is_empty(),
        "the first entry fails, the second is not used"
    );
    assert!(
        e.iter().any(|e| e.starts_with(
            "device \"a\", field \"id\": a device with this id appears more than once"
        )),
        "{e:#?}"
    );
    assert_eq!(r.failed, [DeviceId("a".into())]);
}

/// A device-profile JSON of `n` devices using one model whose `properties` is a string of
/// `big` bytes: each device's error used to quote it whole.
pub(crate) fn bad_model_profile(big: usize, n: usize) -> String {
    let instances: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"d{i}","protocol":"p","model":"m"}}"#))
        .collect();
    format!(
        r#"{{"deviceInstances":[{}],"deviceModels":[{{"name":"m","properties":"{}"}}],"protocols":[{{"name":"p","protocol":"memory"}}]}}"#,
        instances.join(","),
        "x".repeat(big)
    )
}

#[test]
fn one_broken_model_used_by_many_devices_is_one_short_error() {
    let text = bad_model_profile(600_000, 8_000);
    assert!(text.len() > 900_000 && text.len() < 1_048_576);
    let r = resolve(&text, &opts());
    let e = errors(&r);
    assert_eq!(
        e.len(),
        2,
        "the model's problem and its devices: {:?}",
        e.iter().map(|e| &e[..100]).collect::<Vec<_>>()
    );
    assert!(
        e[0].contains("device model \"m\": the model is malformed: invalid type: string \"xxx"),
        "{}",
        &e[0][..200]
    );
    assert!(e[0].len() < 450, "{}", e[0].len());
    assert!(e[1].starts_with("8000 devices \"d0\", \"d1\""), "{}", e[1]);
    assert!(e[1].contains("and 7990 more, field \"model\""), "{}", e[1]);
    assert_eq!(r.failed.len(), 8_000);
}

#[test]
fn top_level_visitors_are_shared_and_looked_up_by_name() {
    // v1alpha1: 3,000 model properties and visitors, 50 devices. Every device has every
    // property, and the devices share the definitions.
    let props: Vec<String> = (0..3000)
        .map(|j| format!(r#"{{"name":"p{j}","dataType":"int"}}"#))
        .collect();
    let visitors: Vec<String> = (0..3000)
        .map(|j| {
            format!(r#"{{"propertyName":"p{j}","modelName":"m","visitorConfig":{{"offset":{j}}}}}"#)
        })
        .collect();
    let instances: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"id":"d{i}","protocol":"p","model":"m"}}"#))
        .collect();
    let text = format!(
        r#"{{"deviceInstances":[{}],"deviceModels":[{{"name":"m","properties":[{}]}}],"propertyVisitors":[{}],"protocols":[{{"name":"p","protocol":"memory","protocol_config":{{}}}}]}}"#,
        instances.join(","),
        props.join(","),
        visitors.join(",")
    );
    let r = resolve(&text, &opts());
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.format, Some(Format::V1Alpha1Profile));
    assert_eq!(r.devices.len(), 50);
    assert!(r.devices.iter().all(|d| d.properties.len() == 3000));
    let (a, b) = (
        &r.devices[0].properties[2999],
        &r.devices[49].properties[2999],
    );
    assert!(Arc::ptr_eq(a, b), "one definition shared by every device");
    assert_eq!(*a.visitor, serde_json::json!({"offset": 2999}));
}
