//! Typed, validated Modbus protocol and visitor configs.
//!
//! # Protocol config
//!
//! Three shapes are accepted (docs/kubeedge-contract.md#rule-modbus-fields,
//! docs/kubeedge-contract.md#rule-the-legacy-v1alpha1-layout,
//! docs/kubeedge-contract.md#rule-v1alpha2-and-v1beta1-resources):
//!
//! * **v1alpha2** (`kind: modbus`): `protocolConfig = {"slaveID": 1}` and
//!   `protocolCommonConfig = {"com": {serialPort, baudRate, dataBits, parity, stopBits},
//!   "tcp": {ip, port}, "collectTimeout": ms, "customizedValues": {...}}`. RTU is chosen when
//!   `com.serialPort` is non-empty, else TCP when `tcp.ip` is non-empty, else the config is
//!   refused.
//! * **v1alpha1** (`kind: modbus-tcp` or `modbus-rtu`): a flat `protocol_config`
//!   `{ip, port, slaveID}` or `{serialPort, baudRate, dataBits, parity, stopBits, slaveID}`;
//!   `slaveID` may be a string.
//! * **v1beta1** (`kind: modbus`, `common` null): a flat `configData` with the same keys as
//!   v1alpha1 plus the extensions below.
//!
//! Field names match case-insensitively (Go style); numbers may be given as strings.
//!
//! Defaults: TCP port 502; serial 9600 baud, 8 data bits, no parity, 1 stop bit. The slave
//! id defaults to 1 for TCP (most devices answer unit 1) and is required for RTU (several
//! slaves share a line, so guessing would read the wrong device).
//!
//! ## Extensions (edgecore ignores them)
//!
//! Read from `protocolCommonConfig.customizedValues` (v1alpha2) or from the flat config
//! (v1alpha1, v1beta1); `customizedValues` wins when both are set:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `transport` | chosen as above | `tcp`, `rtu`, or `rtu-over-tcp` (RTU framing to a serial-to-Ethernet gateway at `ip:port`) |
//! | `maxRegistersPerRequest` | 125 | largest register read (1-125) |
//! | `maxBitsPerRequest` | 2000 | largest coil/discrete read (1-2000) |
//! | `maxGap` | 0 | registers (or bits) that may be read through to merge two requests; unmapped addresses in a gap make devices answer with an exception, so it is 0 unless you know the map is contiguous |
//! | `singleRequestPerProperty` | false | never merge properties into one request |
//! | `collectTimeout` | 1000 | per-request timeout in ms (also `protocolCommonConfig.collectTimeout`) |
//! | `connectTimeout` | 3000 | TCP connect / serial open timeout in ms |
//! | `rtuGracePeriod` | 100 | after an RTU timeout, ms to wait for a late reply before the input is flushed |
//! | `backoffAfterTimeouts` | 3 | consecutive timeouts after which a unit is skipped: its requests fail at once, except one short probe per interval |
//! | `backoffMin` / `backoffMax` | 1000 / 30000 | the probe interval of a skipped unit in ms: `backoffMin`, stretched so probes take at most 1/5 of the line's time (probe timeout plus `rtuGracePeriod`; the probe timeout is 3x the unit's slowest recent answer, 20 ms to `collectTimeout`), at most `backoffMax` |
//!
//! # Visitor config
//!
//! `register` (`CoilRegister`, `DiscreteInputRegister`, `InputRegister`, `HoldingRegister`,
//! case-insensitive, or `coil`, `discrete`, `input`, `holding`), `offset` (0-based PDU
//! address, default 0), `limit` (registers or bits), `scale` (default 1.0, never 0;
//! docs/kubeedge-contract.md#quirk-an-omitted-scale-reaches-the-mapper-as-absent), `isSwap` (swap the bytes in each register), `isRegisterSwap` (reverse the word
//! order). The value type is the model property's data type.
//!
//! Extensions, flat in the visitor config or inside a `customizedValues` object of it:
//!
//! | key | meaning |
//! |---|---|
//! | `rawType` | `int16`, `uint16`, `int32`, `uint32`, `int64`, `uint64`, `float32`, `float64`, `bit` (one bit of a register, see `bit`), `string`, `bytes` |
//! | `bit` | bit index 0-15 for `rawType: bit`, 0 = least significant bit |
//! | `offsetValue` | added after scaling: value = raw × scale + offsetValue (inverse on write) |
//! | `stringByteOrder` | `highFirst` (default, the first character in the high byte) or `lowFirst` (same as `isSwap`) |
//! | `stringPadding` | `nul` (default) or `space`: trailing padding trimmed on read, used to fill on write |
//!
//! ## Inferred raw type
//!
//! When `rawType` is absent the raw type follows the data type and `limit`:
//!
//! * coil / discrete tables: the bits themselves. `boolean` needs `limit` 1; `int`, `float`
//!   and `double` read the bits as an unsigned number (first address = least significant
//!   bit); `bytes` packs them as in the Modbus PDU; `string` is the bits as `0`/`1` text.
//! * registers, `int`: limit 1 → **`int16` (signed)**, 2 → `int32`, 4 → `int64`. mappers-go
//!   reads every integer as unsigned, which turns -1 into 65535; a signed default is what
//!   a temperature or an offset needs. Set `rawType: uint16` (or `uint32`, `uint64`) for
//!   counters and bit masks.
//! * registers, `float` / `double`: limit 1 → `int16` scaled (the usual "215 × 0.1 = 21.5"),
//!   2 → `float32`, 4 → `float64`.
//! * registers, `boolean`: limit 1, true when the register is non-zero (not its high byte,
//!   docs/kubeedge-contract.md#bug-unsigned-decoding-and-truncated-scaling).
//! * registers, `string`: `limit` registers of two characters each; `bytes`: the raw bytes.
//!
//! A `limit` of 0 or none is taken from the raw type's width. A `limit` that does not match
//! the raw type's width is refused with a message that names the width.

use std::time::Duration;

use mapper_sdk::driver::{ConfigError, ConfigWarning, config_from_json, config_from_json_noting};
use mapper_sdk::model::DataType;
use mapper_sdk::profile::unknown::UnknownKey;
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use serde::Deserialize;
use serde_json::Value as Json;

/// The largest register count of one read (FC3/FC4), per the Modbus specification.
pub const MAX_READ_REGISTERS: u16 = 125;
/// The largest bit count of one read (FC1/FC2).
pub const MAX_READ_BITS: u16 = 2000;
/// The largest register count of one write (FC16).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// The largest coil count of one write (FC15).
pub const MAX_WRITE_BITS: u16 = 1968;

/// Serial baud rates accepted in `baudRate`.
pub const BAUD_RATES: &[u32] = &[
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 14400, 19200, 28800, 38400,
    57600, 76800, 115200, 230400, 460800, 921600,
];

/// A typed, validated Modbus protocol config of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusProtocol {
    /// The unit (slave) id put into every request of this device.
    pub unit: u8,
    /// Where and how the device is reached.
    pub link: Link,
    /// Timeouts and the dead-unit backoff.
    pub timing: Timing,
    /// How reads of this device may be merged.
    pub limits: Limits,
}

/// The physical link to a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Link {
    /// Modbus TCP (MBAP framing) to `host:port`.
    Tcp {
        /// IP address or host name.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// RTU framing over a TCP connection to a serial-to-Ethernet gateway.
    RtuOverTcp {
        /// IP address or host name of the gateway.
        host: String,
        /// TCP port of the gateway.
        port: u16,
    },
    /// Modbus RTU on a serial line.
    Rtu(SerialSettings),
}

impl Link {
    /// A short description for logs and errors, e.g. `tcp 10.0.0.5:502` or `rtu /dev/ttyS0`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp { host, port } => format!("tcp {host}:{port}"),
            Self::RtuOverTcp { host, port } => format!("rtu-over-tcp {host}:{port}"),
            Self::Rtu(s) => format!("rtu {}", s.path),
        }
    }

    /// Whether the framing is RTU (no transaction id: late replies must be flushed).
    pub fn is_rtu_framing(&self) -> bool {
        matches!(self, Self::RtuOverTcp { .. } | Self::Rtu(_))
    }
}

/// Serial line settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate, one of [`BAUD_RATES`].
    pub baud_rate: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Whether `customizedValues.serialType` asked for RS-485 (informational: the line
    /// driver is configured by the OS or the adapter).
    pub rs485: bool,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Timeouts and the dead-unit backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The longest wait for one reply.
    pub request_timeout: Duration,
    /// The longest wait for a TCP connect or a serial open.
    pub connect_timeout: Duration,
    /// After an RTU timeout: how long to wait for a late reply before flushing the input.
    pub rtu_grace: Duration,
    /// Consecutive timeouts after which a unit is skipped.
    pub backoff_after: u32,
    /// The shortest probe interval of a skipped unit.
    pub backoff_min: Duration,
    /// The longest probe interval of a skipped unit.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(3000),
            rtu_grace: Duration::from_millis(100),
            backoff_after: 3,
            backoff_min: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(30_000),
        }
    }
}

/// How reads may be merged (see [`crate::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest register read.
    pub max_registers: u16,
    /// The largest coil/discrete read.
    pub max_bits: u16,
    /// Unused addresses that may be read through to merge two requests.
    pub max_gap: u16,
    /// Never merge: one request per property.
    pub single_request: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_registers: MAX_READ_REGISTERS,
            max_bits: MAX_READ_BITS,
            max_gap: 0,
            single_request: false,
        }
    }
}

impl Limits {
    /// The largest read of `table`.
    pub fn max_for(&self, table: Table) -> u16 {
        if table.is_bits() {
            self.max_bits
        } else {
            self.max_registers
        }
    }
}

/// A Modbus data table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Coils: read/write bits (FC1, FC5, FC15).
    Coil,
    /// Discrete inputs: read-only bits (FC2).
    DiscreteInput,
    /// Input registers: read-only words (FC4).
    Input,
    /// Holding registers: read/write words (FC3, FC6, FC16).
    Holding,
}

impl Table {
    /// Parses a KubeEdge register name case-insensitively (`CoilRegister`, `coil`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        let folded: String = name
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let base = folded
            .strip_suffix("registers")
            .or_else(|| folded.strip_suffix("register"))
            .unwrap_or(&folded);
        Some(match base {
            "coil" | "coils" => Self::Coil,
            "discreteinput" | "discreteinputs" | "discrete" => Self::DiscreteInput,
            "input" | "inputs" => Self::Input,
            "holding" | "holdings" => Self::Holding,
            _ => return None,
        })
    }

    /// Whether the table holds bits (coils, discrete inputs) rather than registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coil | Self::DiscreteInput)
    }

    /// Whether the table can be written.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Coil | Self::Holding)
    }

    /// The KubeEdge name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coil => "CoilRegister",
            Self::DiscreteInput => "DiscreteInputRegister",
            Self::Input => "InputRegister",
            Self::Holding => "HoldingRegister",
        }
    }
}

/// How register contents are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawType {
    /// Bits of a coil or discrete-input range.
    Bits,
    /// A signed 16-bit register.
    Int16,
    /// An unsigned 16-bit register.
    UInt16,
    /// A signed 32-bit value in two registers.
    Int32,
    /// An unsigned 32-bit value in two registers.
    UInt32,
    /// A signed 64-bit value in four registers.
    Int64,
    /// An unsigned 64-bit value in four registers.
    UInt64,
    /// IEEE-754 single precision in two registers.
    Float32,
    /// IEEE-754 double precision in four registers.
    Float64,
    /// A register that is true when non-zero.
    Bool,
    /// One bit (0 = least significant) of a register.
    Bit(u8),
    /// Text, two characters per register.
    String,
    /// The raw register bytes.
    Bytes,
}

impl RawType {
    /// The register count of a fixed-width type (`None` for bits, strings and bytes).
    pub fn width(self) -> Option<u16> {
        Some(match self {
            Self::Int16 | Self::UInt16 | Self::Bool | Self::Bit(_) => 1,
            Self::Int32 | Self::UInt32 | Self::Float32 => 2,
            Self::Int64 | Self::UInt64 | Self::Float64 => 4,
            Self::Bits | Self::String | Self::Bytes => return None,
        })
    }

    /// Whether the type is a number (integer or float).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::Int16
                | Self::UInt16
                | Self::Int32
                | Self::UInt32
                | Self::Int64
                | Self::UInt64
                | Self::Float32
                | Self::Float64
        )
    }

    /// The name used in `rawType`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bits => "bits",
            Self::Int16 => "int16",
            Self::UInt16 => "uint16",
            Self::Int32 => "int32",
            Self::UInt32 => "uint32",
            Self::Int64 => "int64",
            Self::UInt64 => "uint64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::Bit(_) => "bit",
            Self::String => "string",
            Self::Bytes => "bytes",
        }
    }
}

/// Padding of string registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Padding {
    /// NUL bytes; reads stop at the first NUL.
    #[default]
    Nul,
    /// Spaces; reads stop at the first NUL and trim trailing spaces.
    Space,
}

/// A typed, validated visitor of one property.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusVisitor {
    /// The model's data type (the type of reported values).
    pub data_type: DataType,
    /// The table.
    pub table: Table,
    /// The 0-based PDU address of the first register or bit.
    pub offset: u16,
    /// Registers or bits.
    pub count: u16,
    /// How the registers are interpreted.
    pub raw: RawType,
    /// Swap the two bytes of each register (`isSwap`, or `stringByteOrder: lowFirst`).
    pub swap_bytes: bool,
    /// Reverse the order of the registers (`isRegisterSwap`).
    pub swap_words: bool,
    /// Multiplier applied after decoding (never 0).
    pub scale: f64,
    /// Added after scaling.
    pub add: f64,
    /// String padding.
    pub padding: Padding,
}

impl ModbusVisitor {
    /// The address range this visitor reads.
    pub fn span(&self) -> crate::plan::Span {
        crate::plan::Span {
            table: self.table,
            offset: self.offset,
            count: self.count,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Raw serde mirrors (every scalar as JSON, converted with field-specific errors).

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawFlat {
    #[serde(rename = "slaveID")]
    slave_id: Option<Json>,
    ip: Option<Json>,
    port: Option<Json>,
    serial_port: Option<Json>,
    baud_rate: Option<Json>,
    data_bits: Option<Json>,
    parity: Option<Json>,
    stop_bits: Option<Json>,
    collect_timeout: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawCommon {
    com: Option<Json>,
    tcp: Option<Json>,
    collect_timeout: Option<Json>,
    customized_values: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawCom {
    serial_port: Option<Json>,
    baud_rate: Option<Json>,
    data_bits: Option<Json>,
    parity: Option<Json>,
    stop_bits: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawTcp {
    ip: Option<Json>,
    port: Option<Json>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawExt {
    transport: Option<Json>,
    max_registers_per_request: Option<Json>,
    max_bits_per_request: Option<Json>,
    max_gap: Option<Json>,
    single_request_per_property: Option<Json>,
    collect_timeout: Option<Json>,
    connect_timeout: Option<Json>,
    rtu_grace_period: Option<Json>,
    backoff_after_timeouts: Option<Json>,
    backoff_min: Option<Json>,
    backoff_max: Option<Json>,
    serial_type: Option<Json>,
}

impl RawExt {
    /// `self` with every field of `over` that is set taking precedence.
    fn overlay(self, over: Self) -> Self {
        fn pick(a: Option<Json>, b: Option<Json>) -> Option<Json> {
            b.filter(|v| !v.is_null()).or(a)
        }
        Self {
            transport: pick(self.transport, over.transport),
            max_registers_per_request: pick(
                self.max_registers_per_request,
                over.max_registers_per_request,
            ),
            max_bits_per_request: pick(self.max_bits_per_request, over.max_bits_per_request),
            max_gap: pick(self.max_gap, over.max_gap),
            single_request_per_property: pick(
                self.single_request_per_property,
                over.single_request_per_property,
            ),
            collect_timeout: pick(self.collect_timeout, over.collect_timeout),
            connect_timeout: pick(self.connect_timeout, over.connect_timeout),
            rtu_grace_period: pick(self.rtu_grace_period, over.rtu_grace_period),
            backoff_after_timeouts: pick(self.backoff_after_timeouts, over.backoff_after_timeouts),
            backoff_min: pick(self.backoff_min, over.backoff_min),
            backoff_max: pick(self.backoff_max, over.backoff_max),
            serial_type: pick(self.serial_type, over.serial_type),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawVisitor {
    register: Option<Json>,
    offset: Option<Json>,
    limit: Option<Json>,
    scale: Option<Json>,
    is_swap: Option<Json>,
    is_register_swap: Option<Json>,
    raw_type: Option<Json>,
    bit: Option<Json>,
    offset_value: Option<Json>,
    string_byte_order: Option<Json>,
    string_padding: Option<Json>,
    customized_values: Option<Json>,
}

// ----------------------------------------------------------------------------------------
// Scalar helpers: every one names the field in its error.

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(field, message)
}

fn int(v: &Option<Json>, field: &str) -> Result<Option<i64>, ConfigError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(f as i64))
            } else {
                Err(err(field, format!("expected an integer, got {n}")))
            }
        }
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Some(i));
            }
            match t.parse::<f64>() {
                #[allow(clippy::cast_possible_truncation)]
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(err(field, format!("expected an integer, got {s:?}"))),
            }
        }
        Some(other) => Err(err(field, format!("expected an integer, got {other}"))),
    }
}

fn int_in<T: TryFrom<i64>>(
    v: &Option<Json>,
    field: &str,
    lo: i64,
    hi: i64,
    what: &str,
) -> Result<Option<T>, ConfigError> {
    match int(v, field)? {
        None => Ok(None),
        Some(i) if (lo..=hi).contains(&i) => T::try_from(i)
            .map(Some)
            .map_err(|_| err(field, format!("{i} is out of range; {what}"))),
        Some(i) => Err(err(field, format!("{i} is out of range; {what}"))),
    }
}

fn float(v: &Option<Json>, field: &str) -> Result<Option<f64>, ConfigError> {
    let f = match v {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n.as_f64(),
        Some(Json::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match f {
        Some(f) if f.is_finite() => Ok(Some(f)),
        _ => Err(err(
            field,
            format!(
                "expected a finite number, got {}",
                v.as_ref().map_or_else(String::new, Json::to_string)
            ),
        )),
    }
}

fn string(v: &Option<Json>, field: &str) -> Result<Option<String>, ConfigError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(err(field, format!("expected a string, got {other}"))),
    }
}

fn boolean(v: &Option<Json>, field: &str) -> Result<Option<bool>, ConfigError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(Json::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
        Some(Json::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
        Some(Json::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "t" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "f" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(err(field, format!("expected true or false, got {s:?}"))),
        },
        Some(other) => Err(err(field, format!("expected true or false, got {other}"))),
    }
}

fn millis(v: &Option<Json>, field: &str) -> Result<Option<Duration>, ConfigError> {
    match int(v, field)? {
        None | Some(0) => Ok(None),
        Some(ms) if (1..=600_000).contains(&ms) => {
            Ok(Some(Duration::from_millis(ms.unsigned_abs())))
        }
        Some(ms) => Err(err(
            field,
            format!("{ms} is out of range; give milliseconds between 1 and 600000"),
        )),
    }
}

fn object_or_null(v: Option<Json>) -> Json {
    match v {
        Some(o @ Json::Object(_)) => o,
        _ => Json::Null,
    }
}

// ----------------------------------------------------------------------------------------
// Protocol

/// Whether `kind` is a Modbus protocol kind (`modbus`, `modbus-tcp`, `modbus-rtu`,
/// case-insensitive).
pub fn is_modbus_kind(kind: &str) -> bool {
    let k = kind.trim();
    ["modbus", "modbus-tcp", "modbus-rtu"]
        .iter()
        .any(|m| k.eq_ignore_ascii_case(m))
}

/// Parses and validates a device's protocol config (any of the shapes in the module docs).
pub fn parse_protocol(def: &ProtocolDef) -> Result<ModbusProtocol, ConfigError> {
    parse_protocol_noting(def).map(|(p, _)| p)
}

/// The keys of one object that two structs read both ignored; the suggestion of the
/// first that has one.
fn ignored_by_both(a: Vec<UnknownKey>, b: &[UnknownKey]) -> Vec<UnknownKey> {
    a.into_iter()
        .filter_map(|k| {
            let other = b.iter().find(|o| o.path == k.path)?;
            Some(UnknownKey {
                suggestion: k.suggestion.or_else(|| other.suggestion.clone()),
                path: k.path,
            })
        })
        .collect()
}

/// [`parse_protocol`], with the keys it ignored as warnings.
pub fn parse_protocol_noting(
    def: &ProtocolDef,
) -> Result<(ModbusProtocol, Vec<ConfigWarning>), ConfigError> {
    let kind = def.kind.trim().to_ascii_lowercase();
    let legacy = kind == "modbus-tcp" || kind == "modbus-rtu";
    let cfg_name = if legacy {
        "protocol_config"
    } else if def.common.is_null() && def.config.as_object().is_some_and(|o| o.len() > 1) {
        "configData"
    } else {
        "protocolConfig"
    };
    let f = |k: &str| format!("{cfg_name}.{k}");
    let c = |k: &str| format!("protocolCommonConfig.{k}");

    let (flat, flat_unknown): (RawFlat, _) = config_from_json_noting(cfg_name, &def.config)?;
    let (common, mut unknown): (RawCommon, _) =
        config_from_json_noting("protocolCommonConfig", &def.common)?;
    let (com, com_unknown): (RawCom, _) =
        config_from_json_noting(&c("com"), &object_or_null(common.com))?;
    let (tcp, tcp_unknown): (RawTcp, _) =
        config_from_json_noting(&c("tcp"), &object_or_null(common.tcp))?;
    let (ext_flat, ext_unknown): (RawExt, _) = config_from_json_noting(cfg_name, &def.config)?;
    let cust = object_or_null(common.customized_values);
    // customizedValues is free-form in KubeEdge: keys this mapper does not read are
    // someone else's, not typos.
    let ext_common: RawExt = config_from_json(&c("customizedValues"), &cust)?;
    unknown.extend(com_unknown);
    unknown.extend(tcp_unknown);
    unknown.extend(ignored_by_both(flat_unknown, &ext_unknown));
    let warnings: Vec<ConfigWarning> = unknown.into_iter().map(ConfigWarning::from).collect();
    let ext_name = if cust.is_null() {
        cfg_name.to_owned()
    } else {
        c("customizedValues")
    };
    let ext = ext_flat.overlay(ext_common);
    let e = |k: &str| format!("{ext_name}.{k}");

    // Where each connection field comes from: the common section first, then the flat one.
    let serial_port = match string(&com.serial_port, &c("com.serialPort"))? {
        Some(p) => Some(p),
        None => string(&flat.serial_port, &f("serialPort"))?,
    };
    let (ip, ip_field) = match string(&tcp.ip, &c("tcp.ip"))? {
        Some(ip) => (Some(ip), c("tcp.port")),
        None => (string(&flat.ip, &f("ip"))?, f("port")),
    };
    let port: Option<u16> = match int_in(&tcp.port, &c("tcp.port"), 0, 65535, "use 1-65535")? {
        Some(p) => Some(p),
        None => int_in(&flat.port, &f("port"), 0, 65535, "use 1-65535")?,
    };
    let port = match port {
        None | Some(0) => 502,
        Some(p) => p,
    };

    let transport = string(&ext.transport, &e("transport"))?.map(|t| {
        t.to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    });
    enum Want {
        Tcp,
        Rtu,
        RtuOverTcp,
    }
    let want = match transport.as_deref() {
        Some("tcp" | "modbustcp") => Want::Tcp,
        Some("rtu" | "modbusrtu" | "serial") => Want::Rtu,
        Some("rtuovertcp" | "rtutcp") => Want::RtuOverTcp,
        Some(other) => {
            return Err(err(
                e("transport"),
                format!("unknown transport {other:?}; use tcp, rtu or rtu-over-tcp"),
            ));
        }
        None if kind == "modbus-tcp" => Want::Tcp,
        None if kind == "modbus-rtu" => Want::Rtu,
        None if serial_port.is_some() => Want::Rtu,
        None if ip.is_some() => Want::Tcp,
        None => {
            return Err(err(
                c("com.serialPort"),
                "neither a serial port nor a TCP address is set; set com.serialPort for Modbus RTU or tcp.ip (and tcp.port) for Modbus TCP",
            ));
        }
    };

    let link = match want {
        Want::Tcp | Want::RtuOverTcp => {
            let Some(host) = ip else {
                return Err(err(
                    ip_field.replace(".port", ".ip"),
                    "Modbus TCP needs the device address; set tcp.ip (or ip)",
                ));
            };
            if matches!(want, Want::Tcp) {
                Link::Tcp { host, port }
            } else {
                Link::RtuOverTcp { host, port }
            }
        }
        Want::Rtu => {
            let Some(path) = serial_port else {
                return Err(err(
                    c("com.serialPort"),
                    "Modbus RTU needs a serial port; set com.serialPort (or serialPort), e.g. /dev/ttyUSB0",
                ));
            };
            let pick = |a: &Option<Json>, b: &Option<Json>, k: &str| -> (Option<Json>, String) {
                match a {
                    Some(v) if !v.is_null() => (Some(v.clone()), c(&format!("com.{k}"))),
                    _ => (b.clone(), f(k)),
                }
            };
            let (v, fld) = pick(&com.baud_rate, &flat.baud_rate, "baudRate");
            let baud_rate = match int(&v, &fld)? {
                None | Some(0) => 9600,
                Some(b) => match u32::try_from(b).ok().filter(|b| BAUD_RATES.contains(b)) {
                    Some(b) => b,
                    None => {
                        return Err(err(
                            fld,
                            format!("{b} is not a supported baud rate; use one of {BAUD_RATES:?}"),
                        ));
                    }
                },
            };
            let (v, fld) = pick(&com.data_bits, &flat.data_bits, "dataBits");
            let data_bits = match int(&v, &fld)? {
                None | Some(0) => 8,
                Some(b @ 5..=8) => b as u8,
                Some(b) => return Err(err(fld, format!("{b} data bits: use 5, 6, 7 or 8"))),
            };
            let (v, fld) = pick(&com.parity, &flat.parity, "parity");
            let parity = match string(&v, &fld)?.map(|p| p.to_ascii_lowercase()).as_deref() {
                None | Some("none" | "n") => Parity::None,
                Some("even" | "e") => Parity::Even,
                Some("odd" | "o") => Parity::Odd,
                Some(p) => return Err(err(fld, format!("parity {p:?}: use none, even or odd"))),
            };
            let (v, fld) = pick(&com.stop_bits, &flat.stop_bits, "stopBits");
            let stop_bits = match int(&v, &fld)? {
                None | Some(0) => 1,
                Some(b @ 1..=2) => b as u8,
                Some(b) => return Err(err(fld, format!("{b} stop bits: use 1 or 2"))),
            };
            let rs485 = string(&ext.serial_type, &e("serialType"))?
                .is_some_and(|t| t.eq_ignore_ascii_case("rs485"));
            Link::Rtu(SerialSettings {
                path,
                baud_rate,
                data_bits,
                parity,
                stop_bits,
                rs485,
            })
        }
    };

    let unit_field = f("slaveID");
    let unit = match int(&flat.slave_id, &unit_field)? {
        None if matches!(link, Link::Rtu(_) | Link::RtuOverTcp { .. }) => {
            return Err(err(
                unit_field,
                "Modbus RTU needs the slave id of the device (1-247); set slaveID",
            ));
        }
        None => 1,
        Some(0) if matches!(link, Link::Rtu(_) | Link::RtuOverTcp { .. }) => {
            return Err(err(
                unit_field,
                "0 is the RTU broadcast address, which devices never answer; use the device's slave id (1-247)",
            ));
        }
        Some(u @ 0..=247) => u as u8,
        Some(255) if matches!(link, Link::Tcp { .. }) => 255,
        Some(u) => {
            return Err(err(
                unit_field,
                format!(
                    "slave id {u} is out of range; use 1-247 (or 0 or 255 for a Modbus TCP device that ignores the unit id)"
                ),
            ));
        }
    };

    let mut timing = Timing::default();
    let timeout = match millis(&ext.collect_timeout, &e("collectTimeout"))? {
        Some(t) => Some(t),
        None => match millis(&common.collect_timeout, &c("collectTimeout"))? {
            Some(t) => Some(t),
            None => millis(&flat.collect_timeout, &f("collectTimeout"))?,
        },
    };
    if let Some(t) = timeout {
        timing.request_timeout = t;
    }
    if let Some(t) = millis(&ext.connect_timeout, &e("connectTimeout"))? {
        timing.connect_timeout = t;
    }
    match int(&ext.rtu_grace_period, &e("rtuGracePeriod"))? {
        None => {}
        Some(ms @ 0..=60_000) => timing.rtu_grace = Duration::from_millis(ms.unsigned_abs()),
        Some(ms) => {
            return Err(err(
                e("rtuGracePeriod"),
                format!("{ms} is out of range; give milliseconds between 0 and 60000"),
            ));
        }
    }
    if let Some(n) = int_in::<u32>(
        &ext.backoff_after_timeouts,
        &e("backoffAfterTimeouts"),
        1,
        1000,
        "use 1-1000",
    )? {
        timing.backoff_after = n;
    }
    if let Some(t) = millis(&ext.backoff_min, &e("backoffMin"))? {
        timing.backoff_min = t;
    }
    if let Some(t) = millis(&ext.backoff_max, &e("backoffMax"))? {
        timing.backoff_max = t;
    }
    if timing.backoff_max < timing.backoff_min {
        return Err(err(
            e("backoffMax"),
            format!(
                "backoffMax ({} ms) is below backoffMin ({} ms)",
                timing.backoff_max.as_millis(),
                timing.backoff_min.as_millis()
            ),
        ));
    }

    let mut limits = Limits::default();
    if let Some(n) = int_in(
        &ext.max_registers_per_request,
        &e("maxRegistersPerRequest"),
        1,
        i64::from(MAX_READ_REGISTERS),
        "use 1-125",
    )? {
        limits.max_registers = n;
    }
    if let Some(n) = int_in(
        &ext.max_bits_per_request,
        &e("maxBitsPerRequest"),
        1,
        i64::from(MAX_READ_BITS),
        "use 1-2000",
    )? {
        limits.max_bits = n;
    }
    if let Some(n) = int_in(&ext.max_gap, &e("maxGap"), 0, 1999, "use 0-1999")? {
        limits.max_gap = n;
    }
    if let Some(b) = boolean(
        &ext.single_request_per_property,
        &e("singleRequestPerProperty"),
    )? {
        limits.single_request = b;
    }

    Ok((
        ModbusProtocol {
            unit,
            link,
            timing,
            limits,
        },
        warnings,
    ))
}

// ----------------------------------------------------------------------------------------
// Visitor

fn parse_raw_type(name: &str, field: &str) -> Result<RawType, ConfigError> {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Ok(match n.as_str() {
        "int16" | "short" | "i16" => RawType::Int16,
        "uint16" | "ushort" | "u16" | "word" => RawType::UInt16,
        "int32" | "i32" => RawType::Int32,
        "uint32" | "u32" | "dword" => RawType::UInt32,
        "int64" | "i64" => RawType::Int64,
        "uint64" | "u64" => RawType::UInt64,
        "float32" | "float" | "f32" | "real" => RawType::Float32,
        "float64" | "double" | "f64" => RawType::Float64,
        "bit" => RawType::Bit(0),
        "bool" | "boolean" => RawType::Bool,
        "bits" => RawType::Bits,
        "string" | "ascii" | "text" => RawType::String,
        "bytes" => RawType::Bytes,
        _ => {
            return Err(err(
                field,
                format!(
                    "unknown rawType {name:?}; use int16, uint16, int32, uint32, int64, uint64, float32, float64, bit, string or bytes"
                ),
            ));
        }
    })
}

/// Visitor keys of KubeEdge's samples that mean nothing to this mapper but are no typos
/// (`index` in `modbus_mapper-deviceProfile.json`).
const FOREIGN_VISITOR_KEYS: &[&str] = &["visitorConfig.index"];

/// Parses and validates one property's visitor config (see the module docs).
pub fn parse_visitor(property: &PropertyDef) -> Result<ModbusVisitor, ConfigError> {
    parse_visitor_noting(property).map(|(v, _)| v)
}

/// [`parse_visitor`], with the keys of `visitorConfig` it ignored as warnings (keys of
/// its free-form `customizedValues` are not warned about).
pub fn parse_visitor_noting(
    property: &PropertyDef,
) -> Result<(ModbusVisitor, Vec<ConfigWarning>), ConfigError> {
    const V: &str = "visitorConfig";
    let f = |k: &str| format!("{V}.{k}");
    let (raw, unknown): (RawVisitor, _) = config_from_json_noting(V, &property.visitor)?;
    let warnings: Vec<ConfigWarning> = unknown
        .into_iter()
        .filter(|k| !FOREIGN_VISITOR_KEYS.contains(&k.path.as_str()))
        .map(ConfigWarning::from)
        .collect();
    let nested = object_or_null(raw.customized_values.clone());
    let cust: RawVisitor = config_from_json(&f("customizedValues"), &nested)?;
    let ext = |a: &Option<Json>, b: &Option<Json>| -> Option<Json> {
        b.clone().filter(|v| !v.is_null()).or_else(|| a.clone())
    };
    let data_type = property.data_type;

    let Some(register) = string(&raw.register, &f("register"))? else {
        return Err(err(
            f("register"),
            "no register table is set; use CoilRegister, DiscreteInputRegister, InputRegister or HoldingRegister",
        ));
    };
    let Some(table) = Table::parse(&register) else {
        return Err(err(
            f("register"),
            format!(
                "unknown register table {register:?}; use CoilRegister, DiscreteInputRegister, InputRegister or HoldingRegister"
            ),
        ));
    };
    let offset: u16 = int_in(
        &raw.offset,
        &f("offset"),
        0,
        65535,
        "use a 0-based PDU address 0-65535 (not the 4xxxx notation)",
    )?
    .unwrap_or(0);
    let limit: Option<u16> = match int(&raw.limit, &f("limit"))? {
        None | Some(0) => None,
        Some(l @ 1..=65535) => Some(l as u16),
        Some(l) => {
            return Err(err(
                f("limit"),
                format!("{l} is out of range; give the number of registers (or bits) to read"),
            ));
        }
    };
    let scale = match float(&raw.scale, &f("scale"))? {
        None => 1.0,
        Some(0.0) => {
            return Err(err(
                f("scale"),
                "scale 0 would turn every reading into 0; leave it out (it defaults to 1) or give the real factor",
            ));
        }
        Some(s) => s,
    };
    let add = float(
        &ext(&raw.offset_value, &cust.offset_value),
        &f("offsetValue"),
    )?
    .unwrap_or(0.0);
    let is_swap = boolean(&raw.is_swap, &f("isSwap"))?.unwrap_or(false);
    let swap_words = boolean(&raw.is_register_swap, &f("isRegisterSwap"))?.unwrap_or(false);
    let raw_type_name = string(&ext(&raw.raw_type, &cust.raw_type), &f("rawType"))?;
    let bit: Option<u8> = int_in(
        &ext(&raw.bit, &cust.bit),
        &f("bit"),
        0,
        15,
        "use a bit index 0-15 (0 is the least significant bit)",
    )?;
    let low_first = match string(
        &ext(&raw.string_byte_order, &cust.string_byte_order),
        &f("stringByteOrder"),
    )?
    .map(|s| {
        s.to_ascii_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    })
    .as_deref()
    {
        None | Some("highfirst" | "highbytefirst" | "big" | "bigendian" | "ab") => false,
        Some("lowfirst" | "lowbytefirst" | "little" | "littleendian" | "ba") => true,
        Some(o) => {
            return Err(err(
                f("stringByteOrder"),
                format!("unknown byte order {o:?}; use highFirst or lowFirst"),
            ));
        }
    };
    if low_first && is_swap {
        return Err(err(
            f("stringByteOrder"),
            "stringByteOrder lowFirst and isSwap mean the same swap; set only one of them",
        ));
    }
    let padding = match string(
        &ext(&raw.string_padding, &cust.string_padding),
        &f("stringPadding"),
    )?
    .map(|s| s.to_ascii_lowercase())
    .as_deref()
    {
        None | Some("nul" | "null" | "zero") => Padding::Nul,
        Some("space" | "spaces") => Padding::Space,
        Some(o) => {
            return Err(err(
                f("stringPadding"),
                format!("unknown padding {o:?}; use nul or space"),
            ));
        }
    };

    let explicit = match &raw_type_name {
        Some(n) => Some(parse_raw_type(n, &f("rawType"))?),
        None => None,
    };
    if bit.is_some() && !matches!(explicit, Some(RawType::Bit(_))) {
        return Err(err(f("bit"), "bit is only used with rawType: bit"));
    }

    let (raw_type, count) = if table.is_bits() {
        if let Some(t) = explicit.filter(|t| !matches!(t, RawType::Bits | RawType::Bool)) {
            return Err(err(
                f("rawType"),
                format!(
                    "rawType {} does not apply to {}, which holds bits; leave rawType out",
                    t.name(),
                    table.as_str()
                ),
            ));
        }
        let count = limit.unwrap_or(1);
        match data_type {
            DataType::Boolean if count != 1 => {
                return Err(err(
                    f("limit"),
                    format!("a boolean property reads one bit; set limit to 1 (got {count})"),
                ));
            }
            DataType::Int | DataType::Float | DataType::Double if count > 64 => {
                return Err(err(
                    f("limit"),
                    format!("a number read from bits holds at most 64 of them; got limit {count}"),
                ));
            }
            _ => {}
        }
        if count > MAX_READ_BITS {
            return Err(err(
                f("limit"),
                format!("{count} bits do not fit one request; use at most {MAX_READ_BITS}"),
            ));
        }
        (RawType::Bits, count)
    } else {
        let raw_type = match explicit {
            Some(RawType::Bit(_)) => RawType::Bit(bit.unwrap_or(0)),
            Some(RawType::Bits) => {
                return Err(err(
                    f("rawType"),
                    format!(
                        "rawType bits applies to coils and discrete inputs; for one bit of a {} use rawType: bit with bit: 0-15",
                        table.as_str()
                    ),
                ));
            }
            Some(t) => t,
            None => infer_register_type(data_type, limit).map_err(|m| err(f("limit"), m))?,
        };
        // Data type and raw type must make sense together.
        match (data_type, raw_type) {
            (DataType::Bytes, t) if t != RawType::Bytes => {
                return Err(err(
                    f("rawType"),
                    format!(
                        "a bytes property reads the raw register bytes; remove rawType {}",
                        t.name()
                    ),
                ));
            }
            (DataType::Boolean, RawType::String | RawType::Bytes)
            | (
                DataType::Int | DataType::Float | DataType::Double,
                RawType::String | RawType::Bytes,
            ) => {
                return Err(err(
                    f("rawType"),
                    format!(
                        "rawType {} cannot hold a {} property; use a numeric rawType",
                        raw_type.name(),
                        data_type
                    ),
                ));
            }
            _ => {}
        }
        let count = match (raw_type.width(), limit) {
            (Some(w), None) => w,
            (Some(w), Some(l)) if w == l => w,
            (Some(w), Some(l)) => {
                return Err(err(
                    f("limit"),
                    format!(
                        "rawType {} takes {w} register{} but limit is {l}; set limit to {w} or choose another rawType",
                        raw_type.name(),
                        if w == 1 { "" } else { "s" }
                    ),
                ));
            }
            (None, Some(l)) => l,
            (None, None) => {
                return Err(err(
                    f("limit"),
                    format!(
                        "rawType {} needs limit: the number of registers (two bytes each)",
                        raw_type.name()
                    ),
                ));
            }
        };
        if count > MAX_READ_REGISTERS {
            return Err(err(
                f("limit"),
                format!(
                    "{count} registers do not fit one request; use at most {MAX_READ_REGISTERS}"
                ),
            ));
        }
        (raw_type, count)
    };
    if u32::from(offset) + u32::from(count) > 65536 {
        return Err(err(
            f("offset"),
            format!("offset {offset} + limit {count} runs past the last address 65535"),
        ));
    }
    Ok((
        ModbusVisitor {
            data_type,
            table,
            offset,
            count,
            raw: raw_type,
            swap_bytes: is_swap || low_first,
            swap_words,
            scale,
            add,
            padding,
        },
        warnings,
    ))
}

/// The raw type of a register property without `rawType` (see the module docs).
fn infer_register_type(data_type: DataType, limit: Option<u16>) -> Result<RawType, String> {
    let l = limit.unwrap_or(1);
    Ok(match (data_type, l) {
        (DataType::Int, 1) => RawType::Int16,
        (DataType::Int, 2) => RawType::Int32,
        (DataType::Int, 4) => RawType::Int64,
        (DataType::Int, n) => {
            return Err(format!(
                "an int property reads 1, 2 or 4 registers (int16, int32, int64); got limit {n}. Set limit, or rawType"
            ));
        }
        (DataType::Float | DataType::Double, 1) => RawType::Int16,
        (DataType::Float | DataType::Double, 2) => RawType::Float32,
        (DataType::Float | DataType::Double, 4) => RawType::Float64,
        (DataType::Float | DataType::Double, n) => {
            return Err(format!(
                "a {data_type} property reads 1 register (a scaled int16), 2 (float32) or 4 (float64); got limit {n}. Set limit, or rawType"
            ));
        }
        (DataType::Boolean, 1) => RawType::Bool,
        (DataType::Boolean, n) => {
            return Err(format!(
                "a boolean property reads one register (true when non-zero); got limit {n}. Set limit to 1, or rawType: bit with bit: 0-15"
            ));
        }
        (DataType::String, _) => {
            if limit.is_none() {
                return Err(
                    "a string property needs limit: the number of registers (two characters each)"
                        .into(),
                );
            }
            RawType::String
        }
        (DataType::Bytes, _) => {
            if limit.is_none() {
                return Err(
                    "a bytes property needs limit: the number of registers (two bytes each)".into(),
                );
            }
            RawType::Bytes
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapper_sdk::model::{AccessMode, PropertyName};
    use serde_json::json;

    fn proto(kind: &str, config: Json, common: Json) -> ProtocolDef {
        ProtocolDef {
            kind: kind.into(),
            config: config.into(),
            common: common.into(),
        }
    }

    pub(crate) fn prop(data_type: DataType, visitor: Json) -> PropertyDef {
        PropertyDef {
            name: PropertyName("p".into()),
            data_type,
            access: AccessMode::ReadWrite,
            minimum: None,
            maximum: None,
            unit: None,
            collect_cycle: None,
            report_cycle: None,
            visitor: visitor.into(),
            twin: true,
            data: false,
            desired: None,
            stored_type: None,
        }
    }

    #[test]
    fn v1alpha2_rtu_and_tcp() {
        let p = parse_protocol(&proto(
            "modbus",
            json!({"slaveID": 3}),
            json!({"com": {"serialPort": "/dev/ttyS0", "baudRate": 19200, "dataBits": 8, "parity": "even", "stopBits": 1},
                   "tcp": {"ip": "10.0.0.1", "port": 502},
                   "collectTimeout": 250,
                   "customizedValues": {"serialType": "RS485", "maxGap": 4}}),
        ))
        .unwrap();
        assert_eq!(p.unit, 3);
        assert_eq!(
            p.link,
            Link::Rtu(SerialSettings {
                path: "/dev/ttyS0".into(),
                baud_rate: 19200,
                data_bits: 8,
                parity: Parity::Even,
                stop_bits: 1,
                rs485: true
            })
        );
        assert_eq!(p.timing.request_timeout, Duration::from_millis(250));
        assert_eq!(p.limits.max_gap, 4);

        let p = parse_protocol(&proto(
            "modbus",
            json!({"slaveID": 1}),
            json!({"com": {"serialPort": ""}, "tcp": {"ip": "10.0.0.1", "port": 1502}}),
        ))
        .unwrap();
        assert_eq!(
            p.link,
            Link::Tcp {
                host: "10.0.0.1".into(),
                port: 1502
            }
        );
        let e = parse_protocol(&proto("modbus", json!({"slaveID": 1}), json!({"com": {}})))
            .unwrap_err();
        assert!(
            e.message
                .contains("neither a serial port nor a TCP address"),
            "{e}"
        );
    }

    #[test]
    fn v1alpha1_string_slave_id() {
        let p = parse_protocol(&proto(
            "modbus-tcp",
            json!({"ip": "127.0.0.1", "port": 5028, "slaveID": "7"}),
            Json::Null,
        ))
        .unwrap();
        assert_eq!(p.unit, 7);
        assert_eq!(
            p.link,
            Link::Tcp {
                host: "127.0.0.1".into(),
                port: 5028
            }
        );
        let p = parse_protocol(&proto(
            "modbus-rtu",
            json!({"serialPort": "/dev/ttyUSB0", "baudRate": "9600", "dataBits": 7, "parity": "odd", "stopBits": 2, "slaveID": "12"}),
            Json::Null,
        ))
        .unwrap();
        assert_eq!(p.unit, 12);
        let Link::Rtu(s) = p.link else { panic!() };
        assert_eq!(
            (s.baud_rate, s.data_bits, s.parity, s.stop_bits),
            (9600, 7, Parity::Odd, 2)
        );
    }

    #[test]
    fn v1beta1_flat_with_extensions() {
        let p = parse_protocol(&proto(
            "Modbus",
            json!({"IP": "gw.local", "port": 4001, "slaveID": 9, "transport": "rtu-over-tcp",
                   "maxRegistersPerRequest": 60, "singleRequestPerProperty": "true",
                   "collectTimeout": 300, "rtuGracePeriod": 20, "backoffMin": 10, "backoffMax": 100}),
            Json::Null,
        ))
        .unwrap();
        assert_eq!(
            p.link,
            Link::RtuOverTcp {
                host: "gw.local".into(),
                port: 4001
            }
        );
        assert_eq!(p.limits.max_registers, 60);
        assert!(p.limits.single_request);
        assert_eq!(p.timing.rtu_grace, Duration::from_millis(20));
        assert_eq!(p.timing.backoff_max, Duration::from_millis(100));
        // v1beta1 defaults: port 502, unit 1
        let p = parse_protocol(&proto("modbus", json!({"ip": "1.2.3.4"}), Json::Null)).unwrap();
        assert_eq!(p.unit, 1);
        assert_eq!(
            p.link,
            Link::Tcp {
                host: "1.2.3.4".into(),
                port: 502
            }
        );
    }

    #[test]
    fn protocol_validation_names_the_field() {
        let cases = [
            (
                json!({"ip": "a", "slaveID": 300}),
                "slaveID",
                "out of range",
            ),
            (json!({"ip": "a", "slaveID": 255}), "", ""),
            (
                json!({"serialPort": "/dev/x", "slaveID": 255}),
                "slaveID",
                "out of range",
            ),
            (
                json!({"serialPort": "/dev/x"}),
                "slaveID",
                "needs the slave id",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 0}),
                "slaveID",
                "broadcast",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 1, "baudRate": 12345}),
                "baudRate",
                "baud",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 1, "dataBits": 9}),
                "dataBits",
                "5, 6, 7 or 8",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 1, "parity": "mark"}),
                "parity",
                "none, even or odd",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 1, "stopBits": 3}),
                "stopBits",
                "1 or 2",
            ),
            (json!({"ip": "a", "port": 70000}), "port", "1-65535"),
            (json!({"ip": "a", "slaveID": "x"}), "slaveID", "integer"),
            (
                json!({"ip": "a", "transport": "udp"}),
                "transport",
                "rtu-over-tcp",
            ),
            (
                json!({"ip": "a", "maxRegistersPerRequest": 126}),
                "maxRegistersPerRequest",
                "1-125",
            ),
        ];
        for (cfg, field, msg) in cases {
            let r = parse_protocol(&proto("modbus", cfg.clone(), Json::Null));
            if field.is_empty() {
                assert!(r.is_ok(), "{cfg}: {r:?}");
                continue;
            }
            let e = r.unwrap_err();
            assert!(e.field.ends_with(field), "{cfg}: {e}");
            assert!(e.message.contains(msg), "{cfg}: {e}");
        }
    }

    #[test]
    fn tables_parse_case_insensitively() {
        for (s, t) in [
            ("CoilRegister", Table::Coil),
            ("coil", Table::Coil),
            ("COILS", Table::Coil),
            ("DiscreteInputRegister", Table::DiscreteInput),
            ("discrete", Table::DiscreteInput),
            ("inputregister", Table::Input),
            ("input", Table::Input),
            ("HoldingRegister", Table::Holding),
            ("holding_registers", Table::Holding),
        ] {
            assert_eq!(Table::parse(s), Some(t), "{s}");
        }
        assert_eq!(Table::parse("memory"), None);
    }

    #[test]
    fn visitor_defaults_and_inference() {
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
        ))
        .unwrap();
        assert_eq!(
            (v.raw, v.count, v.scale, v.add),
            (RawType::Int16, 1, 1.0, 0.0)
        );
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"register": "holding", "limit": 2}),
        ))
        .unwrap();
        assert_eq!(v.raw, RawType::Int32);
        let v = parse_visitor(&prop(
            DataType::Float,
            json!({"register": "input", "limit": 2}),
        ))
        .unwrap();
        assert_eq!(v.raw, RawType::Float32);
        let v = parse_visitor(&prop(
            DataType::Float,
            json!({"register": "input", "limit": 1, "scale": 0.1}),
        ))
        .unwrap();
        assert_eq!((v.raw, v.scale), (RawType::Int16, 0.1));
        let v = parse_visitor(&prop(
            DataType::Double,
            json!({"register": "holding", "limit": 4}),
        ))
        .unwrap();
        assert_eq!(v.raw, RawType::Float64);
        let v = parse_visitor(&prop(
            DataType::Boolean,
            json!({"register": "holding", "limit": 1}),
        ))
        .unwrap();
        assert_eq!(v.raw, RawType::Bool);
        let v = parse_visitor(&prop(
            DataType::Boolean,
            json!({"register": "CoilRegister", "offset": 2}),
        ))
        .unwrap();
        assert_eq!((v.raw, v.count, v.offset), (RawType::Bits, 1, 2));
        // rawType gives the limit
        let v = parse_visitor(&prop(
            DataType::Int,
            json!({"register": "holding", "rawType": "uint32"}),
        ))
        .unwrap();
        assert_eq!((v.raw, v.count), (RawType::UInt32, 2));
        let v = parse_visitor(&prop(
            DataType::Boolean,
            json!({"register": "holding", "rawType": "bit", "bit": 15}),
        ))
        .unwrap();
        assert_eq!(v.raw, RawType::Bit(15));
        // nested customizedValues
        let v = parse_visitor(&prop(DataType::Float, json!({"register": "holding", "limit": 1, "customizedValues": {"rawType": "uint16", "offsetValue": -40}}))).unwrap();
        assert_eq!((v.raw, v.add), (RawType::UInt16, -40.0));
        let v = parse_visitor(&prop(DataType::String, json!({"register": "holding", "limit": 4, "stringByteOrder": "lowFirst", "stringPadding": "space"}))).unwrap();
        assert!(v.swap_bytes);
        assert_eq!(v.padding, Padding::Space);
    }

    #[test]
    fn visitor_errors_say_how_to_fix() {
        let cases = [
            (
                DataType::Int,
                json!({"register": "holding", "limit": 1, "scale": 0}),
                "scale",
                "defaults to 1",
            ),
            (
                DataType::Float,
                json!({"register": "holding", "limit": 1, "rawType": "float32"}),
                "limit",
                "set limit to 2",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "limit": 3}),
                "limit",
                "1, 2 or 4",
            ),
            (
                DataType::Int,
                json!({"register": "memory"}),
                "register",
                "HoldingRegister",
            ),
            (
                DataType::Int,
                json!({"limit": 1}),
                "register",
                "no register",
            ),
            (
                DataType::String,
                json!({"register": "holding"}),
                "limit",
                "needs limit",
            ),
            (
                DataType::Boolean,
                json!({"register": "coil", "limit": 3}),
                "limit",
                "one bit",
            ),
            (
                DataType::Int,
                json!({"register": "coil", "rawType": "int16"}),
                "rawType",
                "holds bits",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "offset": 65535, "limit": 2}),
                "offset",
                "past the last",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "offset": -1}),
                "offset",
                "0-based",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "rawType": "int8"}),
                "rawType",
                "unknown rawType",
            ),
            (
                DataType::Boolean,
                json!({"register": "holding", "rawType": "bit", "bit": 16}),
                "bit",
                "0-15",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "limit": 1, "bit": 3}),
                "bit",
                "rawType: bit",
            ),
            (
                DataType::Int,
                json!({"register": "holding", "limit": 126, "rawType": "string"}),
                "rawType",
                "cannot hold",
            ),
            (
                DataType::String,
                json!({"register": "holding", "limit": 126}),
                "limit",
                "at most 125",
            ),
            (
                DataType::String,
                json!({"register": "holding", "limit": 2, "isSwap": true, "stringByteOrder": "lowFirst"}),
                "stringByteOrder",
                "only one",
            ),
        ];
        for (dt, cfg, field, msg) in cases {
            let e = parse_visitor(&prop(dt, cfg.clone())).unwrap_err();
            assert!(e.field.ends_with(field), "{cfg}: {e}");
            assert!(e.message.contains(msg), "{cfg}: {e}");
        }
    }
}
