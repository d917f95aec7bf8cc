//! `devices.kubeedge.io` `Device` and `DeviceModel` resources, v1alpha2 and v1beta1.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::raw::{RawData, RawTwin, RawTwinValue};
use super::{
    CycleUnit, Draft, DraftModel, DraftModelProperty, DraftVisitor, Drafts, Format, Issue,
    ProtocolDef, ci,
};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Resource {
    metadata: Meta,
    spec: Json,
    status: Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ModelRef {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AlphaDeviceSpec {
    device_model_ref: ModelRef,
    protocol: Map<String, Json>,
    property_visitors: Vec<Map<String, Json>>,
    data: Option<RawData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AlphaStatus {
    twins: Vec<RawTwin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AlphaModelSpec {
    properties: Vec<AlphaModelProperty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AlphaModelProperty {
    name: String,
    #[serde(rename = "type")]
    ty: Map<String, Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AlphaTypeDetail {
    access_mode: Option<String>,
    minimum: Option<Json>,
    maximum: Option<Json>,
    unit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BetaDeviceSpec {
    device_model_ref: ModelRef,
    protocol: BetaProtocol,
    properties: Vec<BetaDeviceProperty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BetaProtocol {
    protocol_name: String,
    config_data: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BetaDeviceProperty {
    name: String,
    desired: Option<RawTwinValue>,
    visitors: Option<BetaProtocol>,
    report_cycle: Option<Json>,
    collect_cycle: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BetaModelSpec {
    properties: Vec<BetaModelProperty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BetaModelProperty {
    name: String,
    #[serde(rename = "type")]
    ty: Option<String>,
    access_mode: Option<String>,
    minimum: Option<Json>,
    maximum: Option<Json>,
    unit: Option<String>,
    visitors: Option<BetaProtocol>,
}

/// The v1alpha2 name of a protocol key (`customizedProtocol` is `customized-protocol` in
/// the ConfigMap).
fn alpha_kind(key: &str) -> String {
    if key.eq_ignore_ascii_case("customizedProtocol") {
        "customized-protocol".into()
    } else {
        key.to_owned()
    }
}

/// Adds one resource to the drafts.
pub(super) fn add_resource(kind: &str, format: Format, doc: Json, drafts: &mut Drafts) {
    let name_hint = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    let res: Resource = match ci::from_value(doc) {
        Ok(r) => r,
        Err(e) => {
            record_malformed(
                kind,
                &name_hint,
                &super::problems::clip(e.to_string()),
                drafts,
            );
            return;
        }
    };
    let result = match (kind, format) {
        ("Device", Format::V1Beta1Resources) => beta_device(res, drafts),
        ("Device", _) => alpha_device(res, drafts),
        ("DeviceModel", Format::V1Beta1Resources) => beta_model(res, drafts),
        _ => alpha_model(res, drafts),
    };
    if let Err(e) = result {
        record_malformed(kind, &name_hint, &super::problems::clip(e), drafts);
    }
}

fn record_malformed(kind: &str, name: &str, err: &str, drafts: &mut Drafts) {
    if kind == "Device" {
        let mut d = Draft {
            id: name.to_owned(),
            name: name.to_owned(),
            ..Draft::default()
        };
        d.protocol = Some(Err(Issue::device(
            if name.is_empty() { "?" } else { name },
            "spec",
            format!("the Device is malformed: {err}"),
        )));
        drafts.devices.push(d);
    } else {
        drafts
            .model_issues
            .entry(name.to_owned())
            .or_default()
            .push(format!("the DeviceModel is malformed: {err}"));
    }
}

fn alpha_device(res: Resource, drafts: &mut Drafts) -> Result<(), String> {
    let spec: AlphaDeviceSpec = ci::from_value(res.spec).map_err(|e| e.to_string())?;
    let status: AlphaStatus = ci::from_value(res.status).unwrap_or_default();
    let name = res.metadata.name;
    let mut d = Draft {
        id: name.clone(),
        name: name.clone(),
        namespace: res.metadata.namespace,
        model: spec.device_model_ref.name,
        unit: Some(CycleUnit::Nanos),
        ..Draft::default()
    };
    let common = spec
        .protocol
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("common"))
        .map(|(_, v)| v.clone())
        .unwrap_or(Json::Null);
    let chosen = spec
        .protocol
        .iter()
        .find(|(k, _)| !k.eq_ignore_ascii_case("common"));
    d.protocol = Some(match chosen {
        Some((k, v)) => Ok(ProtocolDef {
            kind: alpha_kind(k),
            config: Arc::new(v.clone()),
            common: Arc::new(common),
        }),
        None => Err(Issue::device(
            &name,
            "spec.protocol",
            "no protocol is set; add modbus, bluetooth, opcua or customizedProtocol",
        )),
    });
    d.add_twins_and_data(status.twins, spec.data);
    const NON_PROTOCOL: [&str; 4] = [
        "propertyname",
        "collectcycle",
        "reportcycle",
        "customizedvalues",
    ];
    for v in spec.property_visitors {
        let field = |k: &str| {
            v.iter()
                .find(|(key, _)| key.replace('_', "").eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let mut config = v
            .iter()
            .find(|(k, _)| !NON_PROTOCOL.contains(&k.to_ascii_lowercase().as_str()))
            .map(|(_, v)| v.clone())
            .unwrap_or(Json::Null);
        // The visitor-level customizedValues travel with the protocol visitor, as the
        // drivers read their extensions from there.
        if let (Some(cv), Json::Object(obj)) = (field("customizedValues"), &mut config)
            && !cv.is_null()
        {
            obj.entry("customizedValues").or_insert(cv);
        }
        d.visitors.push(DraftVisitor {
            property: field("propertyName")
                .and_then(|p| p.as_str().map(str::to_owned))
                .unwrap_or_default(),
            collect: field("collectCycle"),
            report: field("reportCycle"),
            config: Arc::new(config),
            desired: None,
        });
    }
    drafts.devices.push(d);
    Ok(())
}

fn alpha_model(res: Resource, drafts: &mut Drafts) -> Result<(), String> {
    let spec: AlphaModelSpec = ci::from_value(res.spec).map_err(|e| e.to_string())?;
    let mut props = Vec::new();
    for p in spec.properties {
        let (data_type, detail) = match p.ty.into_iter().next() {
            Some((t, detail)) => (
                Some(t),
                ci::from_value::<AlphaTypeDetail>(detail).unwrap_or_default(),
            ),
            None => (None, AlphaTypeDetail::default()),
        };
        props.push(DraftModelProperty {
            name: p.name,
            data_type,
            access: detail.access_mode,
            minimum: detail.minimum,
            maximum: detail.maximum,
            unit: detail.unit,
            visitor: None,
        });
    }
    drafts
        .models
        .entry(res.metadata.name)
        .or_default()
        .push(DraftModel::new(res.metadata.namespace, props));
    Ok(())
}

fn beta_device(res: Resource, drafts: &mut Drafts) -> Result<(), String> {
    let spec: BetaDeviceSpec = ci::from_value(res.spec).map_err(|e| e.to_string())?;
    let name = res.metadata.name;
    let mut d = Draft {
        id: name.clone(),
        name: name.clone(),
        // No namespace stays none: a 1.15 edgecore keys DMI devices by name alone (the
        // `{namespace}/{name}` scheme still assumes `mapper.namespace` for them).
        namespace: res.metadata.namespace,
        model: spec.device_model_ref.name,
        unit: Some(CycleUnit::Millis),
        ..Draft::default()
    };
    d.protocol = Some(if spec.protocol.protocol_name.is_empty() {
        Err(Issue::device(
            &name,
            "spec.protocol.protocolName",
            "no protocol name is set",
        ))
    } else {
        Ok(ProtocolDef {
            kind: spec.protocol.protocol_name,
            config: Arc::new(spec.protocol.config_data.unwrap_or(Json::Null)),
            common: Arc::new(Json::Null),
        })
    });
    for p in spec.properties {
        let (desired, ty) = p
            .desired
            .as_ref()
            .map(RawTwinValue::split)
            .unwrap_or_default();
        d.twins.insert(p.name.clone(), (desired.clone(), ty));
        d.visitors.push(DraftVisitor {
            property: p.name,
            collect: p.collect_cycle,
            report: p.report_cycle,
            config: Arc::new(p.visitors.and_then(|v| v.config_data).unwrap_or(Json::Null)),
            desired,
        });
    }
    drafts.devices.push(d);
    Ok(())
}

fn beta_model(res: Resource, drafts: &mut Drafts) -> Result<(), String> {
    let spec: BetaModelSpec = ci::from_value(res.spec).map_err(|e| e.to_string())?;
    let props = spec
        .properties
        .into_iter()
        .map(|p| DraftModelProperty {
            name: p.name,
            data_type: p.ty,
            access: p.access_mode,
            minimum: p.minimum,
            maximum: p.maximum,
            unit: p.unit,
            visitor: p.visitors.and_then(|v| v.config_data).map(Arc::new),
        })
        .collect();
    drafts
        .models
        .entry(res.metadata.name)
        .or_default()
        .push(DraftModel::new(res.metadata.namespace, props));
    Ok(())
}
