//! What a reply means (pure): status codes and transport failures as
//! [`DriverError`]s, and values picked out of JSON documents.

use std::time::Duration;

use http::StatusCode;
use mapper_sdk::driver::DriverError;
use mapper_sdk::excerpt::quoted;
use mapper_sdk::model::{DataType, Value};
use serde_json::Value as Json;

use crate::pointer::Pointer;

/// A request that got no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No connection could be made (refused, unreachable, DNS, TLS handshake).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke during the exchange (reset, closed early).
    #[error("connection lost: {0}")]
    Io(String),
    /// No complete reply within `timeoutMs`.
    #[error("no complete reply within {0:?} (protocolConfig timeoutMs)")]
    Timeout(Duration),
    /// The device answered something that is not HTTP.
    #[error("the reply is not valid HTTP: {0}")]
    Protocol(String),
    /// The reply body is larger than `maxBodyBytes`.
    #[error(
        "the reply body is larger than {0} bytes (raise protocolConfig maxBodyBytes if the device really sends that much)"
    )]
    TooLarge(usize),
}

impl HttpError {
    /// The driver error for this failure of `what` (e.g. `GET http://host/status`):
    /// connect and I/O failures are `Link` (the SDK reconnects), a timeout is `Timeout`,
    /// a reply that is not HTTP or too large is `Invalid`.
    pub fn into_driver(self, what: &str) -> DriverError {
        let msg = format!("{what}: {self}");
        match self {
            Self::Connect(_) | Self::Io(_) => DriverError::Link(msg),
            Self::Timeout(_) => DriverError::Timeout(msg),
            Self::Protocol(_) | Self::TooLarge(_) => DriverError::Invalid(msg),
        }
    }
}

/// Whether a request to write succeeded, or the error its status means:
/// - 2xx: success;
/// - 400 and 422 on a write: `Invalid` (the device says the value is wrong; the SDK
///   drops it at once);
/// - 408: `Timeout`;
/// - any other status (3xx, since redirects are not followed; 4xx, 5xx): `Refused` (the
///   device is online; a refused write is retried `mapper.refusedWriteRetries` times).
pub fn check_status(
    status: StatusCode,
    body: &[u8],
    write: bool,
    what: &str,
) -> Result<(), DriverError> {
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    let detail = if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", quoted(text.trim()))
    };
    let msg = format!("{what}: HTTP {status}{detail}");
    Err(match status.as_u16() {
        400 | 422 if write => DriverError::Invalid(format!("{msg} (the device refused the value)")),
        408 => DriverError::Timeout(msg),
        300..=399 => DriverError::Refused(format!(
            "{msg} (redirects are not followed; point baseUrl or the path at the final location)"
        )),
        401 | 403 => DriverError::Refused(format!(
            "{msg} (check the credentials in protocolConfig headers)"
        )),
        _ => DriverError::Refused(msg),
    })
}

/// Parses a reply body as JSON; the error names the request.
pub fn parse_document(body: &[u8], what: &str) -> Result<Json, DriverError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        DriverError::Invalid(format!(
            "{what}: the reply is not JSON ({e}): {}",
            quoted(text.trim())
        ))
    })
}

/// The value at `pointer` in `doc`, as a value of `data_type`; the errors name the
/// pointer and say what the document has instead.
pub fn pick(
    doc: &Json,
    pointer: &Pointer,
    data_type: DataType,
    what: &str,
) -> Result<Value, DriverError> {
    let Some(found) = pointer.find(doc) else {
        return Err(DriverError::Invalid(format!(
            "{what}: the reply has nothing at pointer {pointer} (visitorConfig pointer){}",
            keys_hint(doc, pointer)
        )));
    };
    Value::from_json(found, data_type)
        .map_err(|e| DriverError::Invalid(format!("{what}: at pointer {pointer}: {e}")))
}

/// Lists the keys of the deepest object the pointer reached, to help fix a typo.
fn keys_hint(doc: &Json, pointer: &Pointer) -> String {
    let mut cur = doc;
    let mut reached = String::new();
    for token in pointer.tokens() {
        let next = match cur {
            Json::Object(m) => m.get(token),
            Json::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        let Some(next) = next else { break };
        cur = next;
        reached.push('/');
        reached.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    let at = if reached.is_empty() {
        "the top level".to_owned()
    } else {
        reached
    };
    match cur {
        Json::Object(m) => {
            let keys: Vec<String> = m.keys().take(10).map(|k| quoted(k)).collect();
            let more = if m.len() > 10 { ", ..." } else { "" };
            format!("; {at} has keys {}{more}", keys.join(", "))
        }
        Json::Array(a) => format!("; {at} is a list of {} items", a.len()),
        other => format!("; {at} is {}", quoted(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn statuses_map_to_driver_errors() {
        let check = |code: u16, write| {
            check_status(
                StatusCode::from_u16(code).unwrap(),
                b"nope",
                write,
                "PUT /x",
            )
        };
        assert!(check(200, true).is_ok() && check(204, false).is_ok());
        assert!(matches!(check(400, true), Err(DriverError::Invalid(_))));
        assert!(matches!(check(422, true), Err(DriverError::Invalid(_))));
        assert!(matches!(check(400, false), Err(DriverError::Refused(_))));
        assert!(matches!(check(404, false), Err(DriverError::Refused(_))));
        assert!(matches!(check(409, true), Err(DriverError::Refused(_))));
        assert!(matches!(check(500, true), Err(DriverError::Refused(_))));
        assert!(matches!(check(503, false), Err(DriverError::Refused(_))));
        assert!(matches!(check(408, false), Err(DriverError::Timeout(_))));
        let Err(DriverError::Refused(m)) = check(301, false) else {
            panic!()
        };
        assert!(m.contains("redirects"), "{m}");
        let Err(DriverError::Refused(m)) = check(401, false) else {
            panic!()
        };
        assert!(
            m.contains("PUT /x: HTTP 401 Unauthorized: \"nope\"") && m.contains("headers"),
            "{m}"
        );
        // A hostile body is cut in the message.
        let big = vec![b'a'; 100_000];
        let Err(DriverError::Refused(m)) =
            check_status(StatusCode::BAD_GATEWAY, &big, false, "GET /")
        else {
            panic!()
        };
        assert!(m.len() < 300, "{}", m.len());
    }

    #[test]
    fn transport_failures_map_to_driver_errors() {
        let e = |h: HttpError| h.into_driver("GET http://x/s");
        assert!(matches!(
            e(HttpError::Connect("refused".into())),
            DriverError::Link(_)
        ));
        assert!(matches!(
            e(HttpError::Io("reset".into())),
            DriverError::Link(_)
        ));
        assert!(matches!(
            e(HttpError::Timeout(Duration::from_secs(1))),
            DriverError::Timeout(_)
        ));
        assert!(matches!(
            e(HttpError::Protocol("x".into())),
            DriverError::Invalid(_)
        ));
        let DriverError::Invalid(m) = e(HttpError::TooLarge(10)) else {
            panic!()
        };
        assert!(
            m.starts_with("GET http://x/s: ") && m.contains("maxBodyBytes"),
            "{m}"
        );
    }

    #[test]
    fn values_are_picked_by_pointer_and_misses_name_it() {
        let doc = json!({"relay": {"on": true, "power": 12.5}, "list": [1, 2]});
        assert_eq!(
            pick(&doc, &p("/relay/on"), DataType::Boolean, "GET /s").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            pick(&doc, &p("/list/1"), DataType::Int, "GET /s").unwrap(),
            Value::Int(2)
        );
        let DriverError::Invalid(m) =
            pick(&doc, &p("/relay/onn"), DataType::Boolean, "GET /s").unwrap_err()
        else {
            panic!()
        };
        assert!(
            m.contains("pointer /relay/onn") && m.contains("/relay has keys \"on\", \"power\""),
            "{m}"
        );
        let DriverError::Invalid(m) = pick(&doc, &p("/nope"), DataType::Int, "GET /s").unwrap_err()
        else {
            panic!()
        };
        assert!(m.contains("the top level has keys"), "{m}");
        let DriverError::Invalid(m) =
            pick(&doc, &p("/relay/power"), DataType::Boolean, "GET /s").unwrap_err()
        else {
            panic!()
        };
        assert!(m.contains("at pointer /relay/power"), "{m}");
        let DriverError::Invalid(m) =
            pick(&doc, &p("/list/5"), DataType::Int, "GET /s").unwrap_err()
        else {
            panic!()
        };
        assert!(m.contains("/list is a list of 2 items"), "{m}");
    }

    #[test]
    fn replies_that_are_not_json_are_invalid() {
        let DriverError::Invalid(m) = parse_document(b"<html>oops</html>", "GET /s").unwrap_err()
        else {
            panic!()
        };
        assert!(m.starts_with("GET /s: the reply is not JSON"), "{m}");
        assert!(parse_document(&[0xff, 0xfe], "GET /s").is_err());
        assert_eq!(
            parse_document(b" {\"a\": 1} ", "GET /s").unwrap(),
            json!({"a": 1})
        );
    }
}
