//! `dmi-sim`: a fake KubeEdge edgecore serving DMI v1beta1's `DeviceManagerService` on
//! a socket file. Prints one JSON line per recorded event on stdout; SIGHUP or a line
//! `restart` on stdin restarts it (new socket inode, registrations handled as the
//! chosen release does); SIGTERM or Ctrl-C stops it and removes the socket.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dmi_sim::limiter::LimiterConfig;
use dmi_sim::{Edgecore, Fixtures, Version};
use tokio::signal::unix::{SignalKind, signal};

/// A fake KubeEdge edgecore for DMI v1beta1 mapper tests.
#[derive(Debug, Parser)]
#[command(name = "dmi-sim")]
struct Args {
    /// The socket file to serve DeviceManagerService on.
    #[arg(long, default_value = "/etc/kubeedge/dmi.sock")]
    socket: PathBuf,
    /// The edgecore release to play (1.15 to 1.23).
    #[arg(long, default_value = "1.23")]
    version: Version,
    /// A YAML/JSON file of v1beta1 Device and DeviceModel resources (repeatable), e.g.
    /// simulators/dmi-sim/fixtures/modbus-tcp.yaml (from the repository root).
    #[arg(long = "fixtures")]
    fixtures: Vec<PathBuf>,
    /// Limiter refill rate in tokens per second (edgecore: 1).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Limiter bucket size (edgecore: 100).
    #[arg(long, default_value_t = 100)]
    burst: u32,
    /// Switch the limiter off.
    #[arg(long, conflicts_with_all = ["rate", "burst"])]
    no_limiter: bool,
    /// Latency added to every call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

fn limiter(args: &Args) -> Result<Option<LimiterConfig>, String> {
    if args.no_limiter {
        return Ok(None);
    }
    if !(args.rate.is_finite() && args.rate > 0.0) || args.burst == 0 {
        return Err(format!(
            "--rate must be a positive number and --burst at least 1 (got {} and {}); use --no-limiter to switch it off",
            args.rate, args.burst
        ));
    }
    Ok(Some(LimiterConfig {
        interval: Duration::from_secs_f64(1.0 / args.rate),
        burst: args.burst,
    }))
}

fn load(paths: &[PathBuf]) -> Result<Fixtures, String> {
    let mut all = Fixtures::default();
    for p in paths {
        all.merge(Fixtures::from_file(p).map_err(|e| e.to_string())?);
    }
    Ok(all)
}

fn print_new(ec: &Edgecore, printed: &mut usize) {
    let new = ec.events_since(*printed);
    *printed += new.len();
    let mut out = std::io::stdout().lock();
    for e in new {
        let _ = writeln!(out, "{}", e.to_json());
    }
    let _ = out.flush();
}

/// Lines of stdin, read on a plain thread: a blocked read there does not keep the
/// process alive at exit (tokio's stdin would, as a blocking task of the runtime).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn run(args: Args) -> Result<(), String> {
    let limiter = limiter(&args)?;
    let fixtures = load(&args.fixtures)?;
    let mut ec = Edgecore::start(&args.socket, args.version, fixtures, limiter)
        .await
        .map_err(|e| e.to_string())?;
    ec.set_latency(Duration::from_millis(args.latency_ms));
    let signal_err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
    let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
    let mut stdin = stdin_lines();
    let mut events = ec.subscribe();
    let mut printed = 0;
    print_new(&ec, &mut printed);
    let result = loop {
        let restart = tokio::select! {
            _ = events.changed() => false,
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => true,
            Some(line) = stdin.recv() => {
                if line.trim() != "restart" {
                    tracing::warn!("dmi-sim: unknown stdin command {:?} (only \"restart\")", line.trim());
                }
                line.trim() == "restart"
            }
        };
        if restart && let Err(e) = ec.restart().await {
            break Err(e.to_string());
        }
        print_new(&ec, &mut printed);
    };
    print_new(&ec, &mut printed);
    ec.stop().await.map_err(|e| e.to_string())?;
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("dmi-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
