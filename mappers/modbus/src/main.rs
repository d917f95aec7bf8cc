//! `modbus-mapper`: the KubeEdge Modbus mapper. Everything but the driver comes from
//! `mapper-sdk`; see the README for flags and configuration.

use std::process::ExitCode;

fn main() -> ExitCode {
    mapper_sdk::main_with(modbus_mapper::ModbusDriver::new(), mapper_sdk::about!())
}
