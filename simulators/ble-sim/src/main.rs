//! `ble-sim`: serve simulated BLE peripherals as `org.bluez` on a D-Bus.
//!
//! Starts a private `dbus-daemon` (or joins `--bus`), prints
//! `DBUS_SYSTEM_BUS_ADDRESS=unix:path=...` on stdout when ready, and runs
//! until SIGTERM, ctrl-c or end of stdin. Logs go to stderr.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ble_sim::{BleSim, Bus, SimConfig};
use clap::Parser;

/// A BlueZ stand-in serving simulated BLE peripherals from a YAML file.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Device file (YAML), see simulators/ble-sim/devices/.
    #[arg(long, short, env = "BLE_SIM_DEVICES")]
    devices: PathBuf,
    /// Join this bus (e.g. unix:path=/run/x.sock) instead of starting a private one.
    #[arg(long, env = "BLE_SIM_BUS", conflicts_with = "socket")]
    bus: Option<String>,
    /// Start the private bus at this socket path instead of a temporary directory.
    #[arg(long, env = "BLE_SIM_SOCKET")]
    socket: Option<PathBuf>,
    /// Keep running when stdin reaches end of file (for use with `< /dev/null`).
    #[arg(long)]
    ignore_stdin: bool,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info", env = "BLE_SIM_LOG")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .context("invalid --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let config = SimConfig::load(&cli.devices)?;
    let bus = match (cli.bus, cli.socket) {
        (Some(address), _) => Bus::Address(address),
        (None, Some(path)) => Bus::PrivateAt(path),
        (None, None) => Bus::Private,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let sim = BleSim::start_on(config, bus).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "DBUS_SYSTEM_BUS_ADDRESS={}", sim.bus_address())?;
        out.flush()?;
    }

    let stdin_closed = async {
        if cli.ignore_stdin {
            return std::future::pending::<()>().await;
        }
        // A plain thread, not tokio's stdin: a blocking read there would keep
        // the runtime from shutting down.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = std::io::Read::read(&mut stdin, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send(());
        });
        let _ = rx.await;
    };
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "ctrl-c",
        _ = sigterm.recv() => "SIGTERM",
        _ = stdin_closed => "end of stdin",
    };
    tracing::info!(reason, "stopping");
    sim.shutdown().await;
    Ok(())
}
