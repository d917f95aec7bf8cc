//! The request handler shared by all transports: unit lookup, faults,
//! table access, counters. No I/O.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;

use crate::fault::Faults;
use crate::map::{UnitMap, ValueSpec};
use crate::pdu::{
    ILLEGAL_DATA_ADDRESS, Request, Response, decode_request, encode_exception, encode_response,
};
use crate::stats::{Stats, StatsSnapshot, UnitStats};
use crate::table::{Table, TableKind};
use crate::value::encode_number;

/// Mutable state of one unit.
#[derive(Debug)]
pub(crate) struct UnitState {
    pub(crate) coils: Table<bool>,
    pub(crate) discrete_inputs: Table<bool>,
    pub(crate) input_registers: Table<u16>,
    pub(crate) holding_registers: Table<u16>,
    pub(crate) values: Vec<ValueSpec>,
    pub(crate) faults: Faults,
    /// Requests seen since the faults were last set (drop_connection_after).
    requests_seen: u64,
    /// Replies produced since the faults were last set (late, corrupt CRC).
    replies_made: u64,
    ticks: u64,
}

impl UnitState {
    fn new(map: &UnitMap) -> Self {
        Self {
            coils: map.coils.clone(),
            discrete_inputs: map.discrete_inputs.clone(),
            input_registers: map.input_registers.clone(),
            holding_registers: map.holding_registers.clone(),
            values: map.values.clone(),
            faults: map.faults.clone(),
            requests_seen: 0,
            replies_made: 0,
            ticks: 0,
        }
    }

    /// Replaces the faults and restarts their periods.
    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.requests_seen = 0;
        self.replies_made = 0;
    }

    pub(crate) fn registers(&self, table: TableKind) -> Option<&Table<u16>> {
        match table {
            TableKind::InputRegisters => Some(&self.input_registers),
            TableKind::HoldingRegisters => Some(&self.holding_registers),
            _ => None,
        }
    }

    pub(crate) fn registers_mut(&mut self, table: TableKind) -> Option<&mut Table<u16>> {
        match table {
            TableKind::InputRegisters => Some(&mut self.input_registers),
            TableKind::HoldingRegisters => Some(&mut self.holding_registers),
            _ => None,
        }
    }

    pub(crate) fn bits(&self, table: TableKind) -> Option<&Table<bool>> {
        match table {
            TableKind::Coils => Some(&self.coils),
            TableKind::DiscreteInputs => Some(&self.discrete_inputs),
            _ => None,
        }
    }

    pub(crate) fn bits_mut(&mut self, table: TableKind) -> Option<&mut Table<bool>> {
        match table {
            TableKind::Coils => Some(&mut self.coils),
            TableKind::DiscreteInputs => Some(&mut self.discrete_inputs),
            _ => None,
        }
    }

    /// Steps every value's dynamics once (respecting `every`).
    pub(crate) fn tick<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.ticks += 1;
        let ticks = self.ticks;
        for i in 0..self.values.len() {
            let spec = &self.values[i];
            let Some(dynamics) = spec.dynamics.clone() else {
                continue;
            };
            if !ticks.is_multiple_of(u64::from(spec.every)) {
                continue;
            }
            let (table, addr, width) = (spec.table, spec.address, usize::from(spec.width));
            if table.is_bits() {
                let Some(t) = self.bits_mut(table) else {
                    continue;
                };
                let Some(cur) = t.read(addr, 1).and_then(|s| s.first().copied()) else {
                    continue;
                };
                let next = dynamics.next(f64::from(u8::from(cur)), (0.0, 1.0), rng);
                t.write(addr, &[next >= 0.5]);
                continue;
            }
            let spec = spec.clone();
            let Some(t) = self.registers_mut(table) else {
                continue;
            };
            let Some(cur) = t.read(addr, width).and_then(|w| spec.decode(w)) else {
                continue;
            };
            let bounds = spec.ty.raw_bounds();
            let next = match dynamics.raw_counter(spec.layout.scale) {
                // counters count raw units and wrap like hardware
                Some(raw) => {
                    let mut cur = cur / spec.layout.scale;
                    if spec.ty.is_integer() {
                        cur = cur.round();
                    }
                    raw.next(cur, bounds, rng) * spec.layout.scale
                }
                None => dynamics.next(cur, bounds, rng),
            };
            if let Ok(words) = encode_number(spec.ty, &spec.layout, next, true) {
                t.write(addr, &words);
            }
        }
    }
}

/// A configured unit.
#[derive(Debug)]
pub(crate) struct Unit {
    state: Mutex<UnitState>,
}

impl Unit {
    pub(crate) fn lock(&self) -> MutexGuard<'_, UnitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a transport should do with one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Action {
    /// The reply PDU; `None` = stay silent.
    pub(crate) reply: Option<Vec<u8>>,
    /// Wait this long before sending the reply.
    pub(crate) delay: Duration,
    /// RTU: send the reply with a broken CRC.
    pub(crate) corrupt_crc: bool,
    /// TCP: close the connection instead of answering.
    pub(crate) close: bool,
}

/// Units and counters of one simulator.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) units: BTreeMap<u8, Unit>,
    pub(crate) stats: std::sync::Arc<Stats>,
}

/// Counters gathered while handling one request, applied to [`Stats`] after
/// the unit lock is released.
#[derive(Default)]
struct Count {
    fc: u8,
    replied: bool,
    exception: bool,
    registers_read: u64,
    registers_written: u64,
    bits_read: u64,
    bits_written: u64,
}

impl Core {
    pub(crate) fn new(units: &[UnitMap], stats: std::sync::Arc<Stats>) -> Self {
        Self {
            units: units
                .iter()
                .map(|u| {
                    (
                        u.id,
                        Unit {
                            state: Mutex::new(UnitState::new(u)),
                        },
                    )
                })
                .collect(),
            stats,
        }
    }

    /// Handles a request PDU addressed to `unit`.
    pub(crate) fn handle(&self, unit_id: u8, pdu: &[u8]) -> Action {
        let Some(unit) = self.units.get(&unit_id) else {
            self.stats.update(|s| {
                s.requests += 1;
                s.unknown_unit += 1;
            });
            return Action::default();
        };
        let mut count = Count {
            fc: pdu.first().copied().unwrap_or(0),
            ..Count::default()
        };
        let mut action = Action::default();
        let mut silenced = false;
        {
            let mut st = unit.lock();
            st.requests_seen += 1;
            if st.faults.silent {
                silenced = true;
            } else if st
                .faults
                .drop_connection_after
                .is_some_and(|n| st.requests_seen.is_multiple_of(u64::from(n.max(1))))
            {
                action.close = true;
            } else {
                let reply = match decode_request(pdu) {
                    Err(code) => Err(code),
                    Ok(req) => execute(&mut st, &req, &mut count),
                };
                let reply = match reply {
                    Ok(resp) => encode_response(&resp),
                    Err(code) => {
                        count.exception = true;
                        encode_exception(count.fc, code)
                    }
                };
                count.replied = true;
                st.replies_made += 1;
                let n = st.replies_made;
                let mut delay = st.faults.delay.unwrap_or_default();
                if let Some(late) = st.faults.late
                    && n.is_multiple_of(u64::from(late.every.max(1)))
                {
                    delay += late.delay;
                }
                action.delay = delay;
                action.corrupt_crc = st
                    .faults
                    .corrupt_crc_every
                    .is_some_and(|e| n.is_multiple_of(u64::from(e.max(1))));
                action.reply = Some(reply);
            }
        }
        self.stats.update(|s| {
            s.requests += 1;
            s.silenced += u64::from(silenced);
            s.dropped_connections += u64::from(action.close);
            record(s, unit_id, &count);
        });
        action
    }

    /// RTU broadcast (unit 0): writes go to every unit, nothing is answered.
    pub(crate) fn broadcast(&self, pdu: &[u8]) {
        let Ok(req) = decode_request(pdu) else {
            self.stats.update(|s| {
                s.requests += 1;
                s.broadcasts += 1;
            });
            return;
        };
        if req.is_write() {
            for unit in self.units.values() {
                let mut st = unit.lock();
                if !st.faults.silent {
                    let mut c = Count::default();
                    // exceptions cannot be reported on broadcast
                    let _ = execute(&mut st, &req, &mut c);
                }
            }
        }
        self.stats.update(|s| {
            s.requests += 1;
            s.broadcasts += 1;
        });
    }
}

fn record(s: &mut StatsSnapshot, unit: u8, c: &Count) {
    s.replies += u64::from(c.replied);
    s.exceptions += u64::from(c.exception);
    s.registers_read += c.registers_read;
    s.registers_written += c.registers_written;
    s.bits_read += c.bits_read;
    s.bits_written += c.bits_written;
    let u: &mut UnitStats = s.units.entry(unit).or_default();
    u.requests += 1;
    *u.by_function.entry(c.fc).or_default() += 1;
    u.replies += u64::from(c.replied);
    u.exceptions += u64::from(c.exception);
    u.registers_read += c.registers_read;
    u.registers_written += c.registers_written;
    u.bits_read += c.bits_read;
    u.bits_written += c.bits_written;
}

fn check_fault(st: &UnitState, table: TableKind, addr: u16, qty: usize) -> Result<(), u8> {
    match st
        .faults
        .exceptions
        .iter()
        .find(|r| r.matches(table, addr, qty))
    {
        Some(r) => Err(r.code),
        None => Ok(()),
    }
}

/// Runs a decoded request against the tables.
fn execute(st: &mut UnitState, req: &Request, c: &mut Count) -> Result<Response, u8> {
    use TableKind::*;
    let fc = req.function_code();
    match req {
        Request::ReadCoils { addr, qty } | Request::ReadDiscreteInputs { addr, qty } => {
            let table = if fc == 1 { Coils } else { DiscreteInputs };
            check_fault(st, table, *addr, usize::from(*qty))?;
            let bits = st
                .bits(table)
                .and_then(|t| t.read(*addr, usize::from(*qty)))
                .ok_or(ILLEGAL_DATA_ADDRESS)?
                .to_vec();
            c.bits_read += u64::from(*qty);
            Ok(Response::ReadBits { fc, bits })
        }
        Request::ReadHoldingRegisters { addr, qty } | Request::ReadInputRegisters { addr, qty } => {
            let table = if fc == 3 {
                HoldingRegisters
            } else {
                InputRegisters
            };
            check_fault(st, table, *addr, usize::from(*qty))?;
            let words = st
                .registers(table)
                .and_then(|t| t.read(*addr, usize::from(*qty)))
                .ok_or(ILLEGAL_DATA_ADDRESS)?
                .to_vec();
            c.registers_read += u64::from(*qty);
            Ok(Response::ReadRegisters { fc, words })
        }
        Request::WriteSingleCoil { addr, value } => {
            check_fault(st, Coils, *addr, 1)?;
            if !st.coils.write(*addr, &[*value]) {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            c.bits_written += 1;
            Ok(Response::Echo {
                fc,
                a: *addr,
                b: if *value { 0xFF00 } else { 0 },
            })
        }
        Request::WriteSingleRegister { addr, value } => {
            check_fault(st, HoldingRegisters, *addr, 1)?;
            if !st.holding_registers.write(*addr, &[*value]) {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            c.registers_written += 1;
            Ok(Response::Echo {
                fc,
                a: *addr,
                b: *value,
            })
        }
        Request::WriteMultipleCoils { addr, values } => {
            check_fault(st, Coils, *addr, values.len())?;
            if !st.coils.write(*addr, values) {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            c.bits_written += values.len() as u64;
            Ok(Response::Echo {
                fc,
                a: *addr,
                b: values.len() as u16,
            })
        }
        Request::WriteMultipleRegisters { addr, values } => {
            check_fault(st, HoldingRegisters, *addr, values.len())?;
            if !st.holding_registers.write(*addr, values) {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            c.registers_written += values.len() as u64;
            Ok(Response::Echo {
                fc,
                a: *addr,
                b: values.len() as u16,
            })
        }
        Request::ReadWriteMultipleRegisters {
            read_addr,
            read_qty,
            write_addr,
            values,
        } => {
            check_fault(st, HoldingRegisters, *write_addr, values.len())?;
            check_fault(st, HoldingRegisters, *read_addr, usize::from(*read_qty))?;
            // validate both ranges before writing anything
            if !st.holding_registers.contains(*write_addr, values.len())
                || !st
                    .holding_registers
                    .contains(*read_addr, usize::from(*read_qty))
            {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            st.holding_registers.write(*write_addr, values);
            let words = st
                .holding_registers
                .read(*read_addr, usize::from(*read_qty))
                .ok_or(ILLEGAL_DATA_ADDRESS)?
                .to_vec();
            c.registers_written += values.len() as u64;
            c.registers_read += u64::from(*read_qty);
            Ok(Response::ReadRegisters { fc, words })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fault::{ExceptionRule, Fault};
    use crate::map::MapFile;
    use rand::SeedableRng;
    use std::sync::Arc;

    fn core() -> Core {
        let yaml = r#"
endpoints:
  - name: t
    tcp: 127.0.0.1:0
    units:
      - id: 1
        holding: [ { start: 0, count: 10 } ]
        coils: [ { start: 0, count: 10 } ]
        values:
          - { name: c, table: holding, address: 5, type: u16, value: 65534, dynamics: { counter: {} } }
          - { name: r, table: holding, address: 6, type: i16, scale: 0.5, value: 1, dynamics: { ramp: { step: 1.5, min: 0, max: 4 } } }
          - { name: b, table: coils, address: 3, type: bool, dynamics: toggle }
          - { name: e, table: holding, address: 7, type: u16, scale: 0.01, value: 655.34, dynamics: { counter: { step: 0.01 } } }
"#;
        let m = MapFile::parse(yaml, "t").unwrap();
        Core::new(&m.endpoints[0].device.units, Arc::new(Stats::default()))
    }

    #[test]
    fn handles_reads_writes_and_exceptions() {
        let c = core();
        let a = c.handle(1, &[6, 0, 2, 0x12, 0x34]);
        assert_eq!(a.reply, Some(vec![6, 0, 2, 0x12, 0x34]));
        let a = c.handle(1, &[3, 0, 1, 0, 2]);
        assert_eq!(a.reply, Some(vec![3, 4, 0, 0, 0x12, 0x34]));
        let a = c.handle(1, &[3, 0, 9, 0, 2]);
        assert_eq!(a.reply, Some(vec![0x83, 2]));
        let a = c.handle(1, &[4, 0, 0, 0, 1]);
        assert_eq!(a.reply, Some(vec![0x84, 2]));
        let a = c.handle(1, &[0x2B, 0x0E, 1, 0]);
        assert_eq!(a.reply, Some(vec![0xAB, 1]));
        assert_eq!(c.handle(9, &[3, 0, 0, 0, 1]), Action::default());
        let s = c.stats.snapshot();
        assert_eq!(s.requests, 6);
        assert_eq!(s.unknown_unit, 1);
        assert_eq!(s.exceptions, 3);
        assert_eq!(s.registers_read, 2);
        assert_eq!(s.registers_written, 1);
        assert_eq!(s.units[&1].by_function[&3], 2);
    }

    #[test]
    fn faults_shape_actions() {
        let c = core();
        let u = &c.units[&1];
        let mut f = Faults::default();
        f.apply(Fault::Exception(ExceptionRule::range(
            4,
            TableKind::HoldingRegisters,
            2,
            1,
        )));
        f.apply(Fault::CorruptCrc { every: 2 });
        f.apply(Fault::Late {
            delay: Duration::from_secs(1),
            every: 2,
        });
        u.lock().set_faults(f);
        let a = c.handle(1, &[3, 0, 0, 0, 3]);
        assert_eq!(a.reply, Some(vec![0x83, 4]));
        assert!(!a.corrupt_crc);
        let a = c.handle(1, &[3, 0, 0, 0, 1]);
        assert!(a.corrupt_crc);
        assert_eq!(a.delay, Duration::from_secs(1));
        let mut f = Faults::default();
        f.apply(Fault::DropConnectionAfter(2));
        u.lock().set_faults(f);
        assert!(!c.handle(1, &[3, 0, 0, 0, 1]).close);
        assert!(c.handle(1, &[3, 0, 0, 0, 1]).close);
        u.lock().set_faults(Faults {
            silent: true,
            ..Faults::default()
        });
        assert_eq!(c.handle(1, &[3, 0, 0, 0, 1]).reply, None);
        assert_eq!(c.stats.snapshot().silenced, 1);
    }

    #[test]
    fn dynamics_tick_updates_tables() {
        let c = core();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let u = &c.units[&1];
        let mut st = u.lock();
        st.tick(&mut rng);
        assert_eq!(st.holding_registers.read(5, 2).unwrap(), &[65535, 5]); // 2.5 / 0.5
        assert_eq!(st.holding_registers.read(7, 1).unwrap(), &[65535]);
        assert_eq!(st.coils.read(3, 1).unwrap(), &[true]);
        st.tick(&mut rng);
        assert_eq!(st.holding_registers.read(5, 2).unwrap(), &[0, 8]); // 4.0 / 0.5
        st.tick(&mut rng);
        assert_eq!(st.holding_registers.read(5, 2).unwrap(), &[1, 0]); // wrapped to min
        assert_eq!(st.holding_registers.read(7, 1).unwrap(), &[1]); // 65535 -> 0 -> 1
        assert_eq!(st.coils.read(3, 1).unwrap(), &[true]);
        st.tick(&mut rng);
        assert_eq!(st.holding_registers.read(7, 1).unwrap(), &[2]);
    }

    #[test]
    fn broadcast_writes_all_units() {
        let c = core();
        c.broadcast(&[6, 0, 0, 0, 7]);
        assert_eq!(
            c.units[&1].lock().holding_registers.read(0, 1).unwrap(),
            &[7]
        );
        assert_eq!(c.stats.snapshot().broadcasts, 1);
    }
}
