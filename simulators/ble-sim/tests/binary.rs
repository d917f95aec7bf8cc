//! The `ble-sim` binary: prints the bus address when ready and stops
//! cleanly (taking its dbus-daemon with it) on stdin EOF and on SIGTERM.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(extra: &[&str]) -> (Child, String) {
    let devices = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/sensortag.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ble-sim"))
        .arg("--devices")
        .arg(devices)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no address line within 30 s");
    let addr = line
        .trim()
        .strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "ble-sim did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn owner_of_bluez(addr: &str) -> bool {
    let conn = zbus::connection::Builder::address(addr)
        .unwrap()
        .build()
        .await
        .unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
    dbus.name_has_owner("org.bluez".try_into().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn binary_prints_address_and_stops_on_stdin_eof() {
    let (mut child, addr) = start(&[]);
    assert!(addr.starts_with("unix:path="), "{addr}");
    assert!(owner_of_bluez(&addr).await);
    let socket = addr.trim_start_matches("unix:path=").to_owned();
    drop(child.stdin.take());
    let st = wait_exit(&mut child);
    assert!(st.success(), "{st}");
    // The private daemon went with it: its socket is gone.
    assert!(!Path::new(&socket).exists(), "bus socket left behind");
}

#[tokio::test]
async fn binary_stops_on_sigterm_at_a_chosen_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("b.sock");
    let (mut child, addr) = start(&["--socket", sock.to_str().unwrap()]);
    assert_eq!(addr, format!("unix:path={}", sock.display()));
    assert!(owner_of_bluez(&addr).await);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_exit(&mut child);
    assert!(st.success(), "{st}");
    assert!(!sock.exists(), "bus socket left behind");
}
