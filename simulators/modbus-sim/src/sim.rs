//! The [`Simulator`] handle: serving, faults, direct table access, stats.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::core::{Core, Unit, UnitState};
use crate::error::SimError;
use crate::fault::{Fault, Faults};
use crate::map::DeviceMap;
use crate::server::{ConnKill, RtuOptions, accept_loop, serve_rtu_line};
use crate::stats::Stats;
use crate::table::TableKind;
use crate::value::{ValueType, encode_number};

/// A software Modbus device: one set of units served on any number of TCP
/// listeners and RTU lines.
///
/// Servers run as tasks on the current tokio runtime. They stop when the
/// simulator is dropped, when [`Simulator::shutdown`] is awaited, or when
/// the token from [`Simulator::cancellation_token`] (or the parent given to
/// [`Simulator::with_parent`]) is cancelled.
#[derive(Debug)]
pub struct Simulator {
    core: Arc<Core>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    conn_kill: Arc<ConnKill>,
    tick: Duration,
    rng: Arc<Mutex<StdRng>>,
    ticker_started: AtomicBool,
}

/// The client end of an in-process pty pair, see [`Simulator::serve_rtu_pty`].
#[derive(Debug)]
pub struct PtyClient {
    /// The client end, ready to hand to an RTU client.
    pub stream: SerialStream,
    /// Its device path (e.g. `/dev/pts/7`), for clients in other processes.
    /// Keep `stream` open while they use it: a pty whose client end is
    /// closed by everybody stops the line.
    pub path: Option<PathBuf>,
}

impl Simulator {
    /// A simulator for `map`. Nothing runs until a `serve_*` call.
    pub fn from_map(map: &DeviceMap) -> Self {
        Self::with_parent(map, &CancellationToken::new())
    }

    /// Like [`Simulator::from_map`], stopping when `parent` is cancelled.
    pub fn with_parent(map: &DeviceMap, parent: &CancellationToken) -> Self {
        let cancel = parent.child_token();
        Self {
            core: Arc::new(Core::new(&map.units, Arc::new(Stats::default()))),
            conn_kill: Arc::new(ConnKill::new(cancel.clone())),
            cancel,
            tracker: TaskTracker::new(),
            tick: map.tick,
            rng: Arc::new(Mutex::new(match map.seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            })),
            ticker_started: AtomicBool::new(false),
        }
    }

    /// Cancelling this token stops every server of this simulator.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops all servers and waits for their tasks to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// The shared request counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.core.stats.clone()
    }

    /// The configured unit ids.
    pub fn unit_ids(&self) -> Vec<u8> {
        self.core.units.keys().copied().collect()
    }

    fn start_ticker(&self) {
        if self.tick.is_zero() || self.ticker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let has_dynamics = self
            .core
            .units
            .values()
            .any(|u| u.lock().values.iter().any(|v| v.dynamics.is_some()));
        if !has_dynamics {
            return;
        }
        let core = self.core.clone();
        let cancel = self.cancel.clone();
        let period = self.tick;
        let rng = self.rng.clone();
        self.tracker.spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = interval.tick() => tick_all(&core, &rng),
                }
            }
        });
    }

    /// Steps every dynamic value once, now (tests use this instead of
    /// waiting for the tick).
    pub fn tick_now(&self) {
        tick_all(&self.core, &self.rng);
    }

    /// Listens on `addr` (port 0 = any free port) and returns the bound address.
    pub async fn serve_tcp(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<SocketAddr, SimError> {
        let shown = format!("{addr:?}");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: shown.clone(),
                source,
            })?;
        self.serve_tcp_listener(listener)
            .map_err(|source| SimError::Bind {
                addr: shown,
                source,
            })
    }

    /// Serves on an already bound listener; returns its address.
    pub fn serve_tcp_listener(&self, listener: TcpListener) -> std::io::Result<SocketAddr> {
        let local = listener.local_addr()?;
        info!(addr = %local, units = ?self.unit_ids(), "modbus tcp listening");
        self.start_ticker();
        self.tracker.spawn(accept_loop(
            self.core.clone(),
            listener,
            self.conn_kill.clone(),
            self.cancel.clone(),
            self.tracker.clone(),
        ));
        Ok(local)
    }

    /// Serves RTU on any byte stream (a serial port, one end of a pty pair,
    /// a duplex pipe in tests).
    pub fn serve_rtu<T>(&self, io: T, opts: RtuOptions)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.start_ticker();
        self.tracker.spawn(serve_rtu_line(
            self.core.clone(),
            io,
            opts,
            self.cancel.clone(),
            "rtu".to_string(),
        ));
    }

    /// Creates a pty pair, serves RTU on one end and returns the other.
    pub fn serve_rtu_pty(&self, opts: RtuOptions) -> Result<PtyClient, SimError> {
        let (server, mut client) = SerialStream::pair().map_err(|source| SimError::Serial {
            path: "pty pair".into(),
            source,
        })?;
        // let other processes open the client path as well
        let _ = client.set_exclusive(false);
        let path = client.name().map(PathBuf::from);
        debug!(?path, "pty pair created");
        self.serve_rtu(server, opts);
        Ok(PtyClient {
            stream: client,
            path,
        })
    }

    /// Opens an existing serial device (or a socat pty) and serves RTU on it.
    pub fn serve_rtu_path(&self, path: &Path, baud: u32, opts: RtuOptions) -> Result<(), SimError> {
        let shown = path.display().to_string();
        let mut port = tokio_serial::new(shown.clone(), baud)
            .open_native_async()
            .map_err(|source| SimError::Serial {
                path: shown.clone(),
                source,
            })?;
        let _ = port.set_exclusive(false);
        info!(path = %shown, baud, "modbus rtu serving");
        self.serve_rtu(port, opts);
        Ok(())
    }

    // ------------------------------------------------------------ faults

    fn unit(&self, unit: u8) -> Result<&Unit, SimError> {
        self.core
            .units
            .get(&unit)
            .ok_or(SimError::UnknownUnit { unit })
    }

    fn with_unit<R>(&self, unit: u8, f: impl FnOnce(&mut UnitState) -> R) -> Result<R, SimError> {
        Ok(f(&mut self.unit(unit)?.lock()))
    }

    /// Turns one fault on for `unit` (same kind replaced, exception rules added).
    pub fn set_fault(&self, unit: u8, fault: Fault) -> Result<(), SimError> {
        self.with_unit(unit, |st| {
            let mut f = st.faults.clone();
            f.apply(fault);
            st.set_faults(f);
        })
    }

    /// Replaces all faults of `unit`.
    pub fn set_faults(&self, unit: u8, faults: Faults) -> Result<(), SimError> {
        self.with_unit(unit, |st| st.set_faults(faults))
    }

    /// Makes `unit` healthy again.
    pub fn clear_faults(&self, unit: u8) -> Result<(), SimError> {
        self.set_faults(unit, Faults::default())
    }

    /// The faults currently active on `unit`.
    pub fn faults(&self, unit: u8) -> Result<Faults, SimError> {
        self.with_unit(unit, |st| st.faults.clone())
    }

    /// Closes every open TCP connection now (listeners keep accepting).
    pub fn drop_connections(&self) {
        self.conn_kill.kill_all();
    }

    // ------------------------------------------------------------ tables

    /// Reads `count` registers of an input or holding table.
    pub fn read_registers(
        &self,
        unit: u8,
        table: TableKind,
        addr: u16,
        count: usize,
    ) -> Result<Vec<u16>, SimError> {
        self.with_unit(unit, |st| {
            let t = st.registers(table).ok_or(SimError::WrongTable {
                table,
                kind: "bits",
            })?;
            t.read(addr, count)
                .map(<[u16]>::to_vec)
                .ok_or(SimError::Unmapped {
                    unit,
                    table,
                    addr,
                    count,
                })
        })?
    }

    /// Writes registers of an input or holding table (any table: this is the
    /// device side, not the protocol).
    pub fn write_registers(
        &self,
        unit: u8,
        table: TableKind,
        addr: u16,
        values: &[u16],
    ) -> Result<(), SimError> {
        self.with_unit(unit, |st| {
            let t = st.registers_mut(table).ok_or(SimError::WrongTable {
                table,
                kind: "bits",
            })?;
            if t.write(addr, values) {
                Ok(())
            } else {
                Err(SimError::Unmapped {
                    unit,
                    table,
                    addr,
                    count: values.len(),
                })
            }
        })?
    }

    /// Reads `count` bits of the coil or discrete-input table.
    pub fn read_bits(
        &self,
        unit: u8,
        table: TableKind,
        addr: u16,
        count: usize,
    ) -> Result<Vec<bool>, SimError> {
        self.with_unit(unit, |st| {
            let t = st.bits(table).ok_or(SimError::WrongTable {
                table,
                kind: "registers",
            })?;
            t.read(addr, count)
                .map(<[bool]>::to_vec)
                .ok_or(SimError::Unmapped {
                    unit,
                    table,
                    addr,
                    count,
                })
        })?
    }

    /// Writes bits of the coil or discrete-input table.
    pub fn write_bits(
        &self,
        unit: u8,
        table: TableKind,
        addr: u16,
        values: &[bool],
    ) -> Result<(), SimError> {
        self.with_unit(unit, |st| {
            let t = st.bits_mut(table).ok_or(SimError::WrongTable {
                table,
                kind: "registers",
            })?;
            if t.write(addr, values) {
                Ok(())
            } else {
                Err(SimError::Unmapped {
                    unit,
                    table,
                    addr,
                    count: values.len(),
                })
            }
        })?
    }

    /// One holding register.
    pub fn read_holding(&self, unit: u8, addr: u16) -> Result<u16, SimError> {
        Ok(self.read_registers(unit, TableKind::HoldingRegisters, addr, 1)?[0])
    }

    /// Sets one holding register.
    pub fn write_holding(&self, unit: u8, addr: u16, value: u16) -> Result<(), SimError> {
        self.write_registers(unit, TableKind::HoldingRegisters, addr, &[value])
    }

    /// One input register.
    pub fn read_input(&self, unit: u8, addr: u16) -> Result<u16, SimError> {
        Ok(self.read_registers(unit, TableKind::InputRegisters, addr, 1)?[0])
    }

    /// Sets one input register (what the sensor "measures").
    pub fn write_input(&self, unit: u8, addr: u16, value: u16) -> Result<(), SimError> {
        self.write_registers(unit, TableKind::InputRegisters, addr, &[value])
    }

    /// One coil.
    pub fn read_coil(&self, unit: u8, addr: u16) -> Result<bool, SimError> {
        Ok(self.read_bits(unit, TableKind::Coils, addr, 1)?[0])
    }

    /// Sets one coil.
    pub fn write_coil(&self, unit: u8, addr: u16, value: bool) -> Result<(), SimError> {
        self.write_bits(unit, TableKind::Coils, addr, &[value])
    }

    /// One discrete input.
    pub fn read_discrete(&self, unit: u8, addr: u16) -> Result<bool, SimError> {
        Ok(self.read_bits(unit, TableKind::DiscreteInputs, addr, 1)?[0])
    }

    /// Sets one discrete input.
    pub fn write_discrete(&self, unit: u8, addr: u16, value: bool) -> Result<(), SimError> {
        self.write_bits(unit, TableKind::DiscreteInputs, addr, &[value])
    }

    /// The current engineering value of the typed value `name` (numbers and
    /// booleans; booleans read as 0/1).
    pub fn read_value(&self, unit: u8, name: &str) -> Result<f64, SimError> {
        self.with_unit(unit, |st| {
            let spec = st.values.iter().find(|v| v.name == name).ok_or_else(|| {
                SimError::UnknownValue {
                    unit,
                    name: name.into(),
                }
            })?;
            if let Some(t) = st.bits(spec.table) {
                return t
                    .read(spec.address, 1)
                    .map(|b| f64::from(u8::from(b[0])))
                    .ok_or_else(|| value_err(unit, name, "not mapped"));
            }
            if spec.ty == ValueType::String {
                return Err(value_err(unit, name, "is a string"));
            }
            st.registers(spec.table)
                .and_then(|t| t.read(spec.address, usize::from(spec.width)))
                .and_then(|w| spec.decode(w))
                .ok_or_else(|| value_err(unit, name, "cannot be decoded"))
        })?
    }

    /// Sets the typed value `name` in engineering units.
    pub fn write_value(&self, unit: u8, name: &str, value: f64) -> Result<(), SimError> {
        self.with_unit(unit, |st| {
            let spec = st
                .values
                .iter()
                .find(|v| v.name == name)
                .cloned()
                .ok_or_else(|| SimError::UnknownValue {
                    unit,
                    name: name.into(),
                })?;
            if let Some(t) = st.bits_mut(spec.table) {
                t.write(spec.address, &[value != 0.0]);
                return Ok(());
            }
            let words = encode_number(spec.ty, &spec.layout, value, false)
                .map_err(|e| value_err(unit, name, &e.to_string()))?;
            if let Some(t) = st.registers_mut(spec.table) {
                t.write(spec.address, &words);
            }
            Ok(())
        })?
    }
}

fn tick_all(core: &Core, rng: &Mutex<StdRng>) {
    let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
    for u in core.units.values() {
        u.lock().tick(&mut *rng);
    }
}

fn value_err(unit: u8, name: &str, message: &str) -> SimError {
    SimError::Value {
        unit,
        name: name.into(),
        message: message.into(),
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
