//! The register map format (YAML) and its validation.
//!
//! Parsing happens in two steps: serde reads the file into `Raw*` mirror
//! structs (unknown fields are errors, so typos are caught), then
//! [`MapFile::parse`] resolves them into validated, ready-to-serve tables.
//! See the crate documentation for the format.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::MapError;
use crate::fault::{FaultConfig, Faults};
use crate::table::{Table, TableKind};
use crate::value::{Dynamics, Layout, ValueType, decode_number, encode_number, encode_string};

/// Default dynamics tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------- raw mirror

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tick_ms: Option<u64>,
    #[serde(default)]
    seed: Option<u64>,
    endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    #[serde(default)]
    tcp: Option<OneOrMany>,
    #[serde(default)]
    rtu: Option<RawRtu>,
    #[serde(default)]
    units: Vec<RawUnit>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRtu {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default = "default_baud")]
    baud: u32,
    #[serde(default)]
    wire_time: bool,
}

fn default_baud() -> u32 {
    9600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    id: u8,
    #[serde(default)]
    coils: Vec<RawRange<bool>>,
    #[serde(default, alias = "discrete")]
    discrete_inputs: Vec<RawRange<bool>>,
    #[serde(default, alias = "input")]
    input_registers: Vec<RawRange<u16>>,
    #[serde(default, alias = "holding")]
    holding_registers: Vec<RawRange<u16>>,
    #[serde(default)]
    values: Vec<RawValue>,
    #[serde(default)]
    faults: Option<FaultConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange<T> {
    start: u16,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    value: Option<T>,
    #[serde(default)]
    values: Option<Vec<T>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawScalar {
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValue {
    #[serde(default)]
    name: Option<String>,
    table: TableKind,
    address: u16,
    #[serde(rename = "type")]
    ty: ValueType,
    #[serde(default)]
    value: Option<RawScalar>,
    #[serde(default)]
    length: Option<u16>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    byte_swap: bool,
    #[serde(default)]
    word_swap: bool,
    #[serde(default)]
    dynamics: Option<Dynamics>,
    #[serde(default)]
    every: Option<u32>,
}

// ---------------------------------------------------------------- resolved

/// A whole map file: the dynamics tick and the endpoints to serve.
#[derive(Debug, Clone)]
pub struct MapFile {
    /// Where the map came from (file name or `<string>`), for messages.
    pub origin: String,
    /// Endpoints in file order.
    pub endpoints: Vec<Endpoint>,
}

/// One server: a transport and the units behind it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Unique name, used in logs and stats.
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// The units (register maps) it serves.
    pub device: DeviceMap,
}

/// How an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP on one or several listening addresses (port 0 = any free port).
    Tcp(Vec<SocketAddr>),
    /// Modbus RTU on a serial line.
    Rtu(RtuConfig),
}

/// RTU endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuConfig {
    /// An existing serial device or pty to open; a new pty pair when absent.
    pub path: Option<PathBuf>,
    /// Baud rate (used to open `path` and for wire-time emulation).
    pub baud: u32,
    /// Delay replies by the time the transaction would take on a real line.
    pub wire_time: bool,
}

/// The units served by one endpoint; input to [`crate::Simulator::from_map`].
#[derive(Debug, Clone)]
pub struct DeviceMap {
    /// How often dynamics step.
    pub tick: Duration,
    /// Random seed for `random_walk` (random when absent).
    pub seed: Option<u64>,
    /// The units, by id.
    pub units: Vec<UnitMap>,
}

/// One unit (slave id) with its four tables, typed values and faults.
#[derive(Debug, Clone)]
pub struct UnitMap {
    /// The unit id (slave id).
    pub id: u8,
    pub(crate) coils: Table<bool>,
    pub(crate) discrete_inputs: Table<bool>,
    pub(crate) input_registers: Table<u16>,
    pub(crate) holding_registers: Table<u16>,
    /// Typed values (named registers) with their dynamics.
    pub values: Vec<ValueSpec>,
    /// Faults active from the start.
    pub faults: Faults,
}

impl UnitMap {
    /// Number of mapped addresses in `table`.
    pub fn mapped(&self, table: TableKind) -> usize {
        match table {
            TableKind::Coils => self.coils.len(),
            TableKind::DiscreteInputs => self.discrete_inputs.len(),
            TableKind::InputRegisters => self.input_registers.len(),
            TableKind::HoldingRegisters => self.holding_registers.len(),
        }
    }
}

/// A typed value placed in a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpec {
    /// Name (defaults to `<table>@<address>`).
    pub name: String,
    /// The table.
    pub table: TableKind,
    /// First address.
    pub address: u16,
    /// The type.
    pub ty: ValueType,
    /// Number of addresses it occupies.
    pub width: u16,
    /// Scale and byte/word order.
    pub layout: Layout,
    /// How it changes over time.
    pub dynamics: Option<Dynamics>,
    /// Step the dynamics every N ticks (at least 1).
    pub every: u32,
}

impl ValueSpec {
    /// Decodes the current engineering value from registers.
    pub(crate) fn decode(&self, words: &[u16]) -> Option<f64> {
        decode_number(self.ty, &self.layout, words)
    }
}

struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, location: impl Into<String>, message: impl Into<String>) -> MapError {
        MapError::Invalid {
            origin: self.origin.to_string(),
            location: location.into(),
            message: message.into(),
        }
    }
}

impl MapFile {
    /// Reads and validates a map file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, MapError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates map YAML; `origin` names it in error messages.
    pub fn parse(yaml: &str, origin: &str) -> Result<Self, MapError> {
        let raw: RawFile = serde_saphyr::from_str(yaml).map_err(|e| MapError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let ctx = Ctx { origin };
        let tick = match raw.tick_ms {
            Some(0) => return Err(ctx.err("tick_ms", "must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_TICK,
        };
        if raw.endpoints.is_empty() {
            return Err(ctx.err("endpoints", "at least one endpoint is needed"));
        }
        let mut names = BTreeSet::new();
        let mut endpoints = Vec::with_capacity(raw.endpoints.len());
        for (i, ep) in raw.endpoints.into_iter().enumerate() {
            let loc = format!("endpoints[{i}] `{}`", ep.name);
            if ep.name.trim().is_empty() {
                return Err(ctx.err(format!("endpoints[{i}].name"), "must not be empty"));
            }
            if !names.insert(ep.name.clone()) {
                return Err(ctx.err(loc, "duplicate endpoint name"));
            }
            let transport = match (ep.tcp, ep.rtu) {
                (Some(t), None) => {
                    let list = match t {
                        OneOrMany::One(s) => vec![s],
                        OneOrMany::Many(v) => v,
                    };
                    if list.is_empty() {
                        return Err(ctx.err(format!("{loc}.tcp"), "needs at least one address"));
                    }
                    let mut addrs = Vec::new();
                    for s in list {
                        let a: SocketAddr = s.parse().map_err(|_| {
                            ctx.err(
                                format!("{loc}.tcp"),
                                format!("`{s}` is not IP:PORT (e.g. 127.0.0.1:5020, port 0 = any free port)"),
                            )
                        })?;
                        addrs.push(a);
                    }
                    Transport::Tcp(addrs)
                }
                (None, Some(r)) => {
                    if r.baud == 0 {
                        return Err(ctx.err(format!("{loc}.rtu.baud"), "must be positive"));
                    }
                    Transport::Rtu(RtuConfig {
                        path: r.path,
                        baud: r.baud,
                        wire_time: r.wire_time,
                    })
                }
                _ => {
                    return Err(ctx.err(loc, "needs exactly one of `tcp` or `rtu`"));
                }
            };
            let is_rtu = matches!(transport, Transport::Rtu(_));
            let mut ids = BTreeSet::new();
            let mut units = Vec::new();
            if ep.units.is_empty() {
                return Err(ctx.err(format!("{loc}.units"), "at least one unit is needed"));
            }
            for u in ep.units {
                let uloc = format!("{loc} unit {}", u.id);
                if !ids.insert(u.id) {
                    return Err(ctx.err(uloc, "duplicate unit id"));
                }
                if is_rtu && u.id == 0 {
                    return Err(ctx.err(uloc, "unit 0 is the RTU broadcast address; use 1..=247"));
                }
                units.push(resolve_unit(&ctx, &uloc, u)?);
            }
            endpoints.push(Endpoint {
                name: ep.name,
                transport,
                device: DeviceMap {
                    tick,
                    seed: raw.seed,
                    units,
                },
            });
        }
        Ok(MapFile {
            origin: origin.to_string(),
            endpoints,
        })
    }

    /// The endpoint called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

fn fill_range<T: Copy + Default>(
    ctx: &Ctx<'_>,
    loc: &str,
    ranges: Vec<RawRange<T>>,
    cells: &mut BTreeMap<u16, T>,
) -> Result<(), MapError> {
    for (i, r) in ranges.into_iter().enumerate() {
        let rloc = format!("{loc}[{i}]");
        let values = r.values.unwrap_or_default();
        let count = match r.count {
            Some(c) => {
                if (c as usize) < values.len() {
                    return Err(ctx.err(
                        format!("{rloc}.count"),
                        format!("{c} is less than the {} listed values", values.len()),
                    ));
                }
                c as usize
            }
            None if !values.is_empty() => values.len(),
            None => {
                return Err(ctx.err(rloc, "needs `count` or `values`"));
            }
        };
        if count == 0 {
            return Err(ctx.err(format!("{rloc}.count"), "must be at least 1"));
        }
        if usize::from(r.start) + count > 65536 {
            return Err(ctx.err(
                rloc,
                format!("start {} + count {count} runs past address 65535", r.start),
            ));
        }
        let fill = r.value.unwrap_or_default();
        for k in 0..count {
            let v = values.get(k).copied().unwrap_or(fill);
            // start + k <= 65535 was checked above
            cells.insert(r.start.wrapping_add(k as u16), v);
        }
    }
    Ok(())
}

fn resolve_unit(ctx: &Ctx<'_>, loc: &str, u: RawUnit) -> Result<UnitMap, MapError> {
    let mut coils = BTreeMap::new();
    let mut discrete = BTreeMap::new();
    let mut input = BTreeMap::new();
    let mut holding = BTreeMap::new();
    fill_range(ctx, &format!("{loc}.coils"), u.coils, &mut coils)?;
    fill_range(
        ctx,
        &format!("{loc}.discrete_inputs"),
        u.discrete_inputs,
        &mut discrete,
    )?;
    fill_range(
        ctx,
        &format!("{loc}.input_registers"),
        u.input_registers,
        &mut input,
    )?;
    fill_range(
        ctx,
        &format!("{loc}.holding_registers"),
        u.holding_registers,
        &mut holding,
    )?;

    let mut values = Vec::new();
    // (table, address) -> index of the value occupying it
    let mut occupied: BTreeMap<(TableKind, u16), usize> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for (i, v) in u.values.into_iter().enumerate() {
        let name = v
            .name
            .clone()
            .unwrap_or_else(|| format!("{}@{}", v.table, v.address));
        let vloc = format!("{loc}.values[{i}] `{name}`");
        if !names.insert(name.clone()) {
            return Err(ctx.err(vloc, "duplicate value name"));
        }
        let layout = Layout {
            scale: v.scale.unwrap_or(1.0),
            byte_swap: v.byte_swap,
            word_swap: v.word_swap,
        };
        if layout.scale == 0.0 || !layout.scale.is_finite() {
            return Err(ctx.err(format!("{vloc}.scale"), "must be a finite non-zero number"));
        }
        if let Some(d) = &v.dynamics {
            d.validate()
                .map_err(|m| ctx.err(format!("{vloc}.dynamics"), m))?;
            if v.ty == ValueType::String {
                return Err(ctx.err(format!("{vloc}.dynamics"), "strings cannot have dynamics"));
            }
            if let Some(Dynamics::Counter { step }) = d.raw_counter(layout.scale)
                && !matches!(v.ty, ValueType::F32 | ValueType::F64)
                && step.abs() < 0.5
            {
                return Err(ctx.err(
                    format!("{vloc}.dynamics.counter.step"),
                    format!(
                        "is less than one raw count (scale {}), so the counter would never move",
                        layout.scale
                    ),
                ));
            }
        }
        if v.every == Some(0) {
            return Err(ctx.err(format!("{vloc}.every"), "must be at least 1"));
        }
        // encode the initial value
        let words: Vec<u16>;
        let bits: Option<bool>;
        if v.table.is_bits() {
            if v.ty != ValueType::Bool {
                return Err(ctx.err(
                    format!("{vloc}.type"),
                    format!("{} hold bits; use type `bool`", v.table),
                ));
            }
            bits = Some(match &v.value {
                None => false,
                Some(RawScalar::Bool(b)) => *b,
                Some(RawScalar::Number(n)) if *n == 0.0 || *n == 1.0 => *n != 0.0,
                Some(_) => return Err(ctx.err(format!("{vloc}.value"), "must be true or false")),
            });
            words = Vec::new();
        } else {
            bits = None;
            words = match (v.ty, &v.value) {
                (ValueType::String, value) => {
                    let text = match value {
                        Some(RawScalar::Text(t)) => t.clone(),
                        None => String::new(),
                        Some(_) => {
                            return Err(ctx.err(format!("{vloc}.value"), "must be a string"));
                        }
                    };
                    let regs = match v.length {
                        Some(0) => {
                            return Err(ctx.err(format!("{vloc}.length"), "must be at least 1"));
                        }
                        Some(n) => usize::from(n),
                        None => text.len().div_ceil(2).max(1),
                    };
                    encode_string(&text, regs, v.byte_swap).ok_or_else(|| {
                        ctx.err(
                            format!("{vloc}.value"),
                            format!("`{text}` needs more than {regs} registers (length)"),
                        )
                    })?
                }
                (ty, value) => {
                    if v.length.is_some() {
                        return Err(ctx.err(format!("{vloc}.length"), "only strings have a length"));
                    }
                    let n = match value {
                        None => 0.0,
                        Some(RawScalar::Number(n)) => *n,
                        Some(RawScalar::Bool(b)) => f64::from(u8::from(*b)),
                        Some(RawScalar::Text(_)) => {
                            return Err(ctx.err(
                                format!("{vloc}.value"),
                                format!("must be a number for type {ty:?}"),
                            ));
                        }
                    };
                    encode_number(ty, &layout, n, false)
                        .map_err(|e| ctx.err(format!("{vloc}.value"), e.to_string()))?
                }
            };
        }
        let width = if v.table.is_bits() { 1 } else { words.len() };
        if usize::from(v.address) + width > 65536 {
            return Err(ctx.err(vloc, "runs past address 65535"));
        }
        for k in 0..width {
            let a = v.address.wrapping_add(k as u16);
            if let Some(&other) = occupied.get(&(v.table, a)) {
                let other: &ValueSpec = &values[other];
                return Err(ctx.err(
                    vloc,
                    format!("overlaps value `{}` at {} address {a}", other.name, v.table),
                ));
            }
            occupied.insert((v.table, a), values.len());
        }
        match (v.table, bits) {
            (TableKind::Coils, Some(b)) => {
                coils.insert(v.address, b);
            }
            (TableKind::DiscreteInputs, Some(b)) => {
                discrete.insert(v.address, b);
            }
            (TableKind::InputRegisters, _) => {
                for (k, w) in words.iter().enumerate() {
                    input.insert(v.address.wrapping_add(k as u16), *w);
                }
            }
            (TableKind::HoldingRegisters, _) => {
                for (k, w) in words.iter().enumerate() {
                    holding.insert(v.address.wrapping_add(k as u16), *w);
                }
            }
            _ => {}
        }
        values.push(ValueSpec {
            name,
            table: v.table,
            address: v.address,
            ty: v.ty,
            width: width as u16,
            layout,
            dynamics: v.dynamics,
            every: v.every.unwrap_or(1),
        });
    }

    let faults = match u.faults {
        None => Faults::default(),
        Some(f) => f
            .resolve()
            .map_err(|(field, message)| ctx.err(format!("{loc}.faults.{field}"), message))?,
    };

    Ok(UnitMap {
        id: u.id,
        coils: Table::from_cells(&coils),
        discrete_inputs: Table::from_cells(&discrete),
        input_registers: Table::from_cells(&input),
        holding_registers: Table::from_cells(&holding),
        values,
        faults,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fault::LateReplies;

    const SMALL: &str = r#"
tick_ms: 100
seed: 1
endpoints:
  - name: plc
    tcp: 127.0.0.1:0
    units:
      - id: 1
        holding_registers:
          - { start: 0, count: 10 }
          - { start: 100, values: [1, 2, 3], count: 5, value: 9 }
        coils:
          - { start: 0, values: [true, false, true] }
        discrete:
          - { start: 0, count: 4, value: true }
        input:
          - { start: 0, count: 2 }
        values:
          - { name: temp, table: input, address: 10, type: float32, value: 21.5, word_swap: true }
          - { name: level, table: holding, address: 20, type: int16, scale: 0.1, value: -12.5,
              dynamics: { ramp: { step: 0.5, min: -20, max: 20 } } }
          - { name: label, table: holding, address: 30, type: string, value: "PUMP-1", length: 4 }
          - { name: run, table: coils, address: 7, type: bool, value: true, dynamics: toggle, every: 2 }
        faults:
          exceptions:
            - { code: 4, table: holding, start: 100, count: 2 }
          late: { delay_ms: 500, every: 3 }
  - name: line
    rtu: { baud: 19200, wire_time: true }
    units:
      - id: 2
        holding: [ { start: 0, count: 1 } ]
"#;

    #[test]
    fn parses_small_map() {
        let m = MapFile::parse(SMALL, "small.yaml").unwrap();
        assert_eq!(m.endpoints.len(), 2);
        let ep = &m.endpoints[0];
        assert_eq!(
            ep.transport,
            Transport::Tcp(vec!["127.0.0.1:0".parse().unwrap()])
        );
        assert_eq!(ep.device.tick, Duration::from_millis(100));
        let u = &ep.device.units[0];
        assert_eq!(u.holding_registers.read(100, 5).unwrap(), &[1, 2, 3, 9, 9]);
        assert_eq!(u.holding_registers.read(0, 10).unwrap(), &[0; 10]);
        assert_eq!(u.input_registers.read(10, 2).unwrap(), &[0, 0x41AC]);
        assert_eq!(
            u.holding_registers.read(20, 1).unwrap(),
            &[(-125i16) as u16]
        );
        assert_eq!(
            u.holding_registers.read(30, 4).unwrap(),
            &[0x5055, 0x4D50, 0x2D31, 0]
        );
        assert_eq!(u.coils.read(0, 3).unwrap(), &[true, false, true]);
        assert_eq!(u.coils.read(7, 1).unwrap(), &[true]);
        assert!(u.coils.read(3, 1).is_none());
        assert_eq!(u.discrete_inputs.read(0, 4).unwrap(), &[true; 4]);
        assert_eq!(u.values.len(), 4);
        assert_eq!(u.values[3].every, 2);
        assert_eq!(u.values[3].dynamics, Some(Dynamics::Toggle));
        assert_eq!(u.faults.exceptions.len(), 1);
        assert_eq!(
            u.faults.late,
            Some(LateReplies {
                delay: Duration::from_millis(500),
                every: 3
            })
        );
        assert_eq!(
            m.endpoints[1].transport,
            Transport::Rtu(RtuConfig {
                path: None,
                baud: 19200,
                wire_time: true
            })
        );
    }

    fn err_of(yaml: &str) -> String {
        MapFile::parse(yaml, "bad.yaml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_unit_and_field() {
        let e = err_of(
            "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 3\n        values:\n          - { name: x, table: holding, address: 0, type: uint16, value: 70000 }\n",
        );
        assert!(
            e.contains("bad.yaml") && e.contains("unit 3") && e.contains("values[0] `x`.value"),
            "{e}"
        );

        let e = err_of(
            "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 1\n        holdng: []\n",
        );
        assert!(e.contains("bad.yaml") && e.contains("holdng"), "{e}");

        let e = err_of("endpoints:\n  - name: a\n    tcp: localhost\n    units: [ { id: 1 } ]\n");
        assert!(e.contains("tcp") && e.contains("IP:PORT"), "{e}");

        let e = err_of("endpoints:\n  - name: a\n    rtu: {}\n    units: [ { id: 0 } ]\n");
        assert!(e.contains("broadcast"), "{e}");

        let e = err_of(
            "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 1\n        values:\n          - { name: a, table: holding, address: 0, type: f32 }\n          - { name: b, table: holding, address: 1, type: u16 }\n",
        );
        assert!(e.contains("overlaps value `a`"), "{e}");

        let e = err_of(
            "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 1\n        holding: [ { start: 65535, count: 2 } ]\n",
        );
        assert!(e.contains("65535"), "{e}");

        let e = err_of(
            "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 1\n        values:\n          - { table: holding, address: 0, type: u16, dynamics: { ramp: { step: 1, min: 5, max: 1 } } }\n",
        );
        assert!(
            e.contains("holding_registers@0") && e.contains("dynamics"),
            "{e}"
        );

        let e = err_of("endpoints: [");
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(err_of("endpoints: []").contains("at least one endpoint"));
    }

    #[test]
    fn example_maps_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("maps");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                MapFile::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    /// The device models' simulator maps (another directory of this
    /// workspace) must stay loadable by this crate.
    #[test]
    fn device_model_maps_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-models");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let p = entry.unwrap().path().join("sim.yaml");
            if p.exists() {
                MapFile::load(&p).unwrap();
            }
        }
    }

    #[test]
    fn counter_step_in_engineering_units() {
        let ok = "endpoints:\n  - name: a\n    tcp: 127.0.0.1:0\n    units:\n      - id: 1\n        values:\n          - { table: input, address: 0, type: u32, scale: 0.01, dynamics: { counter: { step: 0.01 } } }\n";
        MapFile::parse(ok, "ok").unwrap();
        let e = err_of(&ok.replace("step: 0.01", "step: 0.001"));
        assert!(
            e.contains("counter.step") && e.contains("never move"),
            "{e}"
        );
    }
}
