//! The devices and models edgecore has cached: v1beta1 `Device` and `DeviceModel`
//! resources as users write them (YAML or JSON, several documents per file, or a `List`).
//!
//! Resources are kept as JSON trees, not typed structs: edgecore's own conversion is a
//! JSON round trip with case-insensitive field names
//! (docs/kubeedge-dmi.md#rule-edgecore-converts-crds-by-a-json-round-trip), and [`crate::convert`]
//! walks the tree the same way, so a fixture can use any spelling Go would accept.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

/// Why a fixture file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Not YAML (or JSON).
    #[error("fixtures are not valid YAML: {0}")]
    Yaml(String),
    /// A document that is not a Device or DeviceModel of `devices.kubeedge.io/v1beta1`.
    #[error(
        "document {index} is {kind:?} ({api_version:?}); expected kind Device or DeviceModel with apiVersion devices.kubeedge.io/v1beta1"
    )]
    NotAResource {
        /// 0-based document index.
        index: usize,
        /// Its `kind`.
        kind: String,
        /// Its `apiVersion`.
        api_version: String,
    },
    /// A resource without `metadata.name`.
    #[error("document {index} ({kind}) has no metadata.name; give every resource a name")]
    NoName {
        /// 0-based document index.
        index: usize,
        /// Its `kind`.
        kind: String,
    },
    /// Reading the file failed.
    #[error("cannot read fixtures {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A resource's identity. Namespace `default` when the resource names none (as kubectl).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl Key {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name` (or a bare `name`, namespace `default`).
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((ns, name)) => Self::new(ns, name),
            None => Self::new("default", text),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A `Device` resource.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdDevice {
    /// Namespace and name.
    pub key: Key,
    /// The whole resource (`metadata`, `spec`, `status`).
    pub doc: Json,
}

/// A `DeviceModel` resource.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdModel {
    /// Namespace and name.
    pub key: Key,
    /// The whole resource.
    pub doc: Json,
}

/// Looks a field up the way Go's encoding/json does: an exact match first, then any
/// key equal ignoring ASCII case.
pub fn field<'a>(obj: &'a Json, name: &str) -> Option<&'a Json> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A string field, or `""` when absent or not a string.
pub fn str_field<'a>(obj: &'a Json, name: &str) -> &'a str {
    field(obj, name).and_then(Json::as_str).unwrap_or("")
}

impl CrdDevice {
    /// `spec.protocol.protocolName`: the protocol whose mapper owns the device.
    pub fn protocol_name(&self) -> &str {
        field(&self.doc, "spec")
            .and_then(|s| field(s, "protocol"))
            .map_or("", |p| str_field(p, "protocolName"))
    }

    /// `spec.deviceModelRef.name`.
    pub fn model_name(&self) -> &str {
        field(&self.doc, "spec")
            .and_then(|s| field(s, "deviceModelRef"))
            .map_or("", |r| str_field(r, "name"))
    }

    /// The model's key (models live in the device's namespace).
    pub fn model_key(&self) -> Key {
        Key::new(self.key.namespace.clone(), self.model_name())
    }

    /// The property names of `spec.properties`.
    pub fn property_names(&self) -> Vec<String> {
        field(&self.doc, "spec")
            .and_then(|s| field(s, "properties"))
            .and_then(Json::as_array)
            .map(|ps| ps.iter().map(|p| str_field(p, "name").to_owned()).collect())
            .unwrap_or_default()
    }
}

impl CrdModel {
    /// `spec.protocol`: the protocol model calls are routed to.
    pub fn protocol(&self) -> &str {
        field(&self.doc, "spec").map_or("", |s| str_field(s, "protocol"))
    }
}

/// Everything edgecore's cache holds: devices and models by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fixtures {
    /// Devices by key, in key order.
    pub devices: BTreeMap<Key, CrdDevice>,
    /// Models by key.
    pub models: BTreeMap<Key, CrdModel>,
}

fn key_of(doc: &Json, index: usize, kind: &str) -> Result<Key, FixtureError> {
    let meta = field(doc, "metadata").unwrap_or(&Json::Null);
    let name = str_field(meta, "name");
    if name.is_empty() {
        return Err(FixtureError::NoName {
            index,
            kind: kind.to_owned(),
        });
    }
    let ns = match str_field(meta, "namespace") {
        "" => "default",
        ns => ns,
    };
    Ok(Key::new(ns, name))
}

impl Fixtures {
    /// Parses YAML or JSON: one or several documents, each a Device, a DeviceModel or
    /// a `List` of them. Empty documents are skipped.
    pub fn from_yaml(text: &str) -> Result<Self, FixtureError> {
        let docs: Vec<Json> =
            serde_saphyr::from_multiple(text).map_err(|e| FixtureError::Yaml(e.to_string()))?;
        let mut out = Self::default();
        let mut index = 0;
        for doc in docs {
            out.add_document(doc, &mut index)?;
        }
        Ok(out)
    }

    /// Reads [`Fixtures::from_yaml`] from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    fn add_document(&mut self, doc: Json, index: &mut usize) -> Result<(), FixtureError> {
        let i = *index;
        *index += 1;
        if doc.is_null() || doc.as_object().is_some_and(Map::is_empty) {
            return Ok(());
        }
        let kind = str_field(&doc, "kind").to_owned();
        let api_version = str_field(&doc, "apiVersion").to_owned();
        if kind.ends_with("List") {
            if let Some(items) = field(&doc, "items").and_then(Json::as_array) {
                for item in items.clone() {
                    self.add_document(item, index)?;
                }
            }
            return Ok(());
        }
        let v1beta1 = api_version == "devices.kubeedge.io/v1beta1";
        match kind.as_str() {
            "Device" if v1beta1 => {
                let key = key_of(&doc, i, &kind)?;
                self.devices.insert(key.clone(), CrdDevice { key, doc });
            }
            "DeviceModel" if v1beta1 => {
                let key = key_of(&doc, i, &kind)?;
                self.models.insert(key.clone(), CrdModel { key, doc });
            }
            _ => {
                return Err(FixtureError::NotAResource {
                    index: i,
                    kind,
                    api_version,
                });
            }
        }
        Ok(())
    }

    /// Adds every resource of `other`, replacing those with the same key.
    pub fn merge(&mut self, other: Fixtures) {
        self.devices.extend(other.devices);
        self.models.extend(other.models);
    }

    /// Devices whose `spec.protocol.protocolName` equals `protocol`, in key order.
    pub fn devices_of(&self, protocol: &str) -> impl Iterator<Item = &CrdDevice> {
        self.devices
            .values()
            .filter(move |d| d.protocol_name() == protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: ns}
spec: {protocol: modbus, properties: [{name: t, type: INT, accessMode: ReadOnly}]}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: modbus}
  properties: [{name: t}]
---
";

    #[test]
    fn multi_document_yaml_parses_with_default_namespace() {
        let f = Fixtures::from_yaml(TWO).unwrap();
        assert_eq!(f.models.len(), 1);
        let d = &f.devices[&Key::new("default", "d")];
        assert_eq!(d.protocol_name(), "modbus");
        assert_eq!(d.model_key(), Key::new("default", "m"));
        assert_eq!(d.property_names(), vec!["t".to_owned()]);
        assert_eq!(f.models[&Key::new("ns", "m")].protocol(), "modbus");
        assert_eq!(f.devices_of("modbus").count(), 1);
        assert_eq!(f.devices_of("bluetooth").count(), 0);
    }

    #[test]
    fn lists_and_bad_documents() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"Device","metadata":{"name":"x","namespace":"a"},"spec":{}}]}"#;
        assert_eq!(Fixtures::from_yaml(list).unwrap().devices.len(), 1);
        let err = Fixtures::from_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
            .unwrap_err();
        assert!(err.to_string().contains("ConfigMap"), "{err}");
        let err = Fixtures::from_yaml(
            "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {}\n",
        )
        .unwrap_err();
        assert!(matches!(err, FixtureError::NoName { .. }));
        assert!(Fixtures::from_yaml("a: [").is_err());
    }

    #[test]
    fn fields_match_case_insensitively_like_go() {
        let doc: Json = serde_json::json!({"Spec": {"PROTOCOL": {"protocolname": "x"}}});
        let d = CrdDevice {
            key: Key::parse("n/d"),
            doc,
        };
        assert_eq!(d.protocol_name(), "x");
        assert_eq!(Key::parse("d"), Key::new("default", "d"));
    }
}
