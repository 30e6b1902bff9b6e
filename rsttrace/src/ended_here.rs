//! The connections a reset or a timeout ended on this host lately, by namespace and 4-tuple.
//! A peer that goes on sending after its connection ended here gets a RST from no socket; that
//! RST is no new problem but the sequel of the end kept here, which its report names: the
//! application's abort whose RST was lost, a timeout while the peer was out of reach, or a RST
//! the peer never sent.
//!
//! Only the reports of resets and timeouts add to it (a connection that ends well costs nothing
//! here), and it is bounded in time and in size: a storm forgets its oldest first.
use std::collections::VecDeque;

use crate::{
    event::{Endpoints, Task},
    report::Cause,
    FastMap,
};

/// How a connection ended here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedBy {
    /// This host's stack sent a RST with the connection's socket.
    Sent,
    /// The connection's socket here accepted a RST.
    Received,
    /// The connection's socket here accepted a RST that its peer, on this host, was seen
    /// sending: the peer's segments that come after it left before it.
    ReceivedFromPeer,
    /// A timer gave the connection up, with no RST (ETIMEDOUT).
    TimedOut,
}

/// A connection's end as its report gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub ts: u64,
    pub how: EndedBy,
    pub cause: Cause,
    /// Whose connection it was, as its report named them.
    pub owner: Option<Task>,
    /// The owner the kernel side had on record, as the 4-tuple's note names it: a handed-over
    /// socket's report names the process holding it instead.
    pub noted_owner: Option<u32>,
    /// Its socket: the kernel side names the socket of the last connection on a 4-tuple, so a
    /// later connection on it is not taken for this one.
    pub sk: u64,
}

impl Ended {
    /// As a RST at `ts` names it.
    pub fn seen_at(&self, ts: u64) -> EarlierEnd {
        EarlierEnd { how: self.how, cause: Some(self.cause), age_ns: ts.saturating_sub(self.ts) }
    }
}

/// The earlier end of a connection that a RST of no socket follows, as its report names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EarlierEnd {
    pub how: EndedBy,
    /// `None` while that end is not judged yet (an echo's reset is traced after it).
    pub cause: Option<Cause>,
    pub age_ns: u64,
}

/// How long an end is kept. A peer that never heard of it retransmits for up to ~15 minutes
/// (tcp_retries2), but its first retransmissions, or a FIN when its application gives up, come
/// within seconds to minutes.
pub const KEEP_NS: u64 = 300_000_000_000;

type Key = (u32, Endpoints);

pub struct EndedHere {
    by_ends: FastMap<Key, Ended>,
    /// (key, ts) in the order noted: the oldest go first (expiry, cap).
    order: VecDeque<(Key, u64)>,
    cap: usize,
}

impl EndedHere {
    pub fn new(cap: usize) -> Self {
        Self { by_ends: FastMap::default(), order: VecDeque::new(), cap }
    }

    /// The connection of `endpoints` in `netns` ended as `ended` says (the latest end of a
    /// 4-tuple is the one kept).
    pub fn note(&mut self, netns: u32, endpoints: Endpoints, ended: Ended) {
        if self.order.len() >= self.cap {
            self.pop_oldest();
        }
        self.by_ends.insert((netns, endpoints), ended);
        self.order.push_back(((netns, endpoints), ended.ts));
    }

    /// How the connection of `endpoints` in `netns` last ended before `ts`, if it did lately.
    pub fn latest_before(&self, netns: u32, endpoints: &Endpoints, ts: u64) -> Option<&Ended> {
        self.by_ends.get(&(netns, *endpoints)).filter(|e| e.ts <= ts && ts - e.ts <= KEEP_NS)
    }

    /// Forget the ends older than [`KEEP_NS`] at `now`.
    pub fn expire(&mut self, now: u64) {
        let since = now.saturating_sub(KEEP_NS);
        while self.order.front().is_some_and(|(_, ts)| *ts < since) {
            self.pop_oldest();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ends.len()
    }

    fn pop_oldest(&mut self) {
        let Some((key, ts)) = self.order.pop_front() else { return };
        // A later end of the same 4-tuple replaced it: that one stays.
        if self.by_ends.get(&key).is_some_and(|e| e.ts == ts) {
            self.by_ends.remove(&key);
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

    fn ended(ts: u64) -> Ended {
        Ended { ts, how: EndedBy::Sent, cause: Cause::AppAbortLinger0, owner: None, noted_owner: None, sk: 1 }
    }

    #[test]
    fn keeps_the_latest_end_of_a_4_tuple_for_a_while_and_at_most_cap() {
        let mut e = EndedHere::new(2);
        e.note(1, ends(1), ended(100));
        assert_eq!(e.latest_before(1, &ends(1), 150).map(|e| e.ts), Some(100));
        assert!(e.latest_before(1, &ends(1), 50).is_none(), "not before it ended");
        assert!(e.latest_before(2, &ends(1), 150).is_none(), "another namespace");
        assert!(e.latest_before(1, &ends(1), 100 + KEEP_NS + 1).is_none(), "too long ago");
        // The same 4-tuple again: the later end answers, and the earlier's expiry leaves it.
        e.note(1, ends(1), ended(200));
        e.expire(150 + KEEP_NS);
        assert_eq!(e.latest_before(1, &ends(1), 250).map(|e| e.ts), Some(200));
        // Over the cap the oldest noted goes.
        e.note(1, ends(2), ended(300));
        e.note(1, ends(3), ended(400));
        assert_eq!(e.len(), 2);
        assert!(e.latest_before(1, &ends(1), 500).is_none());
        e.expire(u64::MAX);
        assert_eq!(e.len(), 0);
        assert!(e.order.is_empty());
    }
}
