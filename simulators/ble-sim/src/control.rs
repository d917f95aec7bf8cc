//! The control endpoint's API: read and change the faults of a running
//! simulator (`--control ADDR`, see the README). The HTTP transport is
//! `sim-control`.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /faults` | none | every device's faults, by address |
//! | `POST /faults` | a [`FaultRequest`] | the device's faults after the change |
//! | `POST /drop-link` | optional `{device: MAC}` | whether the device was connected |

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sim_control::{
    BoxFuture, ControlHandler, ControlRequest, ControlResponse, FaultMode, parse_document,
};

use crate::error::SimError;
use crate::faults::DeviceFaultConfig;
use crate::sim::BleSim;

/// The body of `POST /faults` (JSON or YAML).
///
/// ```yaml
/// device: "A4:C1:38:00:00:02"    # optional when the file has one device
/// mode: add                      # or replace (the default)
/// faults: { read_error: failed } # the device file's fault format
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Device address; may be left out when there is only one device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Replace (default) or add.
    #[serde(default)]
    pub mode: FaultMode,
    /// The faults, in the device file's format; absent = none.
    #[serde(default)]
    pub faults: DeviceFaultConfig,
}

/// The body of `POST /drop-link` (optional when there is one device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Device address; may be left out when there is only one device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Serves the faults of a [`BleSim`] (what the binary does with `--control`).
#[derive(Debug, Clone)]
pub struct SimControl {
    sim: Arc<BleSim>,
}

impl SimControl {
    /// Serves the faults of `sim`.
    pub fn new(sim: Arc<BleSim>) -> Self {
        Self { sim }
    }
}

impl ControlHandler for SimControl {
    fn handle(&self, req: ControlRequest) -> BoxFuture<'_, ControlResponse> {
        Box::pin(handle(&self.sim, req))
    }
}

/// Answers one control request.
pub async fn handle(sim: &BleSim, req: ControlRequest) -> ControlResponse {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/faults") => all_faults(sim),
        ("POST", "/faults") => set_faults(sim, &req.body),
        ("POST", "/drop-link") => drop_link(sim, &req.body).await,
        ("GET", "") => ControlResponse::ok(serde_json::json!({
            "paths": ["GET /faults", "POST /faults", "POST /drop-link"],
        })),
        (m, p @ "/faults") => ControlResponse::method_not_allowed(m, p, "GET or POST"),
        (m, p @ "/drop-link") => ControlResponse::method_not_allowed(m, p, "POST"),
        (m, p) => ControlResponse::not_found(format!(
            "no {m} {p}; the paths are GET /faults, POST /faults, POST /drop-link"
        )),
    }
}

fn error_response(what: &str, e: &SimError) -> ControlResponse {
    let message = format!("{what}: {e}");
    match e {
        SimError::UnknownDevice(_) | SimError::UnknownCharacteristic { .. } => {
            ControlResponse::not_found(message)
        }
        SimError::Id(_) | SimError::Config(_) => ControlResponse::bad_request(message),
        _ => ControlResponse::error(500, message),
    }
}

/// The device named in the request, or the only one.
fn pick(sim: &BleSim, device: Option<&str>, what: &str) -> Result<String, ControlResponse> {
    let all = sim.device_addresses();
    match (device, all.as_slice()) {
        (Some(d), _) => Ok(d.to_owned()),
        (None, [one]) => Ok(one.to_string()),
        (None, _) => {
            let list: Vec<String> = all.iter().map(ToString::to_string).collect();
            Err(ControlResponse::bad_request(format!(
                "{what}: the device file has several devices ({}): name one with `device` (--device)",
                list.join(", ")
            )))
        }
    }
}

fn all_faults(sim: &BleSim) -> ControlResponse {
    let mut devices = BTreeMap::new();
    for mac in sim.device_addresses() {
        let mac = mac.to_string();
        if let Ok(f) = sim.fault_config(&mac) {
            devices.insert(mac, f);
        }
    }
    ControlResponse::ok(serde_json::json!({ "devices": devices }))
}

fn set_faults(sim: &BleSim, body: &[u8]) -> ControlResponse {
    const WHAT: &str = "POST /faults";
    let req: FaultRequest = match parse_document(body, WHAT) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mac = match pick(sim, req.device.as_deref(), WHAT) {
        Ok(m) => m,
        Err(e) => return e,
    };
    match sim.set_fault_config(&mac, &req.faults, req.mode) {
        Ok(now) => ControlResponse::ok(serde_json::json!({ "device": mac, "faults": now })),
        Err(e) => error_response(WHAT, &e),
    }
}

async fn drop_link(sim: &BleSim, body: &[u8]) -> ControlResponse {
    const WHAT: &str = "POST /drop-link";
    let req: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        match parse_document(body, WHAT) {
            Ok(r) => r,
            Err(e) => return e,
        }
    };
    let mac = match pick(sim, req.device.as_deref(), WHAT) {
        Ok(m) => m,
        Err(e) => return e,
    };
    match sim.drop_link(&mac).await {
        Ok(was) => {
            tracing::info!(device = %mac, was_connected = was, "link dropped (control endpoint)");
            ControlResponse::ok(serde_json::json!({ "device": mac, "was_connected": was }))
        }
        Err(e) => error_response(WHAT, &e),
    }
}
