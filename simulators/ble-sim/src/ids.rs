//! Identifiers at the edge: MAC addresses and GATT UUIDs.
//!
//! Both parse leniently (any case; UUIDs also in 16-bit, 32-bit and
//! dash-less 128-bit form) and print exactly as BlueZ does: MACs in upper
//! case with colons, UUIDs as lower-case dashed 128-bit strings.

use std::fmt;
use std::str::FromStr;

use crate::error::IdError;

/// A Bluetooth device address (`AA:BB:CC:DD:EE:FF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The object path segment BlueZ uses for a device: `dev_AA_BB_CC_DD_EE_FF`.
    pub fn path_segment(&self) -> String {
        format!("dev_{}", self.to_string().replace(':', "_"))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdError::Mac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-', '_']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// A GATT UUID, kept in BlueZ's canonical form (lower-case, dashed, 128-bit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BleUuid(String);

/// The Bluetooth base UUID suffix used to widen 16- and 32-bit UUIDs.
const BASE_SUFFIX: &str = "-0000-1000-8000-00805f9b34fb";

impl BleUuid {
    /// Wrap a string already in canonical form (internal constants only).
    pub(crate) fn from_raw_canonical(s: &str) -> BleUuid {
        BleUuid(s.to_owned())
    }

    /// The canonical string (`0000180f-0000-1000-8000-00805f9b34fb`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 16-bit short form when this is a SIG-assigned UUID on the base UUID.
    pub fn short16(&self) -> Option<u16> {
        let s = &self.0;
        if s.starts_with("0000") && s.ends_with(BASE_SUFFIX) {
            u16::from_str_radix(&s[4..8], 16).ok()
        } else {
            None
        }
    }
}

impl fmt::Display for BleUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BleUuid {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdError::Uuid(s.to_owned());
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_prefix("0x").unwrap_or(&t);
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(bad());
        }
        let hex: String = t.chars().filter(|c| *c != '-').collect();
        let full = match hex.len() {
            4 if !t.contains('-') => format!("0000{hex}{BASE_SUFFIX}"),
            8 if !t.contains('-') => format!("{hex}{BASE_SUFFIX}"),
            32 => {
                // Dashes, when present, must be in the canonical places.
                if t.contains('-') && t.len() != 36 {
                    return Err(bad());
                }
                if t.len() == 36 && [8, 13, 18, 23].iter().any(|&i| t.as_bytes()[i] != b'-') {
                    return Err(bad());
                }
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
            _ => return Err(bad()),
        };
        Ok(BleUuid(full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_path() {
        let m: MacAddr = "a4:c1:38:1a:49:90".parse().unwrap();
        assert_eq!(m.to_string(), "A4:C1:38:1A:49:90");
        assert_eq!(m.path_segment(), "dev_A4_C1_38_1A_49_90");
        assert!("A4:C1:38:1A:49".parse::<MacAddr>().is_err());
        assert!("A4:C1:38:1A:49:90:11".parse::<MacAddr>().is_err());
        assert!("G4:C1:38:1A:49:90".parse::<MacAddr>().is_err());
    }

    #[test]
    fn uuid_forms() {
        let a: BleUuid = "f000aa01-0451-4000-b000-000000000000".parse().unwrap();
        let b: BleUuid = "F000AA0104514000B000000000000000".parse().unwrap();
        assert_eq!(a, b);
        let c: BleUuid = "2902".parse().unwrap();
        assert_eq!(c.as_str(), "00002902-0000-1000-8000-00805f9b34fb");
        assert_eq!(c.short16(), Some(0x2902));
        assert_eq!(a.short16(), None);
        assert!("29".parse::<BleUuid>().is_err());
        assert!(
            "f000aa01-04514000-b000-000000000000"
                .parse::<BleUuid>()
                .is_err()
        );
        assert!("zzzz".parse::<BleUuid>().is_err());
    }
}
