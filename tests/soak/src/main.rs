//! `soak`: disturbs a running `modbus-mapper` for a while and checks that no desired
//! value was lost, it never crashed and its memory stayed flat. See `scripts/soak.sh`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Soak test of the modbus-mapper binary (broker restarts, unit outages, profile edits,
/// delta bursts).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Modbus devices (units of one simulator).
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// The mapper binary.
    #[arg(long, default_value = "target/release/modbus-mapper")]
    mapper: PathBuf,
    /// Seed of the disturbances (to replay a run).
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let o = soak::run::Options {
        duration: Duration::from_secs_f64(a.minutes.max(0.0) * 60.0),
        devices: a.devices,
        mapper: a.mapper,
        seed: a.seed,
    };
    let r = soak::run::run(&o).await?;
    println!("soak: seed {} ({:?})", r.seed, r.tally);
    println!(
        "soak: settled {:.1} s after the last disturbance",
        r.settle.as_secs_f64()
    );
    println!("soak: lost desired values: {} {:?}", r.lost.len(), r.lost);
    println!("soak: devices not online at the end: {:?}", r.not_online);
    println!("soak: crash: {}", r.crashed.as_deref().unwrap_or("none"));
    println!(
        "soak: panics logged: {}, warnings/errors logged: {}",
        r.panics, r.warnings
    );
    let mut resumed: Vec<f64> = r
        .resume
        .iter()
        .flatten()
        .map(Duration::as_secs_f64)
        .collect();
    resumed.sort_by(f64::total_cmp);
    println!(
        "soak: first publish after the broker was back: {} of {} restarts within 10 s, median {:.2} s, max {:.2} s",
        resumed.len(),
        r.resume.len(),
        resumed.get(resumed.len() / 2).copied().unwrap_or(0.0),
        resumed.last().copied().unwrap_or(0.0)
    );
    match &r.rss {
        Some(v) => println!(
            "soak: rss early {} KiB, late {} KiB, peak {} KiB, slope {:+.0} KiB/h: {}",
            v.early_kib,
            v.late_kib,
            v.peak_kib,
            v.slope_kib_per_hour,
            if v.flat { "flat" } else { "GROWING" }
        ),
        None => println!("soak: rss: run too short to judge"),
    }
    if r.passed() {
        println!("soak: PASSED");
        Ok(())
    } else {
        anyhow::bail!("soak FAILED")
    }
}
