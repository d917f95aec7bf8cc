//! Pure parsers and statistics: `/proc/PID/stat`, `/proc/PID/status`, the simulator's
//! stats file, twin payloads, Modbus TCP frames for the probe client, percentiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Errors of the pure parsers.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// `/proc/PID/stat` did not have the expected fields.
    #[error("malformed /proc/PID/stat: {0}")]
    Stat(&'static str),
    /// A Modbus reply did not match the request.
    #[error("unexpected modbus reply: {0}")]
    Modbus(&'static str),
}

/// CPU time of a process in clock ticks (`utime + stime` of `/proc/PID/stat`).
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64, ParseError> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .ok_or(ParseError::Stat("no ')' after the command"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| -> Result<u64, ParseError> {
        fields
            .get(i - 3)
            .ok_or(ParseError::Stat("too few fields"))?
            .parse()
            .map_err(|_| ParseError::Stat("not a number"))
    };
    Ok(get(14)? + get(15)?)
}

/// A `kB` field of `/proc/PID/status` (e.g. `VmRSS`, `VmHWM`) in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU use in percent of one core between two tick readings `wall_secs` apart.
pub fn cpu_percent(ticks_before: u64, ticks_after: u64, clk_tck: u64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 || clk_tck == 0 {
        return 0.0;
    }
    ticks_after.saturating_sub(ticks_before) as f64 / clk_tck as f64 / wall_secs * 100.0
}

/// Counters of one unit in the simulator's stats file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct UnitCounters {
    /// Requests addressed to the unit.
    #[serde(default)]
    pub requests: u64,
    /// Registers returned.
    #[serde(default)]
    pub registers_read: u64,
}

/// Counters of one simulator endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct EndpointCounters {
    /// Well-formed requests.
    #[serde(default)]
    pub requests: u64,
    /// Registers returned.
    #[serde(default)]
    pub registers_read: u64,
    /// Per unit id.
    #[serde(default)]
    pub units: BTreeMap<String, UnitCounters>,
}

/// The simulator's stats file (`--stats-file`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct SimStats {
    /// When it was written, ms since the epoch.
    pub timestamp_ms: u64,
    /// Per endpoint name.
    pub endpoints: BTreeMap<String, EndpointCounters>,
}

impl SimStats {
    /// Parses the stats JSON.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Requests over all endpoints.
    pub fn requests(&self) -> u64 {
        self.endpoints.values().map(|e| e.requests).sum()
    }

    /// Registers read over all endpoints.
    pub fn registers_read(&self) -> u64 {
        self.endpoints.values().map(|e| e.registers_read).sum()
    }
}

/// Which two stats snapshots to take simulator rates from: the first, and the later one
/// (at least `min_span_ms` after it) whose distance from the first is closest to a whole
/// number of cycles; ties go to the longer span. Devices started together poll in bursts
/// once per cycle, so a span of whole cycles holds exactly as many bursts as cycles (a
/// burst cut at one end is cut the same way at the other); any other span over-
/// or under-counts by up to one burst, up to 10 % for a 1 s cycle in a 10 s window.
pub fn aligned_pair(
    snapshots: &[SimStats],
    cycle_ms: u64,
    min_span_ms: u64,
) -> Option<(usize, usize)> {
    let first = snapshots.first()?.timestamp_ms;
    let cycle = cycle_ms.max(1);
    let mut best: Option<(u64, u64, usize)> = None;
    for (j, snap) in snapshots.iter().enumerate().skip(1) {
        let span = snap.timestamp_ms.saturating_sub(first);
        if span < min_span_ms.max(1) {
            continue;
        }
        let rest = span % cycle;
        let off = rest.min(cycle - rest);
        let better = match best {
            None => true,
            Some((b_off, b_span, _)) => off < b_off || (off == b_off && span > b_span),
        };
        if better {
            best = Some((off, span, j));
        }
    }
    best.map(|(_, _, j)| (0, j))
        .or_else(|| (snapshots.len() > 1).then(|| (0, snapshots.len() - 1)))
}

/// Property values of a `twin/update` payload (`{"twin":{p:{"actual":{"value":v}}}}`).
pub fn twin_values(payload: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    let Some(twin) = v.get("twin").and_then(|t| t.as_object()) else {
        return Vec::new();
    };
    twin.iter()
        .map(|(k, p)| {
            let val = p
                .pointer("/actual/value")
                .and_then(|x| x.as_str())
                .unwrap_or_default();
            (k.clone(), val.to_string())
        })
        .collect()
}

/// Device id from a `$hw/events/device/{id}/twin/update` topic.
pub fn device_of_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("$hw/events/device/")?
        .strip_suffix("/twin/update")
}

/// Modbus TCP request: read one holding register (FC3).
pub fn mbap_read_holding(tid: u16, unit: u8, address: u16) -> [u8; 12] {
    let [t0, t1] = tid.to_be_bytes();
    let [a0, a1] = address.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, unit, 3, a0, a1, 0, 1]
}

/// Modbus TCP request: write one holding register (FC6).
pub fn mbap_write_holding(tid: u16, unit: u8, address: u16, value: u16) -> [u8; 12] {
    let [t0, t1] = tid.to_be_bytes();
    let [a0, a1] = address.to_be_bytes();
    let [v0, v1] = value.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, unit, 6, a0, a1, v0, v1]
}

/// Register value of an FC3 reply for one register (11 bytes).
pub fn parse_read_reply(tid: u16, reply: &[u8]) -> Result<u16, ParseError> {
    if reply.len() < 9 {
        return Err(ParseError::Modbus("short reply"));
    }
    if reply[0..2] != tid.to_be_bytes() {
        return Err(ParseError::Modbus("transaction id"));
    }
    if reply[7] != 3 {
        return Err(ParseError::Modbus("exception or wrong function"));
    }
    if reply.len() < 11 || reply[8] != 2 {
        return Err(ParseError::Modbus("byte count"));
    }
    Ok(u16::from_be_bytes([reply[9], reply[10]]))
}

/// The `q`-quantile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.saturating_sub(1).min(v.len() - 1)])
}

/// Median (nearest rank, lower middle).
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks() {
        let s = "1234 (modbus mapper) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 5 0 100 10000000 800 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(s), Ok(325));
        let s = "7 (a) b)) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(parse_stat_cpu_ticks(s), Ok(7));
        assert!(parse_stat_cpu_ticks("garbage").is_err());
        assert!(parse_stat_cpu_ticks("1 (x) S 1 2").is_err());
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tmodbus-mapper\nVmHWM:\t    4321 kB\nVmRSS:\t    4000 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(4000 * 1024));
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(4321 * 1024));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
    }

    #[test]
    fn cpu_percent_of_one_core() {
        assert!((cpu_percent(100, 150, 100, 2.0) - 25.0).abs() < 1e-9);
        assert_eq!(cpu_percent(5, 4, 100, 1.0), 0.0);
        assert_eq!(cpu_percent(0, 4, 100, 0.0), 0.0);
    }

    #[test]
    fn rates_are_taken_over_whole_cycles() {
        let snaps: Vec<SimStats> = [0u64, 503, 1001, 1498, 2004, 2502, 3000, 3499]
            .iter()
            .map(|t| SimStats {
                timestamp_ms: 10_000 + t,
                ..SimStats::default()
            })
            .collect();
        // 1 s cycle: 3000 ms (exact) beats 3499 and 2502.
        assert_eq!(aligned_pair(&snaps, 1000, 1500), Some((0, 6)));
        // 20 ms cycle: 3000 ms is again exact and longest.
        assert_eq!(aligned_pair(&snaps, 20, 1500), Some((0, 6)));
        // 700 ms cycle: 2100 is not there; 2004 is 104 off, 1498 is 102, 3499 is 1.
        assert_eq!(aligned_pair(&snaps, 700, 1000), Some((0, 7)));
        // Nothing long enough: the whole range.
        assert_eq!(aligned_pair(&snaps, 1000, 60_000), Some((0, 7)));
        assert_eq!(aligned_pair(&snaps[..1], 1000, 0), None);
    }

    #[test]
    fn sim_stats_file() {
        let t = r#"{"timestamp_ms":1700000000123,"endpoints":{"bus0":{"requests":10,"replies":10,"registers_read":40,
            "units":{"1":{"requests":6,"registers_read":24,"by_function":{"4":6}},"2":{"requests":4,"registers_read":16}}},
            "bus1":{"requests":5,"registers_read":5,"units":{}}}}"#;
        let s = SimStats::parse(t).unwrap();
        assert_eq!(s.timestamp_ms, 1_700_000_000_123);
        assert_eq!((s.requests(), s.registers_read()), (15, 45));
        assert_eq!(s.endpoints["bus0"].units["2"].requests, 4);
    }

    #[test]
    fn twin_payload_values() {
        let p = br#"{"event_id":"","timestamp":1,"twin":{"p0":{"actual":{"value":"12"},"metadata":{"type":"int"}},"p1":{"actual":{"value":"-3"}}}}"#;
        assert_eq!(
            twin_values(p),
            vec![("p0".into(), "12".into()), ("p1".into(), "-3".into())]
        );
        assert!(twin_values(b"nope").is_empty());
        assert_eq!(
            device_of_topic("$hw/events/device/dev-0-1/twin/update"),
            Some("dev-0-1")
        );
        assert_eq!(
            device_of_topic("$hw/events/device/dev-0-1/state/update"),
            None
        );
    }

    #[test]
    fn modbus_frames() {
        assert_eq!(
            mbap_read_holding(0x0102, 3, 100),
            [1, 2, 0, 0, 0, 6, 3, 3, 0, 100, 0, 1]
        );
        assert_eq!(
            mbap_write_holding(7, 1, 100, 0xFFFE),
            [0, 7, 0, 0, 0, 6, 1, 6, 0, 100, 0xFF, 0xFE]
        );
        assert_eq!(
            parse_read_reply(7, &[0, 7, 0, 0, 0, 5, 1, 3, 2, 0x01, 0x2C]),
            Ok(300)
        );
        assert!(parse_read_reply(8, &[0, 7, 0, 0, 0, 5, 1, 3, 2, 0x01, 0x2C]).is_err());
        assert!(parse_read_reply(7, &[0, 7, 0, 0, 0, 3, 1, 0x83, 2]).is_err());
    }

    #[test]
    fn quantiles() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median(&v), Some(3.0));
        assert_eq!(quantile(&v, 0.99), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
