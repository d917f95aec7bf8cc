//! Request -> response routing of the operator endpoint on plain data: health,
//! readiness, metrics and the JSON device API. Pure: writes come back as a [`Write`]
//! for the caller to hand to the runtime.

use serde_json::{Value as Json, json};

use super::metrics::Telemetry;
use crate::model::{DeviceId, DeviceState, PropertyName, Value};
use crate::twin::Desired;

/// An HTTP request, as far as the API looks at it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The raw (still percent-encoded) path, without the query.
    pub path: &'a str,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The content type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// A desired value the API accepted: route it like an MQTT delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The device.
    pub device: DeviceId,
    /// The value.
    pub desired: Desired,
}

/// What [`Api::handle`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The answer to send.
    pub response: Response,
    /// A write to route before answering (only with a 202).
    pub write: Option<Write>,
}

/// The bearer token that allows writes. Never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token from the text of its file (surrounding whitespace trimmed); `None` when
    /// empty.
    pub fn from_file_text(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty()).then(|| Self(t.to_owned()))
    }

    /// Whether `presented` is the token; the time taken does not depend on where they
    /// differ (both are hashed first, then every byte is compared).
    pub fn matches(&self, presented: &str) -> bool {
        let a = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let b = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
        a.as_ref()
            .iter()
            .zip(b.as_ref())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The routes, over the shared telemetry.
#[derive(Debug, Clone)]
pub struct Api {
    telemetry: Telemetry,
    token: Option<Token>,
}

fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    }
}

fn json_response(status: u16, body: &Json) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn error(status: u16, message: &str) -> Outcome {
    json_response(status, &json!({ "error": message })).into()
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Self {
            response,
            write: None,
        }
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn state_name(s: Option<DeviceState>) -> &'static str {
    match s {
        Some(DeviceState::Online) => "online",
        Some(DeviceState::Offline) => "offline",
        None => "unknown",
    }
}

impl Api {
    /// The API over `telemetry`; writes allowed only with `token`.
    pub fn new(telemetry: Telemetry, token: Option<Token>) -> Self {
        Self { telemetry, token }
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request<'_>) -> Outcome {
        let path = req.path.split('?').next().unwrap_or_default();
        match (req.method, path) {
            ("GET" | "HEAD", "/healthz") => text(200, "ok\n").into(),
            ("GET" | "HEAD", "/readyz") => self.readyz(),
            ("GET" | "HEAD", "/metrics") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.telemetry.render(),
            }
            .into(),
            ("GET" | "HEAD", "/api/v1/devices" | "/api/v1/devices/") => self.list(),
            (method, p) if p.starts_with("/api/v1/devices/") => {
                let rest = &p["/api/v1/devices/".len()..];
                let Some(segs) = rest
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(percent_decode)
                    .collect::<Option<Vec<String>>>()
                else {
                    return error(400, "the path has a broken %-escape");
                };
                let n = segs.len();
                if n >= 3 && segs[n - 2] == "properties" {
                    let device = DeviceId(segs[..n - 2].join("/"));
                    let property = PropertyName(segs[n - 1].clone());
                    return match method {
                        "PUT" => self.put(req, &device, &property),
                        _ => error(405, "use PUT to write a property"),
                    };
                }
                match method {
                    "GET" | "HEAD" => self.one(&DeviceId(segs.join("/"))),
                    _ => error(405, "use GET"),
                }
            }
            ("GET" | "HEAD", _) => error(404, "no such route"),
            _ => error(405, "method not allowed"),
        }
    }

    fn readyz(&self) -> Outcome {
        let r = self.telemetry.readiness();
        let body = json!({
            "ready": r.ready(),
            "profileLoaded": r.profile_loaded,
            "reportPath": match r.report_path {
                super::metrics::ReportPath::Mqtt => "mqtt",
                super::metrics::ReportPath::Dmi => "dmi",
            },
            "reportConnected": r.report_connected,
            "missing": r.missing(),
        });
        json_response(if r.ready() { 200 } else { 503 }, &body).into()
    }

    fn device_json(id: &DeviceId, m: &super::metrics::DeviceMetrics) -> Json {
        let props: Vec<Json> = m
            .properties()
            .into_iter()
            .map(|p| {
                let (value, ts) = match p.last {
                    Some((v, t)) => (Json::from(v), Json::from(t)),
                    None => (Json::Null, Json::Null),
                };
                json!({
                    "name": p.name.0,
                    "value": value,
                    "timestamp": ts,
                    "writable": p.writable,
                })
            })
            .collect();
        json!({ "id": id.0, "state": state_name(m.state()), "properties": props })
    }

    fn list(&self) -> Outcome {
        let devices: Vec<Json> = self
            .telemetry
            .devices()
            .iter()
            .map(|(id, m)| Self::device_json(id, m))
            .collect();
        json_response(200, &json!({ "devices": devices })).into()
    }

    fn one(&self, id: &DeviceId) -> Outcome {
        match self.telemetry.find(id) {
            Some(m) => json_response(200, &Self::device_json(id, &m)).into(),
            None => error(404, "no such device"),
        }
    }

    fn put(&self, req: &Request<'_>, device: &DeviceId, property: &PropertyName) -> Outcome {
        let Some(token) = &self.token else {
            return error(
                403,
                "writes are off; set mapper.httpWriteTokenFile (--http-token-file) to allow them",
            );
        };
        let presented = req
            .authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        if !presented.is_some_and(|p| token.matches(p)) {
            return error(401, "a valid Authorization: Bearer token is required");
        }
        let Some(m) = self.telemetry.find(device) else {
            return error(404, "no such device");
        };
        let Some(p) = m.properties().into_iter().find(|p| &p.name == property) else {
            return error(404, "no such property");
        };
        if !p.writable {
            return error(400, "the property is ReadOnly");
        }
        let value = match serde_json::from_slice::<Json>(req.body) {
            Ok(Json::Object(o)) => match o.get("value") {
                Some(Json::String(s)) => s.clone(),
                Some(v @ (Json::Number(_) | Json::Bool(_))) => v.to_string(),
                _ => return error(400, "the body needs a \"value\" (string, number or bool)"),
            },
            _ => {
                return error(
                    400,
                    "the body must be a JSON object such as {\"value\":\"1\"}",
                );
            }
        };
        if let Err(e) = Value::parse(&value, p.data_type) {
            return error(400, &e.to_string());
        }
        Outcome {
            response: json_response(
                202,
                &json!({ "accepted": true, "device": device.0, "property": property.0, "value": value }),
            ),
            write: Some(Write {
                device: device.clone(),
                desired: Desired {
                    property: property.clone(),
                    value,
                    stored_type: p.stored_type,
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::profile::PropertyDef;

    fn def(name: &str, ro: bool) -> PropertyDef {
        PropertyDef {
            name: PropertyName(name.into()),
            data_type: crate::model::DataType::Int,
            access: if ro {
                crate::model::AccessMode::ReadOnly
            } else {
                crate::model::AccessMode::ReadWrite
            },
            minimum: None,
            maximum: None,
            unit: None,
            collect_cycle: None,
            report_cycle: None,
            visitor: std::sync::Arc::new(Json::Null),
            twin: true,
            data: false,
            desired: None,
            stored_type: Some("integer".into()),
        }
    }

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        auth: Option<&'a str>,
        body: &'a [u8],
    ) -> Request<'a> {
        Request {
            method,
            path,
            authorization: auth,
            body,
        }
    }

    fn api(token: Option<&str>) -> (Api, Telemetry) {
        let t = Telemetry::default();
        let (rw, ro) = (def("setpoint", false), def("temp", true));
        let m = t.device(&DeviceId("ns/pump".into()), &[&rw, &ro]);
        m.record_value(&PropertyName("temp".into()), "21".into());
        m.set_state(DeviceState::Online);
        (
            Api::new(t.clone(), token.and_then(Token::from_file_text)),
            t,
        )
    }

    #[test]
    fn health_readiness_metrics() {
        let (a, t) = api(None);
        assert_eq!(
            a.handle(&req("GET", "/healthz", None, b"")).response.status,
            200
        );
        let r = a.handle(&req("GET", "/readyz", None, b"")).response;
        assert_eq!(r.status, 503);
        assert!(
            r.body.contains("no device profile loaded yet"),
            "{}",
            r.body
        );
        t.set_profile_loaded();
        t.mqtt().connected();
        assert_eq!(
            a.handle(&req("GET", "/readyz?x=1", None, b""))
                .response
                .status,
            200
        );
        let m = a.handle(&req("GET", "/metrics", None, b"")).response;
        assert!(m.content_type.contains("version=0.0.4"));
        assert!(
            m.body
                .contains("mapper_device_online{device=\"ns/pump\"} 1")
        );
        assert_eq!(
            a.handle(&req("GET", "/nope", None, b"")).response.status,
            404
        );
    }

    #[test]
    fn devices_by_encoded_or_two_segment_id() {
        let (a, _) = api(None);
        let list = a.handle(&req("GET", "/api/v1/devices", None, b"")).response;
        let v: Json = serde_json::from_str(&list.body).unwrap();
        assert_eq!(v["devices"][0]["id"], "ns/pump");
        for path in [
            "/api/v1/devices/ns%2Fpump",
            "/api/v1/devices/ns/pump",
            "/api/v1/devices/ns%2fpump",
        ] {
            let r = a.handle(&req("GET", path, None, b"")).response;
            assert_eq!(r.status, 200, "{path}");
            let v: Json = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["state"], "online");
            assert_eq!(v["properties"][1]["value"], "21");
            assert!(v["properties"][1]["timestamp"].as_u64().unwrap() > 0);
            assert!(v["properties"][0]["value"].is_null());
        }
        let r = a
            .handle(&req("GET", "/api/v1/devices/ns/other", None, b""))
            .response;
        assert_eq!(r.status, 404);
        assert!(r.body.contains("no such device"));
        assert_eq!(
            a.handle(&req("GET", "/api/v1/devices/%zz", None, b""))
                .response
                .status,
            400
        );
    }

    #[test]
    fn writes_need_the_token() {
        let (a, _) = api(None);
        let body = br#"{"value":"23"}"#;
        let o = a.handle(&req(
            "PUT",
            "/api/v1/devices/ns/pump/properties/setpoint",
            Some("Bearer s3cret"),
            body,
        ));
        assert_eq!(o.response.status, 403);
        assert!(o.write.is_none());

        let (a, _) = api(Some("s3cret\n"));
        let path = "/api/v1/devices/ns%2Fpump/properties/setpoint";
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            let o = a.handle(&req("PUT", path, auth, body));
            assert_eq!(o.response.status, 401, "{auth:?}");
            assert!(o.write.is_none());
        }
        let o = a.handle(&req("PUT", path, Some("Bearer s3cret"), body));
        assert_eq!(o.response.status, 202, "{}", o.response.body);
        let w = o.write.unwrap();
        assert_eq!(w.device.0, "ns/pump");
        assert_eq!(
            (w.desired.property.0.as_str(), w.desired.value.as_str()),
            ("setpoint", "23")
        );
        let o = a.handle(&req("PUT", path, Some("Bearer s3cret"), br#"{"value":23}"#));
        assert_eq!(o.write.unwrap().desired.value, "23");

        let put = |p: &str, b: &[u8]| {
            a.handle(&req("PUT", p, Some("Bearer s3cret"), b))
                .response
                .status
        };
        assert_eq!(put("/api/v1/devices/ns/pump/properties/temp", body), 400);
        assert_eq!(put("/api/v1/devices/ns/pump/properties/nope", body), 404);
        assert_eq!(
            put("/api/v1/devices/ns/none/properties/setpoint", body),
            404
        );
        assert_eq!(put(path, b"23"), 400);
        assert_eq!(put(path, br#"{"value":"abc"}"#), 400);
        assert_eq!(
            a.handle(&req("DELETE", path, None, b"")).response.status,
            405
        );
    }

    #[test]
    fn token_is_never_printed() {
        let t = Token::from_file_text("hunter2").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(Token::from_file_text(" \n").is_none());
        assert!(t.matches("hunter2") && !t.matches("hunter3") && !t.matches(""));
    }
}
