//! `http-sim --map FILE [--listen ADDR]`: serves the device in FILE until ctrl-c or
//! SIGTERM, printing the bound address first.

use std::path::PathBuf;

use clap::Parser;

/// Serves the JSON documents of a device file over HTTP (see the crate's README for the
/// format, e.g. device-models/smart-plug/sim-http.yaml in the repository).
#[derive(Debug, Parser)]
#[command(name = "http-sim", version)]
struct Args {
    /// The device file (YAML).
    #[arg(long)]
    map: PathBuf,
    /// Where to listen; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let map = http_sim::MapFile::load(&args.map)?;
    let sim = http_sim::Simulator::from_map(&map);
    let server = sim.serve(&args.listen).await?;
    println!("http-sim listening on {}", server.addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    drop(server);
    Ok(())
}
