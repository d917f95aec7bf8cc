//! `bench`: runs the mapper benchmarks; see `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use benchmarks::plot;
use benchmarks::runner::{self, RunResult, Settings};
use benchmarks::scenario::{Link, Workload};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Scenario {
    P1,
    P2,
    P3,
    P4,
    P5,
    All,
}

/// Mapper benchmarks against modbus-sim and mosquitto.
#[derive(Debug, Parser)]
struct Cli {
    /// Mapper command; `{broker}` and `{profile}` are replaced. Default: the release modbus-mapper in --bin-dir.
    #[arg(long, env = "BENCH_MAPPER_CMD")]
    mapper_cmd: Option<String>,
    /// Mapper binary whose size is reported (P5). Default: modbus-mapper in --bin-dir.
    #[arg(long, env = "BENCH_MAPPER_BIN")]
    mapper_bin: Option<PathBuf>,
    /// Directory of modbus-mapper and modbus-sim. Default: the workspace's target/release.
    #[arg(long, env = "BENCH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// modbus-sim binary. Default: modbus-sim in --bin-dir.
    #[arg(long, env = "BENCH_SIM_BIN")]
    sim_bin: Option<PathBuf>,
    /// mosquitto binary.
    #[arg(long, env = "BENCH_MOSQUITTO", default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// Runs per scenario variant (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Warm-up after the first report, seconds.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Output directory for JSON results and plots.
    #[arg(long, default_value = "benchmarks/results")]
    out: PathBuf,
    /// Tiny workloads, one run, one-second windows: checks the pipeline (CI), not timing.
    #[arg(long)]
    smoke: bool,
    /// Run nothing; summarize and plot the result files already in --out.
    #[arg(long)]
    report_only: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn tcp(
    devices: usize,
    props: usize,
    cycle_ms: u64,
    per_bus: usize,
    tick_ms: Option<u64>,
) -> Workload {
    let mut w = Workload::tcp(devices, props, Duration::from_millis(cycle_ms), per_bus);
    w.change_tick = tick_ms.map(Duration::from_millis);
    w
}

fn rtu(units: &[usize], per_property: bool) -> Workload {
    Workload {
        endpoints: 1,
        units: units.to_vec(),
        cycle: Duration::from_millis(10),
        change_tick: None,
        link: Link::Rtu { baud: 9600 },
        single_request_per_property: per_property,
        writable: false,
    }
}

async fn run_one(
    sc: Scenario,
    variant: &str,
    run: usize,
    w: &Workload,
    s: &Settings,
    mapper_bin: &Path,
) -> Result<RunResult> {
    match sc {
        Scenario::P3 => runner::latency(run, w, s).await,
        Scenario::P4 => runner::rtu(variant, run, w, s).await,
        _ => {
            let name = format!("{sc:?}").to_lowercase();
            let mut r = runner::throughput(&name, variant, run, w, s).await?;
            if sc == Scenario::P5 {
                let size = std::fs::metadata(mapper_bin)
                    .map(|m| m.len() as f64 / 1_048_576.0)
                    .unwrap_or(f64::NAN);
                r.metrics.insert("binary_mb".into(), size);
            }
            Ok(r)
        }
    }
}

fn plan(sc: Scenario, smoke: bool) -> Vec<(Scenario, String, Workload)> {
    let mut v = Vec::new();
    let all = sc == Scenario::All;
    if all || sc == Scenario::P5 {
        v.push((Scenario::P5, "idle".into(), tcp(1, 1, 1000, 1, None)));
    }
    if all || sc == Scenario::P3 {
        let mut w = tcp(1, 2, 100, 1, None);
        w.writable = true;
        v.push((Scenario::P3, "tcp".into(), w));
    }
    if all || sc == Scenario::P4 {
        // The layout of the issue: 10 properties on 3 units (4 + 3 + 3 registers).
        v.push((Scenario::P4, "merged".into(), rtu(&[4, 3, 3], false)));
        v.push((Scenario::P4, "per-property".into(), rtu(&[4, 3, 3], true)));
        // The same 10 properties on one unit, where merging can gain more than 5x.
        v.push((Scenario::P4, "1-unit-merged".into(), rtu(&[10], false)));
        v.push((Scenario::P4, "1-unit-per-property".into(), rtu(&[10], true)));
    }
    if all || sc == Scenario::P1 {
        let sizes: &[usize] = if smoke { &[2, 4] } else { &[10, 25, 50, 100] };
        for &n in sizes {
            let cycle = if smoke { 100 } else { 20 };
            v.push((
                Scenario::P1,
                n.to_string(),
                tcp(n, 10, cycle, 10, Some(cycle / 2)),
            ));
        }
    }
    if all || sc == Scenario::P2 {
        let n = if smoke { 20 } else { 1000 };
        v.push((Scenario::P2, n.to_string(), tcp(n, 10, 1000, 100, None)));
    }
    v
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn make_plots(
    out: &Path,
    results: &[RunResult],
    summary: &[(String, String, std::collections::BTreeMap<String, f64>)],
) -> Result<()> {
    let mut p1: Vec<(f64, &std::collections::BTreeMap<String, f64>)> = summary
        .iter()
        .filter(|(s, _, _)| s == "p1")
        .filter_map(|(_, v, m)| {
            let r = results
                .iter()
                .find(|r| r.scenario == "p1" && &r.variant == v)?;
            Some((r.devices as f64, m))
        })
        .collect();
    p1.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !p1.is_empty() {
        let pick = |k: &str| {
            p1.iter()
                .map(|(n, m)| (*n, m.get(k).copied().unwrap_or(0.0)))
                .collect::<Vec<_>>()
        };
        plot::lines(
            &out.join("p1-properties.svg"),
            "P1: properties/s vs devices (10 properties, 20 ms cycle)",
            "devices",
            "properties/s",
            &[
                ("due", pick("properties_due_per_s")),
                ("delivered to MQTT", pick("properties_delivered_per_s")),
                ("registers read", pick("registers_read_per_s")),
            ],
        )?;
        plot::lines(
            &out.join("p1-cpu.svg"),
            "P1: mapper CPU vs devices",
            "devices",
            "CPU % of one core",
            &[("mapper CPU", pick("cpu_percent"))],
        )?;
    }
    let mut variants: Vec<&str> = results
        .iter()
        .filter(|r| r.scenario == "p3")
        .map(|r| r.variant.as_str())
        .collect();
    variants.dedup();
    let lat = |v: &str, k: &str| {
        results
            .iter()
            .filter(|r| r.scenario == "p3" && r.variant == v)
            .flat_map(|r| r.samples.get(k).cloned().unwrap_or_default())
            .collect::<Vec<f64>>()
    };
    for (file, key, title) in [
        (
            "p3-delta-latency.svg",
            "delta_to_register_ms",
            "P3: twin delta published -> register written (all runs)",
        ),
        (
            "p3-register-latency.svg",
            "register_to_twin_ms",
            "P3: register changed -> twin/update received (100 ms cycle)",
        ),
    ] {
        let series: Vec<(&str, Vec<f64>)> = variants
            .iter()
            .map(|v| (*v, lat(v, key)))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if !series.is_empty() {
            plot::cdf(&out.join(file), title, &series)?;
        }
    }
    let groups: Vec<(&str, f64, f64)> = summary
        .iter()
        .filter(|(s, _, _)| s == "p4")
        .filter_map(|(_, v, m)| Some((v.as_str(), *m.get("cycle_ms")?, *m.get("wire_minimum_ms")?)))
        .collect();
    if !groups.is_empty() {
        plot::bars(
            &out.join("p4-rtu.svg"),
            "P4: RTU 9600 baud, 10 properties (on 3 units; on 1 unit)",
            "cycle time (ms)",
            &groups,
        )?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    let bin_dir = cli
        .bin_dir
        .clone()
        .unwrap_or_else(|| root.join("target/release"));
    let mapper_bin = cli
        .mapper_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("modbus-mapper"));
    let mapper_cmd = cli.mapper_cmd.clone().unwrap_or_else(|| {
        format!(
            "{} --mqtt-address {{broker}} --profile {{profile}} --log-level warn",
            mapper_bin.display()
        )
    });
    let sim_bin = cli
        .sim_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("modbus-sim"));
    if !sim_bin.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p modbus-sim) or pass --sim-bin/--bin-dir",
            sim_bin.display()
        );
    }
    let (runs, window, warmup) = if cli.smoke {
        (1, 1.0, 0.5)
    } else {
        (cli.runs.max(1), cli.window, cli.warmup)
    };
    let work = std::env::temp_dir().join(format!("bench-work-{}", std::process::id()));
    let settings = Settings {
        mapper_cmd,
        sim_bin,
        mosquitto: cli.mosquitto.clone(),
        window: Duration::from_secs_f64(window),
        warmup: Duration::from_secs_f64(warmup),
        out: work.clone(),
    };
    std::fs::create_dir_all(&cli.out)
        .with_context(|| format!("cannot create {}", cli.out.display()))?;
    let mut results = Vec::new();
    let mut failures = 0;
    let todo = if cli.report_only {
        Vec::new()
    } else {
        plan(cli.scenario, cli.smoke)
    };
    for (sc, variant, w) in todo {
        for run in 1..=runs {
            eprintln!(
                "{sc:?} {variant} run {run}/{runs}: {} devices, {} properties, {:?} cycle",
                w.devices(),
                w.properties(),
                w.cycle
            );
            match run_one(sc, &variant, run, &w, &settings, &mapper_bin).await {
                Ok(r) => {
                    runner::write_result(&cli.out, &r)?;
                    let line: Vec<String> = r
                        .metrics
                        .iter()
                        .map(|(k, v)| format!("{k}={}", fmt(*v)))
                        .collect();
                    eprintln!("  {}", line.join(" "));
                    results.push(r);
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("  FAILED: {e:#} (logs in {})", work.join("work").display());
                }
            }
        }
    }
    // Summaries and plots cover every result file in the output directory, so scenarios
    // can be re-run one at a time.
    let results = runner::load_results(&cli.out)?;
    let summary = runner::summarize(&results);
    let mut md = String::from("| scenario | variant | metric | median |\n|---|---|---|---|\n");
    for (s, v, m) in &summary {
        for (k, x) in m {
            let _ = writeln!(md, "| {s} | {v} | {k} | {} |", fmt(*x));
        }
    }
    std::fs::write(cli.out.join("summary.md"), &md)?;
    let json: Vec<serde_json::Value> = summary
        .iter()
        .map(|(s, v, m)| serde_json::json!({"scenario": s, "variant": v, "medians": m}))
        .collect();
    std::fs::write(
        cli.out.join("summary.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    make_plots(&cli.out, &results, &summary)?;
    println!("{md}");
    if failures > 0 {
        bail!("{failures} run(s) failed; logs in {}", work.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
