//! Settings of the DMI source (KubeEdge 1.15+): the config file's `dmi:` section, the
//! mapper-framework keys that mean the same (`common.edgecore_sock`, `common.protocol`,
//! `common.name`, `grpc_server.socket_path`), and their flags. Pure.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::SettingsError;

/// Where reports go in DMI mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportPath {
    /// `ReportDeviceStatus` and `ReportDeviceStates` to edgecore (default).
    #[default]
    Dmi,
    /// MQTT `twin/update` and `state/update` on `{namespace}/{name}` topics (no limiter;
    /// edgecore 1.19+ still syncs them to the cloud).
    Mqtt,
}

/// DMI settings after the file and the flags are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct DmiSettings {
    /// edgecore's socket; a directory means `<dir>/dmi.sock` (KubeEdge 1.23).
    pub edgecore_socket: PathBuf,
    /// Where this mapper serves: `@name` (an abstract socket; default
    /// `@kubeedge.<protocol>-mapper`) or a socket path.
    pub listen: Option<String>,
    /// An extra socket file with the same service, for grpcurl and local tools.
    pub debug_socket: Option<PathBuf>,
    /// Protocol names to register; empty: the driver's.
    pub protocols: Vec<String>,
    /// `MapperInfo.name`; default `rust-<protocol>-mapper`.
    pub name: Option<String>,
    /// Report path.
    pub report: ReportPath,
    /// Sustained calls per second to edgecore (all kinds together).
    pub rate: f64,
    /// Burst of calls to edgecore.
    pub burst: u32,
    /// Unchanged values are re-sent at most this often.
    pub heartbeat: Duration,
    /// Register again this often.
    pub reregister: Duration,
    /// Deadline of one `MapperRegister`.
    pub register_timeout: Duration,
    /// Deadline of one report call.
    pub call_timeout: Duration,
    /// Registration lists a device must be missing from before it is removed.
    pub remove_after: u32,
    /// Peer uids allowed to call the mapper (default: root and this process's uid).
    pub allowed_uids: Option<Vec<u32>>,
}

impl Default for DmiSettings {
    fn default() -> Self {
        Self {
            edgecore_socket: PathBuf::from("/etc/kubeedge/dmi.sock"),
            listen: None,
            debug_socket: None,
            protocols: Vec::new(),
            name: None,
            report: ReportPath::Dmi,
            rate: 0.5,
            burst: 50,
            heartbeat: Duration::from_secs(60),
            reregister: Duration::from_secs(300),
            register_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            remove_after: 2,
            allowed_uids: None,
        }
    }
}

impl DmiSettings {
    /// The edgecore socket file (a directory gets `dmi.sock` appended).
    pub fn edgecore_socket_file(&self) -> PathBuf {
        let p = &self.edgecore_socket;
        if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') {
            p.join("dmi.sock")
        } else {
            p.clone()
        }
    }
}

/// `dmi:` keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DmiSection {
    /// edgecore's socket (file or directory).
    pub edgecore_sock: Option<PathBuf>,
    /// Where this mapper serves (`@name` or a path).
    pub listen: Option<String>,
    /// An extra socket file for local tools.
    pub debug_socket: Option<PathBuf>,
    /// Protocol names to register.
    pub protocols: Option<Vec<String>>,
    /// `dmi` or `mqtt`.
    pub report: Option<String>,
    /// Calls per second to edgecore.
    pub rate: Option<f64>,
    /// Burst of calls.
    pub burst: Option<u32>,
    /// Heartbeat of unchanged values, seconds.
    pub heartbeat_seconds: Option<u64>,
    /// Re-registration period, seconds.
    pub reregister_seconds: Option<u64>,
    /// Lists a device must be missing from before it is removed.
    pub remove_after: Option<u32>,
    /// Allowed peer uids.
    pub allowed_uids: Option<Vec<u32>>,
}

/// mapper-framework's `common:` keys (those DMI uses).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CommonSection {
    /// `MapperInfo.name`.
    pub name: Option<String>,
    /// Informational.
    pub version: Option<String>,
    /// Informational.
    pub api_version: Option<String>,
    /// The protocol to register.
    pub protocol: Option<String>,
    /// Not used by DMI (mapper-framework leftover).
    pub address: Option<String>,
    /// edgecore's socket.
    pub edgecore_sock: Option<PathBuf>,
    /// mapper-framework's REST port (not served by this mapper).
    pub http_port: Option<serde_json::Value>,
}

/// mapper-framework's `grpc_server:` keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcServerSection {
    /// The mapper's socket.
    pub socket_path: Option<String>,
}

/// DMI flags.
#[derive(Debug, Clone, Default, Args)]
pub struct DmiArgs {
    /// edgecore's DMI socket, file or directory (overrides dmi.edgecoreSock / common.edgecore_sock) [default: /etc/kubeedge/dmi.sock]
    #[arg(long, env = "EDGECORE_SOCK")]
    pub edgecore_sock: Option<PathBuf>,
    /// Where this mapper serves DMI: @name or a socket path (overrides dmi.listen / grpc_server.socket_path) [default: @kubeedge.<protocol>-mapper]
    #[arg(long)]
    pub dmi_listen: Option<String>,
    /// Where DMI-mode reports go: dmi or mqtt (overrides dmi.report) [default: dmi]
    #[arg(long)]
    pub dmi_report: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn nonempty_path(p: Option<PathBuf>) -> Option<PathBuf> {
    p.filter(|p| !p.as_os_str().is_empty())
}

/// Merges flags over the file's sections.
pub fn dmi_settings(
    args: &DmiArgs,
    dmi: DmiSection,
    common: CommonSection,
    grpc: GrpcServerSection,
) -> Result<DmiSettings, SettingsError> {
    let mut s = DmiSettings::default();
    if let Some(p) = nonempty_path(args.edgecore_sock.clone())
        .or(nonempty_path(dmi.edgecore_sock))
        .or(nonempty_path(common.edgecore_sock))
    {
        s.edgecore_socket = p;
    }
    s.listen = nonempty(args.dmi_listen.clone()).or(nonempty(dmi.listen));
    if let Some(l) = &s.listen {
        dmi_api::transport::Address::parse(l).map_err(|e| SettingsError::Invalid {
            field: "dmi.listen".into(),
            message: e.to_string(),
        })?;
    }
    s.debug_socket = nonempty_path(dmi.debug_socket);
    // mapper-framework's `grpc_server.socket_path` is a file path, which edgecore's
    // grpc-go cannot reach on a Rust server (it sends the path as the HTTP/2
    // authority). An `@name` there is used as the address; a path is served as the
    // extra local socket, and the registered address stays the abstract default.
    if let Some(p) = nonempty(grpc.socket_path) {
        let address =
            dmi_api::transport::Address::parse(&p).map_err(|e| SettingsError::Invalid {
                field: "grpc_server.socket_path".into(),
                message: e.to_string(),
            })?;
        match address {
            dmi_api::transport::Address::Abstract(_) => {
                s.listen.get_or_insert(p);
            }
            dmi_api::transport::Address::Path(path) => {
                s.debug_socket.get_or_insert(path);
            }
        }
    }
    s.protocols = dmi
        .protocols
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect();
    if s.protocols.is_empty() {
        s.protocols.extend(nonempty(common.protocol));
    }
    s.name = nonempty(common.name);
    s.report = match nonempty(args.dmi_report.clone())
        .or(nonempty(dmi.report))
        .map(|r| r.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("dmi") => ReportPath::Dmi,
        Some("mqtt") => ReportPath::Mqtt,
        Some(other) => {
            return Err(SettingsError::Invalid {
                field: "dmi.report".into(),
                message: format!("{other:?} is not a report path; use dmi or mqtt"),
            });
        }
    };
    if let Some(r) = dmi.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(SettingsError::Invalid {
                field: "dmi.rate".into(),
                message: format!("{r} is not a positive number of calls per second"),
            });
        }
        s.rate = r;
    }
    if let Some(b) = dmi.burst {
        s.burst = b.max(1);
    }
    if let Some(h) = dmi.heartbeat_seconds {
        s.heartbeat = Duration::from_secs(h.max(1));
    }
    if let Some(r) = dmi.reregister_seconds {
        s.reregister = Duration::from_secs(r.max(10));
    }
    if let Some(n) = dmi.remove_after {
        s.remove_after = n.max(1);
    }
    s.allowed_uids = dmi.allowed_uids;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapper_framework_keys_mean_the_same() {
        let s = dmi_settings(
            &DmiArgs::default(),
            DmiSection::default(),
            CommonSection {
                protocol: Some("modbus".into()),
                edgecore_sock: Some("/etc/kubeedge/".into()),
                name: Some("m".into()),
                ..Default::default()
            },
            GrpcServerSection {
                socket_path: Some("@kubeedge.m".into()),
            },
        )
        .unwrap();
        assert_eq!(s.protocols, vec!["modbus".to_owned()]);
        assert_eq!(
            s.edgecore_socket_file(),
            PathBuf::from("/etc/kubeedge/dmi.sock")
        );
        assert_eq!(s.listen.as_deref(), Some("@kubeedge.m"));
        assert_eq!(s.report, ReportPath::Dmi);
        // mapper-framework's template path becomes the local socket, not the address.
        let s = dmi_settings(
            &DmiArgs::default(),
            DmiSection::default(),
            CommonSection::default(),
            GrpcServerSection {
                socket_path: Some("/etc/kubeedge/Template.sock".into()),
            },
        )
        .unwrap();
        assert_eq!(s.listen, None);
        assert_eq!(
            s.debug_socket,
            Some(PathBuf::from("/etc/kubeedge/Template.sock"))
        );
    }

    #[test]
    fn flags_win_and_bad_values_name_their_key() {
        let args = DmiArgs {
            edgecore_sock: Some("/run/x.sock".into()),
            dmi_listen: None,
            dmi_report: Some("MQTT".into()),
        };
        let s = dmi_settings(
            &args,
            DmiSection {
                edgecore_sock: Some("/y".into()),
                ..Default::default()
            },
            CommonSection::default(),
            GrpcServerSection::default(),
        )
        .unwrap();
        assert_eq!(s.edgecore_socket, PathBuf::from("/run/x.sock"));
        assert_eq!(s.report, ReportPath::Mqtt);
        let e = dmi_settings(
            &DmiArgs {
                dmi_report: Some("carrier-pigeon".into()),
                ..Default::default()
            },
            DmiSection::default(),
            CommonSection::default(),
            GrpcServerSection::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dmi.report"), "{e}");
        let e = dmi_settings(
            &DmiArgs {
                dmi_listen: Some("unix:///x".into()),
                ..Default::default()
            },
            DmiSection::default(),
            CommonSection::default(),
            GrpcServerSection::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dmi.listen"), "{e}");
        let e = dmi_settings(
            &DmiArgs::default(),
            DmiSection {
                rate: Some(-1.0),
                ..Default::default()
            },
            CommonSection::default(),
            GrpcServerSection::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dmi.rate"), "{e}");
    }
}
