//! The narrow interface between the mapper logic and a BLE stack.
//!
//! [`GattConnector`] finds and connects a device; the [`GattLink`] it returns is one
//! connection with its services discovered (and cached for the connection's lifetime).
//! The driver ([`crate::driver`]) only talks to these traits, so scheduling, conversion,
//! notification filtering and write mapping are tested with [`crate::fake`] without D-Bus;
//! [`crate::btle`] implements them on btleplug.

use std::future::Future;
use std::time::Duration;

use mapper_sdk::driver::DriverError;
use thiserror::Error;
use uuid::Uuid;

use crate::config::MacAddr;

/// What to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The device address.
    pub mac: MacAddr,
    /// The adapter name; `None`: the first adapter in name order.
    pub adapter: Option<String>,
    /// Scan + connect + discovery must finish within this.
    pub timeout: Duration,
}

/// The characteristic properties the mapper uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CharFlags {
    /// Readable.
    pub read: bool,
    /// Writable with response.
    pub write: bool,
    /// Writable without response.
    pub write_without_response: bool,
    /// Can notify.
    pub notify: bool,
    /// Can indicate.
    pub indicate: bool,
}

impl CharFlags {
    /// Whether the characteristic can push values.
    pub fn can_push(self) -> bool {
        self.notify || self.indicate
    }
}

/// Something that arrived on a connection by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A characteristic value changed (a notification, an indication, or the echo of a
    /// read: BlueZ reports every read value as a change too).
    Value(Uuid, Vec<u8>),
    /// The connection is gone.
    Disconnected,
}

/// A BLE stack error, classified for the SDK.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// No usable adapter.
    #[error("bluetooth adapter: {0}")]
    Adapter(String),
    /// The device was not found (scan) in time.
    #[error("device {0} not found")]
    NotFound(MacAddr),
    /// The connection is gone or could not be made.
    #[error("{0}")]
    Disconnected(String),
    /// An operation took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The device refused the operation (e.g. not permitted).
    #[error("{0}")]
    Refused(String),
    /// The characteristic is not on the device (after discovery).
    #[error("characteristic {0} not found on the device; check characteristicUUID")]
    NoCharacteristic(Uuid),
}

impl From<LinkError> for DriverError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Adapter(_) | LinkError::NotFound(_) | LinkError::Disconnected(_) => {
                Self::Link(e.to_string())
            }
            LinkError::Timeout(_) => Self::Timeout(e.to_string()),
            LinkError::Refused(_) => Self::Refused(e.to_string()),
            LinkError::NoCharacteristic(_) => Self::Invalid(e.to_string()),
        }
    }
}

/// Finds and connects devices. Shared by all devices of a driver.
pub trait GattConnector: Send + Sync + 'static {
    /// A connection.
    type Link: GattLink;

    /// Finds the device (scanning when the stack does not know it yet), connects, and
    /// discovers its services, all within `target.timeout`.
    fn connect(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::Link, LinkError>> + Send;
}

/// One connection with its services discovered.
pub trait GattLink: Send + 'static {
    /// The flags of a discovered characteristic (cached for the connection); `None` when
    /// the device has no such characteristic.
    fn characteristic(&self, uuid: &Uuid) -> Option<CharFlags>;

    /// Reads a characteristic value.
    fn read(&mut self, uuid: &Uuid) -> impl Future<Output = Result<Vec<u8>, LinkError>> + Send;

    /// Writes a characteristic value, with or without response.
    fn write(
        &mut self,
        uuid: &Uuid,
        data: &[u8],
        with_response: bool,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Enables notifications (or indications) of a characteristic.
    fn subscribe(&mut self, uuid: &Uuid) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// The next event. Cancel-safe: dropping the future loses nothing. `None` when the
    /// stack stopped delivering events (treated as a lost link).
    fn next_event(&mut self) -> impl Future<Output = Option<LinkEvent>> + Send;

    /// Whether the connection is up, as far as the stack knows.
    fn is_connected(&mut self) -> impl Future<Output = bool> + Send;

    /// Disconnects (best effort).
    fn disconnect(&mut self) -> impl Future<Output = ()> + Send;
}
