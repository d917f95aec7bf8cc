//! An in-memory BLE stack for tests: [`FakeBle`] implements [`GattConnector`] over
//! peripherals held in memory, with BlueZ's habits (every read is echoed as a value change)
//! and switches for faults. Tests keep a clone to steer devices and inspect what the
//! driver did.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::MacAddr;
use crate::link::{CharFlags, GattConnector, GattLink, LinkError, LinkEvent, Target};

/// One characteristic of a fake peripheral.
#[derive(Debug, Clone, Default)]
pub struct FakeChar {
    /// Its properties.
    pub flags: CharFlags,
    /// Its current value.
    pub value: Vec<u8>,
    /// Fail reads and writes with this error.
    pub error: Option<LinkError>,
}

impl FakeChar {
    /// A characteristic with these flags and this value.
    pub fn new(flags: CharFlags, value: &[u8]) -> Self {
        Self {
            flags,
            value: value.to_vec(),
            error: None,
        }
    }
}

/// Flags from a BlueZ-style list: `read`, `write`, `write-without-response`, `notify`,
/// `indicate`.
pub fn flags(list: &[&str]) -> CharFlags {
    CharFlags {
        read: list.contains(&"read"),
        write: list.contains(&"write"),
        write_without_response: list.contains(&"write-without-response"),
        notify: list.contains(&"notify"),
        indicate: list.contains(&"indicate"),
    }
}

/// A fake peripheral and what happened to it.
#[derive(Debug, Default)]
pub struct FakePeripheral {
    /// Its characteristics.
    pub chars: BTreeMap<Uuid, FakeChar>,
    /// Refuse connects with this error.
    pub refuse_connect: Option<LinkError>,
    /// Echo every read as a value change, as BlueZ does (default true, see [`FakeBle::add`]).
    pub echo_reads: bool,
    /// Successful connects.
    pub connects: u32,
    /// Reads served.
    pub reads: u32,
    /// Writes applied: characteristic, bytes, with response.
    pub writes: Vec<(Uuid, Vec<u8>, bool)>,
    /// Subscriptions made, in order (one per subscribe call).
    pub subscriptions: Vec<Uuid>,
    /// Disconnect calls.
    pub disconnects: u32,
    generation: u64,
    connected: bool,
    events: Option<mpsc::UnboundedSender<LinkEvent>>,
}

/// The fake stack; cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct FakeBle {
    state: Arc<Mutex<HashMap<MacAddr, FakePeripheral>>>,
}

impl FakeBle {
    /// Adds (or replaces) a peripheral.
    pub fn add(&self, mac: MacAddr, chars: impl IntoIterator<Item = (Uuid, FakeChar)>) {
        let p = FakePeripheral {
            chars: chars.into_iter().collect(),
            echo_reads: true,
            ..FakePeripheral::default()
        };
        self.lock().insert(mac, p);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MacAddr, FakePeripheral>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a peripheral; `None` when there is no such peripheral.
    pub fn with<R>(&self, mac: MacAddr, f: impl FnOnce(&mut FakePeripheral) -> R) -> Option<R> {
        self.lock().get_mut(&mac).map(f)
    }

    /// Sets a characteristic value and sends it as a value change (a notification, for a
    /// subscribed characteristic). Returns whether a connection received it.
    pub fn notify(&self, mac: MacAddr, uuid: Uuid, value: &[u8]) -> bool {
        self.with(mac, |p| {
            if let Some(c) = p.chars.get_mut(&uuid) {
                c.value = value.to_vec();
            }
            p.events
                .as_ref()
                .is_some_and(|tx| tx.send(LinkEvent::Value(uuid, value.to_vec())).is_ok())
        })
        .unwrap_or(false)
    }

    /// Drops the connection as a radio link loss would.
    pub fn drop_link(&self, mac: MacAddr) {
        self.with(mac, |p| {
            p.connected = false;
            if let Some(tx) = p.events.take() {
                let _ = tx.send(LinkEvent::Disconnected);
            }
        });
    }

    /// Whether the peripheral is connected.
    pub fn is_connected(&self, mac: MacAddr) -> bool {
        self.with(mac, |p| p.connected).unwrap_or(false)
    }
}

/// A connection to a fake peripheral.
#[derive(Debug)]
pub struct FakeLink {
    mac: MacAddr,
    generation: u64,
    stack: FakeBle,
    chars: HashMap<Uuid, CharFlags>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

impl GattConnector for FakeBle {
    type Link = FakeLink;

    async fn connect(&self, target: &Target) -> Result<FakeLink, LinkError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (generation, chars) = self
            .with(target.mac, |p| {
                if let Some(e) = &p.refuse_connect {
                    return Err(e.clone());
                }
                p.connects += 1;
                p.generation += 1;
                p.connected = true;
                p.events = Some(tx);
                Ok((
                    p.generation,
                    p.chars.iter().map(|(u, c)| (*u, c.flags)).collect(),
                ))
            })
            .unwrap_or(Err(LinkError::NotFound(target.mac)))?;
        Ok(FakeLink {
            mac: target.mac,
            generation,
            stack: self.clone(),
            chars,
            events: rx,
        })
    }
}

impl FakeLink {
    fn on_peripheral<R>(
        &self,
        f: impl FnOnce(&mut FakePeripheral) -> Result<R, LinkError>,
    ) -> Result<R, LinkError> {
        let generation = self.generation;
        self.stack
            .with(self.mac, |p| {
                if !p.connected || p.generation != generation {
                    return Err(LinkError::Disconnected("not connected".into()));
                }
                f(p)
            })
            .unwrap_or_else(|| Err(LinkError::Disconnected("device removed".into())))
    }
}

impl GattLink for FakeLink {
    fn characteristic(&self, uuid: &Uuid) -> Option<CharFlags> {
        self.chars.get(uuid).copied()
    }

    async fn read(&mut self, uuid: &Uuid) -> Result<Vec<u8>, LinkError> {
        self.on_peripheral(|p| {
            let echo = p.echo_reads;
            let c = p
                .chars
                .get(uuid)
                .ok_or(LinkError::NoCharacteristic(*uuid))?;
            if let Some(e) = &c.error {
                return Err(e.clone());
            }
            if !c.flags.read {
                return Err(LinkError::Refused("read not permitted".into()));
            }
            let value = c.value.clone();
            p.reads += 1;
            if echo && let Some(tx) = &p.events {
                let _ = tx.send(LinkEvent::Value(*uuid, value.clone()));
            }
            Ok(value)
        })
    }

    async fn write(
        &mut self,
        uuid: &Uuid,
        data: &[u8],
        with_response: bool,
    ) -> Result<(), LinkError> {
        self.on_peripheral(|p| {
            let c = p
                .chars
                .get_mut(uuid)
                .ok_or(LinkError::NoCharacteristic(*uuid))?;
            if let Some(e) = &c.error {
                return Err(e.clone());
            }
            let allowed = if with_response {
                c.flags.write
            } else {
                c.flags.write_without_response
            };
            if !allowed {
                return Err(LinkError::Refused("write not permitted".into()));
            }
            c.value = data.to_vec();
            p.writes.push((*uuid, data.to_vec(), with_response));
            Ok(())
        })
    }

    async fn subscribe(&mut self, uuid: &Uuid) -> Result<(), LinkError> {
        self.on_peripheral(|p| {
            let c = p
                .chars
                .get(uuid)
                .ok_or(LinkError::NoCharacteristic(*uuid))?;
            if !c.flags.can_push() {
                return Err(LinkError::Refused("notify not supported".into()));
            }
            p.subscriptions.push(*uuid);
            Ok(())
        })
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    async fn is_connected(&mut self) -> bool {
        self.on_peripheral(|_| Ok(())).is_ok()
    }

    async fn disconnect(&mut self) {
        let _ = self.on_peripheral(|p| {
            p.disconnects += 1;
            p.connected = false;
            p.events = None;
            Ok(())
        });
    }
}
