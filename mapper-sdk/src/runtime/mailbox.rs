//! A per-device mailbox: desired values and resync requests for one worker.
//!
//! Senders never wait and never spawn: a desired value is merged into the mailbox under a
//! short lock and the worker is woken through a [`Notify`]. Per property the latest value
//! replaces an older one that the worker has not taken yet (so a burst of deltas collapses
//! to the writes needed), and values keep their arrival order (a property that changes
//! again moves to the back). With [`Merge::Sequence`] every value is kept, in order, so a
//! device that must see each step gets them all.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::twin::Desired;

/// How desired values for one property that the worker has not taken yet are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Merge {
    /// The latest value replaces older ones (the default).
    #[default]
    Latest,
    /// Every value is kept and written in arrival order.
    Sequence,
}

/// Entries one mailbox holds at most; beyond it the oldest are dropped (and counted).
/// With [`Merge::Latest`] this is only reached by that many distinct property names.
pub(super) const CAPACITY: usize = 16_384;

#[derive(Debug, Default)]
struct Inbox {
    desired: VecDeque<Desired>,
    resync: bool,
    /// Values dropped because the mailbox was full, since the last take.
    overflowed: u64,
    /// Values replaced by a newer one, since the last take.
    merged: u64,
}

/// What a worker takes out of its mailbox at once.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Taken {
    /// Desired values in arrival order.
    pub desired: Vec<Desired>,
    /// Whether a resync was asked for.
    pub resync: bool,
    /// Values dropped because the mailbox was full.
    pub overflowed: u64,
    /// Values replaced by a newer one for the same property.
    pub merged: u64,
}

/// The mailbox of one device worker.
#[derive(Debug)]
pub(super) struct Mailbox {
    merge: Merge,
    inbox: Mutex<Inbox>,
    notify: Notify,
}

impl Mailbox {
    pub(super) fn new(merge: Merge) -> Self {
        Self {
            merge,
            inbox: Mutex::new(Inbox::default()),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // The lock guards plain data and is never held across a panic point that could
        // leave it inconsistent: a poisoned lock is still usable.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds desired values (in order) and wakes the worker.
    pub(super) fn push_desired(&self, values: Vec<Desired>) {
        if values.is_empty() {
            return;
        }
        {
            let mut inbox = self.lock();
            for d in values {
                if self.merge == Merge::Latest
                    && let Some(pos) = inbox.desired.iter().position(|o| o.property == d.property)
                {
                    inbox.desired.remove(pos);
                    inbox.merged += 1;
                }
                if inbox.desired.len() >= CAPACITY {
                    inbox.desired.pop_front();
                    inbox.overflowed += 1;
                }
                inbox.desired.push_back(d);
            }
        }
        self.notify.notify_one();
    }

    /// Asks the worker to report everything again.
    pub(super) fn push_resync(&self) {
        self.lock().resync = true;
        self.notify.notify_one();
    }

    /// Takes everything queued.
    pub(super) fn take(&self) -> Taken {
        let mut inbox = self.lock();
        let inbox = std::mem::take(&mut *inbox);
        Taken {
            desired: inbox.desired.into(),
            resync: inbox.resync,
            overflowed: inbox.overflowed,
            merged: inbox.merged,
        }
    }

    /// Completes when something was pushed since the last wake (cancel-safe).
    pub(super) async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::PropertyName;

    fn d(p: &str, v: &str) -> Desired {
        Desired {
            property: PropertyName(p.into()),
            value: v.into(),
            stored_type: None,
        }
    }

    fn values(t: &Taken) -> Vec<(String, String)> {
        t.desired
            .iter()
            .map(|d| (d.property.0.clone(), d.value.clone()))
            .collect()
    }

    #[test]
    fn latest_wins_and_arrival_order_is_kept() {
        let m = Mailbox::new(Merge::Latest);
        m.push_desired(vec![d("a", "1"), d("b", "1")]);
        m.push_desired(vec![d("a", "2")]);
        for i in 3..=10_000 {
            m.push_desired(vec![d("a", &i.to_string())]);
        }
        let t = m.take();
        assert_eq!(
            values(&t),
            vec![("b".into(), "1".into()), ("a".into(), "10000".into())]
        );
        assert_eq!(t.merged, 9_999);
        assert!(!t.resync);
        assert_eq!(m.take(), Taken::default());
    }

    #[test]
    fn sequence_keeps_every_value_and_is_bounded() {
        let m = Mailbox::new(Merge::Sequence);
        m.push_desired(vec![d("a", "1"), d("a", "2"), d("a", "3")]);
        m.push_resync();
        let t = m.take();
        assert_eq!(values(&t).len(), 3);
        assert_eq!(t.desired[2].value, "3");
        assert!(t.resync);
        for i in 0..CAPACITY + 5 {
            m.push_desired(vec![d("a", &i.to_string())]);
        }
        let t = m.take();
        assert_eq!(t.desired.len(), CAPACITY);
        assert_eq!(t.overflowed, 5);
        assert_eq!(t.desired[0].value, "5", "the oldest values are dropped");
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let m = Mailbox::new(Merge::Latest);
        m.push_desired(vec![d("a", "1")]);
        tokio::time::timeout(std::time::Duration::from_secs(1), m.changed())
            .await
            .unwrap();
        assert_eq!(m.take().desired.len(), 1);
    }
}
