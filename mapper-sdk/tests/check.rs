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
