//! Shared by the integration tests: the smart plug's files, played by http-sim.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::path::{Path, PathBuf};

use http_sim::{MapFile, Simulator};
use serde_json::Value as Json;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// The smart plug's simulator with its dynamics off (static values), with `replace`
/// applied to its YAML.
pub fn plug_sim(replace: &[(&str, &str)]) -> Simulator {
    let mut yaml =
        read("device-models/smart-plug/sim-http.yaml").replace("tickMs: 1000", "tickMs: 0");
    for (from, to) in replace {
        assert!(yaml.contains(from), "{from:?} not in sim-http.yaml");
        yaml = yaml.replace(from, to);
    }
    Simulator::from_map(&MapFile::parse(&yaml, "smart-plug").unwrap())
}

/// The smart plug's v1alpha2 profile pointed at `port`, polled every 200 ms.
pub fn plug_profile(port: u16) -> Json {
    let text = read("device-models/smart-plug/profile.json")
        .replace(
            "\"collectCycle\": 1000000000",
            "\"collectCycle\": 200000000",
        )
        .replace("http://127.0.0.1:8080", &format!("http://127.0.0.1:{port}"));
    serde_json::from_str(&text).unwrap()
}
