//! The YAML device file: the documents a simulated device serves, their field rules
//! and dynamics. The README shows the format with examples.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value as Json;

/// Why a device file was refused.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not have the expected shape.
    #[error("{name}: {message}")]
    Syntax {
        /// The file name.
        name: String,
        /// The parser's message.
        message: String,
    },
    /// A rule is broken; names the document and field.
    #[error("{name}: documents[{index}] ({path}): {message}")]
    Invalid {
        /// The file name.
        name: String,
        /// The document's index.
        index: usize,
        /// The document's path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn default_tick() -> u64 {
    1000
}

/// A device file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapFile {
    /// How often dynamics move, in ms (default 1000).
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    /// The documents, one per path.
    pub documents: Vec<DocumentSpec>,
}

/// One JSON document at one path.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentSpec {
    /// The URL path, e.g. `/status` (queries are ignored when matching).
    pub path: String,
    /// The initial document.
    pub body: Json,
    /// Rules and dynamics of fields of the document.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

/// A field of a document: write rules and dynamics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpec {
    /// RFC 6901 pointer into the document, e.g. `/relay/on`.
    pub pointer: String,
    /// Writes that change it are refused with 422.
    #[serde(default)]
    pub read_only: bool,
    /// Writes below it are refused with 422.
    pub min: Option<f64>,
    /// Writes above it are refused with 422.
    pub max: Option<f64>,
    /// Adds `step` every tick.
    pub counter: Option<Counter>,
    /// Moves by up to `step` every tick, within `[min, max]`.
    pub random_walk: Option<RandomWalk>,
}

/// A counter: `value += step` every tick.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Counter {
    /// Added every tick.
    pub step: f64,
}

/// A random walk within bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomWalk {
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
    /// Largest move per tick.
    pub step: f64,
}

impl MapFile {
    /// Reads and checks a device file.
    pub fn load(path: &Path) -> Result<Self, MapError> {
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks device-file text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, MapError> {
        let map: MapFile = serde_saphyr::from_str(text).map_err(|e| MapError::Syntax {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        map.check(name)?;
        Ok(map)
    }

    fn check(&self, name: &str) -> Result<(), MapError> {
        let mut seen = BTreeSet::new();
        for (index, d) in self.documents.iter().enumerate() {
            let bad = |message: String| MapError::Invalid {
                name: name.to_owned(),
                index,
                path: d.path.clone(),
                message,
            };
            if !d.path.starts_with('/') || d.path.contains('?') {
                return Err(bad("path must start with '/' and have no query".into()));
            }
            if !seen.insert(d.path.clone()) {
                return Err(bad("a second document with this path".into()));
            }
            for f in &d.fields {
                let Some(v) = d.body.pointer(&f.pointer) else {
                    return Err(bad(format!(
                        "fields: pointer {:?} is not in the body (pointers look like /relay/on)",
                        f.pointer
                    )));
                };
                let dynamic = f.counter.is_some() || f.random_walk.is_some();
                if (dynamic || f.min.is_some() || f.max.is_some()) && !v.is_number() {
                    return Err(bad(format!(
                        "fields: {}: min, max, counter and randomWalk need a number, the body has {v}",
                        f.pointer
                    )));
                }
                if f.counter.is_some() && f.random_walk.is_some() {
                    return Err(bad(format!(
                        "fields: {}: counter or randomWalk, not both",
                        f.pointer
                    )));
                }
                if let Some(w) = &f.random_walk
                    && !(w.min < w.max && w.step > 0.0 && w.step.is_finite())
                {
                    return Err(bad(format!(
                        "fields: {}: randomWalk needs min < max and a positive step",
                        f.pointer
                    )));
                }
                if let Some(c) = &f.counter
                    && !c.step.is_finite()
                {
                    return Err(bad(format!(
                        "fields: {}: counter step must be finite",
                        f.pointer
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUG: &str = r#"
tickMs: 500
documents:
  - path: /status
    body: {relay: {on: true}, power: 12.5, energy: 1000, name: plug}
    fields:
      - {pointer: /energy, readOnly: true, counter: {step: 0.5}}
      - {pointer: /power, readOnly: true, randomWalk: {min: 0, max: 100, step: 1}}
  - path: /settings
    body: {limitW: 2000}
    fields:
      - {pointer: /limitW, min: 0, max: 3600}
"#;

    #[test]
    fn a_device_file_parses() {
        let m = MapFile::parse(PLUG, "plug").unwrap();
        assert_eq!(m.tick_ms, 500);
        assert_eq!(m.documents.len(), 2);
        assert_eq!(m.documents[0].body["relay"]["on"], Json::Bool(true));
        assert_eq!(m.documents[0].body["power"], serde_json::json!(12.5));
        assert_eq!(m.documents[1].fields[0].max, Some(3600.0));
    }

    #[test]
    fn broken_files_name_the_document_and_field() {
        let err = |t: &str| MapFile::parse(t, "f").unwrap_err().to_string();
        assert!(
            err(&PLUG.replace("/energy, readOnly", "/energi, readOnly"))
                .contains("documents[0] (/status): fields: pointer \"/energi\"")
        );
        assert!(err(&PLUG.replace("path: /settings", "path: /status")).contains("second document"));
        assert!(
            err(&PLUG.replace("path: /settings", "path: settings")).contains("must start with '/'")
        );
        assert!(err(&PLUG.replace("/limitW, min", "/limitW, minn")).contains("minn"));
        assert!(err(&PLUG.replace("min: 0, max: 100", "min: 100, max: 0")).contains("min < max"));
        assert!(
            err(
                "documents:\n  - path: /a\n    body: {x: a}\n    fields: [{pointer: /x, min: 1}]\n"
            )
            .contains("need a number")
        );
    }

    /// The device models' http-sim files (another directory of this workspace) stay
    /// loadable.
    #[test]
    fn device_model_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-models");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path().join("sim-http.yaml");
            if p.exists() {
                MapFile::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 1, "no device-models/*/sim-http.yaml");
    }
}
