//! Pure generators: simulator maps (YAML) and KubeEdge v1alpha2 device profiles (JSON)
//! for a benchmark workload, and the RTU wire-time arithmetic.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// Holding register written by the twin-latency scenario (P3).
pub const SETPOINT_ADDRESS: u16 = 100;
/// Property name of the writable register.
pub const SETPOINT: &str = "setpoint";

/// How the simulator is reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    /// Modbus TCP, one simulator endpoint (port) per bus.
    Tcp,
    /// Modbus RTU on a pty with emulated wire time at this baud rate.
    Rtu {
        /// Line speed.
        baud: u32,
    },
}

/// One benchmark workload: `endpoints` buses, each with the same units.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Number of buses (TCP ports or RTU lines).
    pub endpoints: usize,
    /// Properties per unit, one entry per unit id (1, 2, ...) on each bus.
    pub units: Vec<usize>,
    /// Collect cycle of every property.
    pub cycle: Duration,
    /// Simulator dynamics tick; `None` for constant values.
    pub change_tick: Option<Duration>,
    /// Transport.
    pub link: Link,
    /// Ask the mapper to read each property with its own request.
    pub single_request_per_property: bool,
    /// Add a writable holding register (`setpoint`) to every device.
    pub writable: bool,
}

/// Where a bus of the running simulator is reachable.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// TCP port on 127.0.0.1.
    Tcp(u16),
    /// Path of the pty client end.
    Rtu(String),
}

impl Workload {
    /// A TCP workload of `devices` devices with `props` contiguous properties each,
    /// spread over buses of at most `per_bus` units.
    pub fn tcp(devices: usize, props: usize, cycle: Duration, per_bus: usize) -> Self {
        let per_bus = per_bus.clamp(1, 247);
        let endpoints = devices.div_ceil(per_bus).max(1);
        let units = devices.div_ceil(endpoints).max(1);
        Self {
            endpoints,
            units: vec![props; units],
            cycle,
            change_tick: None,
            link: Link::Tcp,
            single_request_per_property: false,
            writable: false,
        }
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.endpoints * self.units.len()
    }

    /// Number of polled properties (the writable register included).
    pub fn properties(&self) -> usize {
        self.endpoints
            * (self.units.iter().sum::<usize>() + usize::from(self.writable) * self.units.len())
    }

    /// Property reads due per second.
    pub fn properties_per_second(&self) -> f64 {
        self.properties() as f64 / self.cycle.as_secs_f64()
    }

    /// Device id of unit index `u` on bus `e`.
    pub fn device_id(e: usize, u: usize) -> String {
        format!("dev-{e}-{}", u + 1)
    }

    /// Largest property count of a unit.
    fn max_props(&self) -> usize {
        self.units.iter().copied().max().unwrap_or(0)
    }
}

/// Device end of RTU line `e` below `dir` (the mapper opens [`rtu_mapper_end`]).
pub fn rtu_device_end(dir: &std::path::Path, e: usize) -> std::path::PathBuf {
    dir.join(format!("line{e}-device"))
}

/// Mapper end of RTU line `e` below `dir`.
pub fn rtu_mapper_end(dir: &std::path::Path, e: usize) -> std::path::PathBuf {
    dir.join(format!("line{e}-mapper"))
}

/// Simulator map (YAML) for the workload; TCP endpoints listen on port 0. RTU lines are
/// served on [`rtu_device_end`] below `rtu_dir` (a socat pty pair) when given, else on a
/// pty the simulator creates.
pub fn sim_map(w: &Workload, rtu_dir: Option<&std::path::Path>) -> String {
    let tick = w.change_tick.map_or(1000, |t| t.as_millis().max(1));
    let mut y = format!("tick_ms: {tick}\nseed: 1\nendpoints:\n");
    for e in 0..w.endpoints {
        let _ = writeln!(y, "  - name: bus{e}");
        match w.link {
            Link::Tcp => y.push_str("    tcp: 127.0.0.1:0\n"),
            Link::Rtu { baud } => {
                let path = rtu_dir
                    .map(|d| format!("path: {}, ", rtu_device_end(d, e).display()))
                    .unwrap_or_default();
                let _ = writeln!(y, "    rtu: {{ {path}baud: {baud}, wire_time: true }}");
            }
        }
        y.push_str("    units:\n");
        for (u, &props) in w.units.iter().enumerate() {
            let _ = writeln!(y, "      - id: {}\n        values:", u + 1);
            for p in 0..props {
                let dynamics = if w.change_tick.is_some() {
                    ", dynamics: { counter: { step: 1 } }"
                } else {
                    ""
                };
                let _ = writeln!(
                    y,
                    "          - {{ name: p{p}, table: input_registers, address: {p}, type: int16, value: {}{dynamics} }}",
                    (e * 31 + u * 7 + p) % 1000
                );
            }
            if w.writable {
                let _ = writeln!(
                    y,
                    "          - {{ name: {SETPOINT}, table: holding_registers, address: {SETPOINT_ADDRESS}, type: int16, value: 0 }}"
                );
            }
        }
    }
    y
}

fn property(name: &str, writable: bool) -> Value {
    json!({"name": name, "dataType": "int", "accessMode": if writable { "ReadWrite" } else { "ReadOnly" },
           "minimum": 0, "maximum": 0})
}

fn visitor(name: &str, register: &str, offset: u16, cycle_ns: u128) -> Value {
    json!({"name": name, "propertyName": name, "modelName": "bench-model", "protocol": "modbus",
           "collectCycle": cycle_ns as u64,
           "visitorConfig": {"register": register, "offset": offset, "limit": 1}})
}

/// KubeEdge v1alpha2 device profile for the workload against the running simulator.
/// `targets` has one entry per bus.
pub fn profile(w: &Workload, targets: &[Target]) -> Value {
    let cycle_ns = w.cycle.as_nanos();
    let mut props: Vec<Value> = (0..w.max_props())
        .map(|p| property(&format!("p{p}"), false))
        .collect();
    if w.writable {
        props.push(property(SETPOINT, true));
    }
    let mut devices = Vec::new();
    let mut protocols = Vec::new();
    for (e, target) in targets.iter().enumerate().take(w.endpoints) {
        for (u, &n) in w.units.iter().enumerate() {
            let id = Workload::device_id(e, u);
            let mut names: Vec<(String, &str, u16)> = (0..n)
                .map(|p| (format!("p{p}"), "InputRegister", p as u16))
                .collect();
            if w.writable {
                names.push((SETPOINT.to_string(), "HoldingRegister", SETPOINT_ADDRESS));
            }
            let twins: Vec<Value> = names
                .iter()
                .map(|(n, _, _)| {
                    json!({"propertyName": n, "desired": {"value": "", "metadata": {"type": "int"}},
                           "reported": {"value": ""}})
                })
                .collect();
            let visitors: Vec<Value> = names
                .iter()
                .map(|(n, r, o)| visitor(n, r, *o, cycle_ns))
                .collect();
            devices.push(json!({"id": id, "name": id, "protocol": format!("proto-{id}"),
                                "model": "bench-model", "twins": twins, "propertyVisitors": visitors}));
            let mut common = match target {
                Target::Tcp(port) => json!({"tcp": {"ip": "127.0.0.1", "port": port}}),
                Target::Rtu(path) => {
                    let baud = match w.link {
                        Link::Rtu { baud } => baud,
                        Link::Tcp => 9600,
                    };
                    json!({"com": {"serialPort": path, "baudRate": baud, "dataBits": 8,
                                   "parity": "none", "stopBits": 1}})
                }
            };
            common["collectTimeout"] = json!(1000);
            if w.single_request_per_property {
                common["customizedValues"] = json!({"singleRequestPerProperty": true});
            }
            protocols.push(json!({"name": format!("proto-{id}"), "protocol": "modbus",
                                  "protocolConfig": {"slaveID": u + 1}, "protocolCommonConfig": common}));
        }
    }
    json!({"deviceInstances": devices,
           "deviceModels": [{"name": "bench-model", "properties": props}],
           "protocols": protocols})
}

/// Bytes on the wire of an RTU read request (FC3/FC4): unit, function, address, count, CRC.
pub const RTU_READ_REQUEST_BYTES: usize = 8;

/// Bytes of an RTU read reply carrying `registers` registers.
pub fn rtu_read_reply_bytes(registers: usize) -> usize {
    5 + 2 * registers
}

/// Emulated duration of one RTU transaction (the simulator's model): both frames at
/// 11 bits per character plus two 3.5-character silences (1.75 ms each above 19200 baud).
pub fn rtu_transaction(request_bytes: usize, reply_bytes: usize, baud: u32) -> Duration {
    if baud == 0 {
        return Duration::ZERO;
    }
    let wire = (request_bytes + reply_bytes) as f64 * 11.0 / f64::from(baud);
    let silence = if baud > 19_200 {
        0.00175
    } else {
        3.5 * 11.0 / f64::from(baud)
    };
    Duration::from_secs_f64(wire + 2.0 * silence)
}

/// Wire-time minimum of one full cycle of the workload on one line: one request per unit
/// (merged plan of contiguous registers) or one per property.
pub fn rtu_cycle_minimum(units: &[usize], baud: u32, per_property: bool) -> Duration {
    units
        .iter()
        .map(|&n| {
            if per_property {
                rtu_transaction(RTU_READ_REQUEST_BYTES, rtu_read_reply_bytes(1), baud) * n as u32
            } else {
                rtu_transaction(RTU_READ_REQUEST_BYTES, rtu_read_reply_bytes(n), baud)
            }
        })
        .sum()
}

/// Requests per full cycle for the workload's units.
pub fn requests_per_cycle(units: &[usize], per_property: bool) -> usize {
    if per_property {
        units.iter().sum()
    } else {
        units.iter().filter(|&&n| n > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p1() -> Workload {
        Workload::tcp(100, 10, Duration::from_millis(20), 10)
    }

    #[test]
    fn tcp_layout_spreads_devices_over_buses() {
        let w = p1();
        assert_eq!(
            (w.endpoints, w.units.len(), w.devices(), w.properties()),
            (10, 10, 100, 1000)
        );
        assert!((w.properties_per_second() - 50_000.0).abs() < 1e-6);
        let w = Workload::tcp(1000, 10, Duration::from_secs(1), 100);
        assert_eq!((w.endpoints, w.devices()), (10, 1000));
        let w = Workload::tcp(1, 1, Duration::from_secs(1), 100);
        assert_eq!((w.endpoints, w.devices(), w.properties()), (1, 1, 1));
    }

    #[test]
    fn sim_map_lists_every_unit_and_value() {
        let mut w = Workload::tcp(4, 3, Duration::from_millis(20), 2);
        w.change_tick = Some(Duration::from_millis(10));
        w.writable = true;
        let y = sim_map(&w, None);
        assert!(y.starts_with("tick_ms: 10\n"));
        assert_eq!(y.matches("tcp: 127.0.0.1:0").count(), 2);
        assert_eq!(y.matches("- id: ").count(), 4);
        assert_eq!(y.matches("counter").count(), 12);
        assert_eq!(
            y.matches("name: setpoint, table: holding_registers, address: 100")
                .count(),
            4
        );
    }

    #[test]
    fn rtu_map_has_wire_time() {
        let w = Workload {
            link: Link::Rtu { baud: 9600 },
            units: vec![4, 3, 3],
            endpoints: 1,
            ..p1()
        };
        let y = sim_map(&w, None);
        assert!(y.contains("rtu: { baud: 9600, wire_time: true }"));
        let y = sim_map(&w, Some(std::path::Path::new("/tmp/x")));
        assert!(y.contains("rtu: { path: /tmp/x/line0-device, baud: 9600, wire_time: true }"));
        assert_eq!(y.matches("table: input_registers").count(), 10);
        assert!(!y.contains("tcp:"));
    }

    #[test]
    fn profile_matches_the_map() {
        let mut w = Workload::tcp(4, 3, Duration::from_millis(20), 2);
        w.writable = true;
        let p = profile(&w, &[Target::Tcp(5000), Target::Tcp(5001)]);
        let devs = p["deviceInstances"].as_array().unwrap();
        assert_eq!(devs.len(), 4);
        assert_eq!(devs[3]["id"], "dev-1-2");
        assert_eq!(devs[0]["propertyVisitors"].as_array().unwrap().len(), 4);
        assert_eq!(devs[0]["propertyVisitors"][0]["collectCycle"], 20_000_000);
        assert_eq!(
            devs[0]["propertyVisitors"][3]["visitorConfig"]["register"],
            "HoldingRegister"
        );
        let protos = p["protocols"].as_array().unwrap();
        assert_eq!(protos[3]["protocolConfig"]["slaveID"], 2);
        assert_eq!(protos[3]["protocolCommonConfig"]["tcp"]["port"], 5001);
        assert_eq!(
            p["deviceModels"][0]["properties"].as_array().unwrap().len(),
            4
        );
        assert_eq!(
            p["deviceModels"][0]["properties"][3]["accessMode"],
            "ReadWrite"
        );
    }

    #[test]
    fn rtu_profile_uses_the_serial_port() {
        let w = Workload {
            link: Link::Rtu { baud: 9600 },
            units: vec![4, 3, 3],
            endpoints: 1,
            single_request_per_property: true,
            ..p1()
        };
        let p = profile(&w, &[Target::Rtu("/dev/pts/9".into())]);
        let c = &p["protocols"][2]["protocolCommonConfig"];
        assert_eq!(c["com"]["serialPort"], "/dev/pts/9");
        assert_eq!(c["com"]["baudRate"], 9600);
        assert_eq!(c["customizedValues"]["singleRequestPerProperty"], true);
    }

    #[test]
    fn wire_time_arithmetic() {
        // 8 + 7 bytes at 9600 baud: 15 * 11 / 9600 s + 2 * 3.5 * 11 / 9600 s.
        let t = rtu_transaction(8, 7, 9600).as_secs_f64();
        assert!((t - (15.0 + 7.0) * 11.0 / 9600.0).abs() < 1e-6);
        assert!(
            (rtu_transaction(8, 7, 115_200).as_secs_f64() - (165.0 / 115_200.0 + 0.0035)).abs()
                < 1e-6
        );
        let merged = rtu_cycle_minimum(&[4, 3, 3], 9600, false).as_secs_f64();
        let single = rtu_cycle_minimum(&[4, 3, 3], 9600, true).as_secs_f64();
        // merged: (8+13 + 7) + 2 * (8+11 + 7) chars; single: 10 * (8+7 + 7) chars.
        assert!((merged - (28.0 + 52.0) * 11.0 / 9600.0).abs() < 1e-6);
        // Ten registers of one unit: 8+25+7 characters merged, against 10 * 22 one by one.
        let one = rtu_cycle_minimum(&[10], 9600, false).as_secs_f64();
        let one_single = rtu_cycle_minimum(&[10], 9600, true).as_secs_f64();
        assert!((one - 40.0 * 11.0 / 9600.0).abs() < 1e-6);
        assert!((one_single / one - 5.5).abs() < 1e-6);
        assert!((single - 220.0 * 11.0 / 9600.0).abs() < 1e-6);
        assert_eq!(requests_per_cycle(&[4, 3, 3], false), 3);
        assert_eq!(requests_per_cycle(&[4, 3, 3], true), 10);
    }
}
