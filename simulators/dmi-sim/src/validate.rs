//! edgecore's twin checks (docs/kubeedge-dmi.md#rule-reportdevicestatus,
//! docs/kubeedge-contract.md#rule-the-character-set-of-twin-keys-and-values): a property name must match
//! `^[a-zA-Z0-9-_.,:/@#]{1,128}$`, a non-empty value `^[a-zA-Z0-9-_.,:/@#]{1,512}$`.
//! Pure.

/// Why edgecore would drop a twin or a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The property name fails the key regex.
    #[error(
        "property name {0:?} does not match ^[a-zA-Z0-9-_.,:/@#]{{1,128}}$ (edgecore drops the twin)"
    )]
    BadKey(String),
    /// The reported value fails the value regex.
    #[error(
        "reported value {0:?} does not match ^[a-zA-Z0-9-_.,:/@#]{{1,512}}$ (no spaces, +, =, quotes or exponents; edgecore drops the twin)"
    )]
    BadReported(String),
    /// The observedDesired value fails the value regex.
    #[error(
        "observedDesired value {0:?} does not match ^[a-zA-Z0-9-_.,:/@#]{{1,512}}$ (edgecore drops the twin)"
    )]
    BadObservedDesired(String),
    /// The device is not in edgecore's cache.
    #[error("device {0} is unknown to edgecore (not in its cache): the update is rejected")]
    UnknownDevice(String),
    /// A report without `deviceNamespace` to a 1.16+ edgecore.
    #[error(
        "report for device {0:?} has no deviceNamespace; edgecore 1.16+ addresses devices as namespace/name and drops it"
    )]
    NoNamespace(String),
    /// A state outside the version's list.
    #[error("state {state:?} is not one of {accepted:?} (edgecore drops it silently)")]
    BadState {
        /// The state as sent.
        state: String,
        /// What this version accepts.
        accepted: &'static [&'static str],
    },
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ',' | ':' | '/' | '@' | '#')
}

/// `^[a-zA-Z0-9-_.,:/@#]{1,128}$`.
pub fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.chars().all(allowed)
}

/// `^[a-zA-Z0-9-_.,:/@#]{1,512}$` (edgecore checks only non-empty values).
pub fn valid_value(value: &str) -> bool {
    (1..=512).contains(&value.len()) && value.chars().all(allowed)
}

/// The first reason edgecore would drop this twin, if any.
pub fn check_twin(property: &str, reported: &str, observed_desired: &str) -> Option<DropReason> {
    if !valid_key(property) {
        return Some(DropReason::BadKey(property.to_owned()));
    }
    if !reported.is_empty() && !valid_value(reported) {
        return Some(DropReason::BadReported(reported.to_owned()));
    }
    if !observed_desired.is_empty() && !valid_value(observed_desired) {
        return Some(DropReason::BadObservedDesired(observed_desired.to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_match_edgecore() {
        assert!(valid_key("temperature"));
        assert!(valid_key("a-b_c.d,e:f/g@h#1"));
        assert!(!valid_key(""));
        assert!(!valid_key("with space"));
        assert!(!valid_key(&"k".repeat(129)));
        assert!(valid_key(&"k".repeat(128)));
        assert!(valid_value("61.5") && valid_value("-3") && valid_value("true"));
        assert!(!valid_value("1.5e+06"));
        assert!(!valid_value("{\"a\":1}"));
        assert!(!valid_value("a=b"));
        assert!(!valid_value(&"v".repeat(513)));
        assert!(!valid_value("é"));
        assert_eq!(check_twin("t", "", ""), None);
        assert!(matches!(
            check_twin("t", "1 2", ""),
            Some(DropReason::BadReported(_))
        ));
        assert!(matches!(
            check_twin("t", "1", "x y"),
            Some(DropReason::BadObservedDesired(_))
        ));
    }
}
