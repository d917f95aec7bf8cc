//! The mapper's settings: the mappers-go `config.yaml` keys unchanged
//! (docs/kubeedge-contract.md#rule-configyaml-keys-read-unchanged),
//! our own `mapper:` section, CLI flags and environment variables that override the file,
//! and the `DEVICE_PROFILE` fallback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use thiserror::Error;

use crate::model::StateNames;
use crate::mqtt::{MqttError, MqttSettings, TlsSettings};
use crate::profile::unknown::{UnknownKey, fold};
use crate::profile::{ResolveOptions, TopicScheme};
use crate::runtime::RuntimeOptions;

/// The default profile path, where KubeEdge mounts the device-profile ConfigMap.
pub const DEFAULT_PROFILE: &str = "/opt/kubeedge/deviceProfile.json";
/// The default broker (edgecore's external broker).
pub const DEFAULT_BROKER: &str = "tcp://127.0.0.1:1883";

/// The config file (`config.yaml`). Keys are matched case-insensitively.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigFile {
    /// The `mqtt:` section (mappers-go and mapper-sdk-go keys).
    pub mqtt: MqttSection,
    /// The profile path (`configmap:` in mappers-go).
    pub configmap: Option<PathBuf>,
    /// Settings of this mapper that mappers-go lacks.
    pub mapper: MapperSection,
    /// The `dmi:` section (KubeEdge 1.15+).
    #[cfg(feature = "dmi")]
    pub dmi: crate::dmi_config::DmiSection,
    /// mapper-framework's `common:` section (protocol, name, edgecore socket).
    #[cfg(feature = "dmi")]
    pub common: crate::dmi_config::CommonSection,
    /// mapper-framework's `grpc_server:` section (the mapper's socket).
    #[cfg(feature = "dmi")]
    pub grpc_server: crate::dmi_config::GrpcServerSection,
}

/// `mqtt:` keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MqttSection {
    /// Broker URL, e.g. `tcp://127.0.0.1:1883` or `ssl://host:8883`.
    pub server: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Client certificate (PEM).
    pub certification: Option<PathBuf>,
    /// Client key (PEM).
    pub privatekey: Option<PathBuf>,
    /// CA certificate that signs the broker's certificate (PEM).
    pub ca_cert: Option<PathBuf>,
    /// Name to verify the broker's certificate against.
    pub servername: Option<String>,
    /// MQTT client id.
    pub client_id: Option<String>,
    /// QoS of twin and state publishes (0, 1 or 2; default 1).
    pub qos: Option<u8>,
    /// Keep-alive in seconds (default 30).
    pub keep_alive: Option<u64>,
    /// The largest incoming message accepted, in bytes (default 1 MiB).
    pub max_message_bytes: Option<usize>,
    /// The most reports kept while the broker is unreachable (default 10000).
    pub buffer_max_messages: Option<usize>,
    /// Reports older than this many seconds are dropped from the buffer (default 3600).
    pub buffer_max_age_seconds: Option<u64>,
    /// Keeps the buffer in this file across restarts (default: memory only).
    pub buffer_file: Option<PathBuf>,
}

/// `mapper:` keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MapperSection {
    /// `id` (default) or `namespace/name` (KubeEdge 1.17+).
    pub topic_scheme: Option<String>,
    /// Send `OK`/`DISCONNECTED` instead of `online`/`offline`.
    pub legacy_states: Option<bool>,
    /// The namespace of the ConfigMap's devices (for `namespace/name` topics).
    pub namespace: Option<String>,
    /// The edge node name (enables membership hints).
    pub node_name: Option<String>,
    /// Failed transactions before a device is reported offline (default 3).
    pub offline_after: Option<u32>,
    /// Smallest collect/report cycle in milliseconds (default 10).
    pub min_cycle_ms: Option<u64>,
    /// Desired values that arrive faster than a device takes them: `latest` (default,
    /// the newest per property wins) or `sequence` (every value is written, in order).
    pub desired_values: Option<String>,
    /// Retries of a write the device refused before the value is dropped (default 3).
    pub refused_write_retries: Option<u32>,
    /// Largest reconnect delay in milliseconds shortly after a link loss (default 1000).
    pub relink_interval_ms: Option<u64>,
    /// How long after a link loss, in milliseconds, reconnects keep to
    /// `relinkIntervalMs` (default 60000); then the backoff grows to 30 s.
    pub relink_window_ms: Option<u64>,
    /// Where the profile comes from: `file` (default), `dmi` (edgecore's DMI, KubeEdge
    /// 1.15+), `configmap` (the device-profile ConfigMap from the API) or `devices`
    /// (v1beta1 Device/DeviceModel objects). `dmi` needs the `dmi` cargo feature, the
    /// last two the `kube` feature.
    pub source: Option<String>,
    /// A kubeconfig file for the `configmap` and `devices` sources.
    pub kubeconfig: Option<PathBuf>,
    /// A plain-HTTP API endpoint such as edgecore's MetaServer (`http://127.0.0.1:10550`).
    pub meta_server: Option<String>,
    /// The ConfigMap to watch (default `device-profile-config-<nodeName>`).
    pub config_map_name: Option<String>,
    /// The operator HTTP endpoint (`/healthz`, `/readyz`, `/metrics`, `/api/v1`):
    /// `HOST:PORT`, `:PORT` or `PORT` (loopback unless a host is given). Off when unset.
    pub http_listen: Option<String>,
    /// A file holding the bearer token that allows `PUT` writes over HTTP; without it
    /// the API is read-only.
    pub http_write_token_file: Option<PathBuf>,
}

/// A settings problem; the mapper does not start.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The config file cannot be read.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting has an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting, as the file or the flag names it.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The MQTT settings are unusable.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// Parses a config file's text (YAML or JSON).
pub fn parse_config(text: &str, path: &Path) -> Result<ConfigFile, SettingsError> {
    parse_config_noting(text, path).map(|(file, _)| file)
}

/// Sections and keys of KubeEdge's sample configs that mean nothing to this mapper but
/// are no typos (folded: no case, `-` or `_`): mapper-sdk-go's `http:`, the old
/// bluetooth mapper's sections and its internal broker, mapper-framework's sections in a
/// build without DMI.
const FOREIGN_KEYS: &[&str] = &[
    "http",
    "devicemodelname",
    "actionmanager",
    "scheduler",
    "watcher",
    "mqtt.mode",
    "mqtt.internalserver",
    "common",
    "grpcserver",
    "dmi",
];

/// Parses a config file's text like [`parse_config`], and returns the keys it does not
/// know (typos, most of the time), apart from the `FOREIGN_KEYS` of KubeEdge's sample
/// configs.
pub fn parse_config_noting(
    text: &str,
    path: &Path,
) -> Result<(ConfigFile, Vec<UnknownKey>), SettingsError> {
    let err = |message: String| SettingsError::File {
        path: path.to_owned(),
        message,
    };
    if text.trim().is_empty() {
        return Ok((ConfigFile::default(), Vec::new()));
    }
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| err(format!("invalid YAML: {e}")))?;
    if value.is_null() {
        return Ok((ConfigFile::default(), Vec::new()));
    }
    let (file, mut unknown) =
        crate::profile::ci::from_value_noting(value).map_err(|e| err(e.to_string()))?;
    unknown.retain(|k| !FOREIGN_KEYS.contains(&fold(&k.path).as_str()));
    Ok((file, unknown))
}

/// Topic scheme as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// `$hw/events/device/{id}/...`
    Id,
    /// `$hw/events/device/{namespace}/{name}/...`
    NamespaceName,
}

/// Flags shared by every mapper binary. Flags override the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// The config file (mappers-go `config.yaml` keys).
    #[arg(long, env = "MAPPER_CONFIG_FILE", default_value = "config.yaml")]
    pub config_file: PathBuf,
    /// Broker URL (overrides mqtt.server) [default: tcp://127.0.0.1:1883]
    #[arg(
        long = "mqtt-address",
        visible_alias = "mqtt-server",
        env = "MQTT_SERVER"
    )]
    pub mqtt_server: Option<String>,
    /// MQTT username (overrides mqtt.username).
    #[arg(long, env = "MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password (overrides mqtt.password).
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// Client certificate (overrides mqtt.certification).
    #[arg(long)]
    pub mqtt_certification: Option<PathBuf>,
    /// Client key (overrides mqtt.privatekey).
    #[arg(long)]
    pub mqtt_privatekey: Option<PathBuf>,
    /// CA certificate (overrides mqtt.caCert).
    #[arg(long)]
    pub mqtt_ca_cert: Option<PathBuf>,
    /// Broker certificate name (overrides mqtt.servername).
    #[arg(long)]
    pub mqtt_servername: Option<String>,
    /// MQTT client id (overrides mqtt.clientId) [default: {protocol}-mapper-{hostname}]
    #[arg(long, env = "MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,
    /// The device profile (overrides `configmap`) [default: /opt/kubeedge/deviceProfile.json]
    #[arg(long, visible_alias = "configmap", env = "DEVICE_PROFILE_PATH")]
    pub profile: Option<PathBuf>,
    /// Topic device part (overrides mapper.topicScheme) [default: id]
    #[arg(long, value_enum)]
    pub topic_scheme: Option<SchemeArg>,
    /// Send OK/DISCONNECTED states (overrides mapper.legacyStates).
    #[arg(long)]
    pub legacy_states: bool,
    /// Edge node name (overrides mapper.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Log filter: a level (error, warn, info, debug, trace, off) and/or target=level
    /// directives, e.g. `warn,mapper_sdk=debug` [default: RUST_LOG, else info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, ignore_case = true, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// Serve /healthz, /readyz, /metrics and /api/v1 on HOST:PORT, :PORT or PORT
    /// (loopback unless a host is given; overrides mapper.httpListen) [default: off]
    #[arg(long, env = "MAPPER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// A file with the bearer token that allows HTTP writes (overrides
    /// mapper.httpWriteTokenFile) [default: writes refused]
    #[arg(long, env = "MAPPER_HTTP_TOKEN_FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Device source: file, dmi, configmap or devices (overrides mapper.source) [default: file]
    #[arg(long, env = "MAPPER_SOURCE")]
    pub source: Option<String>,
    /// DMI settings (KubeEdge 1.15+).
    #[cfg(feature = "dmi")]
    #[command(flatten)]
    pub dmi: crate::dmi_config::DmiArgs,
    /// Kubeconfig for the configmap/devices sources (overrides mapper.kubeconfig).
    #[cfg(feature = "kube")]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Plain-HTTP API endpoint, e.g. http://127.0.0.1:10550 (overrides mapper.metaServer).
    #[cfg(feature = "kube")]
    #[arg(long, env = "META_SERVER")]
    pub meta_server: Option<String>,
    /// The ConfigMap to watch (overrides mapper.configMapName).
    #[cfg(feature = "kube")]
    #[arg(long)]
    pub configmap_name: Option<String>,
}

/// Where the profile comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileSetting {
    /// A file, watched for changes.
    File(PathBuf),
    /// Text given in the `DEVICE_PROFILE` environment variable.
    Inline(String),
    /// The Kubernetes API (the device-profile ConfigMap or v1beta1 Devices).
    #[cfg(feature = "kube")]
    Kube(crate::kube_source::KubeSettings),
    /// edgecore over DMI v1beta1 (KubeEdge 1.15+): devices, models and desired values
    /// from edgecore, reports to it.
    #[cfg(feature = "dmi")]
    Dmi(crate::dmi_config::DmiSettings),
}

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker.
    pub mqtt: MqttSettings,
    /// The profile.
    pub profile: ProfileSetting,
    /// Profile resolution.
    pub resolve: ResolveOptions,
    /// Runtime timing.
    pub runtime: RuntimeOptions,
    /// The binary's name and version (logs, `MapperInfo.version`).
    pub about: crate::about::About,
    /// The operator HTTP endpoint, when on.
    pub http: Option<HttpSettings>,
}

/// The operator HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The file holding the write token; writes are refused without one.
    pub token_file: Option<PathBuf>,
}

/// Parses `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT`; a missing host is loopback.
pub fn parse_listen(text: &str) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, SocketAddr};
    let t = text.trim();
    if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Ok(a) = t.parse() {
        return Some(a);
    }
    let (host, port) = t.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.eq_ignore_ascii_case("localhost") {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    None
}

fn default_client_id(driver: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge".into());
    format!("{driver}-mapper-{host}")
}

impl Settings {
    /// Builds settings from flags, the config file they name, and the environment
    /// (`DEVICE_PROFILE` holds profile text when the profile file does not exist).
    pub fn from_args(args: &CommonArgs, driver: &str) -> Result<Self, SettingsError> {
        let file = match std::fs::read_to_string(&args.config_file) {
            Ok(text) => {
                let (file, unknown) = parse_config_noting(&text, &args.config_file)?;
                for k in unknown {
                    tracing::warn!("{}: {k}", args.config_file.display());
                }
                file
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && args.config_file == Path::new("config.yaml") =>
            {
                ConfigFile::default()
            }
            Err(e) => {
                return Err(SettingsError::File {
                    path: args.config_file.clone(),
                    message: e.to_string(),
                });
            }
        };
        Self::merge(args, file, driver, std::env::var("DEVICE_PROFILE").ok())
    }

    /// Merges flags over a parsed config file. Pure apart from checking whether the
    /// profile file exists.
    pub fn merge(
        args: &CommonArgs,
        file: ConfigFile,
        driver: &str,
        env_profile: Option<String>,
    ) -> Result<Self, SettingsError> {
        let m = file.mqtt;
        let server = args
            .mqtt_server
            .clone()
            .or(m.server)
            .unwrap_or_else(|| DEFAULT_BROKER.into());
        let client_id = args
            .mqtt_client_id
            .clone()
            .or(m.client_id)
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| default_client_id(driver));
        let mut mqtt = MqttSettings::from_url(&server, &client_id)?;
        mqtt.username = args
            .mqtt_username
            .clone()
            .or(m.username)
            .filter(|u| !u.is_empty());
        mqtt.password = args.mqtt_password.clone().or(m.password);
        if let Some(q) = m.qos {
            if q > 2 {
                return Err(SettingsError::Invalid {
                    field: "mqtt.qos".into(),
                    message: format!("{q} is not a QoS level; use 0, 1 or 2"),
                });
            }
            mqtt.qos = q;
        }
        if let Some(k) = m.keep_alive {
            mqtt.keep_alive = Duration::from_secs(k.max(5));
        }
        if let Some(n) = m.max_message_bytes {
            if n == 0 || n > crate::mqtt::CLIENT_PACKET_LIMIT {
                return Err(SettingsError::Invalid {
                    field: "mqtt.maxMessageBytes".into(),
                    message: format!(
                        "{n} is out of range; use 1 to {}",
                        crate::mqtt::CLIENT_PACKET_LIMIT
                    ),
                });
            }
            mqtt.max_message_bytes = n;
        }
        if let Some(n) = m.buffer_max_messages {
            mqtt.buffer.max_messages = n;
        }
        if let Some(s) = m.buffer_max_age_seconds {
            mqtt.buffer.max_age = Duration::from_secs(s);
        }
        mqtt.buffer_file = m.buffer_file.filter(|p| !p.as_os_str().is_empty());
        // Empty strings mean "unset", as in Go: the stock mappers-go config.yaml has
        // `certification: ""` next to a `tcp://` server.
        let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let cert = set(args.mqtt_certification.clone()).or(set(m.certification));
        let key = set(args.mqtt_privatekey.clone()).or(set(m.privatekey));
        let ca = set(args.mqtt_ca_cert.clone()).or(set(m.ca_cert));
        let servername = args
            .mqtt_servername
            .clone()
            .or(m.servername)
            .filter(|s| !s.trim().is_empty());
        mqtt.password = mqtt.password.filter(|p| !p.is_empty());
        if mqtt.tls.is_none() {
            // TLS is chosen by the URL scheme only; certificates with a plain URL are a
            // mistake worth stopping for, not a silent switch to TLS.
            for (field, given) in [
                ("mqtt.caCert", ca.is_some()),
                ("mqtt.certification", cert.is_some()),
                ("mqtt.privatekey", key.is_some()),
            ] {
                if given {
                    return Err(SettingsError::Invalid {
                        field: field.into(),
                        message: format!(
                            "is set but the broker URL {server:?} is not TLS; use ssl://, tls:// or mqtts:// for TLS, or leave {field} empty"
                        ),
                    });
                }
            }
        }
        if mqtt.tls.is_some() {
            mqtt.tls = Some(TlsSettings {
                ca_cert: ca,
                client_cert: cert,
                private_key: key,
                server_name: servername,
            });
        }
        let s = file.mapper;
        let http = http_settings(args, &s)?;
        let source = KubeArgs {
            source: args
                .source
                .clone()
                .or(s.source.clone())
                .filter(|s| !s.trim().is_empty()),
            #[cfg(feature = "kube")]
            kubeconfig: args.kubeconfig.clone().or(s.kubeconfig.clone()),
            #[cfg(feature = "kube")]
            meta_server: args.meta_server.clone().or(s.meta_server.clone()),
            #[cfg(feature = "kube")]
            config_map_name: args.configmap_name.clone().or(s.config_map_name.clone()),
            #[cfg(feature = "kube")]
            namespace: s.namespace.clone().filter(|n| !n.is_empty()),
        };
        let legacy = args.legacy_states || s.legacy_states.unwrap_or(false);
        mqtt.state_names = if legacy {
            StateNames::legacy()
        } else {
            StateNames::default()
        };
        mqtt.node_name = args
            .node_name
            .clone()
            .or(s.node_name)
            .filter(|n| !n.is_empty());

        let source_kind = source
            .source
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let topic_scheme = match (args.topic_scheme, s.topic_scheme.as_deref()) {
            (Some(SchemeArg::Id), _) => TopicScheme::Id,
            (Some(SchemeArg::NamespaceName), _) => TopicScheme::NamespaceName,
            // DMI devices are keyed (namespace, name); a 1.15 edgecore has no namespaces.
            (None, None) if source_kind == "dmi" => TopicScheme::NamespaceNameIfSet,
            // Modern edgecore listens on two-segment device topics only.
            (None, None) if source_kind == "devices" => TopicScheme::NamespaceName,
            (None, None) => TopicScheme::Id,
            (None, Some(t)) => match t.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
                "id" | "{id}" => TopicScheme::Id,
                "namespace/name" | "{namespace}/{name}" | "namespacename" => {
                    TopicScheme::NamespaceName
                }
                other => {
                    return Err(SettingsError::Invalid {
                        field: "mapper.topicScheme".into(),
                        message: format!(
                            "{other:?} is not a topic scheme; use id or namespace/name"
                        ),
                    });
                }
            },
        };
        let mut resolve = ResolveOptions {
            topic_scheme,
            ..ResolveOptions::default()
        };
        if let Some(ns) = s.namespace.filter(|n| !n.is_empty()) {
            resolve.namespace = ns;
        }
        if let Some(ms) = s.min_cycle_ms {
            resolve.min_cycle = Duration::from_millis(ms.max(1));
        }
        let mut runtime = RuntimeOptions::default();
        if let Some(n) = s.offline_after {
            runtime.offline_after = n.max(1);
        }
        if let Some(n) = s.refused_write_retries {
            runtime.refused_write_retries = n;
        }
        if let Some(ms) = s.relink_interval_ms {
            runtime.relink_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = s.relink_window_ms {
            runtime.relink_window = Duration::from_millis(ms);
        }
        match s
            .desired_values
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "latest") => {}
            Some("sequence") => runtime.desired_merge = crate::runtime::Merge::Sequence,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    field: "mapper.desiredValues".into(),
                    message: format!("{other:?} is not a merge mode; use latest or sequence"),
                });
            }
        }
        let path = args
            .profile
            .clone()
            .or(file.configmap)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PROFILE));
        let profile = match source
            .source
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("dmi") => dmi_profile(
                args,
                #[cfg(feature = "dmi")]
                (file.dmi, file.common, file.grpc_server),
            )?,
            None | Some("" | "file") => match env_profile.filter(|p| !p.trim().is_empty()) {
                Some(text) if !path.exists() => ProfileSetting::Inline(text),
                _ => ProfileSetting::File(path),
            },
            Some(kind @ ("configmap" | "devices")) => {
                kube_profile(kind, &source, mqtt.node_name.as_deref())?
            }
            Some(other) => {
                return Err(SettingsError::Invalid {
                    field: "mapper.source".into(),
                    message: format!(
                        "{other:?} is not a source; use file, dmi, configmap or devices"
                    ),
                });
            }
        };
        Ok(Self {
            mqtt,
            profile,
            resolve,
            runtime,
            about: crate::about::About::SDK,
            http,
        })
    }
}

fn http_settings(
    args: &CommonArgs,
    s: &MapperSection,
) -> Result<Option<HttpSettings>, SettingsError> {
    let nonempty = |t: &Option<String>| t.clone().filter(|t| !t.trim().is_empty());
    let listen = nonempty(&args.http_listen).or(nonempty(&s.http_listen));
    let token_file = args
        .http_token_file
        .clone()
        .or(s.http_write_token_file.clone())
        .filter(|p| !p.as_os_str().is_empty());
    let Some(listen) = listen else {
        if token_file.is_some() {
            return Err(SettingsError::Invalid {
                field: "mapper.httpWriteTokenFile".into(),
                message:
                    "is set but the HTTP endpoint is off; set mapper.httpListen (--http-listen) too"
                        .into(),
            });
        }
        return Ok(None);
    };
    let listen = parse_listen(&listen).ok_or_else(|| SettingsError::Invalid {
        field: "mapper.httpListen".into(),
        message: format!("{listen:?} is not an address; use HOST:PORT, :PORT or PORT"),
    })?;
    Ok(Some(HttpSettings { listen, token_file }))
}

#[cfg(not(feature = "dmi"))]
fn dmi_profile(_: &CommonArgs) -> Result<ProfileSetting, SettingsError> {
    Err(SettingsError::Invalid {
        field: "mapper.source".into(),
        message:
            "dmi needs a mapper built with the `dmi` cargo feature (the released binaries have it)"
                .into(),
    })
}

#[cfg(feature = "dmi")]
fn dmi_profile(
    args: &CommonArgs,
    (dmi, common, grpc): (
        crate::dmi_config::DmiSection,
        crate::dmi_config::CommonSection,
        crate::dmi_config::GrpcServerSection,
    ),
) -> Result<ProfileSetting, SettingsError> {
    crate::dmi_config::dmi_settings(&args.dmi, dmi, common, grpc).map(ProfileSetting::Dmi)
}

/// The kube-related settings after flags are merged over the file.
struct KubeArgs {
    source: Option<String>,
    #[cfg(feature = "kube")]
    kubeconfig: Option<PathBuf>,
    #[cfg(feature = "kube")]
    meta_server: Option<String>,
    #[cfg(feature = "kube")]
    config_map_name: Option<String>,
    #[cfg(feature = "kube")]
    namespace: Option<String>,
}

#[cfg(not(feature = "kube"))]
fn kube_profile(
    kind: &str,
    _: &KubeArgs,
    _: Option<&str>,
) -> Result<ProfileSetting, SettingsError> {
    Err(SettingsError::Invalid {
        field: "mapper.source".into(),
        message: format!(
            "{kind} needs a mapper built with the `kube` cargo feature; this one reads files only"
        ),
    })
}

#[cfg(feature = "kube")]
fn kube_profile(
    kind: &str,
    a: &KubeArgs,
    node: Option<&str>,
) -> Result<ProfileSetting, SettingsError> {
    use crate::kube_source::{KubeConnection, KubeSettings, KubeWatch};
    let connection = match (&a.meta_server, &a.kubeconfig) {
        (Some(url), _) if !url.is_empty() => KubeConnection::MetaServer(url.clone()),
        (_, Some(path)) if !path.as_os_str().is_empty() => KubeConnection::Kubeconfig(path.clone()),
        _ => KubeConnection::Default,
    };
    let (watch, namespace) = if kind == "devices" {
        (KubeWatch::Devices, a.namespace.clone())
    } else {
        let name = match (&a.config_map_name, node) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(node)) => format!("device-profile-config-{node}"),
            _ => {
                return Err(SettingsError::Invalid {
                    field: "mapper.configMapName".into(),
                    message: "the configmap source needs a ConfigMap name or a node name (mapper.nodeName, --node-name or NODE_NAME)".into(),
                });
            }
        };
        (
            KubeWatch::ConfigMap { name },
            Some(a.namespace.clone().unwrap_or_else(|| "default".into())),
        )
    };
    Ok(ProfileSetting::Kube(KubeSettings {
        connection,
        watch,
        namespace,
        node_name: node.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAPPERS_GO: &str = "mqtt:\n  server: tcp://10.0.0.1:1884\n  username: u\n  password: p\n  certification: \"\"\n  privatekey: \"\"\n  caCert: /ca.pem\n  servername: broker\n  clientId: my-client\nconfigmap: /etc/profile.json\n";

    #[test]
    fn http_endpoint_is_off_by_default_and_loopback_unless_told() {
        let s = Settings::merge(&CommonArgs::default(), ConfigFile::default(), "m", None).unwrap();
        assert_eq!(s.http, None);
        assert_eq!(
            parse_listen("8089"),
            Some("127.0.0.1:8089".parse().unwrap())
        );
        assert_eq!(
            parse_listen(":8089"),
            Some("127.0.0.1:8089".parse().unwrap())
        );
        assert_eq!(
            parse_listen("localhost:1"),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Some("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:80"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_listen("host:x"), None);
        assert_eq!(parse_listen("example.com:80"), None);

        let f = parse_config(
            "mapper:\n  httpListen: \":9000\"\n  httpWriteTokenFile: /run/token\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let s = Settings::merge(&CommonArgs::default(), f.clone(), "m", None).unwrap();
        let h = s.http.unwrap();
        assert_eq!(h.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(h.token_file.as_deref(), Some(Path::new("/run/token")));
        // The flag wins over the file.
        let args = CommonArgs {
            http_listen: Some("127.0.0.2:1".into()),
            ..CommonArgs::default()
        };
        let s = Settings::merge(&args, f, "m", None).unwrap();
        assert_eq!(s.http.unwrap().listen, "127.0.0.2:1".parse().unwrap());
        // A token without a listener, or a bad address, is a mistake.
        let args = CommonArgs {
            http_token_file: Some("/t".into()),
            ..CommonArgs::default()
        };
        let e = Settings::merge(&args, ConfigFile::default(), "m", None).unwrap_err();
        assert!(e.to_string().contains("httpListen"), "{e}");
        let args = CommonArgs {
            http_listen: Some("nowhere".into()),
            ..CommonArgs::default()
        };
        let e = Settings::merge(&args, ConfigFile::default(), "m", None).unwrap_err();
        assert!(e.to_string().contains("mapper.httpListen"), "{e}");
    }

    #[test]
    fn mappers_go_keys_are_read_unchanged() {
        let f = parse_config(MAPPERS_GO, Path::new("c.yaml")).unwrap();
        assert_eq!(f.mqtt.server.as_deref(), Some("tcp://10.0.0.1:1884"));
        assert_eq!(f.mqtt.ca_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(f.mqtt.client_id.as_deref(), Some("my-client"));
        assert_eq!(f.configmap.as_deref(), Some(Path::new("/etc/profile.json")));
    }

    #[test]
    fn flags_override_the_file() {
        let f = parse_config(MAPPERS_GO, Path::new("c.yaml")).unwrap();
        let args = CommonArgs {
            mqtt_server: Some("ssl://127.0.0.1:2000".into()),
            mqtt_client_id: Some("flag-client".into()),
            profile: Some("/tmp/p.json".into()),
            legacy_states: true,
            ..CommonArgs::default()
        };
        let s = Settings::merge(&args, f, "modbus", None).unwrap();
        assert_eq!((s.mqtt.host.as_str(), s.mqtt.port), ("127.0.0.1", 2000));
        assert_eq!(s.mqtt.client_id, "flag-client");
        assert_eq!(s.mqtt.username.as_deref(), Some("u"));
        assert_eq!(s.mqtt.state_names, StateNames::legacy());
        assert_eq!(s.profile, ProfileSetting::File("/tmp/p.json".into()));
        // TLS from the URL, verified against the file's CA under the configured name.
        let tls = s.mqtt.tls.unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("broker"));
    }

    #[test]
    fn buffer_keys_are_read_with_defaults() {
        let args = CommonArgs {
            profile: Some("/tmp/p.json".into()),
            ..CommonArgs::default()
        };
        let s = Settings::merge(&args, ConfigFile::default(), "modbus", None).unwrap();
        assert_eq!(s.mqtt.buffer, crate::buffer::BufferLimits::default());
        assert_eq!(s.mqtt.buffer_file, None);
        let f = parse_config(
            "mqtt:\n  bufferMaxMessages: 50\n  bufferMaxAgeSeconds: 60\n  bufferFile: /var/lib/m/buf.json\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let s = Settings::merge(&args, f, "modbus", None).unwrap();
        assert_eq!(s.mqtt.buffer.max_messages, 50);
        assert_eq!(s.mqtt.buffer.max_age, Duration::from_secs(60));
        assert_eq!(
            s.mqtt.buffer_file.as_deref(),
            Some(Path::new("/var/lib/m/buf.json"))
        );
    }

    #[test]
    fn device_profile_env_is_the_fallback() {
        let args = CommonArgs {
            profile: Some("/nonexistent/x.json".into()),
            ..CommonArgs::default()
        };
        let s = Settings::merge(&args, ConfigFile::default(), "modbus", Some("{}".into())).unwrap();
        assert_eq!(s.profile, ProfileSetting::Inline("{}".into()));
        assert!(s.mqtt.client_id.starts_with("modbus-mapper-"));
    }

    #[test]
    fn stock_mappers_go_config_with_empty_strings_starts_without_tls() {
        let text = "mqtt:\n  server: tcp://127.0.0.1:1883\n  username: \"\"\n  password: \"\"\n  certification: \"\"\n  privatekey: \"\"\n  caCert: \"\"\n";
        let f = parse_config(text, Path::new("c.yaml")).unwrap();
        let s = Settings::merge(&CommonArgs::default(), f, "modbus", None).unwrap();
        assert!(s.mqtt.tls.is_none());
        assert!(s.mqtt.username.is_none() && s.mqtt.password.is_none());
        for name in [
            "modbus-config.yaml",
            "mapper-sdk-go-config.yaml",
            "bluetooth_mapper-config.yaml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/kubeedge-samples")
                .join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let (f, unknown) = parse_config_noting(&text, &path).unwrap();
            assert!(unknown.is_empty(), "{name}: {unknown:?}");
            let s = Settings::merge(&CommonArgs::default(), f, "modbus", None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(s.mqtt.tls.is_none(), "{name}");
        }
    }

    #[test]
    fn certificates_with_a_plain_url_are_an_error_that_says_so() {
        let f = parse_config(
            "mqtt:\n  server: tcp://b:1883\n  caCert: /ca.pem\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let e = Settings::merge(&CommonArgs::default(), f, "modbus", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.caCert") && e.contains("ssl://"), "{e}");
        let f = parse_config(
            "mqtt:\n  server: ssl://b:8883\n  caCert: /ca.pem\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert!(
            Settings::merge(&CommonArgs::default(), f, "modbus", None)
                .unwrap()
                .mqtt
                .tls
                .is_some()
        );
    }

    #[test]
    fn unknown_sources_are_refused() {
        let f = parse_config("mapper:\n  source: etcd\n", Path::new("c.yaml")).unwrap();
        let err = Settings::merge(&CommonArgs::default(), f, "m", None).unwrap_err();
        assert!(err.to_string().contains("mapper.source"), "{err}");
        let f = parse_config("mapper:\n  source: File\n", Path::new("c.yaml")).unwrap();
        let s = Settings::merge(&CommonArgs::default(), f, "m", None).unwrap();
        assert!(matches!(s.profile, ProfileSetting::File(_)));
    }

    #[cfg(feature = "kube")]
    #[test]
    fn kube_sources_are_configured() {
        use crate::kube_source::{KubeConnection, KubeSettings, KubeWatch};
        let f = parse_config(
            "mapper:\n  source: configmap\n  nodeName: edge-1\n  namespace: factory\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let s = Settings::merge(&CommonArgs::default(), f, "m", None).unwrap();
        assert_eq!(
            s.profile,
            ProfileSetting::Kube(KubeSettings {
                connection: KubeConnection::Default,
                watch: KubeWatch::ConfigMap {
                    name: "device-profile-config-edge-1".into()
                },
                namespace: Some("factory".into()),
                node_name: Some("edge-1".into()),
            })
        );
        let f = parse_config(
            "mapper:\n  source: devices\n  metaServer: http://127.0.0.1:10550\n  kubeconfig: /k\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let args = CommonArgs {
            node_name: Some("n".into()),
            ..CommonArgs::default()
        };
        let ProfileSetting::Kube(k) = Settings::merge(&args, f, "m", None).unwrap().profile else {
            panic!("not a kube source");
        };
        assert_eq!(k.watch, KubeWatch::Devices);
        assert_eq!(k.namespace, None);
        assert_eq!(
            k.connection,
            KubeConnection::MetaServer("http://127.0.0.1:10550".into())
        );
        // The ConfigMap source needs a name.
        let f = parse_config("mapper:\n  source: configmap\n", Path::new("c.yaml")).unwrap();
        let err = Settings::merge(&CommonArgs::default(), f, "m", None).unwrap_err();
        assert!(err.to_string().contains("configMapName"), "{err}");
    }

    #[test]
    fn unknown_keys_are_noted_with_suggestions() {
        let text = "mqtt:\n  sever: tcp://x:1883\n  Client_ID: a\nmapper:\n  offlineAftr: 2\n  kubeconfig: k\nconfigmapp: p\nhttp:\n  x: 1\n";
        let (f, unknown) = parse_config_noting(text, Path::new("c.yaml")).unwrap();
        assert_eq!(f.mqtt.client_id.as_deref(), Some("a"));
        let shown: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "unknown key configmapp (did you mean configmap?)",
                "unknown key mapper.offlineAftr (did you mean mapper.offlineAfter?)",
                "unknown key mqtt.sever (did you mean mqtt.server?)",
            ]
        );
        let (_, none) = parse_config_noting(MAPPERS_GO, Path::new("c.yaml")).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let f = parse_config("mapper:\n  topicScheme: weird\n", Path::new("c.yaml")).unwrap();
        let err = Settings::merge(&CommonArgs::default(), f, "m", None).unwrap_err();
        assert!(err.to_string().contains("mapper.topicScheme"), "{err}");
        let err = parse_config("mqtt: [1, 2]\n", Path::new("c.yaml")).unwrap_err();
        assert!(err.to_string().contains("c.yaml"), "{err}");
        let err = parse_config("mqtt: {server: [", Path::new("c.yaml")).unwrap_err();
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }
}
