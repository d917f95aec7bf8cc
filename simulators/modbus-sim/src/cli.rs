//! The `modbus-sim fault` subcommand: turn the command line into a control
//! request and send it to a running simulator's `--control` endpoint.

use anyhow::bail;
use clap::{Args, Subcommand};
use modbus_sim::{
    DropRequest, ExceptionRule, FaultConfig, FaultMode, FaultRequest, LateConfig, TableKind,
};

/// Change or show the faults of a running simulator (started with --control).
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The control address the simulator printed (`control=ADDR`), e.g. 127.0.0.1:40123.
    #[arg(long)]
    control: String,
    /// Endpoint name from the map; needed only when the map has several.
    #[arg(long, short)]
    endpoint: Option<String>,
    /// The unit id (slave id) to change.
    #[arg(long, short)]
    unit: Option<u8>,
    #[command(subcommand)]
    action: FaultAction,
}

/// What to do. Every fault but `set` and `clear` is added to the unit's
/// active faults (a setting of the same kind is replaced).
#[derive(Debug, Subcommand)]
enum FaultAction {
    /// Print every unit's faults (JSON).
    Show,
    /// Never answer: the unit looks absent from the bus.
    Silent,
    /// Delay every reply by MS milliseconds.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Make every N-th reply MS milliseconds late (after a client's timeout).
    Late {
        /// Milliseconds.
        ms: u64,
        /// Which replies: 1 = all, 3 = every third.
        #[arg(long, default_value_t = 1)]
        every: u32,
    },
    /// Answer with exception CODE (4 = server device failure, 6 = busy, ...).
    Exception {
        /// The exception code.
        code: u8,
        /// Only this table (coils, discrete_inputs, input_registers, holding_registers).
        #[arg(long, value_parser = parse_table)]
        table: Option<TableKind>,
        /// First affected address (with --count).
        #[arg(long)]
        start: Option<u16>,
        /// Number of affected addresses from --start (default 1).
        #[arg(long, requires = "start")]
        count: Option<u32>,
    },
    /// Close the TCP connection on every N-th request to the unit.
    DropConnectionAfter {
        /// N (1 = every request).
        n: u32,
    },
    /// Corrupt the CRC of every N-th RTU reply.
    CorruptCrcEvery {
        /// N (1 = every reply).
        n: u32,
    },
    /// Replace the unit's faults with DOC, the map file's fault format as
    /// YAML or JSON (e.g. '{silent: true}'), or @PATH to read it from a file.
    Set {
        /// The fault document or @PATH.
        doc: String,
    },
    /// Make the unit healthy (no faults at all, also none from the map file).
    Clear,
    /// Close every open TCP connection of the endpoint (all endpoints without --endpoint).
    DropConnections,
}

fn parse_table(s: &str) -> Result<TableKind, String> {
    serde_saphyr::from_str(s).map_err(|_| {
        format!(
            "`{s}` is not a table: coils, discrete_inputs, input_registers or holding_registers"
        )
    })
}

/// Method, path and body for the action.
fn request(args: &FaultArgs) -> anyhow::Result<(&'static str, &'static str, Option<String>)> {
    let faults = match &args.action {
        FaultAction::Show => return Ok(("GET", "/faults", None)),
        FaultAction::DropConnections => {
            let body = DropRequest {
                endpoint: args.endpoint.clone(),
            };
            return Ok((
                "POST",
                "/drop-connections",
                Some(serde_json::to_string(&body)?),
            ));
        }
        FaultAction::Silent => FaultConfig {
            silent: true,
            ..FaultConfig::default()
        },
        FaultAction::Delay { ms } => FaultConfig {
            delay_ms: Some(*ms),
            ..FaultConfig::default()
        },
        FaultAction::Late { ms, every } => FaultConfig {
            late: Some(LateConfig {
                delay_ms: *ms,
                every: Some(*every),
            }),
            ..FaultConfig::default()
        },
        FaultAction::Exception {
            code,
            table,
            start,
            count,
        } => FaultConfig {
            exceptions: vec![ExceptionRule {
                code: *code,
                table: *table,
                start: *start,
                count: *count,
            }],
            ..FaultConfig::default()
        },
        FaultAction::DropConnectionAfter { n } => FaultConfig {
            drop_connection_after: Some(*n),
            ..FaultConfig::default()
        },
        FaultAction::CorruptCrcEvery { n } => FaultConfig {
            corrupt_crc_every: Some(*n),
            ..FaultConfig::default()
        },
        FaultAction::Set { doc } => parse_doc(doc)?,
        FaultAction::Clear => FaultConfig::default(),
    };
    let mode = match args.action {
        FaultAction::Set { .. } | FaultAction::Clear => FaultMode::Replace,
        _ => FaultMode::Add,
    };
    let Some(unit) = args.unit else {
        bail!(
            "--unit is needed to change faults (e.g. modbus-sim fault --control ADDR --unit 3 silent)"
        );
    };
    let body = FaultRequest {
        endpoint: args.endpoint.clone(),
        unit,
        mode,
        faults,
    };
    Ok(("POST", "/faults", Some(serde_json::to_string(&body)?)))
}

fn parse_doc(doc: &str) -> anyhow::Result<FaultConfig> {
    Ok(sim_control::read_document(
        doc,
        "the map's fault keys: silent, delay_ms, late, exceptions, drop_connection_after, corrupt_crc_every",
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
