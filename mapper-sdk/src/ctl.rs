//! Operator subcommands of every mapper binary: `devices`, `get`, `set` and `watch` over
//! the mapper's HTTP API (a tiny HTTP/1.1 client), and `set --via mqtt`, which publishes a
//! twin delta as edgecore would. Formatting is pure; exit codes: 0 ok, 1 the API said no,
//! 2 usage or connection errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value as Json, json};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::DEFAULT_BROKER;
use crate::model::DeviceId;
use crate::mqtt::MqttSettings;

/// Where the API listens unless `--api` or `MAPPER_API` says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:8089";

/// How long one request (or the MQTT publish) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an operator subcommand failed.
#[derive(Debug, Error)]
pub enum CtlError {
    /// Nothing listens at the API address.
    #[error("no mapper API at {0} (start the mapper with --http-listen)")]
    NoApi(String),
    /// The API answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The status code.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The API answered, but not with what was asked for (no such property, no value yet).
    #[error("{0}")]
    Missing(String),
    /// A bad argument (URL, token file).
    #[error("{0}")]
    Usage(String),
    /// The connection failed or the answer cannot be read.
    #[error("{0}")]
    Transport(String),
}

impl CtlError {
    /// The process exit code: 1 when the API (or its data) said no, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } | Self::Missing(_) => 1,
            Self::NoApi(_) | Self::Usage(_) | Self::Transport(_) => 2,
        }
    }
}

/// How `set` delivers the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// `PUT` on the mapper's HTTP API (needs the write token).
    Api,
    /// A twin delta on the broker, as edgecore would publish it.
    Mqtt,
}

/// The operator subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// List the devices of a running mapper: id, state and property=value.
    Devices {
        /// The mapper's HTTP API.
        #[arg(long, env = "MAPPER_API", default_value = DEFAULT_API)]
        api: String,
    },
    /// Print the last value of one property.
    Get {
        /// The device id (`namespace/name` for v1beta1 devices).
        device: String,
        /// The property.
        property: String,
        /// The mapper's HTTP API.
        #[arg(long, env = "MAPPER_API", default_value = DEFAULT_API)]
        api: String,
    },
    /// Write one property: through the HTTP API (with the write token), or as a twin
    /// delta on the broker (`--via mqtt`).
    Set {
        /// The device id (for `--via mqtt`: the device part of the twin topics).
        device: String,
        /// The property.
        property: String,
        /// The value to write.
        value: String,
        /// The mapper's HTTP API.
        #[arg(long, env = "MAPPER_API", default_value = DEFAULT_API)]
        api: String,
        /// A file with the bearer token (the mapper's --http-token-file).
        #[arg(long, env = "MAPPER_HTTP_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// How to deliver the value.
        #[arg(long, value_enum, default_value_t = Via::Api)]
        via: Via,
        /// The broker for `--via mqtt`.
        #[arg(long = "mqtt-address", env = "MQTT_SERVER", default_value = DEFAULT_BROKER)]
        mqtt_address: String,
    },
    /// Poll the API and print every changed value with a timestamp, until ctrl-c.
    Watch {
        /// Only this device.
        device: Option<String>,
        /// The mapper's HTTP API.
        #[arg(long, env = "MAPPER_API", default_value = DEFAULT_API)]
        api: String,
        /// How often to poll.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

/// Runs one subcommand to its exit code; output on stdout, errors on stderr.
pub fn main(cmd: CtlCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(execute(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn execute(cmd: CtlCommand) -> Result<(), CtlError> {
    match cmd {
        CtlCommand::Devices { api } => {
            let api = ApiUrl::parse(&api)?;
            let list = api.get_json("/api/v1/devices").await?;
            print!("{}", devices_table(&list));
            Ok(())
        }
        CtlCommand::Get {
            device,
            property,
            api,
        } => {
            let api = ApiUrl::parse(&api)?;
            let dev = api.get_json(&device_path(&device)).await?;
            println!("{}", property_value(&dev, &property)?);
            Ok(())
        }
        CtlCommand::Set {
            device,
            property,
            value,
            api,
            token_file,
            via,
            mqtt_address,
        } => match via {
            Via::Api => {
                let api = ApiUrl::parse(&api)?;
                let token = token_file.as_deref().map(read_token).transpose()?;
                let path = format!(
                    "{}/properties/{}",
                    device_path(&device),
                    percent_encode(&property)
                );
                let body = json!({ "value": value }).to_string();
                let (status, text) = api
                    .request("PUT", &path, token.as_deref(), Some(&body))
                    .await?;
                check_status(status, &text)?;
                println!("accepted: {device} {property}={value}");
                Ok(())
            }
            Via::Mqtt => {
                publish_delta(&mqtt_address, &device, &property, &value).await?;
                println!("published: {device} {property}={value} (twin delta on {mqtt_address})");
                Ok(())
            }
        },
        CtlCommand::Watch {
            device,
            api,
            interval_ms,
        } => watch(&ApiUrl::parse(&api)?, device.as_deref(), interval_ms).await,
    }
}

async fn watch(api: &ApiUrl, device: Option<&str>, interval_ms: u64) -> Result<(), CtlError> {
    let mut seen = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(50)));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick() => {
                let list = match device {
                    Some(d) => json!({ "devices": [api.get_json(&device_path(d)).await?] }),
                    None => api.get_json("/api/v1/devices").await?,
                };
                for line in changes(&mut seen, &list, crate::twin::now_millis()) {
                    println!("{line}");
                }
            }
        }
    }
}

fn read_token(path: &std::path::Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(CtlError::Usage(format!("{} is empty", path.display())));
    }
    Ok(t.to_owned())
}

/// The API path of one device (its id %-encoded, so `ns/name` is one segment).
fn device_path(device: &str) -> String {
    format!("/api/v1/devices/{}", percent_encode(device))
}

/// `%XX` for every byte outside the URL's unreserved set.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An `http://HOST:PORT[/prefix]` API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// The URL as given (for messages).
    pub url: String,
    /// The host.
    pub host: String,
    /// The port (80 unless given).
    pub port: u16,
    /// A path prefix without the trailing slash (usually empty).
    pub prefix: String,
}

impl ApiUrl {
    /// Parses `http://HOST[:PORT][/prefix]` (a bare `HOST:PORT` too).
    pub fn parse(url: &str) -> Result<Self, CtlError> {
        let bad = || {
            CtlError::Usage(format!(
                "--api {url:?} is not an API address; use http://HOST:PORT"
            ))
        };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad()),
            None => url,
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse().map_err(|_| bad())?),
            _ => (authority, 80),
        };
        let host = host.trim_matches(|c| c == '[' || c == ']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            prefix: prefix.to_owned(),
        })
    }

    /// `GET path` as JSON; error statuses become [`CtlError::Api`].
    async fn get_json(&self, path: &str) -> Result<Json, CtlError> {
        let (status, body) = self.request("GET", path, None, None).await?;
        check_status(status, &body)?;
        serde_json::from_str(&body)
            .map_err(|e| CtlError::Transport(format!("the API at {} sent no JSON: {e}", self.url)))
    }

    /// One request on a fresh connection: (status, body).
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String), CtlError> {
        let exchange = async {
            let mut s = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => CtlError::NoApi(self.url.clone()),
                    _ => CtlError::Transport(format!("cannot reach {}: {e}", self.url)),
                })?;
            let req = request_text(
                &self.host,
                &format!("{}{path}", self.prefix),
                method,
                token,
                body,
            );
            let io = |e: std::io::Error| CtlError::Transport(format!("{}: {e}", self.url));
            s.write_all(req.as_bytes()).await.map_err(io)?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.map_err(io)?;
            parse_response(&out)
                .map_err(|e| CtlError::Transport(format!("bad answer from {}: {e}", self.url)))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CtlError::Transport(format!("{} did not answer in time", self.url)))?
    }
}

/// The bytes of one HTTP/1.1 request that closes the connection after the answer.
fn request_text(
    host: &str,
    path: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Splits an HTTP/1.1 answer into (status, body), undoing chunked encoding.
pub fn parse_response(bytes: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer has no end of headers")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a broken chunk")?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| "a broken chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = after.get(..n).ok_or("a short chunk")?;
        out.push_str(chunk);
        rest = after
            .get(n..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
}

/// An error status as [`CtlError::Api`] with the API's `{"error": ..}` message.
fn check_status(status: u16, body: &str) -> Result<(), CtlError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Json::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    Err(CtlError::Api { status, message })
}

/// A property value as people read it: text unquoted, no value as `-`.
fn show(v: &Json) -> String {
    match v {
        Json::Null => "-".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn devices_of(list: &Json) -> &[Json] {
    list.get("devices")
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn properties_of(dev: &Json) -> &[Json] {
    dev.get("properties")
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn field<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key).and_then(Json::as_str).unwrap_or_default()
}

/// The `devices` table: one line per device, columns aligned.
pub fn devices_table(list: &Json) -> String {
    let rows: Vec<[String; 3]> = devices_of(list)
        .iter()
        .map(|d| {
            let props: Vec<String> = properties_of(d)
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        field(p, "name"),
                        show(p.get("value").unwrap_or(&Json::Null))
                    )
                })
                .collect();
            [
                field(d, "id").to_owned(),
                field(d, "state").to_owned(),
                props.join(" "),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no devices\n".into();
    }
    let header = ["ID".to_owned(), "STATE".to_owned(), "PROPERTIES".to_owned()];
    let w0 = rows
        .iter()
        .chain([&header])
        .map(|r| r[0].len())
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .chain([&header])
        .map(|r| r[1].len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!("{:w0$}  {:w1$}  {}", r[0], r[1], r[2]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The value `get` prints, or why there is none.
pub fn property_value(dev: &Json, property: &str) -> Result<String, CtlError> {
    let p = properties_of(dev)
        .iter()
        .find(|p| field(p, "name") == property)
        .ok_or_else(|| {
            CtlError::Missing(format!(
                "device {} has no property {property}",
                field(dev, "id")
            ))
        })?;
    match p.get("value") {
        None | Some(Json::Null) => Err(CtlError::Missing(format!(
            "{property} of {} has no value yet",
            field(dev, "id")
        ))),
        Some(v) => Ok(show(v)),
    }
}

/// The `watch` lines for what changed since `seen` (which is updated): states and
/// values, each with its time (the read's timestamp, else `now_ms`).
pub fn changes(
    seen: &mut BTreeMap<(String, String), String>,
    list: &Json,
    now_ms: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    for d in devices_of(list) {
        let id = field(d, "id");
        let state = field(d, "state");
        if seen
            .insert((id.to_owned(), String::new()), state.to_owned())
            .as_deref()
            != Some(state)
        {
            lines.push(format!("{} {id} state={state}", utc_text(now_ms)));
        }
        for p in properties_of(d) {
            let value = p.get("value").unwrap_or(&Json::Null);
            if value.is_null() {
                continue;
            }
            let value = show(value);
            let name = field(p, "name");
            let key = (id.to_owned(), name.to_owned());
            if seen.get(&key) != Some(&value) {
                let at = p.get("timestamp").and_then(Json::as_i64).unwrap_or(now_ms);
                lines.push(format!("{} {id} {name}={value}", utc_text(at)));
                seen.insert(key, value);
            }
        }
    }
    lines
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Days to a civil date (proleptic Gregorian), era-based.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// The twin delta edgecore publishes for one desired value.
pub fn delta_payload(property: &str, value: &str, timestamp: i64) -> Vec<u8> {
    json!({
        "event_id": format!("mapper-ctl-{timestamp}"),
        "timestamp": timestamp,
        "twin": { property: { "expected": { "value": value }, "metadata": { "type": "string" } } },
        "delta": { property: value },
    })
    .to_string()
    .into_bytes()
}

/// Publishes the delta (QoS 1) and waits for the broker's acknowledgement.
async fn publish_delta(
    address: &str,
    device: &str,
    property: &str,
    value: &str,
) -> Result<(), CtlError> {
    let mut settings =
        MqttSettings::from_url(address, &format!("mapper-ctl-{}", std::process::id()))
            .map_err(|e| CtlError::Usage(e.to_string()))?;
    settings.username = std::env::var("MQTT_USERNAME")
        .ok()
        .filter(|u| !u.is_empty());
    settings.password = std::env::var("MQTT_PASSWORD").ok();
    let options = settings
        .options()
        .map_err(|e| CtlError::Usage(e.to_string()))?;
    let (client, mut events) = AsyncClient::new(options, 10);
    let topic = crate::twin::twin_delta_topic(&DeviceId(device.to_owned()));
    let payload = delta_payload(property, value, crate::twin::now_millis());
    let unreachable = |e: &dyn std::fmt::Display| {
        CtlError::Transport(format!("cannot reach the broker at {address}: {e}"))
    };
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| unreachable(&e))?;
    let acked = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(unreachable(&e)),
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, acked)
        .await
        .map_err(|_| unreachable(&"no acknowledgement in time"))??;
    let _ = client.disconnect().await;
    // Lets the DISCONNECT go out; errors after it are the expected close.
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn list() -> Json {
        json!({"devices": [
            {"id": "ns/pump", "state": "online", "properties": [
                {"name": "temp", "value": "21.5", "timestamp": 86_400_000, "writable": false},
                {"name": "setpoint", "value": null, "timestamp": null, "writable": true}
            ]},
            {"id": "b", "state": "offline", "properties": []}
        ]})
    }

    #[test]
    fn table_aligns_and_shows_missing_values() {
        assert_eq!(
            devices_table(&list()),
            "ID       STATE    PROPERTIES\nns/pump  online   temp=21.5 setpoint=-\nb        offline\n"
        );
        assert_eq!(devices_table(&json!({"devices": []})), "no devices\n");
    }

    #[test]
    fn get_value_or_why_not() {
        let dev = &list()["devices"][0];
        assert_eq!(property_value(dev, "temp").unwrap(), "21.5");
        let e = property_value(dev, "setpoint").unwrap_err();
        assert!(e.to_string().contains("no value yet"), "{e}");
        assert_eq!(e.exit_code(), 1);
        let e = property_value(dev, "nope").unwrap_err();
        assert!(e.to_string().contains("no property nope"), "{e}");
    }

    #[test]
    fn watch_prints_only_changes() {
        let mut seen = BTreeMap::new();
        let first = changes(&mut seen, &list(), 0);
        assert_eq!(
            first,
            [
                "1970-01-01T00:00:00.000Z ns/pump state=online",
                "1970-01-02T00:00:00.000Z ns/pump temp=21.5",
                "1970-01-01T00:00:00.000Z b state=offline",
            ]
        );
        assert!(changes(&mut seen, &list(), 5).is_empty());
        let mut next = list();
        next["devices"][0]["properties"][0]["value"] = json!("22");
        next["devices"][0]["properties"][0]["timestamp"] = json!(1_000);
        assert_eq!(
            changes(&mut seen, &next, 5),
            ["1970-01-01T00:00:01.000Z ns/pump temp=22"]
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_text(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_text(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn api_urls() {
        let u = ApiUrl::parse("http://127.0.0.1:8089").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 8089, "")
        );
        let u = ApiUrl::parse("localhost:9/mapper/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("localhost", 9, "/mapper")
        );
        let u = ApiUrl::parse("http://[::1]:7").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7));
        assert_eq!(ApiUrl::parse("http://edge").unwrap().port, 80);
        for bad in ["https://x:1", "http://:80", "http://x:port"] {
            let e = ApiUrl::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain =
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 26\r\n\r\n{\"error\":\"no such device\"}";
        let (status, body) = parse_response(plain).unwrap();
        assert_eq!(status, 404);
        let e = check_status(status, &body).unwrap_err();
        assert_eq!(e.to_string(), "no such device (HTTP 404)");
        assert_eq!(e.exit_code(), 1);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, "abcde".into()));
        assert!(parse_response(b"garbage").is_err());
        assert!(check_status(202, "").is_ok());
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(device_path("ns/pump 1"), "/api/v1/devices/ns%2Fpump%201");
    }

    #[test]
    fn delta_as_edgecore_sends_it() {
        let d = crate::twin::parse_delta(&delta_payload("setpoint", "23.5", 7)).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].property.0.as_str(), d[0].value.as_str()),
            ("setpoint", "23.5")
        );
    }

    #[test]
    fn requests_carry_the_token_and_length() {
        let r = request_text("h", "/p", "PUT", Some("tok"), Some("{}"));
        assert!(r.starts_with("PUT /p HTTP/1.1\r\nHost: h\r\n"), "{r}");
        assert!(r.contains("Authorization: Bearer tok\r\n"));
        assert!(r.ends_with("Content-Length: 2\r\n\r\n{}"));
        assert!(!request_text("h", "/p", "GET", None, None).contains("Content-Length"));
    }
}
