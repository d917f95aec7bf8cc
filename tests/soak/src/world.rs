//! The soak's devices, as a modbus-sim map and a KubeEdge v1alpha2 profile (pure).

use serde_json::{Value as Json, json};

/// Holding register of each unit that takes desired values.
pub const SETPOINT: u16 = 0;

/// Name of device `i` (0-based); its unit id is `i + 1`.
pub fn device_name(i: usize) -> String {
    format!("soak-{:02}", i + 1)
}

/// The simulator map: `devices` units (ids 1..=devices) plus one spare, each with a
/// setpoint holding register and a temperature input that wanders.
pub fn sim_map(devices: usize) -> String {
    let mut y = String::from(
        "tick_ms: 200\nendpoints:\n  - name: soak\n    tcp: 127.0.0.1:0\n    units:\n",
    );
    for unit in 1..=devices + 1 {
        y.push_str(&format!(
            "      - id: {unit}\n        holding_registers: [ {{ start: 0, count: 4 }} ]\n        values:\n          - {{ name: temperature, table: input_registers, address: 0, type: i16, value: 200, dynamics: {{ random_walk: {{ step: 3, min: 100, max: 300 }} }} }}\n"
        ));
    }
    y
}

/// The profile: the `devices` soak devices with their collect cycles (ms), and the spare
/// device (unit `devices + 1`) when `spare` is set.
pub fn profile(port: u16, cycles_ms: &[u64], spare: bool) -> Json {
    let mut instances = Vec::new();
    let mut protocols = Vec::new();
    let n = cycles_ms.len() + usize::from(spare);
    for i in 0..n {
        let name = device_name(i);
        let cycle_ms = cycles_ms.get(i).copied().unwrap_or(1000);
        let ns = i64::try_from(cycle_ms).unwrap_or(1000) * 1_000_000;
        let visitor = |prop: &str, register: &str, offset: u16| {
            json!({"name": prop, "propertyName": prop, "modelName": "soak-model", "protocol": "modbus",
                "collectCycle": ns, "reportCycle": 1_000_000_000i64,
                "visitorConfig": {"register": register, "offset": offset, "limit": 1}})
        };
        instances.push(json!({
            "id": name, "name": name, "protocol": format!("modbus-{name}"), "model": "soak-model",
            "twins": [{"propertyName": "setpoint"}, {"propertyName": "temperature"}],
            "propertyVisitors": [visitor("setpoint", "HoldingRegister", SETPOINT), visitor("temperature", "InputRegister", 0)]
        }));
        protocols.push(json!({
            "name": format!("modbus-{name}"), "protocol": "modbus",
            "protocolConfig": {"slaveID": i + 1},
            "protocolCommonConfig": {"tcp": {"ip": "127.0.0.1", "port": port}}
        }));
    }
    json!({
        "deviceInstances": instances,
        "deviceModels": [{"name": "soak-model", "properties": [
            {"name": "setpoint", "dataType": "int", "accessMode": "ReadWrite"},
            {"name": "temperature", "dataType": "int", "accessMode": "ReadOnly"}]}],
        "protocols": protocols
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_map_parses_with_one_spare_unit() {
        let map = modbus_sim::MapFile::parse(&sim_map(3), "soak").unwrap();
        let sim = modbus_sim::Simulator::from_map(&map.endpoints[0].device);
        assert_eq!(sim.unit_ids(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn the_profile_lists_the_spare_only_when_asked() {
        let p = profile(1502, &[500, 800], false);
        assert_eq!(p["deviceInstances"].as_array().unwrap().len(), 2);
        let p = profile(1502, &[500, 800], true);
        let list = p["deviceInstances"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2]["name"], "soak-03");
        assert_eq!(p["protocols"][2]["protocolConfig"]["slaveID"], 3);
        assert_eq!(
            list[1]["propertyVisitors"][0]["collectCycle"],
            800_000_000i64
        );
    }
}
