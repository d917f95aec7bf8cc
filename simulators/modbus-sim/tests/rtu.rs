//! tokio-modbus RTU client (and raw frames) against the simulator on an
//! in-process pty pair.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use modbus_sim::{Fault, RtuOptions, Simulator, TableKind, crc16, transaction_time};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;
use tokio_serial::SerialStream;

fn line() -> (Simulator, SerialStream) {
    let sim = Simulator::from_map(&example("rtu-line.yaml"));
    let pty = sim.serve_rtu_pty(RtuOptions::default()).unwrap();
    assert!(pty.path.is_some());
    (sim, pty.stream)
}

fn frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = vec![unit];
    f.extend_from_slice(pdu);
    let crc = crc16(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

#[tokio::test]
async fn reads_and_writes_over_pty() {
    let (sim, port) = line();
    let mut c = rtu::attach_slave(port, Slave(1));
    assert_eq!(
        within(c.read_holding_registers(0, 4))
            .await
            .unwrap()
            .unwrap(),
        vec![10, 11, 12, 13]
    );
    assert_eq!(
        within(c.read_input_registers(0, 4)).await.unwrap().unwrap(),
        vec![500; 4]
    );
    assert_eq!(
        within(c.read_discrete_inputs(0, 3)).await.unwrap().unwrap(),
        vec![true, true, false]
    );
    within(c.write_single_coil(2, true)).await.unwrap().unwrap();
    within(c.write_multiple_coils(4, &[true, true]))
        .await
        .unwrap()
        .unwrap();
    let coils = within(c.read_coils(0, 8)).await.unwrap().unwrap();
    assert_eq!(
        &coils[..8],
        &[false, false, true, false, true, true, false, false]
    );
    within(c.write_single_register(1, 0xBEEF))
        .await
        .unwrap()
        .unwrap();
    within(c.write_multiple_registers(2, &[1, 2]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.read_registers(1, TableKind::HoldingRegisters, 0, 4)
            .unwrap(),
        vec![10, 0xBEEF, 1, 2]
    );
    let r = within(c.read_holding_registers(4, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    // another unit on the same line
    c.set_slave(Slave(2));
    assert_eq!(
        within(c.read_holding_registers(0, 4))
            .await
            .unwrap()
            .unwrap(),
        vec![20, 21, 22, 23]
    );
    assert_eq!(sim.stats().snapshot().units[&2].requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_unit_is_silent_and_does_not_block_the_line() {
    let (sim, port) = line();
    let mut c = rtu::attach_slave(port, Slave(9));
    let r = tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 1)).await;
    assert!(r.is_err(), "unit 9 must stay silent, got {r:?}");
    // nothing comes late, so the same line keeps working for unit 1
    c.set_slave(Slave(1));
    assert_eq!(
        within(c.read_holding_registers(0, 1))
            .await
            .unwrap()
            .unwrap(),
        vec![10]
    );
    assert_eq!(sim.stats().snapshot().unknown_unit, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn corrupted_crc_is_detected_by_the_client() {
    let (sim, port) = line();
    // unit 3 corrupts every second reply (from the map file)
    let mut c = rtu::attach_slave(port, Slave(3));
    within(c.read_holding_registers(0, 4))
        .await
        .unwrap()
        .unwrap();
    let r = tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 4)).await;
    assert!(
        !matches!(r, Ok(Ok(Ok(_)))),
        "a reply with a broken CRC must not be accepted, got {r:?}"
    );
    assert_eq!(sim.stats().snapshot().units[&3].replies, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn raw_frames_crc_late_and_broadcast() {
    let (sim, mut port) = line();
    sim.set_fault(1, Fault::CorruptCrc { every: 1 }).unwrap();
    let req = frame(1, &[3, 0, 0, 0, 1]);
    port.write_all(&req).await.unwrap();
    let mut reply = [0u8; 7];
    within(port.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply[..5], &[1, 3, 2, 0, 10]);
    assert_ne!(crc16(&reply[..5]).to_le_bytes(), [reply[5], reply[6]]);
    sim.clear_faults(1).unwrap();

    // a late reply still arrives on the line, after the client gave up
    sim.set_fault(
        1,
        Fault::Late {
            delay: Duration::from_millis(300),
            every: 1,
        },
    )
    .unwrap();
    let t = Instant::now();
    port.write_all(&req).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(100), port.read_exact(&mut reply)).await;
    assert!(early.is_err());
    within(port.read_exact(&mut reply)).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(crc16(&reply[..5]).to_le_bytes(), [reply[5], reply[6]]);
    sim.clear_faults(1).unwrap();

    // a frame with a bad CRC is ignored and counted
    let mut bad = frame(1, &[3, 0, 0, 0, 1]);
    bad[7] ^= 1;
    port.write_all(&bad).await.unwrap();
    assert!(eventually(OK_TIMEOUT, || sim.stats().snapshot().crc_errors == 1).await);

    // broadcast write (unit 0) reaches every unit, nobody answers
    port.write_all(&frame(0, &[6, 0, 0, 0x12, 0x34]))
        .await
        .unwrap();
    assert!(eventually(OK_TIMEOUT, || sim.read_holding(2, 0).ok() == Some(0x1234)).await);
    assert_eq!(sim.read_holding(1, 0).unwrap(), 0x1234);
    // the line is still in sync
    port.write_all(&req).await.unwrap();
    within(port.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply[..5], &[1, 3, 2, 0x12, 0x34]);
    sim.shutdown().await;
}

#[tokio::test]
async fn wire_time_is_emulated() {
    let sim = Simulator::from_map(&example("rtu-line.yaml"));
    let pty = sim
        .serve_rtu_pty(RtuOptions {
            wire_time_baud: Some(9600),
        })
        .unwrap();
    let mut c = rtu::attach_slave(pty.stream, Slave(1));
    // FC03 with 4 registers: request 8 bytes, reply 13 bytes
    let expected = transaction_time(8, 13, 9600);
    assert!(expected > Duration::from_millis(30));
    let t = Instant::now();
    within(c.read_holding_registers(0, 4))
        .await
        .unwrap()
        .unwrap();
    let took = t.elapsed();
    assert!(took >= expected, "{took:?} < {expected:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn silent_unit_on_rtu_and_recovery() {
    let (sim, port) = line();
    sim.set_fault(2, Fault::Silent).unwrap();
    let mut c = rtu::attach_slave(port, Slave(2));
    let r = tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 1)).await;
    assert!(r.is_err());
    sim.clear_faults(2).unwrap();
    assert_eq!(
        within(c.read_holding_registers(0, 1))
            .await
            .unwrap()
            .unwrap(),
        vec![20]
    );
    sim.shutdown().await;
}
