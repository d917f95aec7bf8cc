//! `{{project-name}}`: everything but the driver comes from mapper-sdk (`--help` lists
//! the flags).

use std::process::ExitCode;

fn main() -> ExitCode {
    mapper_sdk::main_with({{crate_name}}::ProtoDriver, mapper_sdk::about!())
}
