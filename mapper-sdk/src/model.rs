//! The protocol-agnostic vocabulary of a mapper: device and property names, data types,
//! values with their canonical wire form, access modes and device states.
//!
//! Everything here is pure. The wire rules of edgecore (key and value character sets,
//! stored twin types) live here too, so that a value is checked before it is sent.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The id of a device as it appears in MQTT topics: the profile's `id` (KubeEdge up to
/// 1.15) or `namespace/name` (KubeEdge 1.17 and later), see [`crate::profile::TopicScheme`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

impl DeviceId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DeviceId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The name of a device property (a twin key on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PropertyName(pub String);

impl PropertyName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PropertyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PropertyName {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The data type of a property, as the device model declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// A signed 64-bit integer (`int`, `integer`).
    Int,
    /// A floating point number (`float`).
    Float,
    /// A floating point number (`double`). edgecore cannot store twins of this type
    /// (docs/kubeedge-contract.md#rule-stored-twin-types).
    Double,
    /// `true` or `false` (`boolean`, `bool`).
    Boolean,
    /// Text (`string`).
    String,
    /// Raw bytes (`bytes`), reported as lowercase hex. edgecore cannot store twins of this type.
    Bytes,
}

impl DataType {
    /// Parses a type name case-insensitively, accepting the spellings seen in KubeEdge
    /// models and CRDs (`int`, `integer`, `INT`, `float`, `double`, `boolean`, `bool`,
    /// `string`, `bytes`).
    pub fn parse(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "int" | "integer" | "int64" | "long" => Self::Int,
            "float" => Self::Float,
            "double" => Self::Double,
            "boolean" | "bool" => Self::Boolean,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            _ => return None,
        })
    }

    /// The name sent as `metadata.type` in twin reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Double => "double",
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Bytes => "bytes",
        }
    }

    /// Whether values of this type are numbers (and so compared numerically).
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Double)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a property may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AccessMode {
    /// Readable and writable through twin deltas.
    #[default]
    ReadWrite,
    /// Readable only; deltas for it are refused.
    ReadOnly,
}

impl AccessMode {
    /// Parses `ReadWrite`/`ReadOnly` case-insensitively, plus the legacy `rw`/`r`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "readwrite" | "rw" | "read_write" => Some(Self::ReadWrite),
            "readonly" | "r" | "ro" | "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// A property value read from or written to a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `Int` (64-bit registers).
    UInt(u64),
    /// A floating point number. Drivers that decode `f32` should convert through its
    /// shortest decimal form so that `21.1f32` is reported as `21.1`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// Why a string could not be turned into a [`Value`] of a given type.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValueError {
    /// The text is not a number of the expected kind.
    #[error("{} is not a valid {data_type} value: {reason}", crate::excerpt::quoted(.text))]
    Invalid {
        /// The offending text.
        text: String,
        /// The expected type.
        data_type: DataType,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl Value {
    /// Parses wire text (a delta, a twin expected value) as a value of `data_type`.
    ///
    /// Integers accept an integral decimal (`"30"`, `"30.0"`); floats refuse NaN and
    /// infinities; booleans accept what Go's `strconv.ParseBool` accepts plus `on`/`off`;
    /// bytes accept hex or base64.
    pub fn parse(text: &str, data_type: DataType) -> Result<Self, ValueError> {
        let invalid = |reason| ValueError::Invalid {
            text: text.to_owned(),
            data_type,
            reason,
        };
        let t = text.trim();
        match data_type {
            DataType::Int => {
                if let Ok(i) = t.parse::<i64>() {
                    return Ok(Self::Int(i));
                }
                if let Ok(u) = t.parse::<u64>() {
                    return Ok(Self::UInt(u));
                }
                let f: f64 = t.parse().map_err(|_| invalid("not an integer"))?;
                if !f.is_finite() || f.fract() != 0.0 {
                    return Err(invalid("not an integer"));
                }
                if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Self::Int(f as i64))
                } else {
                    Err(invalid("out of the 64-bit range"))
                }
            }
            DataType::Float | DataType::Double => {
                let f: f64 = t.parse().map_err(|_| invalid("not a number"))?;
                if f.is_finite() {
                    Ok(Self::Float(f))
                } else {
                    Err(invalid("not a finite number"))
                }
            }
            DataType::Boolean => match t.to_ascii_lowercase().as_str() {
                "1" | "t" | "true" | "on" => Ok(Self::Bool(true)),
                "0" | "f" | "false" | "off" => Ok(Self::Bool(false)),
                _ => Err(invalid("expected true or false")),
            },
            DataType::String => Ok(Self::String(text.to_owned())),
            DataType::Bytes => parse_bytes(t)
                .map(Self::Bytes)
                .ok_or_else(|| invalid("expected hex or base64")),
        }
    }

    /// Converts a JSON value a device returned (e.g. one picked from an HTTP reply) to a
    /// value of `data_type`. Numbers, booleans and strings are taken for what they are and
    /// checked against the type (a string is parsed like [`Value::parse`]); `null`, arrays
    /// and objects are refused, except that any JSON is accepted as text for a `string`
    /// property.
    ///
    /// ```
    /// use mapper_sdk::model::{DataType, Value};
    /// let v = Value::from_json(&serde_json::json!(21.5), DataType::Float).unwrap();
    /// assert_eq!(v, Value::Float(21.5));
    /// assert_eq!(Value::from_json(&serde_json::json!("7"), DataType::Int).unwrap(), Value::Int(7));
    /// assert!(Value::from_json(&serde_json::json!(null), DataType::Int).is_err());
    /// ```
    pub fn from_json(json: &serde_json::Value, data_type: DataType) -> Result<Self, ValueError> {
        use serde_json::Value as J;
        let invalid = |reason| ValueError::Invalid {
            text: json.to_string(),
            data_type,
            reason,
        };
        match (json, data_type) {
            (J::String(s), _) => Self::parse(s, data_type),
            (J::Bool(b), DataType::Boolean) => Ok(Self::Bool(*b)),
            (J::Bool(b), DataType::String) => Ok(Self::String(b.to_string())),
            (J::Bool(_), _) => Err(invalid("a boolean where a number was expected")),
            (J::Number(n), DataType::Boolean) => match n.as_f64() {
                Some(0.0) => Ok(Self::Bool(false)),
                Some(1.0) => Ok(Self::Bool(true)),
                _ => Err(invalid("expected true, false, 1 or 0")),
            },
            (J::Number(n), DataType::String) => Ok(Self::String(n.to_string())),
            (J::Number(n), DataType::Bytes) => Err(invalid(if n.is_f64() {
                "a number where bytes were expected"
            } else {
                "an integer where bytes were expected"
            })),
            (J::Number(n), DataType::Int) => {
                if let Some(i) = n.as_i64() {
                    Ok(Self::Int(i))
                } else if let Some(u) = n.as_u64() {
                    Ok(Self::UInt(u))
                } else {
                    Self::parse(&n.to_string(), data_type)
                }
            }
            (J::Number(n), _) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Self::Float)
                .ok_or_else(|| invalid("not a finite number")),
            (J::Null, _) => Err(invalid("null (the device has no value)")),
            (other, DataType::String) => Ok(Self::String(other.to_string())),
            _ => Err(invalid(
                "an array or object where a single value was expected",
            )),
        }
    }

    /// The canonical wire text: decimal integers, floats in the shortest form that reads
    /// back exactly and never in exponent form, `true`/`false`, text as is, bytes as
    /// lowercase hex. `None` for non-finite floats, which have no valid wire form.
    pub fn canonical(&self) -> Option<String> {
        Some(match self {
            Self::Int(i) => i.to_string(),
            Self::UInt(u) => u.to_string(),
            Self::Float(f) => {
                if !f.is_finite() {
                    return None;
                }
                // Rust's Display for f64 is shortest-round-trip and never uses exponents.
                if *f == 0.0 {
                    "0".to_owned()
                } else {
                    f.to_string()
                }
            }
            Self::Bool(b) => b.to_string(),
            Self::String(s) => s.clone(),
            Self::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        })
    }

    /// The value as `f64`, for numbers and booleans (1/0).
    pub fn as_f64(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::UInt(u) => Some(*u as f64),
            Self::Float(f) => Some(*f),
            Self::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Whether two values mean the same thing for a property of `data_type`: integers
    /// exactly, floats within a relative 1e-6 (a float32 register's precision), other
    /// kinds by equality.
    pub fn same_as(&self, other: &Self, data_type: DataType) -> bool {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::UInt(a), Self::UInt(b)) => a == b,
            (Self::Int(a), Self::UInt(b)) | (Self::UInt(b), Self::Int(a)) => {
                u64::try_from(*a).is_ok_and(|a| a == *b)
            }
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Bytes(a), Self::Bytes(b)) => a == b,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) if data_type.is_numeric() => {
                    let scale = x.abs().max(y.abs()).max(1.0);
                    (x - y).abs() <= scale * 1e-6
                }
                _ => false,
            },
        }
    }
}

fn parse_bytes(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if !hex.is_empty() && hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text)
                .ok()
        })
}

/// Connectivity of a device as reported on `state/update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Transactions succeed.
    Online,
    /// The device cannot be reached.
    Offline,
}

/// The strings sent for each [`DeviceState`].
///
/// `online`/`offline` are accepted by every edgecore version; `OK`/`DISCONNECTED` are what
/// mappers-go sends and are accepted from KubeEdge 1.7 on
/// (docs/kubeedge-contract.md#quirk-state-names-differ-between-releases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateNames {
    /// Sent for [`DeviceState::Online`].
    pub online: String,
    /// Sent for [`DeviceState::Offline`].
    pub offline: String,
}

impl Default for StateNames {
    fn default() -> Self {
        Self {
            online: "online".into(),
            offline: "offline".into(),
        }
    }
}

impl StateNames {
    /// The mappers-go spelling: `OK` and `DISCONNECTED`.
    pub fn legacy() -> Self {
        Self {
            online: "OK".into(),
            offline: "DISCONNECTED".into(),
        }
    }

    /// The string for a state.
    pub fn name(&self, state: DeviceState) -> &str {
        match state {
            DeviceState::Online => &self.online,
            DeviceState::Offline => &self.offline,
        }
    }
}

fn edge_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.,:/@#".contains(c)
}

/// Whether edgecore accepts `key` as a twin property name (`^[a-zA-Z0-9-_.,:/@#]{1,128}$`).
pub fn valid_twin_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.chars().all(edge_char)
}

/// Whether edgecore accepts a non-empty twin value (`^[a-zA-Z0-9-_.,:/@#]{1,512}$`).
pub fn valid_twin_value(value: &str) -> bool {
    (1..=512).contains(&value.len()) && value.chars().all(edge_char)
}

/// Why edgecore would refuse a reported value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The value has characters outside `[a-zA-Z0-9-_.,:/@#]` or is too long.
    #[error(
        "value {0:?} would be refused by edgecore: only letters, digits and -_.,:/@# are allowed, at most 512 characters"
    )]
    Charset(String),
    /// The value does not parse under the twin's stored type.
    #[error("value {value:?} does not parse as the twin's stored type {stored:?}")]
    StoredType {
        /// The value.
        value: String,
        /// The stored twin type.
        stored: String,
    },
    /// The twin's stored type is one edgecore refuses for every update.
    #[error(
        "the twin's stored type {0:?} is refused by edgecore for every update; set the desired metadata type to int, float, boolean or string"
    )]
    UnusableType(String),
}

/// Checks that a twin's stored type is one edgecore accepts values for at all
/// (docs/kubeedge-contract.md#rule-stored-twin-types): `""`, `string`, `int`, `integer`, `float`, `boolean` or `deleted`.
pub fn check_stored_type(stored: &str) -> Result<(), WireError> {
    match stored {
        "" | "string" | "deleted" | "int" | "integer" | "float" | "boolean" => Ok(()),
        other => Err(WireError::UnusableType(other.to_owned())),
    }
}

/// Checks a value the way edgecore does before it stores it
/// (docs/kubeedge-contract.md#rule-the-character-set-of-twin-keys-and-values,
/// docs/kubeedge-contract.md#rule-stored-twin-types): the
/// character set, and, when the twin's stored type is known, that the value parses as it.
/// An empty value is accepted (edgecore skips the check).
pub fn check_wire_value(value: &str, stored_type: Option<&str>) -> Result<(), WireError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 512 || !value.chars().all(edge_char) {
        return Err(WireError::Charset(value.to_owned()));
    }
    let Some(stored) = stored_type else {
        return Ok(());
    };
    check_stored_type(stored)?;
    let ok = match stored {
        "int" | "integer" => value.parse::<i64>().is_ok(),
        "float" => value.parse::<f64>().is_ok(),
        "boolean" => value == "true" || value == "false",
        _ => true, // "", string, deleted (other types were refused above)
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::StoredType {
            value: value.to_owned(),
            stored: stored.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_type_spellings() {
        assert_eq!(DataType::parse("integer"), Some(DataType::Int));
        assert_eq!(DataType::parse("INT"), Some(DataType::Int));
        assert_eq!(DataType::parse("Double"), Some(DataType::Double));
        assert_eq!(DataType::parse("bool"), Some(DataType::Boolean));
        assert_eq!(DataType::parse("stream"), None);
    }

    #[test]
    fn floats_never_use_exponents() {
        assert_eq!(Value::Float(1e6).canonical().unwrap(), "1000000");
        assert_eq!(Value::Float(1e-6).canonical().unwrap(), "0.000001");
        assert_eq!(Value::Float(25.5).canonical().unwrap(), "25.5");
        assert_eq!(Value::Float(-0.0).canonical().unwrap(), "0");
        assert_eq!(Value::Float(f64::NAN).canonical(), None);
    }

    #[test]
    fn parse_by_type() {
        assert_eq!(Value::parse("30", DataType::Int), Ok(Value::Int(30)));
        assert_eq!(Value::parse("30.0", DataType::Int), Ok(Value::Int(30)));
        assert!(Value::parse("30.5", DataType::Int).is_err());
        assert_eq!(
            Value::parse("18446744073709551615", DataType::Int),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            Value::parse("TRUE", DataType::Boolean),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            Value::parse("off", DataType::Boolean),
            Ok(Value::Bool(false))
        );
        assert!(Value::parse("nan", DataType::Float).is_err());
        assert_eq!(
            Value::parse("0a0b", DataType::Bytes),
            Ok(Value::Bytes(vec![10, 11]))
        );
        assert_eq!(
            Value::parse("AQ==", DataType::Bytes),
            Ok(Value::Bytes(vec![1]))
        );
    }

    #[test]
    fn numeric_sameness() {
        assert!(Value::Float(30.0).same_as(&Value::Int(30), DataType::Float));
        assert!(Value::Float(21.500000000000004).same_as(&Value::Float(21.5), DataType::Float));
        assert!(!Value::Float(21.6).same_as(&Value::Float(21.5), DataType::Float));
        assert!(!Value::String("1".into()).same_as(&Value::Int(1), DataType::String));
    }

    #[test]
    fn wire_checks_follow_edgecore() {
        assert!(check_wire_value("-12.5", Some("float")).is_ok());
        assert!(check_wire_value("1e-06", Some("float")).is_ok());
        assert!(matches!(
            check_wire_value("1e+06", None),
            Err(WireError::Charset(_))
        ));
        assert!(matches!(
            check_wire_value("a b", None),
            Err(WireError::Charset(_))
        ));
        assert!(matches!(
            check_wire_value("AQ==", None),
            Err(WireError::Charset(_))
        ));
        assert!(matches!(
            check_wire_value("25.5", Some("int")),
            Err(WireError::StoredType { .. })
        ));
        assert!(matches!(
            check_wire_value("1", Some("double")),
            Err(WireError::UnusableType(_))
        ));
        assert!(matches!(
            check_wire_value("1", Some("boolean")),
            Err(WireError::StoredType { .. })
        ));
        assert!(check_wire_value("true", Some("boolean")).is_ok());
        assert!(valid_twin_key("temperature-enable"));
        assert!(!valid_twin_key("temp erature"));
        assert!(!valid_twin_key(""));
    }

    proptest! {
        #[test]
        fn float_canonical_round_trips_and_passes_edgecore(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let text = Value::Float(f).canonical().unwrap();
            prop_assert!(!text.contains('e') && !text.contains('E'));
            prop_assert!(check_wire_value(&text, Some("float")).is_ok() || text.len() > 512);
            let back = Value::parse(&text, DataType::Double).unwrap();
            prop_assert_eq!(back, Value::Float(if f == 0.0 { 0.0 } else { f }));
        }

        #[test]
        fn int_canonical_round_trips(i in any::<i64>()) {
            let text = Value::Int(i).canonical().unwrap();
            prop_assert_eq!(Value::parse(&text, DataType::Int).unwrap(), Value::Int(i));
            prop_assert!(check_wire_value(&text, Some("int")).is_ok());
        }
    }
}

#[cfg(test)]
mod from_json_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_become_values_of_the_property_type() {
        let f = |j, t| Value::from_json(&j, t);
        assert_eq!(f(json!(3), DataType::Int).unwrap(), Value::Int(3));
        assert_eq!(f(json!(3.0), DataType::Int).unwrap(), Value::Int(3));
        assert!(f(json!(3.5), DataType::Int).is_err());
        assert_eq!(
            f(json!(u64::MAX), DataType::Int).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(f(json!(2), DataType::Float).unwrap(), Value::Float(2.0));
        assert_eq!(
            f(json!(true), DataType::Boolean).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(f(json!(0), DataType::Boolean).unwrap(), Value::Bool(false));
        assert_eq!(
            f(json!("on"), DataType::Boolean).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            f(json!(1.5), DataType::String).unwrap(),
            Value::String("1.5".into())
        );
        assert_eq!(
            f(json!("0a0b"), DataType::Bytes).unwrap(),
            Value::Bytes(vec![10, 11])
        );
        assert!(f(json!(true), DataType::Int).is_err());
        assert!(f(json!(null), DataType::String).is_err());
        assert!(f(json!([1]), DataType::Int).is_err());
        assert_eq!(
            f(json!({"a": 1}), DataType::String).unwrap(),
            Value::String("{\"a\":1}".into())
        );
    }
}
