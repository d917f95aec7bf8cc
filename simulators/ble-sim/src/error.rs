//! Error types, one enum per concern.

use std::path::PathBuf;

/// A MAC address or UUID that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not six colon-separated hex bytes.
    #[error("invalid MAC address {0:?}: expected six hex bytes like AA:BB:CC:DD:EE:FF")]
    Mac(String),
    /// Not a 16-, 32- or 128-bit UUID.
    #[error(
        "invalid UUID {0:?}: expected 4 or 8 hex digits or a 128-bit UUID \
         like f000aa01-0451-4000-b000-000000000000"
    )]
    Uuid(String),
}

/// A device file that cannot be read or does not describe a valid simulation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read device file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for the device format.
    #[error("device file {origin}: {message}")]
    Yaml {
        /// File name (or `<inline>`).
        origin: String,
        /// Parser message, with line and column when known.
        message: String,
    },
    /// A field has a value the simulator cannot use.
    #[error("device file {origin}: {context}: field `{field}`: {reason}")]
    Invalid {
        /// File name (or `<inline>`).
        origin: String,
        /// Where in the file (`device A4:C1:..`, `adapter hci1`, ...).
        context: String,
        /// The field.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Failure to start, run or stop the private D-Bus daemon.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Temp dir, config file or socket clean-up failed.
    #[error("cannot prepare the private bus: {0}")]
    Io(#[from] std::io::Error),
    /// `dbus-daemon` could not be started.
    #[error("cannot start dbus-daemon (is the Debian package dbus-daemon installed?): {0}")]
    Spawn(std::io::Error),
    /// `dbus-daemon` exited or printed nothing usable.
    #[error("dbus-daemon did not report its address: {0}")]
    NoAddress(String),
}

/// Errors of the simulator's library API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The private bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A D-Bus operation failed (connecting, owning `org.bluez`, exporting objects).
    #[error("d-bus: {0}")]
    DBus(#[from] zbus::Error),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A MAC or UUID argument does not parse.
    #[error(transparent)]
    Id(#[from] IdError),
    /// No simulated device has this address.
    #[error("no simulated device with address {0}")]
    UnknownDevice(String),
    /// The device has no characteristic with this UUID.
    #[error("device {device} has no characteristic {uuid}")]
    UnknownCharacteristic {
        /// Device address.
        device: String,
        /// Characteristic UUID.
        uuid: String,
    },
}

/// Errors returned to D-Bus callers, named like BlueZ's (`org.bluez.Error.*`).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
pub enum BluezError {
    /// Transport-level failure inside zbus.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `org.bluez.Error.Failed`.
    Failed(String),
    /// `org.bluez.Error.NotPermitted`.
    NotPermitted(String),
    /// `org.bluez.Error.NotSupported`.
    NotSupported(String),
    /// `org.bluez.Error.NotReady`.
    NotReady(String),
    /// `org.bluez.Error.NotConnected`.
    NotConnected(String),
    /// `org.bluez.Error.InProgress`.
    InProgress(String),
    /// `org.bluez.Error.InvalidArguments`.
    InvalidArguments(String),
    /// `org.bluez.Error.InvalidOffset`.
    InvalidOffset(String),
    /// `org.bluez.Error.DoesNotExist`.
    DoesNotExist(String),
}
