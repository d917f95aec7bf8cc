//! Soak test of the `modbus-mapper` binary: random broker restarts (mosquitto killed and
//! restarted by PID), unit outages (modbus-sim units made silent), profile edits and
//! bursts of desired values, for as long as asked (an hour by default), then checks:
//!
//! - no desired value lost: every device's setpoint register ends at the last desired
//!   value sent for it, and every device is `online` again;
//! - no crash: the mapper process ran the whole time and never logged a panic;
//! - RSS flat: the resident set of the last quarter of the run is within a small margin
//!   of the first quarter's (after a warm-up).
//!
//! Not part of the normal test run: `scripts/soak.sh [MINUTES]` builds the release
//! mapper and runs it. The pure parts (event choice, profile and map generation, the
//! RSS verdict) are here; [`run`] does the I/O.

pub mod plan;
pub mod run;
pub mod world;
