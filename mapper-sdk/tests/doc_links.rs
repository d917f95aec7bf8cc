//! References to our own documents cannot rot: every `docs/NAME.md#anchor` cited anywhere
//! in the repository (and every `NAME.md#anchor` or `#anchor` link inside `docs/`) must
//! name a heading of that file, under GitHub's anchor rules; and no reference may point
//! at the numbered sections of the external contract drafts (`§2.3`, `quirk E4`, ...)
//! that the documents in `docs/` replaced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mapper-sdk has a parent directory")
        .to_path_buf()
}

/// Files whose text is searched for references.
const EXTENSIONS: &[&str] = &["rs", "md", "yaml", "yml", "sh", "toml", "proto", "py"];

/// Every text file of the repository, skipping build output, git data and verbatim
/// third-party fixtures.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name == "target" || name.starts_with('.') || name == "kubeedge-samples" {
                continue;
            }
            text_files(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            out.push(path);
        }
    }
}

/// GitHub's anchor for a heading text: lower case; letters, digits, `-` and `_` kept;
/// spaces become `-`; everything else (punctuation, backticks) is dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c.to_lowercase().collect::<String>())
            } else if c == ' ' {
                Some("-".to_owned())
            } else {
                None
            }
        })
        .collect()
}

/// The anchors of a Markdown file (ATX headings outside code fences), with GitHub's
/// `-1`, `-2` suffixes for repeated headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

fn anchor_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// `(document, anchor, line)` for every `docs/NAME.md#anchor` in `text`; inside `docs/`
/// (`own` is then the file's name) also `](NAME.md#anchor)` and `](#anchor)` links.
fn references(text: &str, own: Option<&str>) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(".md#") {
            let before = &rest[..at];
            let name_start = before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .map_or(0, |i| i + 1);
            let name = &before[name_start..];
            let prefix = &before[..name_start];
            let after = &rest[at + 4..];
            let anchor: String = after.chars().take_while(|&c| anchor_char(c)).collect();
            if prefix.ends_with("docs/") || (own.is_some() && prefix.ends_with("](")) {
                out.push((format!("{name}.md"), anchor, no + 1));
            }
            rest = after;
        }
        if let Some(own) = own {
            let mut rest = line;
            while let Some(at) = rest.find("](#") {
                let after = &rest[at + 3..];
                let anchor: String = after.chars().take_while(|&c| anchor_char(c)).collect();
                out.push((own.to_owned(), anchor, no + 1));
                rest = after;
            }
        }
    }
    out
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("Quirk: the ConfigMap lags behind MQTT"),
        "quirk-the-configmap-lags-behind-mqtt"
    );
    assert_eq!(
        slug("Quirk: mappers must not publish cloud_updated"),
        "quirk-mappers-must-not-publish-cloud_updated"
    );
    assert_eq!(
        slug("The mappers-go config.yaml"),
        "the-mappers-go-configyaml"
    );
    assert_eq!(
        slug("Quirk: the `UpdateDevice` storm up to 1.20"),
        "quirk-the-updatedevice-storm-up-to-120"
    );
    let a = anchors("# A\n## B b\n```\n# not a heading\n```\n### B b\n#nope\n");
    assert_eq!(
        a,
        ["a", "b-b", "b-b-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let refs = references(
        "see docs/kubeedge-contract.md#rule-x, and [y](kubeedge-dmi.md#y) [z](#z)",
        Some("kubeedge-dmi.md"),
    );
    assert_eq!(
        refs,
        vec![
            ("kubeedge-contract.md".into(), "rule-x".into(), 1),
            ("kubeedge-dmi.md".into(), "y".into(), 1),
            ("kubeedge-dmi.md".into(), "z".into(), 1),
        ]
    );
    // Outside docs/, only docs/-prefixed references count.
    assert!(references("[y](kubeedge-dmi.md#y) [z](#z)", None).is_empty());
}

#[test]
fn every_cited_docs_anchor_is_a_heading() {
    let root = repo();
    let docs = root.join("docs");
    let mut headings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in fs::read_dir(&docs).expect("docs/ exists").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            let text = fs::read_to_string(entry.path()).unwrap();
            headings.insert(name, anchors(&text));
        }
    }
    assert!(
        headings.contains_key("kubeedge-contract.md") && headings.contains_key("kubeedge-dmi.md"),
        "docs/kubeedge-contract.md and docs/kubeedge-dmi.md must exist"
    );
    let mut files = Vec::new();
    text_files(&root, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0usize;
    // This file's own examples are not references.
    let this = Path::new(file!()).file_name().unwrap();
    for file in files.iter().filter(|f| f.file_name() != Some(this)) {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let own = (file.parent() == Some(docs.as_path()))
            .then(|| file.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten();
        for (doc, anchor, line) in references(&text, own.as_deref()) {
            checked += 1;
            let rel = file.strip_prefix(&root).unwrap_or(file).display();
            match headings.get(&doc) {
                None => broken.push(format!("{rel}:{line}: docs/{doc} does not exist")),
                Some(set) if anchor.is_empty() || !set.contains(&anchor) => broken.push(format!(
                    "{rel}:{line}: docs/{doc}#{anchor} is not a heading of docs/{doc}"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken document references (fix the reference or the heading):\n{}",
        broken.join("\n")
    );
    // The repository cites its documents in many places; finding none means the scan broke.
    assert!(
        checked >= 30,
        "only {checked} references found; is the scan broken?"
    );
}

#[test]
fn no_reference_to_numbered_contract_sections() {
    let root = repo();
    let mut files = Vec::new();
    text_files(&root, &mut files);
    let this = Path::new(file!()).file_name().unwrap();
    let mut found = Vec::new();
    for file in &files {
        if file.file_name() == Some(this) {
            continue;
        }
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (no, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let numbered_section = line
                .match_indices('§')
                .any(|(i, s)| line[i + s.len()..].starts_with(|c: char| c.is_ascii_digit()));
            let quirk_or_bug_number = ["quirk ", "bug ", "contract "].iter().any(|w| {
                lower.match_indices(w).any(|(i, _)| {
                    let mut rest = line[i + w.len()..].chars();
                    matches!(
                        rest.next(),
                        Some('B' | 'E' | 'F' | 'J' | 'M' | 'O' | 'Q' | 'S')
                    ) && rest.next().is_some_and(|c| c.is_ascii_digit())
                })
            });
            let outside = lower.contains("reference/kubeedge-")
                || lower.contains("../kubeedge-contract.md")
                || lower.contains("`kubeedge-dmi.md` §");
            if numbered_section || quirk_or_bug_number || outside {
                let rel = file.strip_prefix(&root).unwrap_or(file).display();
                found.push(format!("{rel}:{}: {}", no + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to numbered sections of a document outside the repository; cite a heading of docs/kubeedge-contract.md or docs/kubeedge-dmi.md instead:\n{}",
        found.join("\n")
    );
}
