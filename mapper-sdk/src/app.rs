//! Wiring: the profile source, the supervisor and the MQTT adapter in one `run`, the
//! `check` mode, and the `main` every mapper binary calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use thiserror::Error;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::about::About;
use crate::config::{CommonArgs, ProfileSetting, Settings, SettingsError};
use crate::driver::{DeviceSpec, Driver, bind_noting};
use crate::model::DeviceId;
use crate::mqtt::{Mqtt, MqttError};
use crate::profile::{Issue, ProfileError, ResolveOptions, problems, resolve};
use crate::runtime::{ApplySummary, Cmd, Inbound, Supervisor};
use crate::source::FileSource;
use crate::twin::Desired;

/// Why the mapper stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// Bad settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Bad MQTT settings.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The Kubernetes API cannot be configured.
    #[cfg(feature = "kube")]
    #[error(transparent)]
    Kube(#[from] crate::kube_source::KubeSourceError),
    /// DMI cannot start (its socket cannot be bound).
    #[cfg(feature = "dmi")]
    #[error(transparent)]
    Dmi(#[from] crate::dmi::DmiError),
    /// The HTTP endpoint cannot start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// A profile bound to a driver.
#[derive(Debug)]
pub struct Loaded<D: Driver> {
    /// Devices this driver runs.
    pub devices: Vec<DeviceSpec<D>>,
    /// Devices of other protocols (other mappers own them).
    pub skipped: Vec<(String, String)>,
    /// Errors: each names the device(s), property and field; one per distinct problem.
    pub errors: Vec<String>,
    /// Warnings.
    pub warnings: Vec<Issue>,
    /// Devices the profile names but that have errors: if one runs, it keeps running on
    /// its previous definition (see [`keep_failed`]).
    pub failed: Vec<DeviceId>,
    /// Nothing in the text can be used: it is not a profile, is broken as a whole (a
    /// top-level list that is not a list, too deep), or every device in it has errors.
    /// Keep whatever runs now.
    pub unreadable: bool,
}

/// Resolves a profile text and binds every device this driver handles. Pure.
pub fn load<D: Driver>(driver: &D, text: &str, opts: &ResolveOptions) -> Loaded<D> {
    let resolved = resolve(text, opts);
    let mut errors = resolved.errors;
    let mut devices = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = resolved.failed;
    let mut warnings = resolved.warnings;
    let mut noted = Vec::new();
    for def in resolved.devices {
        let id = def.id.clone();
        let kind = def.protocol.kind.clone();
        match bind_noting(driver, def) {
            None => skipped.push((id.to_string(), kind)),
            Some(Err(mut issue)) => {
                // Clipped at once: a shared broken protocol fails every device with it.
                issue.message = problems::clip(issue.message);
                errors.push(ProfileError::Invalid(issue));
                failed.push(id);
            }
            Some(Ok(bound)) => {
                errors.extend(bound.issues.into_iter().map(|mut i| {
                    i.message = problems::clip(i.message);
                    ProfileError::Invalid(i)
                }));
                noted.extend(bound.warnings);
                devices.push(bound.spec);
            }
        }
    }
    // One warning for all the devices with the same ignored key (a shared protocol).
    warnings.extend(problems::group_issues(noted));
    let errors = problems::group_errors(errors);
    let broken = resolved.format.is_none()
        && errors
            .iter()
            .any(|e| matches!(e, ProfileError::Unreadable(_)));
    Loaded {
        unreadable: broken || (devices.is_empty() && !errors.is_empty()),
        devices,
        skipped,
        errors: errors.iter().map(ToString::to_string).collect(),
        warnings,
        failed,
    }
}

/// Keeps the running devices that the new profile names but got wrong: each goes on
/// with the definition it runs, with an error in the log, instead of being stopped.
/// Devices really absent from the profile still stop.
pub fn keep_failed<D: Driver>(sup: &Supervisor<D>, loaded: &mut Loaded<D>) {
    for id in &loaded.failed {
        if loaded.devices.iter().any(|d| d.id() == id) {
            continue;
        }
        if let Some(spec) = sup.spec(id) {
            error!(device = %id, "the new definition of the device has errors; it keeps running on its previous one");
            loaded.devices.push(spec);
        }
    }
}

type DesiredMap = BTreeMap<DeviceId, Vec<Desired>>;

/// The desired values the profile names, by device.
fn desired_in<D: Driver>(devices: &[DeviceSpec<D>]) -> DesiredMap {
    devices
        .iter()
        .map(|d| {
            let values = d
                .def
                .properties
                .iter()
                .filter_map(|p| {
                    p.desired.as_ref().map(|v| Desired {
                        property: p.name.clone(),
                        value: v.clone(),
                        stored_type: p.stored_type.clone(),
                    })
                })
                .collect();
            (d.id().clone(), values)
        })
        .filter(|(_, v): &(DeviceId, Vec<Desired>)| !v.is_empty())
        .collect()
}

/// Hands the workers the desired values that are new since the last profile: all of
/// them for a device that (re)started, the changed ones for the others.
fn route_desired<D: Driver>(
    sup: &Supervisor<D>,
    summary: &ApplySummary,
    last: &DesiredMap,
    now: &DesiredMap,
) {
    for (id, values) in now {
        let fresh = summary.started.contains(id) || summary.restarted.contains(id);
        let before = last.get(id);
        let send: Vec<Desired> = values
            .iter()
            .filter(|d| fresh || before.is_none_or(|b| !b.contains(d)))
            .cloned()
            .collect();
        if !send.is_empty() {
            debug!(device = %id, count = send.len(), "desired values from the device spec");
            sup.route(id, Cmd::Desired(send));
        }
    }
}

fn log_loaded<D: Driver>(loaded: &Loaded<D>) {
    for e in &loaded.errors {
        error!("profile: {e}");
    }
    for w in &loaded.warnings {
        warn!("profile: {w}");
    }
    for (id, kind) in &loaded.skipped {
        debug!(device = %id, protocol = %kind, "device of another protocol; skipped");
    }
}

/// Where the runtime's reports go.
enum Sink {
    /// The MQTT twin contract (ConfigMap era, and the kube sources).
    Mqtt(Mqtt),
    /// edgecore over DMI (with MQTT for data properties or when so configured).
    #[cfg(feature = "dmi")]
    Dmi(crate::dmi::Dmi),
}

/// Runs the mapper until `shutdown` completes: watches the profile, runs the devices,
/// talks to the broker; then reports every device offline and flushes MQTT.
pub async fn run<D: Driver>(
    driver: D,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    #[cfg(feature = "kube")]
    let kube_client = match &settings.profile {
        ProfileSetting::Kube(k) => Some(crate::kube_source::client(&k.connection).await?),
        _ => None,
    };
    // v1beta1 Devices carry desired values in their spec: those are writes.
    #[cfg(feature = "kube")]
    let spec_desired = matches!(&settings.profile, ProfileSetting::Kube(k)
        if k.watch == crate::kube_source::KubeWatch::Devices);
    #[cfg(not(feature = "kube"))]
    let spec_desired = false;
    // So do DMI devices: edgecore's UpdateDevice carries the cloud's desired values.
    #[cfg(feature = "dmi")]
    let spec_desired = spec_desired || matches!(&settings.profile, ProfileSetting::Dmi(_));
    let mut last_desired = BTreeMap::new();
    let source = describe_source(&settings.profile);
    let broker = format!(
        "{}://{}:{}",
        if settings.mqtt.tls.is_some() {
            "ssl"
        } else {
            "tcp"
        },
        settings.mqtt.host,
        settings.mqtt.port
    );
    info!(
        binary = settings.about.name,
        version = settings.about.version,
        protocol = driver.name(),
        source = %source,
        broker = %broker,
        "starting"
    );
    let mut summarized = false;
    let driver = Arc::new(driver);
    let cancel = CancellationToken::new();
    let (out_tx, out_rx) = mpsc::channel(4096);
    let (in_tx, mut in_rx) = mpsc::channel(1024);
    let (prof_tx, mut prof_rx) = watch::channel(None);
    let telemetry = crate::http::Telemetry::default();
    let http = match &settings.http {
        Some(h) => {
            Some(start_http(h, telemetry.clone(), in_tx.clone(), cancel.child_token()).await?)
        }
        None => None,
    };
    let sink = match &settings.profile {
        #[cfg(feature = "dmi")]
        ProfileSetting::Dmi(dmi) => Sink::Dmi(
            crate::dmi::Dmi::start(
                dmi.clone(),
                driver.dmi_protocol(),
                settings.about.version,
                settings.mqtt.clone(),
                out_rx,
                in_tx,
                prof_tx.clone(),
                cancel.child_token(),
            )
            .await?,
        ),
        _ => {
            let mqtt =
                Mqtt::start_with_metrics(settings.mqtt.clone(), out_rx, in_tx, telemetry.mqtt())?;
            telemetry.mqtt().set_buffer(mqtt.buffer_stats());
            Sink::Mqtt(mqtt)
        }
    };
    #[cfg(feature = "dmi")]
    if let Sink::Dmi(dmi) = &sink {
        telemetry.set_report_path(crate::http::ReportPath::Dmi);
        let mut rounds = dmi.registrations();
        let t = telemetry.clone();
        let stop = cancel.child_token();
        tokio::spawn(async move {
            tokio::select! {
                r = rounds.wait_for(|n| *n > 0) => if r.is_ok() { t.set_dmi_registered() },
                () = stop.cancelled() => {}
            }
        });
    }
    let hint = Arc::new(Notify::new());
    match &settings.profile {
        ProfileSetting::File(path) => {
            info!(path = %path.display(), "watching the device profile");
            let src = FileSource::new(path.clone());
            tokio::spawn(src.watch(prof_tx.clone(), Arc::clone(&hint), cancel.child_token()));
        }
        ProfileSetting::Inline(text) => {
            info!("using the device profile from DEVICE_PROFILE");
            let _ = prof_tx.send(Some(Arc::new(text.clone())));
        }
        #[cfg(feature = "kube")]
        ProfileSetting::Kube(k) => {
            info!(source = ?k.watch, namespace = ?k.namespace, node = ?k.node_name, "watching the device profile in the kubernetes API");
            if let Some(client) = kube_client {
                let src = crate::kube_source::KubeSource::new(client, k.clone());
                tokio::spawn(src.watch(prof_tx.clone(), cancel.child_token()));
            }
        }
        #[cfg(feature = "dmi")]
        ProfileSetting::Dmi(_) => {
            info!("devices, models and desired values come from edgecore over DMI");
        }
    }
    let mut sup = Supervisor::new(
        Arc::clone(&driver),
        settings.runtime.clone(),
        out_tx,
        cancel.child_token(),
    )
    .with_telemetry(telemetry.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = prof_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let text = prof_rx.borrow_and_update().clone();
                if let Some(text) = text {
                    let loaded = load(&*driver, &text, &settings.resolve);
                    // Drop the channel's copy of the text unless a newer one arrived
                    // meanwhile (without waking anyone): the sources keep fingerprints.
                    prof_tx.send_if_modified(|v| {
                        if v.as_ref().is_some_and(|v| Arc::ptr_eq(v, &text)) {
                            *v = None;
                        }
                        false
                    });
                    drop(text);
                    log_loaded(&loaded);
                    if loaded.unreadable {
                        error!("the new profile cannot be used (see the errors above); the running devices are kept");
                    } else {
                        let mut loaded = loaded;
                        keep_failed(&sup, &mut loaded);
                        let desired = if spec_desired {
                            desired_in(&loaded.devices)
                        } else {
                            BTreeMap::new()
                        };
                        let summary = sup.apply(loaded.devices).await;
                        telemetry.set_profile_loaded();
                        if !summarized {
                            summarized = true;
                            info!(
                                binary = settings.about.name,
                                version = settings.about.version,
                                source = %source,
                                broker = %broker,
                                devices = summary.started.len(),
                                skipped = loaded.skipped.len(),
                                errors = loaded.errors.len(),
                                "running"
                            );
                        }
                        if spec_desired {
                            route_desired(&sup, &summary, &last_desired, &desired);
                            last_desired = desired;
                        }
                    }
                }
            }
            Some(msg) = in_rx.recv() => match msg {
                Inbound::Desired { device, values } => {
                    if !sup.route(&device, Cmd::Desired(values)) {
                        debug!(device = %device, "desired values for a device this mapper does not run");
                    }
                }
                Inbound::Connected => sup.resync_all(),
                Inbound::MembershipChanged => hint.notify_one(),
            },
        }
    }
    info!("shutting down: reporting devices offline");
    cancel.cancel();
    drop(prof_tx);
    sup.shutdown().await;
    match sink {
        Sink::Mqtt(mqtt) => mqtt.finish(Duration::from_secs(5)).await,
        #[cfg(feature = "dmi")]
        Sink::Dmi(dmi) => dmi.finish(Duration::from_secs(5)).await,
    }
    if let Some(h) = http {
        h.finish(Duration::from_secs(1)).await;
    }
    info!("stopped");
    Ok(())
}

/// Reads the write token (never logged) and starts the HTTP endpoint.
async fn start_http(
    h: &crate::config::HttpSettings,
    telemetry: crate::http::Telemetry,
    writes: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) -> Result<crate::http::HttpServer, crate::http::HttpError> {
    let token = match &h.token_file {
        None => None,
        Some(path) => {
            let err = |message: String| crate::http::HttpError::Token {
                path: path.display().to_string(),
                message,
            };
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| err(e.to_string()))?;
            Some(
                crate::http::Token::from_file_text(&text)
                    .ok_or_else(|| err("the file is empty".into()))?,
            )
        }
    };
    if token.is_none() {
        info!("http: writes are off (no mapper.httpWriteTokenFile)");
    }
    let api = crate::http::Api::new(telemetry, token);
    crate::http::HttpServer::start(h.listen, api, writes, cancel).await
}

/// Where the devices come from, for the start-up lines.
fn describe_source(profile: &ProfileSetting) -> String {
    match profile {
        ProfileSetting::File(p) => format!("file {}", p.display()),
        ProfileSetting::Inline(_) => "DEVICE_PROFILE".into(),
        #[cfg(feature = "kube")]
        ProfileSetting::Kube(k) => format!("kubernetes {:?}", k.watch),
        #[cfg(feature = "dmi")]
        ProfileSetting::Dmi(d) => format!(
            "dmi (edgecore {}, reports {:?})",
            d.edgecore_socket_file().display(),
            d.report
        ),
    }
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Renders the outcome of `check` for a person, configs as the profile gives them (see
/// [`crate::check::text`]).
pub fn check_report<D: Driver>(loaded: &Loaded<D>) -> String {
    crate::check::text(None, loaded, &[])
}

/// The config file's unknown keys as warnings for `check` (none when it cannot be
/// read: [`Settings::from_args`] has said why already).
fn config_warnings(path: &std::path::Path) -> Vec<Issue> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok((_, unknown)) = crate::config::parse_config_noting(&text, path) else {
        return Vec::new();
    };
    unknown
        .into_iter()
        .map(|k| Issue {
            device: None,
            property: None,
            message: format!("{} (in {})", k.message(), path.display()),
            field: Some(k.path),
            others: Vec::new(),
        })
        .collect()
}

#[derive(Debug, Parser)]
#[command(about = "A KubeEdge device mapper")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mapper (the default).
    Run,
    /// Validate a profile: print the resolved devices, every warning (unknown keys of the
    /// config file and of protocol and visitor configs among them) and every error; exit
    /// 1 on errors.
    Check {
        /// The profile (default: the configured one).
        profile: Option<std::path::PathBuf>,
        /// Warnings fail the check too (exit 1).
        #[arg(long)]
        strict: bool,
        /// Print one JSON document: {devices, skipped, warnings, errors}.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Ctl(crate::ctl::CtlCommand),
}

/// Logs to stderr: `--log-level`, else `RUST_LOG`, else info, as text or JSON lines
/// (see [`crate::logging`]).
fn init_tracing(filter: Option<&str>, format: crate::logging::LogFormat) {
    crate::logging::init(filter, format);
}

/// The flags, with the binary's name and version in `--help` and `--version`.
fn parse_cli(about: About) -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command()
        .name(about.name)
        .bin_name(about.name)
        .version(about.version)
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The whole `main` of a mapper binary, as `mapper-sdk` names itself in `--version`;
/// binaries call [`main_with`] with [`about!`](crate::about!) instead.
pub fn main<D: Driver>(driver: D) -> ExitCode {
    main_with(driver, crate::about!())
}

/// The whole `main` of a mapper binary: flags, logging, `check` or `run`. `about` names
/// the binary in `--help` and `--version` (use [`about!`](crate::about!)).
pub fn main_with<D: Driver>(driver: D, about: About) -> ExitCode {
    let cli = parse_cli(about);
    init_tracing(cli.common.log_level.as_deref(), cli.common.log_format);
    let command = match cli.command {
        Some(Command::Ctl(cmd)) => return crate::ctl::main(cmd),
        other => other,
    };
    let settings = match Settings::from_args(&cli.common, driver.name()) {
        Ok(s) => Settings { about, ..s },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Check {
        profile,
        strict,
        json,
    }) = &command
    {
        let text = match (profile, &settings.profile) {
            (Some(p), _) | (None, ProfileSetting::File(p)) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", p.display());
                    return ExitCode::from(2);
                }
            },
            (None, ProfileSetting::Inline(t)) => t.clone(),
            #[cfg(feature = "kube")]
            (None, ProfileSetting::Kube(_)) => {
                eprintln!("error: the profile comes from the kubernetes API; give `check` a file");
                return ExitCode::from(2);
            }
            #[cfg(feature = "dmi")]
            (None, ProfileSetting::Dmi(_)) => {
                eprintln!("error: the devices come from edgecore over DMI; give `check` a file");
                return ExitCode::from(2);
            }
        };
        let loaded = load(&driver, &text, &settings.resolve);
        let extra = config_warnings(&cli.common.config_file);
        if *json {
            println!("{}", crate::check::json(Some(&driver), &loaded, &extra));
        } else {
            print!("{}", crate::check::text(Some(&driver), &loaded, &extra));
        }
        let warned = !extra.is_empty() || !loaded.warnings.is_empty();
        return if loaded.errors.is_empty() && !(*strict && warned) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(driver, settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
