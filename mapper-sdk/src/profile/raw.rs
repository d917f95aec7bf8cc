//! The device-profile JSON: v1alpha2 (KubeEdge 1.4-1.14) and the legacy v1alpha1 layout.
//!
//! Each instance, model and protocol entry is deserialized on its own, so a malformed one
//! only affects the devices that use it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use super::{
    CycleUnit, Draft, DraftModel, DraftModelProperty, DraftVisitor, Drafts, Format, Issue,
    ProtocolDef, ci,
};

/// The profile's lists, still as text: each is checked to be a list, then its entries
/// are deserialized one by one, so the whole profile never exists as a JSON tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawProfile<'a> {
    #[serde(borrow)]
    device_instances: Slot<'a>,
    #[serde(borrow)]
    device_models: Slot<'a>,
    #[serde(borrow)]
    protocols: Slot<'a>,
    /// v1alpha1 only: visitors at the top level, per model.
    #[serde(borrow)]
    property_visitors: Slot<'a>,
}

/// A key's value as text, `null` included (`None`: the key is absent).
#[derive(Debug, Default)]
struct Slot<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Slot<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| Self(Some(r)))
    }
}

/// What a JSON text is, for messages.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().bytes().next() {
        Some(b'{') => "an object",
        Some(b'[') => "a list",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// The entries of a top-level list; an error naming the list when it is not one.
fn entries<'a>(name: &str, slot: &Slot<'a>) -> Result<Vec<&'a RawValue>, String> {
    let Some(raw) = slot.0 else {
        return Ok(Vec::new());
    };
    if raw.get().trim_start().starts_with('[') {
        serde_json::from_str(raw.get()).map_err(|e| format!("\"{name}\" cannot be read: {e}"))
    } else {
        Err(format!(
            "\"{name}\" must be a list, got {}; write [] for an empty list or remove the key",
            json_kind(raw)
        ))
    }
}

/// Whether a key is present, whatever its value (`null` included).
#[derive(Debug, Default)]
pub(super) struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Self(true))
    }
}

/// The `protocol_config` key of a v1alpha1 protocol entry (exact spelling).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LegacyProbe {
    protocol_config: Present,
}

/// A string-valued key of an entry that failed to parse, to name it in the error. The
/// other values stay text, so one that cannot be parsed (`1e400`) does not hide the name.
fn hint(entry: &RawValue, keys: &[&str]) -> Option<String> {
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(entry.get()).ok()?;
    keys.iter().find_map(|k| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
            .filter(|s| !s.is_empty())
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawInstance {
    id: Option<String>,
    name: Option<String>,
    protocol: Option<String>,
    model: Option<String>,
    twins: Option<Vec<RawTwin>>,
    data: Option<RawData>,
    property_visitors: Option<Vec<RawVisitor>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RawTwin {
    pub property_name: String,
    pub desired: Option<RawTwinValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RawTwinValue {
    pub value: Option<Json>,
    pub metadata: Option<Map<String, Json>>,
}

impl RawTwinValue {
    /// The desired value and its declared type.
    pub fn split(&self) -> (Option<String>, Option<String>) {
        let value = self.value.as_ref().and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Null => None,
            other => Some(other.to_string()),
        });
        let ty = self
            .metadata
            .as_ref()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("type")))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned);
        (value, ty)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RawData {
    pub data_properties: Vec<RawDataProperty>,
    pub data_topic: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RawDataProperty {
    pub property_name: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawVisitor {
    name: Option<String>,
    property_name: Option<String>,
    model_name: Option<String>,
    report_cycle: Option<Json>,
    collect_cycle: Option<Json>,
    visitor_config: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawModel<'a> {
    name: String,
    #[serde(borrow)]
    properties: Vec<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawModelProperty {
    name: String,
    data_type: Option<String>,
    access_mode: Option<String>,
    minimum: Option<Json>,
    maximum: Option<Json>,
    unit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawProtocol {
    name: String,
    protocol: Option<String>,
    protocol_config: Option<Json>,
    protocol_common_config: Option<Json>,
}

impl Draft {
    /// Records the twins (desired value and stored type) and the data section, which the
    /// ConfigMap profile and v1alpha2 resources carry in the same shapes.
    pub(super) fn add_twins_and_data(&mut self, twins: Vec<RawTwin>, data: Option<RawData>) {
        for t in twins {
            let split = t
                .desired
                .as_ref()
                .map(RawTwinValue::split)
                .unwrap_or_default();
            self.twins.insert(t.property_name, split);
        }
        if let Some(data) = data {
            self.data_properties = data
                .data_properties
                .into_iter()
                .map(|p| p.property_name)
                .collect();
            self.data_topic = data.data_topic.filter(|t| !t.is_empty());
        }
    }
}

/// A top-level v1alpha1 visitor, parsed once and shared by the devices of its model.
struct ModelVisitor {
    property: String,
    collect: Option<Json>,
    report: Option<Json>,
    config: Arc<Json>,
}

/// Adds a device-profile JSON document to the drafts and returns its format. Fails, with
/// an error naming the list, when a top-level list is not a list: such a profile is
/// broken as a whole, and reading it as empty would stop every device.
pub(super) fn add_profile<'a>(doc: &'a RawValue, drafts: &mut Drafts) -> Result<Format, String> {
    let profile: RawProfile =
        ci::from_raw(doc).map_err(|e| super::problems::clip(format!("invalid profile: {e}")))?;
    let mut wrong = Vec::new();
    let mut list = |r: Result<Vec<&'a RawValue>, String>| {
        r.unwrap_or_else(|e| {
            wrong.push(e);
            Vec::new()
        })
    };
    let device_instances = list(entries("deviceInstances", &profile.device_instances));
    let device_models = list(entries("deviceModels", &profile.device_models));
    let protocol_entries = list(entries("protocols", &profile.protocols));
    let property_visitors = list(entries("propertyVisitors", &profile.property_visitors));
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let legacy = !property_visitors.is_empty()
        || protocol_entries.iter().any(|p| {
            serde_json::from_str::<LegacyProbe>(p.get()).is_ok_and(|l| l.protocol_config.0)
        });
    let format = if legacy {
        Format::V1Alpha1Profile
    } else {
        Format::V1Alpha2Profile
    };

    let mut protocols: BTreeMap<String, Result<ProtocolDef, ProtocolProblem>> = BTreeMap::new();
    for (i, p) in protocol_entries.into_iter().enumerate() {
        match ci::from_raw::<RawProtocol>(p) {
            Ok(p) => {
                let def = match p.protocol.filter(|k| !k.is_empty()) {
                    Some(kind) => Ok(ProtocolDef {
                        kind,
                        config: Arc::new(p.protocol_config.unwrap_or(Json::Null)),
                        common: Arc::new(p.protocol_common_config.unwrap_or(Json::Null)),
                    }),
                    None => Err(ProtocolProblem {
                        field: "protocol".into(),
                        message: format!(
                            "protocol entry {:?} has no \"protocol\" kind",
                            super::problems::excerpt(&p.name)
                        ),
                    }),
                };
                protocols.insert(p.name, def);
            }
            Err(e) => {
                let name = hint(p, &["name"]).unwrap_or_else(|| format!("#{i}"));
                let err = match super::problems::describe(p, &e) {
                    (Some(field), msg) => ProtocolProblem {
                        field,
                        message: format!(
                            "protocol entry {:?}: {msg}",
                            super::problems::excerpt(&name)
                        ),
                    },
                    (None, msg) => ProtocolProblem {
                        field: "protocol".into(),
                        message: format!(
                            "protocol entry {:?} is malformed: {msg}",
                            super::problems::excerpt(&name)
                        ),
                    },
                };
                protocols.insert(name, Err(err));
            }
        }
    }

    for m in device_models {
        match ci::from_raw::<RawModel>(m) {
            Ok(model) => {
                let mut props = Vec::new();
                for p in model.properties {
                    match ci::from_raw::<RawModelProperty>(p) {
                        Ok(p) => props.push(DraftModelProperty {
                            name: p.name,
                            data_type: p.data_type,
                            access: p.access_mode,
                            minimum: p.minimum,
                            maximum: p.maximum,
                            unit: p.unit,
                            visitor: None,
                        }),
                        Err(e) => {
                            let name = hint(p, &["name"]).unwrap_or_default();
                            let problem = match super::problems::describe(p, &e) {
                                (Some(field), msg) => format!(
                                    "property {:?}: {field}: {msg}",
                                    super::problems::excerpt(&name)
                                ),
                                (None, msg) => format!(
                                    "property {:?} is malformed: {msg}",
                                    super::problems::excerpt(&name)
                                ),
                            };
                            drafts
                                .model_issues
                                .entry(model.name.clone())
                                .or_default()
                                .push(problem);
                        }
                    }
                }
                drafts
                    .models
                    .entry(model.name)
                    .or_default()
                    .push(DraftModel::new(None, props));
            }
            Err(e) => {
                let problem = match super::problems::describe(m, &e) {
                    (Some(field), msg) => format!("{field}: {msg}"),
                    (None, msg) => format!("the model is malformed: {msg}"),
                };
                drafts
                    .model_issues
                    .entry(hint(m, &["name"]).unwrap_or_default())
                    .or_default()
                    .push(problem);
            }
        }
    }

    // v1alpha1: visitors per model at the top level.
    let mut model_visitors: BTreeMap<String, Vec<ModelVisitor>> = BTreeMap::new();
    for v in property_visitors {
        if let Ok(v) = ci::from_raw::<RawVisitor>(v) {
            model_visitors
                .entry(v.model_name.clone().unwrap_or_default())
                .or_default()
                .push(ModelVisitor {
                    property: v.property_name.or(v.name).unwrap_or_default(),
                    collect: v.collect_cycle,
                    report: v.report_cycle,
                    config: Arc::new(v.visitor_config.unwrap_or(Json::Null)),
                });
        }
    }

    for (i, entry) in device_instances.into_iter().enumerate() {
        let inst: RawInstance = match ci::from_raw(entry) {
            Ok(i) => i,
            Err(e) => {
                drafts.devices.push(malformed_instance(i, entry, &e));
                continue;
            }
        };
        let mut d = Draft {
            id: inst.id.unwrap_or_default(),
            name: inst.name.unwrap_or_default(),
            model: inst.model.unwrap_or_default(),
            unit: Some(CycleUnit::Nanos),
            ..Draft::default()
        };
        let label = if d.id.is_empty() {
            d.name.clone()
        } else {
            d.id.clone()
        };
        d.protocol = Some(match inst.protocol.as_deref() {
            None | Some("") => Err(Issue::device(
                &label,
                "protocol",
                "the device names no protocol entry",
            )),
            Some(p) => match protocols.get(p) {
                Some(Ok(def)) => Ok(def.clone()),
                Some(Err(e)) => Err(Issue::device(&label, &e.field, e.message.clone())),
                None => Err(Issue::device(
                    &label,
                    "protocol",
                    format!(
                        "protocol entry {:?} is not in the profile's protocols",
                        super::problems::excerpt(p)
                    ),
                )),
            },
        });
        d.add_twins_and_data(inst.twins.unwrap_or_default(), inst.data);
        match inst.property_visitors {
            Some(v) if !v.is_empty() => {
                for v in v {
                    d.visitors.push(DraftVisitor {
                        property: v.property_name.or(v.name).unwrap_or_default(),
                        collect: v.collect_cycle,
                        report: v.report_cycle,
                        config: Arc::new(v.visitor_config.unwrap_or(Json::Null)),
                        desired: None,
                    });
                }
            }
            _ => {
                for v in model_visitors.get(&d.model).into_iter().flatten() {
                    d.visitors.push(DraftVisitor {
                        property: v.property.clone(),
                        collect: v.collect.clone(),
                        report: v.report.clone(),
                        config: Arc::clone(&v.config),
                        desired: None,
                    });
                }
            }
        }
        drafts.devices.push(d);
    }
    Ok(format)
}

/// Why a protocol entry cannot be used: reported on each device that names it.
#[derive(Debug)]
struct ProtocolProblem {
    /// The field the devices' error names (`protocol`, or the path of a bad value).
    field: String,
    message: String,
}

/// The draft of a device instance that cannot be deserialized: it fails with an error
/// naming the entry (by its id when one can be read) and the field.
fn malformed_instance(index: usize, entry: &RawValue, err: &serde_json::Error) -> Draft {
    let where_ = format!("deviceInstances[{index}]");
    if !entry.get().trim_start().starts_with('{') {
        return Draft {
            protocol: Some(Err(Issue::general(
                &where_,
                format!(
                    "a device instance must be a JSON object, got {}",
                    json_kind(entry)
                ),
            ))),
            ..Draft::default()
        };
    }
    let id = hint(entry, &["id", "name"]).unwrap_or_default();
    let (field, msg) = match super::problems::describe(entry, err) {
        (Some(path), msg) => (path, msg),
        (None, msg) => (
            "deviceInstances".to_owned(),
            format!("the device instance is malformed: {msg}"),
        ),
    };
    let issue = if id.is_empty() {
        Issue::general(&field, format!("{where_}: {msg}"))
    } else {
        Issue::device(&id, &field, msg)
    };
    Draft {
        id: id.clone(),
        name: id,
        protocol: Some(Err(issue)),
        ..Draft::default()
    }
}
