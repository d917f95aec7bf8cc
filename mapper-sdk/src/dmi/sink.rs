//! The report sink in DMI mode: the runtime's reports go to edgecore over DMI under the
//! budget (or over MQTT, by setting); data properties always go to MQTT, whose client is
//! started only when something needs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use dmi_api::transport::{Address, connect};
use dmi_api::v1beta1::device_manager_service_client::DeviceManagerServiceClient;
use dmi_api::v1beta1::{
    DeviceStatus, ReportDeviceStatesRequest, ReportDeviceStatusRequest, Twin, TwinProperty,
};

use super::convert::key_of_id;
use super::queue::{Due, ReportQueue};
use super::register::is_limited;
use super::{ReportPath, Shared};
use crate::model::{DeviceId, DeviceState, valid_twin_value};
use crate::mqtt::{Mqtt, MqttSettings};
use crate::runtime::{Backoff, Inbound, Outbound};

struct Sink {
    shared: Arc<Shared>,
    queue: ReportQueue,
    mqtt_settings: MqttSettings,
    inbound: mpsc::Sender<Inbound>,
    mqtt: Option<(Mqtt, mpsc::Sender<Outbound>)>,
    states_supported: bool,
    edgecore_down: bool,
    backoff: Backoff,
    not_before: Instant,
    /// The desired value each property was last seen to hold (observedDesired).
    observed: BTreeMap<(DeviceId, String), String>,
    warned_desired: std::collections::BTreeSet<(DeviceId, String)>,
    /// Since when edgecore's limiter refuses calls (None: it accepts them).
    limited_since: Option<Instant>,
    /// Devices whose reportToCloud-false properties were logged.
    warned_quiet: std::collections::BTreeSet<DeviceId>,
}

impl Sink {
    fn mqtt(&mut self) -> Option<&mpsc::Sender<Outbound>> {
        if self.mqtt.is_none() {
            let (tx, rx) = mpsc::channel(4096);
            match Mqtt::start(self.mqtt_settings.clone(), rx, self.inbound.clone()) {
                Ok(m) => self.mqtt = Some((m, tx)),
                Err(e) => {
                    error!("dmi: cannot start the MQTT client for data properties: {e}");
                    return None;
                }
            }
        }
        self.mqtt.as_ref().map(|(_, tx)| tx)
    }

    async fn forward(&mut self, msg: Outbound) {
        if let Some(tx) = self.mqtt() {
            let _ = tx.send(msg).await;
        }
    }

    async fn accept(&mut self, msg: Outbound) {
        let now = Instant::now();
        match msg {
            Outbound::Twin { device, values } => {
                {
                    let mut latest = self
                        .shared
                        .latest
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let slot = latest.entry(device.clone()).or_default();
                    for v in &values {
                        slot.insert(v.property.0.clone(), v.value.clone());
                    }
                }
                let mut values = values;
                let before = values.len();
                let key = key_of_id(device.as_str());
                let known = self
                    .shared
                    .lock_store()
                    .retain_to_cloud(&key, &mut values, |v| v.property.as_str());
                if known && values.len() < before && self.warned_quiet.insert(device.clone()) {
                    let quiet = self.shared.lock_store().not_to_cloud(&key);
                    info!(device = %device, properties = ?quiet, "dmi: these properties have reportToCloud false (or unset) in the Device spec, so their values are not sent to edgecore; set spec.properties[].reportToCloud: true to report them");
                }
                if !known || values.is_empty() {
                    return;
                }
                match self.shared.settings.report {
                    ReportPath::Mqtt => self.forward(Outbound::Twin { device, values }).await,
                    ReportPath::Dmi => self.queue.offer_twins(
                        &device,
                        values.into_iter().map(|v| (v.property.0, v.value)),
                        now,
                    ),
                }
            }
            Outbound::State { device, state } => {
                let meta = self
                    .shared
                    .lock_store()
                    .report_meta(&key_of_id(device.as_str()));
                // A removed device is not reported any more (edgecore would drop it): its
                // worker's last "offline" stays here.
                if meta.is_none() {
                    debug!(device = %device, "dmi: state of a device edgecore removed; not sent");
                    return;
                }
                match self.shared.settings.report {
                    ReportPath::Mqtt => self.forward(Outbound::State { device, state }).await,
                    ReportPath::Dmi => {
                        if self.states_supported {
                            let cycle = meta
                                .filter(|m| m.state_to_cloud)
                                .and_then(|m| m.state_cycle);
                            self.queue.offer_state(&device, state, cycle, now);
                        }
                    }
                }
            }
            Outbound::Data { .. } => self.forward(msg).await,
            // No subscriptions in DMI mode: desired values come with UpdateDevice.
            Outbound::Track(_) => {}
            Outbound::Untrack(device) => {
                self.queue.forget(&device);
                self.observed.retain(|(d, _), _| d != &device);
                self.shared
                    .latest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&device);
            }
        }
    }

    fn observed_desired(
        &mut self,
        id: &DeviceId,
        property: &str,
        reported: &str,
        desired: Option<&String>,
    ) -> String {
        let key = (id.clone(), property.to_owned());
        if let Some(d) = desired {
            if !valid_twin_value(d) {
                if self.warned_desired.insert(key.clone()) {
                    warn!(device = %id, property, "dmi: the desired value has characters edgecore refuses; reporting observedDesired empty");
                }
                return String::new();
            }
            // Advanced only when the device is seen to hold it (a failed write stays
            // visible in the cloud).
            if d == reported {
                self.observed.insert(key.clone(), d.clone());
            }
        } else {
            self.observed.remove(&key);
        }
        self.observed.get(&key).cloned().unwrap_or_default()
    }

    async fn send(&mut self, due: &Due) -> Result<(), tonic::Status> {
        let s = &self.shared.settings;
        let edgecore = Address::Path(s.edgecore_socket_file());
        let timeout = s.call_timeout;
        let (id, request) = match due {
            Due::Twins(id, values) => (id, Some(values)),
            Due::State(id, _) => (id, None),
        };
        let key = key_of_id(id.as_str());
        let meta = self.shared.lock_store().report_meta(&key);
        let call = async {
            let channel = connect(&edgecore, "localhost").await.map_err(|e| {
                tonic::Status::unavailable(format!("cannot reach edgecore at {edgecore}: {e}"))
            })?;
            let mut client = DeviceManagerServiceClient::new(channel);
            match (due, request) {
                (Due::Twins(..), Some(values)) => {
                    let now = crate::twin::now_millis().to_string();
                    let mut twins = Vec::with_capacity(values.len());
                    for (name, value) in values {
                        let desired = meta.as_ref().and_then(|m| m.desired.get(name));
                        let observed = self.observed_desired(id, name, value, desired);
                        let metadata = [("timestamp".to_owned(), now.clone())]
                            .into_iter()
                            .collect();
                        twins.push(Twin {
                            property_name: name.clone(),
                            observed_desired: Some(TwinProperty {
                                value: observed,
                                ..Default::default()
                            }),
                            reported: Some(TwinProperty {
                                value: value.clone(),
                                metadata,
                            }),
                        });
                    }
                    client
                        .report_device_status(ReportDeviceStatusRequest {
                            device_name: key.1.clone(),
                            device_namespace: key.0.clone(),
                            reported_device: Some(DeviceStatus {
                                twins,
                                ..Default::default()
                            }),
                        })
                        .await
                        .map(|_| ())
                }
                (Due::State(_, state), _) => client
                    .report_device_states(ReportDeviceStatesRequest {
                        device_name: key.1.clone(),
                        device_namespace: key.0.clone(),
                        state: state_name(*state).to_owned(),
                    })
                    .await
                    .map(|_| ()),
                _ => Ok(()),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "edgecore did not answer in time",
            )),
        }
    }

    /// Sends the next due call; returns false when nothing was due.
    async fn send_next(&mut self, cancel: &CancellationToken) -> bool {
        let Some(due) = self.queue.pop() else {
            return false;
        };
        if !self.shared.take_token(cancel).await {
            self.queue.retry(due);
            return false;
        }
        match self.send(&due).await {
            Ok(()) => {
                self.queue.sent(&due, Instant::now());
                self.backoff.reset();
                self.shared.call_accepted();
                if self.limited_since.take().is_some() {
                    info!(
                        rate = self.shared.budget_rate(),
                        "dmi: edgecore accepts reports again after its rate limit"
                    );
                }
                if self.edgecore_down {
                    self.edgecore_down = false;
                    info!("dmi: edgecore accepts reports again");
                    self.shared.edgecore_back.notify_one();
                }
            }
            Err(status) => {
                let code = status.code();
                if matches!(due, Due::State(..)) && code == tonic::Code::Unimplemented {
                    info!(
                        "dmi: edgecore has no ReportDeviceStates (KubeEdge before 1.18); state reports are off until it is registered again"
                    );
                    self.states_supported = false;
                    return true;
                }
                let retry = is_limited(&status)
                    || matches!(
                        code,
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::ResourceExhausted
                    );
                if is_limited(&status) {
                    self.shared.drain_budget();
                }
                if code == tonic::Code::Unavailable && !self.edgecore_down {
                    self.edgecore_down = true;
                    warn!(
                        "dmi: edgecore is not reachable; reports wait (latest value per property kept): {}",
                        status.message()
                    );
                }
                if is_limited(&status) {
                    // The budget was drained and its rate halved: it paces the retries
                    // (edgecore's bucket gains a token per second).
                    let now = Instant::now();
                    if self.limited_since.is_none() {
                        self.limited_since = Some(now);
                        warn!(
                            rate = self.shared.budget_rate(),
                            "dmi: edgecore's rate limit was hit (it is shared by every mapper of the node); reports slow down, latest values kept"
                        );
                    } else {
                        debug!(
                            rate = self.shared.budget_rate(),
                            "dmi: edgecore's rate limit was hit again"
                        );
                    }
                    self.not_before = now + Duration::from_secs(1);
                    self.queue.retry(due);
                } else if retry {
                    let wait = self.backoff.next_delay();
                    debug!(code = ?code, retry_in = ?wait, "dmi: report failed: {}", status.message());
                    self.not_before = Instant::now() + wait;
                    self.queue.retry(due);
                } else {
                    error!(code = ?code, "dmi: edgecore refused a report, dropped: {}", status.message());
                }
            }
        }
        true
    }
}

fn state_name(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Online => "online",
        DeviceState::Offline => "offline",
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut out: mpsc::Receiver<Outbound>,
    mqtt_settings: MqttSettings,
    inbound: mpsc::Sender<Inbound>,
    mut epoch: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut sink = Sink {
        queue: ReportQueue::new(shared.settings.heartbeat),
        shared,
        mqtt_settings,
        inbound,
        mqtt: None,
        states_supported: true,
        edgecore_down: false,
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        not_before: Instant::now(),
        observed: BTreeMap::new(),
        warned_desired: std::collections::BTreeSet::new(),
        warned_quiet: std::collections::BTreeSet::new(),
        limited_since: None,
    };
    if sink.shared.settings.report == ReportPath::Mqtt {
        let _ = sink.mqtt();
    }
    let mut open = true;
    loop {
        let ready = !sink.queue.is_empty();
        let wait = tokio::time::sleep_until(sink.not_before);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            msg = out.recv(), if open => match msg {
                Some(m) => sink.accept(m).await,
                None => open = false,
            },
            changed = epoch.changed() => {
                if changed.is_ok() {
                    sink.states_supported = true;
                    sink.queue.resend_all();
                }
            }
            () = wait, if ready => {
                sink.send_next(&stop).await;
            }
        }
        if !open && sink.queue.is_empty() {
            break;
        }
    }
    if let Some((mqtt, tx)) = sink.mqtt.take() {
        drop(tx);
        mqtt.finish(Duration::from_secs(3)).await;
    }
}
