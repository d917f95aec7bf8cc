//! DMI messages to the v1beta1 resources the profile resolver already understands.
//! Pure: a `Device` or `DeviceModel` from edgecore becomes the JSON of the
//! `devices.kubeedge.io/v1beta1` object it was converted from, so DMI devices take the
//! same resolve -> bind -> reconcile path as every other source.
//!
//! `configData` values arrive as wrapped scalars (`dmi_api::value`); structures that
//! edgecore cannot carry (the BLE `dataConverter.orderOfOperations`, `dataWrite`) are
//! carried as JSON text in a string and parsed back here when the text is a JSON object
//! or array.

use serde_json::{Map, Value as Json, json};

use dmi_api::v1beta1::{CustomizedValue, Device, DeviceModel};
use dmi_api::value::decode_config;

/// `(namespace, name)`: how edgecore keys devices and models (namespace empty on 1.15).
pub type Key = (String, String);

/// Why a device from edgecore cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// No name.
    #[error("a device without a name was sent (field device.name); nothing to run")]
    NoName,
    /// No spec.
    #[error("device {device}: field spec is missing")]
    NoSpec {
        /// The device.
        device: String,
    },
    /// A configData value that does not decode.
    #[error("device {device}: {field}.{key}: {reason}; fix the value in the Device resource")]
    BadValue {
        /// The device.
        device: String,
        /// `spec.protocol.configData` or `spec.properties[NAME].visitors.configData`.
        field: String,
        /// The configData key.
        key: String,
        /// What the decoder said.
        reason: String,
    },
}

/// The text form of a key: `namespace/name`, or `name` without a namespace.
pub fn key_text(key: &Key) -> String {
    if key.0.is_empty() {
        key.1.clone()
    } else {
        format!("{}/{}", key.0, key.1)
    }
}

/// The key of a device id (the inverse of [`key_text`]).
pub fn key_of_id(id: &str) -> Key {
    match id.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (String::new(), id.to_owned()),
    }
}

/// The key of a device.
pub fn device_key(d: &Device) -> Key {
    (d.namespace.clone(), d.name.clone())
}

/// The key of the model a device refers to (models live in the device's namespace).
pub fn model_ref(d: &Device) -> Option<Key> {
    let name = d.spec.as_ref()?.device_model_reference.trim();
    (!name.is_empty()).then(|| (d.namespace.clone(), name.to_owned()))
}

/// The key of a model.
pub fn model_key(m: &DeviceModel) -> Key {
    (m.namespace.clone(), m.name.clone())
}

/// The device's protocol name (`spec.protocol.protocolName`).
pub fn protocol_of(d: &Device) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.protocol.as_ref())
        .map(|p| p.protocol_name.clone())
        .unwrap_or_default()
}

fn config_json(
    config: Option<&CustomizedValue>,
    device: &str,
    field: &str,
) -> Result<Map<String, Json>, ConvertError> {
    let decoded = decode_config(config);
    if let Some((key, e)) = decoded.errors.into_iter().next() {
        return Err(ConvertError::BadValue {
            device: device.to_owned(),
            field: field.to_owned(),
            key,
            reason: e.to_string(),
        });
    }
    Ok(decoded
        .values
        .into_iter()
        .map(|(k, v)| (k, structured(v)))
        .collect())
}

/// A string holding a JSON object or array becomes that structure.
fn structured(v: Json) -> Json {
    if let Json::String(s) = &v {
        let t = s.trim_start();
        if (t.starts_with('{') || t.starts_with('['))
            && let Ok(parsed @ (Json::Object(_) | Json::Array(_))) = serde_json::from_str(s)
        {
            return parsed;
        }
    }
    v
}

fn meta(ns: &str, name: &str) -> Json {
    if ns.is_empty() {
        json!({ "name": name })
    } else {
        json!({ "name": name, "namespace": ns })
    }
}

/// The v1beta1 Device resource of a DMI device.
pub fn device_resource(d: &Device) -> Result<Json, ConvertError> {
    if d.name.trim().is_empty() {
        return Err(ConvertError::NoName);
    }
    let label = key_text(&device_key(d));
    let spec = d.spec.as_ref().ok_or_else(|| ConvertError::NoSpec {
        device: label.clone(),
    })?;
    let mut protocol = Map::new();
    if let Some(p) = &spec.protocol {
        protocol.insert("protocolName".into(), json!(p.protocol_name));
        let cfg = config_json(p.config_data.as_ref(), &label, "spec.protocol.configData")?;
        protocol.insert("configData".into(), Json::Object(cfg));
    }
    let mut props = Vec::with_capacity(spec.properties.len());
    for p in &spec.properties {
        let mut out = Map::new();
        out.insert("name".into(), json!(p.name));
        if let Some(desired) = p.desired.as_ref().filter(|t| !t.value.is_empty()) {
            let mut dm = Map::new();
            dm.insert("value".into(), json!(desired.value));
            if !desired.metadata.is_empty() {
                let mut m: Vec<_> = desired.metadata.iter().collect();
                m.sort();
                dm.insert(
                    "metadata".into(),
                    Json::Object(m.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
                );
            }
            out.insert("desired".into(), Json::Object(dm));
        }
        if let Some(v) = &p.visitors {
            let field = format!("spec.properties[{}].visitors.configData", p.name);
            let cfg = config_json(v.config_data.as_ref(), &label, &field)?;
            out.insert(
                "visitors".into(),
                json!({ "protocolName": v.protocol_name, "configData": cfg }),
            );
        }
        if p.collect_cycle != 0 {
            out.insert("collectCycle".into(), json!(p.collect_cycle));
        }
        if p.report_cycle != 0 {
            out.insert("reportCycle".into(), json!(p.report_cycle));
        }
        props.push(Json::Object(out));
    }
    Ok(json!({
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": meta(&d.namespace, &d.name),
        "spec": {
            "deviceModelRef": { "name": spec.device_model_reference },
            "protocol": Json::Object(protocol),
            "properties": props,
        }
    }))
}

/// The v1beta1 DeviceModel resource of a DMI model.
pub fn model_resource(m: &DeviceModel) -> Json {
    let props: Vec<Json> = m
        .spec
        .as_ref()
        .map(|s| {
            s.properties
                .iter()
                .map(|p| {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(p.name));
                    for (k, v) in [
                        ("description", &p.description),
                        ("type", &p.r#type),
                        ("accessMode", &p.access_mode),
                        ("minimum", &p.minimum),
                        ("maximum", &p.maximum),
                        ("unit", &p.unit),
                    ] {
                        if !v.trim().is_empty() {
                            o.insert(k.into(), json!(v));
                        }
                    }
                    Json::Object(o)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": meta(&m.namespace, &m.name),
        "spec": { "properties": props }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dmi_api::v1beta1::{
        DeviceModelSpec, DeviceProperty, DeviceSpec, ModelProperty, ProtocolConfig, TwinProperty,
        VisitorConfig,
    };
    use dmi_api::value::encode_config;

    fn cfg(v: Json) -> Option<CustomizedValue> {
        Some(encode_config(v.as_object().unwrap()).unwrap())
    }

    pub(crate) fn boiler() -> Device {
        Device {
            name: "boiler-1".into(),
            namespace: "plant-a".into(),
            spec: Some(DeviceSpec {
                device_model_reference: "boiler-model".into(),
                protocol: Some(ProtocolConfig {
                    protocol_name: "modbus".into(),
                    config_data: cfg(json!({"ip": "127.0.0.1", "port": 502, "slaveID": 1})),
                }),
                properties: vec![DeviceProperty {
                    name: "setpoint".into(),
                    desired: Some(TwinProperty {
                        value: "65".into(),
                        ..Default::default()
                    }),
                    visitors: Some(VisitorConfig {
                        protocol_name: "modbus".into(),
                        config_data: cfg(
                            json!({"register": "HoldingRegister", "offset": 0, "limit": 1, "scale": 0.1}),
                        ),
                    }),
                    collect_cycle: 1000,
                    report_to_cloud: true,
                    ..Default::default()
                }],
                methods: vec![],
            }),
            status: None,
        }
    }

    #[test]
    fn devices_become_v1beta1_resources_with_exact_numbers() {
        let r = device_resource(&boiler()).unwrap();
        assert_eq!(
            r["metadata"],
            json!({"name": "boiler-1", "namespace": "plant-a"})
        );
        assert_eq!(r["spec"]["deviceModelRef"]["name"], "boiler-model");
        assert_eq!(
            r["spec"]["protocol"]["configData"],
            json!({"ip": "127.0.0.1", "port": 502, "slaveID": 1})
        );
        let p = &r["spec"]["properties"][0];
        assert_eq!(
            p["visitors"]["configData"],
            json!({"limit": 1, "offset": 0, "register": "HoldingRegister", "scale": 0.1})
        );
        assert_eq!(p["desired"], json!({"value": "65"}));
        assert_eq!(p["collectCycle"], 1000);
        assert!(p.get("reportCycle").is_none());
    }

    #[test]
    fn json_strings_carry_structures() {
        let mut d = boiler();
        d.spec.as_mut().unwrap().properties[0].visitors = Some(VisitorConfig {
            protocol_name: "bluetooth".into(),
            config_data: cfg(json!({
                "orderOfOperations": "[{\"operationType\":\"Multiply\",\"operationValue\":0.03125}]",
                "dataWrite": "{\"ON\":\"AQ==\"}",
                "characteristicUUID": "2901",
                "note": "{not json",
            })),
        });
        let r = device_resource(&d).unwrap();
        let c = &r["spec"]["properties"][0]["visitors"]["configData"];
        assert_eq!(c["orderOfOperations"][0]["operationValue"], json!(0.03125));
        assert_eq!(c["dataWrite"]["ON"], "AQ==");
        assert_eq!(c["characteristicUUID"], "2901");
        assert_eq!(c["note"], "{not json");
    }

    #[test]
    fn bad_values_name_device_field_and_key() {
        let mut d = boiler();
        if let Some(c) = d.spec.as_mut().unwrap().properties[0]
            .visitors
            .as_mut()
            .unwrap()
            .config_data
            .as_mut()
        {
            c.data.insert(
                "offset".into(),
                prost_types::Any {
                    type_url: "type.googleapis.com/google.protobuf.Struct".into(),
                    value: vec![],
                },
            );
        }
        let e = device_resource(&d).unwrap_err().to_string();
        assert!(
            e.contains("plant-a/boiler-1")
                && e.contains("spec.properties[setpoint].visitors.configData.offset"),
            "{e}"
        );
        assert_eq!(
            device_resource(&Device::default()).unwrap_err(),
            ConvertError::NoName
        );
        let e = device_resource(&Device {
            name: "x".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConvertError::NoSpec { .. }));
    }

    #[test]
    fn models_keep_their_property_facts() {
        let m = DeviceModel {
            name: "boiler-model".into(),
            namespace: String::new(),
            spec: Some(DeviceModelSpec {
                properties: vec![ModelProperty {
                    name: "setpoint".into(),
                    r#type: "INT".into(),
                    access_mode: "ReadWrite".into(),
                    minimum: "30".into(),
                    ..Default::default()
                }],
                commands: vec![],
            }),
        };
        let r = model_resource(&m);
        assert_eq!(r["metadata"], json!({"name": "boiler-model"}));
        assert_eq!(
            r["spec"]["properties"][0],
            json!({"name": "setpoint", "type": "INT", "accessMode": "ReadWrite", "minimum": "30"})
        );
        assert_eq!(key_of_id("a/b"), ("a".to_owned(), "b".to_owned()));
        assert_eq!(key_of_id("b"), (String::new(), "b".to_owned()));
        assert_eq!(key_text(&key_of_id("b")), "b");
    }
}
