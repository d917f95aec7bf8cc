//! One worker task per device: connect with backoff, read on each property's cycle,
//! report on change plus heartbeat, write desired values (ahead of reads), and keep the
//! device state with hysteresis.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::mailbox::{Mailbox, Merge};
use super::{Outbound, RuntimeOptions};
use crate::driver::{Device, DeviceSpec, Driver, DriverError, PropertySpec};
use crate::excerpt::excerpt;
use crate::http::{DeviceMetrics, ErrorKind};
use crate::model::{AccessMode, DeviceState, PropertyName, Value, check_wire_value};
use crate::twin::{Desired, Reported};

/// Logs at most once per interval per key.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u32,
}

impl RateLimit {
    const INTERVAL: Duration = Duration::from_secs(60);

    /// Whether to log now; returns how many were suppressed since the last log.
    fn allow(&mut self, now: Instant) -> Option<u32> {
        match self.last {
            Some(t) if now.duration_since(t) < Self::INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Logs a persisting condition (a device that stays down) at a growing interval: at
/// once, then after 2 s, 4 s, ... up to 5 minutes; [`GrowingLog::reset`] on recovery.
#[derive(Debug, Default)]
struct GrowingLog {
    next: Option<Instant>,
    interval: Duration,
    suppressed: u32,
}

impl GrowingLog {
    const FIRST: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(300);

    /// Whether to log now; returns how many were suppressed since the last log.
    fn allow(&mut self, now: Instant) -> Option<u32> {
        match self.next {
            Some(t) if now < t => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.interval = if self.interval.is_zero() {
                    Self::FIRST
                } else {
                    (self.interval * 2).min(Self::MAX)
                };
                self.next = Some(now + self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[derive(Debug)]
struct Pending {
    value: Value,
    text: String,
    attempts: u32,
    next_try: Instant,
    /// Arrival order across the device's properties: writes go out in this order.
    seq: u64,
}

/// Desired values a property keeps waiting behind its pending one (only with
/// [`Merge::Sequence`]); beyond this the oldest are dropped with a warning.
const QUEUED_MAX: usize = 16_384;

#[derive(Debug)]
struct PropState {
    next_due: Option<Instant>,
    last_value: Option<Value>,
    pushed: Option<Value>,
    sent_twin: Option<(String, Instant)>,
    sent_data: Option<(String, Instant)>,
    force_report: bool,
    /// Whether `last_value` is a current reading: false while the property's reads fail
    /// or the link is down, so that nothing stale goes out as a fresh report.
    fresh: bool,
    desired: Option<String>,
    stored_type: Option<String>,
    pending: Option<Pending>,
    /// Values waiting behind `pending` (sequence mode only).
    queued: VecDeque<Pending>,
    log_refused: RateLimit,
    log_read: RateLimit,
    log_wire: RateLimit,
}

pub(super) struct Worker<D: Driver> {
    pub driver: Arc<D>,
    pub spec: Arc<DeviceSpec<D>>,
    pub out: mpsc::Sender<Outbound>,
    pub mailbox: Arc<Mailbox>,
    pub cancel: CancellationToken,
    pub opts: Arc<RuntimeOptions>,
    pub metrics: Arc<DeviceMetrics>,
}

struct Run<D: Driver> {
    w: Worker<D>,
    props: Vec<PropState>,
    link: Option<D::Device>,
    state: Option<DeviceState>,
    state_dirty: bool,
    failures: u32,
    connect_backoff: Backoff,
    next_connect: Instant,
    /// When the link was lost, until the device answers again: reconnects within
    /// `relink_window` of it are at most `relink_interval` apart.
    lost_at: Option<Instant>,
    log_link: GrowingLog,
    log_unknown: RateLimit,
    log_overflow: RateLimit,
    seq: u64,
}

impl<D: Driver> Worker<D> {
    pub(super) async fn run(self) {
        let now = Instant::now();
        let props = self
            .spec
            .properties
            .iter()
            .map(|p| PropState {
                next_due: p.def.collect_cycle.map(|_| now),
                last_value: None,
                fresh: false,
                pushed: None,
                sent_twin: None,
                sent_data: None,
                force_report: false,
                desired: None,
                stored_type: p.def.stored_type.clone(),
                pending: None,
                queued: VecDeque::new(),
                log_refused: RateLimit::default(),
                log_read: RateLimit::default(),
                log_wire: RateLimit::default(),
            })
            .collect();
        let backoff = Backoff::new(self.opts.reconnect_min, self.opts.reconnect_max);
        let mut run = Run {
            w: self,
            props,
            link: None,
            state: None,
            state_dirty: false,
            failures: 0,
            connect_backoff: backoff,
            next_connect: now,
            lost_at: None,
            log_link: GrowingLog::default(),
            log_unknown: RateLimit::default(),
            log_overflow: RateLimit::default(),
            seq: 0,
        };
        info!(device = %run.w.spec.id(), properties = run.props.len(), "device worker started");
        run.main_loop().await;
        if let Some(mut link) = run.link.take() {
            link.close().await;
        }
        // Report the device offline on the way out, waiting briefly for room.
        run.w.metrics.set_state(DeviceState::Offline);
        let msg = Outbound::State {
            device: run.w.spec.id().clone(),
            state: DeviceState::Offline,
        };
        let _ = timeout(Duration::from_secs(1), run.w.out.send(msg)).await;
        info!(device = %run.w.spec.id(), "device worker stopped");
    }
}

impl<D: Driver> Run<D> {
    async fn main_loop(&mut self) {
        loop {
            if self.w.cancel.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if self.link.is_none() && now >= self.next_connect {
                self.connect().await;
            }
            self.write_due().await;
            self.read_due().await;
            self.flush_reports();
            self.w.metrics.set_pending(
                self.props
                    .iter()
                    .map(|p| usize::from(p.pending.is_some()) + p.queued.len())
                    .sum(),
            );
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = self.w.cancel.cancelled() => return,
                () = self.w.mailbox.changed() => self.on_mail(),
                pushed = next_push(&mut self.link) => self.on_push(pushed),
                () = sleep_until(wake) => {}
            }
        }
    }

    fn id(&self) -> &crate::model::DeviceId {
        self.w.spec.id()
    }

    async fn connect(&mut self) {
        let spec = Arc::clone(&self.w.spec);
        let result = match timeout(self.w.opts.connect_timeout, self.w.driver.connect(&spec)).await
        {
            Ok(r) => r,
            Err(_) => Err(DriverError::Timeout(format!(
                "connect took longer than {:?}",
                self.w.opts.connect_timeout
            ))),
        };
        match result {
            Ok(link) => {
                debug!(device = %self.id(), "connected");
                self.link = Some(link);
                // The backoff is reset by the first successful transaction, not here: a
                // driver that connects lazily "connects" at once and fails on first use.
                // Read everything now, so the first real reading after a recovery goes
                // out at once.
                let now = Instant::now();
                for p in &mut self.props {
                    if p.next_due.is_some() {
                        p.next_due = Some(now);
                    }
                }
            }
            Err(e) => {
                let delay = self.reconnect_delay(Instant::now());
                self.next_connect = Instant::now() + delay;
                if let Some(n) = self.log_link.allow(Instant::now()) {
                    warn!(device = %self.id(), error = %e, retry_in = ?delay, suppressed = n, "cannot connect");
                }
                self.failure(true);
            }
        }
    }

    /// Counts a failed transaction (or connect); goes offline after the threshold.
    fn failure(&mut self, unreachable: bool) {
        if !unreachable {
            self.success();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.w.opts.offline_after {
            self.go_offline();
        }
    }

    /// Reports the device offline (once) and marks every value stale.
    fn go_offline(&mut self) {
        for p in &mut self.props {
            p.fresh = false;
        }
        if self.state != Some(DeviceState::Offline) {
            warn!(device = %self.id(), failures = self.failures, "device is offline");
            self.set_state(DeviceState::Offline);
        }
    }

    /// The delay before the next connect: the growing backoff, capped at the relink
    /// interval while a link loss is fresh.
    fn reconnect_delay(&mut self, now: Instant) -> Duration {
        let delay = self.connect_backoff.next_delay();
        let opts = &self.w.opts;
        match self.lost_at {
            Some(at) if now.duration_since(at) < opts.relink_window => delay.min(
                Backoff::delay_for(1, opts.relink_interval, opts.relink_interval),
            ),
            _ => delay,
        }
    }

    fn success(&mut self) {
        self.failures = 0;
        self.lost_at = None;
        self.connect_backoff.reset();
        self.log_link.reset();
        if self.state != Some(DeviceState::Online) {
            info!(device = %self.id(), "device is online");
            self.set_state(DeviceState::Online);
        }
    }

    fn set_state(&mut self, state: DeviceState) {
        self.w.metrics.set_state(state);
        self.state = Some(state);
        self.state_dirty = true;
    }

    /// The driver says the link is gone: drop the handle, reconnect with backoff, and
    /// report the device offline at once (hysteresis is for flapping polls, not for a
    /// link the stack has given up on).
    fn drop_link(&mut self, why: &DriverError) {
        if self.link.take().is_some() {
            let now = Instant::now();
            self.lost_at.get_or_insert(now);
            let delay = self.reconnect_delay(now);
            self.next_connect = now + delay;
            if let Some(n) = self.log_link.allow(now) {
                warn!(device = %self.id(), error = %why, retry_in = ?delay, suppressed = n, "link lost; reconnecting");
            }
            self.failures = self.failures.max(self.w.opts.offline_after);
            self.go_offline();
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut wake = far;
        for p in &self.props {
            if let Some(d) = p.next_due {
                wake = wake.min(d);
            }
            if let Some(pw) = &p.pending {
                wake = wake.min(pw.next_try);
            }
            if p.force_report && p.fresh {
                wake = Instant::now();
            }
        }
        if self.link.is_none() {
            wake = wake.min(self.next_connect);
        }
        wake
    }

    /// Writes the pending values that are due, in the order they arrived.
    async fn write_due(&mut self) {
        if self.link.is_none() {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<(u64, usize)> = self
            .props
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.pending
                    .as_ref()
                    .filter(|pw| pw.next_try <= now)
                    .map(|pw| (pw.seq, i))
            })
            .collect();
        due.sort_unstable();
        for (_, i) in due {
            if self.link.is_none() {
                return;
            }
            self.write_one(i).await;
            // In sequence mode the next value of this property follows at once.
            while self.link.is_some()
                && self.props[i]
                    .pending
                    .as_ref()
                    .is_some_and(|pw| pw.attempts == 0 && pw.next_try <= Instant::now())
                && self.w.opts.desired_merge == Merge::Sequence
            {
                self.write_one(i).await;
            }
        }
    }

    /// The pending write of property `i` is done (written or dropped): the next queued
    /// value, if any, becomes pending.
    fn finish_pending(&mut self, i: usize) {
        let p = &mut self.props[i];
        p.pending = p.queued.pop_front().map(|mut next| {
            next.next_try = Instant::now();
            next
        });
    }

    async fn write_one(&mut self, i: usize) {
        let spec = Arc::clone(&self.w.spec);
        let prop: &PropertySpec<D::Visitor> = &spec.properties[i];
        let Some(pending) = self.props[i].pending.as_ref() else {
            return;
        };
        let value = pending.value.clone();
        let text = pending.text.clone();
        if self.props[i].fresh
            && self.props[i].queued.is_empty()
            && let Some(current) = &self.props[i].last_value
            && current.same_as(&value, prop.def.data_type)
        {
            debug!(device = %self.id(), property = %prop.def.name, value = %text, "already at the desired value");
            self.finish_pending(i);
            self.props[i].force_report = true;
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let result = match timeout(self.w.opts.io_timeout, link.write(prop, &value)).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Timeout(
                "the write did not finish in time".into(),
            )),
        };
        self.w.metrics.count_write(result.is_ok());
        match result {
            Ok(()) => {
                info!(device = %spec.id(), property = %prop.def.name, value = %excerpt(&text), "desired value written");
                self.finish_pending(i);
                self.success();
                // Read back so the report shows what the device really holds.
                let read = match self.link.as_mut() {
                    Some(link) => timeout(self.w.opts.io_timeout, link.read(prop)).await.ok(),
                    None => None,
                };
                match read {
                    Some(Ok(v)) => {
                        self.record(i, &v);
                        self.props[i].last_value = Some(v);
                        self.props[i].fresh = true;
                        self.props[i].force_report = true;
                    }
                    Some(Err(e)) => {
                        debug!(device = %spec.id(), property = %prop.def.name, error = %e, "read-back failed; the next poll reports");
                        if e.is_link() {
                            self.drop_link(&e);
                        }
                    }
                    None => {}
                }
            }
            Err(e) => {
                let p = self.props[i].pending.as_mut();
                let Some(p) = p else { return };
                p.attempts += 1;
                if matches!(e, DriverError::Invalid(_)) {
                    error!(device = %spec.id(), property = %prop.def.name, value = %excerpt(&text), error = %e, "desired value cannot be written; dropped");
                    self.finish_pending(i);
                    return;
                }
                let retries = self.w.opts.refused_write_retries;
                if matches!(e, DriverError::Refused(_)) && p.attempts > retries {
                    error!(device = %spec.id(), property = %prop.def.name, value = %excerpt(&text), attempts = p.attempts, error = %e, "the device refused the desired value every time; dropped (mapper.refusedWriteRetries)");
                    self.finish_pending(i);
                    self.success();
                    return;
                }
                let delay = Backoff::delay_for(
                    p.attempts,
                    self.w.opts.write_retry_min,
                    self.w.opts.write_retry_max,
                );
                p.next_try = Instant::now() + delay;
                warn!(device = %spec.id(), property = %prop.def.name, value = %excerpt(&text), attempt = p.attempts, retry_in = ?delay, error = %e, "write failed; kept pending");
                self.failure(e.is_unreachable());
                if e.is_link() {
                    self.drop_link(&e);
                }
            }
        }
    }

    async fn read_due(&mut self) {
        let now = Instant::now();
        let spec = Arc::clone(&self.w.spec);
        let mut due = Vec::new();
        for (i, p) in self.props.iter_mut().enumerate() {
            let Some(at) = p.next_due else { continue };
            if at > now {
                continue;
            }
            let cycle = spec.properties[i]
                .def
                .collect_cycle
                .unwrap_or(Duration::from_secs(1));
            let mut next = at + cycle;
            if next <= now {
                // Fell behind: skip the missed ticks rather than bursting.
                let missed = (now - at).as_nanos() / cycle.as_nanos().max(1);
                next = at + cycle * u32::try_from(missed + 1).unwrap_or(u32::MAX);
                if next <= now {
                    next = now + cycle;
                }
            }
            p.next_due = Some(next);
            if let Some(v) = p.pushed.take() {
                p.last_value = Some(v);
                p.fresh = true;
                continue;
            }
            due.push(i);
        }
        if due.is_empty() {
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let refs: Vec<&PropertySpec<D::Visitor>> =
            due.iter().map(|&i| &spec.properties[i]).collect();
        let io = self.w.opts.io_timeout * u32::try_from(refs.len().min(64)).unwrap_or(1);
        let started = Instant::now();
        let results = match timeout(io, link.read_many(&refs)).await {
            Ok(r) => r,
            Err(_) => vec![
                Err(DriverError::Timeout(
                    "the reads did not finish in time".into()
                ));
                refs.len()
            ],
        };
        self.w.metrics.observe_read_latency(started.elapsed());
        let mut any_answer = false;
        let mut link_error = None;
        for (&i, result) in due.iter().zip(results) {
            self.w
                .metrics
                .count_read(result.as_ref().err().map(ErrorKind::from));
            match result {
                Ok(v) => {
                    any_answer = true;
                    self.record(i, &v);
                    let p = &mut self.props[i];
                    if !p.fresh {
                        // The first real reading after a failure goes out at once.
                        p.force_report = true;
                    }
                    p.last_value = Some(v);
                    p.fresh = true;
                }
                Err(e) => {
                    if !e.is_unreachable() {
                        any_answer = true;
                    }
                    self.props[i].fresh = false;
                    if e.is_link() {
                        // Logged once, with the cause, when the link is dropped.
                        link_error.get_or_insert(e);
                        continue;
                    }
                    let now = Instant::now();
                    if let Some(n) = self.props[i].log_read.allow(now) {
                        warn!(device = %spec.id(), property = %spec.properties[i].def.name, error = %e, suppressed = n, "read failed");
                    }
                }
            }
        }
        if any_answer {
            self.success();
        } else {
            self.failure(true);
        }
        if let Some(e) = link_error {
            self.drop_link(&e);
        }
    }

    /// Keeps a reading for the HTTP API.
    fn record(&self, i: usize, v: &Value) {
        if let Some(text) = v.canonical() {
            self.w
                .metrics
                .record_value(&self.w.spec.properties[i].def.name, text);
        }
    }

    /// The text to report for a value: the desired text when it means the same (so
    /// edgecore's string-compare delta clears,
    /// docs/kubeedge-contract.md#rule-how-edgecore-computes-the-delta), else the canonical form.
    fn text_for(&self, i: usize, value: &Value) -> Option<String> {
        let def = &self.w.spec.properties[i].def;
        if let Some(desired) = &self.props[i].desired
            && let Ok(d) = Value::parse(desired, def.data_type)
            && d.same_as(value, def.data_type)
        {
            return Some(desired.clone());
        }
        value.canonical()
    }

    fn flush_reports(&mut self) {
        let now = Instant::now();
        let spec = Arc::clone(&self.w.spec);
        if self.state_dirty
            && let Some(state) = self.state
        {
            let msg = Outbound::State {
                device: spec.id().clone(),
                state,
            };
            if self.w.out.try_send(msg).is_ok() {
                self.state_dirty = false;
            }
        }
        let mut twin = Vec::new();
        let mut twin_idx = Vec::new();
        let mut data = Vec::new();
        let mut data_idx = Vec::new();
        for i in 0..self.props.len() {
            if !self.props[i].fresh {
                continue; // failing or link down: the last value is not a reading
            }
            let Some(value) = self.props[i].last_value.clone() else {
                continue;
            };
            let def = &spec.properties[i].def;
            let Some(text) = self.text_for(i, &value) else {
                if let Some(n) = self.props[i].log_wire.allow(now) {
                    error!(device = %spec.id(), property = %def.name, value = ?value, suppressed = n, "value has no valid wire form (not finite); not reported");
                }
                continue;
            };
            let force = std::mem::take(&mut self.props[i].force_report);
            let heartbeat = def.report_cycle;
            let collect = def.collect_cycle;
            let due = |sent: &Option<(String, Instant)>| match sent {
                None => true,
                Some((t, at)) => {
                    force
                        || *t != text
                        || heartbeat
                            .is_some_and(|h| heartbeat_due(now.duration_since(*at), h, collect))
                }
            };
            let p = &self.props[i];
            let want_twin = def.twin && due(&p.sent_twin);
            let want_data = def.data && due(&p.sent_data);
            if !want_twin && !want_data {
                continue;
            }
            if want_twin {
                if let Err(e) = check_wire_value(&text, p.stored_type.as_deref()) {
                    if let Some(n) = self.props[i].log_wire.allow(now) {
                        error!(device = %spec.id(), property = %def.name, error = %e, suppressed = n, "value not reported");
                    }
                } else {
                    twin.push(Reported {
                        property: def.name.clone(),
                        value: text.clone(),
                        data_type: def.data_type,
                    });
                    twin_idx.push((i, text.clone()));
                }
            }
            if want_data {
                if let Err(e) = check_wire_value(&text, None) {
                    if let Some(n) = self.props[i].log_wire.allow(now) {
                        error!(device = %spec.id(), property = %def.name, error = %e, suppressed = n, "data value not published");
                    }
                } else {
                    data.push(Reported {
                        property: def.name.clone(),
                        value: text.clone(),
                        data_type: def.data_type,
                    });
                    data_idx.push((i, text));
                }
            }
        }
        if !twin.is_empty() {
            let msg = Outbound::Twin {
                device: spec.id().clone(),
                values: twin,
            };
            if self.w.out.try_send(msg).is_ok() {
                for (i, t) in twin_idx {
                    self.props[i].sent_twin = Some((t, now));
                }
            } else {
                debug!(device = %spec.id(), "publisher busy; report retried next tick");
            }
        }
        if !data.is_empty() {
            let topic = crate::twin::data_topic(spec.id(), spec.def.data_topic.as_deref());
            let msg = Outbound::Data {
                device: spec.id().clone(),
                topic,
                values: data,
            };
            if self.w.out.try_send(msg).is_ok() {
                for (i, t) in data_idx {
                    self.props[i].sent_data = Some((t, now));
                }
            }
        }
    }

    fn on_mail(&mut self) {
        let taken = self.w.mailbox.take();
        if taken.merged > 0 {
            debug!(device = %self.id(), replaced = taken.merged, "desired values replaced by newer ones before they were written");
        }
        if taken.overflowed > 0
            && let Some(n) = self.log_overflow.allow(Instant::now())
        {
            warn!(device = %self.id(), dropped = taken.overflowed, suppressed = n, "desired values arrive faster than the device takes them; the oldest were dropped");
        }
        for d in taken.desired {
            self.on_desired(d);
        }
        if taken.resync {
            let now = Instant::now();
            for p in &mut self.props {
                p.sent_twin = None;
                p.sent_data = None;
                if p.next_due.is_some() {
                    p.next_due = Some(now);
                }
            }
            if self.state.is_some() {
                self.state_dirty = true;
            }
        }
    }

    fn on_desired(&mut self, d: Desired) {
        let now = Instant::now();
        let spec = Arc::clone(&self.w.spec);
        let Some(i) = spec
            .properties
            .iter()
            .position(|p| p.def.name == d.property)
        else {
            if let Some(n) = self.log_unknown.allow(now) {
                warn!(device = %spec.id(), property = %excerpt(&d.property.0), suppressed = n, "desired value for a property this device does not have a visitor for; ignored");
            }
            return;
        };
        let def = &spec.properties[i].def;
        if d.stored_type.is_some() {
            self.props[i].stored_type.clone_from(&d.stored_type);
        }
        if def.access == AccessMode::ReadOnly {
            if let Some(n) = self.props[i].log_refused.allow(now) {
                warn!(device = %spec.id(), property = %def.name, value = %excerpt(&d.value), suppressed = n, "desired value for a ReadOnly property; ignored");
            }
            return;
        }
        let value = match Value::parse(&d.value, def.data_type) {
            Ok(v) => v,
            Err(e) => {
                if let Some(n) = self.props[i].log_refused.allow(now) {
                    error!(device = %spec.id(), property = %def.name, error = %e, suppressed = n, "desired value refused");
                }
                return;
            }
        };
        if let Some(x) = value.as_f64()
            && def.data_type.is_numeric()
            && !def.in_range(x)
        {
            if let Some(n) = self.props[i].log_refused.allow(now) {
                error!(device = %spec.id(), property = %def.name, value = %excerpt(&d.value), minimum = ?def.minimum, maximum = ?def.maximum, suppressed = n, "desired value outside the model's limits; refused");
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let sequence = self.w.opts.desired_merge == Merge::Sequence;
        let p = &mut self.props[i];
        p.desired = Some(d.value.clone());
        let last_wanted = if sequence {
            p.queued.back().or(p.pending.as_ref())
        } else {
            p.pending.as_ref()
        };
        if last_wanted.is_some_and(|pw| pw.value.same_as(&value, def.data_type)) {
            return; // the same write is already pending: idempotent
        }
        if p.pending.is_none()
            && p.fresh
            && p.last_value
                .as_ref()
                .is_some_and(|v| v.same_as(&value, def.data_type))
        {
            // Already there; make sure the reported text matches the desired one.
            if p.sent_twin.as_ref().is_some_and(|(t, _)| *t != d.value) {
                p.force_report = true;
            }
            return;
        }
        debug!(device = %spec.id(), property = %def.name, value = %excerpt(&d.value), "desired value queued");
        let next = Pending {
            value,
            text: d.value,
            attempts: 0,
            next_try: now,
            seq,
        };
        if sequence && p.pending.is_some() {
            if p.queued.len() >= QUEUED_MAX {
                p.queued.pop_front();
                if let Some(n) = p.log_refused.allow(now) {
                    warn!(device = %spec.id(), property = %def.name, suppressed = n, "more desired values waiting than the device takes; the oldest was dropped");
                }
            }
            p.queued.push_back(next);
        } else {
            p.pending = Some(next);
        }
    }

    fn on_push(&mut self, pushed: Option<(PropertyName, Result<Value, DriverError>)>) {
        let Some((name, result)) = pushed else {
            // The device's push stream ended: treat as a lost link.
            self.drop_link(&DriverError::Link(
                "the device's notification stream ended".into(),
            ));
            return;
        };
        let Some(i) = self
            .w
            .spec
            .properties
            .iter()
            .position(|p| p.def.name == name)
        else {
            return;
        };
        match result {
            Ok(v) => {
                self.success();
                self.record(i, &v);
                // Reported at the property's next tick: throttled to its cycle.
                if self.props[i].next_due.is_none() {
                    if !self.props[i].fresh {
                        self.props[i].force_report = true;
                    }
                    self.props[i].last_value = Some(v);
                    self.props[i].fresh = true;
                } else {
                    self.props[i].pushed = Some(v);
                }
            }
            Err(e) => {
                if e.is_link() {
                    self.drop_link(&e);
                }
            }
        }
    }
}

/// Whether an unchanged value is due for its heartbeat report. Reports happen at read
/// ticks, and the previous report was stamped when its read finished, so the elapsed time
/// at the next tick can fall just short of the heartbeat: half a collect cycle of slack
/// keeps "report every collect" from silently becoming "every other collect".
fn heartbeat_due(elapsed: Duration, heartbeat: Duration, collect: Option<Duration>) -> bool {
    let slack = collect.unwrap_or(heartbeat).min(heartbeat) / 2;
    elapsed + slack >= heartbeat
}

async fn next_push<T: Device>(
    link: &mut Option<T>,
) -> Option<(PropertyName, Result<Value, DriverError>)> {
    match link {
        Some(l) => l.next_push().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{ConfigError, DeviceSpec};
    use crate::model::DeviceState;
    use crate::profile::{PropertyDef, ProtocolDef, ResolveOptions};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use tokio::sync::watch;

    /// A driver whose link is lost on request (a disconnect event while idle, pushed
    /// through `next_push`) and whose connects can be refused.
    #[derive(Clone)]
    struct Steered {
        refuse: Arc<AtomicBool>,
        connects: Arc<AtomicU32>,
        lost: watch::Sender<bool>,
    }

    struct SteeredDevice {
        lost: watch::Receiver<bool>,
    }

    impl Driver for Steered {
        type Protocol = ();
        type Visitor = ();
        type Device = SteeredDevice;
        fn name(&self) -> &'static str {
            "steered"
        }
        fn handles(&self, p: &ProtocolDef) -> bool {
            p.kind == "steered"
        }
        fn parse_protocol(&self, _: &ProtocolDef) -> Result<(), ConfigError> {
            Ok(())
        }
        fn parse_visitor(&self, _: &PropertyDef, _: &()) -> Result<(), ConfigError> {
            Ok(())
        }
        async fn connect(&self, _: &DeviceSpec<Self>) -> Result<SteeredDevice, DriverError> {
            self.connects.fetch_add(1, Ordering::SeqCst);
            if self.refuse.load(Ordering::SeqCst) {
                return Err(DriverError::Link("connect refused".into()));
            }
            self.lost.send_replace(false);
            Ok(SteeredDevice {
                lost: self.lost.subscribe(),
            })
        }
    }

    impl Device for SteeredDevice {
        type Visitor = ();
        async fn read(&mut self, _: &PropertySpec<()>) -> Result<Value, DriverError> {
            Ok(Value::Int(7))
        }
        async fn write(&mut self, _: &PropertySpec<()>, _: &Value) -> Result<(), DriverError> {
            Ok(())
        }
        async fn next_push(&mut self) -> Option<(PropertyName, Result<Value, DriverError>)> {
            let _ = self.lost.wait_for(|lost| *lost).await;
            None
        }
    }

    /// What the worker sent, with the (paused) time it arrived.
    async fn next_msg(rx: &mut mpsc::Receiver<Outbound>) -> (Instant, Outbound) {
        let msg = timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("a message within 120 s")
            .expect("the worker runs");
        (Instant::now(), msg)
    }

    async fn next_state(
        rx: &mut mpsc::Receiver<Outbound>,
        twins: &mut u32,
    ) -> (Instant, DeviceState) {
        loop {
            match next_msg(rx).await {
                (at, Outbound::State { state, .. }) => return (at, state),
                (_, Outbound::Twin { .. }) => *twins += 1,
                _ => {}
            }
        }
    }

    /// A link loss the driver pushes while the device is idle: offline at once, nothing
    /// reported while down, reconnects at most about `relink_interval` apart, so the
    /// device is online with a fresh report soon after it comes back.
    #[tokio::test(start_paused = true)]
    async fn pushed_link_loss_is_offline_at_once_and_relinks_promptly() {
        let (lost, _) = watch::channel(false);
        let driver = Steered {
            refuse: Arc::default(),
            connects: Arc::default(),
            lost,
        };
        let profile = serde_json::json!({
            "deviceInstances": [{"id": "d", "name": "d", "protocol": "p", "model": "m",
                "twins": [{"propertyName": "x"}],
                "propertyVisitors": [{"name": "x", "propertyName": "x", "modelName": "m",
                    "protocol": "steered", "collectCycle": 200_000_000i64,
                    "reportCycle": 500_000_000i64, "visitorConfig": {}}]}],
            "deviceModels": [{"name": "m", "properties": [{"name": "x", "dataType": "int",
                "accessMode": "ReadOnly"}]}],
            "protocols": [{"name": "p", "protocol": "steered", "protocolConfig": {}}]
        })
        .to_string();
        let mut loaded = crate::load(&driver, &profile, &ResolveOptions::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let spec = Arc::new(loaded.devices.remove(0));
        let (out, mut rx) = mpsc::channel(64);
        let defs: Vec<&PropertyDef> = spec.properties.iter().map(|p| &*p.def).collect();
        let opts = RuntimeOptions::default();
        let worker = Worker {
            metrics: crate::http::Telemetry::default().device(spec.id(), &defs),
            driver: Arc::new(driver.clone()),
            spec: Arc::clone(&spec),
            out,
            mailbox: Arc::new(Mailbox::new(Merge::Latest)),
            cancel: CancellationToken::new(),
            opts: Arc::new(opts.clone()),
        };
        let cancel = worker.cancel.clone();
        let task = tokio::spawn(worker.run());
        let mut twins = 0;
        assert_eq!(next_state(&mut rx, &mut twins).await.1, DeviceState::Online);

        // Lost while idle, and away for 10 s (connects refused).
        driver.refuse.store(true, Ordering::SeqCst);
        let connects = driver.connects.load(Ordering::SeqCst);
        let lost_at = Instant::now();
        driver.lost.send_replace(true);
        let (at, state) = next_state(&mut rx, &mut twins).await;
        assert_eq!(state, DeviceState::Offline);
        assert!(
            at - lost_at < Duration::from_millis(50),
            "{:?}",
            at - lost_at
        );
        twins = 0;
        tokio::time::sleep_until(lost_at + Duration::from_secs(10)).await;
        let attempts = driver.connects.load(Ordering::SeqCst) - connects;
        // 200 ms, then at most 1.25 s apart: at least 8 attempts in 10 s (the plain
        // backoff makes 5).
        assert!(attempts >= 8, "{attempts} reconnect attempts in 10 s");

        // Back: online within the relink interval (plus jitter), a report follows at once.
        driver.refuse.store(false, Ordering::SeqCst);
        let back = Instant::now();
        let (at, state) = next_state(&mut rx, &mut twins).await;
        assert_eq!(state, DeviceState::Online);
        assert_eq!(twins, 0, "nothing reported while the link was down");
        let limit = opts.relink_interval.mul_f64(1.25) + Duration::from_millis(50);
        assert!(
            at - back <= limit,
            "online {:?} after coming back",
            at - back
        );
        let (at, msg) = next_msg(&mut rx).await;
        assert!(matches!(msg, Outbound::Twin { .. }), "{msg:?}");
        assert!(
            at - back <= limit,
            "fresh report {:?} after coming back",
            at - back
        );

        // A device that stays away longer than the window backs off as before.
        driver.refuse.store(true, Ordering::SeqCst);
        driver.lost.send_replace(true);
        let lost_at = Instant::now();
        assert_eq!(
            next_state(&mut rx, &mut twins).await.1,
            DeviceState::Offline
        );
        tokio::time::sleep_until(lost_at + opts.relink_window).await;
        let before = driver.connects.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let late = driver.connects.load(Ordering::SeqCst) - before;
        assert!(
            late <= 4,
            "{late} reconnect attempts in a minute after the window"
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn heartbeat_every_collect_survives_tick_jitter() {
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // reportCycle = collectCycle: the next tick, a hair under a cycle later, reports.
        assert!(heartbeat_due(ms(999), s, Some(s)));
        assert!(!heartbeat_due(ms(400), s, Some(s)));
        // A 30 s heartbeat with 1 s reads: due at the tick around 30 s, not before.
        assert!(!heartbeat_due(ms(29_000), Duration::from_secs(30), Some(s)));
        assert!(heartbeat_due(ms(29_600), Duration::from_secs(30), Some(s)));
        // Never-polled (push-only) properties use the heartbeat itself.
        assert!(heartbeat_due(ms(5_000), Duration::from_secs(10), None));
        assert!(!heartbeat_due(ms(4_000), Duration::from_secs(10), None));
    }
}
