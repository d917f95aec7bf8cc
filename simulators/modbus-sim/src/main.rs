//! `modbus-sim`: serve the endpoints of a YAML register map until SIGTERM or ctrl-c.
//!
//! Prints one line per endpoint on stdout (`endpoint=NAME tcp=ADDR` or
//! `endpoint=NAME rtu=PATH`), then `ready`; logs go to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use modbus_sim::{MapFile, Running, write_stats_file};
use tokio_util::sync::CancellationToken;

/// Software Modbus TCP/RTU device serving a YAML register map.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Register map (YAML), see maps/ for examples.
    #[arg(long, short, env = "MODBUS_SIM_MAP")]
    map: PathBuf,
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
    let interval = Duration::try_from_secs_f64(cli.stats_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--stats-interval must be a positive number of seconds")?;

    let map = MapFile::load(&cli.map)?;
    let cancel = CancellationToken::new();
    let running = Running::start(&map, &cancel).await?;
    let mut out = std::io::stdout().lock();
    for ep in running.endpoints() {
        for a in &ep.tcp {
            writeln!(out, "endpoint={} tcp={a}", ep.name)?;
        }
        if let Some(p) = &ep.rtu_path {
            writeln!(out, "endpoint={} rtu={}", ep.name, p.display())?;
        }
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
