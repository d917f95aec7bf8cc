//! The driver against an in-process Modbus TCP server.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use mapper_sdk::driver::{Device, Driver, DriverError, PropertySpec};
use mapper_sdk::model::{DataType, Value};
use modbus_mapper::{ModbusDriver, ModbusVisitor};
use serde_json::json;

fn f32_words(f: f32) -> [u16; 2] {
    let b = f.to_bits();
    [(b >> 16) as u16, b as u16]
}

fn f64_words(f: f64) -> [u16; 4] {
    let b = f.to_bits();
    [
        (b >> 48) as u16,
        (b >> 32) as u16,
        (b >> 16) as u16,
        b as u16,
    ]
}

/// Properties covering every table and raw type, with the values the memory below holds.
fn catalogue() -> Vec<(mapper_sdk::profile::PropertyDef, Value)> {
    use DataType::*;
    vec![
        (
            prop(
                "i16",
                Int,
                json!({"register": "HoldingRegister", "offset": 0, "limit": 1}),
            ),
            Value::Int(-5),
        ),
        (
            prop(
                "u16",
                Int,
                json!({"register": "HoldingRegister", "offset": 1, "limit": 1, "rawType": "uint16"}),
            ),
            Value::Int(65535),
        ),
        (
            prop(
                "i32",
                Int,
                json!({"register": "HoldingRegister", "offset": 2, "limit": 2}),
            ),
            Value::Int(-100_000),
        ),
        (
            prop(
                "u32",
                Int,
                json!({"register": "HoldingRegister", "offset": 4, "rawType": "uint32"}),
            ),
            Value::Int(4_000_000_000),
        ),
        (
            prop(
                "i64",
                Int,
                json!({"register": "HoldingRegister", "offset": 6, "limit": 4}),
            ),
            Value::Int(-1_234_567_890_123),
        ),
        (
            prop(
                "u64",
                Int,
                json!({"register": "HoldingRegister", "offset": 10, "rawType": "uint64"}),
            ),
            Value::UInt(u64::MAX),
        ),
        (
            prop(
                "f32",
                Float,
                json!({"register": "HoldingRegister", "offset": 14, "limit": 2}),
            ),
            Value::Float(21.1),
        ),
        (
            prop(
                "f64",
                Double,
                json!({"register": "HoldingRegister", "offset": 16, "limit": 4}),
            ),
            Value::Float(-0.1),
        ),
        (
            prop(
                "scaled",
                Float,
                json!({"register": "HoldingRegister", "offset": 20, "limit": 1, "scale": 0.1}),
            ),
            Value::Float(21.5),
        ),
        (
            prop(
                "offset",
                Float,
                json!({"register": "HoldingRegister", "offset": 21, "limit": 1, "scale": 0.1, "offsetValue": -40}),
            ),
            Value::Float(21.5),
        ),
        (
            prop(
                "text",
                String,
                json!({"register": "HoldingRegister", "offset": 30, "limit": 4}),
            ),
            Value::String("HELLO".into()),
        ),
        (
            prop(
                "flag",
                Boolean,
                json!({"register": "HoldingRegister", "offset": 40, "limit": 1}),
            ),
            Value::Bool(true),
        ),
        (
            prop(
                "bit3",
                Boolean,
                json!({"register": "HoldingRegister", "offset": 41, "rawType": "bit", "bit": 3}),
            ),
            Value::Bool(true),
        ),
        (
            prop(
                "f32ws",
                Float,
                json!({"register": "HoldingRegister", "offset": 50, "limit": 2, "isRegisterSwap": true}),
            ),
            Value::Float(-3.75),
        ),
        (
            prop(
                "u16bs",
                Int,
                json!({"register": "HoldingRegister", "offset": 52, "limit": 1, "isSwap": true, "rawType": "uint16"}),
            ),
            Value::Int(0x1234),
        ),
        (
            prop(
                "raw",
                Bytes,
                json!({"register": "HoldingRegister", "offset": 54, "limit": 2}),
            ),
            Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        (
            prop(
                "input",
                Int,
                json!({"register": "InputRegister", "offset": 60, "limit": 1}),
            ),
            Value::Int(1234),
        ),
        (
            prop(
                "coil",
                Boolean,
                json!({"register": "CoilRegister", "offset": 5, "limit": 1}),
            ),
            Value::Bool(true),
        ),
        (
            prop(
                "coilbits",
                Int,
                json!({"register": "coil", "offset": 6, "limit": 3}),
            ),
            Value::Int(0b101),
        ),
        (
            prop(
                "discrete",
                Boolean,
                json!({"register": "DiscreteInputRegister", "offset": 7, "limit": 1}),
            ),
            Value::Bool(true),
        ),
    ]
}

fn fill(m: &mut Memory) {
    m.holding[0] = (-5i16) as u16;
    m.holding[1] = 0xFFFF;
    let v = (-100_000i32) as u32;
    m.holding[2..4].copy_from_slice(&[(v >> 16) as u16, v as u16]);
    let v = 4_000_000_000u32;
    m.holding[4..6].copy_from_slice(&[(v >> 16) as u16, v as u16]);
    let v = (-1_234_567_890_123i64) as u64;
    m.holding[6..10].copy_from_slice(&[
        (v >> 48) as u16,
        (v >> 32) as u16,
        (v >> 16) as u16,
        v as u16,
    ]);
    m.holding[10..14].copy_from_slice(&[0xFFFF; 4]);
    m.holding[14..16].copy_from_slice(&f32_words(21.1));
    m.holding[16..20].copy_from_slice(&f64_words(-0.1));
    m.holding[20] = 215;
    m.holding[21] = 615;
    m.holding[30..34].copy_from_slice(&[0x4845, 0x4C4C, 0x4F00, 0x0000]);
    m.holding[40] = 0x0001;
    m.holding[41] = 0b1000;
    let w = f32_words(-3.75);
    m.holding[50..52].copy_from_slice(&[w[1], w[0]]);
    m.holding[52] = 0x3412;
    m.holding[54..56].copy_from_slice(&[0xdead, 0xbeef]);
    m.input[60] = 1234;
    m.coils[5] = true;
    m.coils[6] = true;
    m.coils[8] = true;
    m.discrete[7] = true;
}

async fn setup(
    extra: serde_json::Value,
) -> (
    Sim,
    ModbusDriver,
    mapper_sdk::driver::DeviceSpec<ModbusDriver>,
) {
    let sim = Sim::with_units(&[1]);
    sim.mem(1, fill);
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let props = catalogue().into_iter().map(|(p, _)| p).collect();
    let spec = spec(&driver, "dev", tcp_protocol(addr, 1, extra), props);
    (sim, driver, spec)
}

#[tokio::test]
async fn decodes_every_table_and_type_exactly() {
    let (_sim, driver, spec) = setup(json!({})).await;
    let mut dev = driver.connect(&spec).await.unwrap();
    let expected: Vec<Value> = catalogue().into_iter().map(|(_, v)| v).collect();
    for (p, want) in spec.properties.iter().zip(&expected) {
        assert_eq!(&dev.read(p).await.unwrap(), want, "read {}", p.def.name);
    }
    let all: Vec<&PropertySpec<ModbusVisitor>> = spec.properties.iter().collect();
    let got = dev.read_many(&all).await;
    for ((p, got), want) in spec.properties.iter().zip(got).zip(&expected) {
        assert_eq!(&got.unwrap(), want, "read_many {}", p.def.name);
    }
}

#[tokio::test]
async fn coalescing_cuts_the_request_count() {
    let (sim, driver, spec) = setup(json!({})).await;
    let mut dev = driver.connect(&spec).await.unwrap();
    let all: Vec<&PropertySpec<ModbusVisitor>> = spec.properties.iter().collect();

    sim.clear_log();
    for p in &all {
        dev.read(p).await.unwrap();
    }
    let one_by_one = sim.requests();

    sim.clear_log();
    let r = dev.read_many(&all).await;
    assert!(r.iter().all(Result::is_ok));
    let merged = sim.requests();
    eprintln!(
        "{} properties: {one_by_one} requests one by one, {merged} coalesced",
        all.len()
    );
    assert_eq!(one_by_one, all.len());
    // holding 0..22, 30..34, 40..42, 50..53, 54..56 (gaps, maxGap 0), input, coils 5..9,
    // discrete
    assert_eq!(merged, 8, "{:?}", sim.log());

    // maxGap 10 reads through the holding gaps: holding 0..56 in one request.
    let (sim, driver, spec) = setup(json!({"maxGap": 10})).await;
    let mut dev = driver.connect(&spec).await.unwrap();
    let all: Vec<&PropertySpec<ModbusVisitor>> = spec.properties.iter().collect();
    sim.clear_log();
    assert!(dev.read_many(&all).await.iter().all(Result::is_ok));
    assert_eq!(sim.requests(), 4, "{:?}", sim.log());

    // The opt-out sends one request per property.
    let (sim, driver, spec) = setup(json!({"singleRequestPerProperty": true})).await;
    let mut dev = driver.connect(&spec).await.unwrap();
    let all: Vec<&PropertySpec<ModbusVisitor>> = spec.properties.iter().collect();
    sim.clear_log();
    assert!(dev.read_many(&all).await.iter().all(Result::is_ok));
    assert_eq!(sim.requests(), all.len());
}

#[tokio::test]
async fn ten_contiguous_registers_take_one_request() {
    let sim = Sim::with_units(&[1]);
    sim.mem(1, |m| {
        (0..10).for_each(|i| m.holding[100 + i] = i as u16 * 10)
    });
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let props = (0..10)
        .map(|i| {
            prop(
                &format!("r{i}"),
                DataType::Int,
                json!({"register": "holding", "offset": 100 + i, "limit": 1}),
            )
        })
        .collect();
    let spec = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), props);
    let mut dev = driver.connect(&spec).await.unwrap();
    let all: Vec<_> = spec.properties.iter().collect();
    sim.clear_log();
    let got = dev.read_many(&all).await;
    assert_eq!(
        got.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        (0..10).map(|i| Value::Int(i * 10)).collect::<Vec<_>>()
    );
    assert_eq!(
        sim.log(),
        vec![Logged {
            unit: 1,
            fc: 3,
            addr: 100,
            count: 10
        }]
    );
}

#[tokio::test]
async fn writes_land_in_the_right_registers() {
    use DataType::*;
    let sim = Sim::with_units(&[1]);
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let cases: Vec<(mapper_sdk::profile::PropertyDef, Value, u8)> = vec![
        (
            prop(
                "i16",
                Int,
                json!({"register": "holding", "offset": 100, "limit": 1}),
            ),
            Value::Int(-2),
            6,
        ),
        (
            prop(
                "u32",
                Int,
                json!({"register": "holding", "offset": 101, "rawType": "uint32"}),
            ),
            Value::Int(70000),
            16,
        ),
        (
            prop(
                "i64",
                Int,
                json!({"register": "holding", "offset": 103, "limit": 4, "isRegisterSwap": true}),
            ),
            Value::Int(-2),
            16,
        ),
        (
            prop(
                "f32",
                Float,
                json!({"register": "holding", "offset": 107, "limit": 2, "isRegisterSwap": true}),
            ),
            Value::Float(21.1),
            16,
        ),
        (
            prop(
                "f64",
                Double,
                json!({"register": "holding", "offset": 109, "limit": 4}),
            ),
            Value::Float(1.5),
            16,
        ),
        (
            prop(
                "scaled",
                Float,
                json!({"register": "holding", "offset": 113, "limit": 1, "scale": 0.1}),
            ),
            Value::Float(21.5),
            6,
        ),
        (
            prop(
                "offs",
                Float,
                json!({"register": "holding", "offset": 114, "limit": 1, "scale": 0.1, "offsetValue": -40}),
            ),
            Value::Float(-12.5),
            6,
        ),
        (
            prop(
                "text",
                String,
                json!({"register": "holding", "offset": 115, "limit": 3, "isSwap": true}),
            ),
            Value::String("ABC".into()),
            16,
        ),
        (
            prop(
                "flag",
                Boolean,
                json!({"register": "holding", "offset": 118, "limit": 1}),
            ),
            Value::Bool(true),
            6,
        ),
        (
            prop(
                "bit",
                Boolean,
                json!({"register": "holding", "offset": 119, "rawType": "bit", "bit": 2}),
            ),
            Value::Bool(true),
            22,
        ),
        (
            prop(
                "bytes",
                Bytes,
                json!({"register": "holding", "offset": 120, "limit": 1}),
            ),
            Value::Bytes(vec![1, 2]),
            6,
        ),
        (
            prop(
                "coil",
                Boolean,
                json!({"register": "coil", "offset": 10, "limit": 1}),
            ),
            Value::Bool(true),
            5,
        ),
        (
            prop(
                "coils",
                Int,
                json!({"register": "coil", "offset": 11, "limit": 3}),
            ),
            Value::Int(0b110),
            15,
        ),
    ];
    let props = cases.iter().map(|(p, _, _)| p.clone()).collect();
    let spec = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), props);
    let mut dev = driver.connect(&spec).await.unwrap();
    sim.mem(1, |m| m.holding[119] = 0b1001);
    for (p, (_, value, fc)) in spec.properties.iter().zip(&cases) {
        sim.clear_log();
        dev.write(p, value).await.unwrap();
        let log = sim.log();
        assert_eq!(log.len(), 1, "{}", p.def.name);
        assert_eq!(log[0].fc, *fc, "function code for {}", p.def.name);
        assert_eq!(log[0].addr, p.visitor.offset);
        assert_eq!(
            &dev.read(p).await.unwrap(),
            value,
            "read back {}",
            p.def.name
        );
    }
    let m = sim.mem(1, |m| m.clone());
    assert_eq!(m.holding[100], 0xFFFE);
    assert_eq!(&m.holding[101..103], &[0x0001, 0x1170]);
    assert_eq!(&m.holding[103..107], &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]);
    let w = f32_words(21.1);
    assert_eq!(&m.holding[107..109], &[w[1], w[0]]);
    assert_eq!(&m.holding[109..113], &f64_words(1.5));
    assert_eq!(m.holding[113], 215);
    assert_eq!(m.holding[114], 275);
    assert_eq!(&m.holding[115..118], &[0x4241, 0x0043, 0x0000]);
    assert_eq!(m.holding[118], 1);
    assert_eq!(m.holding[119], 0b1101, "only bit 2 changed");
    assert_eq!(m.holding[120], 0x0102);
    assert_eq!(&m.coils[10..14], &[true, false, true, true]);
}

#[tokio::test]
async fn refused_writes_send_nothing() {
    let sim = Sim::with_units(&[1]);
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let props = vec![
        prop(
            "in",
            DataType::Int,
            json!({"register": "InputRegister", "offset": 1, "limit": 1}),
        ),
        prop(
            "di",
            DataType::Boolean,
            json!({"register": "DiscreteInputRegister", "offset": 1}),
        ),
        prop(
            "i16",
            DataType::Int,
            json!({"register": "holding", "offset": 1, "limit": 1}),
        ),
        prop(
            "scaled",
            DataType::Float,
            json!({"register": "holding", "offset": 2, "limit": 1, "scale": 0.1}),
        ),
    ];
    let spec = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), props);
    let mut dev = driver.connect(&spec).await.unwrap();
    sim.clear_log();
    let e = dev
        .write(&spec.properties[0], &Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Invalid(m) if m.contains("read-only")),
        "{e}"
    );
    let e = dev
        .write(&spec.properties[1], &Value::Bool(true))
        .await
        .unwrap_err();
    assert!(matches!(e, DriverError::Invalid(_)), "{e}");
    let e = dev
        .write(&spec.properties[2], &Value::Int(70000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Invalid(m) if m.contains("does not fit int16")),
        "{e}"
    );
    let e = dev
        .write(&spec.properties[3], &Value::Float(21.55))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Invalid(m) if m.contains("not an integer")),
        "{e}"
    );
    assert_eq!(sim.requests(), 0);
}

#[tokio::test]
async fn exception_is_refused_and_keeps_the_connection() {
    let sim = Sim::with_units(&[1]);
    sim.0.lock().unwrap().unmapped.insert(2);
    sim.mem(1, |m| {
        m.holding[0] = 7;
        m.holding[4] = 9;
    });
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let props = vec![
        prop(
            "a",
            DataType::Int,
            json!({"register": "holding", "offset": 0, "limit": 1}),
        ),
        prop(
            "b",
            DataType::Int,
            json!({"register": "holding", "offset": 4, "limit": 1}),
        ),
        prop(
            "hole",
            DataType::Int,
            json!({"register": "holding", "offset": 2, "limit": 1}),
        ),
    ];
    let spec = spec(
        &driver,
        "dev",
        tcp_protocol(addr, 1, json!({"maxGap": 5})),
        props,
    );
    let mut dev = driver.connect(&spec).await.unwrap();
    let e = dev.read(&spec.properties[2]).await.unwrap_err();
    assert!(
        matches!(&e, DriverError::Refused(m) if m.contains("0x02")),
        "{e}"
    );
    assert_eq!(dev.read(&spec.properties[0]).await.unwrap(), Value::Int(7));

    // A merged read over the unmapped address is refused; the driver falls back to
    // reading each property alone, so a and b still report.
    sim.clear_log();
    let got = dev
        .read_many(&[&spec.properties[0], &spec.properties[1]])
        .await;
    assert_eq!(got[0], Ok(Value::Int(7)));
    assert_eq!(got[1], Ok(Value::Int(9)));
    assert_eq!(sim.requests(), 3, "{:?}", sim.log());
    assert_eq!(sim.connections(), 1, "an exception must not reconnect");
}

#[tokio::test]
async fn devices_share_one_bus_per_endpoint_and_it_ends_with_them() {
    let sim = Sim::with_units(&[1, 2]);
    sim.mem(1, |m| m.holding[0] = 11);
    sim.mem(2, |m| m.holding[0] = 22);
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let p = || {
        vec![prop(
            "v",
            DataType::Int,
            json!({"register": "holding", "offset": 0, "limit": 1}),
        )]
    };
    let s1 = spec(&driver, "one", tcp_protocol(addr, 1, json!({})), p());
    let s2 = spec(&driver, "two", tcp_protocol(addr, 2, json!({})), p());
    let mut d1 = driver.connect(&s1).await.unwrap();
    let mut d2 = driver.connect(&s2).await.unwrap();
    assert_eq!(driver.live_buses(), 1);
    assert_eq!(d1.read(&s1.properties[0]).await.unwrap(), Value::Int(11));
    assert_eq!(d2.read(&s2.properties[0]).await.unwrap(), Value::Int(22));
    assert_eq!(sim.connections(), 1);
    drop(d1);
    assert_eq!(driver.live_buses(), 1);
    drop(d2);
    assert_eq!(driver.live_buses(), 0);
    // A new device starts a new bus (and connection).
    let mut d1 = driver.connect(&s1).await.unwrap();
    assert_eq!(d1.read(&s1.properties[0]).await.unwrap(), Value::Int(11));
    assert!(eventually(Duration::from_secs(5), || sim.connections() == 2).await);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_link_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let driver = ModbusDriver::new();
    let s = spec(&driver, "dev", tcp_protocol(addr, 1, json!({})), vec![]);
    let e = driver.connect(&s).await.unwrap_err();
    assert!(e.is_link(), "{e}");
}

#[tokio::test]
async fn tcp_timeout_reconnects_and_never_uses_the_late_reply() {
    let sim = Sim::with_units(&[1]);
    sim.mem(1, |m| m.holding[0] = 111);
    sim.delay_next(1, Duration::from_millis(300));
    let addr = serve_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let props = vec![prop(
        "v",
        DataType::Int,
        json!({"register": "holding", "offset": 0, "limit": 1}),
    )];
    let s = spec(
        &driver,
        "dev",
        tcp_protocol(addr, 1, json!({"collectTimeout": 100})),
        props,
    );
    let mut dev = driver.connect(&s).await.unwrap();
    let e = dev.read(&s.properties[0]).await.unwrap_err();
    assert!(matches!(e, DriverError::Timeout(_)), "{e}");
    sim.mem(1, |m| m.holding[0] = 222);
    assert_eq!(dev.read(&s.properties[0]).await.unwrap(), Value::Int(222));
    assert_eq!(sim.connections(), 2, "the timed-out connection is replaced");
}

#[tokio::test]
async fn rtu_over_tcp_gateway() {
    let sim = Sim::with_units(&[4, 5]);
    sim.mem(4, |m| m.holding[3] = 44);
    sim.mem(5, |m| m.holding[3] = 55);
    let addr = serve_rtu_over_tcp(&sim).await;
    let driver = ModbusDriver::new();
    let p = || {
        vec![prop(
            "v",
            DataType::Int,
            json!({"register": "holding", "offset": 3, "limit": 1}),
        )]
    };
    let s4 = spec(
        &driver,
        "a",
        tcp_protocol(addr, 4, json!({"transport": "rtu-over-tcp"})),
        p(),
    );
    let s5 = spec(
        &driver,
        "b",
        tcp_protocol(addr, 5, json!({"transport": "rtu-over-tcp"})),
        p(),
    );
    let mut d4 = driver.connect(&s4).await.unwrap();
    let mut d5 = driver.connect(&s5).await.unwrap();
    assert_eq!(d4.read(&s4.properties[0]).await.unwrap(), Value::Int(44));
    assert_eq!(d5.read(&s5.properties[0]).await.unwrap(), Value::Int(55));
    assert_eq!(driver.live_buses(), 1);
    // Modbus TCP framing on the same endpoint is refused: one endpoint, one framing.
    let s_tcp = spec(&driver, "c", tcp_protocol(addr, 6, json!({})), p());
    assert!(matches!(
        driver.connect(&s_tcp).await,
        Err(DriverError::Invalid(_))
    ));
}

#[tokio::test]
async fn resolves_a_kubeedge_profile_and_reads_it() {
    let sim = Sim::with_units(&[1]);
    sim.mem(1, |m| {
        m.holding[0] = 215;
        m.coils[2] = true;
    });
    let addr = serve_tcp(&sim).await;
    let profile = json!({
        "deviceInstances": [{
            "id": "thermo-1", "name": "thermo-1", "protocol": "modbus-thermo-1", "model": "thermo",
            "twins": [{"propertyName": "temperature", "desired": {"value": "0", "metadata": {"type": "float"}}}],
            "propertyVisitors": [
                {"name": "temperature", "propertyName": "temperature", "modelName": "thermo", "protocol": "modbus",
                 "visitorConfig": {"register": "HoldingRegister", "offset": 0, "limit": 1, "scale": 0.1}},
                {"name": "enabled", "propertyName": "enabled", "modelName": "thermo", "protocol": "modbus",
                 "visitorConfig": {"register": "CoilRegister", "offset": 2, "limit": 1}}
            ]
        }],
        "deviceModels": [{"name": "thermo", "properties": [
            {"name": "temperature", "dataType": "float", "accessMode": "ReadWrite"},
            {"name": "enabled", "dataType": "boolean", "accessMode": "ReadWrite"}
        ]}],
        "protocols": [{"name": "modbus-thermo-1", "protocol": "modbus", "protocolConfig": {"slaveID": 1},
            "protocolCommonConfig": {"tcp": {"ip": "127.0.0.1", "port": addr.port()}, "collectTimeout": 500}}]
    });
    let resolved = mapper_sdk::profile::resolve(&profile.to_string(), &Default::default());
    assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
    let driver = ModbusDriver::new();
    let def = resolved.devices.into_iter().next().unwrap();
    let (s, issues) = mapper_sdk::driver::bind(&driver, def).unwrap().unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let mut dev = driver.connect(&s).await.unwrap();
    let all: Vec<_> = s.properties.iter().collect();
    let got = dev.read_many(&all).await;
    assert_eq!(got, vec![Ok(Value::Float(21.5)), Ok(Value::Bool(true))]);
}
