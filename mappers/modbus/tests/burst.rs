//! A burst of 10,000 desired values for one property, delivered in order by a real
//! mosquitto: the register ends at the last value, the writes the device sees never go
//! backwards, and the burst collapses to far fewer writes than deltas (the latest value
//! per property wins; issue: desired values were reordered and the last one lost).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Sim, serve_tcp};
use mapper_sdk::config::ProfileSetting;
use mapper_sdk::testing::{InProcessMapper, Mosquitto, TwinPeer, test_settings, wait_until};
use modbus_mapper::ModbusDriver;

const DELTAS: u16 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_deltas_end_at_the_last_value_in_order_with_few_writes() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let peer = TwinPeer::connect(broker.port).await;
    let sim = Sim::with_units(&[1]);
    let addr = serve_tcp(&sim).await;
    let profile = serde_json::json!({
        "deviceInstances": [{"id": "burst", "name": "burst", "protocol": "modbus-burst", "model": "m",
            "twins": [{"propertyName": "setpoint"}],
            "propertyVisitors": [{"name": "setpoint", "propertyName": "setpoint", "modelName": "m", "protocol": "modbus",
                "collectCycle": 200_000_000i64, "reportCycle": 60_000_000_000i64,
                "visitorConfig": {"register": "HoldingRegister", "offset": 0, "limit": 1}}]}],
        "deviceModels": [{"name": "m", "properties": [{"name": "setpoint", "dataType": "int", "accessMode": "ReadWrite"}]}],
        "protocols": [{"name": "modbus-burst", "protocol": "modbus",
            "protocolConfig": {"slaveID": 1},
            "protocolCommonConfig": {"tcp": {"ip": addr.ip().to_string(), "port": addr.port()}}}]
    })
    .to_string();
    let mapper = InProcessMapper::start(
        ModbusDriver::new(),
        test_settings(&broker, "burst-test", ProfileSetting::Inline(profile)),
    );
    assert!(peer.wait_subscribed("burst", Duration::from_secs(20)).await);
    let start = Instant::now();
    for v in 1..=DELTAS {
        peer.send_delta("burst", &[("setpoint", &v.to_string())])
            .await;
    }
    let sent = start.elapsed();
    let done = wait_until(Duration::from_secs(60), || {
        sim.mem(1, |m| m.holding[0]) == DELTAS
    })
    .await;
    let took = start.elapsed();
    let written: Vec<u16> = sim.mem(1, |m| {
        m.written
            .iter()
            .filter(|(a, _)| *a == 0)
            .map(|(_, v)| *v)
            .collect()
    });
    eprintln!(
        "{DELTAS} deltas published in {sent:?}; register at the last value after {took:?} with {} writes",
        written.len()
    );
    assert!(
        done,
        "register 0 = {} (writes: {})",
        sim.mem(1, |m| m.holding[0]),
        written.len()
    );
    let backwards = written.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(
        backwards, 0,
        "{backwards} writes older than the write before"
    );
    assert_eq!(written.last(), Some(&DELTAS));
    assert!(
        written.len() < usize::from(DELTAS) / 2,
        "{} writes for {DELTAS} deltas: the burst did not collapse",
        written.len()
    );
    // The last value is also what the mapper reports.
    assert!(
        peer.wait(Duration::from_secs(20), |p| p
            .last_actual("burst", "setpoint")
            .as_deref()
            == Some("10000"))
            .await
    );
    mapper.stop().await;
}
