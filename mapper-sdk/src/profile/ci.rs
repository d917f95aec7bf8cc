//! Case-insensitive deserialization, the way Go's `encoding/json` matches struct fields.
//!
//! [`from_value`] deserializes any `T` from a [`serde_json::Value`]; [`from_raw`] does the
//! same straight from JSON text (a [`RawValue`]) without building a tree of it first, which
//! keeps the memory a large profile needs at load time close to the size of its text.
//! Wherever `T` expects a struct, object keys are matched against the struct's field
//! names ignoring ASCII case, `_` and `-` (so `CollectCycle`, `collectcycle` and
//! `collect_cycle` all reach `collectCycle`). Keys of free-form maps are left untouched,
//! unknown keys are ignored by the usual serde rules, and when a key appears twice after
//! folding, the last one wins as in Go. Drivers use the same function for their protocol
//! and visitor configs; [`from_value_noting`] also returns the keys that matched no
//! field (with the field each most likely means), so that typos become warnings.

use serde::Deserialize;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};
use serde_json::Value;
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::rc::Rc;

use super::unknown::{UnknownKey, fold, join, suggest};

/// Deserializes `T` from `value`, matching struct field names case-insensitively.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Ci(value, None))
}

/// Deserializes `T` from `value` like [`from_value`], and returns the keys of struct
/// objects that matched no field of their struct, sorted by path, with paths relative
/// to `value` (keys of free-form maps and of JSON values kept as they are never count).
pub fn from_value_noting<T: DeserializeOwned>(
    value: Value,
) -> Result<(T, Vec<UnknownKey>), serde_json::Error> {
    let sink = Rc::new(RefCell::new(Vec::new()));
    let track = Track {
        sink: Rc::clone(&sink),
        path: String::new(),
    };
    let t = T::deserialize(Ci(value, Some(track)))?;
    let mut found = sink.take();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((t, found))
}

/// Where unknown keys go, and the path of the value being read.
#[derive(Clone)]
struct Track {
    sink: Rc<RefCell<Vec<UnknownKey>>>,
    path: String,
}

impl Track {
    fn child(&self, key: &str) -> Self {
        Self {
            sink: Rc::clone(&self.sink),
            path: join(&self.path, key),
        }
    }
}

/// Deserializes `T` from the JSON text `raw`, matching struct field names
/// case-insensitively. `T` may borrow from the text (e.g. hold `&RawValue` entries that
/// are deserialized later, one by one). Errors carry no line and column: they would be
/// relative to a fragment of the document.
pub fn from_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, serde_json::Error> {
    T::deserialize(CiRaw(raw)).map_err(|e| {
        if e.line() == 0 {
            return e;
        }
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        serde_json::Error::custom(text.strip_suffix(&suffix).unwrap_or(&text))
    })
}

/// A value that can be deserialized case-insensitively: a JSON tree or JSON text.
trait CiValue<'de> {
    type De: Deserializer<'de, Error = serde_json::Error>;
    fn ci(self, track: Option<Track>) -> Self::De;
}

impl<'de> CiValue<'de> for Value {
    type De = Ci;
    fn ci(self, track: Option<Track>) -> Ci {
        Ci(self, track)
    }
}

impl<'de> CiValue<'de> for &'de RawValue {
    type De = CiRaw<'de>;
    fn ci(self, _track: Option<Track>) -> CiRaw<'de> {
        CiRaw(self)
    }
}

/// A JSON tree, and where its unknown keys go (when they are collected).
struct Ci(Value, Option<Track>);

/// JSON text, deserialized on demand.
struct CiRaw<'a>(&'a RawValue);

struct CiMap<V> {
    entries: std::vec::IntoIter<(String, V)>,
    pending: Option<(String, V)>,
    track: Option<Track>,
}

impl<V> CiMap<V> {
    /// The entries with keys matched to `fields` (when given), last duplicate winning.
    fn new(
        map: impl IntoIterator<Item = (String, V)>,
        fields: Option<&'static [&'static str]>,
        track: Option<Track>,
    ) -> Self {
        let map = map.into_iter();
        let mut entries: Vec<(String, V)> = Vec::with_capacity(map.size_hint().0);
        // Where each key sits in `entries`: a hostile object with a hundred thousand keys
        // must not cost a quadratic search.
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (key, value) in map {
            let key = match fields {
                Some(fields) if !fields.contains(&key.as_str()) => {
                    let folded = fold(&key);
                    match fields.iter().find(|f| fold(f) == folded) {
                        Some(f) => (*f).to_owned(),
                        None => {
                            if let Some(t) = &track {
                                t.sink.borrow_mut().push(UnknownKey {
                                    path: join(&t.path, &key),
                                    suggestion: suggest(&key, fields).map(|f| join(&t.path, f)),
                                });
                            }
                            key
                        }
                    }
                }
                _ => key,
            };
            match at.get(&key) {
                Some(&i) => entries[i].1 = value,
                None => {
                    at.insert(key.clone(), entries.len());
                    entries.push((key, value));
                }
            }
        }
        Self {
            entries: entries.into_iter(),
            pending: None,
            track,
        }
    }
}

impl<'de, V: CiValue<'de>> MapAccess<'de> for CiMap<V> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                let out = seed.deserialize(key.as_str().into_deserializer()).map(Some);
                self.pending = Some((key, value));
                out
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        match self.pending.take() {
            Some((key, value)) => {
                let track = self.track.as_ref().map(|t| t.child(&key));
                seed.deserialize(value.ci(track))
            }
            None => Err(serde_json::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct CiSeq<V> {
    items: std::iter::Enumerate<std::vec::IntoIter<V>>,
    len: usize,
    track: Option<Track>,
}

impl<V> CiSeq<V> {
    fn new(items: Vec<V>, track: Option<Track>) -> Self {
        Self {
            len: items.len(),
            items: items.into_iter().enumerate(),
            track,
        }
    }
}

impl<'de, V: CiValue<'de>> SeqAccess<'de> for CiSeq<V> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.items
            .next()
            .map(|(i, v)| {
                let track = self.track.as_ref().map(|t| t.child(&format!("[{i}]")));
                self.len -= 1;
                seed.deserialize(v.ci(track))
            })
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<'de> Deserializer<'de> for Ci {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, None, self.1)),
            Value::Array(items) => visitor.visit_seq(CiSeq::new(items, self.1)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Ci(other, self.1)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, Some(fields), self.1)),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// The name under which serde_json deserializes a `RawValue` (`serde_json::raw::TOKEN`,
/// not public; `raw_values_can_be_kept_for_later` fails if it ever changes).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Collects an object's entries in order, duplicates included, values left as text.
pub(super) struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
            out.push(entry);
        }
        Ok(out)
    }
}

impl<'de> CiRaw<'de> {
    fn text(&self) -> &'de str {
        self.0.get()
    }

    fn json(&self) -> serde_json::Deserializer<serde_json::de::StrRead<'de>> {
        serde_json::Deserializer::from_str(self.0.get())
    }

    fn first(&self) -> Option<u8> {
        self.text().trim_start().bytes().next()
    }

    fn entries(&self) -> Result<Vec<(String, &'de RawValue)>, serde_json::Error> {
        self.json().deserialize_map(Entries)
    }

    fn items(&self) -> Result<Vec<&'de RawValue>, serde_json::Error> {
        serde_json::from_str(self.text())
    }
}

impl<'de> Deserializer<'de> for CiRaw<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.first() {
            Some(b'{') => visitor.visit_map(CiMap::new(self.entries()?, None, None)),
            Some(b'[') => visitor.visit_seq(CiSeq::new(self.items()?, None)),
            _ => self.json().deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.text().trim() == "null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.first() == Some(b'{') {
            visitor.visit_map(CiMap::new(self.entries()?, Some(fields), None))
        } else {
            self.json().deserialize_struct(name, fields, visitor)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if name == RAW_VALUE_TOKEN {
            self.json().deserialize_newtype_struct(name, visitor)
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json().deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // The text is valid JSON already (it was parsed to find its end).
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Inner {
        collect_cycle: Option<i64>,
        slave_id: Option<u8>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        property_visitors: Vec<Inner>,
        free: BTreeMap<String, i32>,
        maybe: Option<Inner>,
    }

    #[test]
    fn folds_struct_keys_but_not_map_keys() {
        let v = json!({
            "PropertyVisitors": [{"CollectCycle": 5, "slave_id": 3}, {"collectcycle": 1, "collectCycle": 2}],
            "FREE": {"ON": 1, "off": 0},
            "maybe": null,
            "unknown": {"x": 1}
        });
        let got: Outer = from_value(v).unwrap();
        assert_eq!(got.property_visitors[0].collect_cycle, Some(5));
        assert_eq!(got.property_visitors[0].slave_id, Some(3));
        assert_eq!(
            got.property_visitors[1].collect_cycle,
            Some(2),
            "last key wins"
        );
        assert_eq!(got.free.get("ON"), Some(&1));
        assert_eq!(got.free.get("off"), Some(&0));
        assert_eq!(got.maybe, None);
    }

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn text_and_tree_give_the_same_result() {
        let text = r#"{
            "PropertyVisitors": [{"CollectCycle": 5, "slave_id": 3}, {"collectcycle": 1, "collectCycle": 2}],
            "FREE": {"ON": 1, "off": 0, "ON": 7},
            "maybe": {"Slave-ID": 9},
            "unknown": {"x": [1, {"deep": null}]}
        }"#;
        let from_text: Outer = from_raw(raw(text)).unwrap();
        let from_tree: Outer = from_value(serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(from_text, from_tree);
        assert_eq!(from_text.free.get("ON"), Some(&7), "last duplicate wins");
        assert_eq!(from_text.maybe.unwrap().slave_id, Some(9));
        // Free-form JSON comes out exactly as serde_json parses it.
        let free = r#"{"b": [1, 2.5, "x\u00e9", null, true], "a": {"K": -3}, "a": {"k": 4}}"#;
        assert_eq!(
            from_raw::<Value>(raw(free)).unwrap(),
            serde_json::from_str::<Value>(free).unwrap()
        );
    }

    #[test]
    fn raw_values_can_be_kept_for_later() {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc<'a> {
            #[serde(borrow)]
            device_instances: Vec<&'a RawValue>,
        }
        let doc: Doc = from_raw(raw(r#"{"DeviceInstances": [{"id": "a"}, [1]]}"#)).unwrap();
        let texts: Vec<&str> = doc.device_instances.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"id": "a"}"#, "[1]"]);
    }

    #[test]
    fn text_errors_name_the_problem_without_a_fragment_position() {
        let err = from_raw::<Inner>(raw(r#"{"collectCycle": "soon"}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: string \"soon\", expected i64"
        );
        let err = from_raw::<Outer>(raw(" 5")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: integer `5`, expected struct Outer"
        );
    }

    #[test]
    fn huge_objects_keep_the_last_duplicate() {
        // 200,000 keys: well under a second with the index, minutes with the quadratic
        // search it replaced (no timing assertion: a regression shows as a slow test).
        let mut text = String::from("{");
        for i in 0..200_000 {
            text.push_str(&format!("\"k{i}\": {i}, "));
        }
        text.push_str("\"k7\": -1}");
        let free: BTreeMap<String, i64> = from_raw(raw(&text)).unwrap();
        assert_eq!((free.len(), free["k7"], free["k8"]), (200_000, -1, 8));
    }

    #[test]
    fn unknown_struct_keys_are_noted_with_paths_and_suggestions() {
        let v = json!({
            "PropertyVisitors": [{"CollectCycle": 5, "slave_idd": 3}, {"colectCycle": 1}],
            "FREE": {"anything": 1},
            "maybe": {"slaveId": 2, "other": true},
            "unknown": {"x": 1}
        });
        let (got, unknown): (Outer, _) = from_value_noting(v).unwrap();
        assert_eq!(got.property_visitors[0].collect_cycle, Some(5));
        let shown: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "unknown key maybe.other",
                "unknown key propertyVisitors[0].slave_idd (did you mean propertyVisitors[0].slaveId?)",
                "unknown key propertyVisitors[1].colectCycle (did you mean propertyVisitors[1].collectCycle?)",
                "unknown key unknown",
            ]
        );
        // Free-form maps and JSON values have no unknown keys.
        let (_, none): (BTreeMap<String, Value>, _) =
            from_value_noting(json!({"a": {"b": 1}, "c": [{"d": 2}]})).unwrap();
        assert!(none.is_empty());
        // Without noting, the same input reads the same.
        let plain: Outer = from_value(json!({"propertyVisitors": [], "free": {}, "x": 1})).unwrap();
        assert!(plain.property_visitors.is_empty());
    }

    #[test]
    fn type_errors_are_reported() {
        let err = from_value::<Inner>(json!({"collectCycle": "soon"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
