//! `configData` values: a flat map of `google.protobuf.Any`, each wrapping one scalar
//! (edgecore sends strings as `StringValue`, every number as a 32-bit `FloatValue`,
//! booleans as `BoolValue`). Pure functions between those and JSON.
//!
//! Facts that shape the decoder: a zero value (`0`, `false`, `""`)
//! arrives as an `Any` with a type URL and no bytes, which means zero, not absent; a
//! float32 is turned into the shortest decimal that round-trips (`0.1f32` becomes `0.1`,
//! not `0.10000000149`), and integral values become JSON integers (`502`), so ports,
//! offsets and slave ids come out exact.
//!
//! ```
//! use dmi_api::value::{decode_any, encode_json};
//! let any = encode_json(&serde_json::json!(0.1)).unwrap();
//! assert_eq!(decode_any(&any).unwrap(), serde_json::json!(0.1));
//! let zero = encode_json(&serde_json::json!(0)).unwrap();
//! assert!(zero.value.is_empty());
//! assert_eq!(decode_any(&zero).unwrap(), serde_json::json!(0));
//! ```

use std::collections::HashMap;

use prost::Message;
use prost_types::Any;
use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::v1beta1::CustomizedValue;

const PREFIX: &str = "type.googleapis.com/google.protobuf.";

/// Why one `configData` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The type URL names no wrapper this decoder knows.
    #[error(
        "unsupported value type {0:?} (expected a google.protobuf wrapper such as StringValue, FloatValue or BoolValue)"
    )]
    UnknownType(String),
    /// The bytes do not decode as the named wrapper.
    #[error("value bytes are not a valid {kind}: {reason}")]
    Malformed {
        /// The wrapper type.
        kind: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// NaN or an infinity: JSON cannot carry it and no config needs it.
    #[error("number {0} is not finite")]
    NotFinite(String),
    /// A string is not valid UTF-8.
    #[error("string value is not valid UTF-8")]
    NotUtf8,
    /// edgecore cannot carry objects, arrays or null in configData.
    #[error(
        "{0} cannot be carried in configData (only strings, numbers and booleans; use a JSON string for structures)"
    )]
    NotScalar(&'static str),
}

#[derive(Clone, PartialEq, Message)]
struct StringW {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}
#[derive(Clone, PartialEq, Message)]
struct FloatW {
    #[prost(float, tag = "1")]
    value: f32,
}
#[derive(Clone, PartialEq, Message)]
struct DoubleW {
    #[prost(double, tag = "1")]
    value: f64,
}
#[derive(Clone, PartialEq, Message)]
struct BoolW {
    #[prost(bool, tag = "1")]
    value: bool,
}
#[derive(Clone, PartialEq, Message)]
struct Int32W {
    #[prost(int32, tag = "1")]
    value: i32,
}
#[derive(Clone, PartialEq, Message)]
struct Int64W {
    #[prost(int64, tag = "1")]
    value: i64,
}
#[derive(Clone, PartialEq, Message)]
struct UInt32W {
    #[prost(uint32, tag = "1")]
    value: u32,
}
#[derive(Clone, PartialEq, Message)]
struct UInt64W {
    #[prost(uint64, tag = "1")]
    value: u64,
}

fn malformed(kind: &'static str) -> impl Fn(prost::DecodeError) -> ValueError {
    move |e| ValueError::Malformed {
        kind,
        reason: e.to_string(),
    }
}

/// A finite float as the shortest JSON number that reads back to it; integral values
/// (within i64) become integers.
fn number_from_text(text: &str, value: f64) -> Result<Json, ValueError> {
    if !value.is_finite() {
        return Err(ValueError::NotFinite(text.to_owned()));
    }
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        // Exact: |value| < 2^53.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Json::from(value as i64));
    }
    // Shortest round-trip text of the original width, read as f64.
    let parsed: f64 = text.parse().unwrap_or(value);
    Number::from_f64(parsed)
        .map(Json::Number)
        .ok_or_else(|| ValueError::NotFinite(text.to_owned()))
}

/// Decodes one `configData` value into JSON: a string, a number or a boolean
/// (`BytesValue` is accepted when its bytes are UTF-8 text).
pub fn decode_any(any: &Any) -> Result<Json, ValueError> {
    let kind = any.type_url.strip_prefix(PREFIX).unwrap_or_else(|| {
        // Accept any host part ("type.example.com/google.protobuf.X").
        any.type_url
            .rsplit_once('/')
            .map_or(any.type_url.as_str(), |(_, k)| k)
            .strip_prefix("google.protobuf.")
            .unwrap_or("")
    });
    let bytes = any.value.as_slice();
    match kind {
        "StringValue" | "BytesValue" => {
            let w = StringW::decode(bytes).map_err(malformed("StringValue or BytesValue"))?;
            String::from_utf8(w.value)
                .map(Json::String)
                .map_err(|_| ValueError::NotUtf8)
        }
        "FloatValue" => {
            let v = FloatW::decode(bytes)
                .map_err(malformed("FloatValue"))?
                .value;
            number_from_text(&v.to_string(), f64::from(v))
        }
        "DoubleValue" => {
            let v = DoubleW::decode(bytes)
                .map_err(malformed("DoubleValue"))?
                .value;
            number_from_text(&v.to_string(), v)
        }
        "BoolValue" => Ok(Json::Bool(
            BoolW::decode(bytes).map_err(malformed("BoolValue"))?.value,
        )),
        "Int32Value" => Ok(Json::from(
            Int32W::decode(bytes)
                .map_err(malformed("Int32Value"))?
                .value,
        )),
        "Int64Value" => Ok(Json::from(
            Int64W::decode(bytes)
                .map_err(malformed("Int64Value"))?
                .value,
        )),
        "UInt32Value" => Ok(Json::from(
            UInt32W::decode(bytes)
                .map_err(malformed("UInt32Value"))?
                .value,
        )),
        "UInt64Value" => Ok(Json::from(
            UInt64W::decode(bytes)
                .map_err(malformed("UInt64Value"))?
                .value,
        )),
        _ => Err(ValueError::UnknownType(any.type_url.clone())),
    }
}

fn wrap<M: Message>(kind: &str, m: &M) -> Any {
    Any {
        type_url: format!("{PREFIX}{kind}"),
        value: m.encode_to_vec(),
    }
}

/// Encodes one JSON value the way edgecore does: strings as `StringValue`, every number
/// as a 32-bit `FloatValue` (rounded), booleans as `BoolValue`; anything else is refused
/// (edgecore drops such a device).
pub fn encode_json(value: &Json) -> Result<Any, ValueError> {
    match value {
        Json::String(s) => Ok(wrap(
            "StringValue",
            &StringW {
                value: s.clone().into_bytes(),
            },
        )),
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            #[allow(clippy::cast_possible_truncation)]
            Ok(wrap("FloatValue", &FloatW { value: f as f32 }))
        }
        Json::Bool(b) => Ok(wrap("BoolValue", &BoolW { value: *b })),
        Json::Null => Err(ValueError::NotScalar("null")),
        Json::Array(_) => Err(ValueError::NotScalar("an array")),
        Json::Object(_) => Err(ValueError::NotScalar("an object")),
    }
}

/// Wraps a double as `DoubleValue` (edgecore never sends it; fakes and newer peers may).
pub fn encode_double(value: f64) -> Any {
    wrap("DoubleValue", &DoubleW { value })
}

/// Wraps a signed integer as `Int64Value`.
pub fn encode_int64(value: i64) -> Any {
    wrap("Int64Value", &Int64W { value })
}

/// A decoded `configData`: the usable keys as a JSON object, and the keys that could
/// not be decoded with the reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Keys whose values decoded.
    pub values: Map<String, Json>,
    /// Keys that did not, in key order.
    pub errors: Vec<(String, ValueError)>,
}

/// Decodes a whole `configData` (absent = empty). Keys come out sorted, so equal maps
/// give equal JSON whatever order the peer used.
pub fn decode_config(config: Option<&CustomizedValue>) -> Decoded {
    let mut out = Decoded::default();
    let Some(config) = config else {
        return out;
    };
    let mut keys: Vec<&String> = config.data.keys().collect();
    keys.sort();
    for key in keys {
        let Some(any) = config.data.get(key) else {
            continue;
        };
        match decode_any(any) {
            Ok(v) => {
                out.values.insert(key.clone(), v);
            }
            Err(e) => out.errors.push((key.clone(), e)),
        }
    }
    out
}

/// Encodes a JSON object as a `configData` the way edgecore does (top-level keys only).
pub fn encode_config(values: &Map<String, Json>) -> Result<CustomizedValue, (String, ValueError)> {
    let mut data = HashMap::new();
    for (k, v) in values {
        data.insert(k.clone(), encode_json(v).map_err(|e| (k.clone(), e))?);
    }
    Ok(CustomizedValue { data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_502_has_the_documented_bytes() {
        let any = encode_json(&json!(502)).unwrap();
        assert_eq!(
            any.type_url,
            "type.googleapis.com/google.protobuf.FloatValue"
        );
        assert_eq!(any.value, vec![0x0d, 0x00, 0x00, 0xfb, 0x43]);
        assert_eq!(decode_any(&any).unwrap(), json!(502));
    }

    #[test]
    fn zero_values_have_no_bytes_and_mean_zero() {
        for (v, back) in [
            (json!(0), json!(0)),
            (json!(false), json!(false)),
            (json!(""), json!("")),
        ] {
            let any = encode_json(&v).unwrap();
            assert!(any.value.is_empty(), "{v}");
            assert_eq!(decode_any(&any).unwrap(), back);
        }
        for kind in [
            "DoubleValue",
            "Int32Value",
            "Int64Value",
            "UInt32Value",
            "UInt64Value",
        ] {
            let any = Any {
                type_url: format!("{PREFIX}{kind}"),
                value: vec![],
            };
            assert_eq!(decode_any(&any).unwrap(), json!(0), "{kind}");
        }
    }

    #[test]
    fn float32_rounding_gives_the_shortest_decimal() {
        assert_eq!(
            decode_any(&encode_json(&json!(0.1)).unwrap()).unwrap(),
            json!(0.1)
        );
        assert_eq!(
            decode_any(&encode_json(&json!(0.03125)).unwrap()).unwrap(),
            json!(0.03125)
        );
        assert_eq!(
            decode_any(&encode_json(&json!(-12.5)).unwrap()).unwrap(),
            json!(-12.5)
        );
        // Above 2^24 a float32 rounds, as on edgecore.
        assert_eq!(
            decode_any(&encode_json(&json!(16_777_217)).unwrap()).unwrap(),
            json!(16_777_216)
        );
        assert_eq!(
            decode_any(&encode_json(&json!(9600)).unwrap()).unwrap(),
            json!(9600)
        );
    }

    #[test]
    fn other_wrappers_decode() {
        assert_eq!(decode_any(&encode_double(0.1)).unwrap(), json!(0.1));
        assert_eq!(decode_any(&encode_int64(-7)).unwrap(), json!(-7));
        let u = wrap("UInt64Value", &UInt64W { value: u64::MAX });
        assert_eq!(decode_any(&u).unwrap(), json!(u64::MAX));
        let b = wrap("BoolValue", &BoolW { value: true });
        assert_eq!(decode_any(&b).unwrap(), json!(true));
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        let nan = wrap("FloatValue", &FloatW { value: f32::NAN });
        assert!(matches!(decode_any(&nan), Err(ValueError::NotFinite(_))));
        let inf = wrap(
            "DoubleValue",
            &DoubleW {
                value: f64::INFINITY,
            },
        );
        assert!(matches!(decode_any(&inf), Err(ValueError::NotFinite(_))));
        let junk = Any {
            type_url: format!("{PREFIX}FloatValue"),
            value: vec![0x0d, 1],
        };
        assert!(matches!(
            decode_any(&junk),
            Err(ValueError::Malformed { .. })
        ));
        let bad_utf8 = Any {
            type_url: format!("{PREFIX}StringValue"),
            value: vec![0x0a, 1, 0xff],
        };
        assert_eq!(decode_any(&bad_utf8), Err(ValueError::NotUtf8));
        let odd = Any {
            type_url: "type.googleapis.com/google.protobuf.Struct".into(),
            value: vec![],
        };
        assert!(matches!(decode_any(&odd), Err(ValueError::UnknownType(_))));
        assert!(encode_json(&json!({"a": 1})).is_err());
        assert!(encode_json(&json!(null)).is_err());
    }

    #[test]
    fn configs_round_trip_and_report_bad_keys() {
        let obj = json!({"ip": "192.168.10.50", "port": 502, "slaveID": 1, "isSwap": false, "scale": 0.1});
        let cfg = encode_config(obj.as_object().unwrap()).unwrap();
        let back = decode_config(Some(&cfg));
        assert!(back.errors.is_empty());
        assert_eq!(Json::Object(back.values), obj);
        let mut cfg = cfg;
        cfg.data.insert(
            "broken".into(),
            Any {
                type_url: "x".into(),
                value: vec![],
            },
        );
        let back = decode_config(Some(&cfg));
        assert_eq!(back.errors.len(), 1);
        assert_eq!(back.errors[0].0, "broken");
        assert!(decode_config(None).values.is_empty());
    }
}
