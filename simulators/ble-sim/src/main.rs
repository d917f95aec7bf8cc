//! `ble-sim`: serve simulated BLE peripherals as `org.bluez` on a D-Bus.
//!
//! Starts a private `dbus-daemon` (or joins `--bus`), prints
//! `DBUS_SYSTEM_BUS_ADDRESS=unix:path=...` on stdout when ready (then
//! `control=ADDR` with `--control`), and runs until SIGTERM, ctrl-c or end
//! of stdin. Logs go to stderr. `ble-sim fault ...` changes the faults of a
//! running one.

mod cli;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use ble_sim::{BleSim, Bus, SimConfig, SimControl};
use clap::Parser;
use sim_control::ControlServer;

/// A BlueZ stand-in serving simulated BLE peripherals from a YAML file.
///
/// The device file format and the faults are documented in simulators/ble-sim/README.md;
/// example files are in simulators/ble-sim/devices/ (paths from the repository root).
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Device file (YAML), e.g. simulators/ble-sim/devices/lab.yaml (from the repository root).
    #[arg(long, short, env = "BLE_SIM_DEVICES", required = true)]
    devices: Option<PathBuf>,
    /// Serve the control endpoint (HTTP: GET/POST /faults, POST /drop-link) on IP:PORT;
    /// port 0 = any free port, printed as `control=ADDR`. No authentication: keep it on loopback.
    #[arg(long, env = "BLE_SIM_CONTROL")]
    control: Option<String>,
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

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Change or show the faults of a running simulator through its control endpoint.
    Fault(cli::FaultArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Fault(args)) = cli.command {
        // one plain line for CI logs, not anyhow's report with a backtrace
        if let Err(e) = cli::run(args).await {
            eprintln!("ble-sim fault: {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .context("invalid --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let Some(devices) = &cli.devices else {
        anyhow::bail!("--devices is required");
    };
    let config = SimConfig::load(devices)?;
    let bus = match (cli.bus, cli.socket) {
        (Some(address), _) => Bus::Address(address),
        (None, Some(path)) => Bus::PrivateAt(path),
        (None, None) => Bus::Private,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let sim = Arc::new(BleSim::start_on(config, bus).await?);
    let control = match &cli.control {
        Some(addr) => {
            match ControlServer::start(addr, Arc::new(SimControl::new(Arc::clone(&sim)))).await {
                Ok(c) => Some(c),
                Err(e) => {
                    stop(sim).await;
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "DBUS_SYSTEM_BUS_ADDRESS={}", sim.bus_address())?;
        if let Some(c) = &control {
            writeln!(out, "control={}", c.local_addr())?;
        }
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
    if let Some(c) = control {
        // afterwards nothing but `sim` itself refers to the simulator
        c.shutdown().await;
    }
    stop(sim).await;
    Ok(())
}

/// Shuts the simulator down (and its private bus with it).
async fn stop(sim: Arc<BleSim>) {
    match Arc::try_unwrap(sim) {
        Ok(sim) => sim.shutdown().await,
        // cannot happen once the control server is down; dropping still
        // stops the dynamics and SIGTERMs the private bus
        Err(sim) => {
            tracing::warn!("the simulator is still shared at exit; dropping it");
            drop(sim);
        }
    }
}
