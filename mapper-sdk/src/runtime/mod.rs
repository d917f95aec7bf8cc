//! The device runtime: one worker task per device, and a supervisor that reconciles the
//! running workers with each new profile (stop removed, start added, restart only
//! changed devices) and routes desired values to them.

mod backoff;
mod mailbox;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backoff::Backoff;
pub use mailbox::Merge;

use mailbox::Mailbox;

use crate::driver::{DeviceSpec, Driver};
use crate::http::Telemetry;
use crate::model::{DeviceId, DeviceState};
use crate::twin::{Desired, Reported};

/// Timing of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Longest time one connect may take.
    pub connect_timeout: Duration,
    /// Longest time one read or write may take (drivers usually time out sooner).
    pub io_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Largest reconnect delay while a lost link is fresh (see
    /// [`RuntimeOptions::relink_window`]): a device that dropped off for a short outage is
    /// seen again within about this long (plus up to 25 % jitter) of coming back.
    pub relink_interval: Duration,
    /// How long after a link loss ([`crate::driver::DriverError::Link`] on a connected
    /// device, or [`crate::driver::Device::next_push`] ending) reconnects are tried at
    /// most [`RuntimeOptions::relink_interval`] apart; after that the backoff grows on to
    /// [`RuntimeOptions::reconnect_max`], so a device that stays away costs little.
    pub relink_window: Duration,
    /// First retry delay of a failed write.
    pub write_retry_min: Duration,
    /// Largest retry delay of a failed write.
    pub write_retry_max: Duration,
    /// Consecutive failed transactions before a device is reported offline. A link the
    /// driver reports lost ([`crate::driver::DriverError::Link`]) is offline at once.
    pub offline_after: u32,
    /// How desired values that arrive faster than the device takes them are merged.
    pub desired_merge: Merge,
    /// Retries of a write the device refused ([`crate::driver::DriverError::Refused`])
    /// before the value is dropped with an error log.
    pub refused_write_retries: u32,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            relink_interval: Duration::from_secs(1),
            relink_window: Duration::from_secs(60),
            write_retry_min: Duration::from_millis(500),
            write_retry_max: Duration::from_secs(30),
            offline_after: 3,
            desired_merge: Merge::Latest,
            refused_write_retries: 3,
        }
    }
}

/// A command for one device worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// Desired values from a delta or a twin/get result.
    Desired(Vec<Desired>),
    /// The broker connection was re-established: report everything and the state again.
    Resync,
}

/// What the runtime asks the publisher (the MQTT adapter) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Report twin values (one `twin/update`).
    Twin {
        /// The device.
        device: DeviceId,
        /// The values.
        values: Vec<Reported>,
    },
    /// Publish data properties (one data message).
    Data {
        /// The device.
        device: DeviceId,
        /// The topic (already resolved).
        topic: String,
        /// The values.
        values: Vec<Reported>,
    },
    /// Report the device state.
    State {
        /// The device.
        device: DeviceId,
        /// The state.
        state: DeviceState,
    },
    /// A device started: subscribe to its delta and get-result topics and ask for its twin.
    Track(DeviceId),
    /// A device stopped: unsubscribe.
    Untrack(DeviceId),
}

/// What reaches the runtime from outside the device workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Desired values for a device.
    Desired {
        /// The device.
        device: DeviceId,
        /// The values.
        values: Vec<Desired>,
    },
    /// The MQTT session was (re-)established and subscriptions renewed.
    Connected,
    /// edgecore says devices were added or removed: re-read the profile soon.
    MembershipChanged,
}

struct Handle<D: Driver> {
    /// The spec the worker runs (shared with it, so reconcile compares without copies).
    spec: Arc<DeviceSpec<D>>,
    mailbox: Arc<Mailbox>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Devices started for the first time.
    pub started: Vec<DeviceId>,
    /// Devices stopped because they left the profile.
    pub stopped: Vec<DeviceId>,
    /// Devices restarted because their definition changed.
    pub restarted: Vec<DeviceId>,
    /// Devices left running untouched.
    pub unchanged: usize,
}

/// Runs the device workers and reconciles them with profiles.
pub struct Supervisor<D: Driver> {
    driver: Arc<D>,
    opts: Arc<RuntimeOptions>,
    out: mpsc::Sender<Outbound>,
    workers: BTreeMap<DeviceId, Handle<D>>,
    cancel: CancellationToken,
    telemetry: Telemetry,
}

impl<D: Driver> Supervisor<D> {
    /// A supervisor whose workers report through `out` and stop with `cancel`.
    pub fn new(
        driver: Arc<D>,
        opts: RuntimeOptions,
        out: mpsc::Sender<Outbound>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            driver,
            opts: Arc::new(opts),
            out,
            workers: BTreeMap::new(),
            cancel,
            telemetry: Telemetry::default(),
        }
    }

    /// Counts reads, writes and states into `telemetry` (the HTTP endpoint's view).
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The ids of the running devices.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceId> {
        self.workers.keys()
    }

    /// The definition a running device runs on.
    pub fn spec(&self, id: &DeviceId) -> Option<DeviceSpec<D>> {
        self.workers.get(id).map(|h| DeviceSpec::clone(&h.spec))
    }

    /// Reconciles the running workers with `specs`.
    pub async fn apply(&mut self, specs: Vec<DeviceSpec<D>>) -> ApplySummary {
        let mut summary = ApplySummary::default();
        let mut wanted: BTreeMap<DeviceId, DeviceSpec<D>> =
            specs.into_iter().map(|s| (s.id().clone(), s)).collect();
        let running: Vec<DeviceId> = self.workers.keys().cloned().collect();
        for id in running {
            match wanted.get(&id) {
                None => {
                    self.stop(&id).await;
                    self.telemetry.remove_device(&id);
                    let _ = self.out.send(Outbound::Untrack(id.clone())).await;
                    summary.stopped.push(id);
                }
                Some(spec) => {
                    let same = self
                        .workers
                        .get(&id)
                        .is_some_and(|h| h.spec.def.same_but_desired(&spec.def));
                    if same {
                        wanted.remove(&id);
                        summary.unchanged += 1;
                    } else {
                        self.stop(&id).await;
                        summary.restarted.push(id);
                    }
                }
            }
        }
        for (id, spec) in wanted {
            let restarted = summary.restarted.contains(&id);
            self.start(spec);
            if !restarted {
                summary.started.push(id.clone());
            }
            // Subscribe and ask for the twin (again for a restarted device: its worker
            // lost any desired state it had).
            let _ = self.out.send(Outbound::Track(id)).await;
        }
        info!(
            started = summary.started.len(),
            restarted = summary.restarted.len(),
            stopped = summary.stopped.len(),
            unchanged = summary.unchanged,
            "devices reconciled"
        );
        summary
    }

    fn start(&mut self, spec: DeviceSpec<D>) {
        let mailbox = Arc::new(Mailbox::new(self.opts.desired_merge));
        let cancel = self.cancel.child_token();
        let id = spec.id().clone();
        let spec = Arc::new(spec);
        let defs: Vec<&crate::profile::PropertyDef> =
            spec.properties.iter().map(|p| &*p.def).collect();
        let metrics = self.telemetry.device(&id, &defs);
        let worker = worker::Worker {
            metrics,
            driver: Arc::clone(&self.driver),
            spec: Arc::clone(&spec),
            out: self.out.clone(),
            mailbox: Arc::clone(&mailbox),
            cancel: cancel.clone(),
            opts: Arc::clone(&self.opts),
        };
        let task = tokio::spawn(worker.run());
        self.workers.insert(
            id,
            Handle {
                spec,
                mailbox,
                cancel,
                task,
            },
        );
    }

    async fn stop(&mut self, id: &DeviceId) {
        if let Some(h) = self.workers.remove(id) {
            h.cancel.cancel();
            // Wait, so that a restarted device never has two connections at once
            // (serial ports open exclusively).
            if tokio::time::timeout(Duration::from_secs(10), h.task)
                .await
                .is_err()
            {
                warn!(device = %id, "worker did not stop within 10 s");
            }
        }
    }

    /// Hands a command to a device's worker. Never waits, never drops and never spawns:
    /// desired values go into the worker's mailbox, where the latest value per property
    /// wins (unless [`RuntimeOptions::desired_merge`] asks for every value) and arrival
    /// order is kept. Returns false for an unknown or stopped device.
    pub fn route(&self, device: &DeviceId, cmd: Cmd) -> bool {
        let Some(h) = self.workers.get(device) else {
            return false;
        };
        if h.task.is_finished() {
            return false;
        }
        match cmd {
            Cmd::Desired(values) => h.mailbox.push_desired(values),
            Cmd::Resync => h.mailbox.push_resync(),
        }
        true
    }

    /// Asks every worker to report everything again.
    pub fn resync_all(&self) {
        let ids: Vec<DeviceId> = self.workers.keys().cloned().collect();
        for id in ids {
            self.route(&id, Cmd::Resync);
        }
    }

    /// Stops every worker (each reports its device offline) and waits for them.
    pub async fn shutdown(mut self) {
        let ids: Vec<DeviceId> = self.workers.keys().cloned().collect();
        for h in self.workers.values() {
            h.cancel.cancel();
        }
        for id in ids {
            self.stop(&id).await;
        }
    }
}
