//! The HTTP shell: serves a [`Simulator`]'s documents on a TCP port, with faults a test
//! switches from Rust, and request counters.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::map::MapFile;
use crate::state::Documents;

/// Largest request body the simulator reads.
const MAX_REQUEST: usize = 1 << 20;

/// A misbehaviour switched on with [`Simulator::set_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Every request is answered with this status and a small JSON error body.
    Status(u16),
    /// Every reply is sent this late.
    Delay(Duration),
    /// Every reply is `200` with a body that is not JSON.
    InvalidJson,
    /// GET replies carry this many bytes of (valid) JSON.
    HugeBody(usize),
    /// The port is closed: connections are refused and open ones are cut.
    Down,
}

/// The faults in force (one of each kind at most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// [`Fault::Status`].
    pub status: Option<u16>,
    /// [`Fault::Delay`].
    pub delay: Option<Duration>,
    /// [`Fault::InvalidJson`].
    pub invalid_json: bool,
    /// [`Fault::HugeBody`].
    pub huge_body: Option<usize>,
}

/// One write the device accepted or refused.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    /// `PUT`, `POST` or `PATCH`.
    pub method: String,
    /// The request path (with query).
    pub path: String,
    /// The body as sent (lossy UTF-8).
    pub body: String,
    /// The status answered.
    pub status: u16,
}

/// Request counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Requests answered, faults included.
    pub requests: u64,
    /// GETs by path (without query).
    pub gets: BTreeMap<String, u64>,
    /// Writes, in order.
    pub writes: Vec<WriteRecord>,
}

struct Shared {
    docs: Mutex<Documents>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    down: watch::Sender<bool>,
    tick: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A simulated HTTP device: its documents, faults and counters. Clones share them.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Server {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Simulator {
    /// A device playing `map` (dynamics tick every `map.tick_ms` once served; `0` turns
    /// them off).
    pub fn from_map(map: &MapFile) -> Self {
        let (down, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                docs: Mutex::new(Documents::new(map)),
                faults: Mutex::default(),
                stats: Mutex::default(),
                down,
                tick: Duration::from_millis(map.tick_ms),
            }),
        }
    }

    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves until the [`Server`] is dropped.
    pub async fn serve(&self, addr: &str) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(self.clone(), listener, bound, stop.clone()));
        if !self.shared.tick.is_zero() {
            tokio::spawn(tick_loop(self.clone(), stop.clone()));
        }
        Ok(Server { addr: bound, stop })
    }

    /// The document at `path`.
    pub fn document(&self, path: &str) -> Option<Json> {
        lock(&self.shared.docs).get(path).cloned()
    }

    /// The value at `pointer` in the document at `path`.
    pub fn value(&self, path: &str, pointer: &str) -> Option<Json> {
        lock(&self.shared.docs)
            .get(path)
            .and_then(|d| d.pointer(pointer))
            .cloned()
    }

    /// Sets a value, bypassing the field rules; `false` if there is no such place.
    pub fn set_value(&self, path: &str, pointer: &str, value: Json) -> bool {
        lock(&self.shared.docs).set(path, pointer, value)
    }

    /// Switches a fault on (replacing one of the same kind).
    pub fn set_fault(&self, fault: Fault) {
        let mut f = lock(&self.shared.faults);
        match fault {
            Fault::Status(s) => f.status = Some(s),
            Fault::Delay(d) => f.delay = Some(d),
            Fault::InvalidJson => f.invalid_json = true,
            Fault::HugeBody(n) => f.huge_body = Some(n),
            Fault::Down => {
                self.shared.down.send_replace(true);
            }
        }
    }

    /// Switches every fault off (a [`Fault::Down`] server listens again on its port).
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = Faults::default();
        self.shared.down.send_replace(false);
    }

    /// The faults in force, and whether the server is down.
    pub fn faults(&self) -> (Faults, bool) {
        (
            lock(&self.shared.faults).clone(),
            *self.shared.down.borrow(),
        )
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let faults = lock(&self.shared.faults).clone();
        if let Some(d) = faults.delay {
            tokio::time::sleep(d).await;
        }
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return reply(413, &error_body(&format!("cannot read the body: {e}"))),
        };
        let (status, text) = self.answer(&method, &path, &body, &faults);
        let mut stats = lock(&self.shared.stats);
        stats.requests += 1;
        if method == Method::GET {
            *stats
                .gets
                .entry(path.split('?').next().unwrap_or_default().to_owned())
                .or_default() += 1;
        } else if method != Method::HEAD {
            stats.writes.push(WriteRecord {
                method: method.to_string(),
                path: path.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
        }
        drop(stats);
        debug!(%method, %path, status, "request");
        reply(status, &text)
    }

    fn answer(&self, method: &Method, path: &str, body: &[u8], faults: &Faults) -> (u16, String) {
        if let Some(s) = faults.status {
            return (s, error_body("fault: status"));
        }
        if faults.invalid_json {
            return (200, "<html>this is not JSON".to_owned());
        }
        let mut docs = lock(&self.shared.docs);
        match *method {
            Method::GET => match docs.get(path) {
                Some(doc) => match faults.huge_body {
                    Some(n) => (200, huge(doc, n)),
                    None => (200, doc.to_string()),
                },
                None => (404, error_body(&format!("no document at {path}"))),
            },
            Method::PUT | Method::POST | Method::PATCH => match docs.write(path, body) {
                Ok(doc) => (200, doc.to_string()),
                Err(e) => (e.status(), error_body(&e.to_string())),
            },
            _ => (405, error_body("use GET, PUT, POST or PATCH")),
        }
    }
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// `doc` padded to about `n` bytes of valid JSON.
fn huge(doc: &Json, n: usize) -> String {
    let pad = "x".repeat(n);
    let mut d = doc.clone();
    if let Json::Object(m) = &mut d {
        m.insert("padding".into(), Json::String(pad));
        d.to_string()
    } else {
        serde_json::json!({ "value": doc, "padding": pad }).to_string()
    }
}

fn reply(status: u16, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str("application/json") {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn tick_loop(sim: Simulator, stop: CancellationToken) {
    let mut every = tokio::time::interval(sim.shared.tick);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let mut rng = rand::rng();
                lock(&sim.shared.docs).tick(&mut rng);
            }
        }
    }
}

/// Accepts connections while up; when down, closes the port and every open connection,
/// and binds the same port again once the fault is cleared.
async fn accept_loop(
    sim: Simulator,
    first: TcpListener,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let mut down = sim.shared.down.subscribe();
    let mut listener = Some(first);
    loop {
        if *down.borrow_and_update() {
            listener = None;
        } else if listener.is_none() {
            listener = rebind(addr, &stop).await;
            if listener.is_none() {
                return;
            }
        }
        let generation = stop.child_token();
        let Some(l) = listener.as_ref() else {
            tokio::select! {
                () = stop.cancelled() => return,
                r = down.changed() => if r.is_err() { return },
            }
            continue;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = down.changed() => {
                    if r.is_err() { return }
                    if *down.borrow() {
                        generation.cancel();
                        break;
                    }
                }
                accepted = l.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    lock(&sim.shared.stats).connections += 1;
                    tokio::spawn(serve_connection(sim.clone(), stream, generation.clone()));
                }
            }
        }
    }
}

async fn rebind(addr: SocketAddr, stop: &CancellationToken) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => warn!(%addr, error = %e, "cannot listen again; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn serve_connection(sim: Simulator, stream: tokio::net::TcpStream, cut: CancellationToken) {
    let service = hyper::service::service_fn(move |req| {
        let sim = sim.clone();
        async move { Ok::<_, Infallible>(sim.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => if let Err(e) = r { debug!(error = %e, "connection ended") },
        () = cut.cancelled() => {}
    }
}
