//! The documents of a simulated device and what GET, PUT/POST/PATCH and a tick do to them
//! (pure: no I/O).

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value as Json;

use crate::map::{FieldSpec, MapFile};

/// A write the device refuses, with the status it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No document at the path (404).
    #[error("no document at {0}")]
    NotFound(String),
    /// The body is not JSON (400).
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// A field rule refuses the new value (422).
    #[error("{0}")]
    Rejected(String),
}

impl WriteError {
    /// The HTTP status for the error.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::NotJson(_) => 400,
            Self::Rejected(_) => 422,
        }
    }
}

#[derive(Debug, Clone)]
struct Doc {
    body: Json,
    fields: Vec<FieldSpec>,
}

/// The documents of one device.
#[derive(Debug, Clone)]
pub struct Documents {
    docs: BTreeMap<String, Doc>,
}

impl Documents {
    /// The documents of a device file, in their initial state.
    pub fn new(map: &MapFile) -> Self {
        Self {
            docs: map
                .documents
                .iter()
                .map(|d| {
                    (
                        d.path.clone(),
                        Doc {
                            body: d.body.clone(),
                            fields: d.fields.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The document at `path` (a query is ignored).
    pub fn get(&self, path: &str) -> Option<&Json> {
        self.docs.get(strip_query(path)).map(|d| &d.body)
    }

    /// Applies a write: the body is merged into the document (RFC 7386 merge patch:
    /// objects merge, `null` removes, anything else replaces); the field rules are
    /// checked on the result, and nothing changes if one fails. Returns the new document.
    pub fn write(&mut self, path: &str, body: &[u8]) -> Result<Json, WriteError> {
        let path = strip_query(path);
        let doc = self
            .docs
            .get_mut(path)
            .ok_or_else(|| WriteError::NotFound(path.to_owned()))?;
        let patch: Json =
            serde_json::from_slice(body).map_err(|e| WriteError::NotJson(e.to_string()))?;
        let mut next = doc.body.clone();
        merge(&mut next, &patch);
        for f in &doc.fields {
            check_field(f, doc.body.pointer(&f.pointer), next.pointer(&f.pointer))?;
        }
        doc.body = next;
        Ok(doc.body.clone())
    }

    /// Sets one value (for tests), bypassing the field rules. `false` when the path or
    /// the pointer's parent does not exist.
    pub fn set(&mut self, path: &str, pointer: &str, value: Json) -> bool {
        let Some(doc) = self.docs.get_mut(strip_query(path)) else {
            return false;
        };
        match doc.body.pointer_mut(pointer) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// Moves every counter and random walk one tick.
    pub fn tick(&mut self, rng: &mut impl Rng) {
        for doc in self.docs.values_mut() {
            for f in &doc.fields {
                let Some(slot) = doc.body.pointer_mut(&f.pointer) else {
                    continue;
                };
                let Some(cur) = slot.as_f64() else { continue };
                let next = if let Some(c) = &f.counter {
                    cur + c.step
                } else if let Some(w) = &f.random_walk {
                    (cur + rng.random_range(-w.step..=w.step)).clamp(w.min, w.max)
                } else {
                    continue;
                };
                // Integers stay integers when the step keeps them whole.
                *slot = if slot.is_i64() && next.fract() == 0.0 && next.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    Json::from(next as i64)
                } else {
                    serde_json::Number::from_f64((next * 1e6).round() / 1e6)
                        .map_or(Json::Null, Json::Number)
                };
            }
        }
    }
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// RFC 7386 merge patch.
fn merge(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(serde_json::Map::new());
    }
    if let Json::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

fn check_field(f: &FieldSpec, old: Option<&Json>, new: Option<&Json>) -> Result<(), WriteError> {
    if f.read_only && old != new {
        return Err(WriteError::Rejected(format!("{} is read-only", f.pointer)));
    }
    if f.min.is_none() && f.max.is_none() {
        return Ok(());
    }
    let Some(x) = new.and_then(Json::as_f64) else {
        return Err(WriteError::Rejected(format!(
            "{} must be a number",
            f.pointer
        )));
    };
    if f.min.is_some_and(|m| x < m) || f.max.is_some_and(|m| x > m) {
        return Err(WriteError::Rejected(format!(
            "{} = {x} is outside [{}, {}]",
            f.pointer,
            f.min.map_or("-inf".into(), |m| m.to_string()),
            f.max.map_or("inf".into(), |m| m.to_string())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plug() -> Documents {
        let map = MapFile::parse(
            r#"
documents:
  - path: /status
    body: {relay: {on: true, id: 0}, energy: 10, power: 50.0}
    fields:
      - {pointer: /energy, readOnly: true, counter: {step: 1}}
      - {pointer: /power, randomWalk: {min: 0, max: 100, step: 5}}
  - path: /settings
    body: {limitW: 2000}
    fields:
      - {pointer: /limitW, min: 0, max: 3600}
"#,
            "t",
        )
        .unwrap();
        Documents::new(&map)
    }

    #[test]
    fn writes_merge_and_rules_refuse_without_changing_anything() {
        let mut d = plug();
        let after = d
            .write("/status?x=1", br#"{"relay": {"on": false}}"#)
            .unwrap();
        assert_eq!(after["relay"], json!({"on": false, "id": 0}));
        let e = d.write("/status", br#"{"energy": 5}"#).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(d.get("/status").unwrap()["energy"], json!(10));
        assert_eq!(
            d.write("/settings", br#"{"limitW": 4000}"#)
                .unwrap_err()
                .status(),
            422
        );
        assert_eq!(
            d.write("/settings", br#"{"limitW": "x"}"#)
                .unwrap_err()
                .status(),
            422
        );
        assert_eq!(d.write("/settings", b"{oops").unwrap_err().status(), 400);
        assert_eq!(d.write("/nope", b"{}").unwrap_err().status(), 404);
        d.write("/settings", br#"{"limitW": 3000}"#).unwrap();
        assert_eq!(d.get("/settings").unwrap()["limitW"], json!(3000));
        // A non-object patch replaces the document; null removes a key.
        d.write("/settings", br#"{"limitW": 1, "extra": 2}"#)
            .unwrap();
        d.write("/settings", br#"{"extra": null}"#).unwrap();
        assert_eq!(d.get("/settings").unwrap(), &json!({"limitW": 1}));
    }

    #[test]
    fn ticks_move_counters_and_walks_within_bounds() {
        let mut d = plug();
        let mut rng = rand::rng();
        for _ in 0..100 {
            d.tick(&mut rng);
            let p = d.get("/status").unwrap()["power"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&p), "{p}");
        }
        assert_eq!(d.get("/status").unwrap()["energy"], json!(110));
        assert!(d.set("/status", "/relay/on", json!(false)));
        assert!(!d.set("/status", "/nope/x", json!(1)));
    }
}
