//! The `check` report an operator runs before deploying a profile.
#![allow(clippy::unwrap_used, missing_docs)]

use mapper_sdk::app::check_report;
use mapper_sdk::load;
use mapper_sdk::profile::ResolveOptions;
use mapper_sdk::testing::{MemoryDriver, MemoryState};

#[test]
fn check_lists_devices_skips_other_protocols_and_names_every_error() {
    let text = r#"{
     "deviceInstances": [
      {"id": "ok", "protocol": "p-mem", "model": "m",
       "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"key": "t"}},
                            {"propertyName": "u", "visitorConfig": {"key": "has space"}}]},
      {"id": "ble-1", "protocol": "p-ble", "model": "m", "propertyVisitors": []},
      {"id": "bad", "protocol": "p-mem", "model": "missing"}
     ],
     "deviceModels": [{"name": "m", "properties": [{"name": "t", "dataType": "int"}, {"name": "u", "dataType": "string"}]}],
     "protocols": [{"name": "p-mem", "protocol": "memory"}, {"name": "p-ble", "protocol": "bluetooth"}]
    }"#;
    let driver = MemoryDriver::new(MemoryState::default());
    let loaded = load(&driver, text, &ResolveOptions::default());
    assert_eq!(loaded.devices.len(), 1);
    assert_eq!(
        loaded.devices[0].properties.len(),
        1,
        "the bad visitor is dropped, the device runs"
    );
    let report = check_report(&loaded);
    assert!(
        report.contains("device ok (protocol memory, model m)"),
        "{report}"
    );
    assert!(
        report.contains("skipped ble-1: protocol bluetooth is not handled by this mapper"),
        "{report}"
    );
    assert!(
        report.contains("error: device \"ok\", property \"u\", field \"visitorConfig.key\": keys may not contain spaces"),
        "{report}"
    );
    assert!(
        report.contains("error: device \"bad\", field \"model\""),
        "{report}"
    );
    assert!(
        report.ends_with("1 device(s) ok, 1 skipped, 2 error(s), 0 warning(s)\n"),
        "{report}"
    );
}

fn loaded(text: &str) -> mapper_sdk::app::Loaded<MemoryDriver> {
    load(
        &MemoryDriver::new(MemoryState::default()),
        text,
        &ResolveOptions::default(),
    )
}

const GOOD: &str = r#"{"deviceInstances": [{"id": "a", "protocol": "p", "model": "m",
  "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"key": "t"}}]}],
 "deviceModels": [{"name": "m", "properties": [{"name": "t", "dataType": "int"}]}],
 "protocols": [{"name": "p", "protocol": "memory"}]}"#;

#[test]
fn profiles_nothing_can_be_used_from_are_unreadable() {
    let good = loaded(GOOD);
    assert!(!good.unreadable && good.errors.is_empty() && good.devices.len() == 1);
    // An empty profile is a valid one: it stops every device.
    assert!(!loaded(r#"{"deviceInstances": []}"#).unreadable);
    let null_list = GOOD.replacen('{', r#"{"propertyVisitors": null, "#, 1);
    let object_list = GOOD.replace(
        r#""protocols": [{"name": "p", "protocol": "memory"}]"#,
        r#""protocols": {"name": "p", "protocol": "memory"}"#,
    );
    let deep = format!(
        r#"{{"deviceInstances": {}1{}}}"#,
        "[".repeat(80),
        "]".repeat(80)
    );
    let cases = [
        (
            r#"{"deviceInstances":[[[1]]]}"#.to_owned(),
            "must be a JSON object",
        ),
        (deep, "levels deep"),
        (null_list, "\"propertyVisitors\" must be a list, got null"),
        (object_list, "\"protocols\" must be a list, got an object"),
        (
            GOOD.replace("\"model\": \"m\"", "\"model\": \"nope\""),
            "is not in the profile",
        ),
    ];
    for (text, want) in cases {
        let l = loaded(&text);
        let report = check_report(&l);
        assert!(l.unreadable, "{report}");
        assert!(l.devices.is_empty() && !l.errors.is_empty(), "{report}");
        assert!(report.contains(want), "{want}: {report}");
    }
}

#[test]
fn a_device_with_errors_is_reported_failed_not_absent() {
    let two = GOOD.replace(
        r#"{"id": "a", "protocol": "p", "model": "m","#,
        r#"{"id": "b", "protocol": "p", "model": "nope"}, {"id": "a", "protocol": "p", "model": "m","#,
    );
    let l = loaded(&two);
    assert!(!l.unreadable);
    assert_eq!(l.devices.len(), 1);
    let failed: Vec<&str> = l.failed.iter().map(|d| d.as_str()).collect();
    assert_eq!(failed, ["b"]);
}

/// Builds a v1beta1 `List` of one DeviceModel whose `properties` is a string of `big`
/// bytes and `n` Devices using it.
fn beta_list(big: usize, n: usize) -> String {
    let mut items = vec![format!(
        r#"{{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"DeviceModel","metadata":{{"name":"m"}},"spec":{{"properties":"{}"}}}}"#,
        "x".repeat(big)
    )];
    items.extend((0..n).map(|i| format!(
        r#"{{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"Device","metadata":{{"name":"d{i}"}},"spec":{{"deviceModelRef":{{"name":"m"}},"protocol":{{"protocolName":"memory"}}}}}}"#
    )));
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
        items.join(",")
    )
}

/// A device-profile JSON of `n` devices whose one model's `properties` is a `big`-byte
/// string.
fn bad_model(big: usize, n: usize) -> String {
    let instances: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"d{i}","protocol":"p","model":"m"}}"#))
        .collect();
    format!(
        r#"{{"deviceInstances":[{}],"deviceModels":[{{"name":"m","properties":"{}"}}],"protocols":[{{"name":"p","protocol":"memory"}}]}}"#,
        instances.join(","),
        "x".repeat(big)
    )
}

#[test]
fn adversarial_megabyte_profiles_give_a_short_report() {
    // The ConfigMap limit is 1 MiB; these used to make reports of hundreds of MB.
    for text in [
        bad_model(300_000, 2_000),
        bad_model(900_000, 1_200),
        beta_list(400_000, 3_000),
    ] {
        assert!(text.len() < 1_048_576, "{}", text.len());
        let l = loaded(&text);
        let report = check_report(&l);
        assert!(l.unreadable);
        assert_eq!(l.errors.len(), 2, "{report}");
        assert!(
            report.len() < 2_000,
            "{} bytes: {}",
            report.len(),
            &report[..2000.min(report.len())]
        );
        assert!(report.contains("device model \"m\""), "{report}");
        assert!(report.contains(" more, field \"model\""), "{report}");
        assert!(
            report.contains(" bytes)"),
            "the excerpt gives the length: {report}"
        );
    }
}

#[test]
fn unknown_keys_are_warnings_grouped_across_devices() {
    let text = r#"{"deviceInstances": [
        {"id": "a", "protocol": "p", "model": "m",
         "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"kye": "t"}}]},
        {"id": "b", "protocol": "p", "model": "m",
         "propertyVisitors": [{"propertyName": "t", "visitorConfig": {"Key": "t"}}]}],
     "deviceModels": [{"name": "m", "properties": [{"name": "t", "dataType": "int"}]}],
     "protocols": [{"name": "p", "protocol": "memory", "protocolConfig": {"devcie": "x"}}]}"#;
    let l = loaded(text);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!(l.devices.len(), 2, "warnings do not stop devices");
    let shown: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "devices \"a\", \"b\", field \"protocolConfig.devcie\": unknown key (did you mean protocolConfig.device?); it is ignored",
            "device \"a\", property \"t\", field \"visitorConfig.kye\": unknown key (did you mean visitorConfig.key?); it is ignored",
        ]
    );
    let report = check_report(&l);
    assert!(
        report
            .ends_with("2 device(s) ok, 0 skipped, 0 error(s), 2 warning(s) (2 unknown key(s))\n"),
        "{report}"
    );
    assert!(
        report.contains("  t int ReadWrite every 1s twin: kye=t\n"),
        "{report}"
    );
    let doc = mapper_sdk::check::json(None, &l, &[]);
    assert_eq!(doc["warnings"][1]["property"], "t");
    assert_eq!(doc["warnings"][1]["field"], "visitorConfig.kye");
    assert_eq!(mapper_sdk::check::unknown_key_count(&l.warnings), 2);
}
