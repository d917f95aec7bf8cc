//! Which edgecore release the fake plays, and what that changes (docs/kubeedge-dmi.md#rule-what-changed-in-each-release,
//! docs/kubeedge-dmi.md#rule-what-devicestatus-holds).

use std::fmt;
use std::str::FromStr;

/// An edgecore release line. Every behaviour that differs between releases is a method
/// here, so the server and the conversion ask the version instead of comparing numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Version {
    /// 1.15: no namespaces anywhere, no `ReportDeviceStates`, device id = name.
    V1_15,
    /// 1.16: namespaces (device id `ns/name`).
    V1_16,
    /// 1.17: as 1.16 for DMI.
    V1_17,
    /// 1.18: `ReportDeviceStates`, state list with `unhealthy`.
    V1_18,
    /// 1.19: `DeviceSpec.methods`, `DeviceStatus.reportToCloud/reportCycle`.
    V1_19,
    /// 1.20: as 1.19 for DMI.
    V1_20,
    /// 1.21: as 1.19 for DMI (the cloud stops the UpdateDevice storm).
    V1_21,
    /// 1.22 (1.22.1 behaviour): model-level visitors and protocolConfigData merged.
    V1_22,
    /// 1.23: status from `spec.stateReport`, twins no longer in `Device.status`,
    /// registered mappers restored after a restart.
    #[default]
    V1_23,
}

/// The text is not a known release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown edgecore version {0:?}: use 1.15 to 1.23 (for example 1.23 or v1.18.0)")]
pub struct UnknownVersion(pub String);

impl Version {
    /// Every release line, oldest first.
    pub const ALL: [Version; 9] = [
        Self::V1_15,
        Self::V1_16,
        Self::V1_17,
        Self::V1_18,
        Self::V1_19,
        Self::V1_20,
        Self::V1_21,
        Self::V1_22,
        Self::V1_23,
    ];

    /// The minor number (15 to 23).
    pub fn minor(self) -> u8 {
        match self {
            Self::V1_15 => 15,
            Self::V1_16 => 16,
            Self::V1_17 => 17,
            Self::V1_18 => 18,
            Self::V1_19 => 19,
            Self::V1_20 => 20,
            Self::V1_21 => 21,
            Self::V1_22 => 22,
            Self::V1_23 => 23,
        }
    }

    /// Devices, models and reports carry namespaces (1.16+).
    pub fn has_namespaces(self) -> bool {
        self >= Self::V1_16
    }

    /// `ReportDeviceStates` exists (1.18+); older releases answer `Unimplemented`.
    pub fn has_report_states(self) -> bool {
        self >= Self::V1_18
    }

    /// `DeviceSpec.methods` and the state-report fields of `DeviceStatus` (1.19+).
    pub fn has_methods(self) -> bool {
        self >= Self::V1_19
    }

    /// `Device.status` carries `reportToCloud`/`reportCycle` (1.19+).
    pub fn has_status_report_settings(self) -> bool {
        self >= Self::V1_19
    }

    /// `Device.status` carries the CRD status twins (1.15-1.22).
    pub fn has_status_twins(self) -> bool {
        self <= Self::V1_22
    }

    /// Model-level `visitors` and `protocolConfigData` are merged into each device (1.22+).
    pub fn merges_model_defaults(self) -> bool {
        self >= Self::V1_22
    }

    /// `status.reportToCloud/reportCycle` come from `spec.stateReport` when set (1.23+).
    pub fn uses_state_report(self) -> bool {
        self >= Self::V1_23
    }

    /// `PushMethod.anomalyDetection` exists (1.23+).
    pub fn has_anomaly_detection(self) -> bool {
        self >= Self::V1_23
    }

    /// After a restart the registered mappers are restored from the database (1.23+);
    /// older releases forget them.
    pub fn restores_mappers(self) -> bool {
        self >= Self::V1_23
    }

    /// The states edgecore keeps (lower-cased); others are dropped silently
    /// (docs/kubeedge-dmi.md#rule-reportdevicestates).
    pub fn accepted_states(self) -> &'static [&'static str] {
        if self >= Self::V1_18 {
            &["online", "offline", "ok", "unknown", "unhealthy"]
        } else {
            &["online", "offline", "ok", "unknown", "disconnected"]
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor())
    }
}

impl FromStr for Version {
    type Err = UnknownVersion;

    /// Accepts `1.23`, `v1.23`, `1.23.1`, `v1.18.0`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownVersion(text.to_owned());
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let mut parts = t.split('.');
        if parts.next() != Some("1") {
            return Err(bad());
        }
        let minor: u8 = parts.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
        if let Some(patch) = parts.next()
            && patch.parse::<u32>().is_err()
        {
            return Err(bad());
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Self::ALL
            .into_iter()
            .find(|v| v.minor() == minor)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!("1.23".parse::<Version>().unwrap(), Version::V1_23);
        assert_eq!("v1.18.0".parse::<Version>().unwrap(), Version::V1_18);
        assert_eq!("1.15.2".parse::<Version>().unwrap(), Version::V1_15);
        assert!("1.14".parse::<Version>().is_err());
        assert!("2.1".parse::<Version>().is_err());
        assert!("1.x".parse::<Version>().is_err());
        assert!(Version::V1_15 < Version::V1_16);
        assert_eq!(Version::V1_19.to_string(), "1.19");
        for v in Version::ALL {
            assert_eq!(v.to_string().parse::<Version>().unwrap(), v);
        }
    }

    #[test]
    fn features_follow_the_release_table() {
        assert!(!Version::V1_15.has_namespaces());
        assert!(Version::V1_16.has_namespaces());
        assert!(!Version::V1_17.has_report_states());
        assert!(Version::V1_18.has_report_states());
        assert!(Version::V1_18.has_status_twins() && !Version::V1_18.has_methods());
        assert!(Version::V1_22.has_status_twins() && Version::V1_22.merges_model_defaults());
        assert!(!Version::V1_23.has_status_twins() && Version::V1_23.uses_state_report());
        assert!(Version::V1_18.accepted_states().contains(&"unhealthy"));
        assert!(Version::V1_17.accepted_states().contains(&"disconnected"));
    }
}
