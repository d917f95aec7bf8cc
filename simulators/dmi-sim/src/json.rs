//! DMI messages as canonical proto3 JSON (the form of docs/kubeedge-dmi.md#example-a-modbus-tcp-device-as-edgecore-123-sends-it): zero
//! scalars left out, present sub-messages kept (even when empty), int64 as strings,
//! each `Any` as `{"@type": url, "value": decoded}`. For logs, the binary's output and
//! golden tests. Pure.

use std::collections::HashMap;

use dmi_api::v1beta1 as pb;
use dmi_api::value::decode_any;
use serde_json::{Map, Value as Json, json};

#[derive(Default)]
struct Obj(Map<String, Json>);

impl Obj {
    fn s(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), Json::from(v));
        }
        self
    }
    fn i64(mut self, k: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), Json::from(v.to_string()));
        }
        self
    }
    fn i32(mut self, k: &str, v: i32) -> Self {
        if v != 0 {
            self.0.insert(k.into(), Json::from(v));
        }
        self
    }
    fn b(mut self, k: &str, v: bool) -> Self {
        if v {
            self.0.insert(k.into(), Json::from(true));
        }
        self
    }
    fn o(mut self, k: &str, v: Option<Json>) -> Self {
        if let Some(v) = v {
            self.0.insert(k.into(), v);
        }
        self
    }
    fn list(mut self, k: &str, v: Vec<Json>) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), Json::Array(v));
        }
        self
    }
    fn smap(self, k: &str, m: &HashMap<String, String>) -> Self {
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort();
        let map: Map<String, Json> = keys
            .into_iter()
            .map(|key| (key.clone(), Json::from(m[key].as_str())))
            .collect();
        self.o(k, (!map.is_empty()).then_some(Json::Object(map)))
    }
    fn done(self) -> Json {
        Json::Object(self.0)
    }
}

/// One `Any` as proto3 JSON; an undecodable one keeps its type URL and shows the error.
pub fn any_json(any: &prost_types::Any) -> Json {
    match decode_any(any) {
        Ok(v) => json!({"@type": any.type_url, "value": v}),
        Err(e) => json!({"@type": any.type_url, "error": e.to_string()}),
    }
}

fn any_map(m: &HashMap<String, prost_types::Any>) -> Json {
    let mut keys: Vec<_> = m.keys().collect();
    keys.sort();
    let data: Map<String, Json> = keys
        .into_iter()
        .map(|k| (k.clone(), any_json(&m[k])))
        .collect();
    Obj::default()
        .o("data", (!data.is_empty()).then_some(Json::Object(data)))
        .done()
}

fn customized(c: &Option<pb::CustomizedValue>) -> Option<Json> {
    c.as_ref().map(|c| any_map(&c.data))
}

/// A `TwinProperty`.
pub fn twin_property_json(t: &pb::TwinProperty) -> Json {
    Obj::default()
        .s("value", &t.value)
        .smap("metadata", &t.metadata)
        .done()
}

/// A `DeviceStatus`.
pub fn status_json(s: &pb::DeviceStatus) -> Json {
    let twins = s
        .twins
        .iter()
        .map(|t| {
            Obj::default()
                .s("propertyName", &t.property_name)
                .o(
                    "observedDesired",
                    t.observed_desired.as_ref().map(twin_property_json),
                )
                .o("reported", t.reported.as_ref().map(twin_property_json))
                .done()
        })
        .collect();
    Obj::default()
        .list("twins", twins)
        .b("reportToCloud", s.report_to_cloud)
        .i64("reportCycle", s.report_cycle)
        .done()
}

fn push_method_json(p: &pb::PushMethod) -> Json {
    let http = p.http.as_ref().map(|h| {
        Obj::default()
            .s("hostname", &h.hostname)
            .i64("port", h.port)
            .s("requestpath", &h.requestpath)
            .i64("timeout", h.timeout)
            .done()
    });
    let mqtt = p.mqtt.as_ref().map(|m| {
        Obj::default()
            .s("address", &m.address)
            .s("topic", &m.topic)
            .i32("qos", m.qos)
            .b("retained", m.retained)
            .done()
    });
    let otel = p
        .otel
        .as_ref()
        .map(|o| Obj::default().s("endpointURL", &o.endpoint_url).done());
    let anomaly = p.anomaly_detection.as_ref().map(|a| any_map(&a.data));
    let db = p.db_method.as_ref().map(|d| {
        let influx = d.influxdb2.as_ref().map(|i| {
            Obj::default()
                .o(
                    "influxdb2ClientConfig",
                    i.influxdb2_client_config.as_ref().map(|c| {
                        Obj::default()
                            .s("url", &c.url)
                            .s("org", &c.org)
                            .s("bucket", &c.bucket)
                            .done()
                    }),
                )
                .o(
                    "influxdb2DataConfig",
                    i.influxdb2_data_config.as_ref().map(|c| {
                        Obj::default()
                            .s("measurement", &c.measurement)
                            .smap("tag", &c.tag)
                            .s("fieldKey", &c.field_key)
                            .done()
                    }),
                )
                .done()
        });
        let redis = d.redis.as_ref().map(|r| {
            Obj::default()
                .o(
                    "redisClientConfig",
                    r.redis_client_config.as_ref().map(|c| {
                        Obj::default()
                            .s("addr", &c.addr)
                            .i32("db", c.db)
                            .i32("poolsize", c.poolsize)
                            .i32("minIdleConns", c.min_idle_conns)
                            .done()
                    }),
                )
                .done()
        });
        let td = d.tdengine.as_ref().map(|t| {
            Obj::default()
                .o(
                    "tdEngineClientConfig",
                    t.td_engine_client_config.as_ref().map(|c| {
                        Obj::default()
                            .s("addr", &c.addr)
                            .s("dbname", &c.dbname)
                            .done()
                    }),
                )
                .done()
        });
        let mysql = d.mysql.as_ref().map(|m| {
            Obj::default()
                .o(
                    "mysqlClientConfig",
                    m.mysql_client_config.as_ref().map(|c| {
                        Obj::default()
                            .s("addr", &c.addr)
                            .s("database", &c.database)
                            .s("userName", &c.user_name)
                            .done()
                    }),
                )
                .done()
        });
        Obj::default()
            .o("influxdb2", influx)
            .o("redis", redis)
            .o("tdengine", td)
            .o("mysql", mysql)
            .done()
    });
    Obj::default()
        .o("http", http)
        .o("mqtt", mqtt)
        .o("dbMethod", db)
        .o("otel", otel)
        .o("anomalyDetection", anomaly)
        .done()
}

/// A `Device`.
pub fn device_json(d: &pb::Device) -> Json {
    let spec = d.spec.as_ref().map(|s| {
        let protocol = s.protocol.as_ref().map(|p| {
            Obj::default()
                .s("protocolName", &p.protocol_name)
                .o("configData", customized(&p.config_data))
                .done()
        });
        let properties = s
            .properties
            .iter()
            .map(|p| {
                Obj::default()
                    .s("name", &p.name)
                    .o("desired", p.desired.as_ref().map(twin_property_json))
                    .o(
                        "visitors",
                        p.visitors.as_ref().map(|v| {
                            Obj::default()
                                .s("protocolName", &v.protocol_name)
                                .o("configData", customized(&v.config_data))
                                .done()
                        }),
                    )
                    .i64("reportCycle", p.report_cycle)
                    .i64("collectCycle", p.collect_cycle)
                    .b("reportToCloud", p.report_to_cloud)
                    .o("pushMethod", p.push_method.as_ref().map(push_method_json))
                    .done()
            })
            .collect();
        let methods = s
            .methods
            .iter()
            .map(|m| {
                Obj::default()
                    .s("name", &m.name)
                    .s("description", &m.description)
                    .list(
                        "propertyNames",
                        m.property_names
                            .iter()
                            .map(|n| Json::from(n.as_str()))
                            .collect(),
                    )
                    .done()
            })
            .collect();
        Obj::default()
            .s("deviceModelReference", &s.device_model_reference)
            .o("protocol", protocol)
            .list("properties", properties)
            .list("methods", methods)
            .done()
    });
    Obj::default()
        .s("name", &d.name)
        .s("namespace", &d.namespace)
        .o("spec", spec)
        .o("status", d.status.as_ref().map(status_json))
        .done()
}

/// A `DeviceModel`.
pub fn model_json(m: &pb::DeviceModel) -> Json {
    let spec = m.spec.as_ref().map(|s| {
        let properties = s
            .properties
            .iter()
            .map(|p| {
                Obj::default()
                    .s("name", &p.name)
                    .s("description", &p.description)
                    .s("type", &p.r#type)
                    .s("accessMode", &p.access_mode)
                    .s("minimum", &p.minimum)
                    .s("maximum", &p.maximum)
                    .s("unit", &p.unit)
                    .done()
            })
            .collect();
        Obj::default().list("properties", properties).done()
    });
    Obj::default()
        .s("name", &m.name)
        .s("namespace", &m.namespace)
        .o("spec", spec)
        .done()
}

/// A `MapperInfo` (the address as text, not base64, for readability).
pub fn mapper_info_json(m: &pb::MapperInfo) -> Json {
    Obj::default()
        .s("name", &m.name)
        .s("version", &m.version)
        .s("apiVersion", &m.api_version)
        .s("protocol", &m.protocol)
        .s("address", &String::from_utf8_lossy(&m.address))
        .s("state", &m.state)
        .done()
}
