//! The `ble-sim fault` subcommand: turn the command line into a control
//! request and send it to a running simulator's `--control` endpoint.

use std::collections::BTreeMap;

use ble_sim::{
    CharFaultConfig, DeviceFaultConfig, FaultMode, FaultRequest, LinkRequest, ReadErrorKind,
};
use clap::{Args, Subcommand};

/// Change or show the faults of a running simulator (started with --control).
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The control address the simulator printed (`control=ADDR`), e.g. 127.0.0.1:40123.
    #[arg(long)]
    control: String,
    /// The device address (MAC); needed only when the device file has several devices.
    #[arg(long, short)]
    device: Option<String>,
    #[command(subcommand)]
    action: FaultAction,
}

/// What to do. Every fault but `set` and `clear` is added to the device's
/// active faults.
#[derive(Debug, Subcommand)]
enum FaultAction {
    /// Print every device's faults (JSON).
    Show,
    /// `Connect` fails (le-connection-abort-by-local) until cleared.
    RefuseConnect,
    /// Wait MS milliseconds between GATT export and ServicesResolved on connect.
    ResolveDelay {
        /// Milliseconds.
        ms: u64,
    },
    /// Every read fails (of the device, or of one --characteristic).
    RefuseReads {
        /// The D-Bus error: failed (org.bluez.Error.Failed) or not_permitted.
        #[arg(long, default_value = "failed", value_parser = parse_read_error)]
        error: ReadErrorKind,
        /// Only this characteristic (UUID, 16-bit short form or full).
        #[arg(long)]
        characteristic: Option<String>,
    },
    /// Stop notifying: subscribed characteristics send nothing, Notifying stays true.
    MuteNotifications,
    /// Drop the link now, as if the device went out of range (it may reconnect;
    /// add refuse-connect to keep it away).
    DropLink,
    /// Replace the device's faults with DOC, the device file's fault format as
    /// YAML or JSON (e.g. '{refuse_connect: true}'), or @PATH to read it from a file.
    Set {
        /// The fault document or @PATH.
        doc: String,
    },
    /// Make the device healthy again (no faults, also none from the device file).
    Clear,
}

fn parse_read_error(s: &str) -> Result<ReadErrorKind, String> {
    serde_saphyr::from_str(&s.replace('-', "_"))
        .map_err(|_| format!("`{s}` is not a read error: failed or not_permitted"))
}

/// Method, path and body for the action.
fn request(args: &FaultArgs) -> anyhow::Result<(&'static str, &'static str, Option<String>)> {
    let faults = match &args.action {
        FaultAction::Show => return Ok(("GET", "/faults", None)),
        FaultAction::DropLink => {
            let body = LinkRequest {
                device: args.device.clone(),
            };
            return Ok(("POST", "/drop-link", Some(serde_json::to_string(&body)?)));
        }
        FaultAction::RefuseConnect => DeviceFaultConfig {
            refuse_connect: true,
            ..DeviceFaultConfig::default()
        },
        FaultAction::ResolveDelay { ms } => DeviceFaultConfig {
            resolve_delay_ms: *ms,
            ..DeviceFaultConfig::default()
        },
        FaultAction::RefuseReads {
            error,
            characteristic: None,
        } => DeviceFaultConfig {
            read_error: Some(*error),
            ..DeviceFaultConfig::default()
        },
        FaultAction::RefuseReads {
            error,
            characteristic: Some(uuid),
        } => DeviceFaultConfig {
            characteristics: BTreeMap::from([(
                uuid.clone(),
                CharFaultConfig {
                    read_error: Some(*error),
                },
            )]),
            ..DeviceFaultConfig::default()
        },
        FaultAction::MuteNotifications => DeviceFaultConfig {
            mute_notifications: true,
            ..DeviceFaultConfig::default()
        },
        FaultAction::Set { doc } => parse_doc(doc)?,
        FaultAction::Clear => DeviceFaultConfig::default(),
    };
    let mode = match args.action {
        FaultAction::Set { .. } | FaultAction::Clear => FaultMode::Replace,
        _ => FaultMode::Add,
    };
    let body = FaultRequest {
        device: args.device.clone(),
        mode,
        faults,
    };
    Ok(("POST", "/faults", Some(serde_json::to_string(&body)?)))
}

fn parse_doc(doc: &str) -> anyhow::Result<DeviceFaultConfig> {
    Ok(sim_control::read_document(
        doc,
        "the device file's fault keys: refuse_connect, resolve_delay_ms, read_error, mute_notifications, characteristics",
    )?)
}

/// Sends the request; prints the answer (JSON) on stdout. A refused
/// request is an error carrying the simulator's message.
pub async fn run(args: FaultArgs) -> anyhow::Result<()> {
    let (method, path, body) = request(&args)?;
    let reply = sim_control::send_ok(&args.control, method, path, body.as_deref()).await?;
    print!("{reply}");
    Ok(())
}
