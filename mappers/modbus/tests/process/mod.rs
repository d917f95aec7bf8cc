//! The `modbus-mapper` binary as a child process for tests (the SDK's
//! [`mapper_sdk::testing::MapperProcess`]).

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::Command;

pub use mapper_sdk::testing::MapperProcess;

/// A `modbus-mapper` command with a clean environment, run in `dir`.
pub fn command(dir: &Path) -> Command {
    mapper_sdk::testing::mapper_command(env!("CARGO_BIN_EXE_modbus-mapper"), dir)
}
