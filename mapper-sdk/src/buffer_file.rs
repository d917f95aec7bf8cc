//! The store-and-forward buffer on disk (`mqtt.bufferFile`), so that reports the broker
//! has not received survive a mapper restart.
//!
//! JSON, written to a temporary file next to the target and renamed over it (a reader
//! sees the old or the new file, never half of one). An empty buffer removes the file.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::buffer::{Entry, Item};
use crate::model::{DataType, DeviceId, DeviceState, PropertyName};
use crate::twin::Reported;

/// The format version written; other versions are refused.
const VERSION: u32 = 1;

/// Files larger than this are refused on load (far above 10000 reports).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Why the buffer file could not be read or written.
#[derive(Debug, Error)]
pub enum BufferFileError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a buffer this version wrote.
    #[error("{path}: not a buffer file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    entries: Vec<Stored>,
}

#[derive(Serialize, Deserialize)]
struct StoredValue {
    property: String,
    value: String,
    #[serde(rename = "type")]
    data_type: DataType,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Stored {
    Twin {
        at: i64,
        device: String,
        values: Vec<StoredValue>,
    },
    Data {
        at: i64,
        device: String,
        topic: String,
        values: Vec<StoredValue>,
    },
    State {
        at: i64,
        device: String,
        online: bool,
    },
    Raw {
        at: i64,
        topic: String,
        qos: u8,
        payload: String,
    },
}

fn store_values(values: &[Reported]) -> Vec<StoredValue> {
    values
        .iter()
        .map(|r| StoredValue {
            property: r.property.0.clone(),
            value: r.value.clone(),
            data_type: r.data_type,
        })
        .collect()
}

fn load_values(values: Vec<StoredValue>) -> Vec<Reported> {
    values
        .into_iter()
        .map(|v| Reported {
            property: PropertyName(v.property),
            value: v.value,
            data_type: v.data_type,
        })
        .collect()
}

fn to_stored(e: &Entry) -> Option<Stored> {
    let at = e.at;
    Some(match &e.item {
        Item::Twin { device, values } => Stored::Twin {
            at,
            device: device.0.clone(),
            values: store_values(values),
        },
        Item::Data {
            device,
            topic,
            values,
        } => Stored::Data {
            at,
            device: device.0.clone(),
            topic: topic.clone(),
            values: store_values(values),
        },
        Item::State { device, state } => Stored::State {
            at,
            device: device.0.clone(),
            online: *state == DeviceState::Online,
        },
        // The mapper's payloads are JSON text; anything else is not kept.
        Item::Raw {
            topic,
            qos,
            payload,
        } => Stored::Raw {
            at,
            topic: topic.clone(),
            qos: *qos,
            payload: String::from_utf8(payload.clone()).ok()?,
        },
    })
}

fn from_stored(s: Stored) -> Entry {
    match s {
        Stored::Twin { at, device, values } => Entry {
            at,
            item: Item::Twin {
                device: DeviceId(device),
                values: load_values(values),
            },
        },
        Stored::Data {
            at,
            device,
            topic,
            values,
        } => Entry {
            at,
            item: Item::Data {
                device: DeviceId(device),
                topic,
                values: load_values(values),
            },
        },
        Stored::State { at, device, online } => Entry {
            at,
            item: Item::State {
                device: DeviceId(device),
                state: if online {
                    DeviceState::Online
                } else {
                    DeviceState::Offline
                },
            },
        },
        Stored::Raw {
            at,
            topic,
            qos,
            payload,
        } => Entry {
            at,
            item: Item::Raw {
                topic,
                qos,
                payload: payload.into_bytes(),
            },
        },
    }
}

/// Writes `entries` to `path` atomically; with no entries, removes the file.
pub fn save<'a>(
    path: &Path,
    entries: impl Iterator<Item = &'a Entry>,
) -> Result<(), BufferFileError> {
    let io_err = |source| BufferFileError::Io {
        path: path.to_owned(),
        source,
    };
    let entries: Vec<Stored> = entries.filter_map(to_stored).collect();
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec(&File {
        version: VERSION,
        entries,
    })
    .map_err(|e| io_err(io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// Reads the entries at `path`, oldest first; a missing file is an empty buffer.
pub fn load(path: &Path) -> Result<Vec<Entry>, BufferFileError> {
    let corrupt = |message: String| BufferFileError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let io_err = |source| BufferFileError::Io {
        path: path.to_owned(),
        source,
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    if len > MAX_FILE_BYTES {
        return Err(corrupt(format!(
            "{len} bytes, more than the {MAX_FILE_BYTES} accepted"
        )));
    }
    let text = std::fs::read(path).map_err(io_err)?;
    let file: File = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != VERSION {
        return Err(corrupt(format!("version {}", file.version)));
    }
    Ok(file.entries.into_iter().map(from_stored).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_survive_a_round_trip_and_an_empty_buffer_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.json");
        assert!(load(&path).unwrap().is_empty(), "missing file = empty");
        let entries = vec![
            Entry {
                at: 5,
                item: Item::Raw {
                    topic: "r".into(),
                    qos: 1,
                    payload: b"{}".to_vec(),
                },
            },
            Entry {
                at: 10,
                item: Item::Twin {
                    device: DeviceId("a".into()),
                    values: vec![Reported {
                        property: PropertyName("t".into()),
                        value: "1".into(),
                        data_type: DataType::Int,
                    }],
                },
            },
            Entry {
                at: 11,
                item: Item::Data {
                    device: DeviceId("a".into()),
                    topic: "d/a".into(),
                    values: vec![Reported {
                        property: PropertyName("h".into()),
                        value: "x".into(),
                        data_type: DataType::String,
                    }],
                },
            },
            Entry {
                at: 12,
                item: Item::State {
                    device: DeviceId("a".into()),
                    state: DeviceState::Offline,
                },
            },
        ];
        save(&path, entries.iter()).unwrap();
        assert_eq!(load(&path).unwrap(), entries);
        save(&path, [].iter()).unwrap();
        assert!(!path.exists());
        save(&path, [].iter()).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.json");
        std::fs::write(
            &path,
            b"{\"version\": 1, \"entries\": [{\"kind\": \"nope\"}]}",
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, BufferFileError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("buffer.json"), "{err}");
        std::fs::write(&path, b"{\"version\": 7, \"entries\": []}").unwrap();
        assert!(load(&path).is_err());
        std::fs::write(&path, b"\xff garbage").unwrap();
        assert!(load(&path).is_err());
    }
}
