//! Interoperability with independent peers: `mbpoll` (libmodbus) over TCP and
//! RTU (socat ptys and the binary's own pty), and the `modbus-sim` binary
//! itself (printed endpoints, stats file, SIGTERM summary).
//!
//! Tests needing `mbpoll` or `socat` fail when the tool is missing, unless
//! `MAPPER_TESTS_ALLOW_SKIP=1` is set (then they print that they were skipped).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use modbus_sim::{RtuOptions, Simulator};
use tokio::process::Command;

/// Runs mbpoll with `args`; returns (success, stdout).
async fn mbpoll(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new("mbpoll")
            .args(args)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("mbpoll hung")
    .expect("mbpoll did not start");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("mbpoll {args:?}\n{stdout}{stderr}");
    (out.status.success(), stdout)
}

/// Parses mbpoll's `[ADDR]: VALUE` lines.
fn values(stdout: &str) -> BTreeMap<u16, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (a, v) = l.trim().strip_prefix('[')?.split_once("]:")?;
            Some((a.parse().ok()?, v.trim().to_string()))
        })
        .collect()
}

#[tokio::test]
async fn mbpoll_tcp_reads_and_writes() {
    if !tool_available("mbpoll") {
        return;
    }
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let port = addr.port().to_string();
    let base = ["-m", "tcp", "-p", &port, "-a", "1", "-0", "-1", "-o", "2"];

    let (ok, out) =
        mbpoll(&[&base[..], &["-r", "100", "-c", "5", "-t", "4", "127.0.0.1"]].concat()).await;
    assert!(ok);
    let v = values(&out);
    let expect: BTreeMap<u16, String> = (100..105).map(|a| (a, (a - 99).to_string())).collect();
    assert_eq!(v, expect);

    // float32, high word first (-B)
    let (ok, out) =
        mbpoll(&[&base[..], &["-r", "10", "-t", "4:float", "-B", "127.0.0.1"]].concat()).await;
    assert!(ok);
    assert_eq!(values(&out).get(&10).map(String::as_str), Some("60"));

    // coils and discrete inputs
    let (ok, out) =
        mbpoll(&[&base[..], &["-r", "0", "-c", "4", "-t", "0", "127.0.0.1"]].concat()).await;
    assert!(ok);
    assert_eq!(
        values(&out).values().cloned().collect::<Vec<_>>(),
        ["1", "0", "1", "0"]
    );
    let (ok, out) =
        mbpoll(&[&base[..], &["-r", "0", "-c", "2", "-t", "1", "127.0.0.1"]].concat()).await;
    assert!(ok);
    assert_eq!(
        values(&out).values().cloned().collect::<Vec<_>>(),
        ["0", "1"]
    );

    // writes: FC6 (one value) and FC16 (several), FC5
    let (ok, out) =
        mbpoll(&[&base[..], &["-r", "3", "-t", "4", "127.0.0.1", "4321"]].concat()).await;
    assert!(ok && out.contains("Written 1 references"));
    assert_eq!(sim.read_holding(1, 3).unwrap(), 4321);
    let (ok, _) = mbpoll(
        &[
            &base[..],
            &["-r", "5", "-t", "4", "127.0.0.1", "7", "8", "9"],
        ]
        .concat(),
    )
    .await;
    assert!(ok);
    assert_eq!(
        sim.read_registers(1, modbus_sim::TableKind::HoldingRegisters, 5, 3)
            .unwrap(),
        vec![7, 8, 9]
    );
    let (ok, _) = mbpoll(&[&base[..], &["-r", "1", "-t", "0", "127.0.0.1", "1"]].concat()).await;
    assert!(ok);
    assert!(sim.read_coil(1, 1).unwrap());

    // an exception is reported as a failure by mbpoll
    let (_, out) = mbpoll(&[&base[..], &["-r", "1000", "-t", "4", "127.0.0.1"]].concat()).await;
    assert!(values(&out).is_empty());
    let s = sim.stats().snapshot();
    assert!(s.exceptions >= 1);
    assert!(s.units[&1].by_function.contains_key(&16));
    sim.shutdown().await;
}

#[tokio::test]
async fn mbpoll_rtu_over_socat_pty() {
    if !tool_available("mbpoll") || !tool_available("socat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("sim");
    let b = dir.path().join("client");
    let mut socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        eventually(OK_TIMEOUT, || a.exists() && b.exists()).await,
        "socat ptys never appeared"
    );

    let sim = Simulator::from_map(&example("rtu-line.yaml"));
    sim.serve_rtu_path(
        &a,
        9600,
        RtuOptions {
            wire_time_baud: Some(9600),
        },
    )
    .unwrap();
    let path = b.to_str().unwrap();
    let base = [
        "-m", "rtu", "-b", "9600", "-P", "none", "-0", "-1", "-o", "2",
    ];

    let (ok, out) = mbpoll(
        &[
            &base[..],
            &["-a", "2", "-r", "0", "-c", "4", "-t", "4", path],
        ]
        .concat(),
    )
    .await;
    assert!(ok);
    assert_eq!(
        values(&out).values().cloned().collect::<Vec<_>>(),
        ["20", "21", "22", "23"]
    );
    let (ok, _) =
        mbpoll(&[&base[..], &["-a", "2", "-r", "1", "-t", "4", path, "4242"]].concat()).await;
    assert!(ok);
    assert_eq!(sim.read_holding(2, 1).unwrap(), 4242);
    let (ok, out) = mbpoll(
        &[
            &base[..],
            &["-a", "1", "-r", "0", "-c", "3", "-t", "1", path],
        ]
        .concat(),
    )
    .await;
    assert!(ok);
    assert_eq!(
        values(&out).values().cloned().collect::<Vec<_>>(),
        ["1", "1", "0"]
    );
    assert_eq!(sim.stats().snapshot().units[&2].requests, 2);

    sim.shutdown().await;
    socat.kill().await.unwrap();
}

#[tokio::test]
async fn binary_serves_tcp_and_writes_stats_file() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let p = SimProcess::start(
        &map_path("boiler.yaml"),
        &[
            "--stats-file",
            stats.to_str().unwrap(),
            "--stats-interval",
            "0.1",
        ],
    )
    .await;
    let addr: std::net::SocketAddr = p.endpoint("tcp").parse().unwrap();
    let mut c = within(tokio_modbus::client::tcp::connect_slave(
        addr,
        tokio_modbus::Slave(1),
    ))
    .await
    .unwrap();
    use tokio_modbus::client::{Reader, Writer};
    let r = within(c.read_holding_registers(100, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, vec![1, 2, 3, 4, 5]);
    within(c.write_single_register(0, 9))
        .await
        .unwrap()
        .unwrap();

    let read_stats = || -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&stats).ok()?).ok()
    };
    let seen = eventually(OK_TIMEOUT, || {
        read_stats().is_some_and(|j| j["endpoints"]["boiler"]["requests"] == 2)
    })
    .await;
    assert!(
        seen,
        "stats file never showed 2 requests: {:?}",
        read_stats()
    );
    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");
    let j = read_stats().unwrap();
    assert_eq!(
        j["endpoints"]["boiler"]["units"]["1"]["registers_written"],
        1
    );
    assert_eq!(
        j["endpoints"]["boiler"]["units"]["1"]["by_function"]["3"],
        1
    );
}

#[tokio::test]
async fn mbpoll_rtu_against_binary_pty() {
    if !tool_available("mbpoll") {
        return;
    }
    let p = SimProcess::start(&map_path("rtu-line.yaml"), &[]).await;
    let path = p.endpoint("rtu");
    assert!(Path::new(&path).exists(), "{path}");
    let base = [
        "-m", "rtu", "-b", "9600", "-P", "none", "-0", "-1", "-o", "2",
    ];
    let (ok, out) = mbpoll(
        &[
            &base[..],
            &["-a", "1", "-r", "0", "-c", "4", "-t", "4", &path],
        ]
        .concat(),
    )
    .await;
    assert!(ok);
    assert_eq!(
        values(&out).values().cloned().collect::<Vec<_>>(),
        ["10", "11", "12", "13"]
    );
    let (ok, out) =
        mbpoll(&[&base[..], &["-a", "1", "-r", "2", "-t", "4", &path, "77"]].concat()).await;
    assert!(ok && out.contains("Written 1 references"));
    let (ok, out) = mbpoll(&[&base[..], &["-a", "1", "-r", "2", "-t", "4", &path]].concat()).await;
    assert!(ok);
    assert_eq!(values(&out).get(&2).map(String::as_str), Some("77"));
    // a unit that is not on the line: mbpoll times out
    let (_, out) = mbpoll(
        &[
            &base[..],
            &["-a", "9", "-r", "0", "-t", "4", "-o", "0.3", &path],
        ]
        .concat(),
    )
    .await;
    assert!(values(&out).is_empty());
    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");
}
