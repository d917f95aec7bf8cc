//! The HTTP I/O shell: one keep-alive client per device (hyper with rustls on the ring
//! provider; plain `http://` needs no certificates), requests bounded by `timeoutMs` and
//! reply bodies by `maxBodyBytes`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::HttpProtocol;
use crate::reply::HttpError;

/// Idle keep-alive connections are closed after this long.
const IDLE: Duration = Duration::from_secs(30);

/// A device's HTTP client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    protocol: Arc<HttpProtocol>,
}

/// A reply: its status and (bounded) body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The body, at most `maxBodyBytes`.
    pub body: Bytes,
}

impl Client {
    /// A client for one device. For `https://` devices this loads the system's trusted
    /// certificates, which fails when there are none (install `ca-certificates`).
    pub fn new(protocol: Arc<HttpProtocol>) -> Result<Self, HttpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = if protocol.base.is_https() {
            builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| {
                    HttpError::Connect(format!(
                        "no trusted CA certificates on this system ({e}); install ca-certificates"
                    ))
                })?
        } else {
            // Never used for http:// URLs, but the connector wants one.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| HttpError::Connect(format!("TLS set-up: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.with_tls_config(config)
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(protocol.timeout));
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(Self { inner, protocol })
    }

    /// `METHOD URL` of a request to `path`, for messages.
    pub fn describe(&self, method: &Method, path: &PathAndQuery) -> String {
        format!("{method} {}{}", self.protocol.base, path)
    }

    /// Opens (and closes) one TCP connection to the device, to tell "cannot connect"
    /// apart from a device that is up.
    pub async fn probe(&self) -> Result<(), HttpError> {
        let host = self.protocol.base.authority.host();
        let addr = format!("{host}:{}", self.protocol.base.port());
        match tokio::time::timeout(self.protocol.timeout, tokio::net::TcpStream::connect(&addr))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(HttpError::Connect(format!("{addr}: {e}"))),
            Err(_) => Err(HttpError::Connect(format!(
                "{addr}: no connection within {:?} (protocolConfig timeoutMs)",
                self.protocol.timeout
            ))),
        }
    }

    /// Sends one request and reads the reply, within `timeoutMs` in all.
    pub async fn send(
        &self,
        method: Method,
        path: &PathAndQuery,
        body: Option<String>,
    ) -> Result<Reply, HttpError> {
        let uri = self
            .protocol
            .base
            .join(path)
            .map_err(|e| HttpError::Protocol(format!("cannot build the URL: {e}")))?;
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in &self.protocol.headers.0 {
            req = req.header(k, v);
        }
        req = req.header(header::ACCEPT, HeaderValue::from_static("application/json"));
        let body = match body {
            Some(b) => {
                req = req.header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| HttpError::Protocol(format!("cannot build the request: {e}")))?;
        let limit = self.protocol.max_body_bytes;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(classify_request)?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| classify_body(&*e, limit))?
                .to_bytes();
            Ok(Reply { status, body })
        };
        match tokio::time::timeout(self.protocol.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.protocol.timeout)),
        }
    }
}

/// The whole chain of an error, `outer: inner: ...`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn classify_request(e: hyper_util::client::legacy::Error) -> HttpError {
    let text = chain(&e);
    if e.is_connect() {
        return HttpError::Connect(text);
    }
    let hyper_err = e.source().and_then(|s| s.downcast_ref::<hyper::Error>());
    match hyper_err {
        Some(h) if h.is_parse() || h.is_parse_status() => HttpError::Protocol(text),
        _ => HttpError::Io(text),
    }
}

fn classify_body(e: &(dyn std::error::Error + Send + Sync + 'static), limit: usize) -> HttpError {
    if e.downcast_ref::<LengthLimitError>().is_some() {
        return HttpError::TooLarge(limit);
    }
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_parse() => HttpError::Protocol(chain(e)),
        _ => HttpError::Io(chain(e)),
    }
}
