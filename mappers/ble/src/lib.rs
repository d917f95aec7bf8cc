//! KubeEdge device mapper for Bluetooth LE (GATT) devices.
//!
//! This crate is the protocol part of the mapper; `mapper-sdk` does everything else
//! (profiles, scheduling, MQTT, reconnects). Pure parts are unit- and property-tested
//! without I/O; the BLE stack sits behind a narrow trait so that the device logic is tested
//! with an in-memory fake:
//!
//! - [`config`]: typed, validated protocol (`macAddress`, `adapter`, `connectTimeout`) and
//!   visitor configs (`characteristicUUID`, `dataWrite`, `dataConverter`, `notify`,
//!   `writeEncoding`, `writeType`), tolerating the CC2650 sample's mis-indentation.
//! - [`convert`]: the dataConverter as KubeEdge intended it (big-endian integer of a byte
//!   range, shift, operations) and the write mapping (`dataWrite`, typed encodings).
//! - [`link`]: the [`link::GattConnector`] / [`link::GattLink`] traits between the device
//!   logic and a BLE stack.
//! - [`btle`]: their implementation on btleplug (BlueZ over D-Bus): one shared adapter,
//!   devices found by address, services cached per connection.
//! - [`fake`]: an in-memory stack for tests.
//! - [`driver`]: [`BleDriver`], the `mapper_sdk::driver::Driver` implementation, and
//!   [`BleDevice`] (reads, writes, notifications through `next_push`).
//! - [`panic_guard`]: keeps bluez-async 0.9.0's known background-task panic out of the log.
//!
//! The binary installs [`panic_guard::install`] and runs
//! `mapper_sdk::main_with(BleDriver::default(), mapper_sdk::about!())`.

pub mod btle;
pub mod config;
pub mod convert;
pub mod driver;
pub mod fake;
pub mod link;
pub mod panic_guard;

pub use config::{BleProtocol, BleVisitor};
pub use driver::{BleDevice, BleDriver};
