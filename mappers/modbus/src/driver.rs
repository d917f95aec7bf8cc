//! [`ModbusDriver`]: the `mapper_sdk` driver for Modbus TCP, RTU and RTU over TCP.
//!
//! `connect` finds (or starts) the bus task of the device's serial line or TCP endpoint
//! and asks it to open the transport; the returned [`ModbusDevice`] sends its requests to
//! that task. `read_many` merges the properties due in one tick with [`crate::plan`]; when
//! a merged request is refused (a register in the range is not mapped), its properties are
//! read one by one so that one bad address does not hide the others.
//!
//! Writes use FC5 for one coil, FC15 for several, FC6 for one holding register, FC16 for
//! multi-register values and FC22 (mask write) for one bit of a holding register. Input
//! registers and discrete inputs cannot be written ([`DriverError::Invalid`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mapper_sdk::driver::{
    ConfigError, ConfigWarning, Device, DeviceSpec, Driver, DriverError, PropertySpec,
};
use mapper_sdk::model::{DeviceId, Value};
use mapper_sdk::profile::{PropertyDef, ProtocolDef};
use tracing::debug;

use crate::bus::{Bus, BusRegistry, Op, Opener, Reply, default_opener};
use crate::codec::{self, Payload};
use crate::config::{
    self, Limits, MAX_WRITE_BITS, MAX_WRITE_REGISTERS, ModbusProtocol, ModbusVisitor,
};
use crate::plan::{self, ReadRequest, Slot};

/// The Modbus driver. Holds the registry of live buses (no globals): devices on the same
/// serial port or TCP endpoint share one bus task.
#[derive(Debug)]
pub struct ModbusDriver {
    buses: BusRegistry,
    opener: OpenerBox,
}

/// [`Opener`] with a `Debug` impl.
struct OpenerBox(Opener);

impl std::fmt::Debug for OpenerBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

impl Default for ModbusDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl ModbusDriver {
    /// A driver that opens real TCP connections and serial ports.
    pub fn new() -> Self {
        Self::with_opener(default_opener())
    }

    /// A driver that opens transports with `opener` (tests, or transports such as a pty
    /// or a TLS tunnel).
    pub fn with_opener(opener: Opener) -> Self {
        Self {
            buses: BusRegistry::default(),
            opener: OpenerBox(opener),
        }
    }

    /// How many bus tasks are in use.
    pub fn live_buses(&self) -> usize {
        self.buses.live()
    }
}

impl Driver for ModbusDriver {
    type Protocol = ModbusProtocol;
    type Visitor = ModbusVisitor;
    type Device = ModbusDevice;

    fn name(&self) -> &'static str {
        "modbus"
    }

    fn handles(&self, protocol: &ProtocolDef) -> bool {
        config::is_modbus_kind(&protocol.kind)
    }

    fn parse_protocol(&self, protocol: &ProtocolDef) -> Result<ModbusProtocol, ConfigError> {
        config::parse_protocol(protocol)
    }

    fn parse_visitor(
        &self,
        property: &PropertyDef,
        protocol: &ModbusProtocol,
    ) -> Result<ModbusVisitor, ConfigError> {
        self.parse_visitor_noting(property, protocol)
            .map(|(v, _)| v)
    }

    fn parse_protocol_noting(
        &self,
        protocol: &ProtocolDef,
    ) -> Result<(ModbusProtocol, Vec<ConfigWarning>), ConfigError> {
        config::parse_protocol_noting(protocol)
    }

    fn parse_visitor_noting(
        &self,
        property: &PropertyDef,
        protocol: &ModbusProtocol,
    ) -> Result<(ModbusVisitor, Vec<ConfigWarning>), ConfigError> {
        let (v, warnings) = config::parse_visitor_noting(property)?;
        let max = protocol.limits.max_for(v.table);
        if v.count > max {
            return Err(ConfigError::new(
                "visitorConfig.limit",
                format!(
                    "limit {} is above the device's {} of {max}; raise it or split the property",
                    v.count,
                    if v.table.is_bits() {
                        "maxBitsPerRequest"
                    } else {
                        "maxRegistersPerRequest"
                    }
                ),
            ));
        }
        Ok((v, warnings))
    }

    fn describe_protocol(&self, p: &ModbusProtocol) -> Vec<(String, String)> {
        let mut out = vec![
            ("unit".to_owned(), p.unit.to_string()),
            ("link".to_owned(), p.link.describe()),
        ];
        if let config::Link::Rtu(serial) = &p.link {
            out.push(("baudRate".into(), serial.baud_rate.to_string()));
            out.push(("dataBits".into(), serial.data_bits.to_string()));
            out.push((
                "parity".into(),
                format!("{:?}", serial.parity).to_lowercase(),
            ));
            out.push(("stopBits".into(), serial.stop_bits.to_string()));
        }
        let t = &p.timing;
        let l = &p.limits;
        out.extend([
            ("requestTimeout".into(), format!("{:?}", t.request_timeout)),
            ("connectTimeout".into(), format!("{:?}", t.connect_timeout)),
            ("maxRegistersPerRequest".into(), l.max_registers.to_string()),
            ("maxBitsPerRequest".into(), l.max_bits.to_string()),
            ("maxGap".into(), l.max_gap.to_string()),
            (
                "singleRequestPerProperty".into(),
                l.single_request.to_string(),
            ),
        ]);
        out
    }

    fn describe_visitor(&self, v: &ModbusVisitor) -> Vec<(String, String)> {
        let mut out = vec![
            ("table".to_owned(), format!("{:?}", v.table)),
            ("offset".to_owned(), v.offset.to_string()),
            ("count".to_owned(), v.count.to_string()),
            ("rawType".to_owned(), format!("{:?}", v.raw)),
        ];
        if v.swap_bytes {
            out.push(("swapBytes".into(), "true".into()));
        }
        if v.swap_words {
            out.push(("swapWords".into(), "true".into()));
        }
        if (v.scale - 1.0).abs() > f64::EPSILON {
            out.push(("scale".into(), v.scale.to_string()));
        }
        if v.add != 0.0 {
            out.push(("offsetValue".into(), v.add.to_string()));
        }
        out
    }

    fn connect(
        &self,
        spec: &DeviceSpec<Self>,
    ) -> impl Future<Output = Result<ModbusDevice, DriverError>> + Send {
        let p = spec.protocol.clone();
        let id = spec.id().clone();
        let bus = self.buses.get_or_start(&p.link, p.timing, &self.opener.0);
        async move {
            let bus = bus?;
            bus.call(p.unit, Op::Connect, p.timing.request_timeout)
                .await?;
            bus.join();
            debug!(device = %id, unit = p.unit, link = %p.link.describe(), "connected");
            Ok(ModbusDevice {
                bus,
                unit: p.unit,
                timeout: p.timing.request_timeout,
                limits: p.limits,
                id,
                closed: false,
            })
        }
    }
}

/// A connected Modbus device: a unit id on a shared bus.
#[derive(Debug)]
pub struct ModbusDevice {
    bus: Arc<Bus>,
    unit: u8,
    timeout: Duration,
    limits: Limits,
    id: DeviceId,
    /// Whether [`Device::close`] ran (the bus was told the device left).
    closed: bool,
}

fn invalid(p: &PropertySpec<ModbusVisitor>, e: impl std::fmt::Display) -> DriverError {
    DriverError::Invalid(format!("property {}: {e}", p.def.name))
}

fn decode_slot(
    p: &PropertySpec<ModbusVisitor>,
    reply: &Reply,
    slot: Slot,
) -> Result<Value, DriverError> {
    let end = slot.start + slot.count;
    match reply {
        Reply::Words(w) if end <= w.len() => {
            codec::decode_words(&p.visitor, &w[slot.start..end]).map_err(|e| invalid(p, e))
        }
        Reply::Bits(b) if end <= b.len() => {
            codec::decode_bits(&p.visitor, &b[slot.start..end]).map_err(|e| invalid(p, e))
        }
        other => Err(invalid(
            p,
            format!("the reply {other:?} does not cover the property"),
        )),
    }
}

impl ModbusDevice {
    async fn read_request(&self, r: ReadRequest) -> Result<Reply, DriverError> {
        self.bus.call(self.unit, Op::Read(r), self.timeout).await
    }
}

impl Device for ModbusDevice {
    type Visitor = ModbusVisitor;

    async fn read(&mut self, property: &PropertySpec<ModbusVisitor>) -> Result<Value, DriverError> {
        let v = &property.visitor;
        let reply = self
            .read_request(ReadRequest {
                table: v.table,
                offset: v.offset,
                count: v.count,
            })
            .await?;
        decode_slot(
            property,
            &reply,
            Slot {
                request: 0,
                start: 0,
                count: usize::from(v.count),
            },
        )
    }

    async fn read_many(
        &mut self,
        properties: &[&PropertySpec<ModbusVisitor>],
    ) -> Vec<Result<Value, DriverError>> {
        let spans: Vec<plan::Span> = properties.iter().map(|p| p.visitor.span()).collect();
        let plan = plan::plan(&spans, &self.limits);
        debug!(
            device = %self.id,
            properties = properties.len(),
            requests = plan.requests.len(),
            "planned reads"
        );
        let mut replies: Vec<Result<Reply, DriverError>> = Vec::with_capacity(plan.requests.len());
        // After a link error the rest of the batch is not sent; its requests fail with
        // that same error, so whichever property the SDK looks at names the real cause.
        let mut lost: Option<DriverError> = None;
        for r in &plan.requests {
            if let Some(e) = &lost {
                replies.push(Err(e.clone()));
                continue;
            }
            let res = self.read_request(*r).await;
            if let Err(e) = &res
                && e.is_link()
            {
                lost = Some(e.clone());
            }
            replies.push(res);
        }
        let mut out = Vec::with_capacity(properties.len());
        for (p, slot) in properties.iter().zip(&plan.slots) {
            let res = match replies.get(slot.request) {
                Some(Ok(reply)) => decode_slot(p, reply, *slot),
                Some(Err(DriverError::Refused(_)))
                    if plan.spans_of(slot.request).nth(1).is_some() =>
                {
                    // A merged read was refused: one of its addresses may not exist.
                    // Read this property alone so the others still report.
                    self.read(p).await
                }
                Some(Err(e)) => Err(e.clone()),
                None => Err(DriverError::Link("no request planned".into())),
            };
            out.push(res);
        }
        out
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.bus.leave();
        }
    }

    fn write(
        &mut self,
        property: &PropertySpec<ModbusVisitor>,
        value: &Value,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        let op = write_op(property, value);
        async move {
            let op = op?;
            debug!(device = %self.id, property = %property.def.name, %op, "write");
            self.bus.call(self.unit, op, self.timeout).await.map(|_| ())
        }
    }
}

/// The write operation for a value: FC5/FC15 for coils, FC6/FC16 for holding registers,
/// FC22 for one bit of a holding register.
pub fn write_op(property: &PropertySpec<ModbusVisitor>, value: &Value) -> Result<Op, DriverError> {
    let v = &property.visitor;
    if !v.table.is_writable() {
        return Err(invalid(
            property,
            format!(
                "{} is read-only in Modbus; only coils and holding registers can be written",
                v.table.as_str()
            ),
        ));
    }
    let payload = codec::encode(v, value).map_err(|e| invalid(property, e))?;
    Ok(match payload {
        Payload::Bits(b) if b.len() == 1 => Op::WriteCoil(v.offset, b[0]),
        Payload::Bits(b) if b.len() <= usize::from(MAX_WRITE_BITS) => Op::WriteCoils(v.offset, b),
        Payload::Words(w) if w.len() == 1 => Op::WriteRegister(v.offset, w[0]),
        Payload::Words(w) if w.len() <= usize::from(MAX_WRITE_REGISTERS) => {
            Op::WriteRegisters(v.offset, w)
        }
        Payload::Mask { and, or } => Op::MaskWrite(v.offset, and, or),
        Payload::Bits(b) => {
            return Err(invalid(
                property,
                format!(
                    "{} coils cannot be written at once (at most {MAX_WRITE_BITS})",
                    b.len()
                ),
            ));
        }
        Payload::Words(w) => {
            return Err(invalid(
                property,
                format!(
                    "{} registers cannot be written at once (at most {MAX_WRITE_REGISTERS})",
                    w.len()
                ),
            ));
        }
    })
}
