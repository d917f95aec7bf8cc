//! A private `dbus-daemon` for the simulator.
//!
//! The daemon gets a permissive configuration (any connection may own any
//! name and send or receive anything) and listens on a unix socket in a
//! temporary directory, or at a socket path the caller chooses (libdbus
//! reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, so a test process that
//! restarts the simulator wants the same path every time).
//!
//! The daemon is stopped with SIGTERM, through its child handle, by
//! [`PrivateBus::stop`] or, as a last resort, when the handle is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::BusError;

/// How long the daemon may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running private `dbus-daemon`.
#[derive(Debug)]
pub struct PrivateBus {
    child: Option<Child>,
    address: String,
    socket: PathBuf,
    // Keeps the config file (and the default socket directory) alive.
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Start a daemon listening at `socket`, or in a fresh temporary directory when `None`.
    ///
    /// A stale file at `socket` (left by a killed daemon) is removed first.
    pub async fn start(socket: Option<&Path>) -> Result<PrivateBus, BusError> {
        let dir = tempfile::Builder::new().prefix("ble-sim-bus").tempdir()?;
        let socket = match socket {
            Some(p) => {
                if let Some(parent) = p.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BusError::Io(e)),
                }
                p.to_owned()
            }
            None => dir.path().join("bus.sock"),
        };
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, config_xml(&socket))?;

        let mut child = Command::new("dbus-daemon")
            .arg("--nofork")
            .arg("--print-address")
            .arg(format!("--config-file={}", config.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BusError::Spawn)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BusError::NoAddress("no stdout pipe".to_owned()))?;
        // Forward the daemon's complaints to tracing. Running as root in a
        // container it always fails to raise its fd limit: harmless, so debug.
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("Failed to set fd limit") {
                        tracing::debug!(target: "dbus-daemon", "{line}");
                    } else {
                        tracing::warn!(target: "dbus-daemon", "{line}");
                    }
                }
            });
        }
        let mut bus = PrivateBus {
            child: Some(child),
            address: String::new(),
            socket,
            _dir: dir,
        };
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(START_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                bus.stop().await;
                return Err(BusError::NoAddress("dbus-daemon exited".to_owned()));
            }
            Ok(Err(e)) => {
                bus.stop().await;
                return Err(BusError::NoAddress(e.to_string()));
            }
            Err(_) => {
                bus.stop().await;
                return Err(BusError::NoAddress(format!(
                    "nothing printed within {START_TIMEOUT:?}"
                )));
            }
        };
        let address = line.trim().to_owned();
        if !address.starts_with("unix:") {
            bus.stop().await;
            return Err(BusError::NoAddress(format!(
                "unexpected output {address:?}"
            )));
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tracing::debug!(%address, "private dbus-daemon started");
        bus.address = address;
        Ok(bus)
    }

    /// The address as printed by the daemon (`unix:path=...,guid=...`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `unix:path=SOCKET`, the form to put in `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn plain_address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stop the daemon: SIGTERM, wait, SIGKILL only if it ignores SIGTERM.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                tracing::warn!(pid, error = %e, "cannot send SIGTERM to dbus-daemon");
            }
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(Ok(status)) => tracing::debug!(%status, "private dbus-daemon stopped"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot wait for dbus-daemon"),
                Err(_) => {
                    tracing::warn!(pid, "dbus-daemon ignored SIGTERM, killing it");
                    let _ = child.kill().await;
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        if let Some(child) = self.child.take()
            && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        {
            // tokio reaps the orphaned child in the background.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn config_xml(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>ble-sim</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_destination="*"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
        xml_escape(&socket.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_and_stops_at_a_chosen_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("x.sock");
        let mut bus = PrivateBus::start(Some(&sock)).await.unwrap();
        assert!(bus.address().starts_with("unix:path="), "{}", bus.address());
        assert!(sock.exists());
        let conn = zbus::connection::Builder::address(bus.plain_address().as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        assert!(conn.unique_name().is_some());
        drop(conn);
        bus.stop().await;
        assert!(!sock.exists());
        // Same path again: a fresh daemon starts.
        let mut bus = PrivateBus::start(Some(&sock)).await.unwrap();
        bus.stop().await;
    }
}
