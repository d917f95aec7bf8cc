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
    ProtocolDef, ci, short,
};

/// The profile's lists, each entry still as text: entries are deserialized one by one,
/// so the whole profile never exists as a JSON tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawProfile<'a> {
    #[serde(borrow)]
    device_instances: Vec<&'a RawValue>,
    #[serde(borrow)]
    device_models: Vec<&'a RawValue>,
    #[serde(borrow)]
    protocols: Vec<&'a RawValue>,
    /// v1alpha1 only: visitors at the top level, per model.
    #[serde(borrow)]
    property_visitors: Vec<&'a RawValue>,
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

/// A string-valued key of an entry that failed to parse, to name it in the error.
fn hint(entry: &RawValue, keys: &[&str]) -> Option<String> {
    let map: Map<String, Json> = serde_json::from_str(entry.get()).ok()?;
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Json::as_str).map(str::to_owned))
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

/// Adds a device-profile JSON document to the drafts and returns its format.
pub(super) fn add_profile(doc: &RawValue, drafts: &mut Drafts) -> Format {
    let profile: RawProfile = ci::from_raw(doc).unwrap_or_default();
    let legacy = !profile.property_visitors.is_empty()
        || profile.protocols.iter().any(|p| {
            serde_json::from_str::<LegacyProbe>(p.get()).is_ok_and(|l| l.protocol_config.0)
        });
    let format = if legacy {
        Format::V1Alpha1Profile
    } else {
        Format::V1Alpha2Profile
    };

    let mut protocols: BTreeMap<String, Result<ProtocolDef, String>> = BTreeMap::new();
    for (i, p) in profile.protocols.into_iter().enumerate() {
        match ci::from_raw::<RawProtocol>(p) {
            Ok(p) => {
                let def = match p.protocol.filter(|k| !k.is_empty()) {
                    Some(kind) => Ok(ProtocolDef {
                        kind,
                        config: Arc::new(p.protocol_config.unwrap_or(Json::Null)),
                        common: Arc::new(p.protocol_common_config.unwrap_or(Json::Null)),
                    }),
                    None => Err(format!(
                        "protocol entry {:?} has no \"protocol\" kind",
                        p.name
                    )),
                };
                protocols.insert(p.name, def);
            }
            Err(e) => {
                let name = hint(p, &["name"]).unwrap_or_else(|| format!("#{i}"));
                protocols.insert(
                    name.clone(),
                    Err(format!("protocol entry {name:?} is malformed: {e}")),
                );
            }
        }
    }

    for m in profile.device_models {
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
                        Err(e) => drafts
                            .model_issues
                            .entry(model.name.clone())
                            .or_default()
                            .push(format!(
                                "property {} is malformed: {e}",
                                short(&serde_json::from_str(p.get()).unwrap_or(Json::Null))
                            )),
                    }
                }
                drafts
                    .models
                    .entry(model.name)
                    .or_default()
                    .push(DraftModel {
                        namespace: None,
                        properties: props,
                    });
            }
            Err(e) => drafts
                .model_issues
                .entry(hint(m, &["name"]).unwrap_or_default())
                .or_default()
                .push(format!("the model is malformed: {e}")),
        }
    }

    // v1alpha1: visitors per model at the top level.
    let mut model_visitors: BTreeMap<String, Vec<RawVisitor>> = BTreeMap::new();
    for v in profile.property_visitors {
        if let Ok(v) = ci::from_raw::<RawVisitor>(v) {
            model_visitors
                .entry(v.model_name.clone().unwrap_or_default())
                .or_default()
                .push(v);
        }
    }

    for entry in profile.device_instances {
        let inst: RawInstance = match ci::from_raw(entry) {
            Ok(i) => i,
            Err(e) => {
                let id_hint = hint(entry, &["id", "name"]).unwrap_or_default();
                let mut d = Draft {
                    id: id_hint.clone(),
                    name: id_hint.clone(),
                    ..Draft::default()
                };
                d.protocol = Some(Err(Issue::device(
                    if id_hint.is_empty() { "?" } else { &id_hint },
                    "deviceInstances",
                    format!("the device instance is malformed: {e}"),
                )));
                drafts.devices.push(d);
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
                Some(Err(e)) => Err(Issue::device(&label, "protocol", e.clone())),
                None => Err(Issue::device(
                    &label,
                    "protocol",
                    format!("protocol entry {p:?} is not in the profile's protocols"),
                )),
            },
        });
        d.add_twins_and_data(inst.twins.unwrap_or_default(), inst.data);
        let visitors = match inst.property_visitors {
            Some(v) if !v.is_empty() => v,
            _ => model_visitors.get(&d.model).cloned().unwrap_or_default(),
        };
        for v in visitors {
            let property = v.property_name.or(v.name).unwrap_or_default();
            d.visitors.push(DraftVisitor {
                property,
                collect: v.collect_cycle,
                report: v.report_cycle,
                config: v.visitor_config.unwrap_or(Json::Null),
                desired: None,
            });
        }
        drafts.devices.push(d);
    }
    format
}
