//! The real stack: [`GattConnector`] and [`GattLink`] on btleplug 0.13 (BlueZ over D-Bus).
//!
//! One [`BtleplugConnector`] is owned by the driver and shared by all its devices. It opens
//! the D-Bus session lazily (on the first connect) and keeps one handle per adapter with
//! two tasks: an event dispatcher (the adapter's single event stream: discovered devices
//! for scans, disconnections for the links) and a scanner that keeps discovery running
//! while at least one device is being searched for. Devices are found by address among the
//! devices BlueZ knows, else by scanning. Each connection discovers services once and
//! caches the characteristics; a forwarder task moves its value changes into a bounded
//! channel. Tasks are aborted when their owner (link or adapter handle) is dropped.
//!
//! The adapter is chosen by name (`adapter: hci1`), or the first in name order
//! (`hci0`, `hci1`, ..., `hci10`): BlueZ lists adapters in no stable order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use btleplug::api::{
    BDAddr, Central, CentralEvent, CharPropFlags, Characteristic, Manager as _, Peripheral as _,
    ScanFilter, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures_util::{Stream, StreamExt};
use tokio::sync::{OnceCell, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::MacAddr;
use crate::link::{CharFlags, GattConnector, GattLink, LinkError, LinkEvent, Target};

/// Value changes buffered per connection before the forwarder waits.
const EVENT_BUFFER: usize = 256;

/// The btleplug stack, shared by all devices of a driver (cheap to clone).
#[derive(Clone, Default)]
pub struct BtleplugConnector {
    shared: Arc<Shared>,
}

impl fmt::Debug for BtleplugConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BtleplugConnector")
            .field("session", &self.shared.manager.initialized())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    manager: OnceCell<Manager>,
    adapters: tokio::sync::Mutex<HashMap<String, Arc<AdapterHandle>>>,
}

type DisconnectMap = Arc<Mutex<HashMap<PeripheralId, (u64, watch::Sender<bool>)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct AdapterHandle {
    name: String,
    adapter: Adapter,
    /// How many connects are waiting for a scan.
    scan_wanted: watch::Sender<usize>,
    /// Devices seen (discovered or updated) while the dispatcher runs.
    discovered: broadcast::Sender<PeripheralId>,
    /// Connected links, told when their device disconnects.
    disconnects: DisconnectMap,
    next_registration: AtomicU64,
    alive: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AdapterHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps a scan running while it lives.
struct ScanGuard(Arc<AdapterHandle>);

impl ScanGuard {
    fn new(h: Arc<AdapterHandle>) -> Self {
        h.scan_wanted.send_modify(|n| *n += 1);
        Self(h)
    }
}

impl Drop for ScanGuard {
    fn drop(&mut self) {
        self.0.scan_wanted.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn stack_err(what: &str, e: &btleplug::Error) -> LinkError {
    match e {
        btleplug::Error::NotConnected | btleplug::Error::DeviceNotFound => {
            LinkError::Disconnected(format!("{what}: {e}"))
        }
        btleplug::Error::TimedOut(_) => LinkError::Timeout(format!("{what}: {e}")),
        btleplug::Error::NoAdapterAvailable => LinkError::Adapter(format!("{what}: {e}")),
        _ => LinkError::Disconnected(format!("{what}: {e}")),
    }
}

impl AdapterHandle {
    async fn open(name: String, adapter: Adapter) -> Result<Arc<Self>, LinkError> {
        let events = adapter
            .events()
            .await
            .map_err(|e| LinkError::Adapter(format!("{name}: cannot watch events: {e}")))?;
        let (scan_wanted, scan_rx) = watch::channel(0usize);
        let (discovered, _) = broadcast::channel(256);
        let disconnects: DisconnectMap = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let dispatcher = tokio::spawn(dispatch(
            name.clone(),
            events,
            discovered.clone(),
            Arc::clone(&disconnects),
            Arc::clone(&alive),
        ));
        let scanner = tokio::spawn(scanner(name.clone(), adapter.clone(), scan_rx));
        Ok(Arc::new(Self {
            name,
            adapter,
            scan_wanted,
            discovered,
            disconnects,
            next_registration: AtomicU64::new(1),
            alive,
            tasks: vec![dispatcher, scanner],
        }))
    }

    async fn known(&self, addr: BDAddr) -> Result<Option<Peripheral>, LinkError> {
        let all =
            self.adapter.peripherals().await.map_err(|e| {
                LinkError::Adapter(format!("{}: cannot list devices: {e}", self.name))
            })?;
        Ok(all.into_iter().find(|p| p.address() == addr))
    }

    /// Finds a device by address: among the known ones, else by scanning until it shows up
    /// (the caller bounds the time).
    async fn find(self: &Arc<Self>, mac: MacAddr) -> Result<Peripheral, LinkError> {
        let addr = BDAddr::from(mac.0);
        let mut seen = self.discovered.subscribe();
        if let Some(p) = self.known(addr).await? {
            return Ok(p);
        }
        debug!(adapter = %self.name, device = %mac, "scanning");
        let _scan = ScanGuard::new(Arc::clone(self));
        let mut checked = HashSet::new();
        loop {
            match seen.recv().await {
                Ok(id) => {
                    if checked.contains(&id) {
                        continue;
                    }
                    if let Ok(p) = self.adapter.peripheral(&id).await {
                        if p.address() == addr {
                            debug!(adapter = %self.name, device = %mac, "found");
                            return Ok(p);
                        }
                        checked.insert(id);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(p) = self.known(addr).await? {
                        return Ok(p);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(LinkError::Adapter(format!(
                        "{}: the adapter's event stream ended",
                        self.name
                    )));
                }
            }
        }
    }
}

async fn dispatch(
    adapter: String,
    mut events: Pin<Box<dyn Stream<Item = CentralEvent> + Send>>,
    discovered: broadcast::Sender<PeripheralId>,
    disconnects: DisconnectMap,
    alive: Arc<AtomicBool>,
) {
    while let Some(event) = events.next().await {
        match event {
            CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id) => {
                let _ = discovered.send(id);
            }
            CentralEvent::DeviceDisconnected(id) => {
                if let Some((_, tx)) = lock(&disconnects).get(&id) {
                    let _ = tx.send(true);
                }
            }
            _ => {}
        }
    }
    alive.store(false, Ordering::SeqCst);
    // Links can no longer hear about disconnections: tell them all now.
    for (_, tx) in lock(&disconnects).values() {
        let _ = tx.send(true);
    }
    warn!(adapter = %adapter, "the adapter's event stream ended; it will be reopened on the next connect");
}

async fn scanner(adapter_name: String, adapter: Adapter, mut wanted: watch::Receiver<usize>) {
    let mut scanning = false;
    loop {
        let want = *wanted.borrow_and_update() > 0;
        if want != scanning {
            let result = if want {
                adapter.start_scan(ScanFilter::default()).await
            } else {
                adapter.stop_scan().await
            };
            match result {
                Ok(()) => {
                    scanning = want;
                    debug!(adapter = %adapter_name, scanning, "scan state changed");
                }
                Err(e) => {
                    warn!(adapter = %adapter_name, error = %e, want, "cannot change the scan state");
                    scanning = false;
                }
            }
        }
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

impl BtleplugConnector {
    async fn adapter(&self, wanted: Option<&str>) -> Result<Arc<AdapterHandle>, LinkError> {
        let manager = self
            .shared
            .manager
            .get_or_try_init(Manager::new)
            .await
            .map_err(|e| LinkError::Adapter(format!("cannot reach BlueZ over D-Bus: {e}")))?;
        let mut map = self.shared.adapters.lock().await;
        map.retain(|_, h| h.alive.load(Ordering::SeqCst));
        if let Some(h) = wanted.and_then(|n| map.get(n)) {
            return Ok(Arc::clone(h));
        }
        let adapters = manager
            .adapters()
            .await
            .map_err(|e| LinkError::Adapter(format!("cannot list adapters: {e}")))?;
        let mut named = Vec::with_capacity(adapters.len());
        for a in adapters {
            let info = a
                .adapter_info()
                .await
                .map_err(|e| LinkError::Adapter(format!("cannot read adapter info: {e}")))?;
            let name = info
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            named.push((name, a));
        }
        // Name order, with numbers compared as numbers: hci2 before hci10.
        named.sort_by(|(a, _), (b, _)| (a.len(), a).cmp(&(b.len(), b)));
        let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        let chosen = match wanted {
            Some(w) => named.into_iter().find(|(n, _)| n == w).ok_or_else(|| {
                LinkError::Adapter(format!("no adapter named {w}; found {names:?}"))
            })?,
            None => named
                .into_iter()
                .next()
                .ok_or_else(|| LinkError::Adapter("no bluetooth adapter found".into()))?,
        };
        if let Some(h) = map.get(&chosen.0) {
            return Ok(Arc::clone(h));
        }
        let (name, adapter) = chosen;
        let h = AdapterHandle::open(name.clone(), adapter).await?;
        info!(adapter = %name, available = ?names, "using bluetooth adapter");
        map.insert(name, Arc::clone(&h));
        Ok(h)
    }

    async fn open_link(&self, target: &Target, deadline: Instant) -> Result<BtleLink, LinkError> {
        let mac = target.mac;
        let handle = timeout_at(deadline, self.adapter(target.adapter.as_deref()))
            .await
            .map_err(|_| LinkError::Timeout("opening the bluetooth adapter".into()))??;
        let peripheral = timeout_at(deadline, handle.find(mac))
            .await
            .map_err(|_| LinkError::NotFound(mac))??;
        let id = peripheral.id();
        // Register for the disconnect event before connecting, so none is missed.
        let registration = handle.next_registration.fetch_add(1, Ordering::SeqCst);
        let (lost_tx, lost) = watch::channel(false);
        lock(&handle.disconnects).insert(id.clone(), (registration, lost_tx));
        let guard = Registration {
            handle: Arc::clone(&handle),
            id: id.clone(),
            registration,
        };
        let setup = async {
            if !peripheral.is_connected().await.unwrap_or(false) {
                peripheral
                    .connect()
                    .await
                    .map_err(|e| stack_err("connect", &e))?;
            }
            peripheral
                .discover_services()
                .await
                .map_err(|e| stack_err("service discovery", &e))?;
            let stream = peripheral
                .notifications()
                .await
                .map_err(|e| stack_err("notification stream", &e))?;
            Ok::<_, LinkError>(stream)
        };
        let stream = match timeout_at(deadline, setup).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = peripheral.disconnect().await;
                return Err(e);
            }
            Err(_) => {
                let _ = peripheral.disconnect().await;
                return Err(LinkError::Timeout(format!(
                    "connecting {mac} took longer than {:?}",
                    target.timeout
                )));
            }
        };
        let mut chars: HashMap<Uuid, Characteristic> = HashMap::new();
        for c in peripheral.characteristics() {
            chars.entry(c.uuid).or_insert(c);
        }
        let (tx, events) = mpsc::channel(EVENT_BUFFER);
        let forwarder = tokio::spawn(forward(stream, tx));
        debug!(adapter = %handle.name, device = %mac, characteristics = chars.len(), "connected");
        Ok(BtleLink {
            mac,
            peripheral,
            chars,
            events,
            lost,
            forwarder,
            _registration: guard,
        })
    }
}

async fn forward(
    mut stream: Pin<Box<dyn Stream<Item = btleplug::api::ValueNotification> + Send>>,
    tx: mpsc::Sender<LinkEvent>,
) {
    while let Some(n) = stream.next().await {
        if tx.send(LinkEvent::Value(n.uuid, n.value)).await.is_err() {
            return;
        }
    }
}

impl GattConnector for BtleplugConnector {
    type Link = BtleLink;

    async fn connect(&self, target: &Target) -> Result<BtleLink, LinkError> {
        let deadline = Instant::now() + target.timeout;
        self.open_link(target, deadline).await
    }
}

/// Removes a link's disconnect registration when the link goes away.
struct Registration {
    handle: Arc<AdapterHandle>,
    id: PeripheralId,
    registration: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = lock(&self.handle.disconnects);
        if map
            .get(&self.id)
            .is_some_and(|(r, _)| *r == self.registration)
        {
            map.remove(&self.id);
        }
    }
}

/// One btleplug connection.
pub struct BtleLink {
    mac: MacAddr,
    peripheral: Peripheral,
    chars: HashMap<Uuid, Characteristic>,
    events: mpsc::Receiver<LinkEvent>,
    lost: watch::Receiver<bool>,
    forwarder: JoinHandle<()>,
    _registration: Registration,
}

impl fmt::Debug for BtleLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BtleLink")
            .field("mac", &self.mac)
            .field("characteristics", &self.chars.len())
            .finish_non_exhaustive()
    }
}

impl Drop for BtleLink {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl BtleLink {
    fn char(&self, uuid: &Uuid) -> Result<Characteristic, LinkError> {
        self.chars
            .get(uuid)
            .cloned()
            .ok_or(LinkError::NoCharacteristic(*uuid))
    }

    /// Classifies a failed request: a lost link, or a refusal by a connected device.
    async fn classify(&mut self, what: &str, e: btleplug::Error) -> LinkError {
        match e {
            btleplug::Error::NotConnected | btleplug::Error::DeviceNotFound => {
                LinkError::Disconnected(format!("{what}: {e}"))
            }
            btleplug::Error::TimedOut(_) => LinkError::Timeout(format!("{what}: {e}")),
            other => {
                if self.is_connected().await {
                    LinkError::Refused(format!("{what}: {other}"))
                } else {
                    LinkError::Disconnected(format!("{what}: {other}"))
                }
            }
        }
    }
}

impl GattLink for BtleLink {
    fn characteristic(&self, uuid: &Uuid) -> Option<CharFlags> {
        self.chars.get(uuid).map(|c| {
            let p = c.properties;
            CharFlags {
                read: p.contains(CharPropFlags::READ),
                write: p.contains(CharPropFlags::WRITE),
                write_without_response: p.contains(CharPropFlags::WRITE_WITHOUT_RESPONSE),
                notify: p.contains(CharPropFlags::NOTIFY),
                indicate: p.contains(CharPropFlags::INDICATE),
            }
        })
    }

    async fn read(&mut self, uuid: &Uuid) -> Result<Vec<u8>, LinkError> {
        let c = self.char(uuid)?;
        match self.peripheral.read(&c).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.classify("read", e).await),
        }
    }

    async fn write(
        &mut self,
        uuid: &Uuid,
        data: &[u8],
        with_response: bool,
    ) -> Result<(), LinkError> {
        let c = self.char(uuid)?;
        let kind = if with_response {
            WriteType::WithResponse
        } else {
            WriteType::WithoutResponse
        };
        match self.peripheral.write(&c, data, kind).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.classify("write", e).await),
        }
    }

    async fn subscribe(&mut self, uuid: &Uuid) -> Result<(), LinkError> {
        let c = self.char(uuid)?;
        match self.peripheral.subscribe(&c).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.classify("subscribe", e).await),
        }
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        loop {
            if *self.lost.borrow_and_update() {
                return Some(LinkEvent::Disconnected);
            }
            // Both branches are cancel-safe.
            tokio::select! {
                biased;
                event = self.events.recv() => return event,
                changed = self.lost.changed() => if changed.is_err() {
                    return None;
                },
            }
        }
    }

    async fn is_connected(&mut self) -> bool {
        !*self.lost.borrow() && self.peripheral.is_connected().await.unwrap_or(false)
    }

    async fn disconnect(&mut self) {
        if let Err(e) = self.peripheral.disconnect().await {
            debug!(device = %self.mac, error = %e, "disconnect failed");
        }
    }
}
