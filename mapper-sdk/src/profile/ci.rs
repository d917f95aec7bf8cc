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
//! and visitor configs.

use serde::Deserialize;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};
use serde_json::Value;
use serde_json::value::RawValue;

/// Deserializes `T` from `value`, matching struct field names case-insensitively.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Ci(value))
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

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A value that can be deserialized case-insensitively: a JSON tree or JSON text.
trait CiValue<'de> {
    type De: Deserializer<'de, Error = serde_json::Error>;
    fn ci(self) -> Self::De;
}

impl<'de> CiValue<'de> for Value {
    type De = Ci;
    fn ci(self) -> Ci {
        Ci(self)
    }
}

impl<'de> CiValue<'de> for &'de RawValue {
    type De = CiRaw<'de>;
    fn ci(self) -> CiRaw<'de> {
        CiRaw(self)
    }
}

struct Ci(Value);

/// JSON text, deserialized on demand.
struct CiRaw<'a>(&'a RawValue);

struct CiMap<V> {
    entries: std::vec::IntoIter<(String, V)>,
    pending: Option<V>,
}

impl<V> CiMap<V> {
    /// The entries with keys matched to `fields` (when given), last duplicate winning.
    fn new(
        map: impl IntoIterator<Item = (String, V)>,
        fields: Option<&'static [&'static str]>,
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
                    fields
                        .iter()
                        .find(|f| fold(f) == folded)
                        .map_or(key, |f| (*f).to_owned())
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
                self.pending = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        match self.pending.take() {
            Some(value) => seed.deserialize(value.ci()),
            None => Err(serde_json::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct CiSeq<V>(std::vec::IntoIter<V>);

impl<'de, V: CiValue<'de>> SeqAccess<'de> for CiSeq<V> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(v.ci())).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

impl<'de> Deserializer<'de> for Ci {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, None)),
            Value::Array(items) => visitor.visit_seq(CiSeq(items.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Ci(other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, Some(fields))),
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
            Some(b'{') => visitor.visit_map(CiMap::new(self.entries()?, None)),
            Some(b'[') => visitor.visit_seq(CiSeq(self.items()?.into_iter())),
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
            visitor.visit_map(CiMap::new(self.entries()?, Some(fields)))
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
    fn type_errors_are_reported() {
        let err = from_value::<Inner>(json!({"collectCycle": "soon"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
