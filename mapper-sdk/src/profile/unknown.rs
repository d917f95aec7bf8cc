//! Keys that match no field: what [`super::ci::from_value_noting`] collects, and the
//! near misses it suggests (`scal` → `scale`).

use std::fmt;

/// A key of a config object that matched no field of the struct it was read into (a
/// typo, most of the time). Keys of free-form maps are never unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Where the key sits, dot-separated from the object read (`mqtt.sever`,
    /// `customizedValues.scal`; list items as `[i]`).
    pub path: String,
    /// The field it most likely means, with the same parent path (`mqtt.server`).
    pub suggestion: Option<String>,
}

impl UnknownKey {
    /// The key with `prefix` (e.g. `visitorConfig`) put in front of its path and
    /// suggestion.
    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        Self {
            path: join(prefix, &self.path),
            suggestion: self.suggestion.map(|s| join(prefix, &s)),
        }
    }

    /// The message without the path: `unknown key (did you mean x.scale?)`, for an
    /// issue that names the key as its field.
    pub fn message(&self) -> String {
        match &self.suggestion {
            Some(s) => format!("{UNKNOWN_KEY} (did you mean {s}?); it is ignored"),
            None => format!("{UNKNOWN_KEY}; it is ignored"),
        }
    }
}

/// How every unknown-key message starts (to count them, see [`is_unknown_key_message`]).
pub const UNKNOWN_KEY: &str = "unknown key";

/// Whether a warning message is about an unknown key.
pub fn is_unknown_key_message(message: &str) -> bool {
    message.starts_with(UNKNOWN_KEY)
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{UNKNOWN_KEY} {}", self.path)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        Ok(())
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else if key.starts_with('[') {
        format!("{parent}{key}")
    } else {
        format!("{parent}.{key}")
    }
}

/// Folds a key the way field names are matched: ASCII case, `_` and `-` ignored.
pub(crate) fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The candidate `key` most likely means, when one is close enough: within an edit
/// distance (transpositions count as one) of 1 for keys up to 4 characters, 2 up to 8
/// and 3 beyond, compared folded. Ties go to the first candidate.
pub fn suggest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let key = fold(key);
    let len = key.chars().count();
    let max = match len {
        0 => return None,
        1..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&key, &fold(c)), *c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let visitor = ["register", "offset", "limit", "scale", "isSwap", "rawType"];
        assert_eq!(suggest("scal", &visitor), Some("scale"));
        assert_eq!(suggest("SCALE_", &visitor), Some("scale"));
        assert_eq!(suggest("regsiter", &visitor), Some("register"));
        assert_eq!(suggest("raw_tpye", &visitor), Some("rawType"));
        assert_eq!(suggest("colour", &visitor), None);
        assert_eq!(suggest("", &visitor), None);
        assert_eq!(suggest("sever", &["server", "servername"]), Some("server"));
        assert_eq!(suggest("x", &[]), None);
    }

    #[test]
    fn paths_are_joined_and_rendered() {
        let k = UnknownKey {
            path: "scal".into(),
            suggestion: Some("scale".into()),
        }
        .under("visitorConfig");
        assert_eq!(
            k.to_string(),
            "unknown key visitorConfig.scal (did you mean visitorConfig.scale?)"
        );
        assert!(is_unknown_key_message(&k.message()));
        assert_eq!(join("a", "[2]"), "a[2]");
        assert_eq!(join("", "b"), "b");
        let plain = UnknownKey {
            path: "x".into(),
            suggestion: None,
        };
        assert_eq!(plain.to_string(), "unknown key x");
        assert_eq!(plain.message(), "unknown key; it is ignored");
    }
}
