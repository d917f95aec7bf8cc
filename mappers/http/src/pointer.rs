//! RFC 6901 JSON pointers: checked once when a visitor is parsed, then used to pick a
//! value out of a reply and to build the default write body.

use std::fmt;

use serde_json::Value as Json;

/// A JSON pointer that passed [`Pointer::parse`]: `""` (the whole document) or
/// `/token/token...`, with `~0` for `~` and `~1` for `/` inside a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer; the error says what is wrong (the caller names the field).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must be empty (the whole reply) or start with '/', e.g. \"/{text}\""
            ));
        };
        let tokens = rest
            .split('/')
            .map(unescape)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{text:?} is not a JSON pointer: {e}"))?;
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped reference tokens (`/a~1b/c` is `["a/b", "c"]`).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value the pointer designates in `doc`, if there is one.
    pub fn find<'a>(&self, doc: &'a Json) -> Option<&'a Json> {
        self.tokens.iter().try_fold(doc, |cur, token| match cur {
            Json::Object(map) => map.get(token),
            Json::Array(items) => array_index(token).and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("\"\" (the whole reply)")
        } else {
            f.write_str(&self.text)
        }
    }
}

fn unescape(token: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("'~' must be followed by 0 (for '~') or 1 (for '/')".into()),
        }
    }
    Ok(out)
}

/// An array index as RFC 6901 allows it: digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_follow_rfc_6901() {
        let doc = json!({"a": {"b/c": [10, 20], "m~n": true}, "": 5});
        let find = |p: &str| Pointer::parse(p).unwrap().find(&doc).cloned();
        assert_eq!(find(""), Some(doc.clone()));
        assert_eq!(find("/a/b~1c/1"), Some(json!(20)));
        assert_eq!(find("/a/m~0n"), Some(json!(true)));
        assert_eq!(find("/"), Some(json!(5)));
        assert_eq!(find("/a/b~1c/01"), None, "no leading zeros");
        assert_eq!(find("/a/b~1c/2"), None);
        assert_eq!(find("/a/b~1c/-"), None);
        assert_eq!(find("/x"), None);
        assert_eq!(find("/a/m~0n/deeper"), None);
        assert_eq!(
            Pointer::parse("/a~1b/c").unwrap().tokens(),
            ["a/b".to_owned(), "c".to_owned()]
        );
    }

    #[test]
    fn malformed_pointers_are_refused_with_a_fix() {
        let e = Pointer::parse("power").unwrap_err();
        assert!(e.contains("\"/power\""), "{e}");
        let e = Pointer::parse("/a~2").unwrap_err();
        assert!(e.contains("'~'"), "{e}");
        assert!(Pointer::parse("/a~").is_err());
    }
}
