//! Case-insensitive deserialization from JSON values, the way Go's `encoding/json` matches
//! struct fields.
//!
//! [`from_value`] deserializes any `T` from a [`serde_json::Value`]. Wherever `T` expects a
//! struct, object keys are matched against the struct's field names ignoring ASCII case,
//! `_` and `-` (so `CollectCycle`, `collectcycle` and `collect_cycle` all reach
//! `collectCycle`). Keys of free-form maps are left untouched, unknown keys are ignored by
//! the usual serde rules, and when a key appears twice after folding, the last one wins as
//! in Go. Drivers use the same function for their protocol and visitor configs.

use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

/// Deserializes `T` from `value`, matching struct field names case-insensitively.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Ci(value))
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

struct Ci(Value);

struct CiMap {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<Value>,
}

impl CiMap {
    fn new(map: Map<String, Value>, fields: Option<&'static [&'static str]>) -> Self {
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.len());
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
            if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            } else {
                entries.push((key, value));
            }
        }
        Self {
            entries: entries.into_iter(),
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for CiMap {
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

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self.pending.take().unwrap_or(Value::Null);
        seed.deserialize(Ci(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct CiSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for CiSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(Ci(v))).transpose()
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

    #[test]
    fn type_errors_are_reported() {
        let err = from_value::<Inner>(json!({"collectCycle": "soon"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
