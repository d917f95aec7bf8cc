//! The MQTT side: one rumqttc event loop task and one publisher task.
//!
//! The event loop task owns the socket, routes deltas and twin/get results to the runtime
//! and tells the publisher about every ConnAck. The publisher turns [`Outbound`] messages
//! into topics and payloads, keeps the set of tracked devices, and on every (re)connect
//! subscribes to each device's delta and get-result topics at QoS 1, waits for the
//! SUBACKs and sends a `twin/get` per device. On shutdown it publishes what is queued,
//! then disconnects, so the last offline states reach the broker.
//!
//! Store and forward: reports are handed to the client only while connected and with
//! nothing buffered ahead of them; otherwise they go to the [`Buffer`]. On a disconnect
//! the event loop hands back what the client had taken but not delivered (rumqttc drops
//! it with a clean session), and the buffer is the only copy. After the reconnect the
//! buffer is published in order, with the reports' own timestamps, before newer reports;
//! the runtime's resync then republishes every device's state and values.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request,
    SubscribeFilter, TlsConfiguration, Transport,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::buffer::{Buffer, BufferLimits, BufferStats, Entry, Item};
use crate::buffer_file;
use crate::excerpt::excerpt;
use crate::http::MqttMetrics;
use crate::model::{DeviceId, StateNames};
use crate::runtime::{Inbound, Outbound};
use crate::twin;

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS, when the URL scheme asks for it.
    pub tls: Option<TlsSettings>,
    /// The client id; stable across restarts so the broker sees one client.
    pub client_id: String,
    /// Username, sent when set (also with client certificates).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// QoS of twin and state publishes (data publishes use QoS 0).
    pub qos: u8,
    /// The state strings.
    pub state_names: StateNames,
    /// The edge node name; when set, membership updates are watched as reload hints.
    pub node_name: Option<String>,
    /// The largest incoming message the mapper accepts (bytes); larger ones are dropped
    /// with a warning. The MQTT client itself takes up to [`CLIENT_PACKET_LIMIT`], so a
    /// large message never costs the connection or what is queued on it.
    pub max_message_bytes: usize,
    /// What is kept while the broker is unreachable.
    pub buffer: BufferLimits,
    /// Where the buffer is kept across restarts (`mqtt.bufferFile`), if anywhere.
    pub buffer_file: Option<PathBuf>,
}

/// The largest packet the MQTT client reads before it gives up on the connection. Far
/// above [`MqttSettings::max_message_bytes`]: messages between the two are read and
/// dropped by the mapper, keeping the session (and the publishes queued on it).
pub const CLIENT_PACKET_LIMIT: usize = 64 << 20;

/// Default of [`MqttSettings::max_message_bytes`]: 1 MiB, far above any twin delta.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// First and largest delay between reconnect attempts to the broker (each jittered by
/// ±25 %): kept small so that reports resume within about a second of the broker coming
/// back.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(800);

/// TLS material.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// CA certificate(s) that sign the broker's certificate (PEM). Required: the server
    /// is always verified.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), with `private_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub private_key: Option<PathBuf>,
    /// The name to verify the broker's certificate against, when it differs from the host.
    pub server_name: Option<String>,
}

/// A broken MQTT setting.
#[derive(Debug, Error)]
pub enum MqttError {
    /// The server URL cannot be used.
    #[error("mqtt.server {0:?} is not a broker address; use tcp://HOST:PORT or ssl://HOST:PORT")]
    BadUrl(String),
    /// A TLS file is missing or invalid.
    #[error("mqtt TLS: {0}")]
    Tls(String),
}

impl MqttSettings {
    /// Settings for `url` (`tcp://`, `mqtt://`, `ssl://`, `tls://`, `mqtts://` or a bare
    /// `host[:port]`) with defaults for everything else.
    pub fn from_url(url: &str, client_id: &str) -> Result<Self, MqttError> {
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "tcp" | "mqtt" => (false, rest),
                "ssl" | "tls" | "mqtts" => (true, rest),
                _ => return Err(MqttError::BadUrl(url.to_owned())),
            },
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            Some(("", _)) => return Err(MqttError::BadUrl(url.to_owned())),
            Some((h, p)) => (
                h.trim_matches(|c| c == '[' || c == ']'),
                p.parse().map_err(|_| MqttError::BadUrl(url.to_owned()))?,
            ),
            _ => (rest, default_port),
        };
        if host.is_empty() {
            return Err(MqttError::BadUrl(url.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls: tls.then(TlsSettings::default),
            client_id: client_id.to_owned(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            qos: 1,
            state_names: StateNames::default(),
            node_name: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            buffer: BufferLimits::default(),
            buffer_file: None,
        })
    }

    /// The client options (credentials and TLS included).
    pub(crate) fn options(&self) -> Result<MqttOptions, MqttError> {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(true);
        o.set_max_packet_size(CLIENT_PACKET_LIMIT, 1 << 20);
        if let Some(user) = &self.username {
            o.set_credentials(user, self.password.as_deref().unwrap_or(""));
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config(tls)?),
            )));
        }
        Ok(o)
    }

    fn qos(&self) -> QoS {
        qos_of(self.qos)
    }
}

fn read_pem_certs(
    path: &PathBuf,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, MqttError> {
    let f = File::open(path).map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(f)).collect();
    let certs = certs.map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(MqttError::Tls(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the rustls client config: the broker verified against the CA (optionally under
/// another name), and a client certificate when given.
pub fn tls_config(s: &TlsSettings) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = s.ca_cert.as_ref().ok_or_else(|| {
        MqttError::Tls("mqtt.caCert is required with ssl:// (the broker is always verified)".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_pem_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| MqttError::Tls(format!("{}: {e}", ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?;
    let builder = match &s.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| MqttError::Tls(format!("mqtt.servername {name:?}: {e}")))?;
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| MqttError::Tls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name }))
        }
        None => builder.with_root_certificates(roots),
    };
    match (&s.client_cert, &s.private_key) {
        (Some(cert), Some(key)) => {
            let certs = read_pem_certs(cert)?;
            let f =
                File::open(key).map_err(|e| MqttError::Tls(format!("{}: {e}", key.display())))?;
            let key_der = rustls_pemfile::private_key(&mut BufReader::new(f))
                .map_err(|e| MqttError::Tls(format!("{}: {e}", key.display())))?
                .ok_or_else(|| {
                    MqttError::Tls(format!("{}: no PEM private key found", key.display()))
                })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| MqttError::Tls(e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(MqttError::Tls(
            "mqtt.certification and mqtt.privatekey must be given together".into(),
        )),
    }
}

/// Verifies the broker's certificate against a configured name instead of the host.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

enum Ctl {
    Connected,
    /// The connection dropped. The publisher stops handing messages to the client,
    /// answers on `stopped`, and then receives on `lost` what the client had taken but
    /// not delivered (rumqttc drops it on the next clean session).
    Disconnected {
        stopped: oneshot::Sender<()>,
        lost: oneshot::Receiver<Vec<Request>>,
    },
    /// A twin/get result (or error answer) arrived for this device.
    GetAnswered(DeviceId),
}

/// How long to wait for a twin/get answer before asking again (doubling, capped).
const GET_RETRY_FIRST: Duration = Duration::from_secs(3);
const GET_RETRY_MAX: Duration = Duration::from_secs(60);

/// How long the event loop waits for the publisher to stop handing messages over after
/// a disconnect, before it collects what the client holds anyway.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Reports taken from the buffer per turn of the publisher loop, so that new reports and
/// control messages are read in between.
const FLUSH_BATCH: usize = 64;

/// The wait before trying again when the client's request queue is full.
const FLUSH_RETRY: Duration = Duration::from_millis(5);

/// How often a changed buffer is written to `mqtt.bufferFile`.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// How long shutdown keeps publishing the buffer while connected.
const CLOSE_FLUSH: Duration = Duration::from_secs(3);

/// The running MQTT adapter.
pub struct Mqtt {
    events: JoinHandle<()>,
    publisher: JoinHandle<()>,
    stats: Arc<BufferStats>,
}

impl Mqtt {
    /// Starts the event loop and the publisher. Outbound messages are read from
    /// `outbound` until it closes (all senders dropped); then the queue is flushed and
    /// the client disconnects.
    pub fn start(
        settings: MqttSettings,
        outbound: mpsc::Receiver<Outbound>,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<Self, MqttError> {
        Self::start_with_metrics(settings, outbound, inbound, Arc::default())
    }

    /// [`Mqtt::start`], counting connections, publishes and drops into `metrics`.
    pub fn start_with_metrics(
        settings: MqttSettings,
        outbound: mpsc::Receiver<Outbound>,
        inbound: mpsc::Sender<Inbound>,
        metrics: Arc<MqttMetrics>,
    ) -> Result<Self, MqttError> {
        let options = settings.options()?;
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        eventloop.network_options.set_tcp_nodelay(true);
        eventloop.network_options.set_connection_timeout(10);
        let (ctl_tx, ctl_rx) = mpsc::channel(16);
        let (suback_tx, suback_rx) = watch::channel(0u64);
        let mut buffer = Buffer::new(settings.buffer);
        if let Some(path) = &settings.buffer_file {
            restore(&mut buffer, path);
        }
        let stats = buffer.stats();
        let settings = Arc::new(settings);
        let events = tokio::spawn(event_loop(
            eventloop,
            ctl_tx,
            suback_tx,
            inbound.clone(),
            Arc::clone(&settings),
            Arc::clone(&metrics),
        ));
        let publisher = Publisher {
            client,
            settings,
            tracked: BTreeSet::new(),
            connected: false,
            subacks_expected: 0,
            subacks: suback_rx,
            inbound,
            get_seq: 0,
            awaiting: std::collections::BTreeMap::new(),
            saved: buffer.changes(),
            buffer,
            flush_at: None,
            next_save: tokio::time::Instant::now() + SAVE_EVERY,
            metrics,
        };
        let publisher = tokio::spawn(publisher.run(outbound, ctl_rx));
        Ok(Self {
            events,
            publisher,
            stats,
        })
    }

    /// The counts of the store-and-forward buffer (buffered now, dropped since start).
    pub fn buffer_stats(&self) -> Arc<BufferStats> {
        Arc::clone(&self.stats)
    }

    /// Waits until the outbound queue is flushed and the client disconnected (the
    /// outbound senders must be dropped first), at most `limit`.
    pub async fn finish(self, limit: Duration) {
        let Self {
            events, publisher, ..
        } = self;
        let both = async {
            let _ = publisher.await;
            let _ = events.await;
        };
        if tokio::time::timeout(limit, both).await.is_err() {
            warn!("mqtt did not flush within {limit:?}");
        }
    }
}

/// Loads what a previous run left in the buffer file; a broken file is a warning and
/// an empty start.
fn restore(buffer: &mut Buffer, path: &std::path::Path) {
    match buffer_file::load(path) {
        Ok(entries) => {
            let now = twin::now_millis();
            let n = entries.len();
            for e in entries {
                buffer.push(now, e);
            }
            if n > 0 {
                info!(file = %path.display(), restored = n, kept = buffer.len(), "reports the broker had not received before the restart are kept");
            }
        }
        Err(e) => {
            warn!(error = %e, "the buffer file cannot be read; starting with an empty buffer")
        }
    }
}

async fn event_loop(
    mut eventloop: EventLoop,
    ctl: mpsc::Sender<Ctl>,
    subacks: watch::Sender<u64>,
    inbound: mpsc::Sender<Inbound>,
    settings: Arc<MqttSettings>,
    metrics: Arc<MqttMetrics>,
) {
    let mut failures: u32 = 0;
    let mut connected = false;
    let membership = settings.node_name.as_deref().map(twin::membership_topic);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(broker = %format!("{}:{}", settings.host, settings.port), code = ?ack.code, "mqtt connected");
                failures = 0;
                connected = true;
                metrics.connected();
                let _ = ctl.send(Ctl::Connected).await;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subacks.send_modify(|n| *n += 1);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.payload.len() > settings.max_message_bytes {
                    warn!(topic = %excerpt(&p.topic), bytes = p.payload.len(), limit = settings.max_message_bytes, "incoming message larger than the mapper accepts; dropped");
                    metrics.dropped();
                    continue;
                }
                if membership.as_deref() == Some(p.topic.as_str()) {
                    let _ = inbound.try_send(Inbound::MembershipChanged);
                    continue;
                }
                if let Some(answered) = route_incoming(&p.topic, &p.payload, &inbound).await {
                    let _ = ctl.try_send(Ctl::GetAnswered(answered));
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                debug!("mqtt disconnected on request");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                metrics.disconnected();
                if connected {
                    connected = false;
                    hand_back_undelivered(&mut eventloop, &ctl).await;
                }
                if ctl.is_closed() {
                    return; // shutting down and the broker is gone
                }
                failures = failures.saturating_add(1);
                let delay =
                    crate::runtime::Backoff::delay_for(failures, RECONNECT_MIN, RECONNECT_MAX);
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, retry_in = ?delay, attempt = failures, "mqtt connection failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// After a disconnect: waits until the publisher stops handing messages over, then gives
/// it back everything the client took but did not deliver (in flight, unacknowledged, or
/// still queued). With a clean session rumqttc would drop these on reconnect; handing
/// them back makes the buffer their only store, so they are neither lost nor sent twice.
async fn hand_back_undelivered(eventloop: &mut EventLoop, ctl: &mpsc::Sender<Ctl>) {
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let (lost_tx, lost_rx) = oneshot::channel();
    let msg = Ctl::Disconnected {
        stopped: stopped_tx,
        lost: lost_rx,
    };
    if ctl.send(msg).await.is_err() {
        return; // shutting down
    }
    if tokio::time::timeout(STOP_WAIT, stopped_rx).await.is_err() {
        warn!(
            "the mqtt publisher did not pause within {STOP_WAIT:?}; collecting undelivered messages anyway"
        );
    }
    // `clean` moves in-flight publishes and the queued requests into `pending`.
    eventloop.clean();
    let lost: Vec<Request> = eventloop.pending.drain(..).collect();
    let _ = lost_tx.send(lost);
}

/// Routes a delta or get result; returns the device when it was a get result.
///
/// Waits for room in `inbound` rather than handing the message to a task: messages reach
/// the runtime in the order the broker delivered them (the runtime never blocks on a
/// desired value, so the wait is short).
async fn route_incoming(
    topic: &str,
    payload: &[u8],
    inbound: &mpsc::Sender<Inbound>,
) -> Option<DeviceId> {
    let Some((device, kind)) = twin::parse_incoming_topic(topic) else {
        debug!(topic = %excerpt(topic), "ignoring message on an unexpected topic");
        return None;
    };
    let answered = (kind == twin::IncomingKind::GetResult).then(|| device.clone());
    let parsed = match kind {
        twin::IncomingKind::Delta => twin::parse_delta(payload),
        twin::IncomingKind::GetResult => twin::parse_get_result(payload),
    };
    match parsed {
        Ok(values) if values.is_empty() => {}
        Ok(values) => {
            let _ = inbound.send(Inbound::Desired { device, values }).await;
        }
        Err(e) => {
            let e = e.to_string();
            warn!(device = %excerpt(&device.0), topic = %excerpt(topic), bytes = payload.len(), error = %excerpt(&e), "refused an incoming twin message");
        }
    }
    answered
}

struct Publisher {
    client: AsyncClient,
    settings: Arc<MqttSettings>,
    tracked: BTreeSet<DeviceId>,
    connected: bool,
    subacks_expected: u64,
    subacks: watch::Receiver<u64>,
    inbound: mpsc::Sender<Inbound>,
    get_seq: u64,
    /// Devices whose twin/get has not been answered yet: when to ask again, and the wait.
    awaiting: std::collections::BTreeMap<DeviceId, (tokio::time::Instant, Duration)>,
    /// Reports kept while the broker is away, published in order once it is back.
    buffer: Buffer,
    /// When the client's queue was full: when to try the buffer again.
    flush_at: Option<tokio::time::Instant>,
    /// [`Buffer::changes`] when the buffer file was last written.
    saved: u64,
    /// When a changed buffer is written next.
    next_save: tokio::time::Instant,
    metrics: Arc<MqttMetrics>,
}

impl Publisher {
    async fn run(mut self, mut outbound: mpsc::Receiver<Outbound>, mut ctl: mpsc::Receiver<Ctl>) {
        let mut ctl_open = true;
        loop {
            let retry_at = self.awaiting.values().map(|(t, _)| *t).min();
            let flushing = self.connected && !self.buffer.is_empty();
            let flush_at = self.flush_at;
            let save_due =
                self.settings.buffer_file.is_some() && self.buffer.changes() != self.saved;
            tokio::select! {
                biased;
                c = ctl.recv(), if ctl_open => match c {
                    Some(Ctl::Connected) => {
                        self.connected = true;
                        self.on_connected().await;
                    }
                    Some(Ctl::Disconnected { stopped, lost }) => {
                        self.on_disconnected(stopped, lost).await;
                    }
                    Some(Ctl::GetAnswered(id)) => {
                        self.awaiting.remove(&id);
                    }
                    None => ctl_open = false,
                },
                () = async {
                    match retry_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                }, if self.connected => {
                    let now = tokio::time::Instant::now();
                    let due: Vec<DeviceId> = self
                        .awaiting
                        .iter()
                        .filter(|(_, (t, _))| *t <= now)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in due {
                        debug!(device = %id, "no twin/get answer yet; asking again");
                        self.twin_get(&id).await;
                    }
                }
                msg = outbound.recv() => match msg {
                    Some(msg) => {
                        self.handle(msg).await;
                        // New reports must not starve the buffer.
                        if self.connected && self.flush_at.is_none() && !self.buffer.is_empty() {
                            self.flush();
                        }
                    }
                    None => break,
                },
                () = async {
                    if let Some(t) = flush_at {
                        tokio::time::sleep_until(t).await;
                    }
                }, if flushing => self.flush(),
                () = tokio::time::sleep_until(self.next_save), if save_due => {
                    self.save();
                }
            }
        }
        self.close(ctl, ctl_open).await;
    }

    /// Shutdown: publishes what is buffered while the broker is there (bounded), then
    /// disconnects.
    async fn close(&mut self, mut ctl: mpsc::Receiver<Ctl>, mut ctl_open: bool) {
        let deadline = tokio::time::Instant::now() + CLOSE_FLUSH;
        while self.connected && !self.buffer.is_empty() {
            self.flush();
            if self.buffer.is_empty() {
                break;
            }
            let wake = self
                .flush_at
                .unwrap_or_else(|| tokio::time::Instant::now() + FLUSH_RETRY)
                .min(deadline);
            tokio::select! {
                c = ctl.recv(), if ctl_open => match c {
                    Some(Ctl::Disconnected { stopped, lost }) => {
                        self.on_disconnected(stopped, lost).await;
                    }
                    Some(Ctl::Connected | Ctl::GetAnswered(_)) => {}
                    None => ctl_open = false,
                },
                () = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        if self.settings.buffer_file.is_some() {
            self.save();
        } else if !self.buffer.is_empty() {
            warn!(
                buffered = self.buffer.len(),
                "shutting down with reports the broker has not received; they are dropped (set mqtt.bufferFile to keep them)"
            );
        }
        if let Err(e) = self.client.disconnect().await {
            debug!(error = %e, "mqtt disconnect request failed");
        }
    }

    async fn on_disconnected(
        &mut self,
        stopped: oneshot::Sender<()>,
        lost: oneshot::Receiver<Vec<Request>>,
    ) {
        self.connected = false;
        self.flush_at = None;
        let _ = stopped.send(());
        let Ok(lost) = lost.await else {
            return;
        };
        let now = twin::now_millis();
        let entries: Vec<Entry> = lost
            .into_iter()
            .filter_map(|r| match r {
                // twin/gets are asked again on reconnect.
                Request::Publish(p) if !p.topic.ends_with("/twin/get") => Some(Entry {
                    at: now,
                    item: Item::Raw {
                        topic: p.topic,
                        qos: match p.qos {
                            QoS::AtMostOnce => 0,
                            QoS::AtLeastOnce => 1,
                            QoS::ExactlyOnce => 2,
                        },
                        payload: p.payload.to_vec(),
                    },
                }),
                _ => None,
            })
            .collect();
        let before = self.buffer.dropped();
        if !entries.is_empty() {
            info!(
                messages = entries.len(),
                "mqtt connection lost; undelivered messages kept for the next connection"
            );
            self.buffer.push_front(now, entries);
        }
        self.log_drops(before);
    }

    fn log_drops(&self, before: u64) {
        let dropped = self.buffer.dropped();
        if dropped > before && (before == 0 || dropped / 1000 > before / 1000) {
            warn!(
                dropped,
                limit = self.settings.buffer.max_messages,
                max_age = ?self.settings.buffer.max_age,
                "the broker is unreachable for long; the oldest buffered reports were dropped"
            );
        }
    }

    async fn on_connected(&mut self) {
        // Reports made while the broker was away keep their own values and timestamps:
        // newer ones (the resync below) follow them instead of replacing them.
        self.buffer.seal();
        self.flush_at = None;
        if !self.buffer.is_empty() {
            info!(
                buffered = self.buffer.len(),
                dropped = self.buffer.dropped(),
                "publishing reports buffered while the broker was unreachable"
            );
        }
        let mut filters = Vec::new();
        if let Some(node) = &self.settings.node_name {
            filters.push(SubscribeFilter::new(
                twin::membership_topic(node),
                QoS::AtLeastOnce,
            ));
        }
        for id in &self.tracked {
            filters.extend(device_filters(id));
        }
        self.subscribe(filters).await;
        let ids: Vec<DeviceId> = self.tracked.iter().cloned().collect();
        for id in &ids {
            self.twin_get(id).await;
        }
        let _ = self.inbound.send(Inbound::Connected).await;
    }

    /// Subscribes and waits (bounded) for the SUBACKs, so that a twin/get sent next
    /// cannot be answered before its result topic is subscribed.
    async fn subscribe(&mut self, filters: Vec<SubscribeFilter>) {
        for chunk in filters.chunks(64) {
            if let Err(e) = self.client.subscribe_many(chunk.to_vec()).await {
                warn!(error = %e, "mqtt subscribe failed");
                return;
            }
            self.subacks_expected += 1;
        }
        let want = self.subacks_expected;
        let wait = self.subacks.wait_for(|n| *n >= want);
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            warn!("no SUBACK within 5 s; continuing");
            // Re-base so one lost SUBACK does not delay every later subscribe.
            self.subacks_expected = *self.subacks.borrow();
        }
    }

    async fn twin_get(&mut self, id: &DeviceId) {
        let wait = self
            .awaiting
            .get(id)
            .map_or(GET_RETRY_FIRST, |(_, w)| (*w * 2).min(GET_RETRY_MAX));
        self.awaiting
            .insert(id.clone(), (tokio::time::Instant::now() + wait, wait));
        self.get_seq += 1;
        let event_id = format!("get-{}-{}", id, self.get_seq);
        let payload = twin::twin_get_payload(&event_id, twin::now_millis());
        match self
            .client
            .publish(
                twin::twin_get_topic(id),
                self.settings.qos(),
                false,
                payload,
            )
            .await
        {
            Ok(()) => self.metrics.published(),
            Err(e) => {
                self.metrics.dropped();
                error!(error = %e, "mqtt publish failed");
            }
        }
    }

    /// Publishes buffered reports, oldest first, until the buffer is empty, a batch is
    /// done, or the client's queue is full (then again after [`FLUSH_RETRY`]).
    fn flush(&mut self) {
        self.flush_at = None;
        let before = self.buffer.dropped();
        for _ in 0..FLUSH_BATCH {
            let Some(entry) = self.buffer.pop(twin::now_millis()) else {
                break;
            };
            if !self.try_send(&entry) {
                self.buffer.unpop(entry);
                self.flush_at = Some(tokio::time::Instant::now() + FLUSH_RETRY);
                break;
            }
        }
        self.log_drops(before);
        // Once all is delivered, the file must not bring it back after a restart.
        if self.buffer.is_empty() && self.buffer.changes() != self.saved {
            self.save();
        }
    }

    /// Writes the buffer to `mqtt.bufferFile`, when set.
    fn save(&mut self) {
        self.next_save = tokio::time::Instant::now() + SAVE_EVERY;
        let Some(path) = &self.settings.buffer_file else {
            return;
        };
        match buffer_file::save(path, self.buffer.entries()) {
            Ok(()) => self.saved = self.buffer.changes(),
            Err(e) => warn!(error = %e, "the buffer file cannot be written"),
        }
    }

    /// Hands one report to the client without waiting; false when its queue is full.
    fn try_send(&self, entry: &Entry) -> bool {
        let (topic, qos, payload) = self.encode(entry);
        match self.client.try_publish(topic, qos, false, payload) {
            Ok(()) => {
                self.metrics.published();
                true
            }
            // A full queue (or, at shutdown only, a closed one: both look alike).
            Err(ClientError::TryRequest(_)) => false,
            Err(e) => {
                self.metrics.dropped();
                error!(error = %e, "mqtt publish failed");
                true
            }
        }
    }

    fn encode(&self, entry: &Entry) -> (String, QoS, Vec<u8>) {
        let at = entry.at;
        match &entry.item {
            Item::Twin { device, values } => (
                twin::twin_update_topic(device),
                self.settings.qos(),
                twin::twin_update_payload(values, at),
            ),
            Item::Data { topic, values, .. } => (
                topic.clone(),
                QoS::AtMostOnce,
                twin::data_update_payload(values, at),
            ),
            Item::State { device, state } => (
                twin::state_topic(device),
                self.settings.qos(),
                twin::state_payload(self.settings.state_names.name(*state), at),
            ),
            Item::Raw {
                topic,
                qos,
                payload,
            } => (topic.clone(), qos_of(*qos), payload.clone()),
        }
    }

    /// Publishes a report at once when connected and nothing is buffered ahead of it;
    /// otherwise keeps it in the buffer.
    fn report(&mut self, item: Item) {
        let now = twin::now_millis();
        let entry = Entry { at: now, item };
        if self.connected && self.buffer.is_empty() && self.try_send(&entry) {
            return;
        }
        let before = self.buffer.dropped();
        self.buffer.push(now, entry);
        self.log_drops(before);
    }

    async fn handle(&mut self, msg: Outbound) {
        match msg {
            Outbound::Twin { device, values } => self.report(Item::Twin { device, values }),
            Outbound::Data {
                device,
                topic,
                values,
            } => self.report(Item::Data {
                device,
                topic,
                values,
            }),
            Outbound::State { device, state } => self.report(Item::State { device, state }),
            Outbound::Track(id) => {
                self.tracked.insert(id.clone());
                if self.connected {
                    self.subscribe(device_filters(&id).to_vec()).await;
                    self.twin_get(&id).await;
                }
            }
            Outbound::Untrack(id) => {
                self.tracked.remove(&id);
                self.awaiting.remove(&id);
                if self.connected {
                    for t in [
                        twin::twin_delta_topic(&id),
                        twin::twin_get_result_topic(&id),
                    ] {
                        if let Err(e) = self.client.unsubscribe(t).await {
                            debug!(error = %e, "mqtt unsubscribe failed");
                        }
                    }
                }
            }
        }
    }
}

fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

fn device_filters(id: &DeviceId) -> [SubscribeFilter; 2] {
    [
        SubscribeFilter::new(twin::twin_delta_topic(id), QoS::AtLeastOnce),
        SubscribeFilter::new(twin::twin_get_result_topic(id), QoS::AtLeastOnce),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broker_urls() {
        let s = MqttSettings::from_url("tcp://127.0.0.1:1883", "c").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls.is_some()),
            ("127.0.0.1", 1883, false)
        );
        let s = MqttSettings::from_url("ssl://broker.local", "c").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls.is_some()),
            ("broker.local", 8883, true)
        );
        let s = MqttSettings::from_url("localhost:1884", "c").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("localhost", 1884));
        assert!(MqttSettings::from_url("ws://x:1", "c").is_err());
        assert!(MqttSettings::from_url("tcp://:1883", "c").is_err());
        assert!(MqttSettings::from_url("tcp://h:port", "c").is_err());
    }

    #[test]
    fn tls_needs_a_ca() {
        let err = tls_config(&TlsSettings::default()).unwrap_err();
        assert!(err.to_string().contains("caCert"), "{err}");
        let err = tls_config(&TlsSettings {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
