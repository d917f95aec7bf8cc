//! KubeEdge's MQTT twin contract (docs/kubeedge-contract.md#mqtt): topics and payloads, pure.
//!
//! The MQTT client loop that uses these lives in [`crate::mqtt`].

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value as Json;
use thiserror::Error;

use crate::model::{DataType, DeviceId, PropertyName};

const DEVICE_PREFIX: &str = "$hw/events/device/";

/// `$hw/events/device/{id}/twin/update`: actual values, mapper to edgecore.
pub fn twin_update_topic(id: &DeviceId) -> String {
    format!("{DEVICE_PREFIX}{id}/twin/update")
}

/// `$hw/events/device/{id}/twin/update/delta`: values to write, edgecore to mapper.
pub fn twin_delta_topic(id: &DeviceId) -> String {
    format!("{DEVICE_PREFIX}{id}/twin/update/delta")
}

/// `$hw/events/device/{id}/twin/get`: ask for the whole twin.
pub fn twin_get_topic(id: &DeviceId) -> String {
    format!("{DEVICE_PREFIX}{id}/twin/get")
}

/// `$hw/events/device/{id}/twin/get/result`: the whole twin, edgecore to mapper.
pub fn twin_get_result_topic(id: &DeviceId) -> String {
    format!("{DEVICE_PREFIX}{id}/twin/get/result")
}

/// `$hw/events/device/{id}/state/update`: connectivity, mapper to edgecore.
pub fn state_topic(id: &DeviceId) -> String {
    format!("{DEVICE_PREFIX}{id}/state/update")
}

/// The data topic: the profile's `dataTopic` with `+` replaced by the id, or
/// `$ke/events/device/{id}/data/update`.
pub fn data_topic(id: &DeviceId, configured: Option<&str>) -> String {
    match configured {
        Some(t) if !t.is_empty() => t.replacen('+', id.as_str(), 1),
        _ => format!("$ke/events/device/{id}/data/update"),
    }
}

/// `$hw/events/node/{node}/membership/updated`: devices added to or removed from the node.
pub fn membership_topic(node: &str) -> String {
    format!("$hw/events/node/{node}/membership/updated")
}

/// What an incoming device topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingKind {
    /// A twin delta.
    Delta,
    /// The answer to a twin/get.
    GetResult,
}

/// Splits an incoming device topic into the device id and its kind. Ids may contain `/`
/// (`namespace/name`).
pub fn parse_incoming_topic(topic: &str) -> Option<(DeviceId, IncomingKind)> {
    let rest = topic.strip_prefix(DEVICE_PREFIX)?;
    let (id, kind) = if let Some(id) = rest.strip_suffix("/twin/update/delta") {
        (id, IncomingKind::Delta)
    } else if let Some(id) = rest.strip_suffix("/twin/get/result") {
        (id, IncomingKind::GetResult)
    } else {
        return None;
    };
    (!id.is_empty()).then(|| (DeviceId(id.to_owned()), kind))
}

/// Milliseconds since the Unix epoch, as edgecore stamps its messages.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One reported property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The property.
    pub property: PropertyName,
    /// The wire text (already canonical and checked).
    pub value: String,
    /// The model's data type, sent as `metadata.type`.
    pub data_type: DataType,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct TypeMeta<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
}

#[derive(Serialize)]
struct Actual<'a> {
    value: &'a str,
    metadata: Empty,
}

#[derive(Serialize)]
struct TwinEntry<'a> {
    actual: Actual<'a>,
    metadata: TypeMeta<'a>,
}

#[derive(Serialize)]
struct TwinUpdate<'a> {
    event_id: &'a str,
    timestamp: i64,
    twin: BTreeMap<&'a str, TwinEntry<'a>>,
}

/// The `twin/update` payload: actual values and `metadata.type` only, never `expected`
/// or versions
/// (docs/kubeedge-contract.md#quirk-sending-expected-breaks-desired-values).
pub fn twin_update_payload(values: &[Reported], timestamp: i64) -> Vec<u8> {
    let twin = values
        .iter()
        .map(|r| {
            (
                r.property.as_str(),
                TwinEntry {
                    actual: Actual {
                        value: &r.value,
                        metadata: Empty {},
                    },
                    metadata: TypeMeta {
                        ty: r.data_type.as_str(),
                    },
                },
            )
        })
        .collect();
    to_vec(&TwinUpdate {
        event_id: "",
        timestamp,
        twin,
    })
}

#[derive(Serialize)]
struct DataMeta<'a> {
    timestamp: i64,
    #[serde(rename = "type")]
    ty: &'a str,
}

#[derive(Serialize)]
struct DataEntry<'a> {
    value: &'a str,
    metadata: DataMeta<'a>,
}

#[derive(Serialize)]
struct DataUpdate<'a> {
    event_id: &'a str,
    timestamp: i64,
    data: BTreeMap<&'a str, DataEntry<'a>>,
}

/// The `data/update` payload.
pub fn data_update_payload(values: &[Reported], timestamp: i64) -> Vec<u8> {
    let data = values
        .iter()
        .map(|r| {
            (
                r.property.as_str(),
                DataEntry {
                    value: &r.value,
                    metadata: DataMeta {
                        timestamp,
                        ty: r.data_type.as_str(),
                    },
                },
            )
        })
        .collect();
    to_vec(&DataUpdate {
        event_id: "",
        timestamp,
        data,
    })
}

#[derive(Serialize)]
struct StateUpdate<'a> {
    event_id: &'a str,
    timestamp: i64,
    state: &'a str,
    attributes: Option<()>,
}

/// The `state/update` payload.
pub fn state_payload(state: &str, timestamp: i64) -> Vec<u8> {
    to_vec(&StateUpdate {
        event_id: "",
        timestamp,
        state,
        attributes: None,
    })
}

#[derive(Serialize)]
struct Base<'a> {
    event_id: &'a str,
    timestamp: i64,
}

/// The `twin/get` payload (a bare base message).
pub fn twin_get_payload(event_id: &str, timestamp: i64) -> Vec<u8> {
    to_vec(&Base {
        event_id,
        timestamp,
    })
}

fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; fall back to an empty object anyway.
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

/// A desired value for one property, from a delta or a twin/get result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The property.
    pub property: PropertyName,
    /// The expected value as text.
    pub value: String,
    /// The twin type edgecore stores (`metadata.type`), when the message says.
    pub stored_type: Option<String>,
}

/// Why an incoming payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// Not JSON, or not an object.
    #[error("the payload is not a JSON object: {0}")]
    NotJson(String),
    /// edgecore answered with an error code.
    #[error("edgecore answered with code {code}: {reason}")]
    Edge {
        /// The code (404 for an unknown device).
        code: i64,
        /// edgecore's reason.
        reason: String,
    },
    /// A field has the wrong shape.
    #[error("field {field:?}: {message}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn as_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn stored_type(twin: Option<&Json>) -> Option<String> {
    twin?
        .get("metadata")?
        .get("type")?
        .as_str()
        .map(str::to_owned)
}

fn expected_value(twin: &Json) -> Option<String> {
    twin.get("expected")?.get("value").and_then(as_text)
}

/// Parses a `twin/update/delta` payload into desired values (the `delta` map, with each
/// twin's stored type).
pub fn parse_delta(payload: &[u8]) -> Result<Vec<Desired>, PayloadError> {
    let v: Json =
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Some(obj) = v.as_object() else {
        return Err(PayloadError::NotJson("expected an object".into()));
    };
    let twins = obj.get("twin").and_then(Json::as_object);
    let mut out = Vec::new();
    match obj.get("delta") {
        Some(Json::Object(delta)) => {
            for (name, value) in delta {
                let Some(value) = as_text(value) else {
                    return Err(PayloadError::Field {
                        field: format!("delta.{name}"),
                        message: format!("expected a string value, got {value}"),
                    });
                };
                out.push(Desired {
                    property: PropertyName(name.clone()),
                    value,
                    stored_type: stored_type(twins.and_then(|t| t.get(name))),
                });
            }
        }
        Some(Json::Null) | None => {
            // No delta map: derive it from the twins as edgecore does.
            if let Some(twins) = twins {
                out = desired_from_twins(twins, true);
            }
        }
        Some(other) => {
            return Err(PayloadError::Field {
                field: "delta".into(),
                message: format!("expected an object, got {other}"),
            });
        }
    }
    Ok(out)
}

/// Parses a `twin/get/result` payload: every twin with a non-empty expected value.
pub fn parse_get_result(payload: &[u8]) -> Result<Vec<Desired>, PayloadError> {
    let v: Json =
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Some(obj) = v.as_object() else {
        return Err(PayloadError::NotJson("expected an object".into()));
    };
    if let Some(code) = obj.get("code").and_then(Json::as_i64)
        && code >= 300
    {
        return Err(PayloadError::Edge {
            code,
            reason: obj
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    Ok(obj
        .get("twin")
        .and_then(Json::as_object)
        .map(|t| desired_from_twins(t, false))
        .unwrap_or_default())
}

fn desired_from_twins(twins: &serde_json::Map<String, Json>, only_differing: bool) -> Vec<Desired> {
    twins
        .iter()
        .filter_map(|(name, twin)| {
            let expected = expected_value(twin).filter(|e| !e.is_empty())?;
            if only_differing {
                let actual = twin
                    .get("actual")
                    .and_then(|a| a.get("value"))
                    .and_then(as_text)
                    .unwrap_or_default();
                if actual == expected {
                    return None;
                }
            }
            Some(Desired {
                property: PropertyName(name.clone()),
                value: expected,
                stored_type: stored_type(Some(twin)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId(s.into())
    }

    #[test]
    fn topics() {
        assert_eq!(
            twin_update_topic(&id("dev1")),
            "$hw/events/device/dev1/twin/update"
        );
        assert_eq!(
            twin_delta_topic(&id("ns/dev1")),
            "$hw/events/device/ns/dev1/twin/update/delta"
        );
        assert_eq!(
            state_topic(&id("dev1")),
            "$hw/events/device/dev1/state/update"
        );
        assert_eq!(
            data_topic(&id("d"), None),
            "$ke/events/device/d/data/update"
        );
        assert_eq!(
            data_topic(&id("d"), Some("$ke/events/+/device/customized/update")),
            "$ke/events/d/device/customized/update"
        );
        assert_eq!(
            parse_incoming_topic("$hw/events/device/ns/dev/twin/update/delta"),
            Some((id("ns/dev"), IncomingKind::Delta))
        );
        assert_eq!(
            parse_incoming_topic("$hw/events/device/dev/twin/get/result"),
            Some((id("dev"), IncomingKind::GetResult))
        );
        assert_eq!(
            parse_incoming_topic("$hw/events/device//twin/get/result"),
            None
        );
        assert_eq!(
            parse_incoming_topic("$hw/events/device/dev/twin/update"),
            None
        );
    }

    #[test]
    fn golden_twin_update() {
        let body = twin_update_payload(
            &[
                Reported {
                    property: "temperature".into(),
                    value: "25".into(),
                    data_type: DataType::Int,
                },
                Reported {
                    property: "enable".into(),
                    value: "true".into(),
                    data_type: DataType::Boolean,
                },
            ],
            1_700_000_000_123,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"event_id":"","timestamp":1700000000123,"twin":{"enable":{"actual":{"value":"true","metadata":{}},"metadata":{"type":"boolean"}},"temperature":{"actual":{"value":"25","metadata":{}},"metadata":{"type":"int"}}}}"#
        );
    }

    #[test]
    fn golden_state_data_get() {
        assert_eq!(
            String::from_utf8(state_payload("online", 1_700_000_000_123)).unwrap(),
            r#"{"event_id":"","timestamp":1700000000123,"state":"online","attributes":null}"#
        );
        assert_eq!(
            String::from_utf8(data_update_payload(
                &[Reported {
                    property: "temperature".into(),
                    value: "25".into(),
                    data_type: DataType::Int
                }],
                1_700_000_000_123
            ))
            .unwrap(),
            r#"{"event_id":"","timestamp":1700000000123,"data":{"temperature":{"value":"25","metadata":{"timestamp":1700000000123,"type":"int"}}}}"#
        );
        assert_eq!(
            String::from_utf8(twin_get_payload("get-1", 1_700_000_000_000)).unwrap(),
            r#"{"event_id":"get-1","timestamp":1700000000000}"#
        );
    }

    #[test]
    fn delta_from_edgecore() {
        let payload = br#"{"event_id":"6f1c","timestamp":1700000000789,
 "twin":{"temperature-enable":{"expected":{"value":"ON","metadata":{"timestamp":1700000000700}},
                               "actual":{"value":"OFF","metadata":{"timestamp":1700000000500}},
                               "optional":false,"metadata":{"type":"string"}}},
 "delta":{"temperature-enable":"ON"}}"#;
        assert_eq!(
            parse_delta(payload).unwrap(),
            vec![Desired {
                property: "temperature-enable".into(),
                value: "ON".into(),
                stored_type: Some("string".into())
            }]
        );
        assert!(matches!(
            parse_delta(b"not json"),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            parse_delta(br#"{"delta":{"a":{"x":1}}}"#),
            Err(PayloadError::Field { .. })
        ));
        assert!(matches!(
            parse_delta(br#"[1]"#),
            Err(PayloadError::NotJson(_))
        ));
    }

    #[test]
    fn get_result_from_edgecore() {
        let payload = br#"{"event_id":"get-1","timestamp":1700000000010,
 "twin":{"temperature-enable":{"expected":{"value":"ON","metadata":{"timestamp":1700000000700}},
                               "actual":{"value":"ON","metadata":{"timestamp":1700000000500}},
                               "optional":false,"metadata":{"type":"string"}},
         "humidity":{"actual":{"value":"40"},"optional":true,"metadata":{"type":"int"}}}}"#;
        assert_eq!(
            parse_get_result(payload).unwrap(),
            vec![Desired {
                property: "temperature-enable".into(),
                value: "ON".into(),
                stored_type: Some("string".into())
            }]
        );
        let err = parse_get_result(br#"{"event_id":"get-1","timestamp":1,"code":404,"reason":"Device X not found while getting twin"}"#)
            .unwrap_err();
        assert_eq!(
            err,
            PayloadError::Edge {
                code: 404,
                reason: "Device X not found while getting twin".into()
            }
        );
    }
}
