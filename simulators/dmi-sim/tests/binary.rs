//! The `dmi-sim` binary: JSON event lines, restart from stdin and SIGHUP, clean SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dmi_api::transport::{Address, connect};
use dmi_api::v1beta1 as pb;
use dmi_api::v1beta1::device_manager_service_client::DeviceManagerServiceClient;
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(10);

/// Reads stdout lines on a thread so waits can have deadlines.
fn lines(stdout: ChildStdout) -> mpsc::Receiver<Json> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Json = serde_json::from_str(&line).unwrap_or(Json::String(line));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_event(rx: &mpsc::Receiver<Json>, event: &str) -> Json {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if v["event"] == event => return v,
            Ok(_) => {}
            Err(e) => panic!("no {event:?} line within {WAIT:?}: {e}"),
        }
    }
}

/// Kills the child (by its PID) if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let end = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "dmi-sim did not exit within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn prints_events_restarts_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dmi.sock");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/modbus-tcp.yaml");
    let mut guard = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmi-sim"))
            .args(["--socket", sock.to_str().unwrap(), "--version", "1.22"])
            .args(["--fixtures", fixtures, "--rate", "0.001", "--burst", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let rx = lines(child.stdout.take().unwrap());
    wait_event(&rx, "listening");
    let inode = std::fs::metadata(&sock).unwrap().ino();

    let ch = connect(&Address::Path(sock.clone()), "localhost")
        .await
        .unwrap();
    DeviceManagerServiceClient::new(ch)
        .mapper_register(pb::MapperRegisterRequest {
            with_data: true,
            mapper: Some(pb::MapperInfo {
                name: "m".into(),
                protocol: "modbus".into(),
                address: b"@m".to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let reg = wait_event(&rx, "register");
    assert_eq!(reg["devices"][0], "default/thermostat-1");
    assert_eq!(reg["addressRecorded"], true);
    let call = wait_event(&rx, "call");
    assert_eq!(
        (call["method"].as_str(), call["code"].as_str()),
        (Some("MapperRegister"), Some("Ok"))
    );

    // Restart from stdin, then from SIGHUP: a new inode each time.
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "restart").unwrap();
    stdin.flush().unwrap();
    wait_event(&rx, "listening");
    let second = std::fs::metadata(&sock).unwrap().ino();
    assert_ne!(second, inode);
    signal(child, "HUP");
    wait_event(&rx, "listening");
    assert_ne!(std::fs::metadata(&sock).unwrap().ino(), second);

    signal(child, "TERM");
    let status = wait_exit(child);
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "the socket must be removed on SIGTERM");
}

#[test]
fn bad_flags_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_dmi-sim"))
        .args(["--socket", "/nonexistent/x.sock", "--rate", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));
    let out = Command::new(env!("CARGO_BIN_EXE_dmi-sim"))
        .args(["--version", "1.14"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1.14"));
}
