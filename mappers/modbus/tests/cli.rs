//! The `modbus-mapper` binary's own flags: `--version`, `--help`, and the operator
//! logging (`--log-level` names, `--log-format json`, no colour into a file).
#![allow(clippy::unwrap_used, missing_docs)]

mod process;

use std::time::Duration;

use mapper_sdk::testing::free_port;
use process::{MapperProcess, command};

const WAIT: Duration = Duration::from_secs(20);

fn output(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    command(dir.path()).args(args).output().unwrap()
}

#[test]
fn version_names_the_binary() {
    let out = output(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("modbus-mapper {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_names_the_binary_and_shows_defaults() {
    let out = output(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Usage: modbus-mapper"), "{help}");
    for want in [
        "[default: config.yaml]",
        "[default: tcp://127.0.0.1:1883]",
        "[default: /opt/kubeedge/deviceProfile.json]",
        "[default: text]",
        "[env: LOG_FORMAT=]",
        "--log-format <LOG_FORMAT>",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}

/// A mapper with no devices and a broker address nobody listens on: it runs and logs.
fn start(args: &[&str], envs: &[(&str, &str)]) -> (MapperProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("deviceProfile.json");
    std::fs::write(
        &profile,
        r#"{"deviceInstances": [], "deviceModels": [], "protocols": []}"#,
    )
    .unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("--mqtt-address")
        .arg(format!("tcp://127.0.0.1:{}", free_port()))
        .arg("--profile")
        .arg(&profile)
        .args(args)
        .envs(envs.iter().copied());
    let m = MapperProcess::spawn(cmd, dir.path());
    (m, dir)
}

#[test]
fn warning_is_a_level_and_hides_info() {
    let (mut m, _dir) = start(&["--log-level", "WARNING"], &[]);
    // Warnings still arrive (the broker is unreachable), info lines do not.
    assert!(m.wait_for_log("WARN", WAIT), "{}", m.log());
    let status = m.stop().unwrap();
    assert!(status.success(), "{status:?}");
    let log = m.log();
    assert!(!log.contains("INFO"), "{log}");
    assert!(!log.contains("not a log level"), "{log}");
}

#[test]
fn an_unknown_level_is_named_and_info_is_used() {
    let (mut m, _dir) = start(&["--log-level", "loud"], &[]);
    assert!(
        m.wait_for_log("watching the device profile", WAIT),
        "{}",
        m.log()
    );
    m.stop().unwrap();
    let log = m.log();
    assert!(log.contains("\"loud\" is not a log level"), "{log}");
    assert!(log.contains("warn (warning)"), "{log}");
}

#[test]
fn rust_log_takes_the_same_names() {
    let (mut m, _dir) = start(&[], &[("RUST_LOG", "Verbose")]);
    assert!(m.wait_for_log("DEBUG", WAIT), "{}", m.log());
    m.stop().unwrap();
}

#[test]
fn text_logs_into_a_file_have_no_colour() {
    let (mut m, _dir) = start(&[], &[]);
    assert!(
        m.wait_for_log("watching the device profile", WAIT),
        "{}",
        m.log()
    );
    m.stop().unwrap();
    let log = m.log();
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in {log:?}");
}

#[test]
fn json_format_writes_one_object_per_line() {
    for (args, envs) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("LOG_FORMAT", "JSON")][..]),
    ] {
        let (mut m, _dir) = start(args, envs);
        assert!(
            m.wait_for_log("watching the device profile", WAIT),
            "{}",
            m.log()
        );
        m.stop().unwrap();
        let log = m.log();
        assert!(!log.contains('\u{1b}'), "ANSI escape in {log:?}");
        let mut lines = 0;
        for line in log.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
            lines += 1;
        }
        assert!(lines > 0);
    }
}
