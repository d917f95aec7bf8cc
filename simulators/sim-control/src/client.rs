//! The client side, for the simulators' `fault` subcommands.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ClientError;

/// How long one request may take, connect to last byte.
const DEADLINE: Duration = Duration::from_secs(10);

/// The answer to [`send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` member of a JSON error body, else the whole body.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.body.trim().to_owned())
    }
}

/// Sends one request to a control endpoint at `addr` (`HOST:PORT`, an
/// optional `http://` prefix and trailing `/` are accepted) and returns the
/// status and body. A non-2xx status is a [`Reply`], not an error.
pub async fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Reply, ClientError> {
    let host = addr
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if host.is_empty() || host.contains('/') || !host.contains(':') {
        return Err(ClientError::Address {
            addr: addr.to_owned(),
        });
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Http {
        addr: host.clone(),
        message: e.to_string(),
    })?;
    match tokio::time::timeout(DEADLINE, exchange(&host, method, path, body)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            addr: host,
            seconds: DEADLINE.as_secs(),
        }),
    }
}

/// Like [`send`], but a non-2xx answer is [`ClientError::Refused`] with the simulator's
/// message; returns the body of a successful answer.
pub async fn send_ok(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, ClientError> {
    let reply = send(addr, method, path, body).await?;
    if reply.is_success() {
        Ok(reply.body)
    } else {
        Err(ClientError::Refused {
            status: reply.status,
            message: reply.message(),
        })
    }
}

/// Reads a fault document given on a `fault` command line: inline JSON or YAML, or
/// `@PATH` for a file. `expected` names the keys it may hold (for the error).
pub fn read_document<T: serde::de::DeserializeOwned>(
    doc: &str,
    expected: &str,
) -> Result<T, ClientError> {
    let (text, origin) = match doc.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| ClientError::ReadDocument {
                path: path.to_owned(),
                message: e.to_string(),
            })?,
            path.to_owned(),
        ),
        None => (doc.to_owned(), "the fault document".to_owned()),
    };
    serde_saphyr::from_str(&text).map_err(|e| ClientError::Document {
        origin,
        message: e.to_string(),
        expected: expected.to_owned(),
    })
}

async fn exchange(
    host: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Reply, ClientError> {
    let http = |e: &dyn std::fmt::Display| ClientError::Http {
        addr: host.to_owned(),
        message: e.to_string(),
    };
    let stream = TcpStream::connect(host)
        .await
        .map_err(|source| ClientError::Connect {
            addr: host.to_owned(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .map_err(|e| http(&e))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| http(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::server::{
        BoxFuture, ControlHandler, ControlRequest, ControlResponse, ControlServer,
    };

    struct Echo;
    impl ControlHandler for Echo {
        fn handle(&self, req: ControlRequest) -> BoxFuture<'_, ControlResponse> {
            Box::pin(async move {
                if req.method != "POST" {
                    return ControlResponse::method_not_allowed(&req.method, &req.path, "POST");
                }
                ControlResponse::ok(serde_json::json!({
                    "path": req.path,
                    "query": req.query,
                    "body": String::from_utf8_lossy(&req.body),
                }))
            })
        }
    }

    #[tokio::test]
    async fn round_trip_and_errors() {
        let server = ControlServer::start("127.0.0.1:0", Arc::new(Echo))
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let r = send(
            &format!("http://{addr}/"),
            "POST",
            "/faults?x=1",
            Some("a: 1"),
        )
        .await
        .unwrap();
        assert!(r.is_success(), "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["path"], "/faults");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["body"], "a: 1");

        let r = send(&addr, "GET", "/faults", None).await.unwrap();
        assert_eq!(r.status, 405);
        assert!(r.message().contains("use POST"), "{}", r.message());

        // too large a body: 413, and the server keeps serving
        let big = "x".repeat(crate::BODY_LIMIT + 1);
        let r = send(&addr, "POST", "/faults", Some(&big)).await.unwrap();
        assert_eq!(r.status, 413);

        // garbage instead of HTTP: the connection gets a 400 or is closed, no panic
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        raw.write_all(b"\x00\x01 not http at all\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
        assert!(send(&addr, "POST", "/", None).await.unwrap().is_success());

        server.shutdown().await;
        assert!(matches!(
            send(&addr, "POST", "/", None).await,
            Err(ClientError::Connect { .. })
        ));
        assert!(matches!(
            send("nonsense", "GET", "/", None).await,
            Err(ClientError::Address { .. })
        ));
    }
}
