//! The fake edgecore's `DeviceManagerService` on a Unix socket file, and [`Edgecore`],
//! the handle tests and the binary drive it with.
//!
//! Every call waits the injected latency (without holding the lock), then runs the
//! matching [`State`] function under the lock and records what happened as [`Event`]s,
//! ending with one [`Event::Called`] for the answer. Tests wait on events with
//! [`Edgecore::wait_for`], which wakes on every new event (no polling sleeps).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_manager_service_server::{
    DeviceManagerService, DeviceManagerServiceServer,
};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::conn::Killable;
use crate::fixtures::Fixtures;
use crate::limiter::{LimiterConfig, TokenBucket};
use crate::record::{At, Call, Event, Method, Registration, WaitTimeout};
use crate::state::State;
use crate::version::Version;

/// How long a stop waits for the server task before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the fake edgecore cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum EdgecoreError {
    /// The socket cannot be bound.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The socket file cannot be replaced or removed.
    #[error("cannot replace or remove the socket file {path}: {source}")]
    Unlink {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// State and event log shared by the handle and the gRPC handlers.
struct Shared {
    state: Mutex<State>,
    events: Mutex<Vec<Event>>,
    /// The number of recorded events; changes on every new event.
    count: watch::Sender<usize>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn events(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends events (the caller may hold the state lock: the order is state, events).
    fn publish(&self, new: Vec<Event>) {
        if new.is_empty() {
            return;
        }
        let n = {
            let mut log = self.events();
            log.extend(new);
            log.len()
        };
        self.count.send_replace(n);
    }

    async fn handle<Req, Resp>(
        &self,
        method: Method,
        req: Req,
        run: impl FnOnce(&mut State, Req, &mut Vec<Event>) -> Result<Resp, Status>,
    ) -> Result<Response<Resp>, Status> {
        let delay = {
            let mut s = self.state();
            *s.calls.entry(method).or_default() += 1;
            s.latency_for(method)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut s = self.state();
        let mut events = Vec::new();
        let result = run(&mut s, req, &mut events);
        let (code, message) = match &result {
            Ok(_) => (tonic::Code::Ok, String::new()),
            Err(st) => (st.code(), st.message().to_owned()),
        };
        events.push(Event::Called(Call {
            at: At::now(),
            method,
            code,
            message,
        }));
        self.publish(events);
        drop(s);
        result.map(Response::new)
    }
}

/// The gRPC service over the shared state.
struct Service(Arc<Shared>);

#[tonic::async_trait]
impl DeviceManagerService for Service {
    async fn mapper_register(
        &self,
        request: Request<pb::MapperRegisterRequest>,
    ) -> Result<Response<pb::MapperRegisterResponse>, Status> {
        self.0
            .handle(
                Method::MapperRegister,
                request.into_inner(),
                State::mapper_register,
            )
            .await
    }

    async fn report_device_status(
        &self,
        request: Request<pb::ReportDeviceStatusRequest>,
    ) -> Result<Response<pb::ReportDeviceStatusResponse>, Status> {
        self.0
            .handle(
                Method::ReportDeviceStatus,
                request.into_inner(),
                State::report_device_status,
            )
            .await
    }

    async fn report_device_states(
        &self,
        request: Request<pb::ReportDeviceStatesRequest>,
    ) -> Result<Response<pb::ReportDeviceStatesResponse>, Status> {
        self.0
            .handle(
                Method::ReportDeviceStates,
                request.into_inner(),
                State::report_device_states,
            )
            .await
    }
}

/// One listening period of the server (until a restart or stop).
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running fake edgecore: its `DeviceManagerService` on a socket file, its state and
/// the events it recorded.
pub struct Edgecore {
    shared: Arc<Shared>,
    socket: PathBuf,
    running: Option<Running>,
}

impl std::fmt::Debug for Edgecore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edgecore")
            .field("socket", &self.socket)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

/// Binds a socket at `path` with a new inode: bind on a temporary name next to it, then
/// rename over the path (edgecore 1.23 does the same). The old file, if any, still exists
/// while the new socket is created, so the inode always differs.
fn bind_fresh(path: &Path) -> Result<UnixListener, EdgecoreError> {
    let name = path
        .file_name()
        .map_or_else(|| "dmi.sock".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let unlink = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EdgecoreError::Unlink {
            path: p.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    };
    unlink(&tmp)?;
    let listener = UnixListener::bind(&tmp).map_err(|source| EdgecoreError::Bind {
        path: path.to_owned(),
        source,
    })?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(EdgecoreError::Unlink {
            path: path.to_owned(),
            source,
        });
    }
    Ok(listener)
}

fn serve(shared: Arc<Shared>, listener: UnixListener) -> Running {
    let cancel = CancellationToken::new();
    let conn_token = cancel.clone();
    let incoming =
        futures_util::stream::unfold((listener, conn_token), |(listener, token)| async move {
            let next = listener
                .accept()
                .await
                .map(|(stream, _)| Killable::new(stream, &token));
            Some((next, (listener, token)))
        });
    let svc = DeviceManagerServiceServer::new(Service(shared))
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(usize::MAX);
    let shutdown = cancel.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(e) = result {
            tracing::error!("dmi-sim: the server stopped: {e}");
        }
    });
    Running { cancel, task }
}

impl Edgecore {
    /// Starts serving on `socket` (an existing file is replaced), playing `version` with
    /// `fixtures` as the device cache and `limiter` (`None`: no rate limit).
    pub async fn start(
        socket: impl AsRef<Path>,
        version: Version,
        fixtures: Fixtures,
        limiter: Option<LimiterConfig>,
    ) -> Result<Self, EdgecoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(version, fixtures, limiter)),
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let mut me = Self {
            shared,
            socket: socket.as_ref().to_owned(),
            running: None,
        };
        me.listen()?;
        Ok(me)
    }

    fn listen(&mut self) -> Result<(), EdgecoreError> {
        let listener = bind_fresh(&self.socket)?;
        self.running = Some(serve(self.shared.clone(), listener));
        self.shared.state().starts += 1;
        self.shared.publish(vec![Event::Listening]);
        tracing::info!(socket = %self.socket.display(), "dmi-sim: listening");
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
            let abort = r.task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, r.task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What edgecore does on a restart: close the socket and every open connection,
    /// recreate the socket with a new inode, and forget (<= 1.22) or restore (1.23) the
    /// registered mappers ([`State::on_restart`]). Records [`Event::Listening`].
    pub async fn restart(&mut self) -> Result<(), EdgecoreError> {
        self.close().await;
        self.shared.state().on_restart();
        self.listen()
    }

    /// Stops serving and removes the socket file.
    pub async fn stop(mut self) -> Result<(), EdgecoreError> {
        self.close().await;
        match std::fs::remove_file(&self.socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EdgecoreError::Unlink {
                path: self.socket.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every event recorded so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events().clone()
    }

    /// How many events are recorded (a mark for [`Edgecore::wait_for_from`]).
    pub fn event_count(&self) -> usize {
        self.shared.events().len()
    }

    /// Events from index `from` on.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        self.shared
            .events()
            .get(from..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    /// A receiver of the event count; it changes whenever an event is recorded.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.shared.count.subscribe()
    }

    /// Waits until some recorded event (past or new) matches, for at most `deadline`.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&Event) -> bool,
        deadline: Duration,
    ) -> Result<Event, WaitTimeout> {
        self.wait_for_from(0, predicate, deadline).await
    }

    /// Waits until an event recorded at index `from` or later matches, for at most
    /// `deadline`.
    pub async fn wait_for_from(
        &self,
        from: usize,
        predicate: impl Fn(&Event) -> bool,
        deadline: Duration,
    ) -> Result<Event, WaitTimeout> {
        let mut rx = self.subscribe();
        let mut next = from;
        let wait = async {
            loop {
                rx.borrow_and_update();
                let new = self.events_since(next);
                next += new.len();
                if let Some(e) = new.into_iter().find(|e| predicate(e)) {
                    return Some(e);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(Some(e)) => Ok(e),
            _ => Err(WaitTimeout {
                what: "a matching dmi-sim event".into(),
                waited: deadline,
            }),
        }
    }

    /// The accepted registrations, in order.
    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.state().registrations.clone()
    }

    /// The address registered for `protocol` (the routing table), if any.
    pub fn route(&self, protocol: &str) -> Option<Vec<u8>> {
        self.shared.state().routes.get(protocol).cloned()
    }

    /// Sets the latency added to every call.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    /// Sets the latency of one method (overrides [`Edgecore::set_latency`]).
    pub fn set_method_latency(&self, method: Method, latency: Duration) {
        self.shared.state().method_latency.insert(method, latency);
    }

    /// Replaces the token bucket with a full one of `config` (`None`: no limit).
    pub fn set_limiter(&self, config: Option<LimiterConfig>) {
        self.shared.state().limiter =
            config.map(|c| TokenBucket::new(c, std::time::Instant::now()));
    }

    /// Runs `f` on the state under the lock (reads, or changes such as editing the
    /// fixtures). Do not block in `f`.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.state())
    }
}

impl Drop for Edgecore {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.cancel.cancel();
            r.task.abort();
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}
