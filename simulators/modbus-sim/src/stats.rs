//! Request counters, shared between the servers and whoever reads them.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// Counters for one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitStats {
    /// Requests addressed to this unit (answered or not).
    pub requests: u64,
    /// Replies sent (normal and exception).
    pub replies: u64,
    /// Exception replies sent.
    pub exceptions: u64,
    /// Requests per function code.
    pub by_function: BTreeMap<u8, u64>,
    /// Registers returned by FC3/FC4/FC23.
    pub registers_read: u64,
    /// Registers written by FC6/FC16/FC23.
    pub registers_written: u64,
    /// Bits returned by FC1/FC2.
    pub bits_read: u64,
    /// Bits written by FC5/FC15.
    pub bits_written: u64,
}

/// A copy of all counters of one simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Well-formed request frames received, for any unit id.
    pub requests: u64,
    /// Replies sent.
    pub replies: u64,
    /// Exception replies sent.
    pub exceptions: u64,
    /// Requests to a unit id that is not configured (not answered).
    pub unknown_unit: u64,
    /// Requests not answered because of a `silent` fault.
    pub silenced: u64,
    /// RTU broadcast requests (unit 0; never answered).
    pub broadcasts: u64,
    /// RTU frames with a bad CRC (ignored).
    pub crc_errors: u64,
    /// Frames that could not be parsed (bad MBAP header, RTU noise).
    pub malformed: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// TCP connections closed by a fault or [`crate::Simulator::drop_connections`].
    pub dropped_connections: u64,
    /// Registers returned, all units.
    pub registers_read: u64,
    /// Registers written, all units.
    pub registers_written: u64,
    /// Bits returned, all units.
    pub bits_read: u64,
    /// Bits written, all units.
    pub bits_written: u64,
    /// Per unit id.
    pub units: BTreeMap<u8, UnitStats>,
}

/// Shared counters; get it with [`crate::Simulator::stats`].
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
}

impl Stats {
    /// A consistent copy of all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = StatsSnapshot::default();
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl StatsSnapshot {
    /// One human-readable line for logs.
    pub fn summary(&self) -> String {
        format!(
            "requests={} replies={} exceptions={} unknown_unit={} silenced={} crc_errors={} malformed={} connections={} dropped={} registers_read={} registers_written={} bits_read={} bits_written={}",
            self.requests,
            self.replies,
            self.exceptions,
            self.unknown_unit,
            self.silenced,
            self.crc_errors,
            self.malformed,
            self.connections,
            self.dropped_connections,
            self.registers_read,
            self.registers_written,
            self.bits_read,
            self.bits_written
        )
    }
}
