//! The device fault format, shared by the device file (a device's `faults:`
//! key) and the control endpoint (`POST /faults`, `GET /faults`), and how a
//! fault document is applied to a running device.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sim_control::FaultMode;

use crate::config::{FaultSpec, ReadErrorKind};
use crate::core::DeviceState;
use crate::error::SimError;
use crate::ids::BleUuid;

/// A device's faults, every key optional:
///
/// ```yaml
/// refuse_connect: false        # Connect fails (le-connection-abort-by-local)
/// resolve_delay_ms: 0          # GATT discovery time before ServicesResolved
/// read_error: failed           # every ReadValue fails: failed | not_permitted
/// mute_notifications: false    # no notifications, although Notifying stays true
/// characteristics:             # per characteristic
///   "ff12": { read_error: not_permitted }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFaultConfig {
    /// `Connect` fails with `org.bluez.Error.Failed`.
    #[serde(default)]
    pub refuse_connect: bool,
    /// Delay between exporting the GATT objects and `ServicesResolved = true`.
    #[serde(default)]
    pub resolve_delay_ms: u64,
    /// Every `ReadValue` of the device fails with this error.
    #[serde(default)]
    pub read_error: Option<ReadErrorKind>,
    /// Send no notifications (value changes of subscribed characteristics),
    /// while `Notifying` stays true: a peripheral that went quiet.
    #[serde(default)]
    pub mute_notifications: bool,
    /// Faults of single characteristics, by UUID (16-bit short or full form).
    #[serde(default)]
    pub characteristics: BTreeMap<String, CharFaultConfig>,
}

/// The faults of one characteristic in a [`DeviceFaultConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharFaultConfig {
    /// `ReadValue` of this characteristic fails with this error.
    #[serde(default)]
    pub read_error: Option<ReadErrorKind>,
}

impl DeviceFaultConfig {
    /// The device-level part as the resolved [`FaultSpec`].
    pub fn spec(&self) -> FaultSpec {
        FaultSpec {
            refuse_connect: self.refuse_connect,
            resolve_delay: Duration::from_millis(self.resolve_delay_ms),
            read_error: self.read_error,
            mute_notifications: self.mute_notifications,
            out_of_range: false,
        }
    }
}

/// The faults active on `dev`, in the document format (characteristics
/// with a read error only, by full UUID).
pub(crate) fn read_back(dev: &DeviceState) -> DeviceFaultConfig {
    let f = &dev.faults;
    DeviceFaultConfig {
        refuse_connect: f.refuse_connect,
        resolve_delay_ms: u64::try_from(f.resolve_delay.as_millis()).unwrap_or(u64::MAX),
        read_error: f.read_error,
        mute_notifications: f.mute_notifications,
        characteristics: dev
            .chars
            .iter()
            .filter(|c| c.read_error.is_some())
            .map(|c| {
                (
                    c.uuid.to_string(),
                    CharFaultConfig {
                        read_error: c.read_error,
                    },
                )
            })
            .collect(),
    }
}

/// Applies `cfg` to `dev`. Replace: the device's faults become exactly
/// `cfg`. Add: `true` flags and set values of `cfg` are added (a non-zero
/// delay and a read error replace the current ones), listed
/// characteristics get the listed read error. Nothing changes when a
/// characteristic is unknown.
pub(crate) fn apply(
    dev: &mut DeviceState,
    cfg: &DeviceFaultConfig,
    mode: FaultMode,
) -> Result<(), SimError> {
    let mut chars = Vec::new();
    for (uuid, cf) in &cfg.characteristics {
        let u: BleUuid = uuid.parse()?;
        let c = dev
            .char_index(&u)
            .ok_or_else(|| SimError::UnknownCharacteristic {
                device: dev.spec.address.to_string(),
                uuid: u.to_string(),
            })?;
        chars.push((c, cf.read_error));
    }
    match mode {
        FaultMode::Replace => {
            dev.faults = cfg.spec();
            for c in &mut dev.chars {
                c.read_error = None;
            }
        }
        FaultMode::Add => {
            let f = &mut dev.faults;
            f.refuse_connect |= cfg.refuse_connect;
            f.mute_notifications |= cfg.mute_notifications;
            if cfg.resolve_delay_ms > 0 {
                f.resolve_delay = Duration::from_millis(cfg.resolve_delay_ms);
            }
            if cfg.read_error.is_some() {
                f.read_error = cfg.read_error;
            }
        }
    }
    for (c, e) in chars {
        dev.chars[c].read_error = e;
    }
    Ok(())
}
