//! The reports of `check`: for people (`key=value` lines) and as one JSON document.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};

use crate::app::Loaded;
use crate::driver::{DeviceSpec, Driver};
use crate::profile::Issue;
use crate::profile::unknown::is_unknown_key_message;

/// `key=value` pairs: `path.to.key` for nested objects, `list[i]` for lists; strings
/// without quotes, other values as JSON; `null` left out.
pub fn flatten(value: &Json) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Json, out: &mut Vec<(String, String)>) {
        let at = |k: &str| crate::profile::unknown::join(prefix, k);
        match v {
            Json::Null => {}
            Json::Object(map) => {
                for (k, v) in map {
                    walk(&at(k), v, out);
                }
            }
            Json::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&at(&format!("[{i}]")), v, out);
                }
            }
            Json::String(s) => out.push((prefix.to_owned(), s.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// How a visitor reads: the driver's description, else the config as given.
fn visitor_pairs<D: Driver>(
    driver: Option<&D>,
    p: &crate::driver::PropertySpec<D::Visitor>,
) -> Vec<(String, String)> {
    let described = driver.map_or_else(Vec::new, |dr| dr.describe_visitor(&p.visitor));
    if described.is_empty() {
        flatten(&p.def.visitor)
    } else {
        described
    }
}

/// How a device's protocol config reads: the driver's description, else the config as
/// given.
fn protocol_pairs<D: Driver>(driver: Option<&D>, d: &DeviceSpec<D>) -> Vec<(String, String)> {
    let described = driver.map_or_else(Vec::new, |dr| dr.describe_protocol(&d.protocol));
    if !described.is_empty() {
        return described;
    }
    let mut pairs = flatten(&d.def.protocol.config);
    pairs.extend(
        flatten(&d.def.protocol.common)
            .into_iter()
            .map(|(k, v)| (format!("protocolCommonConfig.{k}"), v)),
    );
    pairs
}

fn line(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                format!("{k}={v:?}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    parts.join(" ")
}

/// How many of `warnings` are about unknown keys.
pub fn unknown_key_count(warnings: &[Issue]) -> usize {
    warnings
        .iter()
        .filter(|w| is_unknown_key_message(&w.message))
        .count()
}

/// The outcome of `check` for a person, with the driver's descriptions of the configs
/// when `driver` is given; `extra` are warnings from outside the profile
/// (the config file's unknown keys).
pub fn text<D: Driver>(driver: Option<&D>, loaded: &Loaded<D>, extra: &[Issue]) -> String {
    let mut s = String::new();
    for d in &loaded.devices {
        let _ = writeln!(
            s,
            "device {} (protocol {}, model {})",
            d.def.id, d.def.protocol.kind, d.def.model
        );
        let _ = writeln!(s, "  protocol config: {}", line(&protocol_pairs(driver, d)));
        for p in &d.properties {
            let cycle = p
                .def
                .collect_cycle
                .map_or_else(|| "never".to_owned(), |c| format!("{c:?}"));
            let visitor = visitor_pairs(driver, p);
            let _ = writeln!(
                s,
                "  {} {} {:?} every {cycle}{}{}: {}",
                p.def.name,
                p.def.data_type,
                p.def.access,
                if p.def.twin { " twin" } else { "" },
                if p.def.data { " data" } else { "" },
                line(&visitor)
            );
        }
    }
    for (id, kind) in &loaded.skipped {
        let _ = writeln!(
            s,
            "skipped {id}: protocol {kind} is not handled by this mapper"
        );
    }
    let warnings: Vec<&Issue> = extra.iter().chain(&loaded.warnings).collect();
    for w in &warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for e in &loaded.errors {
        let _ = writeln!(s, "error: {e}");
    }
    let unknown = unknown_key_count(extra) + unknown_key_count(&loaded.warnings);
    let _ = writeln!(
        s,
        "{} device(s) ok, {} skipped, {} error(s), {} warning(s){}",
        loaded.devices.len(),
        loaded.skipped.len(),
        loaded.errors.len(),
        warnings.len(),
        if unknown > 0 {
            format!(" ({unknown} unknown key(s))")
        } else {
            String::new()
        }
    );
    s
}

fn pairs_object(pairs: Vec<(String, String)>) -> Json {
    Json::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect(),
    )
}

fn issue_json(w: &Issue) -> Json {
    json!({
        "device": w.device,
        "others": w.others,
        "property": w.property,
        "field": w.field,
        "message": w.message,
        "unknownKey": is_unknown_key_message(&w.message),
    })
}

/// The outcome of `check` as one JSON document: `devices`, `skipped`, `warnings`
/// (`device`, `property`, `field`, `message`) and `errors`.
pub fn json<D: Driver>(driver: Option<&D>, loaded: &Loaded<D>, extra: &[Issue]) -> Json {
    let devices: Vec<Json> = loaded
        .devices
        .iter()
        .map(|d| {
            let properties: Vec<Json> = d
                .properties
                .iter()
                .map(|p| {
                    let visitor = visitor_pairs(driver, p);
                    json!({
                        "name": p.def.name.to_string(),
                        "dataType": p.def.data_type.to_string(),
                        "access": format!("{:?}", p.def.access),
                        "collectCycleMs": p.def.collect_cycle.and_then(|c| u64::try_from(c.as_millis()).ok()),
                        "twin": p.def.twin,
                        "data": p.def.data,
                        "visitor": pairs_object(visitor),
                    })
                })
                .collect();
            json!({
                "id": d.def.id.to_string(),
                "protocol": d.def.protocol.kind,
                "model": d.def.model,
                "protocolConfig": pairs_object(protocol_pairs(driver, d)),
                "properties": properties,
            })
        })
        .collect();
    let skipped: Vec<Json> = loaded
        .skipped
        .iter()
        .map(|(id, kind)| json!({"device": id, "protocol": kind}))
        .collect();
    let warnings: Vec<Json> = extra
        .iter()
        .chain(&loaded.warnings)
        .map(issue_json)
        .collect();
    let mut doc = Map::new();
    doc.insert("devices".into(), Json::Array(devices));
    doc.insert("skipped".into(), Json::Array(skipped));
    doc.insert("warnings".into(), Json::Array(warnings));
    doc.insert("errors".into(), json!(loaded.errors));
    Json::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_configs_flatten_to_key_value_pairs() {
        let v = json!({"tcp": {"ip": "10.0.0.5", "port": 502}, "list": [1, {"a": true}], "n": null, "s": "two words"});
        let pairs = flatten(&v);
        assert_eq!(
            line(&pairs),
            "tcp.ip=10.0.0.5 tcp.port=502 list[0]=1 list[1].a=true s=\"two words\""
        );
        assert!(flatten(&Json::Null).is_empty());
    }
}
