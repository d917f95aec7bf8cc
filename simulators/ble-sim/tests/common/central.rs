//! btleplug helpers shared by the scenarios that drive the simulator as a
//! BLE central would.
#![allow(dead_code, clippy::unwrap_used)]

use std::pin::Pin;
use std::time::Duration;

use btleplug::api::{
    Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ValueNotification,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use futures::{Stream, StreamExt};
use tokio::time::timeout;

/// A btleplug event stream.
pub type Events<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// Deadline of one step of a scenario.
pub const STEP: Duration = Duration::from_secs(10);

/// The adapter whose `adapter_info` starts with `name` (BlueZ's order is not stable).
pub async fn adapter_named(manager: &Manager, name: &str) -> Adapter {
    let mut found = None;
    for a in manager.adapters().await.unwrap() {
        let info = a.adapter_info().await.unwrap();
        if info.split_whitespace().next() == Some(name) {
            found = Some(a);
        }
    }
    found.unwrap_or_else(|| panic!("no adapter named {name}"))
}

pub async fn peripheral_by_mac(adapter: &Adapter, mac: &str) -> Option<Peripheral> {
    adapter
        .peripherals()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.address().to_string() == mac)
}

pub fn characteristic(p: &Peripheral, uuid: &str) -> Characteristic {
    p.characteristics()
        .into_iter()
        .find(|c| c.uuid.to_string() == uuid)
        .unwrap_or_else(|| panic!("characteristic {uuid} not discovered"))
}

/// Wait (with a deadline) for the next notification of `uuid`, skipping others.
pub async fn next_value(stream: &mut Events<ValueNotification>, uuid: &str) -> Vec<u8> {
    timeout(STEP, async {
        loop {
            let n = stream.next().await.expect("notification stream ended");
            if n.uuid.to_string() == uuid {
                return n.value;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no notification of {uuid} within {STEP:?}"))
}

/// Wait for a central event matching `pred`.
pub async fn wait_event(
    events: &mut Events<CentralEvent>,
    what: &str,
    pred: impl Fn(&CentralEvent) -> bool,
) {
    timeout(STEP, async {
        loop {
            let e = events.next().await.expect("central event stream ended");
            if pred(&e) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} event within {STEP:?}"))
}
