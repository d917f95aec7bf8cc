//! Shared helpers for the ble-sim integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod central;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable telling a re-executed test binary which socket to use.
pub const CHILD_SOCKET_ENV: &str = "BLE_SIM_TEST_SOCKET";

/// The lab device file shipped with the crate.
pub fn lab_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/lab.yaml")
}

pub const SENSOR: &str = "A4:C1:38:1A:49:90";
pub const LED: &str = "A4:C1:38:00:00:02";
pub const FLAKY: &str = "A4:C1:38:00:00:03";
pub const TEMP_DATA: &str = "f000aa01-0451-4000-b000-000000000000";
pub const TEMP_CONF: &str = "f000aa02-0451-4000-b000-000000000000";
pub const HUM_DATA: &str = "f000aa21-0451-4000-b000-000000000000";
pub const HUM_CONF: &str = "f000aa22-0451-4000-b000-000000000000";
pub const LED_SWITCH: &str = "0000ff11-0000-1000-8000-00805f9b34fb";
pub const BATTERY_LEVEL: &str = "00002a19-0000-1000-8000-00805f9b34fb";

/// Run the ignored test `name` of this test binary in a child process whose
/// `DBUS_SYSTEM_BUS_ADDRESS` points at a fresh socket path.
///
/// libdbus reads that variable once per process, and the workspace forbids
/// the `unsafe` `std::env::set_var`, so each btleplug scenario gets its own
/// process with the variable set from the start. The child starts the
/// simulator at the socket path (`Bus::PrivateAt`) and drives btleplug.
pub fn run_in_child(name: &str, deadline: Duration) {
    let dir = tempfile::tempdir().unwrap();
    run_in_child_with(name, deadline, &dir.path().join("bus.sock"), &[]);
}

/// [`run_in_child`] with the bus at `socket` (a simulator may already serve
/// it) and extra environment variables for the child.
pub fn run_in_child_with(name: &str, deadline: Duration, socket: &Path, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", socket.display()),
        )
        .env(CHILD_SOCKET_ENV, socket)
        .envs(env.iter().copied())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Collect output on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > deadline {
            // SIGTERM lets nothing clean up in a test binary, but the child
            // has its own, shorter, deadline; this is only the backstop.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    println!("---- child {name} stdout ----\n{stdout}");
    println!("---- child {name} stderr ----\n{stderr}");
    match status {
        Some(st) => assert!(
            st.success() && stdout.contains("1 passed"),
            "child scenario {name} failed ({st})"
        ),
        None => panic!("child scenario {name} exceeded {deadline:?}"),
    }
}

/// The socket path when running as the child, `None` when run directly
/// (the scenario then skips: it needs its own process).
pub fn child_socket() -> Option<PathBuf> {
    std::env::var_os(CHILD_SOCKET_ENV).map(PathBuf::from)
}

/// Log to stderr at debug for the simulator when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}
