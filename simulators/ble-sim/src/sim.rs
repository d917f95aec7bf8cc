//! The library entry point: start a simulator, drive it from a test, stop it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sim_control::FaultMode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zbus::Connection;
use zbus::fdo::ObjectManager;

use crate::bus::PrivateBus;
use crate::config::{ReadErrorKind, SimConfig};
use crate::core::{Core, WriteRecord};
use crate::error::SimError;
use crate::faults::{self, DeviceFaultConfig};
use crate::ids::{BleUuid, MacAddr};
use crate::objects::{AdapterIface, DeviceIface};

/// The well-known name the simulator owns.
pub const BLUEZ_NAME: &str = "org.bluez";

/// Which bus the simulator serves on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bus {
    /// A private `dbus-daemon` listening in a fresh temporary directory.
    #[default]
    Private,
    /// A private `dbus-daemon` listening at this socket path (stable across
    /// restarts: libdbus reads `DBUS_SYSTEM_BUS_ADDRESS` once per process).
    PrivateAt(PathBuf),
    /// Join an existing bus at this address (`unix:path=...`).
    Address(String),
}

/// A fault to inject into one device at runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `Connect` fails with `org.bluez.Error.Failed` while `true`.
    RefuseConnect(bool),
    /// Every `ReadValue` of the device fails with this error (`None` clears).
    ReadError(Option<ReadErrorKind>),
    /// `ReadValue` of one characteristic fails with this error (`None` clears).
    CharReadError {
        /// The characteristic.
        characteristic: BleUuid,
        /// The error, or `None` to clear.
        error: Option<ReadErrorKind>,
    },
    /// Delay between exporting the GATT objects and `ServicesResolved = true`.
    ResolveDelay(Duration),
    /// No notifications while `true` (`Notifying` stays as the client set it).
    MuteNotifications(bool),
    /// The device is out of range while `true` (its radio is off): `Connect` stays
    /// pending, as BlueZ's LE connection attempt does, and completes once the fault is
    /// cleared; a client `Disconnect` aborts it, and it fails with
    /// `le-connection-abort-by-local` after 30 s. It does not drop a connected link by
    /// itself (use [`BleSim::drop_link`]).
    OutOfRange(bool),
}

/// A running simulator: owns `org.bluez` on a bus and serves the adapters
/// and peripherals of its [`SimConfig`].
///
/// ```no_run
/// # async fn demo() -> Result<(), ble_sim::SimError> {
/// let config = ble_sim::SimConfig::load("simulators/ble-sim/devices/led.yaml".as_ref())?;
/// let sim = ble_sim::BleSim::start(config).await?;
/// println!("DBUS_SYSTEM_BUS_ADDRESS={}", sim.bus_address());
/// sim.shutdown().await;
/// # Ok(()) }
/// ```
pub struct BleSim {
    core: Arc<Core>,
    conn: Connection,
    bus: Option<PrivateBus>,
    address: String,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for BleSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleSim")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl BleSim {
    /// Start a private bus and serve `config` on it.
    pub async fn start(config: SimConfig) -> Result<BleSim, SimError> {
        BleSim::start_on(config, Bus::Private).await
    }

    /// Serve `config` on the given bus.
    pub async fn start_on(config: SimConfig, bus: Bus) -> Result<BleSim, SimError> {
        let core = Arc::new(Core::new(&config)?);
        let (private, address) = match bus {
            Bus::Private => {
                let b = PrivateBus::start(None).await?;
                let a = b.plain_address();
                (Some(b), a)
            }
            Bus::PrivateAt(p) => {
                let b = PrivateBus::start(Some(&p)).await?;
                let a = b.plain_address();
                (Some(b), a)
            }
            Bus::Address(a) => (None, a),
        };
        match BleSim::serve(core, &config, private, address).await {
            Ok(sim) => Ok(sim),
            Err((e, bus)) => {
                if let Some(mut b) = bus {
                    b.stop().await;
                }
                Err(e)
            }
        }
    }

    async fn serve(
        core: Arc<Core>,
        config: &SimConfig,
        bus: Option<PrivateBus>,
        address: String,
    ) -> Result<BleSim, (SimError, Option<PrivateBus>)> {
        let conn = match BleSim::connect(&core, &address).await {
            Ok(c) => c,
            Err(e) => return Err((e, bus)),
        };
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        {
            let core = Arc::clone(&core);
            let conn = conn.clone();
            let cancel = cancel.clone();
            let tick = config.tick;
            tasks.spawn(async move {
                let mut ticker = tokio::time::interval(tick);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = ticker.tick() => core.tick(&conn).await,
                    }
                }
            });
        }
        tasks.close();
        let st = core.state();
        tracing::info!(
            bus = %address,
            adapters = st.adapters.len(),
            devices = st.devices.len(),
            "ble-sim serving org.bluez"
        );
        drop(st);
        Ok(BleSim {
            core,
            conn,
            bus,
            address,
            cancel,
            tasks,
        })
    }

    /// Export everything present at start, then take the name, so a client
    /// that sees `org.bluez` also sees a complete object tree.
    async fn connect(core: &Arc<Core>, address: &str) -> Result<Connection, SimError> {
        let mut builder =
            zbus::connection::Builder::address(address)?.serve_at("/", ObjectManager)?;
        let (adapters, devices) = {
            let st = core.state();
            let adapters: Vec<_> = st.adapters.iter().map(|a| a.path.clone()).collect();
            let devices: Vec<_> = st
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.exported)
                .map(|(i, d)| (i, d.path.clone()))
                .collect();
            (adapters, devices)
        };
        for (i, p) in adapters.into_iter().enumerate() {
            builder = builder.serve_at(p, AdapterIface::new(Arc::clone(core), i))?;
        }
        for (i, p) in devices {
            builder = builder.serve_at(p, DeviceIface::new(Arc::clone(core), i))?;
        }
        Ok(builder.name(BLUEZ_NAME)?.build().await?)
    }

    /// The bus address clients should use (`unix:path=...`), i.e. the value
    /// for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// The simulator's own D-Bus connection (the owner of `org.bluez`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn device(&self, mac: &str) -> Result<usize, SimError> {
        let m: MacAddr = mac.parse()?;
        self.core
            .device_index(&m)
            .ok_or_else(|| SimError::UnknownDevice(m.to_string()))
    }

    fn characteristic(&self, mac: &str, uuid: &str) -> Result<(usize, usize), SimError> {
        let d = self.device(mac)?;
        let u: BleUuid = uuid.parse()?;
        let c = self.core.state().devices[d].char_index(&u);
        c.map(|c| (d, c))
            .ok_or_else(|| SimError::UnknownCharacteristic {
                device: mac.to_owned(),
                uuid: u.to_string(),
            })
    }

    /// Set a characteristic's value (stopping its dynamics) and notify
    /// subscribers.
    pub async fn set_value(&self, mac: &str, uuid: &str, bytes: &[u8]) -> Result<(), SimError> {
        let (d, c) = self.characteristic(mac, uuid)?;
        self.core.set_value(&self.conn, d, c, bytes.to_vec()).await;
        Ok(())
    }

    /// The current stored value of a characteristic (what a read would
    /// return when the characteristic is enabled).
    pub fn value(&self, mac: &str, uuid: &str) -> Result<Vec<u8>, SimError> {
        let (d, c) = self.characteristic(mac, uuid)?;
        Ok(self.core.state().devices[d].chars[c].value.clone())
    }

    /// The values clients wrote to a characteristic, oldest first.
    pub fn writes(&self, mac: &str, uuid: &str) -> Result<Vec<Vec<u8>>, SimError> {
        Ok(self
            .write_records(mac, uuid)?
            .into_iter()
            .map(|w| w.value)
            .collect())
    }

    /// The writes with their kind (request or command) and offset.
    pub fn write_records(&self, mac: &str, uuid: &str) -> Result<Vec<WriteRecord>, SimError> {
        let (d, c) = self.characteristic(mac, uuid)?;
        Ok(self.core.state().devices[d].chars[c].writes.clone())
    }

    /// Drop the link as if the device went out of range: ServicesResolved
    /// and Connected become false and the GATT objects are removed.
    /// Returns whether the device was connected.
    pub async fn drop_link(&self, mac: &str) -> Result<bool, SimError> {
        let d = self.device(mac)?;
        self.core
            .disconnect(&self.conn, d, "link lost")
            .await
            .map_err(|e| match e {
                crate::error::BluezError::ZBus(z) => SimError::DBus(z),
                other => SimError::DBus(zbus::Error::Failure(other.to_string())),
            })
    }

    /// Inject (or clear) a fault.
    pub fn set_fault(&self, mac: &str, fault: Fault) -> Result<(), SimError> {
        let d = self.device(mac)?;
        let c = match &fault {
            Fault::CharReadError { characteristic, .. } => {
                Some(self.characteristic(mac, characteristic.as_str())?.1)
            }
            _ => None,
        };
        let mut st = self.core.state();
        let dev = &mut st.devices[d];
        tracing::info!(device = %dev.spec.address, ?fault, "fault set");
        match fault {
            Fault::RefuseConnect(on) => dev.faults.refuse_connect = on,
            Fault::ReadError(e) => dev.faults.read_error = e,
            Fault::ResolveDelay(t) => dev.faults.resolve_delay = t,
            Fault::MuteNotifications(on) => dev.faults.mute_notifications = on,
            Fault::OutOfRange(on) => dev.faults.out_of_range = on,
            Fault::CharReadError { error, .. } => {
                if let Some(c) = c {
                    dev.chars[c].read_error = error;
                }
            }
        }
        Ok(())
    }

    /// Clear every fault of a device (including those from the file).
    pub fn clear_faults(&self, mac: &str) -> Result<(), SimError> {
        let d = self.device(mac)?;
        let mut st = self.core.state();
        let dev = &mut st.devices[d];
        dev.faults = Default::default();
        for c in &mut dev.chars {
            c.read_error = None;
        }
        Ok(())
    }

    /// The addresses of every simulated device, in file order.
    pub fn device_addresses(&self) -> Vec<MacAddr> {
        self.core
            .state()
            .devices
            .iter()
            .map(|d| d.spec.address)
            .collect()
    }

    /// The faults active on a device, in the device file's fault format.
    pub fn fault_config(&self, mac: &str) -> Result<DeviceFaultConfig, SimError> {
        let d = self.device(mac)?;
        Ok(faults::read_back(&self.core.state().devices[d]))
    }

    /// Replaces ([`FaultMode::Replace`]) or adds to ([`FaultMode::Add`]) the
    /// faults of a device from a document in the device file's fault format;
    /// returns the faults now active. An unknown characteristic changes nothing.
    pub fn set_fault_config(
        &self,
        mac: &str,
        config: &DeviceFaultConfig,
        mode: FaultMode,
    ) -> Result<DeviceFaultConfig, SimError> {
        let d = self.device(mac)?;
        let mut st = self.core.state();
        let dev = &mut st.devices[d];
        faults::apply(dev, config, mode)?;
        let now = faults::read_back(dev);
        tracing::info!(device = %dev.spec.address, faults = ?now, "faults set");
        Ok(now)
    }

    /// How many times `Connect` succeeded in connecting the device.
    pub fn connect_count(&self, mac: &str) -> Result<u64, SimError> {
        let d = self.device(mac)?;
        Ok(self.core.state().devices[d].connect_count)
    }

    /// Whether the device is connected.
    pub fn is_connected(&self, mac: &str) -> Result<bool, SimError> {
        let d = self.device(mac)?;
        Ok(self.core.state().devices[d].connected)
    }

    /// Whether a client has notifications on for the characteristic.
    pub fn is_notifying(&self, mac: &str, uuid: &str) -> Result<bool, SimError> {
        let (d, c) = self.characteristic(mac, uuid)?;
        Ok(self.core.state().devices[d].chars[c].notifying)
    }

    /// Whether the device's object is on the bus (present from the start or discovered).
    pub fn is_exported(&self, mac: &str) -> Result<bool, SimError> {
        let d = self.device(mac)?;
        Ok(self.core.state().devices[d].exported)
    }

    /// Advance the value dynamics one step now (tests use this instead of
    /// waiting for the tick).
    pub async fn tick(&self) {
        self.core.tick(&self.conn).await;
    }

    /// Stop: end the dynamics task, release `org.bluez`, close the
    /// connection and stop the private bus (SIGTERM).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.tasks.wait().await;
        if let Err(e) = self.conn.release_name(BLUEZ_NAME).await {
            tracing::debug!(error = %e, "cannot release org.bluez");
        }
        if let Err(e) = self.conn.clone().close().await {
            tracing::debug!(error = %e, "cannot close the d-bus connection");
        }
        if let Some(mut b) = self.bus.take() {
            b.stop().await;
        }
        tracing::info!("ble-sim stopped");
    }
}

impl Drop for BleSim {
    fn drop(&mut self) {
        self.cancel.cancel();
        // PrivateBus's own Drop sends SIGTERM to the daemon if still running.
    }
}
