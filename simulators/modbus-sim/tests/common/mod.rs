//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use modbus_sim::{DeviceMap, MapFile};

/// Timeout for calls that must succeed.
pub const OK_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for calls that must NOT get an answer.
pub const SILENT_TIMEOUT: Duration = Duration::from_millis(300);

pub fn map_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("maps")
        .join(name)
}

/// The device of the first endpoint of an example map.
pub fn example(name: &str) -> DeviceMap {
    MapFile::load(map_path(name)).unwrap().endpoints[0]
        .device
        .clone()
}

pub fn inline(yaml: &str) -> DeviceMap {
    MapFile::parse(yaml, "inline").unwrap().endpoints[0]
        .device
        .clone()
}

/// Awaits `f`, failing the test if it takes longer than [`OK_TIMEOUT`].
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(OK_TIMEOUT, f)
        .await
        .expect("operation timed out")
}

/// Polls `cond` until it is true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether an external tool is installed. A missing tool fails the test with the
/// install hint, unless `MAPPER_TESTS_ALLOW_SKIP=1` is set: then the test prints that it
/// was skipped and returns. A green run never hides a test that did not run.
pub fn tool_available(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("MAPPER_TESTS_ALLOW_SKIP").is_some_and(|v| v == "1") {
            eprintln!(
                "SKIPPED: {tool} is not installed and MAPPER_TESTS_ALLOW_SKIP=1 is set; this test did not run (scripts/deps.sh installs it)"
            );
        } else {
            panic!(
                "{tool} is not installed: run scripts/deps.sh (or set MAPPER_TESTS_ALLOW_SKIP=1 to skip the tests that need it)"
            );
        }
    }
    found
}
