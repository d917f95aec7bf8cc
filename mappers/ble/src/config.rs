//! Typed, validated BLE protocol and visitor configs.
//!
//! # Protocol config
//!
//! The protocol kind is `bluetooth` (v1alpha2, and the usual v1beta1 `protocolName`) or
//! `ble`, matched case-insensitively. The config is `{"macAddress": "A4:C1:38:1A:49:90"}`
//! (docs/kubeedge-contract.md#rule-bluetooth-fields): six hex pairs separated by `:` or `-`, or twelve hex digits without
//! separators, normalised to upper case with colons. The CRD calls the address optional,
//! but this mapper finds devices by address, so it is required.
//!
//! ## Extensions
//!
//! Read from `protocolCommonConfig.customizedValues` (v1alpha2) or from the flat protocol
//! config (v1alpha2 `protocolConfig`, v1beta1 `configData`); `customizedValues` wins:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `adapter` | the first adapter in name order (`hci0` before `hci1`) | the HCI adapter to use, e.g. `hci1`; BlueZ lists adapters in no stable order, so the default is chosen by name |
//! | `connectTimeout` | 8000 | ms for finding (scanning), connecting and discovering services; the SDK gives up on a connect after its own 10 s |
//!
//! # Visitor config
//!
//! | key | meaning |
//! |---|---|
//! | `characteristicUUID` | required. 128-bit with or without dashes (`f000aa0104514000b000000000000000`), or the 16-bit (`2a19`, `0x2a19`) or 32-bit short form, expanded with the Bluetooth base UUID `0000xxxx-0000-1000-8000-00805f9b34fb` |
//! | `dataWrite` | desired value → bytes to write. Each value is base64 (as the ConfigMap and the CRD carry it: `"AQ=="`) or an array of integers 0-255 (as the samples show: `[1]`) |
//! | `dataConverter` | `{startIndex, endIndex, shiftLeft, shiftRight, orderOfOperations: [{operationType, operationValue}]}`, see [`crate::convert`] |
//!
//! Extensions, flat in the visitor config or inside a `customizedValues` object of it:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `notify` | `auto` | `true`: subscribe (falls back to polling with a warning when the characteristic cannot notify); `false`: always poll; `auto`: subscribe when the characteristic has the notify or indicate flag |
//! | `writeEncoding` | by type, see below | how a desired value that is not a `dataWrite` key is encoded: `uint8`, `int8`, `uint16le`, `uint16be`, `int16le`, `int16be`, `uint32le`/`be`, `int32le`/`be`, `uint64le`/`be`, `int64le`/`be`, `float32le`/`be`, `float64le`/`be`, `utf8`, `bytes` (`u16le`, `i16le`, `f32le`, `string`, `raw` are accepted too) |
//! | `writeType` | `auto` | `request` (write with response), `command` (without response), or `auto`: with response unless the characteristic only supports writes without response |
//!
//! Without `writeEncoding`, a property without `dataWrite` writes strings as UTF-8 text,
//! bytes as they are and booleans as one byte 1/0; `int`, `float` and `double` properties
//! need a `writeEncoding` (their width is unknown). A property with `dataWrite` and no
//! `writeEncoding` accepts only the `dataWrite` keys.
//!
//! Field names match case-insensitively, ignoring `_` and `-` (Go style).
//!
//! ## Tolerated sample mistakes
//!
//! KubeEdge's CC2650 sample (`CC2650-device-instance.yaml`) indents `dataConverter` and
//! `dataWrite` wrongly, so their contents sit beside a `null` `dataConverter`/`dataWrite`
//! in the visitor. When `dataConverter` is null or `{}`, visitor-level `startIndex`,
//! `endIndex`, `shiftLeft`, `shiftRight` and `orderOfOperations` are used as the converter
//! (when `dataConverter` is set too, that is refused as ambiguous). When `dataWrite` is null
//! or `{}`, other visitor-level keys whose value is an array of integers 0-255 are taken as
//! `dataWrite` entries. Both cases are logged as warnings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use mapper_sdk::driver::{ConfigError, ConfigWarning};
use mapper_sdk::model::DataType;
use mapper_sdk::profile::unknown::{UnknownKey, suggest};
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use serde_json::{Map, Value as Json};
use tracing::warn;
use uuid::Uuid;

/// The default for `connectTimeout`: scan, connect and service discovery together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// The Bluetooth base UUID that 16- and 32-bit UUIDs are short forms of.
pub const BASE_UUID: Uuid = Uuid::from_u128(0x0000_0000_0000_1000_8000_0080_5f9b_34fb);

/// The largest number of bytes the converter turns into one integer.
pub const MAX_INTEGER_BYTES: usize = 8;

/// Whether a protocol kind belongs to this mapper (`bluetooth` or `ble`, any case).
pub fn handles_kind(kind: &str) -> bool {
    let k = kind.trim();
    k.eq_ignore_ascii_case("bluetooth") || k.eq_ignore_ascii_case("ble")
}

/// A Bluetooth device address, shown as `A4:C1:38:1A:49:90`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Parses `AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff` or `AABBCCDDEEFF`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let hex: String = if s.contains(':') || s.contains('-') {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
                return Err(format!(
                    "{s:?} is not a Bluetooth address: expected six hex pairs like A4:C1:38:1A:49:90"
                ));
            }
            parts.concat()
        } else {
            s.to_owned()
        };
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a Bluetooth address: expected six hex pairs like A4:C1:38:1A:49:90"
            ));
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("{s:?} is not a Bluetooth address: {e}"))?;
        }
        Ok(Self(out))
    }
}

/// A typed, validated protocol config of one BLE device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleProtocol {
    /// The device address.
    pub mac: MacAddr,
    /// The adapter name (`hci0`); `None`: the first adapter in name order.
    pub adapter: Option<String>,
    /// Scan + connect + discovery timeout.
    pub connect_timeout: Duration,
}

/// A typed, validated visitor config of one property.
#[derive(Debug, Clone, PartialEq)]
pub struct BleVisitor {
    /// The GATT characteristic.
    pub characteristic: Uuid,
    /// Desired value → bytes, in profile order.
    pub data_write: Vec<(String, Vec<u8>)>,
    /// How read bytes become a number.
    pub converter: DataConverter,
    /// Whether to subscribe to notifications.
    pub notify: NotifyMode,
    /// How values outside `data_write` are encoded for writes.
    pub write_encoding: Option<WriteEncoding>,
    /// Write with or without response.
    pub write_type: WriteType,
}

/// The dataConverter. Indices and shifts are `None` when absent or 0 (Go's `omitempty`
/// drops zeros from the ConfigMap, so 0 and absent must mean the same thing).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataConverter {
    /// First byte (inclusive).
    pub start_index: Option<usize>,
    /// Last byte (inclusive); below `start_index` means reversed order.
    pub end_index: Option<usize>,
    /// Left shift applied to the integer (takes precedence over `shift_right`).
    pub shift_left: Option<u32>,
    /// Right shift applied to the integer.
    pub shift_right: Option<u32>,
    /// Applied in order to the float value.
    pub operations: Vec<Operation>,
}

impl DataConverter {
    /// Whether the converter changes the number (a shift or an operation).
    pub fn is_arithmetic(&self) -> bool {
        self.shift_left.is_some() || self.shift_right.is_some() || !self.operations.is_empty()
    }

    /// Whether a byte range is selected (otherwise the whole value is used).
    pub fn has_range(&self) -> bool {
        self.start_index.is_some() || self.end_index.is_some()
    }
}

/// One arithmetic step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operation {
    /// What to do.
    pub kind: OperationKind,
    /// With which operand.
    pub value: f64,
}

/// The four operations of `orderOfOperations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// `x + v`
    Add,
    /// `x - v`
    Subtract,
    /// `x * v`
    Multiply,
    /// `x / v`
    Divide,
}

/// Whether to subscribe to a characteristic's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// Subscribe when the characteristic can notify or indicate.
    #[default]
    Auto,
    /// Subscribe (poll with a warning when it cannot).
    On,
    /// Never subscribe; poll.
    Off,
}

/// Write with or without response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteType {
    /// With response, unless the characteristic only supports writes without response.
    #[default]
    Auto,
    /// A write request (with response).
    Request,
    /// A write command (without response).
    Command,
}

/// Byte order of a multi-byte number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Least significant byte first (what most GATT profiles use).
    Little,
    /// Most significant byte first.
    Big,
}

/// A typed encoding for writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEncoding {
    /// An unsigned integer of `bytes` bytes.
    Unsigned {
        /// Width: 1, 2, 4 or 8.
        bytes: u8,
        /// Byte order.
        endian: Endian,
    },
    /// A two's complement integer of `bytes` bytes.
    Signed {
        /// Width: 1, 2, 4 or 8.
        bytes: u8,
        /// Byte order.
        endian: Endian,
    },
    /// An IEEE 754 float of 4 or 8 bytes.
    Float {
        /// Width: 4 or 8.
        bytes: u8,
        /// Byte order.
        endian: Endian,
    },
    /// The value's text as UTF-8.
    Utf8,
    /// Raw bytes (a `bytes` value, or hex/base64 text).
    Bytes,
}

impl FromStr for WriteEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n: String = s
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match n.as_str() {
            "utf8" | "string" | "text" => return Ok(Self::Utf8),
            "bytes" | "raw" => return Ok(Self::Bytes),
            "uint8" | "u8" | "byte" => {
                return Ok(Self::Unsigned {
                    bytes: 1,
                    endian: Endian::Little,
                });
            }
            "int8" | "i8" => {
                return Ok(Self::Signed {
                    bytes: 1,
                    endian: Endian::Little,
                });
            }
            _ => {}
        }
        let (body, endian) = if let Some(b) = n.strip_suffix("le") {
            (b, Endian::Little)
        } else if let Some(b) = n.strip_suffix("be") {
            (b, Endian::Big)
        } else {
            return Err(unknown_encoding(s));
        };
        let (kind, bits) =
            if let Some(b) = body.strip_prefix("uint").or_else(|| body.strip_prefix('u')) {
                ('u', b)
            } else if let Some(b) = body.strip_prefix("int").or_else(|| body.strip_prefix('i')) {
                ('i', b)
            } else if let Some(b) = body
                .strip_prefix("float")
                .or_else(|| body.strip_prefix('f'))
            {
                ('f', b)
            } else {
                return Err(unknown_encoding(s));
            };
        let bytes = match (kind, bits) {
            ('u' | 'i', "16") => 2,
            ('u' | 'i' | 'f', "32") => 4,
            ('u' | 'i' | 'f', "64") => 8,
            _ => return Err(unknown_encoding(s)),
        };
        Ok(match kind {
            'u' => Self::Unsigned { bytes, endian },
            'i' => Self::Signed { bytes, endian },
            _ => Self::Float { bytes, endian },
        })
    }
}

fn unknown_encoding(s: &str) -> String {
    format!(
        "unknown encoding {s:?}: use uint8, int8, uint16le, uint16be, int16le, int16be, uint32le, uint32be, int32le, int32be, uint64le, uint64be, int64le, int64be, float32le, float32be, float64le, float64be, utf8 or bytes"
    )
}

/// Parses a characteristic UUID: 128-bit with or without dashes, or a 16/32-bit short form
/// (optionally `0x`-prefixed) expanded with the Bluetooth base UUID.
pub fn parse_uuid(text: &str) -> Result<Uuid, String> {
    let t = text.trim();
    let short = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if (short.len() == 4 || short.len() == 8) && short.bytes().all(|b| b.is_ascii_hexdigit()) {
        let v = u32::from_str_radix(short, 16).map_err(|e| e.to_string())?;
        return Ok(Uuid::from_u128(BASE_UUID.as_u128() | (u128::from(v) << 96)));
    }
    let plain = t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let dashed = t.len() == 36
        && t.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if plain || dashed {
        return Uuid::parse_str(t).map_err(|e| format!("{t:?} is not a UUID: {e}"));
    }
    Err(format!(
        "{t:?} is not a characteristic UUID: use 32 hex digits with or without dashes (f000aa01-0451-4000-b000-000000000000) or a 16-bit short form (2a19)"
    ))
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Case-insensitive (Go-style) field lookup; the last matching key wins, as in Go.
fn get<'a>(map: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    let f = fold(name);
    map.iter()
        .filter(|(k, _)| fold(k) == f)
        .map(|(_, v)| v)
        .next_back()
}

/// Like [`get`], treating `null` as absent.
fn get_set<'a>(map: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    get(map, name).filter(|v| !v.is_null())
}

fn as_object<'a>(v: &'a Json, field: &str) -> Result<Option<&'a Map<String, Json>>, ConfigError> {
    match v {
        Json::Null => Ok(None),
        Json::Object(m) => Ok(Some(m)),
        other => Err(ConfigError::new(
            field,
            format!("expected an object, got {other}"),
        )),
    }
}

fn string_field(v: &Json, field: &str) -> Result<String, ConfigError> {
    match v {
        Json::String(s) => Ok(s.clone()),
        other => Err(ConfigError::new(
            field,
            format!("expected a string, got {other}"),
        )),
    }
}

/// A non-negative integer, given as a number or a numeric string.
fn uint_field(v: &Json, field: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::new(field, format!("expected a non-negative integer, got {v}"));
    match v {
        Json::Number(n) => n.as_u64().ok_or_else(bad),
        Json::String(s) => s.trim().parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn float_field(v: &Json, field: &str) -> Result<f64, ConfigError> {
    let bad = || ConfigError::new(field, format!("expected a number, got {v}"));
    let f = match v {
        Json::Number(n) => n.as_f64().ok_or_else(bad)?,
        Json::String(s) => s.trim().parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if f.is_finite() { Ok(f) } else { Err(bad()) }
}

/// Parses and validates a device's protocol config.
pub fn parse_protocol(p: &ProtocolDef) -> Result<BleProtocol, ConfigError> {
    let config = as_object(&p.config, "protocolConfig")?;
    let common = as_object(&p.common, "protocolCommonConfig")?;
    let custom = match common.and_then(|c| get_set(c, "customizedValues")) {
        Some(v) => as_object(v, "protocolCommonConfig.customizedValues")?,
        None => None,
    };
    // An extension from customizedValues (wins) or the flat config.
    let ext = |name: &str| -> Option<(&Json, String)> {
        custom
            .and_then(|c| get_set(c, name))
            .map(|v| (v, format!("protocolCommonConfig.customizedValues.{name}")))
            .or_else(|| {
                config
                    .and_then(|c| get_set(c, name))
                    .map(|v| (v, format!("protocolConfig.{name}")))
            })
    };
    let mac_text = config
        .and_then(|c| get_set(c, "macAddress"))
        .map(|v| string_field(v, "protocolConfig.macAddress"))
        .transpose()?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                "protocolConfig.macAddress",
                "the device address is required (this mapper finds devices by address), e.g. \"A4:C1:38:1A:49:90\"",
            )
        })?;
    let mac = mac_text
        .parse()
        .map_err(|e: String| ConfigError::new("protocolConfig.macAddress", e))?;
    let adapter = match ext("adapter") {
        Some((v, field)) => {
            let s = string_field(v, &field)?;
            let s = s.trim();
            if s.is_empty() {
                None
            } else if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Some(s.to_owned())
            } else {
                return Err(ConfigError::new(
                    field,
                    format!("{s:?} is not an adapter name; use the HCI name, e.g. hci0"),
                ));
            }
        }
        None => None,
    };
    let connect_timeout = match ext("connectTimeout") {
        Some((v, field)) => {
            let ms = uint_field(v, &field)?;
            if !(100..=600_000).contains(&ms) {
                return Err(ConfigError::new(
                    field,
                    format!("{ms} ms is out of range: use 100 to 600000 (milliseconds)"),
                ));
            }
            Duration::from_millis(ms)
        }
        None => DEFAULT_CONNECT_TIMEOUT,
    };
    Ok(BleProtocol {
        mac,
        adapter,
        connect_timeout,
    })
}

/// The visitor keys, as the docs spell them (for suggestions).
const VISITOR_FIELDS: &[&str] = &[
    "characteristicUUID",
    "dataWrite",
    "dataConverter",
    "startIndex",
    "endIndex",
    "shiftLeft",
    "shiftRight",
    "orderOfOperations",
    "notify",
    "writeEncoding",
    "writeType",
    "customizedValues",
    "protocolName",
];

/// The `protocolConfig` keys.
const PROTOCOL_FIELDS: &[&str] = &["macAddress", "adapter", "connectTimeout"];

/// Keys of `object` (at `at`) that are none of `fields`, with suggestions; `skip` keeps
/// some out (values used by another rule).
fn unknown_keys(
    object: Option<&Map<String, Json>>,
    at: &str,
    fields: &[&str],
    skip: impl Fn(&Json) -> bool,
) -> Vec<ConfigWarning> {
    let Some(object) = object else {
        return Vec::new();
    };
    object
        .iter()
        .filter(|(k, v)| !fields.iter().any(|f| fold(f) == fold(k)) && !skip(v))
        .map(|(k, _)| {
            ConfigWarning::from(UnknownKey {
                path: format!("{at}.{k}"),
                suggestion: suggest(k, fields).map(|f| format!("{at}.{f}")),
            })
        })
        .collect()
}

/// The keys of a device's `protocolConfig` this mapper ignores (the keys of the free-form
/// `customizedValues` are not looked at).
pub fn protocol_unknown_keys(p: &ProtocolDef) -> Vec<ConfigWarning> {
    unknown_keys(
        p.config.as_object(),
        "protocolConfig",
        PROTOCOL_FIELDS,
        |_| false,
    )
}

/// The keys of a property's `visitorConfig` this mapper ignores. Byte lists are left
/// out: beside an empty `dataWrite` they are its mis-indented entries.
pub fn visitor_unknown_keys(property: &PropertyDef) -> Vec<ConfigWarning> {
    unknown_keys(
        property.visitor.as_object(),
        "visitorConfig",
        VISITOR_FIELDS,
        is_byte_array,
    )
}

/// Visitor keys this mapper knows (folded), so that leftovers can be recognised.
const KNOWN_VISITOR_KEYS: &[&str] = &[
    "characteristicuuid",
    "datawrite",
    "dataconverter",
    "startindex",
    "endindex",
    "shiftleft",
    "shiftright",
    "orderofoperations",
    "notify",
    "writeencoding",
    "writetype",
    "customizedvalues",
    "protocolname",
];

/// DMI's configData holds only scalars, so on KubeEdge 1.15+ the structured parts of a
/// visitor (`dataWrite`, `dataConverter`, `orderOfOperations`) are written as JSON text
/// (`dataWrite: '{"ON":[1],"OFF":[0]}'`). Such strings become the structures they hold,
/// whichever source the device came from.
fn unstring_structures(visitor: &Map<String, Json>) -> Option<Map<String, Json>> {
    const STRUCTURED: [&str; 3] = ["datawrite", "dataconverter", "orderofoperations"];
    let parse = |k: &String, v: &Json| -> Option<Json> {
        let Json::String(text) = v else { return None };
        if !STRUCTURED.contains(&k.to_ascii_lowercase().as_str()) {
            return None;
        }
        let t = text.trim_start();
        if !(t.starts_with('{') || t.starts_with('[')) {
            return None;
        }
        serde_json::from_str::<Json>(text)
            .ok()
            .filter(|j| j.is_object() || j.is_array())
    };
    if !visitor.iter().any(|(k, v)| parse(k, v).is_some()) {
        return None;
    }
    Some(
        visitor
            .iter()
            .map(|(k, v)| (k.clone(), parse(k, v).unwrap_or_else(|| v.clone())))
            .collect(),
    )
}

/// Parses and validates one property's visitor config.
pub fn parse_visitor(property: &PropertyDef) -> Result<BleVisitor, ConfigError> {
    let empty = Map::new();
    let given = as_object(&property.visitor, "visitorConfig")?.unwrap_or(&empty);
    let unstrung = unstring_structures(given);
    let visitor = unstrung.as_ref().unwrap_or(given);
    let custom = match get_set(visitor, "customizedValues") {
        Some(v) => as_object(v, "visitorConfig.customizedValues")?,
        None => None,
    };
    let ext = |name: &str| -> Option<(&Json, String)> {
        custom
            .and_then(|c| get_set(c, name))
            .map(|v| (v, format!("visitorConfig.customizedValues.{name}")))
            .or_else(|| get_set(visitor, name).map(|v| (v, format!("visitorConfig.{name}"))))
    };

    let uuid_field = "visitorConfig.characteristicUUID";
    let uuid_text = get_set(visitor, "characteristicUUID")
        .map(|v| string_field(v, uuid_field))
        .transpose()?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                uuid_field,
                "the characteristic UUID is required, e.g. \"f000aa0104514000b000000000000000\" or \"2a19\"",
            )
        })?;
    let characteristic = parse_uuid(&uuid_text).map_err(|e| ConfigError::new(uuid_field, e))?;

    let converter = parse_converter_at_visitor(visitor, property)?;
    let data_write = parse_data_write_at_visitor(visitor, property)?;

    let notify = match ext("notify") {
        None => NotifyMode::Auto,
        Some((Json::Bool(true), _)) => NotifyMode::On,
        Some((Json::Bool(false), _)) => NotifyMode::Off,
        Some((Json::String(s), field)) => match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => NotifyMode::Auto,
            "true" | "on" | "yes" => NotifyMode::On,
            "false" | "off" | "no" => NotifyMode::Off,
            _ => {
                return Err(ConfigError::new(
                    field,
                    format!("{s:?} is not a notify mode: use true, false or auto"),
                ));
            }
        },
        Some((other, field)) => {
            return Err(ConfigError::new(
                field,
                format!("{other} is not a notify mode: use true, false or auto"),
            ));
        }
    };
    let write_encoding = match ext("writeEncoding") {
        None => None,
        Some((v, field)) => Some(
            string_field(v, &field)?
                .parse()
                .map_err(|e: String| ConfigError::new(field, e))?,
        ),
    };
    let write_type = match ext("writeType") {
        None => WriteType::Auto,
        Some((v, field)) => match string_field(v, &field)?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" | "" => WriteType::Auto,
            "request" | "withresponse" | "with-response" => WriteType::Request,
            "command" | "withoutresponse" | "without-response" => WriteType::Command,
            other => {
                return Err(ConfigError::new(
                    field,
                    format!("{other:?} is not a write type: use request, command or auto"),
                ));
            }
        },
    };
    Ok(BleVisitor {
        characteristic,
        data_write,
        converter,
        notify,
        write_encoding,
        write_type,
    })
}

fn is_empty_object(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => true,
        Some(Json::Object(m)) => m.is_empty(),
        _ => false,
    }
}

const CONVERTER_KEYS: [&str; 5] = [
    "startIndex",
    "endIndex",
    "shiftLeft",
    "shiftRight",
    "orderOfOperations",
];

fn parse_converter_at_visitor(
    visitor: &Map<String, Json>,
    property: &PropertyDef,
) -> Result<DataConverter, ConfigError> {
    let dc = get(visitor, "dataConverter");
    let stray: Vec<&str> = CONVERTER_KEYS
        .iter()
        .copied()
        .filter(|k| get_set(visitor, k).is_some())
        .collect();
    if is_empty_object(dc) {
        if stray.is_empty() {
            return Ok(DataConverter::default());
        }
        warn!(
            property = %property.name,
            fields = ?stray,
            "dataConverter fields found beside an empty dataConverter (mis-indented YAML); using them as the converter"
        );
        return parse_converter(visitor, "visitorConfig", property.data_type);
    }
    if let Some(first) = stray.first() {
        return Err(ConfigError::new(
            format!("visitorConfig.{first}"),
            "set beside a non-empty dataConverter: move it inside dataConverter",
        ));
    }
    let dc = dc
        .and_then(|v| v.as_object())
        .ok_or_else(|| ConfigError::new("visitorConfig.dataConverter", "expected an object"))?;
    parse_converter(dc, "visitorConfig.dataConverter", property.data_type)
}

fn parse_converter(
    map: &Map<String, Json>,
    prefix: &str,
    data_type: DataType,
) -> Result<DataConverter, ConfigError> {
    let index = |name: &str| -> Result<Option<usize>, ConfigError> {
        let field = format!("{prefix}.{name}");
        match get_set(map, name) {
            None => Ok(None),
            Some(v) => {
                let i = uint_field(v, &field)?;
                if i > 65_535 {
                    return Err(ConfigError::new(
                        field,
                        format!("{i} is beyond any GATT value (at most 512 bytes)"),
                    ));
                }
                Ok(usize::try_from(i).ok().filter(|i| *i > 0))
            }
        }
    };
    let shift = |name: &str| -> Result<Option<u32>, ConfigError> {
        let field = format!("{prefix}.{name}");
        match get_set(map, name) {
            None => Ok(None),
            Some(v) => {
                let s = uint_field(v, &field)?;
                if s > 63 {
                    return Err(ConfigError::new(
                        field,
                        format!("a shift of {s} bits empties a 64-bit integer: use 0 to 63"),
                    ));
                }
                Ok(u32::try_from(s).ok().filter(|s| *s > 0))
            }
        }
    };
    let start_index = index("startIndex")?;
    let end_index = index("endIndex")?;
    let shift_left = shift("shiftLeft")?;
    let shift_right = shift("shiftRight")?;
    let ops_field = format!("{prefix}.orderOfOperations");
    let mut operations = Vec::new();
    match get_set(map, "orderOfOperations") {
        None => {}
        Some(Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("{ops_field}[{i}]");
                let Some(op) = item.as_object() else {
                    return Err(ConfigError::new(
                        field,
                        "expected {\"operationType\": ..., \"operationValue\": ...}",
                    ));
                };
                let kind_field = format!("{field}.operationType");
                let kind_text = get_set(op, "operationType")
                    .map(|v| string_field(v, &kind_field))
                    .transpose()?
                    .unwrap_or_default();
                let kind = match kind_text.trim().to_ascii_lowercase().as_str() {
                    "add" => OperationKind::Add,
                    "subtract" => OperationKind::Subtract,
                    "multiply" => OperationKind::Multiply,
                    "divide" => OperationKind::Divide,
                    _ => {
                        return Err(ConfigError::new(
                            kind_field,
                            format!(
                                "{kind_text:?} is not an operation: use Add, Subtract, Multiply or Divide"
                            ),
                        ));
                    }
                };
                let value_field = format!("{field}.operationValue");
                // Go's omitempty drops 0, so absent means 0.
                let value = get_set(op, "operationValue")
                    .map(|v| float_field(v, &value_field))
                    .transpose()?
                    .unwrap_or(0.0);
                if value == 0.0 && matches!(kind, OperationKind::Multiply | OperationKind::Divide) {
                    return Err(ConfigError::new(
                        value_field,
                        "is 0 (or absent, which Go's omitempty makes the same): multiplying by 0 loses every reading and dividing by 0 is undefined",
                    ));
                }
                operations.push(Operation { kind, value });
            }
        }
        Some(other) => {
            return Err(ConfigError::new(
                ops_field,
                format!("expected a list of operations, got {other}"),
            ));
        }
    }
    let conv = DataConverter {
        start_index,
        end_index,
        shift_left,
        shift_right,
        operations,
    };
    if data_type.is_numeric() || data_type == DataType::Boolean {
        let (s, e) = (conv.start_index.unwrap_or(0), conv.end_index.unwrap_or(0));
        let span = s.abs_diff(e) + 1;
        if conv.has_range() && span > MAX_INTEGER_BYTES {
            return Err(ConfigError::new(
                format!("{prefix}.endIndex"),
                format!(
                    "the range {s}..={e} spans {span} bytes; a {data_type} property is read as an integer of at most {MAX_INTEGER_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(conv)
}

/// Decodes one `dataWrite` value: base64 text or an array of integers 0-255.
pub fn parse_write_bytes(v: &Json, field: &str) -> Result<Vec<u8>, ConfigError> {
    match v {
        Json::String(s) => {
            let t = s.trim();
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
                .map_err(|e| {
                    ConfigError::new(
                        field,
                        format!(
                            "{s:?} is not base64 ({e}); give base64 (\"AQ==\") or a list of bytes ([1])"
                        ),
                    )
                })
        }
        Json::Array(items) => items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .ok_or_else(|| ConfigError::new(field, format!("{i} is not a byte (0-255)")))
            })
            .collect(),
        other => Err(ConfigError::new(
            field,
            format!("expected base64 text or a list of bytes, got {other}"),
        )),
    }
}

fn is_byte_array(v: &Json) -> bool {
    v.as_array().is_some_and(|a| {
        a.iter()
            .all(|i| i.as_u64().is_some_and(|b| b <= u64::from(u8::MAX)))
    })
}

fn parse_data_write_at_visitor(
    visitor: &Map<String, Json>,
    property: &PropertyDef,
) -> Result<Vec<(String, Vec<u8>)>, ConfigError> {
    let dw = get(visitor, "dataWrite");
    if is_empty_object(dw) {
        let stray: Vec<(&String, &Json)> = visitor
            .iter()
            .filter(|(k, v)| !KNOWN_VISITOR_KEYS.contains(&fold(k).as_str()) && is_byte_array(v))
            .collect();
        if stray.is_empty() {
            return Ok(Vec::new());
        }
        warn!(
            property = %property.name,
            keys = ?stray.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            "byte lists found beside an empty dataWrite (mis-indented YAML); using them as dataWrite"
        );
        return stray
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    parse_write_bytes(v, &format!("visitorConfig.{k}"))?,
                ))
            })
            .collect();
    }
    let Some(Json::Object(map)) = dw else {
        return Err(ConfigError::new(
            "visitorConfig.dataWrite",
            "expected an object mapping values to bytes, e.g. {\"ON\": \"AQ==\", \"OFF\": [0]}",
        ));
    };
    map.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                parse_write_bytes(v, &format!("visitorConfig.dataWrite.{k}"))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapper_sdk::model::{AccessMode, PropertyName};
    use serde_json::json;

    fn prop(data_type: DataType, visitor: Json) -> PropertyDef {
        PropertyDef {
            name: PropertyName("p".into()),
            data_type,
            access: AccessMode::ReadWrite,
            minimum: None,
            maximum: None,
            unit: None,
            collect_cycle: Some(Duration::from_secs(1)),
            report_cycle: None,
            visitor: visitor.into(),
            twin: true,
            data: false,
            desired: None,
            stored_type: None,
        }
    }

    fn proto(config: Json, common: Json) -> ProtocolDef {
        ProtocolDef {
            kind: "bluetooth".into(),
            config: config.into(),
            common: common.into(),
        }
    }

    #[test]
    fn kinds() {
        assert!(handles_kind("bluetooth"));
        assert!(handles_kind("Bluetooth"));
        assert!(handles_kind("BLE"));
        assert!(!handles_kind("modbus"));
    }

    #[test]
    fn mac_addresses_are_normalised() {
        for s in ["a4:c1:38:1a:49:90", "A4-C1-38-1A-49-90", "a4c1381a4990"] {
            assert_eq!(
                s.parse::<MacAddr>().unwrap().to_string(),
                "A4:C1:38:1A:49:90"
            );
        }
        for s in [
            "a4:c1:38:1a:49",
            "a4:c1:38:1a:49:9",
            "zz:c1:38:1a:49:90",
            "",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn protocol_defaults_and_extensions() {
        let p = parse_protocol(&proto(
            json!({"macAddress": "a4:c1:38:1a:49:90"}),
            Json::Null,
        ))
        .unwrap();
        assert_eq!(p.mac.to_string(), "A4:C1:38:1A:49:90");
        assert_eq!(p.adapter, None);
        assert_eq!(p.connect_timeout, DEFAULT_CONNECT_TIMEOUT);

        // Flat (v1beta1 configData), case-insensitive.
        let p = parse_protocol(&proto(
            json!({"MACADDRESS": "a4c1381a4990", "adapter": "hci1", "connect_timeout": 3000}),
            Json::Null,
        ))
        .unwrap();
        assert_eq!(p.adapter.as_deref(), Some("hci1"));
        assert_eq!(p.connect_timeout, Duration::from_secs(3));

        // customizedValues wins.
        let p = parse_protocol(&proto(
            json!({"macAddress": "a4c1381a4990", "adapter": "hci1"}),
            json!({"customizedValues": {"adapter": "hci2", "connectTimeout": "1500"}}),
        ))
        .unwrap();
        assert_eq!(p.adapter.as_deref(), Some("hci2"));
        assert_eq!(p.connect_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn protocol_errors_name_the_field() {
        let e = parse_protocol(&proto(Json::Null, Json::Null)).unwrap_err();
        assert_eq!(e.field, "protocolConfig.macAddress");
        let e = parse_protocol(&proto(json!({"macAddress": "nope"}), Json::Null)).unwrap_err();
        assert_eq!(e.field, "protocolConfig.macAddress");
        assert!(e.message.contains("six hex pairs"), "{e}");
        let e = parse_protocol(&proto(
            json!({"macAddress": "a4c1381a4990", "connectTimeout": 5}),
            Json::Null,
        ))
        .unwrap_err();
        assert_eq!(e.field, "protocolConfig.connectTimeout");
        let e = parse_protocol(&proto(
            json!({"macAddress": "a4c1381a4990"}),
            json!({"customizedValues": {"adapter": "hci 0"}}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "protocolCommonConfig.customizedValues.adapter");
    }

    #[test]
    fn uuids_in_every_form() {
        let full = Uuid::parse_str("f000aa01-0451-4000-b000-000000000000").unwrap();
        assert_eq!(
            parse_uuid("f000aa0104514000b000000000000000").unwrap(),
            full
        );
        assert_eq!(
            parse_uuid("F000AA01-0451-4000-B000-000000000000").unwrap(),
            full
        );
        let battery = Uuid::parse_str("00002a19-0000-1000-8000-00805f9b34fb").unwrap();
        assert_eq!(parse_uuid("2a19").unwrap(), battery);
        assert_eq!(parse_uuid("0x2A19").unwrap(), battery);
        assert_eq!(parse_uuid("00002a19").unwrap(), battery);
        for bad in [
            "",
            "xyz",
            "2a1",
            "f000aa0104514000b00000000000000",
            "{f000aa01-0451-4000-b000-000000000000}",
            "f000aa01-04514000-b000-000000000000-",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn visitor_requires_a_valid_uuid() {
        let e = parse_visitor(&prop(DataType::Int, json!({}))).unwrap_err();
        assert_eq!(e.field, "visitorConfig.characteristicUUID");
        let e =
            parse_visitor(&prop(DataType::Int, json!({"characteristicUUID": "zz"}))).unwrap_err();
        assert_eq!(e.field, "visitorConfig.characteristicUUID");
        assert!(e.message.contains("\"zz\""));
    }

    #[test]
    fn data_write_accepts_base64_and_byte_lists() {
        let v = parse_visitor(&prop(
            DataType::String,
            json!({"characteristicUUID": "ff11", "dataWrite": {"ON": "AQ==", "OFF": [0], "BOTH": "AQI"}}),
        ))
        .unwrap();
        assert_eq!(
            v.data_write,
            vec![
                ("ON".to_owned(), vec![1]),
                ("OFF".to_owned(), vec![0]),
                ("BOTH".to_owned(), vec![1, 2])
            ]
        );
        for bad in [
            json!({"ON": [256]}),
            json!({"ON": "!!"}),
            json!({"ON": 1}),
            json!([1]),
        ] {
            let e = parse_visitor(&prop(
                DataType::String,
                json!({"characteristicUUID": "ff11", "dataWrite": bad}),
            ))
            .unwrap_err();
            assert!(e.field.starts_with("visitorConfig.dataWrite"), "{e}");
        }
    }

    #[test]
    fn converter_fields() {
        let v = parse_visitor(&prop(
            DataType::Float,
            json!({"characteristicUUID": "ff11", "dataConverter": {
                "startIndex": 1, "endIndex": 0, "shiftRight": 2,
                "orderOfOperations": [{"operationType": "multiply", "operationValue": 0.03125},
                                      {"operationType": "ADD", "operationValue": "1.5"},
                                      {"operationType": "Subtract"}]}}),
        ))
        .unwrap();
        let c = v.converter;
        assert_eq!(c.start_index, Some(1));
        assert_eq!(c.end_index, None, "0 is absent (omitempty)");
        assert_eq!(c.shift_right, Some(2));
        assert_eq!(c.shift_left, None);
        assert_eq!(
            c.operations,
            vec![
                Operation {
                    kind: OperationKind::Multiply,
                    value: 0.03125
                },
                Operation {
                    kind: OperationKind::Add,
                    value: 1.5
                },
                Operation {
                    kind: OperationKind::Subtract,
                    value: 0.0
                },
            ]
        );
        assert_eq!(v.notify, NotifyMode::Auto);
        assert_eq!(v.write_type, WriteType::Auto);
        assert_eq!(v.write_encoding, None);
    }

    #[test]
    fn converter_errors_name_the_field() {
        let cases = [
            (
                json!({"startIndex": -1}),
                "visitorConfig.dataConverter.startIndex",
            ),
            (
                json!({"shiftLeft": 64}),
                "visitorConfig.dataConverter.shiftLeft",
            ),
            (
                json!({"startIndex": 0, "endIndex": 8}),
                "visitorConfig.dataConverter.endIndex",
            ),
            (
                json!({"orderOfOperations": [{"operationType": "Modulo", "operationValue": 2}]}),
                "visitorConfig.dataConverter.orderOfOperations[0].operationType",
            ),
            (
                json!({"orderOfOperations": [{"operationType": "Divide"}]}),
                "visitorConfig.dataConverter.orderOfOperations[0].operationValue",
            ),
            (
                json!({"orderOfOperations": {"operationType": "Add"}}),
                "visitorConfig.dataConverter.orderOfOperations",
            ),
        ];
        for (dc, field) in cases {
            let e = parse_visitor(&prop(
                DataType::Int,
                json!({"characteristicUUID": "ff11", "dataConverter": dc}),
            ))
            .unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        // A long range is fine for text.
        assert!(
            parse_visitor(&prop(
                DataType::String,
                json!({"characteristicUUID": "ff11", "dataConverter": {"endIndex": 20}}),
            ))
            .is_ok()
        );
    }

    #[test]
    fn cc2650_mis_indentation_is_tolerated() {
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"characteristicUUID": "f000aa0104514000b000000000000000", "dataConverter": null,
                   "startIndex": 1, "endIndex": 0, "shiftRight": 2,
                   "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}]}),
        ))
        .unwrap();
        assert_eq!(v.converter.start_index, Some(1));
        assert_eq!(v.converter.shift_right, Some(2));
        assert_eq!(v.converter.operations.len(), 1);

        let v = parse_visitor(&prop(
            DataType::String,
            json!({"characteristicUUID": "f000aa0204514000b000000000000000", "dataWrite": null,
                   "ON": [1], "OFF": [0]}),
        ))
        .unwrap();
        assert_eq!(
            v.data_write,
            vec![("ON".to_owned(), vec![1]), ("OFF".to_owned(), vec![0])]
        );

        // Both places at once is ambiguous.
        let e = parse_visitor(&prop(
            DataType::Int,
            json!({"characteristicUUID": "ff11", "dataConverter": {"startIndex": 1}, "shiftRight": 2}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "visitorConfig.shiftRight");
    }

    #[test]
    fn extensions() {
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"characteristicUUID": "ff11", "notify": false, "writeEncoding": "int16le",
                   "customizedValues": {"writeType": "command"}}),
        ))
        .unwrap();
        assert_eq!(v.notify, NotifyMode::Off);
        assert_eq!(
            v.write_encoding,
            Some(WriteEncoding::Signed {
                bytes: 2,
                endian: Endian::Little
            })
        );
        assert_eq!(v.write_type, WriteType::Command);
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"characteristicUUID": "ff11", "notify": "TRUE"}),
        ))
        .unwrap();
        assert_eq!(v.notify, NotifyMode::On);
        for (k, bad) in [
            ("notify", json!("maybe")),
            ("writeEncoding", json!("int24le")),
            ("writeType", json!("fast")),
        ] {
            let e = parse_visitor(&prop(
                DataType::Int,
                json!({"characteristicUUID": "ff11", k: bad}),
            ))
            .unwrap_err();
            assert_eq!(e.field, format!("visitorConfig.{k}"));
        }
    }

    #[test]
    fn write_encoding_names() {
        let cases = [
            (
                "uint8",
                WriteEncoding::Unsigned {
                    bytes: 1,
                    endian: Endian::Little,
                },
            ),
            (
                "u16be",
                WriteEncoding::Unsigned {
                    bytes: 2,
                    endian: Endian::Big,
                },
            ),
            (
                "INT32_LE",
                WriteEncoding::Signed {
                    bytes: 4,
                    endian: Endian::Little,
                },
            ),
            (
                "f32le",
                WriteEncoding::Float {
                    bytes: 4,
                    endian: Endian::Little,
                },
            ),
            (
                "float64be",
                WriteEncoding::Float {
                    bytes: 8,
                    endian: Endian::Big,
                },
            ),
            ("utf8", WriteEncoding::Utf8),
            ("raw", WriteEncoding::Bytes),
        ];
        for (s, e) in cases {
            assert_eq!(s.parse::<WriteEncoding>().unwrap(), e, "{s}");
        }
        for s in ["float16le", "uint16", "int8le", "x"] {
            assert!(s.parse::<WriteEncoding>().is_err(), "{s}");
        }
    }
}
