//! The I/O of the operator endpoint: an HTTP/1.1 listener (hyper) that hands each
//! request to [`Api`] and routes accepted writes to the runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::api::{self, Api};
use crate::runtime::Inbound;

/// The largest request body read (a desired value is a few bytes).
const BODY_LIMIT: usize = 64 << 10;

/// Why the endpoint cannot start.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The address cannot be bound.
    #[error("http: cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The write token file cannot be read or is empty.
    #[error("mapper.httpWriteTokenFile {path}: {message}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The running endpoint.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves until `cancel`; accepted writes go into `writes`.
    pub async fn start(
        addr: SocketAddr,
        api: Api,
        writes: mpsc::Sender<Inbound>,
        cancel: CancellationToken,
    ) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind {
                address: addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| HttpError::Bind {
            address: addr,
            source,
        })?;
        info!(address = %addr, "http: serving /healthz, /readyz, /metrics and /api/v1");
        let task = tokio::spawn(accept_loop(listener, Arc::new(api), writes, cancel));
        Ok(Self { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the accept loop to end (after the cancel), at most `limit`.
    pub async fn finish(self, limit: Duration) {
        if tokio::time::timeout(limit, self.task).await.is_err() {
            warn!("http: the listener did not stop within {limit:?}");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    api: Arc<Api>,
    writes: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "http: accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let api = Arc::clone(&api);
        let writes = writes.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = Arc::clone(&api);
                let writes = writes.clone();
                async move { Ok::<_, Infallible>(answer(&api, &writes, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(peer = %peer, error = %e, "http: connection ended with an error");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

async fn answer(
    api: &Api,
    writes: &mpsc::Sender<Inbound>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(api::Response {
                status: 413,
                content_type: "application/json",
                body: r#"{"error":"the body is too large or broken"}"#.into(),
            });
        }
    };
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request = api::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        authorization,
        body: &body,
    };
    let outcome = api.handle(&request);
    let mut response = outcome.response;
    if let Some(w) = outcome.write {
        debug!(device = %w.device, property = %w.desired.property, "http: desired value accepted");
        let msg = Inbound::Desired {
            device: w.device,
            values: vec![w.desired],
        };
        if writes.try_send(msg).is_err() {
            response = api::Response {
                status: 503,
                content_type: "application/json",
                body: r#"{"error":"the mapper is busy or stopping; try again"}"#.into(),
            };
        }
    }
    if parts.method == hyper::Method::HEAD {
        response.body.clear();
    }
    reply(response)
}

fn reply(r: api::Response) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    out
}
