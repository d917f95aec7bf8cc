//! Typed, validated protocol and visitor configs (pure: no I/O).
//!
//! Protocol config (`protocolConfig.configData` in a v1alpha2 profile, `configData` of
//! the v1beta1 Device's protocol): `baseUrl`, `headers`, `timeoutMs`, `maxBodyBytes`.
//! Visitor config: `path`, `pointer`, `method`, `writePath`, `body`. The README's
//! `http-mapper` section lists them with their defaults.

use std::fmt;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};
use mapper_sdk::driver::{ConfigError, ConfigWarning, config_from_json_noting};
use mapper_sdk::profile::PropertyDef;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::pointer::Pointer;
use crate::template::BodyTemplate;

/// Default `timeoutMs`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest `timeoutMs`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Default `maxBodyBytes`: replies larger than this are refused.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Largest `maxBodyBytes`.
pub const MAX_MAX_BODY: u64 = 64 << 20;

/// One device's protocol config.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProtocol {
    /// Where the device's API is.
    pub base: BaseUrl,
    /// Sent with every request (e.g. `Authorization`).
    pub headers: Headers,
    /// Longest time one request may take, connect included.
    pub timeout: Duration,
    /// Largest reply body read; a larger reply is an error.
    pub max_body_bytes: usize,
}

/// `baseUrl`: scheme, authority and an optional path prefix (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: http::uri::Authority,
    /// A path every request path is appended to, e.g. `/api/v1`; empty for none.
    pub prefix: String,
}

impl BaseUrl {
    /// The URI of `path` (a visitor's `path` or `writePath`, checked at parse time).
    pub fn join(&self, path: &PathAndQuery) -> Result<Uri, http::Error> {
        let pq = format!("{}{}", self.prefix, path.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// Whether requests use TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The port requests go to (the scheme's default when the URL has none).
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// Request headers. Their values often hold credentials, so `Debug` shows names only.
#[derive(Clone, PartialEq, Default)]
pub struct Headers(pub Vec<(HeaderName, HeaderValue)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k.as_str()))
            .finish()
    }
}

/// One property's visitor config.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpVisitor {
    /// The path (and query) GET reads the document from.
    pub path: PathAndQuery,
    /// Where the value is in that document.
    pub pointer: Pointer,
    /// How a desired value is written.
    pub write: WriteSpec,
}

/// How a desired value is written.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSpec {
    /// `PUT` (default), `POST` or `PATCH`.
    pub method: Method,
    /// `writePath`, default the visitor's `path`.
    pub path: PathAndQuery,
    /// The body; `${value}` is the value as JSON.
    pub body: BodyTemplate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawProtocol {
    base_url: Option<Json>,
    headers: Option<Json>,
    timeout_ms: Option<Json>,
    max_body_bytes: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawVisitor {
    path: Option<Json>,
    pointer: Option<Json>,
    method: Option<Json>,
    write_path: Option<Json>,
    body: Option<Json>,
}

/// Parses a protocol config (the driver's own JSON, already unwrapped from a
/// custom-protocol wrapper); `field` is where it sits in the profile, e.g.
/// `protocolConfig.configData`, and prefixes every error and warning.
pub fn parse_protocol(
    field: &str,
    json: &Json,
) -> Result<(HttpProtocol, Vec<ConfigWarning>), ConfigError> {
    let (raw, unknown): (RawProtocol, _) = config_from_json_noting(field, json)?;
    let warnings = unknown.into_iter().map(ConfigWarning::from).collect();
    let f = |name: &str| format!("{field}.{name}");
    let base_text = match &raw.base_url {
        Some(Json::String(s)) if !s.trim().is_empty() => s.trim(),
        None | Some(Json::Null) => {
            return Err(ConfigError::new(
                f("baseUrl"),
                "missing; set the device's URL, e.g. \"http://192.168.1.20\" or \"https://meter.local:8443/api\"",
            ));
        }
        Some(other) => {
            return Err(ConfigError::new(
                f("baseUrl"),
                format!("{other} is not a URL; set a string like \"http://192.168.1.20\""),
            ));
        }
    };
    let base = parse_base(base_text).map_err(|m| ConfigError::new(f("baseUrl"), m))?;
    let headers = parse_headers(&f("headers"), raw.headers.as_ref())?;
    let timeout_ms = number(&f("timeoutMs"), raw.timeout_ms.as_ref(), 1, MAX_TIMEOUT_MS)?;
    let max_body = number(
        &f("maxBodyBytes"),
        raw.max_body_bytes.as_ref(),
        1,
        MAX_MAX_BODY,
    )?;
    Ok((
        HttpProtocol {
            base,
            headers,
            timeout: timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            max_body_bytes: max_body
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(DEFAULT_MAX_BODY),
        },
        warnings,
    ))
}

fn parse_base(text: &str) -> Result<BaseUrl, String> {
    let uri: Uri = text.parse().map_err(|e| {
        format!("{text:?} is not a URL ({e}); write it like \"http://192.168.1.20:8080\"")
    })?;
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        Some(s) => {
            return Err(format!(
                "{text:?}: scheme {s} is not supported; use http or https"
            ));
        }
        None => {
            return Err(format!(
                "{text:?} has no scheme; write \"http://{text}\" (or https://)"
            ));
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        return Err(format!("{text:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{text:?} holds credentials; remove them and send them in headers (e.g. Authorization)"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{text:?} has a query; put queries in the visitors' path instead"
        ));
    }
    let prefix = uri.path().trim_end_matches('/').to_owned();
    Ok(BaseUrl {
        scheme,
        authority,
        prefix,
    })
}

fn parse_headers(field: &str, json: Option<&Json>) -> Result<Headers, ConfigError> {
    let map = match json {
        None | Some(Json::Null) => return Ok(Headers::default()),
        Some(Json::Object(map)) => map,
        Some(other) => {
            return Err(ConfigError::new(
                field,
                format!(
                    "{} is not a map; write it like {{\"Authorization\": \"Bearer TOKEN\"}}",
                    kind(other)
                ),
            ));
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let here = format!("{field}.{name}");
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::new(&here, "is not a valid header name (letters, digits and -)")
        })?;
        if header == http::header::HOST || header == http::header::CONTENT_LENGTH {
            return Err(ConfigError::new(
                &here,
                "is set by the mapper itself; remove it",
            ));
        }
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigError::new(
                    &here,
                    format!("{} is not a header value; use a string", kind(other)),
                ));
            }
        };
        let value = HeaderValue::from_str(&text).map_err(|_| {
            ConfigError::new(
                &here,
                "holds characters a header value cannot (e.g. a line break)",
            )
        })?;
        out.push((header, value));
    }
    Ok(Headers(out))
}

fn number(
    field: &str,
    json: Option<&Json>,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let n = match json {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::new(
            field,
            format!(
                "{} is not a whole number from {min} to {max}",
                json.map(Json::to_string).unwrap_or_default()
            ),
        )),
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// Parses a property's visitor config (already unwrapped); `field` is where it sits,
/// e.g. `visitorConfig.configData`.
pub fn parse_visitor(
    field: &str,
    json: &Json,
    property: &PropertyDef,
) -> Result<(HttpVisitor, Vec<ConfigWarning>), ConfigError> {
    let (raw, unknown): (RawVisitor, _) = config_from_json_noting(field, json)?;
    let warnings = unknown.into_iter().map(ConfigWarning::from).collect();
    let f = |name: &str| format!("{field}.{name}");
    let path = match string(&f("path"), raw.path.as_ref())? {
        Some(p) => parse_path(&f("path"), &p)?,
        None => {
            return Err(ConfigError::new(
                f("path"),
                "missing; set the path of the JSON document that holds the value, e.g. \"/status\"",
            ));
        }
    };
    let pointer_text = string(&f("pointer"), raw.pointer.as_ref())?.unwrap_or_default();
    let pointer = Pointer::parse(&pointer_text).map_err(|m| ConfigError::new(f("pointer"), m))?;
    let method = match string(&f("method"), raw.method.as_ref())? {
        None => Method::PUT,
        Some(m) => match m.trim().to_ascii_uppercase().as_str() {
            "PUT" => Method::PUT,
            "POST" => Method::POST,
            "PATCH" => Method::PATCH,
            _ => {
                return Err(ConfigError::new(
                    f("method"),
                    format!(
                        "{} is not a write method; use PUT, POST or PATCH",
                        mapper_sdk::excerpt::quoted(&m)
                    ),
                ));
            }
        },
    };
    let write_path = match string(&f("writePath"), raw.write_path.as_ref())? {
        Some(p) => parse_path(&f("writePath"), &p)?,
        None => path.clone(),
    };
    let body = match string(&f("body"), raw.body.as_ref())? {
        Some(t) => BodyTemplate::parse(&t, property.data_type)
            .map_err(|m| ConfigError::new(f("body"), m))?,
        None => BodyTemplate::from_pointer(&pointer),
    };
    Ok((
        HttpVisitor {
            path,
            pointer,
            write: WriteSpec {
                method,
                path: write_path,
                body,
            },
        },
        warnings,
    ))
}

fn string(field: &str, json: Option<&Json>) -> Result<Option<String>, ConfigError> {
    match json {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ConfigError::new(
            field,
            format!("{} where a string was expected; quote it", kind(other)),
        )),
    }
}

fn parse_path(field: &str, text: &str) -> Result<PathAndQuery, ConfigError> {
    let t = text.trim();
    if !t.starts_with('/') {
        return Err(ConfigError::new(
            field,
            format!(
                "{} must start with '/', e.g. \"/{}\"",
                mapper_sdk::excerpt::quoted(t),
                t
            ),
        ));
    }
    if t.contains('#') {
        return Err(ConfigError::new(field, "has a fragment ('#'); remove it"));
    }
    t.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!(
                "{} is not a URL path (spaces and some characters must be percent-encoded, e.g. %20)",
                mapper_sdk::excerpt::quoted(t)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapper_sdk::model::{AccessMode, DataType, PropertyName, Value};
    use serde_json::json;
    use std::sync::Arc;

    fn prop(data_type: DataType) -> PropertyDef {
        PropertyDef {
            name: PropertyName("p".into()),
            data_type,
            access: AccessMode::ReadWrite,
            minimum: None,
            maximum: None,
            unit: None,
            collect_cycle: None,
            report_cycle: None,
            visitor: Arc::new(Json::Null),
            twin: true,
            data: false,
            desired: None,
            stored_type: None,
        }
    }

    fn protocol(j: Json) -> Result<HttpProtocol, ConfigError> {
        parse_protocol("protocolConfig", &j).map(|(p, _)| p)
    }

    fn visitor(j: Json, t: DataType) -> Result<HttpVisitor, ConfigError> {
        parse_visitor("visitorConfig", &j, &prop(t)).map(|(v, _)| v)
    }

    #[test]
    fn a_full_protocol_config_parses() {
        let (p, warnings) = parse_protocol(
            "protocolConfig",
            &json!({"baseUrl": "https://meter.local:8443/api/v1/", "headers": {"Authorization": "Bearer x", "X-Id": 7},
                    "timeoutMs": "1500", "maxBodyBytes": 4096, "timeuotMs": 1}),
        )
        .unwrap();
        assert_eq!(p.base.to_string(), "https://meter.local:8443/api/v1");
        assert_eq!(p.base.port(), 8443);
        assert!(p.base.is_https());
        assert_eq!(p.timeout, Duration::from_millis(1500));
        assert_eq!(p.max_body_bytes, 4096);
        assert_eq!(p.headers.0.len(), 2);
        assert_eq!(
            format!("{:?}", p.headers),
            r#"["authorization", "x-id"]"#,
            "no secrets"
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "protocolConfig.timeuotMs");
        let uri = p.base.join(&"/status?x=1".parse().unwrap()).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://meter.local:8443/api/v1/status?x=1"
        );
        // Case-insensitive keys, defaults.
        let p = protocol(json!({"BASEURL": "http://10.0.0.2"})).unwrap();
        assert_eq!(p.base.port(), 80);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.max_body_bytes, DEFAULT_MAX_BODY);
    }

    #[test]
    fn bad_protocol_configs_name_the_field() {
        let field = |j: Json| protocol(j).unwrap_err().field;
        let msg = |j: Json| protocol(j).unwrap_err().message;
        assert_eq!(field(json!({})), "protocolConfig.baseUrl");
        assert!(msg(json!({"baseUrl": "10.0.0.2"})).contains("http://10.0.0.2"));
        assert!(msg(json!({"baseUrl": "ftp://x"})).contains("http or https"));
        assert!(msg(json!({"baseUrl": "http://u:p@x"})).contains("headers"));
        assert!(msg(json!({"baseUrl": "http://x/?a=1"})).contains("query"));
        assert_eq!(field(json!({"baseUrl": 5})), "protocolConfig.baseUrl");
        let base = |extra: Json| {
            let mut j = json!({"baseUrl": "http://x"});
            j.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            j
        };
        assert_eq!(
            field(base(json!({"timeoutMs": 0}))),
            "protocolConfig.timeoutMs"
        );
        assert_eq!(
            field(base(json!({"timeoutMs": 60001}))),
            "protocolConfig.timeoutMs"
        );
        assert_eq!(
            field(base(json!({"timeoutMs": -1}))),
            "protocolConfig.timeoutMs"
        );
        assert_eq!(
            field(base(json!({"maxBodyBytes": "big"}))),
            "protocolConfig.maxBodyBytes"
        );
        assert_eq!(
            field(base(json!({"headers": ["a"]}))),
            "protocolConfig.headers"
        );
        assert_eq!(
            field(base(json!({"headers": {"bad name": "x"}}))),
            "protocolConfig.headers.bad name"
        );
        assert_eq!(
            field(base(json!({"headers": {"X": "a\nb"}}))),
            "protocolConfig.headers.X"
        );
        assert_eq!(
            field(base(json!({"headers": {"Host": "x"}}))),
            "protocolConfig.headers.Host"
        );
    }

    #[test]
    fn visitors_parse_with_defaults() {
        let v = visitor(
            json!({"path": "/status", "pointer": "/relay/on"}),
            DataType::Boolean,
        )
        .unwrap();
        assert_eq!(v.path.as_str(), "/status");
        assert_eq!(v.pointer.as_str(), "/relay/on");
        assert_eq!(v.write.method, Method::PUT);
        assert_eq!(v.write.path.as_str(), "/status");
        assert_eq!(
            v.write.body.render(&Value::Bool(true)).unwrap(),
            r#"{"relay": {"on": true}}"#
        );
        let v = visitor(
            json!({"path": "/status", "pointer": "/power", "method": "post", "writePath": "/relay/0?x=1", "body": "{\"turn\": ${value}}"}),
            DataType::Boolean,
        )
        .unwrap();
        assert_eq!(v.write.method, Method::POST);
        assert_eq!(v.write.path.as_str(), "/relay/0?x=1");
        assert_eq!(v.write.body.text(), "{\"turn\": ${value}}");
        let v = visitor(json!({"path": "/t"}), DataType::Float).unwrap();
        assert_eq!(v.pointer.as_str(), "");
        assert_eq!(v.write.body.text(), "${value}");
    }

    #[test]
    fn bad_visitors_name_the_field() {
        let field = |j: Json| visitor(j, DataType::Int).unwrap_err().field;
        assert_eq!(field(json!({})), "visitorConfig.path");
        assert_eq!(field(json!({"path": "status"})), "visitorConfig.path");
        assert_eq!(field(json!({"path": "/a b"})), "visitorConfig.path");
        assert_eq!(field(json!({"path": "/a#b"})), "visitorConfig.path");
        assert_eq!(field(json!({"path": 3})), "visitorConfig.path");
        assert_eq!(
            field(json!({"path": "/a", "pointer": "x"})),
            "visitorConfig.pointer"
        );
        assert_eq!(
            field(json!({"path": "/a", "method": "DELETE"})),
            "visitorConfig.method"
        );
        assert_eq!(
            field(json!({"path": "/a", "writePath": "x"})),
            "visitorConfig.writePath"
        );
        assert_eq!(
            field(json!({"path": "/a", "body": "{}"})),
            "visitorConfig.body"
        );
        let e = parse_visitor(
            "visitorConfig.configData",
            &json!({"path": "/a", "pointr": "/x"}),
            &prop(DataType::Int),
        )
        .unwrap()
        .1;
        assert_eq!(e[0].field, "visitorConfig.configData.pointr");
    }
}
