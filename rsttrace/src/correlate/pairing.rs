//! Pairing the resets of traces taken at different ends: the clock skew between each two traces,
//! each received reset matched with the sent reset it is, and a status for every reset. Pure:
//! traces in, statuses out.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
};

use super::trace::{Direction, Nanos, Reset, Trace, Tuple};

/// How far apart, once the skew is taken out, a sent reset and its reception may be; also how
/// far inside its span a trace must be to vouch for a moment (its start and end records are
/// written around attaching and draining, and the skew is an estimate).
pub const TOLERANCE: Nanos = 1_000_000_000;

/// Addresses that name one host differently at each end (`--nat X=Y`).
#[derive(Clone, Debug, Default)]
pub struct Nat(Vec<(IpAddr, IpAddr)>);

impl Nat {
    pub fn new(pairs: &[(IpAddr, IpAddr)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(x, y)| (x.to_canonical(), y.to_canonical()))
                .collect(),
        )
    }

    /// `a` as one end sees it and `b` as the other sees it are the same address: equal once
    /// parsed (IPv6 has many spellings; an IPv4-mapped one is its IPv4 address), or mapped onto
    /// each other in either direction.
    pub fn same(&self, a: IpAddr, b: IpAddr) -> bool {
        let (a, b) = (a.to_canonical(), b.to_canonical());
        a == b
            || self
                .0
                .iter()
                .any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
    }

    /// `s` (one end's 4-tuple) is `r` (the other end's) seen from the other side.
    fn mirrored(&self, r: &Tuple, s: &Tuple) -> bool {
        s.lport == r.rport
            && s.rport == r.lport
            && self.same(s.laddr, r.raddr)
            && self.same(s.raddr, r.laddr)
    }
}

/// A reset by its trace and its place in that trace's resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResetId {
    pub trace: usize,
    pub index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A received reset and the sent reset it is, one in each trace.
    Matched,
    /// A received reset whose sender's trace covers the moment and sent none.
    Injected,
    /// A sent reset whose receiver's trace covers the moment and received none.
    LostInPath,
    /// No trace vouches for the other end at that moment.
    Unpaired,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::Injected => "injected",
            Status::LostInPath => "lost_in_path",
            Status::Unpaired => "unpaired",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pairing {
    pub status: Status,
    /// The other end's trace: the one holding the matched reset, or the one that covers the
    /// moment and shows none.
    pub peer_trace: Option<usize>,
    /// The other end's reset, when matched.
    pub peer_reset: Option<ResetId>,
}

/// The clock skew between two traces: the median of (received - sent) over the candidate
/// pairs within the window that agree (see [`densest`]), so a one-way delay is in it too
/// (microseconds on a LAN). `samples` counts those pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skew {
    pub ns: Nanos,
    pub samples: usize,
}

#[derive(Debug)]
pub struct Correlation {
    /// Per trace, per reset, in the traces' order.
    pub pairings: Vec<Vec<Pairing>>,
    /// For traces `(a, b)`, `a < b`: how far `a`'s clock runs ahead of `b`'s. Only pairs with
    /// candidates within the window have one.
    pub skews: BTreeMap<(usize, usize), Skew>,
}

impl Correlation {
    /// How far `a`'s clock runs ahead of `b`'s, when known.
    pub fn skew(&self, a: usize, b: usize) -> Option<Nanos> {
        if a <= b {
            self.skews.get(&(a, b)).map(|s| s.ns)
        } else {
            self.skews.get(&(b, a)).map(|s| -s.ns)
        }
    }

    pub fn pairing(&self, id: ResetId) -> Pairing {
        self.pairings[id.trace][id.index]
    }

    /// Each trace's clock against the first trace's, through the skews known (chained when two
    /// traces met only through a third); 0 for traces not linked to it. Puts every reset on one
    /// time line for listing.
    pub fn offsets(&self, traces: usize) -> Vec<Nanos> {
        let mut offsets: Vec<Option<Nanos>> = vec![None; traces];
        for root in 0..traces {
            if offsets[root].is_some() {
                continue;
            }
            offsets[root] = Some(0);
            let mut queue = vec![root];
            while let Some(a) = queue.pop() {
                for b in 0..traces {
                    if let (None, Some(ahead)) = (offsets[b], self.skew(a, b)) {
                        offsets[b] = Some(offsets[a].unwrap_or(0) - ahead);
                        queue.push(b);
                    }
                }
            }
        }
        offsets.into_iter().map(|o| o.unwrap_or(0)).collect()
    }
}

/// A received reset and a sent reset in another trace on the same connection.
struct Candidate {
    received: ResetId,
    sent: ResetId,
    /// received.ts - sent.ts, each on its own clock.
    diff: Nanos,
}

pub fn correlate(traces: &[Trace], nat: &Nat, window: Nanos) -> Correlation {
    let candidates = candidates(traces, nat);
    let unpaired = Pairing {
        status: Status::Unpaired,
        peer_trace: None,
        peer_reset: None,
    };
    let mut correlation = Correlation {
        pairings: traces
            .iter()
            .map(|t| vec![unpaired; t.resets.len()])
            .collect(),
        skews: skews(&candidates, window),
    };
    let near = near(&candidates, &correlation);
    for (received, sent) in nearest_first(&near) {
        let pairing = |peer: ResetId| Pairing {
            status: Status::Matched,
            peer_trace: Some(peer.trace),
            peer_reset: Some(peer),
        };
        correlation.pairings[received.trace][received.index] = pairing(sent);
        correlation.pairings[sent.trace][sent.index] = pairing(received);
    }
    // A reset with a counterpart at that moment, even one another reset took, is no proof of a
    // forged or lost RST: the other end's trace does show one on that connection.
    let spoken_for: HashSet<ResetId> = near.iter().flat_map(|c| [c.received, c.sent]).collect();
    for (t, trace) in traces.iter().enumerate() {
        for index in 0..trace.resets.len() {
            let id = ResetId { trace: t, index };
            if spoken_for.contains(&id) {
                continue;
            }
            if let Some(p) = vouching_peer(traces, &correlation, id, nat) {
                let status = match trace.resets[index].direction {
                    Direction::Received => Status::Injected,
                    Direction::Sent => Status::LostInPath,
                };
                correlation.pairings[t][index] = Pairing {
                    status,
                    peer_trace: Some(p),
                    peer_reset: None,
                };
            }
        }
    }
    correlation
}

/// The candidates within the tolerance once the skew is taken out, nearest first.
fn near<'a>(candidates: &'a [Candidate], c: &Correlation) -> Vec<&'a Candidate> {
    let corrected =
        |k: &Candidate| (k.diff - c.skew(k.received.trace, k.sent.trace).unwrap_or(0)).abs();
    let mut near: Vec<(Nanos, &Candidate)> = candidates
        .iter()
        .map(|k| (corrected(k), k))
        .filter(|(d, _)| *d <= TOLERANCE)
        .collect();
    near.sort_by_key(|(d, k)| (*d, k.received, k.sent));
    near.into_iter().map(|(_, k)| k).collect()
}

/// Pairs taken nearest first, each reset in one pair at most: the closest pair of all is
/// surely one, and a retransmitted RST or a reused 4-tuple cannot take another's partner.
fn nearest_first(near: &[&Candidate]) -> Vec<(ResetId, ResetId)> {
    let mut paired = HashSet::new();
    let mut pairs = Vec::new();
    for c in near {
        if !paired.contains(&c.received) && !paired.contains(&c.sent) {
            paired.extend([c.received, c.sent]);
            pairs.push((c.received, c.sent));
        }
    }
    pairs
}

/// The first other trace that holds the reset's remote address and would show the other end's
/// report of it, had there been one.
fn vouching_peer(traces: &[Trace], c: &Correlation, id: ResetId, nat: &Nat) -> Option<usize> {
    let reset = &traces[id.trace].resets[id.index];
    // The other end's own report, as that end sees the connection.
    let expected = Expected {
        direction: match reset.direction {
            Direction::Sent => Direction::Received,
            Direction::Received => Direction::Sent,
        },
        lport: reset.tuple.rport,
        rport: reset.tuple.lport,
        raddr: reset.tuple.laddr,
    };
    let holders: Vec<usize> = (0..traces.len())
        .filter(|&p| p != id.trace && traces[p].addresses.iter().any(|&a| nat.same(a, reset.tuple.raddr)))
        .filter(|&p| {
            let (start, end) = traces[p].span();
            (start..=end).contains(&(reset.ts - c.skew(id.trace, p).unwrap_or(0)))
        })
        .collect();
    // Two traces covering that moment hold the address (a bridge address every host has, such
    // as docker0's): neither is surely the other end.
    let [p] = holders[..] else { return None };
    let on_its_clock = reset.ts - c.skew(id.trace, p).unwrap_or(0);
    (vouches(&traces[p], &expected, on_its_clock, nat) && !translated(&traces[p], &expected, on_its_clock, nat)).then_some(p)
}

/// The peer's trace shows a reset of the expected direction to or from this end's address and
/// port at that moment, from another local address or port: the same connection, translated on
/// the peer's host (a published container port, a NodePort, DNAT), which `--nat` cannot map.
/// (A RST the peer sent without a socket right after its own connection was reset is none: it
/// answered this end's data, see [`candidates`].)
fn translated(peer: &Trace, expected: &Expected, at: Nanos, nat: &Nat) -> bool {
    peer.with_remote_port(expected.direction, expected.rport).any(|r| {
        nat.same(r.tuple.raddr, expected.raddr)
            && (r.ts - at).abs() <= TOLERANCE
            && !(r.direction == Direction::Sent && answered_after_its_own_reset(peer, r))
    })
}

/// Every (received, sent) pair of resets in different traces whose 4-tuples mirror each other,
/// whatever their times.
fn candidates(traces: &[Trace], nat: &Nat) -> Vec<Candidate> {
    // Ports survive NAT here (`--nat` maps addresses), so they index the sent resets; the
    // addresses are compared through the mapping.
    let mut sent: HashMap<(u16, u16), Vec<ResetId>> = HashMap::new();
    for (t, trace) in traces.iter().enumerate() {
        for (index, reset) in trace.resets.iter().enumerate() {
            if reset.direction == Direction::Sent {
                sent.entry((reset.tuple.lport, reset.tuple.rport))
                    .or_default()
                    .push(ResetId { trace: t, index });
            }
        }
    }
    let mut candidates = Vec::new();
    for (t, trace) in traces.iter().enumerate() {
        for (index, r) in trace.resets.iter().enumerate() {
            if r.direction != Direction::Received {
                continue;
            }
            for &s in sent
                .get(&(r.tuple.rport, r.tuple.lport))
                .into_iter()
                .flatten()
            {
                let sent_reset = &traces[s.trace].resets[s.index];
                // RSTs forged to both ends: the peer, its own connection reset, answers this
                // end's data with a RST of no socket, which comes after this end's forged one.
                // That one is not what reset this end, and its evidence said so.
                if r.forged_by_evidence && answered_after_its_own_reset(&traces[s.trace], sent_reset) {
                    continue;
                }
                if s.trace != t && nat.mirrored(&r.tuple, &sent_reset.tuple) {
                    candidates.push(Candidate {
                        received: ResetId { trace: t, index },
                        sent: s,
                        diff: r.ts - sent_reset.ts,
                    });
                }
            }
        }
    }
    candidates
}

/// `sent` went out on a connection its own trace saw reset just before (within [`TOLERANCE`]):
/// it answered a segment for a connection that end no longer had.
fn answered_after_its_own_reset(trace: &Trace, sent: &Reset) -> bool {
    trace
        .with_remote_port(Direction::Received, sent.tuple.rport)
        .any(|r| r.tuple == sent.tuple && (0..=TOLERANCE).contains(&(sent.ts - r.ts)))
}

/// Per pair of traces, the median of the candidates' differences within `window` that agree:
/// most candidates that close are true pairs, and the few that are not are left out.
fn skews(candidates: &[Candidate], window: Nanos) -> BTreeMap<(usize, usize), Skew> {
    let mut samples: BTreeMap<(usize, usize), Vec<Nanos>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| c.diff.abs() <= window) {
        let (r, s) = (c.received.trace, c.sent.trace);
        // received - sent is how far the receiver's clock runs ahead (plus the delay); stored
        // as the lower-numbered trace's lead.
        let (key, lead) = if r < s {
            ((r, s), c.diff)
        } else {
            ((s, r), -c.diff)
        };
        samples.entry(key).or_default().push(lead);
    }
    samples
        .into_iter()
        .map(|(key, mut v)| {
            v.sort_unstable();
            let agreeing = densest(&v, 2 * TOLERANCE);
            let mid = agreeing.len() / 2;
            let ns = if agreeing.len() % 2 == 1 { agreeing[mid] } else { agreeing[mid - 1] + (agreeing[mid] - agreeing[mid - 1]) / 2 };
            (key, Skew { ns, samples: agreeing.len() })
        })
        .collect()
}

/// The most samples (sorted) that lie within `width` of each other: the true pairs agree on the
/// skew to within the delay, while pairs of a reused 4-tuple scatter. The median of all would
/// mix them (two samples, one of each, average to a skew neither has).
fn densest(sorted: &[Nanos], width: Nanos) -> &[Nanos] {
    let (mut best, mut from) = ((0, 0), 0);
    for to in 0..sorted.len() {
        while sorted[to] - sorted[from] > width {
            from += 1;
        }
        if to + 1 - from > best.1 - best.0 {
            best = (from, to + 1);
        }
    }
    &sorted[best.0..best.1]
}

/// The report the other end would have written: its direction and the connection as it sees it.
struct Expected {
    direction: Direction,
    lport: u16,
    rport: u16,
    raddr: IpAddr,
}

/// `trace` would show the expected report at `at` (its own clock) had it happened: the moment
/// is well inside its span, no folded or lost reports there could be it, and no filter kept
/// it out.
fn vouches(trace: &Trace, expected: &Expected, at: Nanos, nat: &Nat) -> bool {
    let (start, end) = trace.span();
    let inside = start + TOLERANCE <= at && at <= end - TOLERANCE;
    !trace.filtered
        && inside
        && !trace.gaps_near(at, TOLERANCE).any(|g| {
            g.direction.is_none_or(|d| d == expected.direction)
                && g.lport.is_none_or(|p| p == expected.lport)
                && g.rport.is_none_or(|p| p == expected.rport)
                && g.raddr.is_none_or(|a| nat.same(a, expected.raddr))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::trace::tests::{at, client_got, server_sent, two_ends, End, CLIENT, SERVER};

    const WINDOW: Nanos = 5_000_000_000;

    fn status(c: &Correlation, trace: usize, index: usize) -> Status {
        c.pairing(ResetId { trace, index }).status
    }

    #[test]
    fn a_received_reset_pairs_with_its_sent_reset() {
        let t = two_ends(&[client_got(10.0004, 50000)], &[server_sent(10.0, 50000)]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        let (received, sent) = (
            ResetId { trace: 0, index: 0 },
            ResetId { trace: 1, index: 0 },
        );
        let p = c.pairing(received);
        assert_eq!(
            p,
            Pairing {
                status: Status::Matched,
                peer_trace: Some(1),
                peer_reset: Some(sent)
            }
        );
        assert_eq!(c.pairing(sent).peer_reset, Some(received));
        assert_eq!(
            c.skew(0, 1),
            Some(400_000),
            "the client's clock reads the delay ahead"
        );
        assert_eq!(c.skew(1, 0), Some(-400_000));
    }

    #[test]
    fn a_skew_of_seconds_between_the_clocks_still_pairs_each_reset_with_its_own() {
        // The client's clock runs 3.2 s ahead of the server's: every reset arrives 3.2 s "after"
        // it was sent, beyond the 1 s a pair may differ. Two of the connections reuse one 4-tuple
        // 0.5 s apart, so only the corrected times tell which reset is which.
        let server = [
            server_sent(10.0, 50000),
            server_sent(10.5, 50000),
            server_sent(17.0, 50000),
        ];
        let t = two_ends(
            &[
                client_got(13.2, 50000),
                client_got(13.7, 50000),
                client_got(20.2, 50000),
            ],
            &server,
        );
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(c.skew(0, 1), Some(3_200_000_000));
        for i in 0..3 {
            let peer = c.pairing(ResetId { trace: 0, index: i }).peer_reset;
            assert_eq!(peer, Some(ResetId { trace: 1, index: i }), "reset {i}");
        }
        let offsets = c.offsets(2);
        assert_eq!(
            offsets,
            [0, -3_200_000_000],
            "the server's clock reads 3.2 s less"
        );
        // The server's trace ends at 10:01:00 on its clock, 10:01:03.2 on the client's: a RST the
        // client got at 10:01:02 (its clock) is inside the span once corrected, not before.
        let client = [
            client_got(13.2, 50000),
            client_got(13.7, 50000),
            client_got(20.2, 50000),
            client_got(62.0, 50100),
        ];
        let c = correlate(&two_ends(&client, &server), &Nat::default(), WINDOW);
        assert_eq!(status(&c, 0, 3), Status::Injected);
    }

    #[test]
    fn a_reset_nobody_sent_is_injected_when_the_peer_trace_covers_the_moment() {
        let t = two_ends(&[client_got(20.0, 50000)], &[]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        let expected = Pairing {
            status: Status::Injected,
            peer_trace: Some(1),
            peer_reset: None,
        };
        assert_eq!(c.pairing(ResetId { trace: 0, index: 0 }), expected);
    }

    /// The client's forged reception on `port`, with its own evidence decisive.
    fn client_got_forged(s: f64, port: u16) -> String {
        client_got(s, port).replace(r#""evidence":null"#, r#""evidence":{"decisive":true}"#)
    }

    #[test]
    fn forged_to_both_ends_a_socketless_answer_after_the_peers_own_reset_is_not_the_sender() {
        // The server's connection was reset by a forged RST at 20.000; the client's data in
        // flight then found no socket there: the server answered it at 20.002. The client's own
        // forged RST came at 20.001 and its evidence said so.
        let server_got = SERVER.received(20.000, "injected", "10.0.0.2:80", "10.0.0.1:50000");
        let answer = SERVER.sent(20.002, "no_socket", "10.0.0.2:80", "10.0.0.1:50000");
        let t = two_ends(&[client_got_forged(20.001, 50000)], &[server_got.clone(), answer.clone()]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(status(&c, 0, 0), Status::Injected, "the client's forged reset");
        // Without the client's evidence the answer may well be what reset it (a RST forged to
        // the server alone): it is paired.
        let t = two_ends(&[client_got(20.001, 50000)], &[server_got, answer]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(status(&c, 0, 0), Status::Matched);
    }

    #[test]
    fn a_reset_the_peer_sent_from_a_translated_address_is_no_proof_of_forgery() {
        // A published container port: the client talked to 10.0.0.2:8080; the container's
        // reset, in the server host's trace, comes from 172.17.0.2:80.
        let container_sent = SERVER.sent(20.0, "app_abort_linger0", "172.17.0.2:80", "10.0.0.1:50000");
        let got = CLIENT.received(20.0, "peer_reset", "10.0.0.1:50000", "10.0.0.2:8080");
        let t = two_ends(&[got.clone()], &[container_sent]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(status(&c, 0, 0), Status::Unpaired);
        // The same reception with nothing in the server's trace: injected.
        let t = two_ends(&[got], &[]);
        assert_eq!(status(&correlate(&t, &Nat::default(), WINDOW), 0, 0), Status::Injected);
    }

    #[test]
    fn an_address_two_covering_traces_hold_names_neither_as_the_other_end() {
        let client = format!("{}\n{}\n{}", CLIENT.start(0.0, &["10.0.0.1"]), client_got(20.0, 50000), CLIENT.end(60.0, &["10.0.0.1"]));
        let server = format!("{}\n{}", SERVER.start(0.0, &["10.0.0.2"]), SERVER.end(60.0, &["10.0.0.2"]));
        let other = End { host: "other", instance: "cccccccccccccccc" };
        let twin = format!("{}\n{}", other.start(0.0, &["10.0.0.2"]), other.end(60.0, &["10.0.0.2"]));
        let t = crate::correlate::trace::tests::read(&[("c.json", &client), ("s.json", &server), ("o.json", &twin)]).unwrap();
        assert_eq!(status(&correlate(&t, &Nat::default(), WINDOW), 0, 0), Status::Unpaired);
    }

    #[test]
    fn the_skew_is_where_most_pairs_agree_not_the_mean_of_two_that_do_not() {
        assert_eq!(densest(&[0, 4_000_000_000], 2 * TOLERANCE), &[0]);
        assert_eq!(densest(&[-10, 0, 5, 3_900_000_000], 2 * TOLERANCE), &[-10, 0, 5]);
        assert_eq!(densest(&[7], 2 * TOLERANCE), &[7]);
    }

    #[test]
    fn a_peer_trace_taken_with_filters_proves_nothing_by_its_silence() {
        let mut t = two_ends(&[client_got(20.0, 50000)], &[]);
        t[1].filtered = true;
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(c.pairing(ResetId { trace: 0, index: 0 }).status, Status::Unpaired);
        // Read from its start record.
        let filtered = r#"{"type":"trace","event":"start","host":"s","instance":"i1","ts":"2026-01-01T10:00:00Z","addresses":["10.0.0.2"],"filters":["-p 812"]}"#;
        let plain = r#"{"type":"trace","event":"start","host":"s","instance":"i2","ts":"2026-01-01T10:00:00Z","addresses":["10.0.0.2"],"filters":[]}"#;
        let traces = crate::correlate::trace::tests::read(&[("f.json", filtered), ("p.json", plain)]).unwrap();
        assert_eq!(traces.iter().map(|t| t.filtered).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn a_sent_reset_the_peer_never_received_is_lost_in_path() {
        let t = two_ends(&[], &[server_sent(20.0, 50000)]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(status(&c, 1, 0), Status::LostInPath);
        assert_eq!(
            c.pairing(ResetId { trace: 1, index: 0 }).peer_trace,
            Some(0)
        );
    }

    #[test]
    fn a_reset_to_an_address_no_trace_holds_or_outside_every_span_is_unpaired() {
        let elsewhere = CLIENT.received(20.0, "peer_reset", "10.0.0.1:50000", "192.0.2.7:443");
        // 0.5 s after the server's trace began: too near its edge to vouch.
        let t = two_ends(&[elsewhere, client_got(0.5, 50001)], &[]);
        let c = correlate(&t, &Nat::default(), WINDOW);
        let unpaired = Pairing {
            status: Status::Unpaired,
            peer_trace: None,
            peer_reset: None,
        };
        assert_eq!(c.pairing(ResetId { trace: 0, index: 0 }), unpaired);
        assert_eq!(status(&c, 0, 1), Status::Unpaired);
    }

    #[test]
    fn folded_or_lost_reports_at_that_moment_keep_the_peer_from_vouching() {
        let folded = serde_json::json!({
            "type": "folded", "report_type": "reset", "direction": "sent", "lport": 80,
            "rport": null, "raddr": null, "count": 1500, "first_ts": at(19.5),
            "last_ts": at(20.4), "ts": at(21.0), "host": "server", "instance": SERVER.instance,
        });
        let lost = serde_json::json!({
            "type": "lost", "lost": 7, "lost_total": 7, "host": "client",
            "instance": CLIENT.instance, "ts": at(41.0),
        });
        let t = two_ends(
            &[client_got(20.0, 50000), lost.to_string()],
            &[folded.to_string(), server_sent(40.0, 50002)],
        );
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(
            status(&c, 0, 0),
            Status::Unpaired,
            "the server folded sent resets from port 80 then"
        );
        assert_eq!(
            status(&c, 1, 0),
            Status::Unpaired,
            "the client lost events then"
        );
    }

    #[test]
    fn addresses_behind_a_nat_pair_through_the_mapping() {
        // The client reaches the server as 192.0.2.10, which a NAT forwards to 10.0.0.2; the
        // server sees the client as itself (no source NAT).
        let via_nat = |s: f64, port: u16| {
            CLIENT.received(
                s,
                "peer_reset",
                &format!("10.0.0.1:{port}"),
                "192.0.2.10:80",
            )
        };
        let t = two_ends(
            &[via_nat(10.0, 50000), via_nat(30.0, 50001)],
            &[server_sent(10.0, 50000)],
        );
        let unmapped = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(
            [status(&unmapped, 0, 0), status(&unmapped, 0, 1)],
            [Status::Unpaired; 2]
        );
        let mapping = ("192.0.2.10".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mapped = correlate(&t, &Nat::new(&[mapping]), WINDOW);
        assert_eq!(status(&mapped, 0, 0), Status::Matched);
        assert_eq!(status(&mapped, 1, 0), Status::Matched);
        assert_eq!(
            status(&mapped, 0, 1),
            Status::Injected,
            "the mapping names the server's address too"
        );
        let reversed = Nat::new(&[(mapping.1, mapping.0)]);
        assert_eq!(
            status(&correlate(&t, &reversed, WINDOW), 0, 0),
            Status::Matched,
            "either direction"
        );
    }

    #[test]
    fn ipv6_addresses_compare_parsed_not_as_written() {
        let client = [
            CLIENT.received(
                10.0,
                "peer_reset",
                "[fd00:0:0::1]:50000",
                "[FD00:0000::0002]:80",
            ),
            CLIENT.received(
                20.0,
                "peer_reset",
                "[fd00::1]:50001",
                "[fd00:0:0:0:0:0:0:2]:80",
            ),
        ];
        let server = [SERVER.sent(
            10.0,
            "app_abort_unread",
            "[fd00::2]:80",
            "[fd00::0:1]:50000",
        )];
        let c = correlate(&two_ends(&client, &server), &Nat::default(), WINDOW);
        assert_eq!(status(&c, 0, 0), Status::Matched);
        assert_eq!(
            status(&c, 0, 1),
            Status::Injected,
            "the server's trace lists fd00::2"
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(Nat::default().same(mapped, "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_pair_counts_once_and_a_second_reception_is_not_called_injected() {
        // A third connection pins the skew at 0.
        let t = two_ends(
            &[
                client_got(10.0, 50000),
                client_got(10.25, 50000),
                client_got(30.0, 60000),
            ],
            &[server_sent(10.2, 50000), server_sent(30.0, 60000)],
        );
        let c = correlate(&t, &Nat::default(), WINDOW);
        let peer = c.pairing(ResetId { trace: 1, index: 0 }).peer_reset;
        assert_eq!(peer, Some(ResetId { trace: 0, index: 1 }), "nearest first");
        assert_eq!(
            status(&c, 0, 0),
            Status::Unpaired,
            "the server did send one then: no proof of forgery"
        );
    }

    #[test]
    fn the_skew_is_the_median_of_the_pairs_that_agree_so_a_stray_candidate_does_not_move_it() {
        // Three true pairs 2.0 s apart and a reused port whose other reset is 4.5 s away: inside
        // the window, so a sample, but 2.5 s off the skew.
        let t = two_ends(
            &[
                client_got(12.0, 1),
                client_got(22.0, 2),
                client_got(32.0, 3),
                client_got(34.5, 3),
            ],
            &[
                server_sent(10.0, 1),
                server_sent(20.0, 2),
                server_sent(30.0, 3),
            ],
        );
        let c = correlate(&t, &Nat::default(), WINDOW);
        assert_eq!(
            c.skews[&(0, 1)],
            Skew {
                ns: 2_000_000_000,
                samples: 3
            }
        );
        assert_eq!(status(&c, 0, 2), Status::Matched);
        assert_eq!(
            status(&c, 0, 3),
            Status::Injected,
            "2.5 s off the skew: the server sent nothing then"
        );
    }

    #[test]
    fn offsets_chain_through_a_middle_trace() {
        let skews = [
            (
                (0, 1),
                Skew {
                    ns: 100,
                    samples: 1,
                },
            ),
            (
                (1, 2),
                Skew {
                    ns: -30,
                    samples: 1,
                },
            ),
        ];
        let c = Correlation {
            pairings: vec![],
            skews: BTreeMap::from(skews),
        };
        assert_eq!(c.offsets(4), vec![0, -100, -70, 0]);
    }
}
