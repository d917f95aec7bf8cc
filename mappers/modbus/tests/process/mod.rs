//! The `modbus-mapper` binary as a child process for tests: its stderr in a file,
//! stopped with SIGTERM, its log printed when a test fails.

#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variables the mapper reads; cleared so the caller's shell does not
/// leak into a test.
const MAPPER_ENV: &[&str] = &[
    "MAPPER_CONFIG_FILE",
    "MQTT_SERVER",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "MQTT_CLIENT_ID",
    "DEVICE_PROFILE_PATH",
    "DEVICE_PROFILE",
    "NODE_NAME",
    "MAPPER_SOURCE",
    "META_SERVER",
    "RUST_LOG",
    "LOG_FORMAT",
    "NO_COLOR",
];

/// A `modbus-mapper` command with a clean environment, run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modbus-mapper"));
    cmd.current_dir(dir).stdin(Stdio::null());
    for v in MAPPER_ENV {
        cmd.env_remove(v);
    }
    cmd
}

/// A running mapper.
pub struct MapperProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl MapperProcess {
    /// Starts `cmd` with stderr into `dir/mapper.log`.
    pub fn spawn(mut cmd: Command, dir: &Path) -> Self {
        let log = dir.join("mapper.log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// What the mapper logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until the log holds `text` (true) or `limit` passes or the mapper exits
    /// (false).
    pub fn wait_for_log(&mut self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(text) {
                return true;
            }
            if Instant::now() >= deadline || !self.running() {
                return self.log().contains(text);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (with a deadline) for the exit; `None` if it did not exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for MapperProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("----- modbus-mapper log -----\n{}", self.log());
        }
    }
}
