//! `http-mapper`: the KubeEdge mapper for JSON-over-HTTP devices. Everything but the
//! driver comes from `mapper-sdk`; see the README for flags and configuration.

use std::process::ExitCode;

fn main() -> ExitCode {
    mapper_sdk::main_with(http_mapper::HttpDriver::new(), mapper_sdk::about!())
}
