//! A small, stateful fake Kubernetes API server for tests of the mapper's kube profile
//! sources.
//!
//! No real API server can run in CI here, and kube-rs's own mocks never stream a watch.
//! [`FakeApi`] listens on `127.0.0.1:0` and serves, for ConfigMaps and the KubeEdge
//! v1beta1 Devices and DeviceModels:
//!
//! - GET, LIST (with `fieldSelector` on `metadata.name`/`metadata.namespace`), CREATE,
//!   merge PATCH (RFC 7386), PUT and DELETE;
//! - WATCH: chunked newline-delimited JSON events from a `resourceVersion`, BOOKMARKs
//!   when asked for, `timeoutSeconds`, and an in-stream `ERROR` 410 (with HTTP 200) when
//!   the version is older than the compacted history, which makes a client re-list.
//!
//! Every object and every list carries `metadata.resourceVersion`, as real clients need.
//! Test hooks: [`FakeApi::expire_watches`] ends every open watch (clients resume from
//! their last version), [`FakeApi::force_410`] compacts the history and ends every watch
//! with an in-stream 410 (clients must re-list), [`FakeApi::freeze_watches`] stops
//! delivering events to open watches (events "lost in transit").
//!
//! ```no_run
//! # async fn demo() {
//! let api = kube_api_sim::FakeApi::start().await.unwrap();
//! let url = api.url(); // e.g. http://127.0.0.1:41234
//! # let _ = url;
//! # }
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::debug;

/// The resources this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Core v1 ConfigMap.
    ConfigMap,
    /// `devices.kubeedge.io/v1beta1` Device.
    Device,
    /// `devices.kubeedge.io/v1beta1` DeviceModel.
    DeviceModel,
}

impl Kind {
    /// The `apiVersion` of objects of this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::ConfigMap => "v1",
            Self::Device | Self::DeviceModel => "devices.kubeedge.io/v1beta1",
        }
    }

    /// The `kind` of objects of this kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Device => "Device",
            Self::DeviceModel => "DeviceModel",
        }
    }

    /// The plural used in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmaps",
            Self::Device => "devices",
            Self::DeviceModel => "devicemodels",
        }
    }

    fn from_path(group_version: &str, plural: &str) -> Option<Self> {
        match (group_version, plural) {
            ("v1", "configmaps") => Some(Self::ConfigMap),
            ("devices.kubeedge.io/v1beta1", "devices") => Some(Self::Device),
            ("devices.kubeedge.io/v1beta1", "devicemodels") => Some(Self::DeviceModel),
            _ => None,
        }
    }
}

type Key = (Kind, String, String);

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    namespace: String,
    name: String,
    kind_of_event: &'static str,
    object: Json,
}

#[derive(Debug, Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Json>,
    history: Vec<Event>,
    /// Watches from a version below this get an in-stream 410.
    compacted: u64,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    control: watch::Sender<(u64, bool)>,
    frozen: AtomicBool,
    bookmark_every: Mutex<Duration>,
    requests: Mutex<Vec<String>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake API server; it stops when dropped.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An error from a direct (non-HTTP) store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status the API would answer with.
    pub code: u16,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

fn api_err(code: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

impl FakeApi {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(1024);
        let (control, _) = watch::channel((0, false));
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            events,
            control,
            frozen: AtomicBool::new(false),
            bookmark_every: Mutex::new(Duration::from_secs(1)),
            requests: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(handle(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// Request lines served so far (`METHOD path?query`), for assertions.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How often watches that asked for bookmarks get one (default 1 s).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self
            .shared
            .bookmark_every
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = every;
    }

    /// Ends every open watch quietly; clients resume from their last version.
    pub fn expire_watches(&self) {
        self.shared.control.send_modify(|(n, gone)| {
            *n += 1;
            *gone = false;
        });
    }

    /// Compacts the history to the current version and ends every open watch with an
    /// in-stream `ERROR` 410; a client resuming from an older version gets 410 again and
    /// must re-list.
    pub fn force_410(&self) {
        {
            let mut st = self.shared.store();
            st.compacted = st.rv;
            st.history.clear();
        }
        self.shared.control.send_modify(|(n, gone)| {
            *n += 1;
            *gone = true;
        });
    }

    /// While frozen, open watches deliver no events (new watches still replay history).
    pub fn freeze_watches(&self, frozen: bool) {
        self.shared.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Creates an object (any JSON object with `metadata.name`).
    pub fn create(&self, kind: Kind, namespace: &str, object: Json) -> Result<Json, ApiError> {
        create(&self.shared, kind, namespace, object)
    }

    /// Merge-patches an object.
    pub fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Json,
    ) -> Result<Json, ApiError> {
        update(&self.shared, kind, namespace, name, |obj| {
            merge_patch(obj, patch);
        })
    }

    /// Replaces an object.
    pub fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: Json,
    ) -> Result<Json, ApiError> {
        update(&self.shared, kind, namespace, name, |obj| {
            let meta = obj.get("metadata").cloned();
            *obj = object;
            if let (Some(Json::Object(old)), Some(Json::Object(new))) =
                (meta, obj.get_mut("metadata"))
            {
                for k in ["uid", "creationTimestamp"] {
                    if let Some(v) = old.get(k) {
                        new.insert(k.into(), v.clone());
                    }
                }
            }
        })
    }

    /// Deletes an object; returns it as it was.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Json, ApiError> {
        delete(&self.shared, kind, namespace, name)
    }

    /// Reads an object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Json> {
        self.shared
            .store()
            .objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        404 => "NotFound",
        409 => "AlreadyExists",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        _ => "BadRequest",
    }
}

fn commit(st: &mut Store, shared: &Shared, ev: Event) {
    st.history.push(ev.clone());
    if st.history.len() > 10_000 {
        let cut = st.history.len() - 10_000;
        st.compacted = st.history[cut].rv;
        st.history.drain(..cut);
    }
    let _ = shared.events.send(ev);
}

fn create(
    shared: &Shared,
    kind: Kind,
    namespace: &str,
    mut object: Json,
) -> Result<Json, ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| api_err(400, "metadata.name is required"))?
        .to_owned();
    let Json::Object(map) = &mut object else {
        return Err(api_err(400, "the body is not a JSON object"));
    };
    map.insert("apiVersion".into(), kind.api_version().into());
    map.insert("kind".into(), kind.kind().into());
    let mut st = shared.store();
    let key = (kind, namespace.to_owned(), name.clone());
    if st.objects.contains_key(&key) {
        return Err(api_err(
            409,
            format!("{} {namespace}/{name} already exists", kind.plural()),
        ));
    }
    st.rv += 1;
    st.uid += 1;
    let rv = st.rv;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| api_err(400, "metadata is not an object"))?;
    meta.insert("namespace".into(), namespace.into());
    meta.insert("resourceVersion".into(), rv.to_string().into());
    meta.insert(
        "uid".into(),
        format!("00000000-0000-0000-0000-{:012}", st.uid).into(),
    );
    meta.insert("creationTimestamp".into(), "2024-01-01T00:00:00Z".into());
    st.objects.insert(key, object.clone());
    let ev = Event {
        rv,
        kind,
        namespace: namespace.into(),
        name,
        kind_of_event: "ADDED",
        object: object.clone(),
    };
    commit(&mut st, shared, ev);
    Ok(object)
}

fn update(
    shared: &Shared,
    kind: Kind,
    namespace: &str,
    name: &str,
    f: impl FnOnce(&mut Json),
) -> Result<Json, ApiError> {
    let mut st = shared.store();
    let key = (kind, namespace.to_owned(), name.to_owned());
    let Some(mut object) = st.objects.get(&key).cloned() else {
        return Err(api_err(
            404,
            format!("{} {namespace}/{name} not found", kind.plural()),
        ));
    };
    f(&mut object);
    let Json::Object(map) = &mut object else {
        return Err(api_err(400, "the result is not a JSON object"));
    };
    map.insert("apiVersion".into(), kind.api_version().into());
    map.insert("kind".into(), kind.kind().into());
    st.rv += 1;
    let rv = st.rv;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Json::Object(meta) = meta {
        meta.insert("name".into(), name.into());
        meta.insert("namespace".into(), namespace.into());
        meta.insert("resourceVersion".into(), rv.to_string().into());
    }
    st.objects.insert(key, object.clone());
    let ev = Event {
        rv,
        kind,
        namespace: namespace.into(),
        name: name.into(),
        kind_of_event: "MODIFIED",
        object: object.clone(),
    };
    commit(&mut st, shared, ev);
    Ok(object)
}

fn delete(shared: &Shared, kind: Kind, namespace: &str, name: &str) -> Result<Json, ApiError> {
    let mut st = shared.store();
    let key = (kind, namespace.to_owned(), name.to_owned());
    let Some(mut object) = st.objects.remove(&key) else {
        return Err(api_err(
            404,
            format!("{} {namespace}/{name} not found", kind.plural()),
        ));
    };
    st.rv += 1;
    let rv = st.rv;
    if let Some(Json::Object(meta)) = object.get_mut("metadata") {
        meta.insert("resourceVersion".into(), rv.to_string().into());
    }
    let ev = Event {
        rv,
        kind,
        namespace: namespace.into(),
        name: name.into(),
        kind_of_event: "DELETED",
        object: object.clone(),
    };
    commit(&mut st, shared, ev);
    Ok(object)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Json::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

/// A parsed request path.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        _ => return None,
    };
    Some(Target {
        kind: Kind::from_path(&gv, plural)?,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `metadata.name=x,metadata.namespace=y` as (field, value) pairs; other fields are
/// rejected.
fn field_selector(s: Option<&String>) -> Result<Vec<(String, String)>, String> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    s.split(',')
        .map(|term| {
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| format!("invalid field selector term {term:?}"))?;
            match k {
                "metadata.name" | "metadata.namespace" => Ok((k.to_owned(), v.to_owned())),
                other => Err(format!("field label not supported: {other}")),
            }
        })
        .collect()
}

struct Filter {
    kind: Kind,
    namespace: Option<String>,
    fields: Vec<(String, String)>,
}

impl Filter {
    fn matches(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        kind == self.kind
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.fields.iter().all(|(k, v)| match k.as_str() {
                "metadata.name" => v == name,
                _ => v == namespace,
            })
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(code: u16, body: &Json) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &status(e.code, reason(e.code), &e.message))
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{method} {uri}"));
    debug!(%method, %uri, "request");
    let Some(target) = parse_path(uri.path()) else {
        return error_response(&api_err(404, format!("no resource at {}", uri.path())));
    };
    let q = query(uri.query());
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&api_err(400, format!("cannot read the body: {e}"))),
    };
    let parse_body = || -> Result<Json, ApiError> {
        serde_json::from_slice(&body).map_err(|e| api_err(400, format!("invalid JSON body: {e}")))
    };
    let ns = target.namespace.clone().unwrap_or_default();
    let result = match (&method, &target.name) {
        (&Method::GET, Some(name)) => shared
            .store()
            .objects
            .get(&(target.kind, ns.clone(), name.clone()))
            .cloned()
            .ok_or_else(|| {
                api_err(
                    404,
                    format!("{} {ns}/{name} not found", target.kind.plural()),
                )
            }),
        (&Method::GET, None) => {
            let fields = match field_selector(q.get("fieldSelector")) {
                Ok(f) => f,
                Err(e) => return error_response(&api_err(400, e)),
            };
            let filter = Filter {
                kind: target.kind,
                namespace: target.namespace.clone(),
                fields,
            };
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                return watch_response(shared, filter, &q);
            }
            Ok(list(shared, &filter))
        }
        (&Method::POST, None) => {
            if target.namespace.is_none() {
                Err(api_err(400, "create needs a namespace in the path"))
            } else {
                parse_body().and_then(|obj| create(shared, target.kind, &ns, obj))
            }
        }
        (&Method::PATCH, Some(name)) => {
            if content_type.starts_with("application/merge-patch+json")
                || content_type.starts_with("application/json")
            {
                parse_body().and_then(|p| {
                    update(shared, target.kind, &ns, name, |obj| merge_patch(obj, &p))
                })
            } else {
                Err(api_err(
                    415,
                    format!("only merge patches are supported, not {content_type:?}"),
                ))
            }
        }
        (&Method::PUT, Some(name)) => {
            parse_body().and_then(|obj| update(shared, target.kind, &ns, name, |o| *o = obj))
        }
        (&Method::DELETE, Some(name)) => delete(shared, target.kind, &ns, name),
        _ => Err(api_err(405, format!("{method} is not supported here"))),
    };
    match result {
        Ok(v) => json_response(if method == Method::POST { 201 } else { 200 }, &v),
        Err(e) => error_response(&e),
    }
}

fn list(shared: &Shared, filter: &Filter) -> Json {
    let st = shared.store();
    let items: Vec<Json> = st
        .objects
        .iter()
        .filter(|((k, ns, name), _)| filter.matches(*k, ns, name))
        .map(|(_, v)| v.clone())
        .collect();
    json!({
        "apiVersion": filter.kind.api_version(),
        "kind": format!("{}List", filter.kind.kind()),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    })
}

fn line(v: &Json) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn gone_event(rv: &str) -> Json {
    json!({
        "type": "ERROR",
        "object": status(410, "Expired", &format!("too old resource version: {rv}")),
    })
}

fn watch_response(
    shared: &Arc<Shared>,
    filter: Filter,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let rv_text = q.get("resourceVersion").cloned().unwrap_or_default();
    // Snapshot the replay and subscribe under the store lock, so nothing falls between.
    let mut control = shared.control.subscribe();
    control.mark_unchanged();
    let (initial, mut events, current_rv): (Result<Vec<Json>, ()>, _, u64) = {
        let st = shared.store();
        let events = shared.events.subscribe();
        let initial = match rv_text.parse::<u64>() {
            Ok(rv) if rv != 0 => {
                if rv < st.compacted {
                    Err(())
                } else {
                    Ok(st
                        .history
                        .iter()
                        .filter(|e| e.rv > rv && filter.matches(e.kind, &e.namespace, &e.name))
                        .map(|e| json!({"type": e.kind_of_event, "object": e.object}))
                        .collect())
                }
            }
            // No (or "0") version: the current objects as ADDED events.
            _ => Ok(st
                .objects
                .iter()
                .filter(|((k, ns, name), _)| filter.matches(*k, ns, name))
                .map(|(_, v)| json!({"type": "ADDED", "object": v}))
                .collect()),
        };
        (initial, events, st.rv)
    };
    let shared = Arc::clone(shared);
    let kind = filter.kind;
    tokio::spawn(async move {
        let lines = match initial {
            Ok(l) => l,
            Err(()) => {
                let _ = tx.send(line(&gone_event(&rv_text))).await;
                return;
            }
        };
        for l in lines {
            if tx.send(line(&l)).await.is_err() {
                return;
            }
        }
        let mut last_rv = current_rv;
        let every = *shared
            .bookmark_every
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let gone = control.borrow_and_update().1;
                    if gone {
                        let _ = tx.send(line(&gone_event(&last_rv.to_string()))).await;
                    }
                    return;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        if shared.frozen.load(Ordering::SeqCst) {
                            continue;
                        }
                        last_rv = last_rv.max(ev.rv);
                        if filter.matches(ev.kind, &ev.namespace, &ev.name) {
                            let l = json!({"type": ev.kind_of_event, "object": ev.object});
                            if tx.send(line(&l)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(line(&gone_event(&last_rv.to_string()))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if shared.frozen.load(Ordering::SeqCst) {
                        continue;
                    }
                    let b = json!({
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": kind.api_version(),
                            "kind": kind.kind(),
                            "metadata": {"resourceVersion": last_rv.to_string()},
                        },
                    });
                    if tx.send(line(&b)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_and_queries_parse() {
        assert_eq!(
            parse_path("/api/v1/namespaces/default/configmaps/x"),
            Some(Target {
                kind: Kind::ConfigMap,
                namespace: Some("default".into()),
                name: Some("x".into())
            })
        );
        assert_eq!(
            parse_path("/apis/devices.kubeedge.io/v1beta1/devices").map(|t| t.kind),
            Some(Kind::Device)
        );
        assert!(parse_path("/apis/apps/v1/deployments").is_none());
        let q = query(Some("fieldSelector=metadata.name%3Dfoo&watch=true"));
        assert_eq!(q["fieldSelector"], "metadata.name=foo");
        assert_eq!(
            field_selector(q.get("fieldSelector")).unwrap(),
            vec![("metadata.name".to_owned(), "foo".to_owned())]
        );
        assert!(field_selector(Some(&"spec.x=1".to_owned())).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut t, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(t, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
