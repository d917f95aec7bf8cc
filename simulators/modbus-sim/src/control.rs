//! The control endpoint's API: read and change the faults of a running
//! simulator (`--control ADDR`, see the README). Pure request handling; the
//! HTTP transport is `sim-control`.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /faults` | none | every unit's faults, by endpoint and unit id |
//! | `POST /faults` | a [`FaultRequest`] | the unit's faults after the change |
//! | `POST /drop-connections` | optional `{endpoint: NAME}` | the endpoints whose connections were closed |

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
pub use sim_control::FaultMode;
use sim_control::{BoxFuture, ControlHandler, ControlRequest, ControlResponse, parse_document};

use crate::fault::FaultConfig;
use crate::runner::Running;
use crate::sim::Simulator;

/// The body of `POST /faults` (JSON or YAML).
///
/// ```yaml
/// endpoint: boiler        # optional when the map has one endpoint
/// unit: 3
/// mode: add               # or replace (the default)
/// faults: { silent: true }   # the map file's fault format
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Endpoint name from the map; may be left out when there is only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The unit id.
    pub unit: u8,
    /// Replace (default) or add.
    #[serde(default)]
    pub mode: FaultMode,
    /// The faults, in the map file's format; absent = none.
    #[serde(default)]
    pub faults: FaultConfig,
}

/// The body of `POST /drop-connections` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropRequest {
    /// Only this endpoint; every endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Answers one control request against named simulators.
pub fn handle(sims: &[(&str, &Simulator)], req: &ControlRequest) -> ControlResponse {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/faults") => ControlResponse::ok(all_faults(sims)),
        ("POST", "/faults") => set_faults(sims, &req.body),
        ("POST", "/drop-connections") => drop_connections(sims, &req.body),
        ("GET", "") => ControlResponse::ok(serde_json::json!({
            "paths": ["GET /faults", "POST /faults", "POST /drop-connections"],
        })),
        (m, p @ "/faults") => ControlResponse::method_not_allowed(m, p, "GET or POST"),
        (m, p @ "/drop-connections") => ControlResponse::method_not_allowed(m, p, "POST"),
        (m, p) => ControlResponse::not_found(format!(
            "no {m} {p}; the paths are GET /faults, POST /faults, POST /drop-connections"
        )),
    }
}

fn all_faults(sims: &[(&str, &Simulator)]) -> serde_json::Value {
    let mut endpoints = BTreeMap::new();
    for (name, sim) in sims {
        let mut units = BTreeMap::new();
        for id in sim.unit_ids() {
            if let Ok(f) = sim.faults(id) {
                units.insert(id, FaultConfig::from(&f));
            }
        }
        endpoints.insert(*name, units);
    }
    serde_json::json!({ "endpoints": endpoints })
}

fn pick<'a>(
    sims: &[(&'a str, &'a Simulator)],
    endpoint: Option<&str>,
) -> Result<(&'a str, &'a Simulator), ControlResponse> {
    let names = || sims.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    match endpoint {
        Some(want) => sims
            .iter()
            .find(|(n, _)| *n == want)
            .copied()
            .ok_or_else(|| {
                ControlResponse::not_found(format!(
                    "no endpoint `{want}` in the map; the endpoints are: {}",
                    names()
                ))
            }),
        None => match sims {
            [one] => Ok(*one),
            _ => Err(ControlResponse::bad_request(format!(
                "the map has several endpoints ({}): name one with `endpoint` (--endpoint)",
                names()
            ))),
        },
    }
}

fn set_faults(sims: &[(&str, &Simulator)], body: &[u8]) -> ControlResponse {
    let req: FaultRequest = match parse_document(body, "POST /faults") {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (name, sim) = match pick(sims, req.endpoint.as_deref()) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let new = match req.faults.resolve() {
        Ok(f) => f,
        Err((field, message)) => {
            return ControlResponse::bad_request(format!(
                "POST /faults: endpoint `{name}` unit {}: faults.{field}: {message}",
                req.unit
            ));
        }
    };
    let Ok(mut faults) = sim.faults(req.unit) else {
        return ControlResponse::not_found(format!(
            "endpoint `{name}` has no unit {}; its units are {:?}",
            req.unit,
            sim.unit_ids()
        ));
    };
    match req.mode {
        FaultMode::Replace => faults = new,
        FaultMode::Add => faults.merge(new),
    }
    let shown = FaultConfig::from(&faults);
    if let Err(e) = sim.set_faults(req.unit, faults) {
        return ControlResponse::not_found(format!("endpoint `{name}`: {e}"));
    }
    tracing::info!(endpoint = %name, unit = req.unit, faults = ?shown, "faults changed through the control endpoint");
    ControlResponse::ok(serde_json::json!({ "endpoint": name, "unit": req.unit, "faults": shown }))
}

fn drop_connections(sims: &[(&str, &Simulator)], body: &[u8]) -> ControlResponse {
    let req: DropRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DropRequest::default()
    } else {
        match parse_document(body, "POST /drop-connections") {
            Ok(r) => r,
            Err(e) => return e,
        }
    };
    let targets: Vec<(&str, &Simulator)> = match &req.endpoint {
        Some(_) => match pick(sims, req.endpoint.as_deref()) {
            Ok(s) => vec![s],
            Err(e) => return e,
        },
        None => sims.to_vec(),
    };
    for (name, sim) in &targets {
        tracing::info!(endpoint = %name, "dropping every TCP connection (control endpoint)");
        sim.drop_connections();
    }
    let names: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
    ControlResponse::ok(serde_json::json!({ "dropped": names }))
}

/// The control endpoint of a [`Running`] map (what the binary serves).
#[derive(Debug, Clone)]
pub struct RunningControl {
    running: Arc<Running>,
}

impl RunningControl {
    /// Serves the faults of `running`.
    pub fn new(running: Arc<Running>) -> Self {
        Self { running }
    }
}

impl ControlHandler for RunningControl {
    fn handle(&self, req: ControlRequest) -> BoxFuture<'_, ControlResponse> {
        let sims = self.running.simulators();
        let answer = handle(&sims, &req);
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::map::MapFile;

    const MAP: &str = "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - { id: 1, holding: [ { start: 0, count: 1 } ], faults: { exceptions: [ { code: 6 } ] } }\n      - { id: 3, holding: [ { start: 0, count: 1 } ] }\n  - name: b\n    tcp: 127.0.0.1:0\n    units:\n      - { id: 1, holding: [ { start: 0, count: 1 } ] }\n";

    fn sims() -> Vec<(String, Simulator)> {
        MapFile::parse(MAP, "t")
            .unwrap()
            .endpoints
            .iter()
            .map(|e| (e.name.clone(), Simulator::from_map(&e.device)))
            .collect()
    }

    fn req(method: &str, path: &str, body: &str) -> ControlRequest {
        ControlRequest {
            method: method.into(),
            path: path.into(),
            query: None,
            body: body.to_owned().into_bytes().into(),
        }
    }

    fn call(s: &[(String, Simulator)], r: ControlRequest) -> ControlResponse {
        let v: Vec<(&str, &Simulator)> = s.iter().map(|(n, s)| (n.as_str(), s)).collect();
        handle(&v, &r)
    }

    #[test]
    fn replace_add_and_read_back() {
        let s = sims();
        let r = call(
            &s,
            req(
                "POST",
                "/faults",
                r#"{"endpoint": "a", "unit": 3, "faults": {"silent": true}}"#,
            ),
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert!(s[0].1.faults(3).unwrap().silent);
        // add keeps the file's exception rule of unit 1
        let r = call(
            &s,
            req(
                "POST",
                "/faults",
                "endpoint: a\nunit: 1\nmode: add\nfaults: { delay_ms: 7 }\n",
            ),
        );
        assert_eq!(r.status, 200, "{r:?}");
        let f = s[0].1.faults(1).unwrap();
        assert_eq!(f.exceptions.len(), 1);
        assert_eq!(f.delay, Some(std::time::Duration::from_millis(7)));
        let all = call(&s, req("GET", "/faults", ""));
        assert_eq!(all.body["endpoints"]["a"]["3"]["silent"], true);
        assert_eq!(all.body["endpoints"]["a"]["1"]["delay_ms"], 7);
        assert_eq!(all.body["endpoints"]["b"]["1"]["silent"], false);
        // replace with nothing: healthy
        let r = call(
            &s,
            req("POST", "/faults", r#"{"endpoint": "a", "unit": 3}"#),
        );
        assert_eq!(r.status, 200);
        assert_eq!(s[0].1.faults(3).unwrap(), crate::Faults::default());
        let r = call(&s, req("POST", "/drop-connections", ""));
        assert_eq!(r.body["dropped"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn hostile_or_wrong_requests_get_4xx_with_a_reason() {
        let s = sims();
        for (method, path, body, status, needle) in [
            ("POST", "/faults", "{\"unit\": ", 400, "POST /faults"),
            ("POST", "/faults", "", 400, "empty"),
            (
                "POST",
                "/faults",
                r#"{"unit": 3, "faults": {"silent": true}}"#,
                400,
                "several endpoints",
            ),
            (
                "POST",
                "/faults",
                r#"{"endpoint": "z", "unit": 3}"#,
                404,
                "no endpoint `z`",
            ),
            (
                "POST",
                "/faults",
                r#"{"endpoint": "a", "unit": 9}"#,
                404,
                "no unit 9",
            ),
            (
                "POST",
                "/faults",
                r#"{"endpoint": "a", "unit": 3, "faults": {"silnt": true}}"#,
                400,
                "silnt",
            ),
            (
                "POST",
                "/faults",
                r#"{"endpoint": "a", "unit": 3, "faults": {"corrupt_crc_every": 0}}"#,
                400,
                "faults.corrupt_crc_every",
            ),
            (
                "POST",
                "/faults",
                r#"{"endpoint": "a", "unit": 300}"#,
                400,
                "POST /faults",
            ),
            ("POST", "/faults", "[1, 2]", 400, "POST /faults"),
            ("DELETE", "/faults", "", 405, "GET or POST"),
            ("GET", "/nope", "", 404, "no GET /nope"),
            (
                "POST",
                "/drop-connections",
                "{\"endpoint\": \"q\"}",
                404,
                "no endpoint",
            ),
        ] {
            let r = call(&s, req(method, path, body));
            assert_eq!(r.status, status, "{method} {path} {body}: {r:?}");
            let msg = r.body["error"].as_str().unwrap();
            assert!(msg.contains(needle), "{body}: {msg}");
        }
        assert!(!s[0].1.faults(3).unwrap().silent);
    }
}
