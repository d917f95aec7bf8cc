//! Benchmark runner for KubeEdge device mappers.
//!
//! Starts mosquitto, modbus-sim and any mapper command as separate processes, runs each
//! scenario for a fixed window after a warm-up, and records properties/s delivered to
//! MQTT (counted by a subscriber), Modbus requests/s (simulator counters), the mapper's
//! CPU % and RSS (from `/proc`) and latencies. See `BENCHMARKS.md` at the repository root.
//!
//! - [`scenario`]: pure generators of simulator maps and device profiles, wire-time math.
//! - [`measure`]: pure parsers (`/proc`, simulator stats, twin payloads, Modbus frames)
//!   and statistics.
//! - [`procs`]: the process and network shell.
//! - [`runner`]: scenario runs and result files.
//! - [`plot`]: SVG plots.

pub mod measure;
pub mod plot;
pub mod procs;
pub mod runner;
pub mod scenario;
