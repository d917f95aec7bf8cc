//! `http-sim`: software devices that serve JSON documents over HTTP, for the tests of
//! `http-mapper` and for trying it without hardware.
//!
//! - [`map`]: the YAML device file (documents, field rules, dynamics);
//! - [`state`]: what GET, writes and ticks do to the documents (pure);
//! - [`server`]: the HTTP server, faults a test switches from Rust, and counters.

pub mod map;
pub mod server;
pub mod state;

pub use map::MapFile;
pub use server::{Fault, Faults, Server, Simulator, Stats, WriteRecord};
