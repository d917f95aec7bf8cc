//! The binary's control endpoint, driven the way a CI script would: start
//! `modbus-sim --control 127.0.0.1:0`, change faults with `modbus-sim fault`,
//! and watch a tokio-modbus client see them and the unit recover.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Output;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::*;

const MAP: &str = "\
endpoints:
  - name: line
    tcp: 127.0.0.1:0
    units:
      - { id: 1, holding_registers: [ { start: 0, values: [11] } ] }
      - { id: 2, holding_registers: [ { start: 0, values: [22] } ] }
      - { id: 3, holding_registers: [ { start: 0, values: [33] } ] }
";

async fn fault(control: &str, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_modbus-sim"))
        .args(["fault", "--control", control])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true)
        .output();
    within(out).await.unwrap()
}

async fn fault_ok(control: &str, args: &[&str]) -> serde_json::Value {
    let out = fault(control, args).await;
    assert!(
        out.status.success(),
        "modbus-sim fault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn client(addr: SocketAddr, unit: u8) -> Context {
    within(tcp::connect_slave(addr, Slave(unit))).await.unwrap()
}

async fn read(addr: SocketAddr, unit: u8) -> u16 {
    let mut c = client(addr, unit).await;
    within(c.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap()[0]
}

/// Whether a read of `unit` stays unanswered (on a fresh connection).
async fn unanswered(addr: SocketAddr, unit: u8) -> bool {
    let mut c = client(addr, unit).await;
    tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 1))
        .await
        .is_err()
}

#[tokio::test]
async fn cli_makes_a_unit_silent_and_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("line.yaml");
    std::fs::write(&map, MAP).unwrap();
    let p = SimProcess::start(&map, &["--control", "127.0.0.1:0"]).await;
    let addr: SocketAddr = p.endpoint("tcp").parse().unwrap();
    let control = p.control();
    assert!(
        control.starts_with("127.0.0.1:") && !control.ends_with(":0"),
        "{control}"
    );

    assert_eq!(read(addr, 3).await, 33);
    let v = fault_ok(&control, &["--unit", "3", "silent"]).await;
    assert_eq!(v["faults"]["silent"], true, "{v}");
    assert!(unanswered(addr, 3).await, "unit 3 still answers");
    assert_eq!(read(addr, 1).await, 11, "the other units keep answering");

    let shown = fault_ok(&control, &["show"]).await;
    assert_eq!(shown["endpoints"]["line"]["3"]["silent"], true, "{shown}");
    assert_eq!(shown["endpoints"]["line"]["2"]["silent"], false, "{shown}");

    // a second fault adds to the first; clear removes both
    fault_ok(&control, &["--unit", "3", "exception", "6"]).await;
    let shown = fault_ok(&control, &["show"]).await;
    assert_eq!(shown["endpoints"]["line"]["3"]["silent"], true);
    assert_eq!(shown["endpoints"]["line"]["3"]["exceptions"][0]["code"], 6);
    fault_ok(&control, &["--unit", "3", "clear"]).await;
    assert_eq!(read(addr, 3).await, 33, "unit 3 did not recover");

    // exception fault alone: the client sees the device's exception
    fault_ok(
        &control,
        &["--unit", "2", "set", "{exceptions: [{code: 6}]}"],
    )
    .await;
    let mut c = client(addr, 2).await;
    let r = within(c.read_holding_registers(0, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::ServerDeviceBusy));
    fault_ok(&control, &["--unit", "2", "clear"]).await;
    assert_eq!(read(addr, 2).await, 22);

    // a wrong request fails the command with the simulator's reason
    let out = fault(&control, &["--unit", "9", "silent"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no unit 9") && err.contains("404"), "{err}");
    let out = fault(&control, &["silent"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unit is needed"));

    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// Sends raw bytes to the control port and returns the whole answer.
async fn raw(control: &str, request: String) -> String {
    let mut s = within(tokio::net::TcpStream::connect(control))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(s.read_to_end(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(body: &str) -> String {
    format!(
        "POST /faults HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn hostile_control_requests_get_400_and_the_simulator_keeps_serving() {
    let p = SimProcess::start(&map_path("boiler.yaml"), &["--control", "127.0.0.1:0"]).await;
    let addr: SocketAddr = p.endpoint("tcp").parse().unwrap();
    let control = p.control();

    for body in [
        "{\"unit\": ",
        "\u{0}\u{1}\u{2}",
        "unit: [",
        "{\"unit\": 1, \"faults\": {\"silent\": 3}}",
    ] {
        let answer = raw(&control, post(body)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
        assert!(
            answer.contains("\"error\": \"POST /faults"),
            "{body:?}: {answer}"
        );
    }
    let answer = raw(&control, "NOT HTTP\r\n\r\n".to_owned()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let answer = raw(
        &control,
        format!(
            "POST /faults HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 100000\r\n\r\n{}",
            "x".repeat(100_000)
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // still up, still healthy
    assert_eq!(read(addr, 2).await, 222);
    let answer = raw(
        &control,
        post("{\"unit\": 2, \"faults\": {\"delay_ms\": 1}}"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");
}
