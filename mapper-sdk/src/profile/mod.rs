//! Device profiles: every format KubeEdge has used to tell a mapper which devices it owns,
//! parsed tolerantly and resolved by a pure function into one protocol-agnostic model.
//!
//! Accepted inputs (detected from the content, see [`Format`]):
//! - the v1alpha2 device-profile JSON of KubeEdge 1.4-1.14 (`deviceProfile.json`);
//! - the legacy v1alpha1 layout of KubeEdge 1.3 and the JavaScript mapper;
//! - `devices.kubeedge.io/v1alpha2` and `v1beta1` `Device` and `DeviceModel` resources, as
//!   YAML (several documents) or JSON (an object, an array or a `List`);
//! - a `ConfigMap` resource whose `data` holds `deviceProfile.json`.
//!
//! [`resolve`] never fails as a whole unless the text is unreadable: each device either
//! resolves or yields errors that name the device, the property and the field. Protocol
//! configs and visitors stay JSON here; a driver turns them into its typed configs in
//! [`crate::driver::bind`].

pub mod ci;
mod crd;
pub mod problems;
mod raw;
pub mod unknown;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use thiserror::Error;

use crate::model::{AccessMode, DataType, DeviceId, PropertyName, check_stored_type};

/// How the device part of MQTT topics is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicScheme {
    /// `{id}`: the profile's device id (KubeEdge up to 1.15).
    #[default]
    Id,
    /// `{namespace}/{name}` (KubeEdge 1.17 and later).
    NamespaceName,
    /// `{namespace}/{name}` when the resource has a namespace, else `{name}` (DMI: a
    /// KubeEdge 1.15 edgecore sends no namespaces and keys devices by name).
    NamespaceNameIfSet,
}

/// Options of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// How device ids are formed.
    pub topic_scheme: TopicScheme,
    /// The namespace assumed for devices of a ConfigMap profile (which carries none).
    pub namespace: String,
    /// The smallest collect or report cycle; smaller values are raised to it with a warning.
    pub min_cycle: Duration,
    /// The collect cycle used when a visitor gives none (or `0`).
    pub default_cycle: Duration,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            topic_scheme: TopicScheme::Id,
            namespace: "default".into(),
            min_cycle: MIN_CYCLE,
            default_cycle: Duration::from_secs(1),
        }
    }
}

/// The documented minimum collect/report cycle: 10 ms.
pub const MIN_CYCLE: Duration = Duration::from_millis(10);

/// Which format a profile was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The v1alpha2 device-profile JSON (cycles in nanoseconds).
    V1Alpha2Profile,
    /// The legacy v1alpha1 device-profile JSON.
    V1Alpha1Profile,
    /// `devices.kubeedge.io/v1alpha2` resources (cycles in nanoseconds).
    V1Alpha2Resources,
    /// `devices.kubeedge.io/v1beta1` resources (cycles in milliseconds).
    V1Beta1Resources,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1Alpha2Profile => "v1alpha2 device profile",
            Self::V1Alpha1Profile => "v1alpha1 device profile",
            Self::V1Alpha2Resources => "v1alpha2 Device/DeviceModel resources",
            Self::V1Beta1Resources => "v1beta1 Device/DeviceModel resources",
        })
    }
}

/// A resolved device, protocol-agnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDef {
    /// The id used in topics (see [`TopicScheme`]).
    pub id: DeviceId,
    /// The device name.
    pub name: String,
    /// The namespace (from the resource, or [`ResolveOptions::namespace`]).
    pub namespace: String,
    /// The device model name.
    pub model: String,
    /// The protocol and its raw configuration.
    pub protocol: ProtocolDef,
    /// The properties that have a visitor, in profile order (shared with the bound
    /// [`crate::driver::PropertySpec`]s, so a running device keeps one copy).
    pub properties: Vec<Arc<PropertyDef>>,
    /// Where data properties are published (`+` stands for the device id).
    pub data_topic: Option<String>,
}

impl DeviceDef {
    /// Whether `other` differs from this definition only in what the profile says about
    /// desired values (`desired`, `stored_type`): such a change needs no restart, since
    /// deltas carry desired values anyway.
    pub fn same_but_desired(&self, other: &Self) -> bool {
        let Self {
            id,
            name,
            namespace,
            model,
            protocol,
            properties,
            data_topic,
        } = self;
        *id == other.id
            && *name == other.name
            && *namespace == other.namespace
            && *model == other.model
            && *protocol == other.protocol
            && *data_topic == other.data_topic
            && properties.len() == other.properties.len()
            && properties
                .iter()
                .zip(&other.properties)
                .all(|(a, b)| a.same_but_desired(b))
    }
}

/// A device's protocol, still as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolDef {
    /// The protocol kind, e.g. `modbus`, `bluetooth`, `modbus-tcp` (v1alpha1),
    /// `customized-protocol`, or a v1beta1 `protocolName`.
    pub kind: String,
    /// `protocolConfig` (v1alpha2), `protocol_config` (v1alpha1) or `configData` (v1beta1).
    /// Shared: a protocol is often used by many devices, and every bound device keeps it.
    pub config: Arc<Json>,
    /// `protocolCommonConfig` (v1alpha2) or `null`.
    pub common: Arc<Json>,
}

/// A resolved property: model facts plus the device's visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDef {
    /// The property (twin) name.
    pub name: PropertyName,
    /// The model's data type.
    pub data_type: DataType,
    /// Whether deltas may write it.
    pub access: AccessMode,
    /// The model's minimum, if it sets one.
    pub minimum: Option<f64>,
    /// The model's maximum, if it sets one.
    pub maximum: Option<f64>,
    /// The model's unit.
    pub unit: Option<String>,
    /// How often to read it; `None` means never poll (a negative cycle).
    pub collect_cycle: Option<Duration>,
    /// The longest silence between two reports of an unchanged value; `None`: report on
    /// change only. Defaults to the collect cycle.
    pub report_cycle: Option<Duration>,
    /// The protocol-specific visitor config, still JSON. Shared, so the copies of a
    /// definition the runtime keeps cost no more than one.
    pub visitor: Arc<Json>,
    /// Reported on `twin/update`.
    pub twin: bool,
    /// Reported on the data topic.
    pub data: bool,
    /// The desired value named in the profile, if any (informational for ConfigMap
    /// profiles: deltas and `twin/get` win, see
    /// docs/kubeedge-contract.md#quirk-the-configmap-lags-behind-mqtt).
    pub desired: Option<String>,
    /// The twin type edgecore stores (`desired.metadata.type`), used to check reports.
    pub stored_type: Option<String>,
}

impl PropertyDef {
    /// Whether `other` differs only in `desired` and `stored_type`.
    pub fn same_but_desired(&self, other: &Self) -> bool {
        // Destructured, so that a new field cannot be forgotten here.
        let Self {
            name,
            data_type,
            access,
            minimum,
            maximum,
            unit,
            collect_cycle,
            report_cycle,
            visitor,
            twin,
            data,
            desired: _,
            stored_type: _,
        } = self;
        *name == other.name
            && *data_type == other.data_type
            && *access == other.access
            && *minimum == other.minimum
            && *maximum == other.maximum
            && *unit == other.unit
            && *collect_cycle == other.collect_cycle
            && *report_cycle == other.report_cycle
            && *visitor == other.visitor
            && *twin == other.twin
            && *data == other.data
    }

    /// Whether `value` lies within the model's minimum and maximum.
    pub fn in_range(&self, value: f64) -> bool {
        self.minimum.is_none_or(|m| value >= m) && self.maximum.is_none_or(|m| value <= m)
    }
}

/// Where in a profile a problem sits, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The device id or name, when known.
    pub device: Option<String>,
    /// The property, when the problem is about one.
    pub property: Option<String>,
    /// The field, e.g. `collectCycle`, `protocol`, `model`.
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Other devices with exactly this problem (e.g. all the devices of a broken model),
    /// so that one problem is one message; shortened when shown.
    pub others: Vec<String>,
}

impl Issue {
    fn device(device: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            device: Some(device.to_owned()),
            property: None,
            field: Some(field.to_owned()),
            message: message.into(),
            others: Vec::new(),
        }
    }

    /// A problem of the profile as a whole or of a model, not of one device.
    fn general(field: &str, message: impl Into<String>) -> Self {
        Self {
            device: None,
            property: None,
            field: Some(field.to_owned()),
            message: message.into(),
            others: Vec::new(),
        }
    }

    fn property(device: &str, property: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            device: Some(device.to_owned()),
            property: Some(property.to_owned()),
            field: Some(field.to_owned()),
            message: message.into(),
            others: Vec::new(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(d) = &self.device {
            parts.push(problems::devices_label(d, &self.others));
        }
        if let Some(p) = &self.property {
            parts.push(format!("property {:?}", problems::excerpt(p)));
        }
        if let Some(x) = &self.field {
            parts.push(format!("field {:?}", problems::excerpt(x)));
        }
        if parts.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

/// A profile problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProfileError {
    /// The text is not a profile at all; no device can be read from it.
    #[error("the profile cannot be read: {0}")]
    Unreadable(String),
    /// One device (or one property of it) is invalid; the others are unaffected.
    #[error("{0}")]
    Invalid(Issue),
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    /// The detected format (`None` when unreadable).
    pub format: Option<Format>,
    /// Devices that resolved (possibly without some invalid properties).
    pub devices: Vec<DeviceDef>,
    /// Per-device and per-property errors.
    pub errors: Vec<ProfileError>,
    /// Things that work but are probably not what the author meant.
    pub warnings: Vec<Issue>,
    /// Devices the profile names whose definition has errors (none of them is in
    /// `devices`): a running device of these ids keeps its previous definition rather
    /// than being stopped.
    pub failed: Vec<DeviceId>,
}

/// Parses and resolves a profile in any supported format. Pure.
pub fn resolve(text: &str, opts: &ResolveOptions) -> Resolved {
    let docs = match parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            return Resolved {
                errors: vec![ProfileError::Unreadable(e)],
                ..Resolved::default()
            };
        }
    };
    let mut out = Resolved::default();
    let mut drafts = Drafts::default();
    for doc in docs {
        if let Err(e) = classify(doc, &mut drafts, &mut out) {
            out.errors.push(ProfileError::Unreadable(e));
        }
    }
    finish(drafts, opts, &mut out);
    out.errors = problems::group_errors(std::mem::take(&mut out.errors));
    out.warnings = problems::group_issues(std::mem::take(&mut out.warnings));
    out.devices.shrink_to_fit();
    out
}

/// One document of a profile text.
enum Doc<'a> {
    /// JSON, still as text (see [`ci::from_raw`]).
    Text(&'a serde_json::value::RawValue),
    /// A parsed tree (YAML documents, and items of resource lists).
    Tree(Json),
}

/// Splits the text into documents: one JSON document (a JSON array: its items), or YAML
/// documents.
fn parse_documents(text: &str) -> Result<Vec<Doc<'_>>, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err("the profile is empty".into());
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Some(at) = problems::too_deep(trimmed) {
            return Err(format!(
                "the profile nests lists and objects more than {} levels deep (at byte {at}); a device profile needs about ten",
                problems::MAX_DEPTH
            ));
        }
        let invalid = |e: serde_json::Error| format!("invalid JSON: {e}");
        if trimmed.starts_with('[') {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(trimmed).map_err(invalid)?;
            return Ok(items.into_iter().map(Doc::Text).collect());
        }
        return Ok(vec![Doc::Text(
            serde_json::from_str(trimmed).map_err(invalid)?,
        )]);
    }
    let docs: Vec<Json> = serde_saphyr::from_multiple(trimmed).map_err(|e| {
        let e = e.to_string();
        // The parser's own depth budget (64 levels).
        if e.contains("budget breached: Depth") {
            format!(
                "the profile nests lists and objects more than {} levels deep; a device profile needs about ten",
                problems::MAX_DEPTH
            )
        } else {
            problems::clip(format!("invalid YAML: {e}"))
        }
    })?;
    if docs.iter().any(problems::tree_too_deep) {
        return Err(format!(
            "the profile nests lists and objects more than {} levels deep; a device profile needs about ten",
            problems::MAX_DEPTH
        ));
    }
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null())
        .map(Doc::Tree)
        .collect())
}

/// What decides how a JSON document is read.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Head {
    kind: Option<Json>,
    device_instances: raw::Present,
    device_models: raw::Present,
    protocols: raw::Present,
}

/// Sorts one document into the drafts.
fn classify(doc: Doc<'_>, drafts: &mut Drafts, out: &mut Resolved) -> Result<(), String> {
    let doc = match doc {
        Doc::Text(text) => {
            // A device profile (no `kind`) is read entry by entry from the text; the
            // rest (resources, lists, ConfigMaps) is small enough to parse as a tree.
            let head = ci::from_raw::<Head>(text).ok();
            let profile = head.is_some_and(|h| {
                h.kind.as_ref().and_then(Json::as_str).is_none()
                    && (h.device_instances.0 || h.device_models.0 || h.protocols.0)
            });
            if profile {
                let format = raw::add_profile(text, drafts)?;
                note_format(out, format);
                return Ok(());
            }
            serde_json::from_str(text.get()).map_err(|e| match problems::describe(text, &e) {
                (Some(path), msg) => format!("invalid JSON: {path}: {msg}"),
                (None, msg) => format!("invalid JSON: {msg}"),
            })?
        }
        Doc::Tree(doc) => doc,
    };
    let Json::Object(mut map) = doc else {
        return Err("expected a JSON or YAML object".into());
    };
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let kind = get("kind").and_then(Json::as_str).map(str::to_owned);
    let api = get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    let is_profile = get("deviceInstances").is_some()
        || get("deviceModels").is_some()
        || get("protocols").is_some();
    if let Some(kind) = kind.as_deref() {
        let api = api.as_str();
        return match kind {
            "List" | "DeviceList" | "DeviceModelList" | "ConfigMapList" => {
                // Taken, not cloned: a list is most of its document.
                let key = map
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case("items"))
                    .cloned()
                    .unwrap_or_default();
                let items = match map.remove(&key) {
                    Some(Json::Array(items)) => items,
                    None | Some(Json::Null) => Vec::new(),
                    Some(_) => return Err(format!("the {kind}'s \"items\" is not a list")),
                };
                drop(map);
                for item in items {
                    classify(Doc::Tree(item), drafts, out)?;
                }
                Ok(())
            }
            "ConfigMap" => {
                let data = get("data").and_then(Json::as_object);
                let profile = data.and_then(|d| {
                    d.iter()
                        .find(|(k, _)| k.ends_with(".json"))
                        .and_then(|(_, v)| v.as_str())
                });
                match profile {
                    Some(text) => {
                        for inner in parse_documents(text)? {
                            classify(inner, drafts, out)?;
                        }
                        Ok(())
                    }
                    None => Err("the ConfigMap has no deviceProfile.json key in data".into()),
                }
            }
            "Device" | "DeviceModel" if api.starts_with("devices.kubeedge.io/") => {
                let format = if api.ends_with("v1beta1") {
                    Format::V1Beta1Resources
                } else {
                    Format::V1Alpha2Resources
                };
                note_format(out, format);
                crd::add_resource(kind, format, Json::Object(map), drafts);
                Ok(())
            }
            "CustomResourceDefinition" => Err(format!(
                "this is the definition of the {} CRD, not a device; give Device and DeviceModel resources",
                get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Json::as_str)
                    .unwrap_or("?")
            )),
            other => Err(format!(
                "a {} ({}) is not a device profile; expected a device-profile JSON, a ConfigMap holding one, or Device/DeviceModel resources",
                problems::excerpt(other),
                problems::excerpt(api)
            )),
        };
    }
    if is_profile {
        // A tree (from YAML or a list): read it the same way as JSON text.
        let text = serde_json::to_string(&map).map_err(|e| e.to_string())?;
        let text: &serde_json::value::RawValue =
            serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let format = raw::add_profile(text, drafts)?;
        note_format(out, format);
        return Ok(());
    }
    Err("no deviceInstances, deviceModels or kind found: this is not a device profile".into())
}

fn note_format(out: &mut Resolved, format: Format) {
    if out.format.is_none() {
        out.format = Some(format);
    }
}

/// Unit of the cycles in a draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CycleUnit {
    Nanos,
    Millis,
}

/// A device as read from any format, before model lookup and validation.
#[derive(Debug, Default)]
struct Draft {
    id: String,
    name: String,
    namespace: Option<String>,
    model: String,
    protocol: Option<Result<ProtocolDef, Issue>>,
    visitors: Vec<DraftVisitor>,
    /// Twin name -> (desired value, desired type).
    twins: BTreeMap<String, (Option<String>, Option<String>)>,
    data_properties: BTreeSet<String>,
    data_topic: Option<String>,
    issues: Vec<Issue>,
    unit: Option<CycleUnit>,
}

#[derive(Debug, Default)]
struct DraftVisitor {
    property: String,
    collect: Option<Json>,
    report: Option<Json>,
    /// Shared: v1alpha1 visitors are given to every device of their model.
    config: Arc<Json>,
    desired: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct DraftModelProperty {
    name: String,
    data_type: Option<String>,
    access: Option<String>,
    minimum: Option<Json>,
    maximum: Option<Json>,
    unit: Option<String>,
    /// Model-level visitor defaults (v1beta1 1.22+), merged under the device's.
    visitor: Option<Arc<Json>>,
}

#[derive(Debug, Default, Clone)]
struct DraftModel {
    namespace: Option<String>,
    properties: Vec<DraftModelProperty>,
    /// Property name -> its first definition in `properties` (a model may have
    /// thousands of properties, each looked up by every visitor).
    by_name: HashMap<String, usize>,
}

impl DraftModel {
    fn new(namespace: Option<String>, properties: Vec<DraftModelProperty>) -> Self {
        let mut by_name = HashMap::with_capacity(properties.len());
        for (i, p) in properties.iter().enumerate() {
            by_name.entry(p.name.clone()).or_insert(i);
        }
        Self {
            namespace,
            properties,
            by_name,
        }
    }

    fn property(&self, name: &str) -> Option<&DraftModelProperty> {
        self.by_name.get(name).and_then(|&i| self.properties.get(i))
    }
}

#[derive(Debug, Default)]
struct Drafts {
    devices: Vec<Draft>,
    /// Model name -> definitions (possibly in several namespaces).
    models: BTreeMap<String, Vec<DraftModel>>,
    /// Problems with a model: reported once each, and every device that uses the model
    /// fails with one short error.
    model_issues: BTreeMap<String, Vec<String>>,
}

/// Shares equal property definitions between devices. Devices of one model usually
/// have identical properties (same registers, cycles and limits), so a thousand of them
/// keep one copy of each definition, or at least of each visitor config.
#[derive(Default)]
struct Sharing {
    /// (model, property) -> the distinct definitions seen so far.
    variants: BTreeMap<(String, String), Vec<Arc<PropertyDef>>>,
}

impl Sharing {
    /// Distinct definitions remembered per (model, property); bounds the work when every
    /// device differs.
    const MAX_VARIANTS: usize = 8;

    fn share(&mut self, dev: &mut DeviceDef) {
        for p in &mut dev.properties {
            let variants = self
                .variants
                .entry((dev.model.clone(), p.name.0.clone()))
                .or_default();
            if let Some(same) = variants.iter().find(|v| **v == *p) {
                *p = Arc::clone(same);
                continue;
            }
            if let Some(v) = variants.iter().find(|v| v.visitor == p.visitor) {
                Arc::make_mut(p).visitor = Arc::clone(&v.visitor);
            }
            if variants.len() < Self::MAX_VARIANTS {
                variants.push(Arc::clone(p));
            }
        }
    }
}

/// The names a draft goes by: (name, profile id, namespace, topic id).
fn draft_names(draft: &Draft, opts: &ResolveOptions) -> (String, String, String, String) {
    let name = if draft.name.is_empty() {
        draft.id.clone()
    } else {
        draft.name.clone()
    };
    let profile_id = if draft.id.is_empty() {
        name.clone()
    } else {
        draft.id.clone()
    };
    let namespace = draft
        .namespace
        .clone()
        .unwrap_or_else(|| opts.namespace.clone());
    let id = match opts.topic_scheme {
        TopicScheme::Id => profile_id.clone(),
        TopicScheme::NamespaceName => format!("{namespace}/{name}"),
        TopicScheme::NamespaceNameIfSet => match draft.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name.clone(),
        },
    };
    (name, profile_id, namespace, id)
}

fn finish(drafts: Drafts, opts: &ResolveOptions, out: &mut Resolved) {
    let mut seen = BTreeSet::new();
    let mut sharing = Sharing::default();
    for (model, problems) in &drafts.model_issues {
        for problem in problems {
            out.errors.push(ProfileError::Invalid(Issue::general(
                "deviceModels",
                format!("device model {:?}: {problem}", problems::excerpt(model)),
            )));
        }
    }
    for mut draft in drafts.devices {
        for issue in std::mem::take(&mut draft.issues) {
            out.errors.push(ProfileError::Invalid(issue));
        }
        let (_, label, _, id) = draft_names(&draft, opts);
        if label.is_empty() {
            let issue = match draft.protocol.take() {
                // A malformed entry without a usable id: its own error says why.
                Some(Err(issue)) if issue.device.is_none() => issue,
                _ => Issue::general(
                    "id",
                    "a device instance has neither id nor name; give it an id",
                ),
            };
            out.errors.push(ProfileError::Invalid(issue));
            continue;
        }
        if !seen.insert(id.clone()) {
            out.errors.push(ProfileError::Invalid(Issue::device(
                &label,
                "id",
                "a device with this id appears more than once; the first one is used",
            )));
            continue;
        }
        match finish_device(draft, &drafts.models, &drafts.model_issues, opts, out) {
            Ok(mut dev) => {
                sharing.share(&mut dev);
                out.devices.push(dev);
            }
            Err(issue) => {
                out.errors.push(ProfileError::Invalid(issue));
                out.failed.push(DeviceId(id));
            }
        }
    }
}

fn finish_device(
    draft: Draft,
    models: &BTreeMap<String, Vec<DraftModel>>,
    model_issues: &BTreeMap<String, Vec<String>>,
    opts: &ResolveOptions,
    out: &mut Resolved,
) -> Result<DeviceDef, Issue> {
    let (name, profile_id, namespace, id) = draft_names(&draft, opts);
    let label = profile_id.as_str();
    let protocol = match draft.protocol {
        Some(Ok(p)) => p,
        Some(Err(issue)) => return Err(issue),
        None => {
            return Err(Issue::device(
                label,
                "protocol",
                "the device names no protocol",
            ));
        }
    };
    if draft.model.is_empty() {
        return Err(Issue::device(
            label,
            "model",
            "the device names no device model",
        ));
    }
    if model_issues.contains_key(&draft.model) {
        return Err(Issue::device(
            label,
            "model",
            format!(
                "device model {:?} is invalid (see its errors); fix the model",
                problems::excerpt(&draft.model)
            ),
        ));
    }
    let model = models.get(&draft.model).and_then(|defs| {
        defs.iter()
            .find(|m| m.namespace.as_deref() == draft.namespace.as_deref())
            .or_else(|| defs.first())
    });
    let Some(model) = model else {
        return Err(Issue::device(
            label,
            "model",
            format!(
                "device model {:?} is not in the profile; add it to deviceModels",
                draft.model
            ),
        ));
    };
    let unit = draft.unit.unwrap_or(CycleUnit::Nanos);
    let mut properties = Vec::new();
    let mut visited = BTreeSet::new();
    for v in draft.visitors {
        let prop = v.property.clone();
        if prop.is_empty() {
            out.errors.push(ProfileError::Invalid(Issue::device(
                label,
                "propertyVisitors.propertyName",
                "a property visitor has no propertyName",
            )));
            continue;
        }
        if !visited.insert(prop.clone()) {
            out.errors.push(ProfileError::Invalid(Issue::property(
                label,
                &prop,
                "propertyName",
                "the property has more than one visitor; the first one is used",
            )));
            continue;
        }
        let Some(mp) = model.property(&prop) else {
            out.errors.push(ProfileError::Invalid(Issue::property(
                label,
                &prop,
                "propertyName",
                format!(
                    "model {:?} has no property of this name; add it to the model or fix the visitor",
                    draft.model
                ),
            )));
            continue;
        };
        let twin = draft.twins.get(&prop);
        let ctx = PropCtx {
            device: label,
            property: &prop,
            unit,
            opts,
        };
        match finish_property(&ctx, v, mp, twin, &draft.data_properties, out) {
            Ok(p) => properties.push(Arc::new(p)),
            Err(issue) => out.errors.push(ProfileError::Invalid(issue)),
        }
    }
    for (twin, (_, ty)) in &draft.twins {
        if !visited.contains(twin) {
            out.warnings.push(Issue::property(
                label,
                twin,
                "propertyVisitors",
                "the twin has no property visitor, so it is never read or written",
            ));
        }
        if let Some(ty) = ty
            && let Err(e) = check_stored_type(ty)
        {
            out.warnings.push(Issue::property(
                label,
                twin,
                "desired.metadata.type",
                e.to_string(),
            ));
        }
    }
    Ok(DeviceDef {
        id: DeviceId(id),
        name,
        namespace,
        model: draft.model,
        protocol,
        properties,
        data_topic: draft.data_topic,
    })
}

struct PropCtx<'a> {
    device: &'a str,
    property: &'a str,
    unit: CycleUnit,
    opts: &'a ResolveOptions,
}

impl PropCtx<'_> {
    fn issue(&self, field: &str, message: impl Into<String>) -> Issue {
        Issue::property(self.device, self.property, field, message)
    }
}

fn finish_property(
    ctx: &PropCtx<'_>,
    v: DraftVisitor,
    mp: &DraftModelProperty,
    twin: Option<&(Option<String>, Option<String>)>,
    data_properties: &BTreeSet<String>,
    out: &mut Resolved,
) -> Result<PropertyDef, Issue> {
    let data_type = match mp.data_type.as_deref() {
        Some(t) => DataType::parse(t).ok_or_else(|| {
            ctx.issue(
                "dataType",
                format!(
                    "unknown data type {:?}; use int, float, double, boolean, string or bytes",
                    problems::excerpt(t)
                ),
            )
        })?,
        None => return Err(ctx.issue("dataType", "the model property has no data type")),
    };
    let access = match mp.access.as_deref() {
        None | Some("") => AccessMode::ReadWrite,
        Some(a) => AccessMode::parse(a).ok_or_else(|| {
            ctx.issue(
                "accessMode",
                format!(
                    "unknown access mode {:?}; use ReadWrite or ReadOnly",
                    problems::excerpt(a)
                ),
            )
        })?,
    };
    let mut minimum = number(ctx, "minimum", mp.minimum.as_ref())?;
    let mut maximum = number(ctx, "maximum", mp.maximum.as_ref())?;
    // The cloud emits 0 for unset limits, so 0..0 means "no limits".
    if minimum == Some(0.0) && maximum == Some(0.0) {
        minimum = None;
        maximum = None;
    }
    if let (Some(lo), Some(hi)) = (minimum, maximum)
        && lo > hi
    {
        out.warnings.push(ctx.issue(
            "maximum",
            format!("maximum {hi} is below minimum {lo}; both limits are ignored"),
        ));
        minimum = None;
        maximum = None;
    }
    let collect = match cycle(ctx, "collectCycle", v.collect.as_ref(), out)? {
        Cycle::Default => Some(ctx.opts.default_cycle),
        Cycle::Never => None,
        Cycle::Every(d) => Some(d),
    };
    let report = match cycle(ctx, "reportCycle", v.report.as_ref(), out)? {
        Cycle::Default => collect,
        Cycle::Never => None,
        Cycle::Every(d) => Some(d),
    };
    let visitor = match &mp.visitor {
        // The device sets nothing: share the model's defaults.
        Some(defaults) if v.config.is_null() => Arc::clone(defaults),
        Some(defaults) => Arc::new(merge_json(
            Json::clone(defaults),
            Arc::unwrap_or_clone(v.config),
        )),
        None => v.config,
    };
    let in_data = data_properties.contains(ctx.property);
    let (desired, stored_type) = match twin {
        Some((d, t)) => (d.clone().or(v.desired), t.clone()),
        None => (v.desired, None),
    };
    Ok(PropertyDef {
        name: PropertyName(ctx.property.to_owned()),
        data_type,
        access,
        minimum,
        maximum,
        unit: mp.unit.clone().filter(|u| !u.is_empty()),
        collect_cycle: collect,
        report_cycle: report,
        visitor,
        twin: twin.is_some() || !in_data,
        data: in_data,
        desired: desired.filter(|d| !d.is_empty()),
        stored_type,
    })
}

/// Merges `over` onto `base` (objects key by key, anything else replaced).
fn merge_json(base: Json, over: Json) -> Json {
    match (base, over) {
        (Json::Object(mut b), Json::Object(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => merge_json(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Json::Object(b)
        }
        (base, Json::Null) => base,
        (_, over) => over,
    }
}

fn number(ctx: &PropCtx<'_>, field: &str, v: Option<&Json>) -> Result<Option<f64>, Issue> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => Ok(n.as_f64()),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ctx.issue(field, format!("{:?} is not a number", problems::excerpt(s)))),
        Some(other) => Err(ctx.issue(field, format!("expected a number, got {}", short(other)))),
    }
}

enum Cycle {
    Default,
    Never,
    Every(Duration),
}

fn cycle(
    ctx: &PropCtx<'_>,
    field: &str,
    v: Option<&Json>,
    out: &mut Resolved,
) -> Result<Cycle, Issue> {
    let unit_name = match ctx.unit {
        CycleUnit::Nanos => "nanoseconds",
        CycleUnit::Millis => "milliseconds",
    };
    let n: i64 = match v {
        None | Some(Json::Null) => return Ok(Cycle::Default),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => i,
            None => match n.as_f64() {
                #[allow(clippy::cast_possible_truncation)]
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
                _ => {
                    return Err(
                        ctx.issue(field, format!("{n} is not a whole number of {unit_name}"))
                    );
                }
            },
        },
        Some(Json::String(s)) => s.trim().parse().map_err(|_| {
            ctx.issue(
                field,
                format!(
                    "{:?} is not a whole number of {unit_name}",
                    problems::excerpt(s)
                ),
            )
        })?,
        Some(other) => {
            return Err(ctx.issue(
                field,
                format!(
                    "expected a whole number of {unit_name}, got {}",
                    short(other)
                ),
            ));
        }
    };
    if n == 0 {
        return Ok(Cycle::Default);
    }
    if n < 0 {
        return Ok(Cycle::Never);
    }
    #[allow(clippy::cast_sign_loss)]
    let d = match ctx.unit {
        CycleUnit::Nanos => Duration::from_nanos(n as u64),
        CycleUnit::Millis => Duration::from_millis(n as u64),
    };
    if d < ctx.opts.min_cycle {
        let hint = match ctx.unit {
            CycleUnit::Nanos if n < 1_000_000 => format!(
                " (profile cycles are nanoseconds: for {n} ms write {})",
                n.saturating_mul(1_000_000)
            ),
            _ => String::new(),
        };
        out.warnings.push(ctx.issue(
            field,
            format!(
                "{n} {unit_name} is {d:?}, below the minimum of {:?}; using the minimum{hint}",
                ctx.opts.min_cycle
            ),
        ));
        return Ok(Cycle::Every(ctx.opts.min_cycle));
    }
    Ok(Cycle::Every(d))
}

/// A JSON value rendered compactly for messages.
fn short(v: &Json) -> String {
    problems::excerpt(&v.to_string())
}

#[cfg(test)]
mod tests;
