//! One owner task per physical bus: a serial line, or a TCP endpoint (Modbus TCP or RTU
//! over TCP).
//!
//! Devices on the same bus share the task through [`Bus`] handles and a bounded channel;
//! the task ends when the last handle is dropped. The task
//!
//! * keeps exactly one request in flight (an RTU line cannot carry more, and most TCP
//!   gateways serialize anyway);
//! * sets the unit id of each request from the request itself (several slaves share one
//!   line; docs/kubeedge-contract.md#bug-rtu-slaves-on-one-line-share-a-client);
//! * serves writes before polls, and round-robins between units so one busy device cannot
//!   starve the others;
//! * wraps every call in a timeout (tokio-modbus has none). After `backoffAfterTimeouts`
//!   consecutive timeouts a unit is skipped ([`crate::health`]): its requests are answered
//!   at once with [`DriverError::Timeout`], except for one probe per probe interval (about
//!   `backoffMin`), a one-register (or one-bit) read at the request's address with a short
//!   timeout. When the probe is answered the request itself goes out right after, so a
//!   unit that comes back is read again within one interval plus one collect cycle, and a
//!   dead unit costs the line one short probe per interval instead of its whole batch;
//! * after a timeout or a mismatched reply on RTU framing, waits the grace period, discards
//!   whatever arrived in the meantime and starts a fresh framer, so a late reply is never
//!   taken as the answer to a later request. On Modbus TCP it closes the connection
//!   instead (the late reply dies with it);
//! * maps a Modbus exception to [`DriverError::Refused`] and keeps the connection;
//! * maps an I/O error to [`DriverError::Link`] and drops the connection.
//!
//! Reconnecting happens inside the task, lazily: the transport is opened on the first
//! request after it was lost. `connect` of the driver sends a [`Op::Connect`] so that an
//! unreachable endpoint surfaces as [`DriverError::Link`] right away and the SDK's
//! reconnect backoff applies.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mapper_sdk::driver::DriverError;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_modbus::client::{self, Client as _};
use tokio_modbus::slave::SlaveContext as _;
use tokio_modbus::{Request, Response, Slave};
use tracing::{debug, info, warn};

use crate::config::{Link, Parity, Table, Timing};
use crate::health::{Admit, Policy, UnitHealth};
use crate::plan::ReadRequest;

/// A byte stream a bus can run on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;
/// The future an [`Opener`] returns.
pub type OpenFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;
/// Opens the transport of a link. The default ([`default_opener`]) connects TCP or opens
/// the serial port; tests and special transports inject their own.
pub type Opener = Arc<dyn Fn(&Link) -> OpenFuture + Send + Sync>;

/// Opens TCP connections (with `TCP_NODELAY`) and serial ports (baud rate, data bits,
/// parity and stop bits from the config; the port is opened exclusively).
pub fn default_opener() -> Opener {
    Arc::new(|link: &Link| {
        let link = link.clone();
        Box::pin(async move {
            match link {
                Link::Tcp { host, port } | Link::RtuOverTcp { host, port } => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as BoxIo)
                }
                Link::Rtu(s) => {
                    use tokio_serial::SerialPortBuilderExt as _;
                    let data_bits = match s.data_bits {
                        5 => tokio_serial::DataBits::Five,
                        6 => tokio_serial::DataBits::Six,
                        7 => tokio_serial::DataBits::Seven,
                        _ => tokio_serial::DataBits::Eight,
                    };
                    let parity = match s.parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    };
                    let stop_bits = if s.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    };
                    let port = tokio_serial::new(&s.path, s.baud_rate)
                        .data_bits(data_bits)
                        .parity(parity)
                        .stop_bits(stop_bits)
                        .open_native_async()
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    Ok(Box::new(port) as BoxIo)
                }
            }
        })
    })
}

/// The transport shared between the framer and the bus task (which drains it after a
/// timeout). The lock is only taken inside `poll_*`, never across an await.
#[derive(Clone)]
struct SharedIo(Arc<Mutex<BoxIo>>);

impl fmt::Debug for SharedIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedIo")
    }
}

impl SharedIo {
    fn with<R>(
        &self,
        f: impl FnOnce(Pin<&mut BoxIo>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match self.0.lock() {
            Ok(mut g) => f(Pin::new(&mut *g)),
            Err(_) => Poll::Ready(Err(io::Error::other("transport lock poisoned"))),
        }
    }
}

impl AsyncRead for SharedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_read(cx, buf))
    }
}

impl AsyncWrite for SharedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|io| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_shutdown(cx))
    }
}

/// What identifies a physical bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BusKey {
    /// A serial port path.
    Serial(String),
    /// A TCP endpoint.
    Tcp(String, u16),
}

impl BusKey {
    /// The bus a link runs on.
    pub fn of(link: &Link) -> Self {
        match link {
            Link::Tcp { host, port } | Link::RtuOverTcp { host, port } => {
                Self::Tcp(host.clone(), *port)
            }
            Link::Rtu(s) => Self::Serial(s.path.clone()),
        }
    }
}

/// One Modbus operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Open the transport if it is not open (no Modbus traffic).
    Connect,
    /// FC1/FC2/FC3/FC4.
    Read(ReadRequest),
    /// FC5.
    WriteCoil(u16, bool),
    /// FC15.
    WriteCoils(u16, Vec<bool>),
    /// FC6.
    WriteRegister(u16, u16),
    /// FC16.
    WriteRegisters(u16, Vec<u16>),
    /// FC22: `(address, and, or)`.
    MaskWrite(u16, u16, u16),
}

impl Op {
    fn is_priority(&self) -> bool {
        !matches!(self, Self::Read(_))
    }

    /// The short request that probes a skipped unit before this operation: a read of one
    /// register or bit at the same address (never a write). `None` for [`Op::Connect`].
    fn probe(&self) -> Option<Op> {
        let (table, offset) = match self {
            Self::Connect => return None,
            Self::Read(r) => (r.table, r.offset),
            Self::WriteCoil(a, _) | Self::WriteCoils(a, _) => (Table::Coil, *a),
            Self::WriteRegister(a, _) | Self::WriteRegisters(a, _) | Self::MaskWrite(a, _, _) => {
                (Table::Holding, *a)
            }
        };
        Some(Self::Read(ReadRequest {
            table,
            offset,
            count: 1,
        }))
    }

    fn request(&self) -> Option<Request<'static>> {
        Some(match self {
            Self::Connect => return None,
            Self::Read(r) => match r.table {
                Table::Coil => Request::ReadCoils(r.offset, r.count),
                Table::DiscreteInput => Request::ReadDiscreteInputs(r.offset, r.count),
                Table::Input => Request::ReadInputRegisters(r.offset, r.count),
                Table::Holding => Request::ReadHoldingRegisters(r.offset, r.count),
            },
            Self::WriteCoil(a, b) => Request::WriteSingleCoil(*a, *b),
            Self::WriteCoils(a, b) => Request::WriteMultipleCoils(*a, Cow::Owned(b.clone())),
            Self::WriteRegister(a, w) => Request::WriteSingleRegister(*a, *w),
            Self::WriteRegisters(a, w) => {
                Request::WriteMultipleRegisters(*a, Cow::Owned(w.clone()))
            }
            Self::MaskWrite(a, and, or) => Request::MaskWriteRegister(*a, *and, *or),
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect => f.write_str("connect"),
            Self::Read(r) => write!(f, "read {} {}+{}", r.table.as_str(), r.offset, r.count),
            Self::WriteCoil(a, _) => write!(f, "write coil {a}"),
            Self::WriteCoils(a, b) => write!(f, "write coils {a}+{}", b.len()),
            Self::WriteRegister(a, _) => write!(f, "write register {a}"),
            Self::WriteRegisters(a, w) => write!(f, "write registers {a}+{}", w.len()),
            Self::MaskWrite(a, _, _) => write!(f, "mask write register {a}"),
        }
    }
}

/// The answer to an [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A write or connect succeeded.
    Done,
    /// Bits read, exactly as many as requested.
    Bits(Vec<bool>),
    /// Registers read, exactly as many as requested.
    Words(Vec<u16>),
}

struct Job {
    unit: u8,
    op: Op,
    timeout: Duration,
    reply: oneshot::Sender<Result<Reply, DriverError>>,
}

/// Who uses a bus task: devices that connected through it, and those of them that closed
/// (were removed). A device that lost its link drops its handle without closing, to
/// reconnect. The task reads this when it stops, to say truthfully why.
#[derive(Debug, Default)]
struct Users {
    joined: AtomicUsize,
    left: AtomicUsize,
}

/// A handle to a bus task. Cloning the `Arc` shares the task; dropping the last one ends it.
#[derive(Debug)]
pub struct Bus {
    key: BusKey,
    link: Link,
    tx: mpsc::Sender<Job>,
    users: Arc<Users>,
}

impl Bus {
    /// The bus this handle talks to.
    pub fn key(&self) -> &BusKey {
        &self.key
    }

    /// Records that a device connected through this bus (and will call [`Bus::leave`]
    /// when it is closed).
    pub fn join(&self) {
        self.users.joined.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that a device that joined is closed for good (not just reconnecting).
    pub fn leave(&self) {
        self.users.left.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `op` for `unit` with a per-request `timeout`, waiting for its turn on the bus.
    pub async fn call(&self, unit: u8, op: Op, timeout: Duration) -> Result<Reply, DriverError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            unit,
            op,
            timeout,
            reply,
        };
        let gone =
            || DriverError::Link(format!("the {} bus task has stopped", self.link.describe()));
        self.tx.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// The live buses of one driver.
#[derive(Default)]
pub struct BusRegistry {
    buses: Mutex<HashMap<BusKey, Weak<Bus>>>,
}

impl fmt::Debug for BusRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusRegistry")
            .field("live", &self.live())
            .finish()
    }
}

/// Capacity of a bus task's queue; senders wait when it is full.
const QUEUE: usize = 64;

impl BusRegistry {
    /// The bus of `link`, starting its task if none is running. A link that disagrees with
    /// the running bus (another baud rate, TCP vs RTU framing) is refused.
    pub fn get_or_start(
        &self,
        link: &Link,
        timing: Timing,
        opener: &Opener,
    ) -> Result<Arc<Bus>, DriverError> {
        let key = BusKey::of(link);
        let mut map = self
            .buses
            .lock()
            .map_err(|_| DriverError::Link("bus registry lock poisoned".into()))?;
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(bus) = map.get(&key).and_then(Weak::upgrade) {
            if bus.link != *link {
                return Err(DriverError::Invalid(format!(
                    "{} is already in use as {:?}; every device on one bus must use the same settings, got {:?}",
                    link.describe(),
                    bus.link,
                    link
                )));
            }
            return Ok(bus);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let users = Arc::new(Users::default());
        let bus = Arc::new(Bus {
            key: key.clone(),
            link: link.clone(),
            tx,
            users: users.clone(),
        });
        let task = BusTask {
            rx,
            name: link.describe(),
            link: link.clone(),
            timing,
            opener: opener.clone(),
            conn: None,
            queues: HashMap::new(),
            order: VecDeque::new(),
            pending: 0,
            health: HashMap::new(),
            users,
        };
        tokio::spawn(task.run());
        map.insert(key, Arc::downgrade(&bus));
        Ok(bus)
    }

    /// How many bus tasks have live handles.
    pub fn live(&self) -> usize {
        self.buses
            .lock()
            .map(|m| m.values().filter(|w| w.strong_count() > 0).count())
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct UnitQueue {
    priority: VecDeque<Job>,
    reads: VecDeque<Job>,
}

impl UnitQueue {
    fn is_empty(&self) -> bool {
        self.priority.is_empty() && self.reads.is_empty()
    }
}

/// Why one call failed (inside the task).
enum Fail {
    Timeout,
    Garbled(String),
    Refused(String),
    Link(String),
}

struct Conn {
    ctx: client::Context,
    raw: SharedIo,
}

struct BusTask {
    rx: mpsc::Receiver<Job>,
    name: String,
    link: Link,
    timing: Timing,
    opener: Opener,
    conn: Option<Conn>,
    queues: HashMap<u8, UnitQueue>,
    /// Units with queued jobs, in the order they will be served.
    order: VecDeque<u8>,
    pending: usize,
    health: HashMap<u8, UnitHealth>,
    users: Arc<Users>,
}

impl BusTask {
    async fn run(mut self) {
        debug!(bus = %self.name, "bus task started");
        loop {
            if self.pending == 0 {
                match self.rx.recv().await {
                    Some(job) => self.enqueue(job),
                    None => break,
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                self.enqueue(job);
            }
            if let Some(job) = self.next_job() {
                self.serve(job).await;
            }
        }
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.ctx.disconnect().await;
        }
        self.log_stop();
    }

    /// Says why the task stops: only when every device that used the bus was closed is it
    /// true that no device uses it any more. A device that lost its link drops its handle
    /// to reconnect (a new task opens the bus again), and a failed connect never joined;
    /// the SDK logs those causes, so they are only debug lines here.
    fn log_stop(&self) {
        let joined = self.users.joined.load(Ordering::Relaxed);
        let left = self.users.left.load(Ordering::Relaxed);
        match stop_reason(joined, left) {
            StopReason::NoUsers => {
                info!(bus = %self.name, "bus task stopped: no device uses it any more");
            }
            StopReason::ConnectFailed => {
                debug!(bus = %self.name, "bus task stopped: the connect that started it failed");
            }
            StopReason::Reconnecting(n) => {
                debug!(bus = %self.name, devices = n, "bus task stopped: its devices dropped the link to reconnect");
            }
        }
    }

    fn enqueue(&mut self, job: Job) {
        let q = self.queues.entry(job.unit).or_default();
        if q.is_empty() && !self.order.contains(&job.unit) {
            self.order.push_back(job.unit);
        }
        if job.op.is_priority() {
            q.priority.push_back(job);
        } else {
            q.reads.push_back(job);
        }
        self.pending += 1;
    }

    /// Writes first (round-robin across units), then reads (round-robin across units).
    fn next_job(&mut self) -> Option<Job> {
        let has = |q: Option<&UnitQueue>, prio: bool| {
            q.is_some_and(|q| {
                if prio {
                    !q.priority.is_empty()
                } else {
                    !q.reads.is_empty()
                }
            })
        };
        let pos = self
            .order
            .iter()
            .position(|u| has(self.queues.get(u), true))
            .or_else(|| {
                self.order
                    .iter()
                    .position(|u| has(self.queues.get(u), false))
            })?;
        let unit = self.order.remove(pos)?;
        let q = self.queues.get_mut(&unit)?;
        let job = q.priority.pop_front().or_else(|| q.reads.pop_front())?;
        self.pending -= 1;
        if !q.is_empty() {
            self.order.push_back(unit);
        }
        Some(job)
    }

    fn policy(&self) -> Policy {
        let t = self.timing;
        Policy {
            skip_after: t.backoff_after,
            min_interval: t.backoff_min,
            max_interval: t.backoff_max,
            grace: if self.link.is_rtu_framing() {
                t.rtu_grace
            } else {
                Duration::ZERO
            },
        }
    }

    async fn serve(&mut self, job: Job) {
        if job.reply.is_closed() {
            return; // the caller gave up
        }
        let Job {
            unit,
            op,
            timeout,
            reply,
        } = job;
        if let Some(probe) = op.probe() {
            let policy = self.policy();
            let h = self.health.entry(unit).or_default();
            match h.admit(Instant::now(), &policy, timeout) {
                Admit::Send => {}
                Admit::Skip {
                    timeouts,
                    next_probe_in,
                } => {
                    let _ = reply.send(Err(DriverError::Timeout(format!(
                        "unit {unit} on {} did not answer {timeouts} requests in a row; it is skipped and probed again in {} ms",
                        self.name,
                        next_probe_in.as_millis()
                    ))));
                    return;
                }
                Admit::Probe { timeout: short } => {
                    debug!(bus = %self.name, unit, op = %probe, timeout_ms = short.as_millis() as u64, "probing a skipped unit");
                    if let Err(e) = self.exchange(unit, &probe, short, timeout).await {
                        let e = match e {
                            DriverError::Timeout(_) => DriverError::Timeout(format!(
                                "unit {unit} on {} is skipped after {} timeouts in a row and did not answer the probe ({probe}) within {} ms",
                                self.name,
                                self.health.get(&unit).map_or(0, UnitHealth::timeouts),
                                short.as_millis()
                            )),
                            other => other,
                        };
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
        }
        let result = self.exchange(unit, &op, timeout, timeout).await;
        let _ = reply.send(result);
    }

    /// Runs `op` with `timeout` and updates the unit's health. `request_timeout` is the
    /// timeout of the unit's real requests (the probe timeout derives from it).
    async fn exchange(
        &mut self,
        unit: u8,
        op: &Op,
        timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Reply, DriverError> {
        let started = Instant::now();
        match self.execute(unit, op, timeout).await {
            Ok(r) => {
                self.answered(unit, started.elapsed());
                Ok(r)
            }
            Err(Fail::Refused(m)) => {
                self.answered(unit, started.elapsed());
                Err(DriverError::Refused(m))
            }
            Err(Fail::Timeout) => {
                self.timed_out(unit, request_timeout);
                Err(DriverError::Timeout(format!(
                    "unit {unit} on {} did not answer {op} within {} ms",
                    self.name,
                    timeout.as_millis()
                )))
            }
            Err(Fail::Garbled(m)) => Err(DriverError::Invalid(format!(
                "unit {unit} on {} sent no usable answer to {op}: {m}",
                self.name
            ))),
            Err(Fail::Link(m)) => Err(DriverError::Link(m)),
        }
    }

    fn answered(&mut self, unit: u8, latency: Duration) {
        if self.health.entry(unit).or_default().answered(latency) {
            info!(bus = %self.name, unit, "unit answers again");
        }
    }

    fn timed_out(&mut self, unit: u8, request_timeout: Duration) {
        let policy = self.policy();
        let h = self.health.entry(unit).or_default();
        if let Some(interval) = h.timed_out(Instant::now(), &policy, request_timeout) {
            warn!(
                bus = %self.name,
                unit,
                timeouts = h.timeouts(),
                probe_every_ms = interval.as_millis() as u64,
                probe_timeout_ms = h.probe_timeout(request_timeout).as_millis() as u64,
                "unit does not answer; skipping it and probing it with one short request per interval"
            );
        }
    }

    async fn ensure_open(&mut self) -> Result<(), Fail> {
        if self.conn.is_some() {
            return Ok(());
        }
        let io = tokio::time::timeout(self.timing.connect_timeout, (self.opener)(&self.link))
            .await
            .map_err(|_| {
                Fail::Link(format!(
                    "could not open {} within {} ms",
                    self.name,
                    self.timing.connect_timeout.as_millis()
                ))
            })?
            .map_err(|e| Fail::Link(format!("could not open {}: {e}", self.name)))?;
        let raw = SharedIo(Arc::new(Mutex::new(io)));
        self.conn = Some(self.attach(raw));
        info!(bus = %self.name, "transport open");
        Ok(())
    }

    fn attach(&self, raw: SharedIo) -> Conn {
        let ctx = if self.link.is_rtu_framing() {
            client::rtu::attach(raw.clone())
        } else {
            client::tcp::attach(raw.clone())
        };
        Conn { ctx, raw }
    }

    async fn execute(&mut self, unit: u8, op: &Op, timeout: Duration) -> Result<Reply, Fail> {
        self.ensure_open().await?;
        let Some(request) = op.request() else {
            return Ok(Reply::Done);
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(Fail::Link(format!("{} is not open", self.name)));
        };
        conn.ctx.set_slave(Slave(unit));
        debug!(bus = %self.name, unit, %op, "request");
        match tokio::time::timeout(timeout, conn.ctx.call(request)).await {
            Err(_) => {
                debug!(bus = %self.name, unit, %op, "timeout");
                self.resync().await;
                Err(Fail::Timeout)
            }
            Ok(Err(tokio_modbus::Error::Transport(e))) => {
                warn!(bus = %self.name, unit, error = %e, "transport error; closing");
                self.conn = None;
                Err(Fail::Link(format!("{}: {e}", self.name)))
            }
            Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                warn!(bus = %self.name, unit, error = %e, "mismatched reply; resynchronizing");
                self.resync().await;
                Err(Fail::Garbled(e.to_string()))
            }
            Ok(Ok(Err(exception))) => Err(Fail::Refused(format!(
                "unit {unit} answered {op} with exception {:#04x} ({exception})",
                u8::from(exception)
            ))),
            Ok(Ok(Ok(response))) => match check_reply(op, response) {
                Ok(r) => Ok(r),
                Err(m) => {
                    warn!(bus = %self.name, unit, problem = %m, "invalid reply; resynchronizing");
                    self.resync().await;
                    Err(Fail::Garbled(m))
                }
            },
        }
    }

    /// Makes sure nothing left over from an abandoned exchange is read as a later reply.
    async fn resync(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.link.is_rtu_framing() {
            // Modbus TCP: the late reply dies with the connection; reopen on next use.
            debug!(bus = %self.name, "closing the connection after a failed exchange");
            return;
        }
        let Conn { ctx, raw } = conn;
        drop(ctx);
        tokio::time::sleep(self.timing.rtu_grace).await;
        match drain(&raw).await {
            Ok(n) => {
                if n > 0 {
                    debug!(bus = %self.name, discarded = n, "discarded late bytes");
                }
                self.conn = Some(self.attach(raw));
            }
            Err(e) => {
                warn!(bus = %self.name, error = %e, "transport failed while flushing; closing");
            }
        }
    }
}

/// Why a bus task stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// Every device that used it was closed.
    NoUsers,
    /// No device ever connected through it.
    ConnectFailed,
    /// This many devices dropped their handles without closing (they reconnect).
    Reconnecting(usize),
}

fn stop_reason(joined: usize, left: usize) -> StopReason {
    if joined == 0 {
        StopReason::ConnectFailed
    } else if left >= joined {
        StopReason::NoUsers
    } else {
        StopReason::Reconnecting(joined - left)
    }
}

/// Reads and discards whatever is pending, until the line has been quiet for a moment.
async fn drain(raw: &SharedIo) -> io::Result<usize> {
    let mut io = raw.clone();
    let mut buf = [0u8; 256];
    let mut total = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(3), io.read(&mut buf)).await {
            Err(_) => return Ok(total),
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => {
                total += n;
                if total > 64 * 1024 {
                    return Ok(total); // a babbling line: give up flushing, the CRC will tell
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Checks that a reply answers the request and has the requested length.
fn check_reply(op: &Op, response: Response) -> Result<Reply, String> {
    let bits = |mut b: Vec<bool>, n: u16| {
        if b.len() < usize::from(n) {
            Err(format!("{} bits in the reply, {n} requested", b.len()))
        } else {
            b.truncate(usize::from(n));
            Ok(Reply::Bits(b))
        }
    };
    let words = |w: Vec<u16>, n: u16| {
        if w.len() == usize::from(n) {
            Ok(Reply::Words(w))
        } else {
            Err(format!("{} registers in the reply, {n} requested", w.len()))
        }
    };
    let echo = |ok: bool| {
        if ok {
            Ok(Reply::Done)
        } else {
            Err("the write confirmation does not match the request".to_owned())
        }
    };
    match (op, response) {
        (Op::Read(r), Response::ReadCoils(b)) if r.table == Table::Coil => bits(b, r.count),
        (Op::Read(r), Response::ReadDiscreteInputs(b)) if r.table == Table::DiscreteInput => {
            bits(b, r.count)
        }
        (Op::Read(r), Response::ReadInputRegisters(w)) if r.table == Table::Input => {
            words(w, r.count)
        }
        (Op::Read(r), Response::ReadHoldingRegisters(w)) if r.table == Table::Holding => {
            words(w, r.count)
        }
        (Op::WriteCoil(a, _), Response::WriteSingleCoil(ra, _)) => echo(*a == ra),
        (Op::WriteCoils(a, b), Response::WriteMultipleCoils(ra, n)) => {
            echo(*a == ra && usize::from(n) == b.len())
        }
        (Op::WriteRegister(a, _), Response::WriteSingleRegister(ra, _)) => echo(*a == ra),
        (Op::WriteRegisters(a, w), Response::WriteMultipleRegisters(ra, n)) => {
            echo(*a == ra && usize::from(n) == w.len())
        }
        (Op::MaskWrite(a, _, _), Response::MaskWriteRegister(ra, _, _)) => echo(*a == ra),
        (op, other) => Err(format!("unexpected reply {other:?} to {op}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_stop_reason_says_no_device_only_when_every_device_closed() {
        assert_eq!(stop_reason(0, 0), StopReason::ConnectFailed);
        assert_eq!(stop_reason(1, 0), StopReason::Reconnecting(1));
        assert_eq!(stop_reason(3, 1), StopReason::Reconnecting(2));
        assert_eq!(stop_reason(2, 2), StopReason::NoUsers);
    }

    #[test]
    fn probes_are_one_element_reads_at_the_address_and_never_writes() {
        let read = |table, offset| {
            Some(Op::Read(ReadRequest {
                table,
                offset,
                count: 1,
            }))
        };
        let batch = Op::Read(ReadRequest {
            table: Table::Input,
            offset: 40,
            count: 10,
        });
        assert_eq!(batch.probe(), read(Table::Input, 40));
        assert_eq!(
            Op::WriteCoils(3, vec![true; 4]).probe(),
            read(Table::Coil, 3)
        );
        assert_eq!(
            Op::WriteRegisters(9, vec![1, 2]).probe(),
            read(Table::Holding, 9)
        );
        assert_eq!(Op::MaskWrite(5, 0, 1).probe(), read(Table::Holding, 5));
        assert_eq!(Op::Connect.probe(), None);
    }

    #[test]
    fn replies_are_checked() {
        let r = |table, count| {
            Op::Read(ReadRequest {
                table,
                offset: 0,
                count,
            })
        };
        assert_eq!(
            check_reply(&r(Table::Coil, 3), Response::ReadCoils(vec![true; 8])).unwrap(),
            Reply::Bits(vec![true; 3])
        );
        assert!(
            check_reply(
                &r(Table::Holding, 3),
                Response::ReadHoldingRegisters(vec![1, 2])
            )
            .is_err()
        );
        assert!(
            check_reply(
                &r(Table::Holding, 2),
                Response::ReadInputRegisters(vec![1, 2])
            )
            .is_err()
        );
        assert!(
            check_reply(
                &Op::WriteRegister(5, 1),
                Response::WriteSingleRegister(6, 1)
            )
            .is_err()
        );
    }
}
