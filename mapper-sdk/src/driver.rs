//! The contract a protocol implements. Everything else (profiles, scheduling, reporting,
//! deltas, reconnects) comes from the SDK.
//!
//! A [`Driver`] parses its typed protocol and visitor configs once, when a profile is
//! resolved ([`bind`]), and connects devices. A connected [`Device`] is owned by exactly
//! one worker task, so it needs no locks. Errors say whether the link is gone
//! ([`DriverError::Link`]: the SDK reconnects with backoff) or the device answered but
//! refused ([`DriverError::Refused`]: the link is kept).
//!
//! # What the SDK does with each error
//!
//! | Error | on `connect` | on `read` / `read_many` | on `write` |
//! |---|---|---|---|
//! | [`Link`](DriverError::Link) | counts one failed attempt (offline after `mapper.offlineAfter`), retried with the reconnect backoff | the handle is dropped, the device is reported offline at once, its values are not reported until a read succeeds again, reconnect with backoff | as on read; the value stays pending and is written after the reconnect |
//! | [`Timeout`](DriverError::Timeout) | as `Link` (the connect timeout) | counts one failed transaction (offline after `mapper.offlineAfter`); the property's last value is not reported while it fails; the link is kept | the value stays pending and is retried with backoff (`write_retry_min` to `write_retry_max`) for as long as it takes |
//! | [`Refused`](DriverError::Refused) | as `Link` | the device is online; this property's value is not reported while it fails | retried with backoff up to `mapper.refusedWriteRetries` times (default 3), then dropped with an error log |
//! | [`Invalid`](DriverError::Invalid) | as `Link` | as `Refused` | dropped at once with an error log (retrying cannot help) |
//!
//! A link loss between transactions (e.g. a BLE disconnect event while idle) is reported
//! by ending [`Device::next_push`] (`None`): handled as `Link` on read. After a link loss,
//! reconnects are at most `mapper.relinkIntervalMs` (1 s) apart for
//! `mapper.relinkWindowMs` (60 s), then the backoff grows to 30 s.
//!
//! A device is reported online again by its first successful read or write.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value as Json;
use thiserror::Error;

use crate::model::{DeviceId, PropertyName, Value};
use crate::profile::unknown::UnknownKey;
use crate::profile::{DeviceDef, Issue, PropertyDef, ProtocolDef};

/// What went wrong talking to a device.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DriverError {
    /// The connection is gone or unusable; the SDK drops the device handle and reconnects.
    #[error("link lost: {0}")]
    Link(String),
    /// The device did not answer in time. Counts against the device's state; the link is
    /// kept (on a shared bus other devices may be fine).
    #[error("no answer: {0}")]
    Timeout(String),
    /// The device answered with a refusal (e.g. a Modbus exception). The device is online.
    #[error("the device refused the request: {0}")]
    Refused(String),
    /// The value cannot be encoded for, or decoded from, this property (e.g. out of the
    /// register's range, or a reply too short for the visitor).
    #[error("{0}")]
    Invalid(String),
}

impl DriverError {
    /// Whether the handle must be dropped and the device reconnected.
    pub fn is_link(&self) -> bool {
        matches!(self, Self::Link(_))
    }

    /// Whether the error shows the device is not reachable (counts towards offline).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Link(_) | Self::Timeout(_))
    }
}

/// A protocol or visitor config a driver refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("field {field:?}: {message}")]
pub struct ConfigError {
    /// The field, e.g. `visitorConfig.register`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A new error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a serde error from deserializing `field` into a config error.
    pub fn from_serde(field: impl Into<String>, err: &serde_json::Error) -> Self {
        Self::new(field, err.to_string())
    }
}

/// A config key a driver ignored (a typo, most of the time): a warning, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key, e.g. `visitorConfig.scal`.
    pub field: String,
    /// What it means, e.g. `unknown key (did you mean visitorConfig.scale?); it is ignored`.
    pub message: String,
}

impl From<UnknownKey> for ConfigWarning {
    fn from(k: UnknownKey) -> Self {
        Self {
            message: k.message(),
            field: k.path,
        }
    }
}

/// A property as a driver sees it: the resolved model facts and its typed visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySpec<V> {
    /// Name, type, limits, cycles.
    pub def: Arc<PropertyDef>,
    /// The driver's visitor config.
    pub visitor: V,
}

/// A device bound to a driver: generic facts plus typed configs.
#[derive(Debug)]
pub struct DeviceSpec<D: Driver> {
    /// The resolved, protocol-agnostic device.
    pub def: DeviceDef,
    /// The driver's protocol config.
    pub protocol: D::Protocol,
    /// Properties whose visitors the driver accepted.
    pub properties: Vec<PropertySpec<D::Visitor>>,
}

impl<D: Driver> Clone for DeviceSpec<D> {
    fn clone(&self) -> Self {
        Self {
            def: self.def.clone(),
            protocol: self.protocol.clone(),
            properties: self.properties.clone(),
        }
    }
}

impl<D: Driver> DeviceSpec<D> {
    /// The device id used in topics.
    pub fn id(&self) -> &DeviceId {
        &self.def.id
    }
}

/// A protocol: typed configs and connecting.
///
/// A complete, if useless, mapper: every property of a device of protocol `constant`
/// reads 42 and refuses writes. A real driver parses its protocol and visitor configs
/// into typed values (see `mappers/modbus`), opens a connection in `connect`, and maps
/// its failures onto [`DriverError`] (the table on [`DriverError`] says what the SDK does
/// with each).
///
/// ```no_run
/// use std::process::ExitCode;
///
/// use mapper_sdk::driver::{ConfigError, Device, DeviceSpec, Driver, DriverError, PropertySpec};
/// use mapper_sdk::model::Value;
/// use mapper_sdk::profile::{PropertyDef, ProtocolDef};
///
/// struct Constant;
/// struct ConstantDevice;
///
/// impl Driver for Constant {
///     type Protocol = ();
///     type Visitor = ();
///     type Device = ConstantDevice;
///
///     fn name(&self) -> &'static str {
///         "constant"
///     }
///     fn handles(&self, protocol: &ProtocolDef) -> bool {
///         protocol.kind == "constant"
///     }
///     fn parse_protocol(&self, _: &ProtocolDef) -> Result<(), ConfigError> {
///         Ok(())
///     }
///     fn parse_visitor(&self, _: &PropertyDef, _: &()) -> Result<(), ConfigError> {
///         Ok(())
///     }
///     async fn connect(&self, _: &DeviceSpec<Self>) -> Result<ConstantDevice, DriverError> {
///         Ok(ConstantDevice)
///     }
/// }
///
/// impl Device for ConstantDevice {
///     type Visitor = ();
///
///     async fn read(&mut self, _: &PropertySpec<()>) -> Result<Value, DriverError> {
///         Ok(Value::Int(42))
///     }
///     async fn write(&mut self, _: &PropertySpec<()>, _: &Value) -> Result<(), DriverError> {
///         Err(DriverError::Refused("constants cannot be written".into()))
///     }
/// }
///
/// fn main() -> ExitCode {
///     mapper_sdk::main_with(Constant, mapper_sdk::about!())
/// }
/// ```
pub trait Driver: Send + Sync + 'static {
    /// The typed protocol config of one device (address, unit id, ...).
    type Protocol: Debug + Clone + PartialEq + Send + Sync + 'static;
    /// The typed visitor config of one property (register, characteristic, ...).
    type Visitor: Debug + Clone + PartialEq + Send + Sync + 'static;
    /// A connected device.
    type Device: Device<Visitor = Self::Visitor>;

    /// A short name for logs and the default MQTT client id (`modbus`, `ble`).
    fn name(&self) -> &'static str;

    /// The protocol name this mapper registers with edgecore over DMI (the
    /// `protocolName` its v1beta1 Devices use); defaults to [`Driver::name`].
    fn dmi_protocol(&self) -> &'static str {
        self.name()
    }

    /// Whether this driver serves devices of this protocol (other devices in the profile
    /// belong to other mappers and are skipped silently).
    fn handles(&self, protocol: &ProtocolDef) -> bool;

    /// Parses and validates a device's protocol config.
    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<Self::Protocol, ConfigError>;

    /// Parses and validates one property's visitor config.
    fn parse_visitor(
        &self,
        property: &PropertyDef,
        protocol: &Self::Protocol,
    ) -> Result<Self::Visitor, ConfigError>;

    /// [`Driver::parse_protocol`], with the keys of the config that were ignored (see
    /// [`config_from_json_noting`]); [`bind`] turns them into profile warnings. The
    /// default notes nothing.
    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(Self::Protocol, Vec<ConfigWarning>), ConfigError> {
        Ok((self.parse_protocol(protocol)?, Vec::new()))
    }

    /// [`Driver::parse_visitor`], with the keys of the config that were ignored. The
    /// default notes nothing.
    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        protocol: &Self::Protocol,
    ) -> Result<(Self::Visitor, Vec<ConfigWarning>), ConfigError> {
        Ok((self.parse_visitor(property, protocol)?, Vec::new()))
    }

    /// The protocol config as `key=value` pairs for `check`; the default (none) makes
    /// `check` show the config as the profile gives it.
    fn describe_protocol(&self, _protocol: &Self::Protocol) -> Vec<(String, String)> {
        Vec::new()
    }

    /// A visitor config as `key=value` pairs for `check` (see
    /// [`Driver::describe_protocol`]).
    fn describe_visitor(&self, _visitor: &Self::Visitor) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Connects a device. Called again with backoff after [`DriverError::Link`].
    fn connect(
        &self,
        spec: &DeviceSpec<Self>,
    ) -> impl Future<Output = Result<Self::Device, DriverError>> + Send
    where
        Self: Sized;
}

/// A connected device, owned by one worker task.
pub trait Device: Send + 'static {
    /// The driver's visitor type.
    type Visitor: Send + Sync;

    /// Reads one property.
    fn read(
        &mut self,
        property: &PropertySpec<Self::Visitor>,
    ) -> impl Future<Output = Result<Value, DriverError>> + Send;

    /// Writes one property. The value has the property's type and lies within the model's
    /// limits; the driver refuses values its encoding cannot hold.
    fn write(
        &mut self,
        property: &PropertySpec<Self::Visitor>,
        value: &Value,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Reads several properties due in the same tick, one result each, in order. The
    /// default reads them one by one; drivers that can merge requests override it.
    fn read_many(
        &mut self,
        properties: &[&PropertySpec<Self::Visitor>],
    ) -> impl Future<Output = Vec<Result<Value, DriverError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(properties.len());
            for p in properties {
                let r = self.read(p).await;
                let stop = r.as_ref().is_err_and(DriverError::is_link);
                out.push(r);
                if let Some(Err(e)) = stop.then(|| out.last().cloned()).flatten() {
                    // The link is gone: the rest would fail the same way, for the same
                    // reason.
                    while out.len() < properties.len() {
                        out.push(Err(e.clone()));
                    }
                    break;
                }
            }
            out
        }
    }

    /// Values the device pushes by itself (e.g. BLE notifications), and the way to report
    /// a link loss that happens between transactions (a disconnect event from the stack
    /// while the device is idle). The worker polls it whenever it has nothing else to do.
    ///
    /// - `Some((property, Ok(value)))`: a pushed value, reported at the property's next
    ///   tick (throttled to its collect cycle; at once for a never-polled property).
    /// - `Some((property, Err(e)))`: a pushed value that could not be decoded; a
    ///   [`DriverError::Link`] here is a link loss, as below.
    /// - `None`: **the link is gone**. The device is reported offline at once, the handle
    ///   is dropped, and reconnects start (at most
    ///   [`crate::runtime::RuntimeOptions::relink_interval`] apart for a while, so that a
    ///   short outage ends with `online` and a fresh reading soon after the device is
    ///   back). Return `None` only once per connection.
    ///
    /// Must be cancel-safe: the worker drops this future whenever something else is due.
    /// The default never yields (no pushes, link losses show on the next transaction).
    fn next_push(
        &mut self,
    ) -> impl Future<Output = Option<(PropertyName, Result<Value, DriverError>)>> + Send {
        std::future::pending()
    }

    /// Releases the connection before the handle is dropped.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A device bound to a driver with the issues of the properties that were dropped, or
/// the issue that stopped the whole device.
pub type Bound<D> = Result<(DeviceSpec<D>, Vec<Issue>), Issue>;

/// A device bound to a driver, as [`bind_noting`] returns it.
#[derive(Debug)]
pub struct BoundDevice<D: Driver> {
    /// The device.
    pub spec: DeviceSpec<D>,
    /// The properties that were dropped, and why (errors).
    pub issues: Vec<Issue>,
    /// Config keys the driver ignored (warnings).
    pub warnings: Vec<Issue>,
}

/// Binds a resolved device to a driver: parses the protocol config and every visitor.
///
/// A bad protocol config is an error for the device; a bad visitor drops that property
/// only and is returned among the issues. Returns `None` when the driver does not handle
/// the device's protocol.
pub fn bind<D: Driver>(driver: &D, def: DeviceDef) -> Option<Bound<D>> {
    bind_noting(driver, def).map(|b| b.map(|b| (b.spec, b.issues)))
}

/// [`bind`], with the config keys the driver ignored as warnings (each names the device,
/// the property for a visitor, and the key as the field).
pub fn bind_noting<D: Driver>(driver: &D, def: DeviceDef) -> Option<Result<BoundDevice<D>, Issue>> {
    if !driver.handles(&def.protocol) {
        return None;
    }
    let device = def.id.to_string();
    let issue = |property: Option<String>, field: String, message: String| Issue {
        device: Some(device.clone()),
        property,
        field: Some(field),
        message,
        others: Vec::new(),
    };
    let (protocol, noted) = match driver.parse_protocol_noting(&def.protocol) {
        Ok(p) => p,
        Err(e) => return Some(Err(issue(None, e.field, e.message))),
    };
    let mut warnings: Vec<Issue> = noted
        .into_iter()
        .map(|w| issue(None, w.field, w.message))
        .collect();
    let mut issues = Vec::new();
    let mut properties = Vec::new();
    for p in &def.properties {
        match driver.parse_visitor_noting(p, &protocol) {
            Ok((visitor, noted)) => {
                warnings.extend(
                    noted
                        .into_iter()
                        .map(|w| issue(Some(p.name.to_string()), w.field, w.message)),
                );
                properties.push(PropertySpec {
                    def: Arc::clone(p),
                    visitor,
                });
            }
            Err(e) => issues.push(issue(Some(p.name.to_string()), e.field, e.message)),
        }
    }
    Some(Ok(BoundDevice {
        spec: DeviceSpec {
            def,
            protocol,
            properties,
        },
        issues,
        warnings,
    }))
}

/// Deserializes a driver config from profile JSON, matching field names the way Go does
/// (see [`crate::profile::ci`]). `null` becomes the type's default via `serde(default)`.
pub fn config_from_json<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &Json,
) -> Result<T, ConfigError> {
    let v = if value.is_null() {
        Json::Object(serde_json::Map::new())
    } else {
        value.clone()
    };
    crate::profile::ci::from_value(v).map_err(|e| ConfigError::from_serde(field, &e))
}

/// [`config_from_json`], with the keys that matched no field of `T` (paths under
/// `field`, e.g. `visitorConfig.scal`, with the likely field as a suggestion).
pub fn config_from_json_noting<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &Json,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let v = if value.is_null() {
        Json::Object(serde_json::Map::new())
    } else {
        value.clone()
    };
    let (t, unknown) =
        crate::profile::ci::from_value_noting(v).map_err(|e| ConfigError::from_serde(field, &e))?;
    Ok((t, unknown.into_iter().map(|k| k.under(field)).collect()))
}

/// The protocol kind KubeEdge gives a `customizedProtocol` in a v1alpha2 profile.
pub const CUSTOMIZED_PROTOCOL: &str = "customized-protocol";

/// Unwraps KubeEdge's custom-protocol configs, so that a driver for a protocol KubeEdge
/// does not know sees its own config in every profile format.
///
/// - v1alpha2 (the ConfigMap): the protocol kind is `customized-protocol`, the protocol
///   config is `{"protocolName": NAME, "configData": {...}}`, and each visitor config is
///   `{"protocolName": NAME, "configData": {...}}` too.
/// - v1beta1: the protocol kind is `NAME` itself and the configs are the `configData`.
///
/// Names match case-insensitively, as in mapper-sdk-go.
///
/// ```
/// use std::sync::Arc;
/// use mapper_sdk::driver::CustomProtocol;
/// use mapper_sdk::profile::ProtocolDef;
/// use serde_json::json;
///
/// let http = CustomProtocol::new("http");
/// let alpha = ProtocolDef {
///     kind: "customized-protocol".into(),
///     config: Arc::new(json!({"protocolName": "HTTP", "configData": {"baseUrl": "http://meter"}})),
///     common: Arc::new(json!(null)),
/// };
/// let beta = ProtocolDef {
///     kind: "http".into(),
///     config: Arc::new(json!({"baseUrl": "http://meter"})),
///     common: Arc::new(json!(null)),
/// };
/// assert!(http.handles(&alpha) && http.handles(&beta));
/// assert_eq!(http.protocol_config(&alpha), http.protocol_config(&beta));
/// let visitor = json!({"protocolName": "http", "configData": {"path": "/t"}});
/// assert_eq!(http.visitor_config(&visitor).unwrap(), &json!({"path": "/t"}));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomProtocol {
    name: &'static str,
}

static NULL: Json = Json::Null;

impl CustomProtocol {
    /// The helper for the protocol called `name` (`protocolName` in KubeEdge).
    pub const fn new(name: &'static str) -> Self {
        Self { name }
    }

    /// The protocol name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a device's protocol is this one, in either form ([`Driver::handles`]).
    pub fn handles(&self, protocol: &ProtocolDef) -> bool {
        self.protocol_config(protocol).is_some()
    }

    /// The driver's own protocol config (the `configData`; `null` when absent), or `None`
    /// when the device uses another protocol.
    pub fn protocol_config<'a>(&self, protocol: &'a ProtocolDef) -> Option<&'a Json> {
        if protocol.kind.eq_ignore_ascii_case(self.name) {
            return Some(unwrap_config_data(&protocol.config).unwrap_or(&protocol.config));
        }
        if !protocol.kind.eq_ignore_ascii_case(CUSTOMIZED_PROTOCOL) {
            return None;
        }
        let named = field_ci(&protocol.config, "protocolName")
            .and_then(Json::as_str)
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(self.name));
        named.then(|| unwrap_config_data(&protocol.config).unwrap_or(&NULL))
    }

    /// The driver's own visitor config: the `configData` of a v1alpha2 custom-protocol
    /// visitor, or the visitor as it is (v1beta1). A visitor that names another protocol
    /// is an error naming `visitorConfig.protocolName`.
    pub fn visitor_config<'a>(&self, visitor: &'a Json) -> Result<&'a Json, ConfigError> {
        let Some(name) = field_ci(visitor, "protocolName") else {
            return Ok(visitor);
        };
        match name.as_str() {
            Some(n) if n.trim().eq_ignore_ascii_case(self.name) => {
                Ok(unwrap_config_data(visitor).unwrap_or(&NULL))
            }
            _ => Err(ConfigError::new(
                "visitorConfig.protocolName",
                format!(
                    "is {name}, but this mapper serves protocol {:?}; set it to {:?} or move the property to a device of that protocol",
                    self.name, self.name
                ),
            )),
        }
    }
}

fn field_ci<'a>(json: &'a Json, key: &str) -> Option<&'a Json> {
    json.as_object()?
        .iter()
        .find(|(k, _)| k.replace(['_', '-'], "").eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The `configData` of a `{protocolName, configData}` wrapper, when `json` is one.
fn unwrap_config_data(json: &Json) -> Option<&Json> {
    field_ci(json, "protocolName")?;
    Some(field_ci(json, "configData").unwrap_or(&NULL))
}

#[cfg(test)]
mod custom_protocol_tests {
    use super::*;
    use serde_json::json;

    fn proto(kind: &str, config: Json) -> ProtocolDef {
        ProtocolDef {
            kind: kind.into(),
            config: Arc::new(config),
            common: Arc::new(Json::Null),
        }
    }

    #[test]
    fn both_forms_give_the_same_config_and_other_protocols_are_not_handled() {
        let p = CustomProtocol::new("http");
        let data = json!({"baseUrl": "http://x"});
        let alpha = proto(
            "customized-protocol",
            json!({"protocolName": "Http", "configData": data}),
        );
        let beta = proto("HTTP", data.clone());
        assert_eq!(p.protocol_config(&alpha), Some(&data));
        assert_eq!(p.protocol_config(&beta), Some(&data));
        let other = proto(
            "customized-protocol",
            json!({"protocolName": "virtualProtocol", "configData": data}),
        );
        assert!(!p.handles(&other));
        assert!(!p.handles(&proto("modbus", json!({}))));
        // No configData: null, which config_from_json turns into the defaults.
        let bare = proto("customized-protocol", json!({"protocolName": "http"}));
        assert_eq!(p.protocol_config(&bare), Some(&Json::Null));
    }

    #[test]
    fn visitors_are_unwrapped_and_a_foreign_protocol_name_is_an_error() {
        let p = CustomProtocol::new("http");
        let inner = json!({"path": "/a"});
        assert_eq!(
            p.visitor_config(&json!({"protocolName": "http", "configData": inner}))
                .unwrap(),
            &inner
        );
        assert_eq!(p.visitor_config(&inner).unwrap(), &inner);
        let e = p
            .visitor_config(&json!({"protocolName": "opcua", "configData": inner}))
            .unwrap_err();
        assert_eq!(e.field, "visitorConfig.protocolName");
        assert!(e.message.contains("\"http\""), "{}", e.message);
    }
}
