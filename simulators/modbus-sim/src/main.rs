//! `modbus-sim`: serve the endpoints of a YAML register map until SIGTERM or ctrl-c.
//!
//! Prints one line per endpoint on stdout (`endpoint=NAME tcp=ADDR` or
//! `endpoint=NAME rtu=PATH`), `control=ADDR` with `--control`, then `ready`;
//! logs go to stderr. `modbus-sim fault ...` changes the faults of a running one.

mod cli;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use modbus_sim::{MapFile, Running, RunningControl, write_stats_file};
use sim_control::ControlServer;
use tokio_util::sync::CancellationToken;

/// Software Modbus TCP/RTU device serving a YAML register map.
///
/// The map format and the faults are documented in simulators/modbus-sim/README.md;
/// example maps are in simulators/modbus-sim/maps/ (paths from the repository root).
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Register map (YAML), e.g. simulators/modbus-sim/maps/boiler.yaml (from the repository root).
    #[arg(long, short, env = "MODBUS_SIM_MAP", required = true)]
    map: Option<PathBuf>,
    /// Serve the control endpoint (HTTP: GET/POST /faults) on IP:PORT; port 0 = any
    /// free port, printed as `control=ADDR`. No authentication: keep it on loopback.
    #[arg(long, env = "MODBUS_SIM_CONTROL")]
    control: Option<String>,
    /// Write JSON counters to this file periodically and at exit.
    #[arg(long, env = "MODBUS_SIM_STATS_FILE")]
    stats_file: Option<PathBuf>,
    /// Seconds between stats log lines and stats-file writes.
    #[arg(long, default_value_t = 5.0, env = "MODBUS_SIM_STATS_INTERVAL")]
    stats_interval: f64,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info", env = "MODBUS_SIM_LOG")]
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
            eprintln!("modbus-sim fault: {e:#}");
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
    let interval = Duration::try_from_secs_f64(cli.stats_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--stats-interval must be a positive number of seconds")?;

    let Some(map_path) = &cli.map else {
        anyhow::bail!("--map is required");
    };
    let map = MapFile::load(map_path)?;
    let cancel = CancellationToken::new();
    let running = Arc::new(Running::start(&map, &cancel).await?);
    let control = match &cli.control {
        Some(addr) => Some(
            ControlServer::start(addr, Arc::new(RunningControl::new(Arc::clone(&running)))).await?,
        ),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    for ep in running.endpoints() {
        for a in &ep.tcp {
            writeln!(out, "endpoint={} tcp={a}", ep.name)?;
        }
        if let Some(p) = &ep.rtu_path {
            writeln!(out, "endpoint={} rtu={}", ep.name, p.display())?;
        }
    }
    if let Some(c) = &control {
        writeln!(out, "control={}", c.local_addr())?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => {
                let report = running.report();
                for (name, s) in &report.endpoints {
                    tracing::info!(endpoint = %name, "stats {}", s.summary());
                }
                if let Some(p) = &cli.stats_file
                    && let Err(e) = write_stats_file(p, &report)
                {
                    tracing::warn!(path = %p.display(), error = %e, "cannot write stats file");
                }
            }
        }
    }
    if let Some(c) = control {
        c.shutdown().await;
    }
    cancel.cancel();
    running.shutdown().await;
    let report = running.report();
    for (name, s) in &report.endpoints {
        tracing::info!(endpoint = %name, "final stats {}", s.summary());
        println!("final endpoint={name} {}", s.summary());
    }
    if let Some(p) = &cli.stats_file {
        write_stats_file(p, &report)
            .with_context(|| format!("cannot write stats file {}", p.display()))?;
    }
    Ok(())
}
