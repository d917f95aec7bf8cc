//! Write bodies: a JSON template in which `${value}` stands for the value to write,
//! encoded as JSON (a number, `true`/`false`, or a quoted string).

use mapper_sdk::model::{DataType, Value};
use serde_json::Value as Json;

use crate::pointer::Pointer;

/// The placeholder a body template must contain.
pub const PLACEHOLDER: &str = "${value}";

/// A checked body template: the text around each `${value}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate {
    /// The text between placeholders; one more piece than there are placeholders.
    pieces: Vec<String>,
}

impl BodyTemplate {
    /// Parses a template for a property of `data_type`: it must contain `${value}` and be
    /// JSON once a value of that type is put in (so `"${value}"` for a string property,
    /// which would double the quotes, is refused here rather than by the device).
    pub fn parse(text: &str, data_type: DataType) -> Result<Self, String> {
        if !text.contains(PLACEHOLDER) {
            return Err(format!(
                "{} has no {PLACEHOLDER}; put {PLACEHOLDER} where the value goes, e.g. {{\"value\": {PLACEHOLDER}}}",
                mapper_sdk::excerpt::quoted(text)
            ));
        }
        let t = Self {
            pieces: text.split(PLACEHOLDER).map(str::to_owned).collect(),
        };
        let sample = sample(data_type);
        let body = t.render(&sample).map_err(|e| e.to_string())?;
        if let Err(e) = serde_json::from_str::<Json>(&body) {
            return Err(format!(
                "is not JSON once {PLACEHOLDER} is replaced by a {data_type} value (e.g. {body}): {e}; {PLACEHOLDER} is replaced by the JSON value itself, quotes included for strings, so do not quote it"
            ));
        }
        Ok(t)
    }

    /// The default body for a value read at `pointer`: the pointer's path as nested
    /// objects, e.g. `/relay/on` gives `{"relay": {"on": ${value}}}`, `/value` gives
    /// `{"value": ${value}}` and `""` the bare value.
    pub fn from_pointer(pointer: &Pointer) -> Self {
        let mut open = String::new();
        let mut close = String::new();
        for token in pointer.tokens() {
            // Serializing a string cannot fail.
            let key = serde_json::to_string(token).unwrap_or_default();
            open.push('{');
            open.push_str(&key);
            open.push_str(": ");
            close.push('}');
        }
        Self {
            pieces: vec![open, close],
        }
    }

    /// The template as text (for `check` and logs).
    pub fn text(&self) -> String {
        self.pieces.join(PLACEHOLDER)
    }

    /// The body for `value`.
    pub fn render(&self, value: &Value) -> Result<String, EncodeError> {
        let json = encode(value)?;
        Ok(self.pieces.join(&json))
    }
}

/// A value with no JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be sent as JSON (not a finite number)")]
pub struct EncodeError(String);

/// The JSON text of a value: numbers as numbers, booleans, strings quoted and escaped,
/// bytes as a quoted lowercase hex string.
pub fn encode(value: &Value) -> Result<String, EncodeError> {
    let json = match value {
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| EncodeError(f.to_string()))?,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(_) => Json::String(value.canonical().unwrap_or_default()),
    };
    Ok(json.to_string())
}

fn sample(data_type: DataType) -> Value {
    match data_type {
        DataType::Int => Value::Int(1),
        DataType::Float | DataType::Double => Value::Float(1.5),
        DataType::Boolean => Value::Bool(true),
        DataType::String => Value::String("text".into()),
        DataType::Bytes => Value::Bytes(vec![1, 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_becomes_the_json_value() {
        let t = BodyTemplate::parse(r#"{"turn": ${value}, "id": 0}"#, DataType::Boolean).unwrap();
        assert_eq!(
            t.render(&Value::Bool(false)).unwrap(),
            r#"{"turn": false, "id": 0}"#
        );
        let t = BodyTemplate::parse(r#"{"name": ${value}}"#, DataType::String).unwrap();
        assert_eq!(
            t.render(&Value::String("a \"b\"".into())).unwrap(),
            r#"{"name": "a \"b\""}"#
        );
        let t = BodyTemplate::parse("[${value}, ${value}]", DataType::Float).unwrap();
        assert_eq!(t.render(&Value::Float(21.5)).unwrap(), "[21.5, 21.5]");
        assert_eq!(
            t.render(&Value::Float(f64::NAN)).unwrap_err().to_string(),
            "NaN cannot be sent as JSON (not a finite number)"
        );
        assert_eq!(encode(&Value::Bytes(vec![0xab, 1])).unwrap(), "\"ab01\"");
        assert_eq!(
            encode(&Value::UInt(u64::MAX)).unwrap(),
            "18446744073709551615"
        );
    }

    #[test]
    fn templates_without_placeholder_or_not_json_are_refused() {
        let e = BodyTemplate::parse(r#"{"on": true}"#, DataType::Boolean).unwrap_err();
        assert!(e.contains("has no ${value}"), "{e}");
        let e = BodyTemplate::parse(r#"{"name": "${value}"}"#, DataType::String).unwrap_err();
        assert!(e.contains("do not quote it"), "{e}");
        // Quoting a number is the user's choice: the device gets a string.
        assert!(BodyTemplate::parse(r#"{"v": "${value}"}"#, DataType::Int).is_ok());
        assert!(BodyTemplate::parse(r#"{"v": ${value}"#, DataType::Int).is_err());
    }

    #[test]
    fn the_default_body_nests_the_pointer() {
        let p = |s| Pointer::parse(s).unwrap();
        let t = BodyTemplate::from_pointer(&p("/relay/on"));
        assert_eq!(t.text(), r#"{"relay": {"on": ${value}}}"#);
        assert_eq!(
            t.render(&Value::Bool(true)).unwrap(),
            r#"{"relay": {"on": true}}"#
        );
        assert_eq!(
            BodyTemplate::from_pointer(&p("/a~1b")).text(),
            r#"{"a/b": ${value}}"#
        );
        assert_eq!(BodyTemplate::from_pointer(&p("")).text(), "${value}");
    }
}
