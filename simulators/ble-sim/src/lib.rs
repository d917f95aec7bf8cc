//! `ble-sim`: a stand-in for bluetoothd on a private D-Bus.
//!
//! This machine kind has no Bluetooth in its kernel, so CI tests BLE code
//! against this simulator: it owns `org.bluez` on a bus (usually a private
//! `dbus-daemon` it starts itself) and exports BlueZ's object tree for a set
//! of simulated peripherals. btleplug (through bluez-async and libdbus)
//! runs against it unmodified; point `DBUS_SYSTEM_BUS_ADDRESS` at
//! [`BleSim::bus_address`].
//!
//! What it reproduces from BlueZ:
//!
//! - `/` ObjectManager (GetManagedObjects, InterfacesAdded/Removed),
//!   Properties (Get/GetAll/Set, PropertiesChanged), Introspectable with
//!   child nodes (btleplug discovers services by introspection);
//! - adapters `/org/bluez/hciN` (`Adapter1`), several of them in the order
//!   of the file; devices `.../dev_AA_BB_CC_DD_EE_FF` (`Device1`) that are
//!   present from the start or appear when discovery starts;
//! - Connect: `Connected = true`, GATT objects exported
//!   (`serviceXXXX/charYYYY/descZZZZ`), then `ServicesResolved = true`;
//!   Disconnect and link loss: `ServicesResolved = false`,
//!   `Connected = false`, GATT objects removed;
//! - every `ReadValue` also emits a `Value` PropertiesChanged (even without
//!   StartNotify), notifications are `Value` changes while `Notifying`;
//! - errors named `org.bluez.Error.*` with BlueZ's messages.
//!
//! Peripherals are described in YAML ([`SimConfig::load`]); see
//! `devices/sensortag.yaml` and `devices/led.yaml`:
//!
//! ```yaml
//! adapters:                      # optional, default: hci0
//!   - { name: hci0, address: "00:1A:7D:DA:71:10" }
//! tick_ms: 500                   # dynamics / notification period
//! seed: 7                        # random walks (optional)
//! devices:
//!   - name: LED
//!     address: "A4:C1:38:00:00:02"
//!     adapter: hci0              # default: the first adapter
//!     appear: on_discovery       # or: always
//!     rssi: -55
//!     manufacturer_data: { 13: "01 02" }
//!     faults: { refuse_connect: false, resolve_delay_ms: 0, read_error: failed, mute_notifications: false }
//!     services:
//!       - uuid: "ff10"
//!         characteristics:
//!           - uuid: "ff11"
//!             flags: [read, write, write-without-response]
//!             value: [0]
//!           - uuid: "ff12"
//!             flags: [read, notify]
//!             fields:            # numbers placed into the value
//!               - { offset: 0, type: u16_le, scale: 0.01, value: 21.5,
//!                   dynamics: { random_walk: { step: 0.1, min: 20, max: 23 } } }
//!             enabled_by: { characteristic: "ff11", value: [1] }
//! ```
//!
//! Faults ([`DeviceFaultConfig`], every key in the README) can also be
//! injected at runtime ([`BleSim::set_fault`], [`BleSim::set_fault_config`],
//! [`BleSim::drop_link`], and the binary's `--control` endpoint).
//!
//! Field types: `u8 i8 u16_le u16_be i16_le i16_be u32_le u32_be i32_le
//! i32_be f32_le f32_be`; raw = value / scale, rounded and saturated.
//! Dynamics: `ramp` (wraps) and `random_walk` (clamped), one step per tick.
//! `set_value` and client writes pin a characteristic (its dynamics stop).
//! A characteristic with `enabled_by` reads as zeros and stays silent until
//! the named characteristic holds the given value (TI SensorTag style).
//! A CCCD (0x2902) is added to notify/indicate characteristics; it reflects
//! StartNotify and, as in BlueZ, cannot be written directly.
//!
//! Not reproduced: pairing/bonding and agents (`Pair` returns NotSupported),
//! per-client notify sessions (BlueZ stops a client's notifications when it
//! leaves the bus; here `Notifying` stays until StopNotify or disconnect),
//! `AcquireWrite`/`AcquireNotify`, advertisement updates during discovery
//! (RSSI/ManufacturerData change signals), device expiry after discovery,
//! and powering an adapter off does not drop its devices' links.

mod bus;
mod config;
mod control;
mod core;
mod error;
mod faults;
mod ids;
mod objects;
mod sim;
mod value;

pub use crate::bus::PrivateBus;
pub use crate::config::{
    AdapterSpec, AddressType, Appear, CharFlag, CharSpec, DEFAULT_MODALIAS, DEFAULT_TICK, DescSpec,
    DeviceSpec, EnableRule, FaultSpec, ReadErrorKind, ServiceSpec, SimConfig, cccd_uuid,
};
pub use crate::control::{FaultRequest, LinkRequest, SimControl, handle as handle_control};
pub use crate::core::{WriteKind, WriteRecord};
pub use crate::error::{BluezError, BusError, ConfigError, IdError, SimError};
pub use crate::faults::{CharFaultConfig, DeviceFaultConfig};
pub use crate::ids::{BleUuid, MacAddr};
pub use crate::sim::{BLUEZ_NAME, BleSim, Bus, Fault};
pub use crate::value::{Dynamics, Encoding, FieldSpec};
pub use sim_control::FaultMode;
