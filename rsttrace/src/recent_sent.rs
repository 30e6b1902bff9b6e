//! The resets this host sent lately (from a little before the oldest reset the judge still
//! holds), found by their endpoints: the receiving end of a connection looks up its reversed
//! tuple to learn whether (and why) its local peer sent one, and a RST answering a segment its
//! own to learn which reset of this host's it echoes.
//! Indexed, because a storm puts tens of thousands in the window and every report asks.
use std::{collections::{hash_map::Entry, VecDeque}, net::IpAddr};

use smallvec::SmallVec;

use crate::{
    ended_here::EarlierEnd,
    event::{Endpoints, Task},
    report::Cause,
    FastMap,
};

/// What a sent RST answered, which says when it was traced and what it may echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Nothing: an active reset (close(), an abort, a timer), traced after it is sent.
    Nothing,
    /// A segment of a connection under way (no SYN) that no socket of that connection took (a
    /// listener answered it, or nothing), traced before it is sent.
    Segment,
    /// The same, answered by the connection's own socket (an orphan closing, a TIME_WAIT
    /// remnant): data after close.
    SegmentByItsSocket,
    /// A SYN, or a segment that could not be read, traced before it is sent.
    SynOrUnread,
    /// A connecting socket's answer to an unacceptable ACK (SYN_SENT): a handshake refused, no
    /// connection ended; traced before it is sent. The socket may connect after it.
    HandshakeAck,
}

impl Answered {
    /// Traced before it went out: it answers a segment in the softirq that received it.
    pub fn traced_before_sent(self) -> bool {
        self != Answered::Nothing
    }
}

/// A sent reset's verdict, as the report of the end that received it takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentVerdict {
    pub cause: Cause,
    /// The reset it gave the peer was benign (an echo's, benign in itself, is what it echoes:
    /// never said so).
    pub benign: bool,
    /// For a RST of no socket following an earlier end of its connection here (an echo, or a
    /// sequel): that end.
    pub after: Option<EarlierEnd>,
}

pub struct SentRecord {
    pub ts: u64,
    pub answered: Answered,
    /// Who acted or owned the socket, as the kernel side said: a reset's echoes are theirs too.
    pub owner: Option<Task>,
    /// Set once the sent reset itself is classified.
    pub verdict: Option<SentVerdict>,
    /// A received reset was judged the peer's end of it.
    pub matched: bool,
}

/// The resets of one 4-tuple still in the window, oldest first. Usually one; a storm that
/// cycles through the ephemeral ports reuses a 4-tuple within a fraction of a second, and a
/// received reset is judged 150 ms after it came, when its tuple's next reset may have been
/// read already: keeping only the latest would leave it without its own peer's RST. At most
/// [`SAME_TUPLE_MAX`]: a flood of segments on one 4-tuple to a closed port must not make every
/// look-up a long walk.
type SameTuple = SmallVec<[SentRecord; 1]>;
const SAME_TUPLE_MAX: usize = 8;
/// How many of the latest resets a connect's refusal looks through for the one a stack of this
/// host sent it from another address (see [`RecentSent::refusal_to`]): a storm of other resets
/// must not make each such refusal a long walk.
const REFUSAL_WALK_MAX: usize = 1024;

pub struct RecentSent {
    by_ends: FastMap<Endpoints, SameTuple>,
    /// (endpoints, ts) in arrival order: the oldest go first (expiry, cap).
    order: VecDeque<(Endpoints, u64)>,
    cap: usize,
    /// The newest reset a cap made room by forgetting: around it, a reset not found may have
    /// been sent all the same.
    forgot_up_to: Option<u64>,
}

impl RecentSent {
    pub fn new(cap: usize) -> Self {
        Self { by_ends: FastMap::default(), order: VecDeque::new(), cap, forgot_up_to: None }
    }

    pub fn push(&mut self, ts: u64, endpoints: Endpoints, answered: Answered, owner: Option<Task>) {
        if self.order.len() >= self.cap {
            if let Some(ts) = self.pop_oldest() {
                forgot(&mut self.forgot_up_to, ts);
            }
        }
        let same = self.by_ends.entry(endpoints).or_default();
        if same.len() >= SAME_TUPLE_MAX {
            // Its `order` entry stays, and finds nothing to remove when its turn comes.
            let oldest = same.remove(0).ts;
            forgot(&mut self.forgot_up_to, oldest);
        }
        same.push(SentRecord { ts, answered, owner, verdict: None, matched: false });
        self.order.push_back((endpoints, ts));
    }

    /// The reset sent with these endpoints closest in time to `ts`, within `window_ns` of it,
    /// among those `fits`.
    pub fn near(&self, endpoints: &Endpoints, ts: u64, window_ns: u64, fits: impl Fn(&SentRecord) -> bool) -> Option<&SentRecord> {
        self.by_ends.get(endpoints)?.iter().filter(|r| r.ts.abs_diff(ts) < window_ns && fits(r)).min_by_key(|r| r.ts.abs_diff(ts))
    }

    /// The refusal of a SYN (no listener) that this host's stack sent to the client's port
    /// `port`, at its address `addr` (any address: `None`), up to `window_ns` before `ts`, from
    /// whatever address: where an address translation (DNAT, REDIRECT, a published port) took
    /// the SYN elsewhere, the refusing end is not the one the client dialled, and where a source
    /// translation (masquerade) took the client's address too, the RST went to the translated
    /// one. Its endpoints as sent. A walk back from `ts` through the resets kept in arrival
    /// order (close to time order), at most [`REFUSAL_WALK_MAX`] of them: it answers only a
    /// connect's refusal that no RST of its own 4-tuple explains, and the refusal behind it was
    /// traced a moment before.
    pub fn refusal_to(&self, addr: Option<IpAddr>, port: u16, ts: u64, window_ns: u64) -> Option<(Endpoints, &SentRecord)> {
        let from = ts.saturating_sub(window_ns);
        let end = self.order.partition_point(|(_, sent)| *sent <= ts);
        self.order
            .range(..end)
            .rev()
            .take(REFUSAL_WALK_MAX)
            .take_while(|(_, sent)| *sent >= from)
            .filter(|(ends, _)| ends.rport == port && addr.is_none_or(|a| ends.raddr == a))
            .find_map(|(ends, sent)| {
                let record = self.by_ends.get(ends)?.iter().find(|r| r.ts == *sent && r.answered == Answered::SynOrUnread)?;
                Some((*ends, record))
            })
    }

    /// The reset sent with these endpoints at `ts` reached its peer: no later reset of that
    /// peer's is its.
    pub fn set_matched(&mut self, endpoints: &Endpoints, ts: u64) {
        if let Some(r) = self.by_ends.get_mut(endpoints).and_then(|same| same.iter_mut().find(|r| r.ts == ts)) {
            r.matched = true;
        }
    }

    pub fn set_verdict(&mut self, endpoints: &Endpoints, ts: u64, verdict: SentVerdict) {
        if let Some(r) = self.by_ends.get_mut(endpoints).and_then(|same| same.iter_mut().find(|r| r.ts == ts)) {
            r.verdict = Some(verdict);
        }
    }

    /// Whether a cap forgot resets sent within `window_ns` of `ts`.
    pub fn may_have_forgotten(&self, ts: u64, window_ns: u64) -> bool {
        self.forgot_up_to.is_some_and(|up_to| ts <= up_to.saturating_add(window_ns))
    }

    /// Forget the resets sent before `ts`.
    pub fn forget_before(&mut self, ts: u64) {
        while self.order.front().is_some_and(|(_, sent)| *sent < ts) {
            self.pop_oldest();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ends.values().map(|same| same.len()).sum()
    }

    /// Forget the oldest reset; its time.
    fn pop_oldest(&mut self) -> Option<u64> {
        let (ends, ts) = self.order.pop_front()?;
        // Pushed in arrival order, so the tuple's oldest is the one leaving. One look-up: a
        // storm pops one for every reset it pushes.
        if let Entry::Occupied(mut entry) = self.by_ends.entry(ends) {
            let same = entry.get_mut();
            if let Some(at) = same.iter().position(|r| r.ts == ts) {
                same.remove(at);
            }
            if same.is_empty() {
                entry.remove();
            }
        }
        Some(ts)
    }
}

/// A cap made room by forgetting the reset sent at `ts`: `up_to` is the newest so forgotten.
fn forgot(up_to: &mut Option<u64>, ts: u64) {
    *up_to = Some(up_to.map_or(ts, |newest| newest.max(ts)));
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
        let any = |_: &SentRecord| true;
        let mut r = RecentSent::new(3);
        r.push(100, ends(1), Answered::Nothing, None);
        r.push(200, ends(2), Answered::Nothing, None);
        assert_eq!(r.near(&ends(1), 120, 50, any).map(|s| s.ts), Some(100));
        assert!(r.near(&ends(1), 300, 50, any).is_none(), "outside the window");
        assert!(r.near(&ends(3), 100, 1_000, any).is_none());
        assert!(r.near(&ends(1), 120, 50, |s| s.answered.traced_before_sent()).is_none(), "not one that fits");
        let refused = SentVerdict { cause: Cause::NoListener, benign: false, after: None };
        r.set_verdict(&ends(1), 100, refused);
        r.set_verdict(&ends(1), 999, SentVerdict { cause: Cause::Unknown, benign: true, after: None }); // not that reset: ignored
        assert_eq!(r.near(&ends(1), 100, 1, any).unwrap().verdict, Some(refused));
        // The same endpoints again: both are kept, and each finds its own.
        r.push(300, ends(1), Answered::Nothing, None);
        assert_eq!(r.near(&ends(1), 310, 50, any).map(|s| (s.ts, s.verdict)), Some((300, None)));
        assert_eq!(r.near(&ends(1), 110, 500, any).map(|s| (s.ts, s.verdict)), Some((100, Some(refused))));
        // Over the cap the oldest arrival goes (ends 1 at 100), not the tuple's newer one.
        r.push(400, ends(3), Answered::Nothing, None);
        assert_eq!(r.len(), 3);
        assert!(r.near(&ends(1), 100, 1, any).is_none());
        assert!(r.near(&ends(1), 300, 1, any).is_some());
        assert!(r.may_have_forgotten(150, 50) && !r.may_have_forgotten(151, 50));
        r.push(500, ends(4), Answered::Nothing, None);
        assert!(r.near(&ends(2), 200, 1, any).is_none());
        assert_eq!(r.len(), 3);
        assert!(r.may_have_forgotten(250, 50));
        // Forgotten by age.
        r.forget_before(350);
        assert_eq!(r.len(), 2);
        r.forget_before(10_000);
        assert_eq!(r.len(), 0);
        assert!(r.by_ends.is_empty() && r.order.is_empty());
        // One 4-tuple flooded: its oldest go first, and are noted as forgotten.
        let mut r = RecentSent::new(100);
        for ts in 0..(SAME_TUPLE_MAX as u64 + 2) {
            r.push(ts * 10, ends(1), Answered::SynOrUnread, None);
        }
        assert_eq!(r.len(), SAME_TUPLE_MAX);
        assert!(r.near(&ends(1), 10, 1, any).is_none() && r.near(&ends(1), 20, 1, any).is_some());
        assert!(r.may_have_forgotten(60, 50) && !r.may_have_forgotten(61, 50));
        r.forget_before(u64::MAX);
        assert!(r.by_ends.is_empty() && r.order.is_empty());
    }

    #[test]
    fn a_refusal_is_found_by_the_client_it_went_to_from_any_address_just_before() {
        // Not the client `ends` sends to (10.0.0.2 port 80).
        let client = ("10.0.0.3".parse().unwrap(), 5555);
        // Sent from the address the SYN was translated to: the refusal's endpoints as sent.
        let translated = Endpoints { family: Family::Ipv4, laddr: "10.9.9.9".parse().unwrap(), lport: 3129, raddr: client.0, rport: client.1 };
        let mut r = RecentSent::new(REFUSAL_WALK_MAX * 2);
        r.push(1_000, translated, Answered::SynOrUnread, None);
        r.push(1_001, ends(7), Answered::SynOrUnread, None);
        let found = |r: &RecentSent, ts| r.refusal_to(Some(client.0), client.1, ts, 100).map(|(e, s)| (e, s.ts));
        assert_eq!(found(&r, 1_050), Some((translated, 1_000)));
        assert_eq!(found(&r, 999), None, "traced before it answered");
        assert_eq!(found(&r, 1_101), None, "outside the window");
        assert_eq!(r.refusal_to(Some(client.0), 5556, 1_050, 100).map(|(e, _)| e), None, "another client");
        // Behind a source translation the RST went to another address, with the client's port.
        assert_eq!(r.refusal_to(Some("10.0.0.4".parse().unwrap()), client.1, 1_050, 100).map(|(e, _)| e), None);
        assert_eq!(r.refusal_to(None, client.1, 1_050, 100).map(|(e, _)| e), Some(translated));
        // An active reset to the same client is no refusal of a SYN.
        let mut active = RecentSent::new(4);
        active.push(1_000, translated, Answered::Nothing, None);
        assert!(active.refusal_to(Some(client.0), client.1, 1_050, 100).is_none());
        // A storm of other resets in between: the walk stops at its cap.
        for i in 0..REFUSAL_WALK_MAX as u64 {
            r.push(1_010 + i / 1_000, ends(8), Answered::SynOrUnread, None);
        }
        assert_eq!(found(&r, 1_050), None, "past the walk's cap");
    }
}
