//! The report queue under the DMI budget. Pure. Per device, the latest value of each
//! property wins; devices are served in the order they became due (a device that was
//! just sent goes to the back), so none starves; an unchanged value is re-sent only as a
//! heartbeat, when the last report of that device is older than the heartbeat interval.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{DeviceId, DeviceState};

/// One call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// `ReportDeviceStatus` with these twins (property -> value).
    Twins(DeviceId, BTreeMap<String, String>),
    /// `ReportDeviceStates`.
    State(DeviceId, DeviceState),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Twins,
    State,
}

#[derive(Debug, Default)]
struct Sent {
    values: BTreeMap<String, String>,
    twins_at: Option<Instant>,
    state: Option<DeviceState>,
    state_at: Option<Instant>,
}

/// Pending reports, by device.
#[derive(Debug)]
pub struct ReportQueue {
    heartbeat: Duration,
    twins: HashMap<DeviceId, BTreeMap<String, String>>,
    states: HashMap<DeviceId, DeviceState>,
    order: VecDeque<(DeviceId, Kind)>,
    sent: HashMap<DeviceId, Sent>,
}

impl ReportQueue {
    /// A queue that re-sends unchanged values every `heartbeat`.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            twins: HashMap::new(),
            states: HashMap::new(),
            order: VecDeque::new(),
            sent: HashMap::new(),
        }
    }

    fn enqueue(&mut self, id: &DeviceId, kind: Kind) {
        if !self.order.iter().any(|(d, k)| d == id && *k == kind) {
            self.order.push_back((id.clone(), kind));
        }
    }

    /// Offers twin values read now. Changed values are queued; unchanged ones only when
    /// the device's heartbeat is due.
    pub fn offer_twins(
        &mut self,
        id: &DeviceId,
        values: impl IntoIterator<Item = (String, String)>,
        now: Instant,
    ) {
        let sent = self.sent.get(id);
        let heartbeat_due = sent
            .and_then(|s| s.twins_at)
            .is_none_or(|t| now.saturating_duration_since(t) >= self.heartbeat);
        let mut add = BTreeMap::new();
        for (k, v) in values {
            let same = sent.and_then(|s| s.values.get(&k)) == Some(&v);
            if !same || heartbeat_due {
                add.insert(k, v);
            }
        }
        if add.is_empty() {
            return;
        }
        self.twins.entry(id.clone()).or_default().extend(add);
        self.enqueue(id, Kind::Twins);
    }

    /// Offers the device's state: queued when it changed or its heartbeat (`cycle`, if
    /// any) is due.
    pub fn offer_state(
        &mut self,
        id: &DeviceId,
        state: DeviceState,
        cycle: Option<Duration>,
        now: Instant,
    ) {
        let sent = self.sent.get(id);
        let changed = sent.and_then(|s| s.state) != Some(state);
        let due = cycle.is_some_and(|c| {
            sent.and_then(|s| s.state_at)
                .is_none_or(|t| now.saturating_duration_since(t) >= c)
        });
        if changed || due {
            self.states.insert(id.clone(), state);
            self.enqueue(id, Kind::State);
        }
    }

    /// The next call to make, if any.
    pub fn pop(&mut self) -> Option<Due> {
        while let Some((id, kind)) = self.order.pop_front() {
            match kind {
                Kind::Twins => {
                    if let Some(t) = self.twins.remove(&id).filter(|t| !t.is_empty()) {
                        return Some(Due::Twins(id, t));
                    }
                }
                Kind::State => {
                    if let Some(s) = self.states.remove(&id) {
                        return Some(Due::State(id, s));
                    }
                }
            }
        }
        None
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many calls wait.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Records a call that edgecore accepted.
    pub fn sent(&mut self, due: &Due, now: Instant) {
        match due {
            Due::Twins(id, values) => {
                let s = self.sent.entry(id.clone()).or_default();
                s.values
                    .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
                s.twins_at = Some(now);
            }
            Due::State(id, state) => {
                let s = self.sent.entry(id.clone()).or_default();
                s.state = Some(*state);
                s.state_at = Some(now);
            }
        }
    }

    /// Puts back a call that failed, at the front; values that arrived meanwhile win.
    pub fn retry(&mut self, due: Due) {
        match due {
            Due::Twins(id, values) => {
                let slot = self.twins.entry(id.clone()).or_default();
                for (k, v) in values {
                    slot.entry(k).or_insert(v);
                }
                self.order.retain(|(d, k)| !(d == &id && *k == Kind::Twins));
                self.order.push_front((id, Kind::Twins));
            }
            Due::State(id, state) => {
                self.states.entry(id.clone()).or_insert(state);
                self.order.retain(|(d, k)| !(d == &id && *k == Kind::State));
                self.order.push_front((id, Kind::State));
            }
        }
    }

    /// Forgets a device (it was removed): nothing more goes out for it.
    pub fn forget(&mut self, id: &DeviceId) {
        self.twins.remove(id);
        self.states.remove(id);
        self.sent.remove(id);
        self.order.retain(|(d, _)| d != id);
    }

    /// After edgecore restarted: everything last sent goes out again.
    pub fn resend_all(&mut self) {
        let sent = std::mem::take(&mut self.sent);
        for (id, s) in sent {
            if !s.values.is_empty() {
                let slot = self.twins.entry(id.clone()).or_default();
                for (k, v) in s.values {
                    slot.entry(k).or_insert(v);
                }
                self.enqueue(&id, Kind::Twins);
            }
            if let Some(state) = s.state {
                self.states.entry(id.clone()).or_insert(state);
                self.enqueue(&id, Kind::State);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId(s.into())
    }

    fn kv(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.into(), v.into())]
    }

    #[test]
    fn latest_value_wins_and_no_device_starves() {
        let t = Instant::now();
        let mut q = ReportQueue::new(Duration::from_secs(60));
        for i in 0..5 {
            q.offer_twins(&id("a"), kv("t", &i.to_string()), t);
        }
        q.offer_twins(&id("b"), kv("t", "1"), t);
        assert_eq!(q.len(), 2);
        let first = q.pop().unwrap();
        assert_eq!(
            first,
            Due::Twins(id("a"), BTreeMap::from([("t".into(), "4".into())]))
        );
        q.sent(&first, t);
        // a changes again: it goes behind b.
        q.offer_twins(&id("a"), kv("t", "5"), t);
        assert!(matches!(q.pop(), Some(Due::Twins(d, _)) if d == id("b")));
        assert!(matches!(q.pop(), Some(Due::Twins(d, _)) if d == id("a")));
        assert!(q.pop().is_none());
    }

    #[test]
    fn unchanged_values_wait_for_the_heartbeat() {
        let t = Instant::now();
        let mut q = ReportQueue::new(Duration::from_secs(30));
        q.offer_twins(&id("a"), kv("t", "1"), t);
        let d = q.pop().unwrap();
        q.sent(&d, t);
        q.offer_twins(&id("a"), kv("t", "1"), t + Duration::from_secs(10));
        assert!(q.is_empty());
        q.offer_twins(&id("a"), kv("t", "1"), t + Duration::from_secs(31));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn states_on_change_and_on_their_cycle() {
        let t = Instant::now();
        let mut q = ReportQueue::new(Duration::from_secs(30));
        q.offer_state(&id("a"), DeviceState::Online, None, t);
        let d = q.pop().unwrap();
        q.sent(&d, t);
        q.offer_state(
            &id("a"),
            DeviceState::Online,
            None,
            t + Duration::from_secs(100),
        );
        assert!(q.is_empty());
        q.offer_state(
            &id("a"),
            DeviceState::Online,
            Some(Duration::from_secs(50)),
            t + Duration::from_secs(100),
        );
        assert_eq!(q.pop(), Some(Due::State(id("a"), DeviceState::Online)));
        q.offer_state(&id("a"), DeviceState::Offline, None, t);
        assert_eq!(q.pop(), Some(Due::State(id("a"), DeviceState::Offline)));
    }

    #[test]
    fn failed_calls_come_back_first_with_newer_values_winning() {
        let t = Instant::now();
        let mut q = ReportQueue::new(Duration::from_secs(30));
        q.offer_twins(
            &id("a"),
            vec![("t".into(), "1".into()), ("h".into(), "5".into())],
            t,
        );
        q.offer_twins(&id("b"), kv("t", "1"), t);
        let d = q.pop().unwrap();
        q.offer_twins(&id("a"), kv("t", "2"), t);
        q.retry(d);
        assert_eq!(
            q.pop(),
            Some(Due::Twins(
                id("a"),
                BTreeMap::from([("h".into(), "5".into()), ("t".into(), "2".into())])
            ))
        );
        q.forget(&id("b"));
        assert!(q.pop().is_none());
    }

    #[test]
    fn resend_all_after_an_edgecore_restart() {
        let t = Instant::now();
        let mut q = ReportQueue::new(Duration::from_secs(30));
        q.offer_twins(&id("a"), kv("t", "1"), t);
        q.offer_state(&id("a"), DeviceState::Online, None, t);
        while let Some(d) = q.pop() {
            q.sent(&d, t);
        }
        q.resend_all();
        assert_eq!(q.len(), 2);
    }
}
