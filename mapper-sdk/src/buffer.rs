//! Store and forward: the reports kept while the broker is unreachable, pure logic.
//!
//! - twin values are coalesced per (device, property) to the latest value, which keeps
//!   the timestamp of the report it came in;
//! - data samples are all kept, in order;
//! - the latest state per device is kept;
//! - messages the MQTT client had taken but not delivered when the connection dropped
//!   are kept as they were ([`Item::Raw`]), ahead of everything else.
//!
//! Bounded by a message count and an age; the oldest are dropped first, and counted.
//! The MQTT adapter ([`crate::mqtt`]) does the I/O: it fills the buffer while the broker
//! is away and drains it, oldest first, once it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{DeviceId, DeviceState, PropertyName};
use crate::twin::Reported;

/// Default of [`BufferLimits::max_messages`].
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;

/// Default of [`BufferLimits::max_age`]: one hour.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// How much the buffer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// The most messages kept (a coalesced twin report counts as one).
    pub max_messages: usize,
    /// Messages older than this are dropped.
    pub max_age: Duration,
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self {
            max_messages: DEFAULT_MAX_MESSAGES,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// One kept report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Twin values (one `twin/update`).
    Twin {
        /// The device.
        device: DeviceId,
        /// The values still current (newer reports of a property remove it here).
        values: Vec<Reported>,
    },
    /// Data samples (one data message).
    Data {
        /// The device.
        device: DeviceId,
        /// The resolved topic.
        topic: String,
        /// The values.
        values: Vec<Reported>,
    },
    /// A device state.
    State {
        /// The device.
        device: DeviceId,
        /// The state.
        state: DeviceState,
    },
    /// A message already encoded: taken by the MQTT client, not delivered.
    Raw {
        /// The topic.
        topic: String,
        /// The QoS level (0, 1, 2).
        qos: u8,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// A kept report and when it was made (milliseconds since the Unix epoch), which is the
/// timestamp it is published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the report was made.
    pub at: i64,
    /// The report.
    pub item: Item,
}

/// Counts of the buffer, shared with whoever exports metrics.
#[derive(Debug, Default)]
pub struct BufferStats {
    buffered: AtomicU64,
    dropped: AtomicU64,
}

impl BufferStats {
    /// Messages waiting in the buffer now.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Messages dropped (over the count limit or too old) since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// How often, at most, the whole buffer is scanned for messages past the age limit.
const EXPIRE_EVERY_MS: i64 = 1000;

/// The bounded store of reports. Keys are sequence numbers: increasing at the back,
/// decreasing at the front.
#[derive(Debug)]
pub struct Buffer {
    limits: BufferLimits,
    entries: BTreeMap<i64, Entry>,
    next_back: i64,
    next_front: i64,
    twins: HashMap<(DeviceId, PropertyName), i64>,
    states: HashMap<DeviceId, i64>,
    dropped: u64,
    last_expire: i64,
    changes: u64,
    stats: Arc<BufferStats>,
}

impl Buffer {
    /// An empty buffer.
    pub fn new(limits: BufferLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            next_back: 0,
            next_front: -1,
            twins: HashMap::new(),
            states: HashMap::new(),
            dropped: 0,
            last_expire: i64::MIN,
            changes: 0,
            stats: Arc::default(),
        }
    }

    /// The shared counts.
    pub fn stats(&self) -> Arc<BufferStats> {
        Arc::clone(&self.stats)
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Grows with every change of the content (to tell whether a saved copy is current).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The kept reports, oldest first (for persistence and tests).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Keeps a report made at `entry.at`, `now` being the current time (ms).
    pub fn push(&mut self, now: i64, entry: Entry) {
        let seq = self.next_back;
        self.next_back += 1;
        self.insert(seq, entry, true);
        self.enforce(now);
    }

    /// Keeps reports ahead of everything kept, in the given order (messages the client
    /// had taken before the connection dropped). They are not coalesced.
    pub fn push_front(&mut self, now: i64, entries: Vec<Entry>) {
        for entry in entries.into_iter().rev() {
            let seq = self.next_front;
            self.next_front -= 1;
            self.insert(seq, entry, false);
        }
        self.enforce(now);
    }

    /// Puts back the entry [`Buffer::pop`] returned (its publish did not go through).
    /// It is not coalesced with later reports: it is next to go.
    pub fn unpop(&mut self, entry: Entry) {
        let seq = self.next_front;
        self.next_front -= 1;
        self.insert(seq, entry, false);
        self.publish_stats();
    }

    /// Ends coalescing with what is kept: later reports are kept after it, whatever
    /// they replace. Called on reconnect, so that every report made while the broker was
    /// away is published, with its timestamp, before newer ones.
    pub fn seal(&mut self) {
        self.twins.clear();
        self.states.clear();
    }

    /// Takes the oldest report that is not past the age limit.
    pub fn pop(&mut self, now: i64) -> Option<Entry> {
        let cutoff = self.cutoff(now);
        while let Some((seq, entry)) = self.entries.pop_first() {
            self.changes += 1;
            self.unindex(seq, &entry);
            if entry.at < cutoff {
                self.dropped += 1;
                continue;
            }
            self.publish_stats();
            return Some(entry);
        }
        self.publish_stats();
        None
    }

    fn cutoff(&self, now: i64) -> i64 {
        let age = i64::try_from(self.limits.max_age.as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(age)
    }

    fn insert(&mut self, seq: i64, mut entry: Entry, coalesce: bool) {
        self.changes += 1;
        match &mut entry.item {
            Item::Twin { device, values } => {
                if coalesce {
                    for r in values.iter() {
                        let key = (device.clone(), r.property.clone());
                        if let Some(old) = self.twins.insert(key, seq) {
                            self.remove_property(old, &r.property);
                        }
                    }
                }
                if values.is_empty() {
                    return;
                }
            }
            Item::State { device, .. } => {
                if coalesce && let Some(old) = self.states.insert(device.clone(), seq) {
                    self.entries.remove(&old);
                }
            }
            Item::Data { .. } | Item::Raw { .. } => {}
        }
        self.entries.insert(seq, entry);
    }

    /// Removes a property from the twin report at `seq` (and the report once empty).
    fn remove_property(&mut self, seq: i64, property: &PropertyName) {
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        if let Item::Twin { values, .. } = &mut entry.item {
            values.retain(|r| &r.property != property);
            if values.is_empty() {
                self.entries.remove(&seq);
            }
        }
    }

    /// Forgets the index entries that point at `seq`.
    fn unindex(&mut self, seq: i64, entry: &Entry) {
        match &entry.item {
            Item::Twin { device, values } => {
                for r in values {
                    let key = (device.clone(), r.property.clone());
                    if self.twins.get(&key) == Some(&seq) {
                        self.twins.remove(&key);
                    }
                }
            }
            Item::State { device, .. } => {
                if self.states.get(device) == Some(&seq) {
                    self.states.remove(device);
                }
            }
            Item::Data { .. } | Item::Raw { .. } => {}
        }
    }

    /// Drops the oldest over the count limit, and (at most once a second) everything
    /// past the age limit.
    fn enforce(&mut self, now: i64) {
        if now.saturating_sub(self.last_expire) >= EXPIRE_EVERY_MS {
            self.last_expire = now;
            let cutoff = self.cutoff(now);
            let old: Vec<i64> = self
                .entries
                .iter()
                .filter(|(_, e)| e.at < cutoff)
                .map(|(s, _)| *s)
                .collect();
            for seq in old {
                self.drop_seq(seq);
            }
        }
        while self.entries.len() > self.limits.max_messages {
            let Some(seq) = self.entries.keys().next().copied() else {
                break;
            };
            self.drop_seq(seq);
        }
        self.publish_stats();
    }

    fn drop_seq(&mut self, seq: i64) {
        if let Some(entry) = self.entries.remove(&seq) {
            self.changes += 1;
            self.unindex(seq, &entry);
            self.dropped += 1;
        }
    }

    fn publish_stats(&self) {
        self.stats
            .buffered
            .store(self.entries.len() as u64, Ordering::Relaxed);
        self.stats.dropped.store(self.dropped, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::DataType;

    fn dev(s: &str) -> DeviceId {
        DeviceId(s.into())
    }

    fn rep(p: &str, v: &str) -> Reported {
        Reported {
            property: PropertyName(p.into()),
            value: v.into(),
            data_type: DataType::Int,
        }
    }

    fn twin(at: i64, d: &str, vals: &[(&str, &str)]) -> Entry {
        Entry {
            at,
            item: Item::Twin {
                device: dev(d),
                values: vals.iter().map(|(p, v)| rep(p, v)).collect(),
            },
        }
    }

    fn data(at: i64, d: &str, v: &str) -> Entry {
        Entry {
            at,
            item: Item::Data {
                device: dev(d),
                topic: format!("t/{d}"),
                values: vec![rep("h", v)],
            },
        }
    }

    fn state(at: i64, d: &str, s: DeviceState) -> Entry {
        Entry {
            at,
            item: Item::State {
                device: dev(d),
                state: s,
            },
        }
    }

    fn limits(max: usize, age_s: u64) -> BufferLimits {
        BufferLimits {
            max_messages: max,
            max_age: Duration::from_secs(age_s),
        }
    }

    fn drain(b: &mut Buffer, now: i64) -> Vec<Entry> {
        std::iter::from_fn(|| b.pop(now)).collect()
    }

    #[test]
    fn twins_coalesce_per_property_keeping_the_timestamp_of_the_latest() {
        let mut b = Buffer::new(BufferLimits::default());
        b.push(100, twin(100, "a", &[("t", "1"), ("s", "5")]));
        b.push(200, twin(200, "b", &[("t", "9")]));
        b.push(300, twin(300, "a", &[("t", "2")]));
        b.push(400, twin(400, "a", &[("t", "3")]));
        assert_eq!(b.len(), 3);
        let got = drain(&mut b, 500);
        assert_eq!(
            got,
            vec![
                twin(100, "a", &[("s", "5")]),
                twin(200, "b", &[("t", "9")]),
                twin(400, "a", &[("t", "3")]),
            ]
        );
        assert_eq!(b.dropped(), 0, "coalescing is not dropping");
    }

    #[test]
    fn data_samples_are_all_kept_in_order_and_states_coalesce() {
        let mut b = Buffer::new(BufferLimits::default());
        b.push(1, state(1, "a", DeviceState::Online));
        b.push(2, data(2, "a", "1"));
        b.push(3, data(3, "a", "2"));
        b.push(4, state(4, "a", DeviceState::Offline));
        b.push(5, data(5, "a", "3"));
        b.push(6, state(6, "b", DeviceState::Online));
        let got = drain(&mut b, 10);
        assert_eq!(
            got,
            vec![
                data(2, "a", "1"),
                data(3, "a", "2"),
                state(4, "a", DeviceState::Offline),
                data(5, "a", "3"),
                state(6, "b", DeviceState::Online),
            ]
        );
    }

    #[test]
    fn over_the_count_the_oldest_are_dropped_and_counted() {
        let mut b = Buffer::new(limits(3, 3600));
        for i in 0..5 {
            b.push(i, data(i, "a", &i.to_string()));
        }
        assert_eq!((b.len(), b.dropped()), (3, 2));
        let stats = b.stats();
        assert_eq!((stats.buffered(), stats.dropped()), (3, 2));
        let got = drain(&mut b, 10);
        assert_eq!(
            got,
            vec![data(2, "a", "2"), data(3, "a", "3"), data(4, "a", "4")]
        );
        assert_eq!(stats.buffered(), 0);
        // A dropped twin no longer takes part in coalescing.
        let mut b = Buffer::new(limits(1, 3600));
        b.push(1, twin(1, "a", &[("t", "1")]));
        b.push(2, data(2, "a", "x"));
        b.push(3, twin(3, "a", &[("t", "2")]));
        assert_eq!(drain(&mut b, 4), vec![twin(3, "a", &[("t", "2")])]);
        assert_eq!(b.dropped(), 2);
    }

    #[test]
    fn messages_past_the_age_limit_are_dropped() {
        let mut b = Buffer::new(limits(100, 10));
        b.push(0, data(0, "a", "old"));
        b.push(5_000, data(5_000, "a", "mid"));
        b.push(9_000, twin(9_000, "a", &[("t", "1")]));
        assert_eq!(b.len(), 3);
        // At 12 s the first is past 10 s: dropped on the next push...
        b.push(12_000, data(12_000, "a", "new"));
        assert_eq!((b.len(), b.dropped()), (3, 1));
        // ...and on pop, without waiting for a scan.
        let got = drain(&mut b, 16_000);
        assert_eq!(
            got,
            vec![twin(9_000, "a", &[("t", "1")]), data(12_000, "a", "new")]
        );
        assert_eq!(b.dropped(), 2);
    }

    #[test]
    fn raw_messages_go_first_and_seal_ends_coalescing() {
        let mut b = Buffer::new(BufferLimits::default());
        b.push(10, twin(10, "a", &[("t", "1")]));
        let raw = |n: u8| Entry {
            at: 20,
            item: Item::Raw {
                topic: "r".into(),
                qos: 1,
                payload: vec![n],
            },
        };
        b.push_front(20, vec![raw(1), raw(2)]);
        b.seal();
        b.push(30, twin(30, "a", &[("t", "2")]));
        let first = b.pop(40).unwrap();
        assert_eq!(first, raw(1));
        // A publish that did not go through is put back in front.
        b.unpop(first);
        let got = drain(&mut b, 40);
        assert_eq!(
            got,
            vec![
                raw(1),
                raw(2),
                twin(10, "a", &[("t", "1")]),
                twin(30, "a", &[("t", "2")])
            ]
        );
    }
}
