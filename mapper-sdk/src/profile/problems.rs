//! Keeping profile problems small and few: outside values are quoted as short excerpts,
//! problems that differ only in the device are merged into one with the list of devices,
//! and hostile shapes (deep nesting, numbers out of range) are found and named.
//!
//! A 1 MB profile (the ConfigMap limit) must cost memory and time linear in its size,
//! whatever it holds: a broken model used by thousands of devices yields one message
//! naming them, not thousands of copies of a message quoting the broken value.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::{Issue, ProfileError};

/// Characters of an outside value quoted in a message; the rest is counted, not shown.
pub const EXCERPT_CHARS: usize = 80;

/// The longest message kept whole; longer ones keep their head and tail.
const MESSAGE_BYTES: usize = 400;

/// Devices named in a merged problem before the rest is only counted.
const LISTED_DEVICES: usize = 10;

/// The deepest nesting of lists and objects a profile may have. KubeEdge profiles nest
/// about ten levels; the limit keeps hostile input from exhausting the parsers' stacks.
pub const MAX_DEPTH: usize = 64;

/// `s`, or its first [`EXCERPT_CHARS`] characters and its length.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}... ({} bytes)", &s[..at], s.len()),
    }
}

/// `msg` if short; else its head and tail around `...` and its length, so that both the
/// start of a serde error and its `expected ...` end survive.
pub fn clip(msg: String) -> String {
    if msg.len() <= MESSAGE_BYTES {
        return msg;
    }
    let head_end = floor_char(&msg, 160);
    let tail_start = ceil_char(&msg, msg.len() - 80);
    format!(
        "{} ... {} ({} bytes)",
        &msg[..head_end],
        &msg[tail_start..],
        msg.len()
    )
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Renders the devices of a merged problem: `device "a"` or `devices "a", "b" and 3 more`.
pub(super) fn devices_label(first: &str, others: &[String]) -> String {
    if others.is_empty() {
        return format!("device {:?}", excerpt(first));
    }
    let shown: Vec<String> = std::iter::once(first)
        .chain(others.iter().map(String::as_str))
        .take(LISTED_DEVICES)
        .map(|d| format!("{:?}", excerpt(d)))
        .collect();
    let total = others.len() + 1;
    if total > shown.len() {
        format!(
            "{} devices {} and {} more",
            total,
            shown.join(", "),
            total - shown.len()
        )
    } else {
        format!("devices {}", shown.join(", "))
    }
}

/// Merges issues that differ only in their device (same property, field and message)
/// into the first one, whose [`Issue::others`] then lists the other devices. Messages
/// are clipped. Order: first occurrence.
pub fn group_issues(issues: Vec<Issue>) -> Vec<Issue> {
    let mut out: Vec<Issue> = Vec::with_capacity(issues.len().min(1024));
    let mut index: HashMap<(Option<String>, Option<String>, String), usize> = HashMap::new();
    for mut issue in issues {
        issue.message = clip(std::mem::take(&mut issue.message));
        let Some(device) = issue.device.clone() else {
            out.push(issue);
            continue;
        };
        let key = (
            issue.property.clone(),
            issue.field.clone(),
            issue.message.clone(),
        );
        match index.get(&key) {
            Some(&i) => {
                let first = &mut out[i];
                first.others.push(device);
                first.others.append(&mut issue.others);
            }
            None => {
                index.insert(key, out.len());
                out.push(issue);
            }
        }
    }
    out.shrink_to_fit();
    out
}

/// [`group_issues`] over errors; unreadable-profile errors are clipped and kept in place.
pub fn group_errors(errors: Vec<ProfileError>) -> Vec<ProfileError> {
    let mut issues = Vec::new();
    // Positions of the unreadable errors among the issues, to keep the order.
    let mut out = Vec::new();
    for e in errors {
        match e {
            ProfileError::Invalid(i) => issues.push(i),
            ProfileError::Unreadable(s) => out.push(ProfileError::Unreadable(clip(s))),
        }
    }
    out.extend(group_issues(issues).into_iter().map(ProfileError::Invalid));
    out
}

/// The byte offset at which JSON `text` nests deeper than [`MAX_DEPTH`], if it does.
/// Brackets inside strings do not count. Linear, no allocation.
pub fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether a parsed tree nests deeper than [`MAX_DEPTH`] (for YAML, whose parser builds
/// the tree first). Iterative, so a deep tree cannot overflow the stack here.
pub fn tree_too_deep(v: &serde_json::Value) -> bool {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if depth > MAX_DEPTH {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// Where in `raw` a number too large for a JSON number (`1e400`) sits: its path
/// (`protocolConfig.slaveID`, `properties[2].minimum`) and its text. Only called after a
/// parse failed with "number out of range", so the cost of a walk is paid once per
/// broken entry.
pub fn out_of_range(raw: &RawValue) -> Option<(String, String)> {
    let mut path = Vec::new();
    let text = find_bad_number(raw, &mut path, 0)?;
    let mut rendered = String::new();
    for seg in path {
        if !seg.starts_with('[') && !rendered.is_empty() {
            rendered.push('.');
        }
        rendered.push_str(&seg);
    }
    Some((rendered, excerpt(text.trim())))
}

fn find_bad_number<'a>(raw: &'a RawValue, path: &mut Vec<String>, depth: usize) -> Option<&'a str> {
    if depth > MAX_DEPTH {
        return None;
    }
    let text = raw.get();
    match text.trim_start().bytes().next() {
        Some(b'{') => {
            let entries: Vec<(String, &RawValue)> = serde::Deserializer::deserialize_map(
                &mut serde_json::Deserializer::from_str(text),
                super::ci::Entries,
            )
            .ok()?;
            for (k, v) in entries {
                path.push(excerpt(&k));
                if let Some(found) = find_bad_number(v, path, depth + 1) {
                    return Some(found);
                }
                path.pop();
            }
            None
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            for (i, v) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                if let Some(found) = find_bad_number(v, path, depth + 1) {
                    return Some(found);
                }
                path.pop();
            }
            None
        }
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Value>(text)
            .is_err()
            .then_some(text),
        _ => None,
    }
}

/// Describes why an entry failed to deserialize: a number out of range is named by its
/// path (returned as the field), anything else is the clipped serde error.
pub fn describe(raw: &RawValue, err: &serde_json::Error) -> (Option<String>, String) {
    let msg = err.to_string();
    if msg.starts_with("number out of range")
        && let Some((path, number)) = out_of_range(raw)
    {
        return (
            Some(path),
            format!(
                "{number} is out of range for a number (the largest is about 1.8e308); use a value the field accepts"
            ),
        );
    }
    (None, clip(msg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn excerpts_and_clips_are_short() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "é".repeat(1000);
        let e = excerpt(&long);
        assert!(
            e.ends_with("... (2000 bytes)") && e.chars().count() < 100,
            "{e}"
        );
        let m = clip(format!(
            "invalid type: string {:?}, expected a sequence",
            "x".repeat(100_000)
        ));
        assert!(m.len() < 450 && m.contains("expected a sequence"), "{m}");
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(too_deep(&deep), Some(64));
        let fine = format!("{}\"[[[[\"{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(too_deep(&fine), None);
        let tree: serde_json::Value = serde_json::from_str(
            &"[".repeat(70)
                .chars()
                .chain("]".repeat(70).chars())
                .collect::<String>(),
        )
        .unwrap();
        assert!(tree_too_deep(&tree));
        assert!(!tree_too_deep(&serde_json::json!({"a": [[{"b": 1}]]})));
    }

    #[test]
    fn out_of_range_numbers_are_found_by_path() {
        let raw: &RawValue =
            serde_json::from_str(r#"{"name": "p", "cfg": {"a": [1, 2, {"slaveID": 1e400}]}}"#)
                .unwrap();
        assert_eq!(
            out_of_range(raw),
            Some(("cfg.a[2].slaveID".into(), "1e400".into()))
        );
    }

    #[test]
    fn same_problem_of_many_devices_is_one_issue() {
        let issue = |d: &str, m: &str| Issue::device(d, "model", m);
        let mut all: Vec<Issue> = (0..3000).map(|i| issue(&format!("d{i}"), "bad")).collect();
        all.push(issue("x", "other"));
        let g = group_issues(all);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].others.len(), 2999);
        let text = g[0].to_string();
        assert!(text.starts_with("3000 devices \"d0\", \"d1\""), "{text}");
        assert!(text.contains("and 2990 more"), "{text}");
        assert!(text.len() < 200, "{text}");
    }
}
