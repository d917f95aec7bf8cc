//! The driver against an in-process Modbus RTU server on a pty pair: several units on one
//! line, a silent unit, and late replies.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mapper_sdk::driver::{Device, DeviceSpec, Driver, DriverError};
use mapper_sdk::model::{DataType, Value};
use modbus_mapper::ModbusDriver;
use serde_json::json;

fn holding0() -> Vec<mapper_sdk::profile::PropertyDef> {
    vec![prop(
        "v",
        DataType::Int,
        json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
    )]
}

fn devices(
    driver: &ModbusDriver,
    units: &[u8],
    custom: serde_json::Value,
) -> Vec<DeviceSpec<ModbusDriver>> {
    units
        .iter()
        .map(|u| {
            spec(
                driver,
                &format!("unit-{u}"),
                rtu_protocol(*u, custom.clone()),
                holding0(),
            )
        })
        .collect()
}

#[tokio::test]
async fn three_units_on_one_line_each_answer_with_their_own_id() {
    let sim = Sim::with_units(&[1, 2, 3]);
    for u in 1..=3u8 {
        sim.mem(u, |m| m.holding[0] = 100 + u16::from(u));
    }
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let specs = devices(&driver, &[1, 2, 3], json!({}));
    let mut devs = Vec::new();
    for s in &specs {
        devs.push(driver.connect(s).await.unwrap());
    }
    assert_eq!(driver.live_buses(), 1, "one serial port, one bus");

    // Concurrently, several rounds: every answer belongs to the unit that asked.
    let mut tasks = Vec::new();
    for (mut d, s) in devs.into_iter().zip(specs.iter().cloned()) {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(d.read(&s.properties[0]).await.unwrap());
            }
            got
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let want = Value::Int(101 + i as i64);
        assert!(t.await.unwrap().iter().all(|v| *v == want));
    }
    let log = sim.log();
    assert_eq!(log.len(), 15);
    for u in 1..=3u8 {
        assert_eq!(log.iter().filter(|l| l.unit == u).count(), 5);
    }
}

#[tokio::test]
async fn a_silent_unit_is_backed_off_while_the_others_keep_answering() {
    let sim = Sim::with_units(&[1, 2]); // unit 3 is not on the line
    sim.mem(1, |m| m.holding[0] = 1);
    sim.mem(2, |m| m.holding[0] = 2);
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let custom = json!({"collectTimeout": 100, "rtuGracePeriod": 10, "backoffAfterTimeouts": 2,
                        "backoffMin": 60000, "backoffMax": 60000});
    let specs = devices(&driver, &[1, 2, 3], custom);
    let mut d1 = driver.connect(&specs[0]).await.unwrap();
    let mut d2 = driver.connect(&specs[1]).await.unwrap();
    let mut d3 = driver.connect(&specs[2]).await.unwrap();
    let p = |i: usize| &specs[i].properties[0];

    // Two real timeouts...
    for _ in 0..2 {
        let t = Instant::now();
        let e = d3.read(p(2)).await.unwrap_err();
        assert!(matches!(e, DriverError::Timeout(_)), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(d1.read(p(0)).await.unwrap(), Value::Int(1));
    }
    // ...then the unit is skipped: answered at once, nothing sent on the line.
    let before = sim.log().iter().filter(|l| l.unit == 3).count();
    assert_eq!(before, 2);
    for _ in 0..20 {
        let t = Instant::now();
        let e = d3.read(p(2)).await.unwrap_err();
        assert!(
            matches!(&e, DriverError::Timeout(m) if m.contains("skipped")),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        assert_eq!(d1.read(p(0)).await.unwrap(), Value::Int(1));
        assert_eq!(d2.read(p(1)).await.unwrap(), Value::Int(2));
    }
    assert_eq!(sim.log().iter().filter(|l| l.unit == 3).count(), 2);

    // While the dead unit is polled in a tight loop, the healthy ones are not slowed down.
    let dead = tokio::spawn(async move {
        let s = specs[2].clone();
        for _ in 0..200 {
            let _ = d3.read(&s.properties[0]).await;
        }
    });
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(d2.read(&sim_prop()).await.unwrap(), Value::Int(2));
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    dead.await.unwrap();
}

fn sim_prop() -> mapper_sdk::driver::PropertySpec<modbus_mapper::ModbusVisitor> {
    let def = holding0().remove(0);
    let visitor = modbus_mapper::config::parse_visitor(&def).unwrap();
    mapper_sdk::driver::PropertySpec {
        def: std::sync::Arc::new(def),
        visitor,
    }
}

#[tokio::test]
async fn a_late_reply_is_never_taken_as_the_next_answer() {
    let sim = Sim::with_units(&[1, 2]);
    sim.mem(1, |m| m.holding[0] = 111);
    sim.mem(2, |m| m.holding[0] = 2);
    // Unit 1 answers its first request after 300 ms (the client gives up after 100 ms).
    sim.delay_next(1, Duration::from_millis(300));
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let custom = json!({"collectTimeout": 100, "rtuGracePeriod": 400});
    let specs = devices(&driver, &[1, 2], custom);
    let mut d1 = driver.connect(&specs[0]).await.unwrap();
    let mut d2 = driver.connect(&specs[1]).await.unwrap();

    let e = d1.read(&specs[0].properties[0]).await.unwrap_err();
    assert!(matches!(e, DriverError::Timeout(_)), "{e}");
    // The late reply (111, from unit 1, same function code) has arrived by now; the next
    // answers must be the fresh ones.
    sim.mem(1, |m| m.holding[0] = 222);
    assert_eq!(
        d1.read(&specs[0].properties[0]).await.unwrap(),
        Value::Int(222)
    );
    assert_eq!(
        d2.read(&specs[1].properties[0]).await.unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        d1.read(&specs[0].properties[0]).await.unwrap(),
        Value::Int(222)
    );
}

#[tokio::test]
async fn rtu_exception_is_refused_and_the_line_keeps_working() {
    let sim = Sim::with_units(&[7]);
    sim.mem(7, |m| m.holding[0] = 70);
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let props = vec![
        prop(
            "ok",
            DataType::Int,
            json!({"register": "holding", "offset": 0, "limit": 1}),
        ),
        prop(
            "bad",
            DataType::Int,
            json!({"register": "holding", "offset": 999, "limit": 2}),
        ),
    ];
    let s = spec(&driver, "dev", rtu_protocol(7, json!({})), props);
    // The opener hands out the pty once: any reconnect would fail with Link.
    let mut d = driver.connect(&s).await.unwrap();
    for _ in 0..3 {
        let e = d.read(&s.properties[1]).await.unwrap_err();
        assert!(matches!(e, DriverError::Refused(_)), "{e}");
        assert_eq!(d.read(&s.properties[0]).await.unwrap(), Value::Int(70));
    }
    d.write(&s.properties[0], &Value::Int(-7)).await.unwrap();
    assert_eq!(d.read(&s.properties[0]).await.unwrap(), Value::Int(-7));
}

#[tokio::test]
async fn writes_go_ahead_of_queued_polls() {
    let sim = Sim::with_units(&[1, 2, 3, 4, 5]);
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let specs = devices(&driver, &[1, 2, 3, 4, 5], json!({}));
    let mut devs = Vec::new();
    for s in &specs {
        devs.push(driver.connect(s).await.unwrap());
    }
    let mut writer = devs.pop().unwrap();
    // Unit 1's read is slow (a slow device); while it is on the line, units 2-4 queue
    // reads and unit 5 queues a write.
    sim.delay_next(1, Duration::from_millis(300));
    let mut tasks = Vec::new();
    for (mut d, s) in devs.into_iter().zip(specs.iter().cloned()) {
        tasks.push(tokio::spawn(async move {
            d.read(&s.properties[0]).await.unwrap()
        }));
    }
    assert!(eventually(Duration::from_secs(5), || sim.requests() == 1).await);
    writer
        .write(&specs[4].properties[0], &Value::Int(5))
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let log = sim.log();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(log[0].unit, 1);
    assert_eq!(
        (log[1].unit, log[1].fc),
        (5, 6),
        "the write goes first: {log:?}"
    );
}

/// A unit that goes silent long enough to be skipped, then comes back: it is read again
/// within the probe interval (1 s) plus one collect cycle, and while it is dead it costs
/// the line at most one short (one-register) probe per second, not its whole batch.
#[tokio::test]
async fn a_silenced_unit_that_comes_back_is_read_again_within_a_second_and_a_cycle() {
    const CYCLE: Duration = Duration::from_millis(200);
    let sim = Sim::with_units(&[1, 2]);
    sim.mem(1, |m| {
        m.holding[0] = 10;
        m.holding[100] = 11;
        m.holding[101] = 12;
    });
    sim.mem(2, |m| m.holding[0] = 2);
    let driver = ModbusDriver::with_opener(serve_rtu_pty(&sim));
    let custom = json!({"collectTimeout": 100, "rtuGracePeriod": 10, "backoffAfterTimeouts": 2});
    // Unit 1 has two properties that cannot be merged: every cycle is a batch of two
    // requests, one of them for two registers.
    let props1 = vec![
        prop(
            "a",
            DataType::Int,
            json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
        ),
        prop(
            "b",
            DataType::Int,
            json!({"register": "HoldingRegister", "offset": 100, "limit": 2}),
        ),
    ];
    let s1 = spec(&driver, "unit-1", rtu_protocol(1, custom.clone()), props1);
    let s2 = devices(&driver, &[2], custom).remove(0);
    let mut d1 = driver.connect(&s1).await.unwrap();
    let mut d2 = driver.connect(&s2).await.unwrap();
    let batch: Vec<_> = s1.properties.iter().collect();
    let mut tick = tokio::time::interval(CYCLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    for _ in 0..3 {
        tick.tick().await;
        assert!(d1.read_many(&batch).await.iter().all(Result::is_ok));
    }

    // Unit 1 goes silent; both devices keep polling on their cycle.
    let saved = sim.0.lock().unwrap().units.remove(&1).unwrap();
    sim.clear_log();
    // It stays silent for the two timeouts that get it skipped and then three probes
    // (the old skip interval doubled meanwhile, to 8 s after the third), and comes back
    // right after the last one: the next probe decides how soon it is seen again.
    let silent_from = Instant::now();
    let dead_requests = || sim.log().iter().filter(|l| l.unit == 1).count();
    while dead_requests() < 2 + 3 {
        assert!(
            silent_from.elapsed() < Duration::from_secs(30),
            "{:?}",
            sim.log()
        );
        tick.tick().await;
        let got = d1.read_many(&batch).await;
        assert!(
            got.iter()
                .all(|r| matches!(r, Err(DriverError::Timeout(_)))),
            "{got:?}"
        );
        assert_eq!(d2.read(&s2.properties[0]).await.unwrap(), Value::Int(2));
    }
    let silent = silent_from.elapsed();
    let dead: Vec<_> = sim.log().into_iter().filter(|l| l.unit == 1).collect();
    println!("requests to the dead unit in {silent:?}: {dead:?}");

    // It comes back.
    sim.0.lock().unwrap().units.insert(1, saved);
    let back = Instant::now();
    let deadline = Duration::from_secs(20);
    loop {
        tick.tick().await;
        let got = d1.read_many(&batch).await;
        if got.iter().all(Result::is_ok) {
            break;
        }
        assert!(back.elapsed() < deadline, "still not read again: {got:?}");
    }
    let took = back.elapsed();
    println!("unit read again {} ms after it came back", took.as_millis());
    assert!(took < Duration::from_secs(3), "{took:?}");
    // While dead: the two timeouts that got it skipped, then at most one probe per
    // second (plus one for rounding), each of them one register.
    let probes = &dead[2.min(dead.len())..];
    assert!(dead.len() <= 2 + silent.as_secs() as usize + 1, "{dead:?}");
    assert!(probes.iter().all(|l| l.count == 1), "{probes:?}");
}
