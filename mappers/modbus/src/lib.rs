//! KubeEdge device mapper for Modbus TCP, Modbus RTU and RTU over TCP.
//!
//! This crate is the protocol part of the mapper; `mapper-sdk` does everything else
//! (profiles, scheduling, MQTT). It is split into pure parts that are unit- and
//! property-tested without I/O, and a thin I/O shell:
//!
//! - [`config`]: typed, validated protocol and visitor configs (every KubeEdge shape, plus
//!   documented extensions such as `rawType`, `maxGap` and `rtu-over-tcp`).
//! - [`codec`]: register words and bits to values and back (widths, signs, byte and word
//!   order, scale, offset, strings).
//! - [`plan`]: merges the reads due in one tick into as few requests as the limits allow.
//! - [`bus`]: one task per physical bus (serial line or TCP endpoint) that serializes
//!   requests, puts writes first, round-robins units and backs off dead ones.
//! - [`health`]: when a unit is skipped and probed (pure logic).
//! - [`driver`]: [`ModbusDriver`], the `mapper_sdk::driver::Driver` implementation.

pub mod bus;
pub mod codec;
pub mod config;
pub mod driver;
pub mod health;
pub mod plan;

pub use config::{ModbusProtocol, ModbusVisitor};
pub use driver::{ModbusDevice, ModbusDriver};
