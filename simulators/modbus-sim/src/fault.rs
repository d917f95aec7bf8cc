//! Fault injection settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::table::TableKind;

/// Answer with an exception instead of data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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

/// The fault format of the map files (a unit's `faults:` key) and of the
/// control endpoint (`POST /faults`, `GET /faults`): every key optional.
///
/// ```yaml
/// silent: false                     # never answer
/// delay_ms: 20                      # delay every reply
/// late: { delay_ms: 3000, every: 10 }   # every 10th reply 3 s late
/// exceptions: [ { code: 4, table: holding, start: 90, count: 10 } ]
/// drop_connection_after: 1000       # close the TCP connection on every 1000th request
/// corrupt_crc_every: 50             # break the CRC of every 50th RTU reply
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Never answer (the unit looks absent from the bus).
    #[serde(default)]
    pub silent: bool,
    /// Delay every reply by this many milliseconds.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Make some replies late.
    #[serde(default)]
    pub late: Option<LateConfig>,
    /// Exception answers; the first matching rule wins.
    #[serde(default)]
    pub exceptions: Vec<ExceptionRule>,
    /// Close the TCP connection (without answering) on every N-th request.
    #[serde(default)]
    pub drop_connection_after: Option<u32>,
    /// Corrupt the CRC of every N-th RTU reply (1 = all).
    #[serde(default)]
    pub corrupt_crc_every: Option<u32>,
}

/// `late:` in a [`FaultConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LateConfig {
    /// How late, in milliseconds.
    pub delay_ms: u64,
    /// Which replies: 1 (the default) = all, 3 = every third.
    #[serde(default)]
    pub every: Option<u32>,
}

impl FaultConfig {
    /// Validates the settings. The error is `(field, message)`, the field
    /// relative to the fault block (e.g. `exceptions[0].code`).
    pub fn resolve(&self) -> Result<Faults, (String, String)> {
        for (i, e) in self.exceptions.iter().enumerate() {
            if e.code == 0 {
                return Err((
                    format!("exceptions[{i}].code"),
                    "must be a Modbus exception code (1..=255)".into(),
                ));
            }
            if e.count.is_some() && e.start.is_none() {
                return Err((format!("exceptions[{i}].count"), "needs `start`".into()));
            }
        }
        for (field, v) in [
            ("drop_connection_after", self.drop_connection_after),
            ("corrupt_crc_every", self.corrupt_crc_every),
            ("late.every", self.late.and_then(|l| l.every)),
        ] {
            if v == Some(0) {
                return Err((field.into(), "must be at least 1".into()));
            }
        }
        Ok(Faults {
            silent: self.silent,
            delay: self.delay_ms.map(Duration::from_millis),
            late: self.late.map(|l| LateReplies {
                delay: Duration::from_millis(l.delay_ms),
                every: l.every.unwrap_or(1).max(1),
            }),
            exceptions: self.exceptions.clone(),
            drop_connection_after: self.drop_connection_after,
            corrupt_crc_every: self.corrupt_crc_every,
        })
    }
}

impl From<&Faults> for FaultConfig {
    fn from(f: &Faults) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            silent: f.silent,
            delay_ms: f.delay.map(ms),
            late: f.late.map(|l| LateConfig {
                delay_ms: ms(l.delay),
                every: Some(l.every),
            }),
            exceptions: f.exceptions.clone(),
            drop_connection_after: f.drop_connection_after,
            corrupt_crc_every: f.corrupt_crc_every,
        }
    }
}

impl Faults {
    /// Adds `other` on top of these faults: `silent` if either is, settings
    /// of `other` replace the same kind here, exception rules accumulate
    /// (what [`Faults::apply`] does for each fault of `other`).
    pub fn merge(&mut self, other: Faults) {
        self.silent |= other.silent;
        if other.delay.is_some() {
            self.delay = other.delay;
        }
        if other.late.is_some() {
            self.late = other.late;
        }
        self.exceptions.extend(other.exceptions);
        if other.drop_connection_after.is_some() {
            self.drop_connection_after = other.drop_connection_after;
        }
        if other.corrupt_crc_every.is_some() {
            self.corrupt_crc_every = other.corrupt_crc_every;
        }
    }

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

    #[test]
    fn config_round_trip_validation_and_merge() {
        let cfg = FaultConfig {
            silent: true,
            delay_ms: Some(20),
            late: Some(LateConfig {
                delay_ms: 3000,
                every: Some(10),
            }),
            exceptions: vec![ExceptionRule::range(4, TableKind::HoldingRegisters, 90, 10)],
            drop_connection_after: Some(5),
            corrupt_crc_every: Some(2),
        };
        let f = cfg.resolve().unwrap();
        assert_eq!(FaultConfig::from(&f), cfg);
        let bad = FaultConfig {
            late: Some(LateConfig {
                delay_ms: 1,
                every: Some(0),
            }),
            ..FaultConfig::default()
        };
        assert_eq!(bad.resolve().unwrap_err().0, "late.every");
        let bad = FaultConfig {
            exceptions: vec![ExceptionRule::unit(0)],
            ..FaultConfig::default()
        };
        assert_eq!(bad.resolve().unwrap_err().0, "exceptions[0].code");

        let mut base = Faults {
            exceptions: vec![ExceptionRule::unit(6)],
            delay: Some(Duration::from_millis(5)),
            ..Faults::default()
        };
        base.merge(f.clone());
        assert!(base.silent);
        assert_eq!(base.delay, f.delay);
        assert_eq!(base.exceptions.len(), 2);
        assert_eq!(base.corrupt_crc_every, Some(2));
    }
}
