//! CRD -> DMI conversion as edgecore's `ConvertDevice` / `ConvertDeviceModel` do it
//! (docs/kubeedge-dmi.md#rule-edgecore-converts-crds-by-a-json-round-trip,
//! docs/kubeedge-dmi.md#rule-configdata-is-a-flat-map-of-wrapped-scalars,
//! docs/kubeedge-dmi.md#rule-what-devicestatus-holds). Pure functions.
//!
//! * 1.22+: the model's `spec.protocolConfigData` and `properties[].visitors` are the
//!   base of the device's configData, the device's keys win.
//! * Every top-level `configData` key (and, 1.23+, `pushMethod.anomalyDetection` key)
//!   becomes a `google.protobuf.Any` through [`dmi_api::value::encode_json`]: numbers as
//!   32-bit `FloatValue`, strings, booleans. An object, array or `null` (or a key named
//!   `data` in any case, which Go's case-insensitive round trip swallows) makes the
//!   whole device unconvertible: edgecore then skips it.
//! * `desired`, `visitors`, `protocol` and `status` are always present; `pushMethod`
//!   only when configured; `methods` from 1.19; the namespace from 1.16.
//! * The model keeps only name, namespace and its properties' plain fields.

use std::collections::HashMap;

use dmi_api::v1beta1 as pb;
use dmi_api::value::{ValueError, encode_json};
use serde_json::{Map, Value as Json};

use crate::fixtures::{CrdDevice, CrdModel, field, str_field};
use crate::version::Version;

/// Why edgecore could not convert a resource (it would log this and skip the resource).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// A configData value that is not a scalar.
    #[error("{resource}: {path}.{key}: {source}")]
    NotScalar {
        /// `namespace/name` of the resource.
        resource: String,
        /// Where the configData is, e.g. `spec.properties[0].visitors.configData`.
        path: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        source: ValueError,
    },
    /// A configData key named `data` (Go decodes it into `CustomizedValue.data` and fails).
    #[error(
        "{resource}: {path} has a key {key:?}: edgecore cannot convert a configData key named data (in any case); rename it"
    )]
    DataKey {
        /// `namespace/name`.
        resource: String,
        /// Where.
        path: String,
        /// The key as written.
        key: String,
    },
    /// A field of the wrong JSON type (Go's decoder would fail on it).
    #[error("{resource}: {path} must be {expected}, found {found}")]
    WrongType {
        /// `namespace/name`.
        resource: String,
        /// The field path.
        path: String,
        /// What the CRD schema wants.
        expected: &'static str,
        /// What the fixture has.
        found: String,
    },
}

struct Ctx {
    resource: String,
    version: Version,
}

fn kind_of(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(_) => "a boolean".into(),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) => format!("the string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

impl Ctx {
    fn wrong(&self, path: &str, expected: &'static str, found: &Json) -> ConvertError {
        ConvertError::WrongType {
            resource: self.resource.clone(),
            path: path.to_owned(),
            expected,
            found: kind_of(found),
        }
    }

    fn string(&self, obj: &Json, name: &str, path: &str) -> Result<String, ConvertError> {
        match field(obj, name) {
            None | Some(Json::Null) => Ok(String::new()),
            Some(Json::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.wrong(&format!("{path}.{name}"), "a string", other)),
        }
    }

    fn int(&self, obj: &Json, name: &str, path: &str) -> Result<i64, ConvertError> {
        match field(obj, name) {
            None | Some(Json::Null) => Ok(0),
            Some(Json::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
            Some(other) => Err(self.wrong(&format!("{path}.{name}"), "an integer", other)),
        }
    }

    fn int32(&self, obj: &Json, name: &str, path: &str) -> Result<i32, ConvertError> {
        let v = self.int(obj, name, path)?;
        i32::try_from(v).map_err(|_| {
            self.wrong(
                &format!("{path}.{name}"),
                "a 32-bit integer",
                &Json::from(v),
            )
        })
    }

    fn boolean(&self, obj: &Json, name: &str, path: &str) -> Result<bool, ConvertError> {
        match field(obj, name) {
            None | Some(Json::Null) => Ok(false),
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(&format!("{path}.{name}"), "a boolean", other)),
        }
    }

    fn object<'j>(
        &self,
        obj: &'j Json,
        name: &str,
        path: &str,
    ) -> Result<Option<&'j Json>, ConvertError> {
        match field(obj, name) {
            None | Some(Json::Null) => Ok(None),
            Some(v @ Json::Object(_)) => Ok(Some(v)),
            Some(other) => Err(self.wrong(&format!("{path}.{name}"), "an object", other)),
        }
    }

    fn array<'j>(&self, obj: &'j Json, name: &str, path: &str) -> Result<&'j [Json], ConvertError> {
        match field(obj, name) {
            None | Some(Json::Null) => Ok(&[]),
            Some(Json::Array(a)) => Ok(a),
            Some(other) => Err(self.wrong(&format!("{path}.{name}"), "a list", other)),
        }
    }

    fn strings(&self, obj: &Json, name: &str, path: &str) -> Result<Vec<String>, ConvertError> {
        self.array(obj, name, path)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::String(s) => Ok(s.clone()),
                other => Err(self.wrong(&format!("{path}.{name}[{i}]"), "a string", other)),
            })
            .collect()
    }

    fn string_map(
        &self,
        obj: &Json,
        name: &str,
        path: &str,
    ) -> Result<HashMap<String, String>, ConvertError> {
        let Some(m) = self.object(obj, name, path)? else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for (k, v) in m.as_object().into_iter().flatten() {
            match v {
                Json::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                other => {
                    return Err(self.wrong(&format!("{path}.{name}.{k}"), "a string", other));
                }
            }
        }
        Ok(out)
    }

    /// Wraps every top-level key of a configData map.
    fn wrap(
        &self,
        data: &Map<String, Json>,
        path: &str,
    ) -> Result<HashMap<String, prost_types::Any>, ConvertError> {
        let mut out = HashMap::new();
        for (key, value) in data {
            if key.eq_ignore_ascii_case("data") {
                return Err(ConvertError::DataKey {
                    resource: self.resource.clone(),
                    path: path.to_owned(),
                    key: key.clone(),
                });
            }
            let any = encode_json(value).map_err(|source| ConvertError::NotScalar {
                resource: self.resource.clone(),
                path: path.to_owned(),
                key: key.clone(),
                source,
            })?;
            out.insert(key.clone(), any);
        }
        Ok(out)
    }

    fn config_map<'j>(
        &self,
        obj: &'j Json,
        path: &str,
    ) -> Result<Option<&'j Map<String, Json>>, ConvertError> {
        Ok(self
            .object(obj, "configData", path)?
            .and_then(Json::as_object))
    }

    fn twin_property(
        &self,
        obj: Option<&Json>,
        path: &str,
    ) -> Result<pb::TwinProperty, ConvertError> {
        let Some(obj) = obj else {
            return Ok(pb::TwinProperty::default());
        };
        if obj.is_null() {
            return Ok(pb::TwinProperty::default());
        }
        if !obj.is_object() {
            return Err(self.wrong(path, "an object", obj));
        }
        Ok(pb::TwinProperty {
            value: self.string(obj, "value", path)?,
            metadata: self.string_map(obj, "metadata", path)?,
        })
    }
}

/// Overlays `over` on `base` key by key (`over` wins).
fn overlay(
    base: Option<&Map<String, Json>>,
    over: Option<&Map<String, Json>>,
) -> Option<Map<String, Json>> {
    match (base, over) {
        (None, None) => None,
        (b, o) => {
            let mut out = b.cloned().unwrap_or_default();
            for (k, v) in o.into_iter().flatten() {
                out.insert(k.clone(), v.clone());
            }
            Some(out)
        }
    }
}

/// The model property's `visitors` as a configData map: its `configData` when it has
/// one, otherwise the object itself (the CRD allows both readings; see the README).
fn model_visitor_config(model_property: &Json) -> Option<&Map<String, Json>> {
    let v = field(model_property, "visitors")?;
    match field(v, "configData") {
        Some(Json::Object(m)) => Some(m),
        Some(_) => None,
        None => v
            .as_object()
            .filter(|m| !m.keys().any(|k| k.eq_ignore_ascii_case("protocolName"))),
    }
}

/// Converts a cached Device (and its model, for the 1.22+ merge) the way edgecore does.
pub fn convert_device(
    device: &CrdDevice,
    model: Option<&CrdModel>,
    version: Version,
) -> Result<pb::Device, ConvertError> {
    let cx = Ctx {
        resource: device.key.to_string(),
        version,
    };
    let empty = Json::Object(Map::new());
    let spec = cx.object(&device.doc, "spec", "")?.unwrap_or(&empty);
    let model_spec = model
        .filter(|_| version.merges_model_defaults())
        .and_then(|m| field(&m.doc, "spec"));

    let model_ref = cx
        .object(spec, "deviceModelRef", "spec")?
        .map(|r| cx.string(r, "name", "spec.deviceModelRef"))
        .transpose()?
        .unwrap_or_default();

    let protocol_obj = cx.object(spec, "protocol", "spec")?.unwrap_or(&empty);
    let device_pcd = cx.config_map(protocol_obj, "spec.protocol")?;
    let model_pcd = model_spec
        .and_then(|s| field(s, "protocolConfigData"))
        .and_then(Json::as_object);
    let protocol = pb::ProtocolConfig {
        protocol_name: cx.string(protocol_obj, "protocolName", "spec.protocol")?,
        config_data: overlay(model_pcd, device_pcd)
            .map(|m| cx.wrap(&m, "spec.protocol.configData"))
            .transpose()?
            .map(|data| pb::CustomizedValue { data }),
    };

    let model_props: &[Json] = model_spec
        .and_then(|s| field(s, "properties"))
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice);
    let mut properties = Vec::new();
    for (i, p) in cx.array(spec, "properties", "spec")?.iter().enumerate() {
        let path = format!("spec.properties[{i}]");
        let name = cx.string(p, "name", &path)?;
        let visitors_obj = cx.object(p, "visitors", &path)?.unwrap_or(&empty);
        let vpath = format!("{path}.visitors");
        let device_cfg = cx.config_map(visitors_obj, &vpath)?;
        let model_cfg = model_props
            .iter()
            .find(|mp| str_field(mp, "name") == name)
            .and_then(model_visitor_config);
        let mut protocol_name = cx.string(visitors_obj, "protocolName", &vpath)?;
        if protocol_name.is_empty()
            && let Some(mv) = model_props
                .iter()
                .find(|mp| str_field(mp, "name") == name)
                .and_then(|mp| field(mp, "visitors"))
        {
            protocol_name = str_field(mv, "protocolName").to_owned();
        }
        let config_data = overlay(model_cfg, device_cfg)
            .map(|m| cx.wrap(&m, &format!("{vpath}.configData")))
            .transpose()?
            .map(|data| pb::CustomizedValue { data });
        let push_method = cx
            .object(p, "pushMethod", &path)?
            .map(|pm| push_method(&cx, pm, &format!("{path}.pushMethod")))
            .transpose()?;
        properties.push(pb::DeviceProperty {
            desired: Some(cx.twin_property(field(p, "desired"), &format!("{path}.desired"))?),
            visitors: Some(pb::VisitorConfig {
                protocol_name,
                config_data,
            }),
            report_cycle: cx.int(p, "reportCycle", &path)?,
            collect_cycle: cx.int(p, "collectCycle", &path)?,
            report_to_cloud: cx.boolean(p, "reportToCloud", &path)?,
            push_method,
            name,
        });
    }

    let mut methods = Vec::new();
    if version.has_methods() {
        for (i, m) in cx.array(spec, "methods", "spec")?.iter().enumerate() {
            let path = format!("spec.methods[{i}]");
            methods.push(pb::DeviceMethod {
                name: cx.string(m, "name", &path)?,
                description: cx.string(m, "description", &path)?,
                property_names: cx.strings(m, "propertyNames", &path)?,
            });
        }
    }

    let status = device_status(&cx, &device.doc, spec)?;

    Ok(pb::Device {
        name: device.key.name.clone(),
        namespace: if version.has_namespaces() {
            device.key.namespace.clone()
        } else {
            String::new()
        },
        spec: Some(pb::DeviceSpec {
            device_model_reference: model_ref,
            protocol: Some(protocol),
            properties,
            methods,
        }),
        status: Some(status),
    })
}

fn device_status(cx: &Ctx, doc: &Json, spec: &Json) -> Result<pb::DeviceStatus, ConvertError> {
    let empty = Json::Object(Map::new());
    let crd_status = cx.object(doc, "status", "")?.unwrap_or(&empty);
    let v = cx.version;
    let mut out = pb::DeviceStatus::default();
    if v.has_status_twins() {
        for (i, t) in cx.array(crd_status, "twins", "status")?.iter().enumerate() {
            let path = format!("status.twins[{i}]");
            out.twins.push(pb::Twin {
                property_name: cx.string(t, "propertyName", &path)?,
                observed_desired: Some(cx.twin_property(
                    field(t, "observedDesired"),
                    &format!("{path}.observedDesired"),
                )?),
                reported: Some(
                    cx.twin_property(field(t, "reported"), &format!("{path}.reported"))?,
                ),
            });
        }
    }
    if v.has_status_report_settings() {
        let state_report = if v.uses_state_report() {
            cx.object(spec, "stateReport", "spec")?
        } else {
            None
        };
        let (src, path) = match state_report {
            Some(sr) => (sr, "spec.stateReport"),
            None => (crd_status, "status"),
        };
        out.report_to_cloud = cx.boolean(src, "reportToCloud", path)?;
        out.report_cycle = cx.int(src, "reportCycle", path)?;
    }
    Ok(out)
}

fn push_method(cx: &Ctx, pm: &Json, path: &str) -> Result<pb::PushMethod, ConvertError> {
    let v = cx.version;
    let http = cx
        .object(pm, "http", path)?
        .map(|h| {
            let p = format!("{path}.http");
            Ok::<_, ConvertError>(pb::PushMethodHttp {
                hostname: cx.string(h, "hostName", &p)?,
                port: cx.int(h, "port", &p)?,
                requestpath: cx.string(h, "requestPath", &p)?,
                timeout: cx.int(h, "timeout", &p)?,
            })
        })
        .transpose()?;
    let mqtt = cx
        .object(pm, "mqtt", path)?
        .map(|m| {
            let p = format!("{path}.mqtt");
            Ok::<_, ConvertError>(pb::PushMethodMqtt {
                address: cx.string(m, "address", &p)?,
                topic: cx.string(m, "topic", &p)?,
                qos: cx.int32(m, "qos", &p)?,
                retained: cx.boolean(m, "retained", &p)?,
            })
        })
        .transpose()?;
    let otel = if v.has_methods() {
        cx.object(pm, "otel", path)?
            .map(|o| {
                Ok::<_, ConvertError>(pb::PushMethodOtel {
                    endpoint_url: cx.string(o, "endpointURL", &format!("{path}.otel"))?,
                })
            })
            .transpose()?
    } else {
        None
    };
    let anomaly_detection = if v.has_anomaly_detection() {
        cx.object(pm, "anomalyDetection", path)?
            .and_then(Json::as_object)
            .map(|m| cx.wrap(m, &format!("{path}.anomalyDetection")))
            .transpose()?
            .map(|data| pb::AnomalyDetection { data })
    } else {
        None
    };
    let db_method = cx
        .object(pm, "dbMethod", path)?
        .map(|db| db_method(cx, db, &format!("{path}.dbMethod")))
        .transpose()?;
    Ok(pb::PushMethod {
        http,
        mqtt,
        db_method,
        otel,
        anomaly_detection,
    })
}

fn db_method(cx: &Ctx, db: &Json, path: &str) -> Result<pb::DbMethod, ConvertError> {
    let v = cx.version;
    let influxdb2 = cx
        .object(db, "influxdb2", path)?
        .map(|i| {
            let p = format!("{path}.influxdb2");
            let client = cx
                .object(i, "influxdb2ClientConfig", &p)?
                .map(|c| {
                    let cp = format!("{p}.influxdb2ClientConfig");
                    Ok::<_, ConvertError>(pb::Influxdb2ClientConfig {
                        url: cx.string(c, "url", &cp)?,
                        org: cx.string(c, "org", &cp)?,
                        bucket: cx.string(c, "bucket", &cp)?,
                    })
                })
                .transpose()?;
            let data = cx
                .object(i, "influxdb2DataConfig", &p)?
                .map(|d| {
                    let dp = format!("{p}.influxdb2DataConfig");
                    Ok::<_, ConvertError>(pb::Influxdb2DataConfig {
                        measurement: cx.string(d, "measurement", &dp)?,
                        tag: cx.string_map(d, "tag", &dp)?,
                        field_key: cx.string(d, "fieldKey", &dp)?,
                    })
                })
                .transpose()?;
            Ok::<_, ConvertError>(pb::DbMethodInfluxdb2 {
                influxdb2_client_config: client,
                influxdb2_data_config: data,
            })
        })
        .transpose()?;
    let redis = if v >= Version::V1_16 {
        cx.object(db, "redis", path)?
            .map(|r| {
                let p = format!("{path}.redis");
                let c = cx
                    .object(r, "redisClientConfig", &p)?
                    .map(|c| {
                        let cp = format!("{p}.redisClientConfig");
                        Ok::<_, ConvertError>(pb::RedisClientConfig {
                            addr: cx.string(c, "addr", &cp)?,
                            db: cx.int32(c, "db", &cp)?,
                            poolsize: cx.int32(c, "poolsize", &cp)?,
                            min_idle_conns: cx.int32(c, "minIdleConns", &cp)?,
                        })
                    })
                    .transpose()?;
                Ok::<_, ConvertError>(pb::DbMethodRedis {
                    redis_client_config: c,
                })
            })
            .transpose()?
    } else {
        None
    };
    let tdengine = if v >= Version::V1_16 {
        cx.object(db, "tdengine", path)?
            .map(|t| {
                let p = format!("{path}.TDEngine");
                let c = cx
                    .object(t, "tdEngineClientConfig", &p)?
                    .map(|c| {
                        let cp = format!("{p}.TDEngineClientConfig");
                        Ok::<_, ConvertError>(pb::TdEngineClientConfig {
                            addr: cx.string(c, "addr", &cp)?,
                            dbname: cx.string(c, "dbname", &cp)?,
                        })
                    })
                    .transpose()?;
                Ok::<_, ConvertError>(pb::DbMethodTdEngine {
                    td_engine_client_config: c,
                })
            })
            .transpose()?
    } else {
        None
    };
    let mysql = if v >= Version::V1_17 {
        cx.object(db, "mysql", path)?
            .map(|m| {
                let p = format!("{path}.mysql");
                let c = cx
                    .object(m, "mysqlClientConfig", &p)?
                    .map(|c| {
                        let cp = format!("{p}.mysqlClientConfig");
                        Ok::<_, ConvertError>(pb::MySqlClientConfig {
                            addr: cx.string(c, "addr", &cp)?,
                            database: cx.string(c, "database", &cp)?,
                            user_name: cx.string(c, "userName", &cp)?,
                        })
                    })
                    .transpose()?;
                Ok::<_, ConvertError>(pb::DbMethodMySql {
                    mysql_client_config: c,
                })
            })
            .transpose()?
    } else {
        None
    };
    Ok(pb::DbMethod {
        influxdb2,
        redis,
        tdengine,
        mysql,
    })
}

/// Converts a cached DeviceModel as edgecore does: name, namespace (1.16+) and the
/// plain property fields; `spec.protocol`, `protocolConfigData` and property visitors
/// are not on the wire.
pub fn convert_model(model: &CrdModel, version: Version) -> Result<pb::DeviceModel, ConvertError> {
    let cx = Ctx {
        resource: model.key.to_string(),
        version,
    };
    let empty = Json::Object(Map::new());
    let spec = cx.object(&model.doc, "spec", "")?.unwrap_or(&empty);
    let mut properties = Vec::new();
    for (i, p) in cx.array(spec, "properties", "spec")?.iter().enumerate() {
        let path = format!("spec.properties[{i}]");
        properties.push(pb::ModelProperty {
            name: cx.string(p, "name", &path)?,
            description: cx.string(p, "description", &path)?,
            r#type: cx.string(p, "type", &path)?,
            access_mode: cx.string(p, "accessMode", &path)?,
            minimum: cx.string(p, "minimum", &path)?,
            maximum: cx.string(p, "maximum", &path)?,
            unit: cx.string(p, "unit", &path)?,
        });
    }
    Ok(pb::DeviceModel {
        name: model.key.name.clone(),
        namespace: if version.has_namespaces() {
            model.key.namespace.clone()
        } else {
            String::new()
        },
        spec: Some(pb::DeviceModelSpec {
            properties,
            commands: Vec::new(),
        }),
    })
}
