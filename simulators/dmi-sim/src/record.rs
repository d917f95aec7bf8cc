//! What the fake edgecore saw: the records tests inspect, and the events the binary
//! prints. Plain data.

use std::time::{Duration, Instant, SystemTime};

use dmi_api::v1beta1::MapperInfo;
use serde_json::{Value as Json, json};

use crate::convert::ConvertError;
use crate::fixtures::Key;
use crate::json::mapper_info_json;
use crate::validate::DropReason;

/// One of the three methods edgecore serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `MapperRegister`.
    MapperRegister,
    /// `ReportDeviceStatus`.
    ReportDeviceStatus,
    /// `ReportDeviceStates`.
    ReportDeviceStates,
}

impl Method {
    /// All three.
    pub const ALL: [Method; 3] = [
        Self::MapperRegister,
        Self::ReportDeviceStatus,
        Self::ReportDeviceStates,
    ];

    /// The gRPC method name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MapperRegister => "MapperRegister",
            Self::ReportDeviceStatus => "ReportDeviceStatus",
            Self::ReportDeviceStates => "ReportDeviceStates",
        }
    }

    /// The operation in edgecore's limiter message ("fail to <op> because of ...").
    pub fn limiter_op(self) -> &'static str {
        match self {
            Self::MapperRegister => "register mapper",
            Self::ReportDeviceStatus => "report device status",
            Self::ReportDeviceStates => "report device states",
        }
    }
}

/// When something happened: wall clock (for output) and monotonic (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// Wall-clock time.
    pub wall: SystemTime,
    /// Monotonic time.
    pub instant: Instant,
}

impl At {
    /// Now.
    pub fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            instant: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch (edgecore's timestamp unit).
    pub fn unix_ms(&self) -> u128 {
        self.wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    }
}

/// One accepted `MapperRegister`.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// When.
    pub at: At,
    /// `withData`.
    pub with_data: bool,
    /// The mapper as sent.
    pub mapper: MapperInfo,
    /// Whether the address was put into the routing table (only with `withData`,
    /// docs/kubeedge-dmi.md#quirk-withdata-false-does-not-route).
    pub address_recorded: bool,
    /// The devices returned, in order (their models are index-aligned).
    pub devices: Vec<Key>,
    /// The models returned, one per device.
    pub models: Vec<Key>,
}

/// One twin edgecore accepted from `ReportDeviceStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// When it arrived.
    pub at: At,
    /// The device (`namespace` empty in 1.15 mode).
    pub device: Key,
    /// The property.
    pub property: String,
    /// `reported.value`.
    pub reported: String,
    /// `observedDesired.value`.
    pub observed_desired: String,
}

/// One state edgecore accepted from `ReportDeviceStates` (lower-cased).
#[derive(Debug, Clone, PartialEq)]
pub struct StateReport {
    /// When.
    pub at: At,
    /// The device.
    pub device: Key,
    /// The state, lower-cased as edgecore stores it.
    pub state: String,
}

/// Input that would make a real edgecore dereference nil and crash
/// (docs/kubeedge-dmi.md#quirk-absent-sub-messages-crash-edgecore). The fake
/// answers with an error instead and records it here; a conforming mapper never
/// causes one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// `MapperRegisterRequest` without `mapper`.
    #[error("MapperRegister without mapper (would crash edgecore)")]
    MissingMapper,
    /// `ReportDeviceStatusRequest` without `reportedDevice` (crashes 1.15).
    #[error("ReportDeviceStatus for {device:?} without reportedDevice (would crash edgecore 1.15)")]
    MissingReportedDevice {
        /// `deviceName`.
        device: String,
    },
    /// A twin without `observedDesired`.
    #[error(
        "ReportDeviceStatus for {device:?}: twin {property:?} has no observedDesired (would crash edgecore)"
    )]
    MissingObservedDesired {
        /// `deviceName`.
        device: String,
        /// `propertyName`.
        property: String,
    },
    /// A twin without `reported`.
    #[error(
        "ReportDeviceStatus for {device:?}: twin {property:?} has no reported (would crash edgecore)"
    )]
    MissingReported {
        /// `deviceName`.
        device: String,
        /// `propertyName`.
        property: String,
    },
}

/// A twin or state edgecore would accept over gRPC but then drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// When.
    pub at: At,
    /// The device as sent (`namespace/name`, or the name alone).
    pub device: String,
    /// The property (`None` for a state).
    pub property: Option<String>,
    /// Why.
    pub reason: DropReason,
}

/// Why a cached device was left out of a `MapperRegister` answer (edgecore logs it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkipReason {
    /// The device is not cached.
    #[error("device {0} is not cached")]
    NoDevice(Key),
    /// The device's model is not cached.
    #[error("model {0} is not cached")]
    NoModel(Key),
    /// The device or its model cannot be converted.
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// A device left out of a `MapperRegister` answer or a life-cycle call.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// When.
    pub at: At,
    /// The device.
    pub device: Key,
    /// Why.
    pub reason: SkipReason,
}

/// A call refused by the token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// When.
    pub at: At,
    /// Which method.
    pub method: Method,
    /// The name in the message (mapper or device name).
    pub name: String,
}

/// One call the server answered (every call, refused ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// When the answer was sent.
    pub at: At,
    /// Which method.
    pub method: Method,
    /// The gRPC status code of the answer (`Ok` on success).
    pub code: tonic::Code,
    /// The status message (empty on success).
    pub message: String,
}

/// Everything the fake records, as a stream (see `crate::server::Edgecore::events`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `MapperRegister` was accepted.
    Registered(Registration),
    /// A twin was accepted.
    Reported(Report),
    /// A state was accepted.
    State(StateReport),
    /// A twin or state was dropped.
    Dropped(Dropped),
    /// A would-crash input.
    Violation(Violation),
    /// A device was skipped.
    Skipped(Skipped),
    /// The limiter refused a call.
    Rejected(Rejection),
    /// A call was answered (recorded after the events the call caused).
    Called(Call),
    /// The server (re)started on its socket.
    Listening,
}

fn ms(at: &At) -> Json {
    Json::from(u64::try_from(at.unix_ms()).unwrap_or(u64::MAX))
}

impl Event {
    /// One JSON object for the binary's output (`{"event": ..., ...}`).
    pub fn to_json(&self) -> Json {
        match self {
            Self::Registered(r) => json!({
                "event": "register", "time": ms(&r.at), "withData": r.with_data,
                "mapper": mapper_info_json(&r.mapper), "addressRecorded": r.address_recorded,
                "devices": r.devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Self::Reported(r) => json!({
                "event": "report", "time": ms(&r.at), "device": r.device.to_string(),
                "property": r.property, "reported": r.reported, "observedDesired": r.observed_desired,
            }),
            Self::State(s) => json!({
                "event": "state", "time": ms(&s.at), "device": s.device.to_string(), "state": s.state,
            }),
            Self::Dropped(d) => json!({
                "event": "dropped", "time": ms(&d.at), "device": d.device,
                "property": d.property, "reason": d.reason.to_string(),
            }),
            Self::Violation(v) => json!({"event": "violation", "reason": v.to_string()}),
            Self::Skipped(s) => json!({
                "event": "skipped", "time": ms(&s.at), "device": s.device.to_string(), "reason": s.reason.to_string(),
            }),
            Self::Rejected(r) => json!({
                "event": "rejected", "time": ms(&r.at), "method": r.method.name(), "name": r.name,
            }),
            Self::Called(c) => json!({
                "event": "call", "time": ms(&c.at), "method": c.method.name(),
                "code": format!("{:?}", c.code), "message": c.message,
            }),
            Self::Listening => json!({"event": "listening"}),
        }
    }
}

/// A wait helper gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    /// What was awaited.
    pub what: String,
    /// How long.
    pub waited: Duration,
}
