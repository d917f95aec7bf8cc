//! KubeEdge DMI v1beta1 (KubeEdge 1.15 and later): edgecore as the profile source and,
//! by default, the report sink.
//!
//! The mapper serves `DeviceMapperService` first (on a Linux abstract socket by default,
//! see [`dmi_api::transport`] for why), then registers with edgecore
//! (`MapperRegister`, `withData`) once per protocol name, with retries and backoff, and
//! again when edgecore restarts (its socket file changes, or calls to it fail and then
//! work again) and periodically. Devices and models from the registration answer and
//! from edgecore's life-cycle calls go into a [`store::Store`]; the store is rendered as
//! v1beta1 resources and fed to the same resolve -> bind -> reconcile path as every
//! other source, so drivers never know which contract is in use. Desired values of
//! `UpdateDevice` become writes through the same path as MQTT deltas.
//!
//! Reports go to edgecore with `ReportDeviceStatus` / `ReportDeviceStates` under a
//! node-wide budget below edgecore's limiter ([`budget`], [`queue`]), or over MQTT on
//! `{namespace}/{name}` topics ([`ReportPath::Mqtt`]); data properties always go to MQTT.

pub mod budget;
pub mod convert;
pub mod queue;
mod register;
pub mod server;
mod sink;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use dmi_api::transport::{Address, Listener};
use dmi_api::v1beta1::device_mapper_service_server::DeviceMapperServiceServer;

use crate::model::DeviceId;
use crate::mqtt::MqttSettings;
use crate::runtime::{Inbound, Outbound};
use budget::TokenBucket;
use store::Store;

pub use crate::dmi_config::{DmiSettings, ReportPath};

/// Why DMI could not start.
#[derive(Debug, Error)]
pub enum DmiError {
    /// The listen address is unusable.
    #[error("dmi: grpc_server.socket_path: {0}")]
    Address(#[from] dmi_api::transport::AddressError),
    /// The socket cannot be bound.
    #[error("dmi: cannot serve on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// State shared by the server, the registrar, the renderer and the sink.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The store changed: render it.
    changed: Notify,
    /// Last values read, by device (for GetDevice).
    latest: Mutex<HashMap<DeviceId, BTreeMap<String, String>>>,
    /// The node-wide budget of calls to edgecore.
    budget: Mutex<TokenBucket>,
    /// edgecore answered again after failures: register again.
    edgecore_back: Notify,
    /// Increases after every successful registration round.
    epoch: watch::Sender<u64>,
    settings: DmiSettings,
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn latest_values(&self, id: &DeviceId) -> BTreeMap<String, String> {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for a budget token (never holding the lock across the wait).
    async fn take_token(&self, cancel: &CancellationToken) -> bool {
        loop {
            let wait = {
                let mut b = self
                    .budget
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match b.take(Instant::now()) {
                    Ok(()) => return true,
                    Err(w) => w,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn drain_budget(&self) {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(Instant::now());
    }

    fn call_accepted(&self) {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .accepted();
    }

    fn budget_rate(&self) -> f64 {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rate()
    }
}

/// The running DMI side.
pub struct Dmi {
    registrations: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
    sink: JoinHandle<()>,
    cancel: CancellationToken,
    sink_stop: CancellationToken,
}

impl Dmi {
    /// Serves, registers and reports. `out` carries the runtime's reports; `prof` receives
    /// the rendered device list; `inbound` is handed to the MQTT client when one is needed.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        settings: DmiSettings,
        default_protocol: &str,
        version: &str,
        mqtt: MqttSettings,
        out: mpsc::Receiver<Outbound>,
        inbound: mpsc::Sender<Inbound>,
        prof: watch::Sender<Option<Arc<String>>>,
        cancel: CancellationToken,
    ) -> Result<Self, DmiError> {
        let mut settings = settings;
        if settings.protocols.is_empty() {
            settings.protocols.push(default_protocol.to_owned());
        }
        let listen_text = settings.listen.clone().unwrap_or_else(|| {
            let p: String = settings.protocols[0]
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("@kubeedge.{p}-mapper")
        });
        let address = Address::parse(&listen_text)?;
        if matches!(address, Address::Path(_)) {
            warn!(address = %address, "dmi: serving on a socket file; edgecore's grpc-go sends the path as the HTTP/2 authority, which this server refuses; use an @name (abstract socket) for edgecore");
        }
        let uids = settings.allowed_uids.clone().unwrap_or_else(|| {
            let mut u = vec![0];
            if let Some(own) = own_uid().filter(|u| *u != 0) {
                u.push(own);
            }
            u
        });
        let bind = |a: &Address| {
            let a = a.clone();
            async move {
                Listener::bind(&a).await.map_err(|source| DmiError::Bind {
                    address: a.to_text(),
                    source,
                })
            }
        };
        let listener = bind(&address).await?.allow_uids(uids.clone());
        let debug = match &settings.debug_socket {
            Some(p) => Some(bind(&Address::Path(p.clone())).await?.allow_uids(uids)),
            None => None,
        };
        let (epoch, epoch_rx) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(settings.remove_after)),
            changed: Notify::new(),
            latest: Mutex::new(HashMap::new()),
            budget: Mutex::new(TokenBucket::new(
                settings.rate,
                settings.burst,
                Instant::now(),
            )),
            edgecore_back: Notify::new(),
            epoch,
            settings: settings.clone(),
        });
        let service = MapperService {
            shared: Arc::clone(&shared),
        };
        let mut tasks = Vec::new();
        info!(address = %address, protocols = ?settings.protocols, edgecore = %settings.edgecore_socket_file().display(), report = ?settings.report, "dmi: serving DeviceMapperService");
        tasks.push(tokio::spawn(serve(
            listener,
            service.clone(),
            cancel.child_token(),
        )));
        if let Some(l) = debug {
            tasks.push(tokio::spawn(serve(l, service, cancel.child_token())));
        }
        tasks.push(tokio::spawn(render_loop(
            Arc::clone(&shared),
            prof,
            cancel.child_token(),
        )));
        tasks.push(tokio::spawn(register::run(
            Arc::clone(&shared),
            address.to_text(),
            version.to_owned(),
            cancel.child_token(),
        )));
        let registrations = shared.epoch.subscribe();
        let sink_stop = CancellationToken::new();
        let sink = tokio::spawn(sink::run(
            Arc::clone(&shared),
            out,
            mqtt,
            inbound,
            epoch_rx,
            sink_stop.clone(),
        ));
        Ok(Self {
            registrations,
            tasks,
            sink,
            cancel,
            sink_stop,
        })
    }

    /// Counts successful registration rounds (0 until the mapper first registered).
    pub fn registrations(&self) -> watch::Receiver<u64> {
        self.registrations.clone()
    }

    /// Stops serving and registering, then lets the sink send what waits (the devices'
    /// last states) for up to `grace`.
    pub async fn finish(self, grace: Duration) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let stop = self.sink_stop.clone();
        let sink = self.sink;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            stop.cancel();
        });
        let _ = sink.await;
    }
}

use server::MapperService;

async fn serve(listener: Listener, service: MapperService, cancel: CancellationToken) {
    let address = listener.address().to_text();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let mut refused = |uid: Option<u32>| {
            warn!(uid = ?uid, "dmi: refused a connection from a process that is not edgecore (uid not allowed; see dmi.allowedUids)");
        };
        let next = l.accept(&mut refused).await;
        Some((next, l))
    });
    let svc = DeviceMapperServiceServer::new(service)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let result = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(address = %address, "dmi: the server stopped: {e}");
    }
}

/// Renders the store whenever it changed (changes within 20 ms are rendered once).
async fn render_loop(
    shared: Arc<Shared>,
    prof: watch::Sender<Option<Arc<String>>>,
    cancel: CancellationToken,
) {
    let mut last = u64::MAX;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.changed.notified() => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (generation, text, parked) = {
            let s = shared.lock_store();
            (s.generation(), s.render(), s.parked())
        };
        if !parked.is_empty() {
            info!(devices = ?parked, "dmi: devices wait for their DeviceModel");
        }
        if generation != last {
            last = generation;
            let _ = prof.send(Some(Arc::new(text)));
        }
    }
}

fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}
