//! `modbus-mapper check`: unknown keys are warnings with suggestions, `--strict` fails on
//! them, `--json` is one JSON document, and KubeEdge's samples have no unknown keys.
#![allow(clippy::unwrap_used, missing_docs)]

mod process;

use std::path::{Path, PathBuf};

use process::command;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = command(dir).arg("check").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The thermostat profile with `scale` misspelt `scal`.
fn typo_profile(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("device-models/thermostat/profile.json"))
        .unwrap()
        .replace("\"scale\"", "\"scal\"");
    assert!(text.contains("\"scal\""));
    let path = dir.join("typo.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_misspelt_visitor_key_warns_with_a_suggestion_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let profile = typo_profile(dir.path());
    let profile = profile.to_str().unwrap();

    let (ok, out, _) = check(dir.path(), &[profile]);
    assert!(ok, "warnings alone pass without --strict: {out}");
    assert!(
        out.contains(
            "field \"visitorConfig.scal\": unknown key (did you mean visitorConfig.scale?)"
        ),
        "{out}"
    );
    assert!(out.contains("(2 unknown key(s))"), "{out}");
    // Configs read as key=value lines, not Rust structs.
    assert!(
        out.contains("protocol config: unit=1 link=\"tcp 127.0.0.1:1502\""),
        "{out}"
    );
    assert!(!out.contains("ModbusVisitor {"), "{out}");

    let (ok, out, _) = check(dir.path(), &["--strict", profile]);
    assert!(!ok, "--strict fails on warnings: {out}");
    assert!(out.contains("did you mean visitorConfig.scale?"), "{out}");

    // The correct profile passes --strict.
    let good = repo().join("device-models/thermostat/profile.json");
    let (ok, out, _) = check(dir.path(), &["--strict", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.ends_with("0 warning(s)\n"), "{out}");
}

#[test]
fn json_output_is_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let profile = typo_profile(dir.path());
    let (ok, out, _) = check(dir.path(), &["--json", profile.to_str().unwrap()]);
    assert!(ok, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["devices"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["devices"][0]["id"], "thermostat");
    assert_eq!(
        doc["devices"][0]["properties"][0]["visitor"]["table"],
        "Input"
    );
    assert!(doc["skipped"].as_array().unwrap().is_empty());
    assert!(doc["errors"].as_array().unwrap().is_empty());
    let warnings = doc["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{doc}");
    assert_eq!(warnings[0]["device"], "thermostat");
    assert_eq!(warnings[0]["property"], "temperature");
    assert_eq!(warnings[0]["field"], "visitorConfig.scal");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean visitorConfig.scale?"),
        "{doc}"
    );

    // Errors are in the document too, and fail the check.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"deviceInstances\": 5}").unwrap();
    let (ok, out, _) = check(dir.path(), &["--json", bad.to_str().unwrap()]);
    assert!(!ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(!doc["errors"].as_array().unwrap().is_empty(), "{doc}");
}

#[test]
fn config_file_typos_are_warnings_that_strict_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "mqtt:\n  sever: tcp://127.0.0.1:1883\n").unwrap();
    let good = repo().join("device-models/thermostat/profile.json");
    let good = good.to_str().unwrap();
    let (ok, out, err) = check(dir.path(), &[good]);
    assert!(ok, "{out}");
    assert!(
        out.contains("field \"mqtt.sever\": unknown key (did you mean mqtt.server?)"),
        "{out}"
    );
    assert!(
        err.contains("unknown key mqtt.sever (did you mean mqtt.server?)"),
        "logged at start-up: {err}"
    );
    let (ok, _, _) = check(dir.path(), &["--strict", good]);
    assert!(!ok);
}

/// A model and an instance of the KubeEdge samples as one multi-document file.
fn pair(dir: &Path, model: &str, instance: &str) -> PathBuf {
    let s = repo().join("tests/fixtures/kubeedge-samples");
    let text = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(s.join(model)).unwrap(),
        std::fs::read_to_string(s.join(instance)).unwrap()
    );
    let path = dir.join(format!("{instance}.pair.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn samples_and_device_models_have_no_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let samples = repo().join("tests/fixtures/kubeedge-samples");
    let mut files: Vec<PathBuf> = [
        "modbus_mapper-deviceProfile.json",
        "modbus-configmap_test.json",
        "mapper-sdk-go-configmap_test.json",
        "rtureadholding.json",
        "writeint32.json",
    ]
    .iter()
    .map(|n| samples.join(n))
    .collect();
    for model in ["thermostat", "energy-meter", "rs485-line"] {
        for f in ["profile.json", "v1beta1.yaml"] {
            let p = repo().join("device-models").join(model).join(f);
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.push(pair(
        dir.path(),
        "modbus-device-model.yaml",
        "modbustcp-device-instance.yaml",
    ));
    files.push(pair(
        dir.path(),
        "modbus-device-model.yaml",
        "modbusrtu-device-instance.yaml",
    ));
    let mut modbus_devices = 0;
    for f in &files {
        let (_, out, _) = check(dir.path(), &["--json", f.to_str().unwrap()]);
        let doc: Value = serde_json::from_str(&out).unwrap();
        modbus_devices += doc["devices"].as_array().unwrap().len();
        let unknown: Vec<&Value> = doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["unknownKey"] == true)
            .collect();
        assert!(unknown.is_empty(), "{}: {unknown:?}", f.display());
    }
    assert!(
        modbus_devices >= 8,
        "the samples were read: {modbus_devices}"
    );
}
