//! Starting every endpoint of a [`MapFile`] at once (what the binary does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::map::{MapFile, Transport};
use crate::server::RtuOptions;
use crate::sim::{PtyClient, Simulator};
use crate::stats::StatsSnapshot;

/// Where a started endpoint can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    /// Endpoint name from the map.
    pub name: String,
    /// Bound TCP addresses (real ports, also when the map said 0).
    pub tcp: Vec<SocketAddr>,
    /// The serial path clients should open (the pty client end, or the
    /// configured device).
    pub rtu_path: Option<PathBuf>,
}

/// All endpoints of a map file, running.
#[derive(Debug)]
pub struct Running {
    sims: Vec<(EndpointInfo, Simulator)>,
    // client ends of pty pairs, kept open so the lines stay usable
    _ptys: Vec<PtyClient>,
}

/// JSON document written by `--stats-file`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// Milliseconds since the Unix epoch when the report was taken.
    pub timestamp_ms: u128,
    /// Counters per endpoint name.
    pub endpoints: BTreeMap<String, StatsSnapshot>,
}

impl Running {
    /// Starts every endpoint; stops when `cancel` is cancelled.
    pub async fn start(map: &MapFile, cancel: &CancellationToken) -> Result<Self, SimError> {
        let mut sims = Vec::new();
        let mut ptys = Vec::new();
        for ep in &map.endpoints {
            let sim = Simulator::with_parent(&ep.device, cancel);
            let mut info = EndpointInfo {
                name: ep.name.clone(),
                tcp: Vec::new(),
                rtu_path: None,
            };
            match &ep.transport {
                Transport::Tcp(addrs) => {
                    for a in addrs {
                        info.tcp.push(sim.serve_tcp(*a).await?);
                    }
                }
                Transport::Rtu(cfg) => {
                    let opts = RtuOptions {
                        wire_time_baud: cfg.wire_time.then_some(cfg.baud),
                    };
                    match &cfg.path {
                        Some(p) => {
                            sim.serve_rtu_path(p, cfg.baud, opts)?;
                            info.rtu_path = Some(p.clone());
                        }
                        None => {
                            let pty = sim.serve_rtu_pty(opts)?;
                            info.rtu_path = pty.path.clone();
                            ptys.push(pty);
                        }
                    }
                }
            }
            sims.push((info, sim));
        }
        Ok(Self { sims, _ptys: ptys })
    }

    /// Where each endpoint listens.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.sims.iter().map(|(i, _)| i.clone()).collect()
    }

    /// The simulator of endpoint `name` (for faults and table access).
    pub fn simulator(&self, name: &str) -> Option<&Simulator> {
        self.sims
            .iter()
            .find(|(i, _)| i.name == name)
            .map(|(_, s)| s)
    }

    /// Every endpoint's name with its simulator, in map order.
    pub fn simulators(&self) -> Vec<(&str, &Simulator)> {
        self.sims
            .iter()
            .map(|(i, s)| (i.name.as_str(), s))
            .collect()
    }

    /// Current counters of all endpoints.
    pub fn report(&self) -> StatsReport {
        StatsReport {
            timestamp_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
            endpoints: self
                .sims
                .iter()
                .map(|(i, s)| (i.name.clone(), s.stats().snapshot()))
                .collect(),
        }
    }

    /// Stops every endpoint and waits for its tasks.
    pub async fn shutdown(&self) {
        for (_, s) in &self.sims {
            s.shutdown().await;
        }
    }
}

/// Writes `report` as JSON to `path` atomically (temp file + rename), so a
/// reader in another process never sees half a file.
pub fn write_stats_file(path: &Path, report: &StatsReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}
