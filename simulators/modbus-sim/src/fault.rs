//! Fault injection settings.

use std::time::Duration;

use serde::Deserialize;

use crate::table::TableKind;

/// Answer with an exception instead of data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRule {
    /// The exception code (1 illegal function, 2 illegal data address,
    /// 3 illegal data value, 4 server device failure, 6 busy, ...).
    pub code: u8,
    /// Only requests on this table; all tables when absent.
    #[serde(default)]
    pub table: Option<TableKind>,
    /// First address of the affected range; with `count`.
    #[serde(default)]
    pub start: Option<u16>,
    /// Number of affected addresses from `start` (default 1 when `start` is set).
    #[serde(default)]
    pub count: Option<u32>,
}

impl ExceptionRule {
    /// Every request to the unit gets `code`.
    pub fn unit(code: u8) -> Self {
        Self {
            code,
            table: None,
            start: None,
            count: None,
        }
    }

    /// Requests touching `table` at `start..start+count` get `code`.
    pub fn range(code: u8, table: TableKind, start: u16, count: u32) -> Self {
        Self {
            code,
            table: Some(table),
            start: Some(start),
            count: Some(count),
        }
    }

    /// Whether a request touching `table` at `addr..addr+qty` is affected.
    pub(crate) fn matches(&self, table: TableKind, addr: u16, qty: usize) -> bool {
        if self.table.is_some_and(|t| t != table) {
            return false;
        }
        let Some(start) = self.start else {
            return true;
        };
        let (s, e) = (
            u64::from(start),
            u64::from(start) + u64::from(self.count.unwrap_or(1)),
        );
        let (a, b) = (u64::from(addr), u64::from(addr) + qty as u64);
        a < e && s < b
    }
}

/// Every `every`-th reply arrives `delay` late (after a client's timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateReplies {
    /// How late.
    pub delay: Duration,
    /// Which replies: 1 = all, 3 = every third.
    pub every: u32,
}

/// The faults active on one unit. `Default` is a healthy unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Never answer (the unit looks absent from the bus).
    pub silent: bool,
    /// Delay every reply by this much.
    pub delay: Option<Duration>,
    /// Make some replies late.
    pub late: Option<LateReplies>,
    /// Exception answers; the first matching rule wins.
    pub exceptions: Vec<ExceptionRule>,
    /// Close the TCP connection (without answering) on every N-th request
    /// to this unit. On RTU the request just goes unanswered.
    pub drop_connection_after: Option<u32>,
    /// Corrupt the CRC of every N-th RTU reply (1 = all). No effect on TCP.
    pub corrupt_crc_every: Option<u32>,
}

/// One fault, for [`crate::Simulator::set_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Never answer.
    Silent,
    /// Delay every reply.
    Delay(Duration),
    /// Every `every`-th reply arrives `delay` late.
    Late {
        /// How late.
        delay: Duration,
        /// Which replies (1 = all).
        every: u32,
    },
    /// Add an exception rule.
    Exception(ExceptionRule),
    /// Close the TCP connection on every N-th request.
    DropConnectionAfter(u32),
    /// Corrupt the CRC of every N-th RTU reply (1 = all).
    CorruptCrc {
        /// Which replies (1 = all).
        every: u32,
    },
}

impl Faults {
    /// Turns one fault on (replacing an earlier setting of the same kind;
    /// exception rules accumulate). Zero periods are treated as 1.
    pub fn apply(&mut self, fault: Fault) {
        match fault {
            Fault::Silent => self.silent = true,
            Fault::Delay(d) => self.delay = Some(d),
            Fault::Late { delay, every } => {
                self.late = Some(LateReplies {
                    delay,
                    every: every.max(1),
                })
            }
            Fault::Exception(rule) => self.exceptions.push(rule),
            Fault::DropConnectionAfter(n) => self.drop_connection_after = Some(n.max(1)),
            Fault::CorruptCrc { every } => self.corrupt_crc_every = Some(every.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_rule_matching() {
        let r = ExceptionRule::range(4, TableKind::HoldingRegisters, 10, 5);
        assert!(r.matches(TableKind::HoldingRegisters, 14, 1));
        assert!(r.matches(TableKind::HoldingRegisters, 0, 11));
        assert!(!r.matches(TableKind::HoldingRegisters, 15, 3));
        assert!(!r.matches(TableKind::HoldingRegisters, 0, 10));
        assert!(!r.matches(TableKind::InputRegisters, 10, 1));
        assert!(ExceptionRule::unit(6).matches(TableKind::Coils, 65535, 1));
    }

    #[test]
    fn apply_faults() {
        let mut f = Faults::default();
        f.apply(Fault::CorruptCrc { every: 0 });
        f.apply(Fault::Silent);
        assert_eq!(f.corrupt_crc_every, Some(1));
        assert!(f.silent);
    }
}
