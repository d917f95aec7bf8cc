//! A KubeEdge mapper for the `{{protocol}}` protocol, on mapper-sdk.
//!
//! As generated, a device is a loopback: writes are kept in memory and read back. Fill in
//! the four marked places (protocol config, visitor config, connect, read/write); the
//! guide `docs/writing-a-mapper.md` of the mapper-sdk repository walks through a real one.

use std::collections::HashMap;

use mapper_sdk::driver::{
    ConfigError, ConfigWarning, CustomProtocol, Device, DeviceSpec, Driver, DriverError,
    PropertySpec, config_from_json_noting,
};
use mapper_sdk::model::{DataType, Value};
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use serde::Deserialize;

/// The protocol name: a v1alpha2 `customizedProtocol` with this `protocolName`, or the
/// v1beta1 Device's `protocolName`.
pub const PROTOCOL: CustomProtocol = CustomProtocol::new("{{protocol}}");

/// One device's protocol config (the `configData` of its protocol).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProtoConfig {
    // TODO(protocol config): the fields that say how to reach one device; check them in parse_protocol_noting.
    /// Where the device is.
    pub address: String,
}

/// One property's visitor config (where the value is on the device).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProtoVisitor {
    // TODO(visitor config): the fields that say where a property's value is; check them in parse_visitor_noting.
    /// The value's name on the device (default: the property name).
    pub key: String,
}

/// The driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtoDriver;

impl Driver for ProtoDriver {
    type Protocol = ProtoConfig;
    type Visitor = ProtoVisitor;
    type Device = ProtoDevice;

    fn name(&self) -> &'static str {
        PROTOCOL.name()
    }

    fn handles(&self, protocol: &ProtocolDef) -> bool {
        PROTOCOL.handles(protocol)
    }

    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<ProtoConfig, ConfigError> {
        self.parse_protocol_noting(protocol).map(|(p, _)| p)
    }

    fn parse_visitor(
        &self,
        property: &PropertyDef,
        protocol: &ProtoConfig,
    ) -> Result<ProtoVisitor, ConfigError> {
        self.parse_visitor_noting(property, protocol)
            .map(|(v, _)| v)
    }

    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(ProtoConfig, Vec<ConfigWarning>), ConfigError> {
        let json = PROTOCOL
            .protocol_config(protocol)
            .unwrap_or(&serde_json::Value::Null);
        let (config, unknown): (ProtoConfig, _) = config_from_json_noting("protocolConfig", json)?;
        if config.address.trim().is_empty() {
            return Err(ConfigError::new(
                "protocolConfig.address",
                "missing; set where the device is",
            ));
        }
        Ok((
            config,
            unknown.into_iter().map(ConfigWarning::from).collect(),
        ))
    }

    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        _protocol: &ProtoConfig,
    ) -> Result<(ProtoVisitor, Vec<ConfigWarning>), ConfigError> {
        let json = PROTOCOL.visitor_config(&property.visitor)?;
        let (mut visitor, unknown): (ProtoVisitor, _) =
            config_from_json_noting("visitorConfig", json)?;
        if visitor.key.is_empty() {
            visitor.key = property.name.to_string();
        }
        Ok((
            visitor,
            unknown.into_iter().map(ConfigWarning::from).collect(),
        ))
    }

    async fn connect(&self, spec: &DeviceSpec<Self>) -> Result<ProtoDevice, DriverError> {
        // TODO(connect): open the connection to spec.protocol.address; DriverError::Link when it cannot be opened (the SDK retries with backoff).
        tracing::debug!(device = %spec.id(), address = %spec.protocol.address, "connected (loopback)");
        Ok(ProtoDevice::default())
    }
}

/// A connected device, owned by one worker task.
#[derive(Debug, Default)]
pub struct ProtoDevice {
    values: HashMap<String, Value>,
}

impl Device for ProtoDevice {
    type Visitor = ProtoVisitor;

    async fn read(&mut self, property: &PropertySpec<ProtoVisitor>) -> Result<Value, DriverError> {
        // TODO(read/write): talk to the device in read and write; Link (connection gone), Timeout, Refused (the device said no) or Invalid (the value cannot be encoded or decoded).
        Ok(self
            .values
            .get(&property.visitor.key)
            .cloned()
            .unwrap_or_else(|| zero(property.def.data_type)))
    }

    async fn write(
        &mut self,
        property: &PropertySpec<ProtoVisitor>,
        value: &Value,
    ) -> Result<(), DriverError> {
        self.values
            .insert(property.visitor.key.clone(), value.clone());
        Ok(())
    }
}

fn zero(data_type: DataType) -> Value {
    match data_type {
        DataType::Int => Value::Int(0),
        DataType::Float | DataType::Double => Value::Float(0.0),
        DataType::Boolean => Value::Bool(false),
        DataType::String => Value::String(String::new()),
        DataType::Bytes => Value::Bytes(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapper_sdk::profile::ResolveOptions;

    /// A profile with one device of this protocol, as KubeEdge 1.4-1.14 mounts it.
    pub const PROFILE: &str = include_str!("../tests/profile.json");

    #[test]
    fn the_example_profile_binds() {
        let loaded = mapper_sdk::load(&ProtoDriver, PROFILE, &ResolveOptions::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.devices.len(), 1);
        assert_eq!(loaded.devices[0].protocol.address, "device-1.local");
        assert_eq!(loaded.devices[0].properties[0].visitor.key, "level");
    }

    #[test]
    fn a_missing_address_is_an_error_naming_the_field() {
        let text = PROFILE.replace("\"address\": \"device-1.local\"", "\"adress\": \"x\"");
        let loaded = mapper_sdk::load(&ProtoDriver, &text, &ResolveOptions::default());
        assert!(loaded.devices.is_empty());
        assert!(
            loaded.errors[0].contains("protocolConfig.address"),
            "{:?}",
            loaded.errors
        );
    }
}
