//! [`HttpDriver`]: the `mapper_sdk::driver::Driver` of protocol `http`, and
//! [`HttpDevice`], one connected device.

use std::sync::Arc;

use http::Method;
use mapper_sdk::driver::{
    ConfigError, ConfigWarning, CustomProtocol, Device, DeviceSpec, Driver, DriverError,
    PropertySpec,
};
use mapper_sdk::model::Value;
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use serde_json::Value as Json;

use crate::client::Client;
use crate::config::{self, HttpProtocol, HttpVisitor};
use crate::reply;

/// The protocol name (`protocolName` of the v1alpha2 `customizedProtocol` and of the
/// v1beta1 Device).
pub const PROTOCOL: CustomProtocol = CustomProtocol::new("http");

/// The driver: parses configs and makes one [`HttpDevice`] per device.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpDriver;

impl HttpDriver {
    /// A driver.
    pub fn new() -> Self {
        Self
    }
}

/// Where a config sits in the profile: `configData` inside a v1alpha2 custom-protocol
/// wrapper, or the config itself.
fn field_of(outer: &Json, inner: &Json, name: &str) -> String {
    if std::ptr::eq(outer, inner) {
        name.to_owned()
    } else {
        format!("{name}.configData")
    }
}

impl Driver for HttpDriver {
    type Protocol = HttpProtocol;
    type Visitor = HttpVisitor;
    type Device = HttpDevice;

    fn name(&self) -> &'static str {
        PROTOCOL.name()
    }

    fn handles(&self, protocol: &ProtocolDef) -> bool {
        PROTOCOL.handles(protocol)
    }

    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<HttpProtocol, ConfigError> {
        self.parse_protocol_noting(protocol).map(|(p, _)| p)
    }

    fn parse_visitor(
        &self,
        property: &PropertyDef,
        protocol: &HttpProtocol,
    ) -> Result<HttpVisitor, ConfigError> {
        self.parse_visitor_noting(property, protocol)
            .map(|(v, _)| v)
    }

    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(HttpProtocol, Vec<ConfigWarning>), ConfigError> {
        let Some(json) = PROTOCOL.protocol_config(protocol) else {
            return Err(ConfigError::new(
                "protocol",
                format!("{:?} is not the http protocol", protocol.kind),
            ));
        };
        config::parse_protocol(&field_of(&protocol.config, json, "protocolConfig"), json)
    }

    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        _protocol: &HttpProtocol,
    ) -> Result<(HttpVisitor, Vec<ConfigWarning>), ConfigError> {
        let json = PROTOCOL.visitor_config(&property.visitor)?;
        config::parse_visitor(
            &field_of(&property.visitor, json, "visitorConfig"),
            json,
            property,
        )
    }

    fn describe_protocol(&self, p: &HttpProtocol) -> Vec<(String, String)> {
        let names: Vec<&str> = p.headers.0.iter().map(|(k, _)| k.as_str()).collect();
        vec![
            ("baseUrl".into(), p.base.to_string()),
            ("headers".into(), names.join(",")),
            ("timeoutMs".into(), p.timeout.as_millis().to_string()),
            ("maxBodyBytes".into(), p.max_body_bytes.to_string()),
        ]
    }

    fn describe_visitor(&self, v: &HttpVisitor) -> Vec<(String, String)> {
        vec![
            ("path".into(), v.path.to_string()),
            ("pointer".into(), v.pointer.as_str().to_owned()),
            ("method".into(), v.write.method.to_string()),
            ("writePath".into(), v.write.path.to_string()),
            ("body".into(), v.write.body.text()),
        ]
    }

    async fn connect(&self, spec: &DeviceSpec<Self>) -> Result<HttpDevice, DriverError> {
        let client = Client::new(Arc::new(spec.protocol.clone()))
            .map_err(|e| e.into_driver(&format!("connect {}", spec.protocol.base)))?;
        client
            .probe()
            .await
            .map_err(|e| e.into_driver(&format!("connect {}", spec.protocol.base)))?;
        Ok(HttpDevice { client })
    }
}

/// A connected device: its keep-alive client.
pub struct HttpDevice {
    client: Client,
}

impl HttpDevice {
    /// GETs `path` and parses the reply as JSON.
    async fn document(&self, path: &http::uri::PathAndQuery) -> Result<Json, DriverError> {
        let what = self.client.describe(&Method::GET, path);
        let reply = self
            .client
            .send(Method::GET, path, None)
            .await
            .map_err(|e| e.into_driver(&what))?;
        reply::check_status(reply.status, &reply.body, false, &what)?;
        reply::parse_document(&reply.body, &what)
    }
}

impl Device for HttpDevice {
    type Visitor = HttpVisitor;

    async fn read(&mut self, property: &PropertySpec<HttpVisitor>) -> Result<Value, DriverError> {
        let v = &property.visitor;
        let doc = self.document(&v.path).await?;
        let what = self.client.describe(&Method::GET, &v.path);
        reply::pick(&doc, &v.pointer, property.def.data_type, &what)
    }

    /// One GET per distinct path: properties that read the same document share it.
    async fn read_many(
        &mut self,
        properties: &[&PropertySpec<HttpVisitor>],
    ) -> Vec<Result<Value, DriverError>> {
        let mut out: Vec<Option<Result<Value, DriverError>>> = vec![None; properties.len()];
        for i in 0..properties.len() {
            if out[i].is_some() {
                continue;
            }
            let path = &properties[i].visitor.path;
            let what = self.client.describe(&Method::GET, path);
            let doc = self.document(path).await;
            let lost = doc.as_ref().err().filter(|e| e.is_link()).cloned();
            for (j, p) in properties.iter().enumerate().skip(i) {
                if out[j].is_some() || p.visitor.path != *path {
                    continue;
                }
                out[j] = Some(match &doc {
                    Ok(d) => reply::pick(d, &p.visitor.pointer, p.def.data_type, &what),
                    Err(e) => Err(e.clone()),
                });
            }
            if let Some(e) = lost {
                // The link is gone: the other documents would fail the same way.
                for slot in out.iter_mut().filter(|s| s.is_none()) {
                    *slot = Some(Err(e.clone()));
                }
                break;
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DriverError::Link("not read".into()))))
            .collect()
    }

    async fn write(
        &mut self,
        property: &PropertySpec<HttpVisitor>,
        value: &Value,
    ) -> Result<(), DriverError> {
        let w = &property.visitor.write;
        let what = self.client.describe(&w.method, &w.path);
        let body = w
            .body
            .render(value)
            .map_err(|e| DriverError::Invalid(format!("{what}: {e}")))?;
        let reply = self
            .client
            .send(w.method.clone(), &w.path, Some(body))
            .await
            .map_err(|e| e.into_driver(&what))?;
        reply::check_status(reply.status, &reply.body, true, &what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapper_sdk::profile::ResolveOptions;

    const ALPHA: &str = r#"{
      "deviceInstances": [{"id": "plug", "name": "plug", "protocol": "plug-http", "model": "plug-model",
        "twins": [{"propertyName": "on", "desired": {"value": "", "metadata": {"type": "boolean"}}, "reported": {"value": ""}}],
        "propertyVisitors": [
          {"name": "on", "propertyName": "on", "modelName": "plug-model", "protocol": "customized-protocol",
           "collectCycle": 1000000000,
           "visitorConfig": {"protocolName": "http", "configData": {"path": "/status", "pointer": "/on", "bdy": 1}}},
          {"name": "power", "propertyName": "power", "modelName": "plug-model", "protocol": "customized-protocol",
           "collectCycle": 1000000000,
           "visitorConfig": {"protocolName": "http", "configData": {"path": "status"}}}
        ]}],
      "deviceModels": [{"name": "plug-model", "properties": [
        {"name": "on", "dataType": "boolean", "accessMode": "ReadWrite"},
        {"name": "power", "dataType": "float", "accessMode": "ReadOnly"}]}],
      "protocols": [{"name": "plug-http", "protocol": "customized-protocol",
        "protocolConfig": {"protocolName": "http", "configData": {"baseUrl": "http://127.0.0.1:8080", "timeoutMs": 500}}}]
    }"#;

    #[test]
    fn a_v1alpha2_custom_protocol_profile_binds_and_names_fields_under_config_data() {
        let loaded = mapper_sdk::load(&HttpDriver, ALPHA, &ResolveOptions::default());
        assert_eq!(loaded.devices.len(), 1, "{:#?}", loaded.errors);
        let d = &loaded.devices[0];
        assert_eq!(d.protocol.base.to_string(), "http://127.0.0.1:8080");
        assert_eq!(d.properties.len(), 1, "the bad visitor is dropped");
        assert_eq!(loaded.errors.len(), 1, "{:#?}", loaded.errors);
        let e = &loaded.errors[0];
        assert!(
            e.contains("power") && e.contains("visitorConfig.configData.path"),
            "{e}"
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.field.as_deref() == Some("visitorConfig.configData.bdy")),
            "{:#?}",
            loaded.warnings
        );
    }

    #[test]
    fn other_protocols_are_not_ours() {
        let modbus = ALPHA.replace(
            "\"protocolName\": \"http\", \"configData\": {\"baseUrl\"",
            "\"protocolName\": \"opcua\", \"configData\": {\"baseUrl\"",
        );
        let loaded = mapper_sdk::load(&HttpDriver, &modbus, &ResolveOptions::default());
        assert!(
            loaded.devices.is_empty() && loaded.errors.is_empty(),
            "{:#?}",
            loaded.errors
        );
        assert_eq!(loaded.skipped.len(), 1);
    }
}
