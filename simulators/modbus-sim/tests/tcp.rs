//! tokio-modbus client against the simulator over TCP.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use modbus_sim::{ExceptionRule, Fault, Simulator, TableKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;

async fn client(addr: std::net::SocketAddr, unit: u8) -> tokio_modbus::client::Context {
    within(tcp::connect_slave(addr, Slave(unit))).await.unwrap()
}

fn f32_of(hi: u16, lo: u16) -> f32 {
    f32::from_bits((u32::from(hi) << 16) | u32::from(lo))
}

#[tokio::test]
async fn reads_every_table() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 1).await;

    let coils = within(c.read_coils(0, 4)).await.unwrap().unwrap();
    assert_eq!(coils, vec![true, false, true, false]);
    let di = within(c.read_discrete_inputs(0, 2)).await.unwrap().unwrap();
    assert_eq!(di, vec![false, true]);
    let hr = within(c.read_holding_registers(100, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hr, vec![1, 2, 3, 4, 5]);
    let ir = within(c.read_input_registers(0, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ir, vec![0; 10]);
    // typed values: float32 setpoint, string model
    let sp = within(c.read_holding_registers(10, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f32_of(sp[0], sp[1]), 60.0);
    let model = within(c.read_holding_registers(40, 6))
        .await
        .unwrap()
        .unwrap();
    let text: Vec<u8> = model.iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_eq!(&text[..9], b"BOILER-X1");
    // unit 2 on the same server has its own map
    c.set_slave(Slave(2));
    let hr = within(c.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hr, vec![222, 223]);
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_land_in_the_tables() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 1).await;

    within(c.write_single_coil(1, true)).await.unwrap().unwrap();
    assert!(sim.read_coil(1, 1).unwrap());
    within(c.write_multiple_coils(0, &[false, true, false]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.read_bits(1, TableKind::Coils, 0, 3).unwrap(),
        vec![false, true, false]
    );
    within(c.write_single_register(3, 4321))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.read_holding(1, 3).unwrap(), 4321);
    within(c.write_multiple_registers(5, &[7, 8, 9]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.read_registers(1, TableKind::HoldingRegisters, 5, 3)
            .unwrap(),
        vec![7, 8, 9]
    );
    // FC23: write 0..2, read 4..6 in one transaction
    let r = within(c.read_write_multiple_registers(4, 3, 0, &[11, 12]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, vec![0, 7, 8]);
    assert_eq!(sim.read_holding(1, 1).unwrap(), 12);
    // typed write through the library, read back through the protocol
    sim.write_value(1, "setpoint", 72.25).unwrap();
    let sp = within(c.read_holding_registers(10, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f32_of(sp[0], sp[1]), 72.25);
    assert_eq!(sim.read_value(1, "setpoint").unwrap(), 72.25);
    // the device side changes an input register
    sim.write_input(1, 3, 99).unwrap();
    let ir = within(c.read_input_registers(3, 1)).await.unwrap().unwrap();
    assert_eq!(ir, vec![99]);
    sim.shutdown().await;
}

#[tokio::test]
async fn exceptions_for_unmapped_addresses_and_faults() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 1).await;

    // unmapped (and partly unmapped) ranges
    let r = within(c.read_holding_registers(1000, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    let r = within(c.read_holding_registers(103, 3)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    let r = within(c.write_single_register(60000, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    let r = within(c.write_single_coil(500, true)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    // from the map file: 90..99 answer "server device failure"
    let r = within(c.read_holding_registers(95, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::ServerDeviceFailure));

    // at runtime: busy on input registers 0..4
    sim.set_fault(
        1,
        Fault::Exception(ExceptionRule::range(6, TableKind::InputRegisters, 0, 5)),
    )
    .unwrap();
    let r = within(c.read_input_registers(4, 2)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::ServerDeviceBusy));
    let r = within(c.read_input_registers(5, 2)).await.unwrap();
    assert!(r.is_ok());
    sim.clear_faults(1).unwrap();
    let r = within(c.read_input_registers(4, 2)).await.unwrap();
    assert!(r.is_ok());
    // the map's rule is gone too: 90..99 is simply unmapped
    let r = within(c.read_holding_registers(95, 1)).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    assert!(sim.set_fault(42, Fault::Silent).is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_unit_gets_no_reply() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 9).await;
    let r = tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 1)).await;
    assert!(r.is_err(), "unit 9 must stay silent, got {r:?}");
    // the known units still answer (fresh connection: the old one has a
    // request outstanding)
    let mut c = client(addr, 1).await;
    assert!(
        within(c.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );
    let s = sim.stats().snapshot();
    assert_eq!(s.unknown_unit, 1);
    assert_eq!(s.replies, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn counters_per_unit_and_function() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 1).await;
    for _ in 0..3 {
        within(c.read_holding_registers(100, 5))
            .await
            .unwrap()
            .unwrap();
    }
    within(c.read_coils(0, 4)).await.unwrap().unwrap();
    within(c.write_multiple_registers(0, &[1, 2]))
        .await
        .unwrap()
        .unwrap();
    within(c.write_single_coil(0, true)).await.unwrap().unwrap();
    let _ = within(c.read_holding_registers(1000, 1)).await.unwrap();
    c.set_slave(Slave(2));
    within(c.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();

    let s = sim.stats().snapshot();
    assert_eq!(s.requests, 8);
    assert_eq!(s.replies, 8);
    assert_eq!(s.exceptions, 1);
    assert_eq!(s.registers_read, 17);
    assert_eq!(s.registers_written, 2);
    assert_eq!(s.bits_read, 4);
    assert_eq!(s.bits_written, 1);
    assert_eq!(s.connections, 1);
    let u1 = &s.units[&1];
    assert_eq!(u1.requests, 7);
    assert_eq!(u1.by_function[&3], 4);
    assert_eq!(u1.by_function[&1], 1);
    assert_eq!(u1.by_function[&16], 1);
    assert_eq!(u1.by_function[&5], 1);
    assert_eq!(s.units[&2].registers_read, 2);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["units"]["1"]["by_function"]["3"], 4);
    sim.stats().reset();
    assert_eq!(sim.stats().snapshot().requests, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn silent_and_delay_faults() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();

    sim.set_fault(1, Fault::Silent).unwrap();
    let mut c = client(addr, 1).await;
    let r = tokio::time::timeout(SILENT_TIMEOUT, c.read_holding_registers(0, 1)).await;
    assert!(r.is_err());
    assert_eq!(sim.stats().snapshot().silenced, 1);
    sim.clear_faults(1).unwrap();

    sim.set_fault(1, Fault::Delay(Duration::from_millis(150)))
        .unwrap();
    let mut c = client(addr, 1).await;
    let t = Instant::now();
    within(c.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn late_reply_arrives_after_client_timeout() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    sim.set_fault(
        1,
        Fault::Late {
            delay: Duration::from_millis(400),
            every: 2,
        },
    )
    .unwrap();
    // raw client so we can watch the late bytes arrive
    let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let req = |tid: u8| [0, tid, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1];
    let mut buf = [0u8; 11];
    s.write_all(&req(1)).await.unwrap();
    within(s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(buf, [0, 1, 0, 0, 0, 5, 1, 3, 2, 0, 1]);
    // second reply is late: nothing within a 150 ms "client timeout"...
    let t = Instant::now();
    s.write_all(&req(2)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(150), s.read_exact(&mut buf)).await;
    assert!(early.is_err());
    // ...but it does come, carrying its own transaction id
    within(s.read_exact(&mut buf)).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(buf[1], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connections() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    sim.set_fault(1, Fault::DropConnectionAfter(3)).unwrap();
    let mut c = client(addr, 1).await;
    for _ in 0..2 {
        within(c.read_holding_registers(0, 1))
            .await
            .unwrap()
            .unwrap();
    }
    let r = within(c.read_holding_registers(0, 1)).await;
    assert!(
        matches!(r, Err(tokio_modbus::Error::Transport(_))),
        "third request must lose the connection, got {r:?}"
    );
    sim.clear_faults(1).unwrap();

    // on demand
    let mut c = client(addr, 1).await;
    within(c.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    sim.drop_connections();
    let r = within(c.read_holding_registers(0, 1)).await;
    assert!(matches!(r, Err(tokio_modbus::Error::Transport(_))), "{r:?}");
    // the listener keeps accepting
    let mut c = client(addr, 1).await;
    within(c.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.stats().snapshot().dropped_connections, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_header_closes_connection() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    // protocol id 7 is not Modbus
    s.write_all(&[0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1])
        .await
        .unwrap();
    let mut b = [0u8; 16];
    let n = within(s.read(&mut b)).await.unwrap_or(0);
    assert_eq!(n, 0, "server must close the connection");
    assert_eq!(sim.stats().snapshot().malformed, 1);
    // an unsupported function code gets exception 1
    let mut c = client(addr, 1).await;
    let r = within(c.call(Request::Custom(0x41, vec![1, 2].into()))).await;
    assert!(
        matches!(r, Ok(Err(ExceptionCode::IllegalFunction))),
        "{r:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dynamics_change_values_over_time() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let addr = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let mut c = client(addr, 1).await;
    let first = within(c.read_input_registers(20, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f32_of(first[0], first[1]), 21.5);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let now = within(c.read_input_registers(20, 2))
            .await
            .unwrap()
            .unwrap();
        let v = f32_of(now[0], now[1]);
        if v != 21.5 {
            assert!((20.0..=30.0).contains(&v), "{v}");
            break;
        }
        assert!(Instant::now() < end, "temperature never changed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the counter moves in steps of 3 (word-swapped uint32)
    let e0 = sim.read_value(1, "energy").unwrap();
    sim.tick_now();
    let e1 = sim.read_value(1, "energy").unwrap();
    assert!(e1 - e0 >= 3.0, "{e0} -> {e1}");
    sim.shutdown().await;
}

#[tokio::test]
async fn several_listeners_share_units_and_shutdown_stops_them() {
    let sim = Simulator::from_map(&example("boiler.yaml"));
    let a = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    let b = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    assert_ne!(a, b);
    let mut ca = client(a, 1).await;
    let mut cb = client(b, 1).await;
    within(ca.write_single_register(0, 777))
        .await
        .unwrap()
        .unwrap();
    let r = within(cb.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, vec![777]);
    sim.shutdown().await;
    // everything is closed: existing connections and the listener
    let r = within(cb.read_holding_registers(0, 1)).await;
    assert!(r.is_err());
    let refused = eventually(Duration::from_secs(5), || {
        std::net::TcpStream::connect(a).is_err()
    })
    .await;
    assert!(refused);
}

#[tokio::test]
async fn drop_stops_servers() {
    let sim = Simulator::from_map(&inline(
        "endpoints:\n  - name: t\n    tcp: 127.0.0.1:0\n    units: [ { id: 1, holding: [ { start: 0, count: 1 } ] } ]\n",
    ));
    let a = sim.serve_tcp("127.0.0.1:0").await.unwrap();
    drop(sim);
    let refused = eventually(Duration::from_secs(5), || {
        std::net::TcpStream::connect(a).is_err()
    })
    .await;
    assert!(refused);
}
