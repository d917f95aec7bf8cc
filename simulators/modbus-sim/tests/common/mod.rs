//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use modbus_sim::{DeviceMap, MapFile};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// The simulator binary as a child process, killed on drop.
pub struct SimProcess {
    child: Child,
    /// The stdout lines before `ready`.
    pub lines: Vec<String>,
}

impl SimProcess {
    pub async fn start(map: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modbus-sim"))
            .arg("--map")
            .arg(map)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines = Vec::new();
        within(async {
            while let Some(l) = reader.next_line().await.unwrap() {
                if l == "ready" {
                    return;
                }
                lines.push(l);
            }
            panic!("modbus-sim exited before printing `ready`: {lines:?}");
        })
        .await;
        // keep draining stdout so the child never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = reader.next_line().await {} });
        Self { child, lines }
    }

    pub fn endpoint(&self, key: &str) -> String {
        self.lines
            .iter()
            .find_map(|l| {
                l.split_once(&format!(" {key}="))
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_or_else(|| panic!("no {key}= line in {:?}", self.lines))
    }

    /// The `control=ADDR` line's address (started with `--control`).
    pub fn control(&self) -> String {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("control=").map(str::to_string))
            .unwrap_or_else(|| panic!("no control= line in {:?}", self.lines))
    }

    /// SIGTERM (graceful) and wait; SIGKILL if it does not stop.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        match tokio::time::timeout(OK_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                self.child.kill().await.unwrap();
                panic!("modbus-sim did not stop on SIGTERM");
            }
        }
    }
}
