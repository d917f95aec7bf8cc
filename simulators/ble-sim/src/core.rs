//! The simulator's state and the BlueZ behaviours that change it.
//!
//! One [`Core`] is shared by every exported D-Bus object and by the
//! library API. Data lives behind a std mutex that is never held across an
//! `.await`; each device also has an async "link" mutex that serializes its
//! connection lifecycle (connect, disconnect, link drop, removal), so the
//! signal order of one device is always the BlueZ order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::SeedableRng;
use rand::rngs::StdRng;
use zbus::Connection;
use zbus::fdo::Properties;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::config::{
    AdapterSpec, Appear, CharFlag, DeviceSpec, FaultSpec, ReadErrorKind, SimConfig,
};
use crate::error::{BluezError, SimError};
use crate::ids::{BleUuid, MacAddr};
use crate::objects::{CharIface, DescIface, DeviceIface, ServiceIface};
use crate::value::FieldSpec;

pub(crate) const ADAPTER_IFACE: &str = "org.bluez.Adapter1";
pub(crate) const DEVICE_IFACE: &str = "org.bluez.Device1";
pub(crate) const CHAR_IFACE: &str = "org.bluez.GattCharacteristic1";

/// How a write reached a characteristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Write request (`type: request`), acknowledged by the peripheral.
    Request,
    /// Write command (`type: command`), without response.
    Command,
    /// Reliable (prepared) write (`type: reliable`).
    Reliable,
}

/// One write a client made to a characteristic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// The bytes written (offset applied by the simulator, not included here).
    pub value: Vec<u8>,
    /// Request or command.
    pub kind: WriteKind,
    /// The `offset` option.
    pub offset: usize,
}

pub(crate) struct AdapterState {
    pub spec: AdapterSpec,
    pub path: OwnedObjectPath,
    pub powered: bool,
    pub discovering: bool,
}

pub(crate) struct ServiceState {
    pub uuid: BleUuid,
    pub primary: bool,
    pub path: OwnedObjectPath,
    pub handle: u16,
}

pub(crate) struct CharState {
    pub uuid: BleUuid,
    pub service: usize,
    pub path: OwnedObjectPath,
    pub handle: u16,
    pub flags: Vec<CharFlag>,
    pub value: Vec<u8>,
    /// Fields with their current engineering value.
    pub fields: Vec<(FieldSpec, f64)>,
    /// `set_value` pinned the value: dynamics stop.
    pub pinned: bool,
    pub notifying: bool,
    /// (index of the enabling characteristic, enabling value)
    pub enabled_by: Option<(usize, Vec<u8>)>,
    pub writes: Vec<WriteRecord>,
    pub read_error: Option<ReadErrorKind>,
}

impl CharState {
    pub fn has(&self, f: CharFlag) -> bool {
        self.flags.contains(&f)
    }
}

pub(crate) struct DescState {
    pub uuid: BleUuid,
    pub chr: usize,
    pub path: OwnedObjectPath,
    pub handle: u16,
    pub value: Vec<u8>,
}

pub(crate) struct DeviceState {
    pub spec: DeviceSpec,
    pub adapter: usize,
    pub path: OwnedObjectPath,
    pub exported: bool,
    pub connected: bool,
    pub resolved: bool,
    pub paired: bool,
    /// Bumped on every link change; a slow resolution checks it did not move.
    pub link_gen: u64,
    pub connect_count: u64,
    pub faults: FaultSpec,
    pub services: Vec<ServiceState>,
    pub chars: Vec<CharState>,
    pub descs: Vec<DescState>,
}

impl DeviceState {
    /// The value a read or notification shows: zeros while the enabling
    /// characteristic does not hold its enabling value.
    pub fn measured(&self, c: usize) -> Vec<u8> {
        let ch = &self.chars[c];
        match &ch.enabled_by {
            Some((cfg, want)) if self.chars[*cfg].value != *want => vec![0; ch.value.len()],
            _ => ch.value.clone(),
        }
    }

    fn is_enabled(&self, c: usize) -> bool {
        match &self.chars[c].enabled_by {
            Some((cfg, want)) => self.chars[*cfg].value == *want,
            None => true,
        }
    }

    /// Index of the first characteristic with this UUID.
    pub fn char_index(&self, uuid: &BleUuid) -> Option<usize> {
        self.chars.iter().position(|c| &c.uuid == uuid)
    }
}

pub(crate) struct State {
    pub adapters: Vec<AdapterState>,
    pub devices: Vec<DeviceState>,
    pub rng: StdRng,
}

/// Shared by the D-Bus objects and the API.
pub(crate) struct Core {
    state: Mutex<State>,
    links: Vec<tokio::sync::Mutex<()>>,
}

/// How long a `Connect` of an out-of-range device stays pending before it fails.
pub(crate) const PENDING_CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a pending `Connect` looks whether its device is back in range.
const RANGE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

fn path(s: String) -> Result<OwnedObjectPath, SimError> {
    OwnedObjectPath::try_from(s).map_err(|e| SimError::DBus(zbus::Error::Variant(e)))
}

fn not_connected() -> BluezError {
    BluezError::Failed("Not connected".to_owned())
}

impl Core {
    pub fn new(config: &SimConfig) -> Result<Core, SimError> {
        let mut adapters = Vec::new();
        for a in &config.adapters {
            adapters.push(AdapterState {
                path: path(format!("/org/bluez/{}", a.name))?,
                powered: a.powered,
                discovering: false,
                spec: a.clone(),
            });
        }
        let mut devices = Vec::new();
        for d in &config.devices {
            devices.push(build_device(d, &adapters)?);
        }
        let rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let links = devices
            .iter()
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        Ok(Core {
            state: Mutex::new(State {
                adapters,
                devices,
                rng,
            }),
            links,
        })
    }

    /// Lock the data. Never held across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Find a device by address (first match across adapters).
    pub fn device_index(&self, mac: &MacAddr) -> Option<usize> {
        self.state()
            .devices
            .iter()
            .position(|d| &d.spec.address == mac)
    }

    // ------------------------------------------------------------ adapters

    pub async fn start_discovery(
        self: &Arc<Self>,
        conn: &Connection,
        a: usize,
    ) -> Result<(), BluezError> {
        let (adapter_path, newly, to_export) = {
            let mut st = self.state();
            let ad = &mut st.adapters[a];
            if !ad.powered {
                return Err(BluezError::NotReady("Resource Not Ready".to_owned()));
            }
            let newly = !ad.discovering;
            ad.discovering = true;
            let adapter_path = ad.path.clone();
            let to_export: Vec<usize> = st
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.adapter == a && !d.exported)
                .map(|(i, _)| i)
                .collect();
            (adapter_path, newly, to_export)
        };
        if newly {
            emit_changed(
                conn,
                &adapter_path,
                ADAPTER_IFACE,
                vec![("Discovering", Value::from(true))],
            )
            .await;
        }
        for d in to_export {
            self.export_device(conn, d).await?;
        }
        Ok(())
    }

    pub async fn stop_discovery(&self, conn: &Connection, a: usize) -> Result<(), BluezError> {
        let adapter_path = {
            let mut st = self.state();
            let ad = &mut st.adapters[a];
            if !ad.discovering {
                return Err(BluezError::Failed("No discovery started".to_owned()));
            }
            ad.discovering = false;
            ad.path.clone()
        };
        emit_changed(
            conn,
            &adapter_path,
            ADAPTER_IFACE,
            vec![("Discovering", Value::from(false))],
        )
        .await;
        Ok(())
    }

    /// Export a device's `Device1` object (InterfacesAdded), once.
    pub async fn export_device(
        self: &Arc<Self>,
        conn: &Connection,
        d: usize,
    ) -> Result<(), BluezError> {
        let _link = self.links[d].lock().await;
        let p = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            if dev.exported {
                return Ok(());
            }
            dev.exported = true;
            dev.path.clone()
        };
        let iface = DeviceIface::new(Arc::clone(self), d);
        conn.object_server().at(&p, iface).await?;
        tracing::info!(device = %self.mac(d), "device discovered");
        Ok(())
    }

    /// `Adapter1.RemoveDevice`: disconnect, then drop the object (it comes
    /// back on the next discovery).
    pub async fn remove_device(
        self: &Arc<Self>,
        conn: &Connection,
        d: usize,
    ) -> Result<(), BluezError> {
        self.disconnect(conn, d, "removed").await?;
        let _link = self.links[d].lock().await;
        let p = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            if !dev.exported {
                return Err(BluezError::DoesNotExist("Does Not Exist".to_owned()));
            }
            dev.exported = false;
            dev.paired = false;
            dev.path.clone()
        };
        conn.object_server().remove::<DeviceIface, _>(&p).await?;
        Ok(())
    }

    // ------------------------------------------------------------ link

    /// `Device1.Connect`: Connected, GATT objects, (delay), ServicesResolved.
    pub async fn connect(self: &Arc<Self>, conn: &Connection, d: usize) -> Result<(), BluezError> {
        self.wait_in_range(d).await?;
        let link = self.links[d].lock().await;
        let (dev_path, delay, link_gen) = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            if dev.faults.refuse_connect {
                tracing::info!(device = %dev.spec.address, "connect refused (fault)");
                return Err(BluezError::Failed(
                    "le-connection-abort-by-local".to_owned(),
                ));
            }
            if dev.connected {
                return if dev.resolved {
                    Ok(())
                } else {
                    Err(BluezError::InProgress("In Progress".to_owned()))
                };
            }
            dev.connected = true;
            dev.link_gen += 1;
            dev.connect_count += 1;
            (dev.path.clone(), dev.faults.resolve_delay, dev.link_gen)
        };
        tracing::info!(device = %self.mac(d), "connected");
        emit_changed(
            conn,
            &dev_path,
            DEVICE_IFACE,
            vec![("Connected", Value::from(true))],
        )
        .await;
        self.export_gatt(conn, d).await?;
        drop(link);

        if !delay.is_zero() {
            // Simulated GATT discovery time; a link drop meanwhile aborts it.
            tokio::time::sleep(delay).await;
        }

        let _link = self.links[d].lock().await;
        {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            if dev.link_gen != link_gen || !dev.connected {
                return Err(BluezError::Failed(
                    "Software caused connection abort".to_owned(),
                ));
            }
            dev.resolved = true;
        }
        emit_changed(
            conn,
            &dev_path,
            DEVICE_IFACE,
            vec![("ServicesResolved", Value::from(true))],
        )
        .await;
        tracing::info!(device = %self.mac(d), "services resolved");
        Ok(())
    }

    /// An out-of-range device's `Connect` stays pending (BlueZ's LE connection attempt)
    /// until the device is back, a `Disconnect` aborts it, or the attempt gives up.
    async fn wait_in_range(&self, d: usize) -> Result<(), BluezError> {
        let started = tokio::time::Instant::now();
        let link_gen = self.state().devices[d].link_gen;
        let mut pending = false;
        loop {
            {
                let st = self.state();
                let dev = &st.devices[d];
                if !dev.faults.out_of_range {
                    return Ok(());
                }
                if dev.link_gen != link_gen {
                    tracing::info!(device = %dev.spec.address, "pending connect aborted");
                    return Err(BluezError::Failed("Operation was aborted".to_owned()));
                }
                if !pending {
                    pending = true;
                    tracing::info!(device = %dev.spec.address, "connect pending (out of range)");
                }
            }
            if started.elapsed() >= PENDING_CONNECT_LIMIT {
                return Err(BluezError::Failed(
                    "le-connection-abort-by-local".to_owned(),
                ));
            }
            tokio::time::sleep(RANGE_POLL).await;
        }
    }

    /// Disconnect (client request, link drop, removal). Returns whether the
    /// device was connected.
    pub async fn disconnect(
        &self,
        conn: &Connection,
        d: usize,
        reason: &str,
    ) -> Result<bool, BluezError> {
        let _link = self.links[d].lock().await;
        let dev_path = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            // Also aborts a pending connect of an out-of-range device.
            dev.link_gen += 1;
            if !dev.connected {
                return Ok(false);
            }
            dev.connected = false;
            dev.resolved = false;
            for c in &mut dev.chars {
                c.notifying = false;
            }
            for desc in &mut dev.descs {
                if desc.uuid.short16() == Some(0x2902) {
                    desc.value = vec![0, 0];
                }
            }
            dev.path.clone()
        };
        emit_changed(
            conn,
            &dev_path,
            DEVICE_IFACE,
            vec![("ServicesResolved", Value::from(false))],
        )
        .await;
        emit_changed(
            conn,
            &dev_path,
            DEVICE_IFACE,
            vec![("Connected", Value::from(false))],
        )
        .await;
        self.unexport_gatt(conn, d).await?;
        tracing::info!(device = %self.mac(d), reason, "disconnected");
        Ok(true)
    }

    async fn export_gatt(self: &Arc<Self>, conn: &Connection, d: usize) -> Result<(), BluezError> {
        let me = Arc::clone(self);
        let (services, chars, descs) = {
            let st = self.state();
            let dev = &st.devices[d];
            (
                dev.services
                    .iter()
                    .map(|s| s.path.clone())
                    .collect::<Vec<_>>(),
                dev.chars.iter().map(|c| c.path.clone()).collect::<Vec<_>>(),
                dev.descs.iter().map(|x| x.path.clone()).collect::<Vec<_>>(),
            )
        };
        let server = conn.object_server();
        // Parents first, as BlueZ does.
        for (i, p) in services.iter().enumerate() {
            server.at(p, ServiceIface::new(me.clone(), d, i)).await?;
        }
        for (i, p) in chars.iter().enumerate() {
            server.at(p, CharIface::new(me.clone(), d, i)).await?;
        }
        for (i, p) in descs.iter().enumerate() {
            server.at(p, DescIface::new(me.clone(), d, i)).await?;
        }
        Ok(())
    }

    async fn unexport_gatt(&self, conn: &Connection, d: usize) -> Result<(), BluezError> {
        let (services, chars, descs) = {
            let st = self.state();
            let dev = &st.devices[d];
            (
                dev.services
                    .iter()
                    .map(|s| s.path.clone())
                    .collect::<Vec<_>>(),
                dev.chars.iter().map(|c| c.path.clone()).collect::<Vec<_>>(),
                dev.descs.iter().map(|x| x.path.clone()).collect::<Vec<_>>(),
            )
        };
        let server = conn.object_server();
        // Children first. A missing object is fine (never exported).
        for p in descs.iter().rev() {
            let _ = server.remove::<DescIface, _>(p).await;
        }
        for p in chars.iter().rev() {
            let _ = server.remove::<CharIface, _>(p).await;
        }
        for p in services.iter().rev() {
            let _ = server.remove::<ServiceIface, _>(p).await;
        }
        Ok(())
    }

    // ------------------------------------------------------------ GATT

    /// `GattCharacteristic1.ReadValue`. Like BlueZ, a successful read also
    /// updates `Value` with a PropertiesChanged signal.
    pub async fn read_char(
        &self,
        conn: &Connection,
        d: usize,
        c: usize,
        offset: usize,
    ) -> Result<Vec<u8>, BluezError> {
        let (value, p) = {
            let st = self.state();
            let dev = &st.devices[d];
            if !dev.connected {
                return Err(not_connected());
            }
            let ch = &dev.chars[c];
            if !ch.has(CharFlag::Read) {
                return Err(BluezError::NotPermitted("Read not permitted".to_owned()));
            }
            match ch.read_error.or(dev.faults.read_error) {
                Some(ReadErrorKind::Failed) => {
                    return Err(BluezError::Failed(
                        "Operation failed with ATT error: 0x0e".to_owned(),
                    ));
                }
                Some(ReadErrorKind::NotPermitted) => {
                    return Err(BluezError::NotPermitted("Read not permitted".to_owned()));
                }
                None => {}
            }
            let value = dev.measured(c);
            if offset > value.len() {
                return Err(BluezError::InvalidOffset("Invalid offset".to_owned()));
            }
            (value[offset..].to_vec(), ch.path.clone())
        };
        emit_changed(
            conn,
            &p,
            CHAR_IFACE,
            vec![("Value", Value::from(value.clone()))],
        )
        .await;
        Ok(value)
    }

    /// `GattCharacteristic1.WriteValue`.
    pub fn write_char(
        &self,
        d: usize,
        c: usize,
        bytes: Vec<u8>,
        kind: Option<WriteKind>,
        offset: usize,
    ) -> Result<(), BluezError> {
        let mut st = self.state();
        let dev = &mut st.devices[d];
        if !dev.connected {
            return Err(not_connected());
        }
        let mac = dev.spec.address;
        let ch = &mut dev.chars[c];
        let kind = match kind {
            Some(k) => k,
            None if ch.has(CharFlag::Write) => WriteKind::Request,
            None => WriteKind::Command,
        };
        let allowed = match kind {
            WriteKind::Request | WriteKind::Reliable => ch.has(CharFlag::Write),
            WriteKind::Command => ch.has(CharFlag::WriteWithoutResponse),
        };
        if !allowed {
            return Err(BluezError::NotPermitted("Write not permitted".to_owned()));
        }
        if offset > ch.value.len() {
            return Err(BluezError::InvalidOffset("Invalid offset".to_owned()));
        }
        let mut value = ch.value[..offset].to_vec();
        value.extend_from_slice(&bytes);
        if value.len() < ch.value.len() && offset > 0 {
            value.extend_from_slice(&ch.value[value.len()..]);
        }
        tracing::debug!(device = %mac, characteristic = %ch.uuid, ?bytes, ?kind, "write");
        ch.value = value;
        ch.pinned = true;
        ch.writes.push(WriteRecord {
            value: bytes,
            kind,
            offset,
        });
        Ok(())
    }

    /// `StartNotify` / `StopNotify`.
    pub async fn set_notify(
        &self,
        conn: &Connection,
        d: usize,
        c: usize,
        on: bool,
    ) -> Result<(), BluezError> {
        let p = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            if !dev.connected {
                return Err(not_connected());
            }
            let ch = &mut dev.chars[c];
            if !(ch.has(CharFlag::Notify) || ch.has(CharFlag::Indicate)) {
                return Err(BluezError::NotSupported(
                    "Operation is not supported".to_owned(),
                ));
            }
            if ch.notifying == on {
                if on {
                    return Ok(());
                }
                return Err(BluezError::Failed("No notify session started".to_owned()));
            }
            ch.notifying = on;
            let cccd = match (on, ch.has(CharFlag::Notify)) {
                (false, _) => vec![0, 0],
                (true, true) => vec![1, 0],
                (true, false) => vec![2, 0],
            };
            let p = ch.path.clone();
            for desc in dev.descs.iter_mut() {
                if desc.chr == c && desc.uuid.short16() == Some(0x2902) {
                    desc.value = cccd.clone();
                }
            }
            p
        };
        emit_changed(conn, &p, CHAR_IFACE, vec![("Notifying", Value::from(on))]).await;
        Ok(())
    }

    /// `GattDescriptor1.ReadValue`.
    pub fn read_desc(&self, d: usize, x: usize, offset: usize) -> Result<Vec<u8>, BluezError> {
        let st = self.state();
        let dev = &st.devices[d];
        if !dev.connected {
            return Err(not_connected());
        }
        let v = &dev.descs[x].value;
        if offset > v.len() {
            return Err(BluezError::InvalidOffset("Invalid offset".to_owned()));
        }
        Ok(v[offset..].to_vec())
    }

    /// `GattDescriptor1.WriteValue`. Like BlueZ, the CCCD is managed through
    /// StartNotify/StopNotify and cannot be written directly.
    pub fn write_desc(&self, d: usize, x: usize, bytes: Vec<u8>) -> Result<(), BluezError> {
        let mut st = self.state();
        let dev = &mut st.devices[d];
        if !dev.connected {
            return Err(not_connected());
        }
        let desc = &mut dev.descs[x];
        if desc.uuid.short16() == Some(0x2902) {
            return Err(BluezError::NotPermitted("Write not permitted".to_owned()));
        }
        desc.value = bytes;
        Ok(())
    }

    // ------------------------------------------------------------ dynamics

    /// Advance every dynamic field one step and send notifications for the
    /// characteristics that changed and are notifying.
    pub async fn tick(&self, conn: &Connection) {
        let notes = {
            let mut guard = self.state();
            let st = &mut *guard;
            let mut notes = Vec::new();
            for dev in &mut st.devices {
                for c in 0..dev.chars.len() {
                    let ch = &mut dev.chars[c];
                    if ch.pinned || !ch.fields.iter().any(|(f, _)| f.dynamics.is_some()) {
                        continue;
                    }
                    for (f, cur) in &mut ch.fields {
                        if let Some(dy) = &f.dynamics {
                            *cur = dy.next(*cur, &mut st.rng);
                            f.write_into(*cur, &mut ch.value);
                        }
                    }
                    if dev.connected
                        && dev.chars[c].notifying
                        && dev.is_enabled(c)
                        && !dev.faults.mute_notifications
                    {
                        notes.push((dev.chars[c].path.clone(), dev.measured(c)));
                    }
                }
            }
            notes
        };
        for (p, v) in notes {
            emit_changed(conn, &p, CHAR_IFACE, vec![("Value", Value::from(v))]).await;
        }
    }

    /// Replace a characteristic's value (pinning it against dynamics) and
    /// notify when subscribed.
    pub async fn set_value(&self, conn: &Connection, d: usize, c: usize, bytes: Vec<u8>) {
        let note = {
            let mut st = self.state();
            let dev = &mut st.devices[d];
            let ch = &mut dev.chars[c];
            ch.value = bytes;
            ch.pinned = true;
            let notify = dev.connected
                && dev.chars[c].notifying
                && dev.is_enabled(c)
                && !dev.faults.mute_notifications;
            notify.then(|| (dev.chars[c].path.clone(), dev.measured(c)))
        };
        if let Some((p, v)) = note {
            emit_changed(conn, &p, CHAR_IFACE, vec![("Value", Value::from(v))]).await;
        }
    }

    // ------------------------------------------------------------ helpers

    fn mac(&self, d: usize) -> MacAddr {
        self.state().devices[d].spec.address
    }
}

/// Emit `PropertiesChanged` for `props` of `iface` at `path`. Failures are
/// logged: a signal nobody can receive is not the caller's problem.
pub(crate) async fn emit_changed(
    conn: &Connection,
    path: &OwnedObjectPath,
    iface: &'static str,
    props: Vec<(&'static str, Value<'static>)>,
) {
    let emitter = match SignalEmitter::new(conn, path.as_ref()) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(path = %path.as_str(), error = %e, "cannot build signal emitter");
            return;
        }
    };
    let changed: HashMap<&str, Value<'_>> = props.into_iter().collect();
    let name = InterfaceName::from_static_str_unchecked(iface);
    if let Err(e) =
        Properties::properties_changed(&emitter, name, changed, Cow::Borrowed(&[])).await
    {
        tracing::warn!(path = %path.as_str(), error = %e, "cannot emit PropertiesChanged");
    }
}

fn build_device(d: &DeviceSpec, adapters: &[AdapterState]) -> Result<DeviceState, SimError> {
    let a = adapters
        .iter()
        .position(|a| a.spec.name == d.adapter)
        .ok_or_else(|| SimError::UnknownDevice(format!("{} (adapter {})", d.address, d.adapter)))?;
    let dev_path = format!("{}/{}", adapters[a].path.as_str(), d.address.path_segment());
    let mut services = Vec::new();
    let mut chars = Vec::new();
    let mut descs = Vec::new();
    // Handles as a GATT server would number them: service, then per
    // characteristic its declaration and value, then its descriptors.
    let mut handle: u16 = 0x000a;
    for s in &d.services {
        let sp = format!("{dev_path}/service{handle:04x}");
        services.push(ServiceState {
            uuid: s.uuid.clone(),
            primary: s.primary,
            path: path(sp.clone())?,
            handle,
        });
        handle = handle.wrapping_add(1);
        for c in &s.characteristics {
            let cp = format!("{sp}/char{handle:04x}");
            let ci = chars.len();
            chars.push(CharState {
                uuid: c.uuid.clone(),
                service: services.len() - 1,
                path: path(cp.clone())?,
                handle,
                flags: c.flags.clone(),
                value: c.value.clone(),
                fields: c.fields.iter().map(|f| (f.clone(), f.value)).collect(),
                pinned: false,
                notifying: false,
                enabled_by: None,
                writes: Vec::new(),
                read_error: c.read_error,
            });
            handle = handle.wrapping_add(2);
            for x in &c.descriptors {
                descs.push(DescState {
                    uuid: x.uuid.clone(),
                    chr: ci,
                    path: path(format!("{cp}/desc{handle:04x}"))?,
                    handle,
                    value: x.value.clone(),
                });
                handle = handle.wrapping_add(1);
            }
        }
    }
    // Resolve enabled_by to indices (validated by the config step).
    let specs: Vec<_> = d
        .services
        .iter()
        .flat_map(|s| s.characteristics.iter())
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        if let Some(rule) = &spec.enabled_by
            && let Some(cfg) = chars.iter().position(|c| c.uuid == rule.characteristic)
        {
            chars[i].enabled_by = Some((cfg, rule.value.clone()));
        }
    }
    Ok(DeviceState {
        spec: d.clone(),
        adapter: a,
        path: path(dev_path)?,
        exported: d.appear == Appear::Always,
        connected: false,
        resolved: false,
        paired: false,
        link_gen: 0,
        connect_count: 0,
        faults: d.faults.clone(),
        services,
        chars,
        descs,
    })
}
