//! End to end: the operator subcommands (`devices`, `get`, `set`, `watch`) of the
//! `modbus-mapper` binary against the same binary running with `--http-listen`, a real
//! mosquitto and `modbus-sim`: values read, writes with and without the token, a twin
//! delta through the broker, and the errors and exit codes.
#![allow(clippy::unwrap_used, missing_docs)]

mod process;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use mapper_sdk::testing::{Mosquitto, free_port};
use modbus_sim::{MapFile, Simulator};
use process::{MapperProcess, command};

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "t0ken-for-ctl";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// Runs `modbus-mapper ARGS` to completion with a clean environment.
fn ctl(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = command(dir);
    for v in ["MAPPER_API", "MAPPER_HTTP_TOKEN_FILE"] {
        cmd.env_remove(v);
    }
    cmd.args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `cond` until it holds (true) or `WAIT` passes (false).
fn wait(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// `GET /readyz` answers 200.
fn ready(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn devices_get_set_and_watch_against_a_running_mapper() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let yaml =
        read("device-models/thermostat/sim.yaml").replace("tick_ms: 1000", "tick_ms: 3600000");
    let map = MapFile::parse(&yaml, "thermostat").unwrap();
    let sim = Simulator::from_map(&map.endpoints[0].device);
    let sim_port = rt.block_on(sim.serve_tcp("127.0.0.1:0")).unwrap().port();
    let profile = read("device-models/thermostat/profile.json")
        .replace(
            "\"collectCycle\": 1000000000",
            "\"collectCycle\": 200000000",
        )
        .replace("\"port\": 1502", &format!("\"port\": {sim_port}"));

    let dir = tempfile::tempdir().unwrap();
    let profile_file = dir.path().join("deviceProfile.json");
    std::fs::write(&profile_file, profile).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut cmd = command(dir.path());
    cmd.arg("--mqtt-address")
        .arg(broker.url())
        .arg("--profile")
        .arg(&profile_file)
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--http-token-file")
        .arg(&token_file);
    let mut mapper = MapperProcess::spawn(cmd, dir.path());
    assert!(wait(|| ready(port)), "never ready:\n{}", mapper.log());

    // `devices`: a table with the device online and its values.
    let mut table = String::new();
    assert!(
        wait(|| {
            let o = ctl(dir.path(), &["devices", "--api", &api]);
            table = stdout(&o);
            o.status.success() && table.contains("online") && table.contains("setpoint=20")
        }),
        "devices: {table}"
    );
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("thermostat ")),
        "{table}"
    );

    // `get`: the bare value; unknown device and property exit 1 with the reason.
    let o = ctl(
        dir.path(),
        &["get", "thermostat", "setpoint", "--api", &api],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "20\n");
    let o = ctl(dir.path(), &["get", "nope", "setpoint", "--api", &api]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such device"), "{}", stderr(&o));
    let o = ctl(dir.path(), &["get", "thermostat", "nope", "--api", &api]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no property nope"), "{}", stderr(&o));

    // `watch` in the background, its output in a file.
    let watch_out = dir.path().join("watch.out");
    let mut watch = command(dir.path())
        .args(["watch", "thermostat", "--api", &api, "--interval-ms", "100"])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watched = || std::fs::read_to_string(&watch_out).unwrap_or_default();
    assert!(
        wait(|| watched().contains("thermostat setpoint=20")),
        "watch: {}",
        watched()
    );

    // `set` without the token: exit 1, the API's message, the register untouched.
    let o = ctl(
        dir.path(),
        &["set", "thermostat", "setpoint", "23.5", "--api", &api],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("a valid Authorization: Bearer token is required"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sim.read_holding(1, 10).unwrap(), 200);
    // With the token the value lands in holding register 10 (x10).
    let token_arg = token_file.to_str().unwrap();
    let o = ctl(
        dir.path(),
        &[
            "set",
            "thermostat",
            "setpoint",
            "23.5",
            "--api",
            &api,
            "--token-file",
            token_arg,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("accepted"), "{}", stdout(&o));
    assert!(wait(|| sim.read_holding(1, 10).unwrap() == 235));
    // `watch` sees the new value when it is read back.
    assert!(
        wait(|| watched().contains("thermostat setpoint=23.5")),
        "watch: {}",
        watched()
    );

    // `set --via mqtt`: a twin delta through the broker, no token needed.
    let o = ctl(
        dir.path(),
        &[
            "set",
            "thermostat",
            "setpoint",
            "21",
            "--via",
            "mqtt",
            "--mqtt-address",
            &broker.url(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wait(|| sim.read_holding(1, 10).unwrap() == 210),
        "{}",
        mapper.log()
    );
    assert!(
        wait(|| watched().contains("thermostat setpoint=21")),
        "watch: {}",
        watched()
    );
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(watch.id().to_string())
        .status();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "watch on ctrl-c: {status:?}"
    );

    // The mapper stopped: connection refused is exit 2 with the hint.
    mapper.stop().unwrap();
    let o = ctl(dir.path(), &["devices", "--api", &api]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "no mapper API at {api} (start the mapper with --http-listen)"
        )),
        "{}",
        stderr(&o)
    );
    // No broker either: exit 2.
    let o = ctl(
        dir.path(),
        &[
            "set",
            "thermostat",
            "setpoint",
            "21",
            "--via",
            "mqtt",
            "--mqtt-address",
            &format!("tcp://127.0.0.1:{}", free_port()),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot reach the broker"),
        "{}",
        stderr(&o)
    );
}
