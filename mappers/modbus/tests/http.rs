//! End to end: the operator HTTP endpoint of a modbus mapper (in process) with a real
//! mosquitto and `modbus-sim`: readiness, metrics while reads go on and after the device
//! falls silent, the device API, and token-guarded writes that land in the registers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use mapper_sdk::config::{HttpSettings, ProfileSetting};
use mapper_sdk::testing::{InProcessMapper, Mosquitto, free_port, test_settings, wait_until};
use modbus_mapper::ModbusDriver;
use modbus_sim::{Fault, MapFile, Simulator};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The value of one sample line of the metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

async fn metric(port: u16, series: &str) -> Option<f64> {
    let (status, body) = http(port, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    sample(&body, series)
}

/// Waits until `cond` holds for the metric (deadline `WAIT`).
async fn wait_metric(port: u16, series: &str, cond: impl Fn(f64) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if metric(port, series).await.is_some_and(&cond) {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_api_and_guarded_writes() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let yaml =
        read("device-models/thermostat/sim.yaml").replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, "thermostat").unwrap();
    let sim = Simulator::from_map(&map.endpoints[0].device);
    let sim_port = sim.serve_tcp("127.0.0.1:0").await.unwrap().port();
    let profile = read("device-models/thermostat/profile.json")
        .replace(
            "\"collectCycle\": 1000000000",
            "\"collectCycle\": 200000000",
        )
        .replace("\"port\": 1502", &format!("\"port\": {sim_port}"));

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken-for-tests\n").unwrap();
    let port = free_port();
    let mut settings = test_settings(&broker, "modbus-http", ProfileSetting::Inline(profile));
    settings.http = Some(HttpSettings {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        token_file: Some(token_file),
    });
    let mapper = InProcessMapper::start(ModbusDriver::new(), settings);

    // Live at once (retrying the connect while the listener comes up), ready once the
    // profile runs and the broker session is up.
    assert!(
        wait_until(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "the endpoint listens"
    );
    assert_eq!(
        http(port, "GET", "/healthz", None, "").await,
        (200, "ok\n".into())
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http(port, "GET", "/readyz", None, "").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("missing"), "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wait_metric(port, "mapper_mqtt_connected", |v| v == 1.0).await);

    // Reads grow; the device is online; publishes are counted.
    let reads = "mapper_device_reads_total{device=\"thermostat\"}";
    assert!(wait_metric(port, reads, |v| v > 0.0).await);
    let first = metric(port, reads).await.unwrap();
    assert!(wait_metric(port, reads, |v| v > first).await, "reads grow");
    assert!(
        wait_metric(port, "mapper_device_online{device=\"thermostat\"}", |v| v
            == 1.0)
        .await
    );
    assert!(wait_metric(port, "mapper_mqtt_publishes_total", |v| v > 0.0).await);
    let (_, text) = http(port, "GET", "/metrics", None, "").await;
    assert!(
        text.contains("# TYPE mapper_device_read_duration_seconds histogram"),
        "{text}"
    );

    // The device API: list, one device, 404.
    let (status, body) = http(port, "GET", "/api/v1/devices", None, "").await;
    assert_eq!(status, 200);
    let v: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(v["devices"][0]["id"], "thermostat");
    assert_eq!(v["devices"][0]["state"], "online");
    let (status, body) = http(port, "GET", "/api/v1/devices/thermostat", None, "").await;
    assert_eq!(status, 200);
    let v: Json = serde_json::from_str(&body).unwrap();
    let setpoint = v["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "setpoint")
        .unwrap();
    assert_eq!(setpoint["value"], "20", "{body}");
    assert!(setpoint["timestamp"].as_u64().unwrap() > 0);
    let (status, _) = http(port, "GET", "/api/v1/devices/nope", None, "").await;
    assert_eq!(status, 404);

    // Writes: refused without (or with a wrong) token, the register unchanged.
    let path = "/api/v1/devices/thermostat/properties/setpoint";
    let (status, _) = http(port, "PUT", path, None, r#"{"value":"23.5"}"#).await;
    assert_eq!(status, 401);
    let (status, _) = http(port, "PUT", path, Some("wrong"), r#"{"value":"23.5"}"#).await;
    assert_eq!(status, 401);
    let (status, _) = http(
        port,
        "PUT",
        "/api/v1/devices/thermostat/properties/temperature",
        Some("t0ken-for-tests"),
        r#"{"value":"30"}"#,
    )
    .await;
    assert_eq!(status, 400, "read-only");
    assert_eq!(sim.read_holding(1, 10).unwrap(), 200, "setpoint untouched");
    // With the token the value lands in holding register 10 (x10).
    let (status, body) = http(
        port,
        "PUT",
        path,
        Some("t0ken-for-tests"),
        r#"{"value":"23.5"}"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        wait_until(WAIT, || sim.read_holding(1, 10).unwrap() == 235).await,
        "setpoint x 10 in holding 10"
    );
    assert!(
        wait_metric(
            port,
            "mapper_device_writes_total{device=\"thermostat\"}",
            |v| v >= 1.0
        )
        .await
    );

    // The device falls silent: offline, timeouts counted.
    sim.set_fault(1, Fault::Silent).unwrap();
    assert!(
        wait_metric(port, "mapper_device_online{device=\"thermostat\"}", |v| v
            == 0.0)
        .await,
        "offline after the unit is silenced"
    );
    assert!(
        wait_metric(
            port,
            "mapper_device_read_errors_total{device=\"thermostat\",kind=\"timeout\"}",
            |v| v > 0.0
        )
        .await
    );
    let (_, body) = http(port, "GET", "/api/v1/devices/thermostat", None, "").await;
    assert!(body.contains("\"state\":\"offline\""), "{body}");

    mapper.stop().await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the endpoint closes with the mapper"
    );
}
