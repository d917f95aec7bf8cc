//! Error types, one enum per concern.

use std::path::PathBuf;

use crate::table::TableKind;

/// A map file could not be read or is invalid. Messages name the file, the
/// endpoint, the unit and the field.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file could not be read.
    #[error("cannot read map file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the map format.
    #[error("{origin}: {message}")]
    Yaml {
        /// File name (or `<string>`).
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The YAML parses but a field is invalid.
    #[error("{origin}: {location}: {message}")]
    Invalid {
        /// File name (or `<string>`).
        origin: String,
        /// Where: endpoint, unit, field.
        location: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A runtime operation on the simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No unit with this id is configured.
    #[error("unit {unit} is not configured in this simulator")]
    UnknownUnit {
        /// The unit id.
        unit: u8,
    },
    /// The address range is not (entirely) mapped.
    #[error("unit {unit}: {table} {addr}..{end} is not mapped", end = u32::from(*addr) + u32::try_from(*count).unwrap_or(u32::MAX))]
    Unmapped {
        /// The unit id.
        unit: u8,
        /// The table.
        table: TableKind,
        /// First address.
        addr: u16,
        /// Number of items.
        count: usize,
    },
    /// A register table was used with a bit operation or the reverse.
    #[error("{table} holds {kind}; use the matching read/write function")]
    WrongTable {
        /// The table.
        table: TableKind,
        /// "bits" or "registers".
        kind: &'static str,
    },
    /// No typed value with this name exists in the unit.
    #[error("unit {unit} has no value named `{name}`")]
    UnknownValue {
        /// The unit id.
        unit: u8,
        /// The name.
        name: String,
    },
    /// A typed value could not be encoded or decoded.
    #[error("unit {unit}, value `{name}`: {message}")]
    Value {
        /// The unit id.
        unit: u8,
        /// The name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A TCP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A serial port or pty could not be opened.
    #[error("cannot open serial port {path}: {source}")]
    Serial {
        /// The path (or `pty pair`).
        path: String,
        /// The serial error.
        source: tokio_serial::Error,
    },
}
