//! The HTTP server side: accept loop, request limits, JSON answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::ControlError;

/// Largest request body accepted; bigger bodies answer 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A boxed future, the return type of [`ControlHandler::handle`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One control request, body already read (at most [`BODY_LIMIT`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query, e.g. `/faults`.
    pub path: String,
    /// The query string without `?`, when there is one.
    pub query: Option<String>,
    /// The raw body (possibly empty, possibly not UTF-8).
    pub body: Bytes,
}

/// The answer to a control request: a status and a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlResponse {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl ControlResponse {
    /// 200 with `body`.
    pub fn ok(body: serde_json::Value) -> Self {
        Self { status: 200, body }
    }

    /// `status` with `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }

    /// 400 Bad Request with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error(400, message)
    }

    /// 404 Not Found with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::error(404, message)
    }

    /// 405 for a known path used with the wrong method; `allowed` lists the right ones.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::error(
            405,
            format!("{method} is not allowed on {path}; use {allowed}"),
        )
    }
}

/// What a simulator does with control requests.
pub trait ControlHandler: Send + Sync + 'static {
    /// Answers one request. Must not panic on any input.
    fn handle(&self, req: ControlRequest) -> BoxFuture<'_, ControlResponse>;
}

/// Parses a request body as YAML or JSON (JSON is accepted as YAML) into `T`.
///
/// A body that is empty, not UTF-8 or does not match `T` gives a 400 answer
/// whose message starts with `what` and carries the parser's message (with
/// line and column), so the caller can return it as is.
pub fn parse_document<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ControlResponse> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ControlResponse::bad_request(format!("{what}: the body is not UTF-8 text ({e})"))
    })?;
    if text.trim().is_empty() {
        return Err(ControlResponse::bad_request(format!(
            "{what}: the body is empty; send a JSON or YAML document"
        )));
    }
    serde_saphyr::from_str(text).map_err(|e| ControlResponse::bad_request(format!("{what}: {e}")))
}

/// A running control endpoint. Stops on [`ControlServer::shutdown`] or drop.
#[derive(Debug)]
pub struct ControlServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl ControlServer {
    /// Listens on `addr` (`IP:PORT`, port 0 = any free port) and serves
    /// `handler` on the current tokio runtime.
    pub async fn start(addr: &str, handler: Arc<dyn ControlHandler>) -> Result<Self, ControlError> {
        let parsed: SocketAddr = addr.trim().parse().map_err(|_| ControlError::Address {
            addr: addr.to_owned(),
        })?;
        let listener = TcpListener::bind(parsed)
            .await
            .map_err(|source| ControlError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ControlError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        if !local.ip().is_loopback() {
            warn!(addr = %local, "the control endpoint has no authentication and is not on loopback");
        }
        info!(addr = %local, "control endpoint listening");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            handler,
            cancel.clone(),
            tracker.clone(),
        ));
        Ok(Self {
            addr: local,
            cancel,
            tracker,
        })
    }

    /// The bound address (the real port also when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes open connections and waits for every task,
    /// so the handler is no longer referenced afterwards.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<dyn ControlHandler>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "control: accept failed");
                // out of file descriptors and the like: do not spin
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let handler = Arc::clone(&handler);
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(answer(handler.as_ref(), req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "control: connection ended with an error");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

async fn answer(handler: &dyn ControlHandler, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let reply = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(b) => {
            let request = ControlRequest {
                method: parts.method.as_str().to_owned(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                body: b.to_bytes(),
            };
            debug!(method = %request.method, path = %request.path, "control request");
            handler.handle(request).await
        }
        Err(e) => ControlResponse::error(
            413,
            format!("the body is larger than {BODY_LIMIT} bytes or broken ({e})"),
        ),
    };
    to_http(&reply)
}

fn to_http(reply: &ControlResponse) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(&reply.body)
        .unwrap_or_else(|_| r#"{"error":"cannot serialize the answer"}"#.to_owned());
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        unit: u8,
    }

    #[test]
    fn parse_document_accepts_json_and_yaml() {
        let d: Doc = parse_document(br#"{"unit": 3}"#, "faults").unwrap();
        assert_eq!(d.unit, 3);
        let d: Doc = parse_document(b"unit: 4\n", "faults").unwrap();
        assert_eq!(d.unit, 4);
    }

    #[test]
    fn parse_document_answers_400_with_the_reason() {
        for (body, want) in [
            (&b""[..], "empty"),
            (&b"{\"unit\": "[..], "faults:"),
            (&b"\xff\xfe"[..], "UTF-8"),
            (&b"{\"unit\": 300}"[..], "faults:"),
            (&b"{\"unit\": 1, \"bogus\": 2}"[..], "bogus"),
        ] {
            let e = parse_document::<Doc>(body, "faults").unwrap_err();
            assert_eq!(e.status, 400, "{body:?}");
            let msg = e.body["error"].as_str().unwrap();
            assert!(msg.contains(want), "{body:?}: {msg}");
        }
    }
}
