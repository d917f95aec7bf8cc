//! Software Modbus devices for CI, tests, demos and benchmarks.
//!
//! A [`Simulator`] serves a set of units (slave ids), each with its own
//! coils, discrete inputs, input registers and holding registers, over
//! Modbus TCP and Modbus RTU (a pty pair, a socat pty or a serial device).
//! It answers FC1, 2, 3, 4, 5, 6, 15, 16 and 23; requests to unit ids it
//! does not know get no answer (like a multi-drop bus); unmapped addresses
//! get exception 2.
//!
//! Maps come from YAML ([`MapFile`]), values change over time with
//! [`Dynamics`], [`Fault`]s can be switched at runtime, counters are in
//! [`Stats`].
//!
//! The protocol layer (PDU codec, MBAP and RTU framing) is written here rather
//! than taken from `tokio-modbus`'s server: its RTU server only accepts a
//! `SerialStream` and owns the codec, so broken CRCs, dropped connections and
//! RTU framing errors could not be injected. It also makes the tests that
//! use the `tokio-modbus` client an interoperability check between two
//! independent implementations.
//!
//! # Happy path
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use modbus_sim::{Fault, MapFile, Simulator};
//!
//! let map = MapFile::load("simulators/modbus-sim/maps/boiler.yaml")?;
//! let sim = Simulator::from_map(&map.endpoints[0].device);
//! let addr = sim.serve_tcp("127.0.0.1:0").await?;
//! // ... point a client at `addr` ...
//! sim.set_fault(1, Fault::Silent)?;
//! assert_eq!(sim.stats().snapshot().unknown_unit, 0);
//! let setpoint = sim.read_holding(1, 0)?;
//! # let _ = (addr, setpoint);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Map format
//!
//! ```yaml
//! tick_ms: 500            # dynamics period (default 1000)
//! seed: 42                # random_walk seed (optional)
//! endpoints:
//!   - name: boiler        # unique; used in logs, stats and printed lines
//!     tcp: 127.0.0.1:5020 # or a list of addresses; port 0 = any free port
//!     # rtu: { path: /dev/ttyUSB0, baud: 9600, wire_time: true }
//!     #      (no path: the binary creates a pty pair and prints its client path)
//!     units:
//!       - id: 1
//!         holding_registers:          # alias: holding
//!           - { start: 0, count: 100 }              # 0..99 = 0
//!           - { start: 200, values: [1, 2, 3] }
//!           - { start: 300, count: 10, value: 7 }  # fill
//!         input_registers: [ { start: 0, count: 10 } ]   # alias: input
//!         coils: [ { start: 0, values: [true, false] } ]
//!         discrete_inputs: [ { start: 0, count: 8 } ]     # alias: discrete
//!         values:                     # typed values (they also map their addresses)
//!           - name: temperature
//!             table: input_registers  # or holding_registers, coils, discrete_inputs
//!             address: 20
//!             type: f32               # u16 i16 u32 i32 u64 i64 f32 f64 bool string
//!             value: 21.5             # engineering value
//!             scale: 1.0              # engineering = raw * scale (KubeEdge `scale`)
//!             word_swap: false        # low word first (KubeEdge `isRegisterSwap`)
//!             byte_swap: false        # swap bytes in each register (KubeEdge `isSwap`)
//!             dynamics: { ramp: { step: 0.5, min: 20, max: 30 } }
//!             every: 1                # step every N ticks
//!           - { name: serial, table: holding, address: 400, type: string, value: "SN-0042", length: 8 }
//!         faults:                     # active from the start (all optional)
//!           silent: false
//!           delay_ms: 20
//!           late: { delay_ms: 3000, every: 10 }
//!           exceptions: [ { code: 4, table: holding, start: 90, count: 10 } ]
//!           drop_connection_after: 1000
//!           corrupt_crc_every: 50
//! ```
//!
//! Dynamics: `ramp {step, min, max}` (wraps), `random_walk {step, min, max}`
//! (clamped), `counter {step}` (engineering units, wraps at the raw range of the type),
//! `toggle` (bits and booleans).

mod control;
mod core;
mod error;
mod fault;
mod frame;
mod map;
mod pdu;
mod runner;
mod server;
mod sim;
mod stats;
mod table;
mod value;

pub use control::{DropRequest, FaultMode, FaultRequest, RunningControl, handle as handle_control};
pub use error::{MapError, SimError};
pub use fault::{ExceptionRule, Fault, FaultConfig, Faults, LateConfig, LateReplies};
pub use frame::{crc16, frame_silence, transaction_time, wire_time};
pub use map::{
    DEFAULT_TICK, DeviceMap, Endpoint, MapFile, RtuConfig, Transport, UnitMap, ValueSpec,
};
pub use pdu::{
    ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION, SERVER_DEVICE_BUSY,
    SERVER_DEVICE_FAILURE,
};
pub use runner::{EndpointInfo, Running, StatsReport, write_stats_file};
pub use server::RtuOptions;
pub use sim::{PtyClient, Simulator};
pub use stats::{Stats, StatsSnapshot, UnitStats};
pub use table::TableKind;
pub use value::{
    Dynamics, EncodeError, Layout, ValueType, decode_number, encode_number, encode_string,
};
