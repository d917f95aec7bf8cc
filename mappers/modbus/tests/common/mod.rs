//! A small in-process Modbus server for the integration tests: per-unit memory, a request
//! log, silent units, delayed replies and unmapped addresses.

#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapper_sdk::driver::{DeviceSpec, bind};
use mapper_sdk::model::{AccessMode, DataType, DeviceId, PropertyName};
use mapper_sdk::profile::{DeviceDef, PropertyDef, ProtocolDef};
use modbus_mapper::ModbusDriver;
use modbus_mapper::bus::{BoxIo, Opener};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

pub const SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Memory {
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    pub input: Vec<u16>,
    pub holding: Vec<u16>,
    /// Every holding register write, in arrival order: (address, value).
    pub written: Vec<(u16, u16)>,
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            coils: vec![false; SIZE],
            discrete: vec![false; SIZE],
            input: vec![0; SIZE],
            holding: vec![0; SIZE],
            written: Vec::new(),
        }
    }
}

/// One logged request: unit id, function code, address, count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    pub unit: u8,
    pub fc: u8,
    pub addr: u16,
    pub count: u16,
}

#[derive(Debug, Default)]
pub struct State {
    pub units: HashMap<u8, Memory>,
    pub log: Vec<Logged>,
    /// Holding addresses that answer with IllegalDataAddress.
    pub unmapped: HashSet<u16>,
    /// Per unit, delays for the next replies (the reply is computed at request time).
    pub delays: HashMap<u8, VecDeque<Duration>>,
    pub connections: usize,
}

#[derive(Clone, Default)]
pub struct Sim(pub Arc<Mutex<State>>);

impl Sim {
    pub fn with_units(units: &[u8]) -> Self {
        let sim = Self::default();
        for u in units {
            sim.0.lock().unwrap().units.insert(*u, Memory::default());
        }
        sim
    }

    pub fn mem<R>(&self, unit: u8, f: impl FnOnce(&mut Memory) -> R) -> R {
        f(self.0.lock().unwrap().units.get_mut(&unit).unwrap())
    }

    pub fn log(&self) -> Vec<Logged> {
        self.0.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.0.lock().unwrap().log.clear();
    }

    pub fn requests(&self) -> usize {
        self.0.lock().unwrap().log.len()
    }

    pub fn connections(&self) -> usize {
        self.0.lock().unwrap().connections
    }

    pub fn delay_next(&self, unit: u8, d: Duration) {
        self.0
            .lock()
            .unwrap()
            .delays
            .entry(unit)
            .or_default()
            .push_back(d);
    }

    fn handle(
        &self,
        req: SlaveRequest<'static>,
    ) -> (Option<Duration>, Result<Option<Response>, ExceptionCode>) {
        let mut st = self.0.lock().unwrap();
        let unit = req.slave;
        let (fc, addr, count) = summary(&req.request);
        st.log.push(Logged {
            unit,
            fc,
            addr,
            count,
        });
        let delay = st.delays.get_mut(&unit).and_then(VecDeque::pop_front);
        let unmapped = st.unmapped.clone();
        let Some(m) = st.units.get_mut(&unit) else {
            return (None, Ok(None)); // no such unit on the line: silence
        };
        (delay, apply(m, &unmapped, req.request).map(Some))
    }
}

fn summary(r: &Request<'_>) -> (u8, u16, u16) {
    match r {
        Request::ReadCoils(a, n) => (1, *a, *n),
        Request::ReadDiscreteInputs(a, n) => (2, *a, *n),
        Request::ReadHoldingRegisters(a, n) => (3, *a, *n),
        Request::ReadInputRegisters(a, n) => (4, *a, *n),
        Request::WriteSingleCoil(a, _) => (5, *a, 1),
        Request::WriteSingleRegister(a, _) => (6, *a, 1),
        Request::WriteMultipleCoils(a, b) => (15, *a, b.len() as u16),
        Request::WriteMultipleRegisters(a, w) => (16, *a, w.len() as u16),
        Request::MaskWriteRegister(a, _, _) => (22, *a, 1),
        _ => (0, 0, 0),
    }
}

fn range(
    a: u16,
    n: usize,
    unmapped: &HashSet<u16>,
) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let a = usize::from(a);
    if a + n > SIZE || (a..a + n).any(|x| unmapped.contains(&(x as u16))) {
        Err(ExceptionCode::IllegalDataAddress)
    } else {
        Ok(a..a + n)
    }
}

fn apply(
    m: &mut Memory,
    unmapped: &HashSet<u16>,
    r: Request<'static>,
) -> Result<Response, ExceptionCode> {
    let none = HashSet::new();
    Ok(match r {
        Request::ReadCoils(a, n) => {
            Response::ReadCoils(m.coils[range(a, n.into(), &none)?].to_vec())
        }
        Request::ReadDiscreteInputs(a, n) => {
            Response::ReadDiscreteInputs(m.discrete[range(a, n.into(), &none)?].to_vec())
        }
        Request::ReadHoldingRegisters(a, n) => {
            Response::ReadHoldingRegisters(m.holding[range(a, n.into(), unmapped)?].to_vec())
        }
        Request::ReadInputRegisters(a, n) => {
            Response::ReadInputRegisters(m.input[range(a, n.into(), &none)?].to_vec())
        }
        Request::WriteSingleCoil(a, b) => {
            let r = range(a, 1, &none)?;
            m.coils[r.start] = b;
            Response::WriteSingleCoil(a, b)
        }
        Request::WriteMultipleCoils(a, b) => {
            let r = range(a, b.len(), &none)?;
            m.coils[r].copy_from_slice(&b);
            Response::WriteMultipleCoils(a, b.len() as u16)
        }
        Request::WriteSingleRegister(a, w) => {
            let r = range(a, 1, unmapped)?;
            m.holding[r.start] = w;
            m.written.push((a, w));
            Response::WriteSingleRegister(a, w)
        }
        Request::WriteMultipleRegisters(a, w) => {
            let r = range(a, w.len(), unmapped)?;
            m.holding[r].copy_from_slice(&w);
            m.written.extend(
                w.iter()
                    .enumerate()
                    .map(|(i, v)| (a.wrapping_add(i as u16), *v)),
            );
            Response::WriteMultipleRegisters(a, w.len() as u16)
        }
        Request::MaskWriteRegister(a, and, or) => {
            let r = range(a, 1, unmapped)?;
            let old = m.holding[r.start];
            m.holding[r.start] = (old & and) | (or & !and);
            Response::MaskWriteRegister(a, and, or)
        }
        _ => return Err(ExceptionCode::IllegalFunction),
    })
}

type Reply = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Sim {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        let (delay, result) = self.handle(req);
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await; // a slow device, not a readiness wait
            }
            result
        })
    }
}

/// Serves Modbus TCP on 127.0.0.1:0 and returns the address.
pub async fn serve_tcp(sim: &Sim) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let sim = sim.clone();
    tokio::spawn(async move {
        let on_connected = move |stream, _addr| {
            let sim = sim.clone();
            async move {
                sim.0.lock().unwrap().connections += 1;
                Ok(Some((sim, stream)))
            }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    addr
}

/// Serves RTU over TCP on 127.0.0.1:0 and returns the address.
pub async fn serve_rtu_over_tcp(sim: &Sim) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
    let sim = sim.clone();
    tokio::spawn(async move {
        let on_connected = move |stream, _addr| {
            let sim = sim.clone();
            async move {
                sim.0.lock().unwrap().connections += 1;
                Ok(Some((sim, stream)))
            }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    addr
}

/// Serves RTU on one end of a pty pair and returns an opener that hands out the other end
/// (once: the bus keeps it open and flushes it instead of reopening).
pub fn serve_rtu_pty(sim: &Sim) -> Opener {
    let (server_end, client_end) = tokio_serial::SerialStream::pair().unwrap();
    let server = tokio_modbus::server::rtu::Server::new(server_end);
    let sim = sim.clone();
    tokio::spawn(async move {
        let _ = server.serve_forever(sim).await;
    });
    let slot = Arc::new(Mutex::new(Some(client_end)));
    Arc::new(move |_link| {
        let end = slot.lock().unwrap().take();
        Box::pin(async move {
            end.map(|e| Box::new(e) as BoxIo)
                .ok_or_else(|| io::Error::other("the pty end is already in use"))
        })
    })
}

pub fn prop(name: &str, data_type: DataType, visitor: Json) -> PropertyDef {
    PropertyDef {
        name: PropertyName(name.into()),
        data_type,
        access: AccessMode::ReadWrite,
        minimum: None,
        maximum: None,
        unit: None,
        collect_cycle: Some(Duration::from_secs(1)),
        report_cycle: None,
        visitor: Arc::new(visitor),
        twin: true,
        data: false,
        desired: None,
        stored_type: None,
    }
}

/// Binds a device through the SDK, failing on any issue.
pub fn spec(
    driver: &ModbusDriver,
    id: &str,
    protocol: ProtocolDef,
    properties: Vec<PropertyDef>,
) -> DeviceSpec<ModbusDriver> {
    let def = DeviceDef {
        id: DeviceId(id.into()),
        name: id.into(),
        namespace: "default".into(),
        model: "m".into(),
        protocol,
        properties: properties.into_iter().map(Arc::new).collect(),
        data_topic: None,
    };
    let (spec, issues) = bind(driver, def)
        .expect("driver handles modbus")
        .expect("protocol parses");
    assert!(issues.is_empty(), "{issues:?}");
    spec
}

pub fn tcp_protocol(addr: SocketAddr, unit: u8, extra: Json) -> ProtocolDef {
    let mut cfg =
        serde_json::json!({"ip": addr.ip().to_string(), "port": addr.port(), "slaveID": unit});
    if let (Some(c), Json::Object(e)) = (cfg.as_object_mut(), extra) {
        c.extend(e);
    }
    ProtocolDef {
        kind: "modbus".into(),
        config: Arc::new(cfg),
        common: Arc::new(Json::Null),
    }
}

pub fn rtu_protocol(unit: u8, custom: Json) -> ProtocolDef {
    ProtocolDef {
        kind: "modbus".into(),
        config: Arc::new(serde_json::json!({"slaveID": unit})),
        common: Arc::new(serde_json::json!({
            "com": {"serialPort": "/dev/ttyTEST0", "baudRate": 115200, "dataBits": 8, "parity": "none", "stopBits": 1},
            "customizedValues": custom,
        })),
    }
}

/// Polls `cond` until it holds or `deadline` passes.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
