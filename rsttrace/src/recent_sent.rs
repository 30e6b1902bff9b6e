//! The resets this host sent in the last few seconds, found by their endpoints: the receiving end
//! of a connection looks up its reversed tuple to learn whether (and why) its local peer sent one.
//! Indexed, because a storm puts tens of thousands in the window and every report asks.
use std::collections::{hash_map::Entry, VecDeque};

use crate::{event::Endpoints, report::Cause, FastMap};

pub struct SentRecord {
    pub ts: u64,
    /// No socket sent it (a segment for a connection this host does not have).
    pub socketless: bool,
    /// Set once the sent reset itself is classified.
    pub cause: Option<Cause>,
}

pub struct RecentSent {
    /// The latest reset per endpoints: the same tuple reset twice inside the window is rare,
    /// and the newer one is the one a peer's RST matches. One entry each keeps a storm's
    /// window small in memory.
    by_ends: FastMap<Endpoints, SentRecord>,
    /// (endpoints, ts) in arrival order: the oldest go first (expiry, cap).
    order: VecDeque<(Endpoints, u64)>,
    cap: usize,
    ttl_ns: u64,
}

impl RecentSent {
    pub fn new(cap: usize, ttl_ns: u64) -> Self {
        Self { by_ends: FastMap::default(), order: VecDeque::new(), cap, ttl_ns }
    }

    pub fn push(&mut self, ts: u64, endpoints: Endpoints, socketless: bool) {
        if self.order.len() >= self.cap {
            self.pop_oldest();
        }
        self.by_ends.insert(endpoints, SentRecord { ts, socketless, cause: None });
        self.order.push_back((endpoints, ts));
    }

    /// The reset sent with these endpoints within `window_ns` of `ts`.
    pub fn near(&self, endpoints: &Endpoints, ts: u64, window_ns: u64) -> Option<&SentRecord> {
        self.by_ends.get(endpoints).filter(|r| r.ts.abs_diff(ts) < window_ns)
    }

    pub fn set_cause(&mut self, endpoints: &Endpoints, ts: u64, cause: Cause) {
        if let Some(r) = self.by_ends.get_mut(endpoints).filter(|r| r.ts == ts) {
            r.cause = Some(cause);
        }
    }

    /// Forget records older than the time to live, measured from `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        while self.order.front().is_some_and(|(_, ts)| ts.saturating_add(self.ttl_ns) < now_ns) {
            self.pop_oldest();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ends.len()
    }

    fn pop_oldest(&mut self) {
        let Some((ends, ts)) = self.order.pop_front() else { return };
        // Unless a newer reset with the same endpoints took the entry over. One look-up: a
        // storm pops one for every reset it pushes.
        if let Entry::Occupied(entry) = self.by_ends.entry(ends) {
            if entry.get().ts == ts {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Family;

    fn ends(lport: u16) -> Endpoints {
        Endpoints { family: Family::Ipv4, laddr: "10.0.0.1".parse().unwrap(), lport, raddr: "10.0.0.2".parse().unwrap(), rport: 80 }
    }

    #[test]
    fn finds_by_endpoints_within_the_window_and_forgets_the_oldest() {
        let mut r = RecentSent::new(3, 1_000);
        r.push(100, ends(1), false);
        r.push(200, ends(2), false);
        assert_eq!(r.near(&ends(1), 120, 50).map(|s| s.ts), Some(100));
        assert!(r.near(&ends(1), 300, 50).is_none(), "outside the window");
        assert!(r.near(&ends(3), 100, 1_000).is_none());
        r.set_cause(&ends(1), 100, Cause::NoListener);
        r.set_cause(&ends(1), 999, Cause::Unknown); // not that reset: ignored
        assert_eq!(r.near(&ends(1), 100, 1).unwrap().cause, Some(Cause::NoListener));
        // The same endpoints again: the newer reset takes over, and survives the older's expiry.
        r.push(300, ends(1), false);
        assert_eq!(r.near(&ends(1), 310, 50).map(|s| (s.ts, s.cause)), Some((300, None)));
        r.push(400, ends(3), false);
        assert_eq!(r.len(), 3);
        assert!(r.near(&ends(1), 300, 1).is_some());
        // Over the cap the oldest arrival goes (ends 2 at 200, after the stale ends 1 at 100).
        r.push(500, ends(4), false);
        assert!(r.near(&ends(2), 200, 1).is_none());
        assert_eq!(r.len(), 3);
        // Expiry by age.
        r.expire(1_350);
        assert_eq!(r.len(), 2);
        r.expire(10_000);
        assert_eq!(r.len(), 0);
        assert!(r.order.is_empty());
    }
}
