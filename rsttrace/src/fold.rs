//! Storm folding (`--max-rate`): every report is counted, but only up to `max_rate` a second go
//! out one by one. The rest are folded, per kind of reset, into one record a second that carries
//! their exact count. A storm must not hide a rare reset of another kind (the one keepalive
//! timeout among a port's refusals): a storming kind or verdict may not take the last tenth of
//! the bucket's tokens, which stay for the others. Formatting and writing a report is about 40%
//! of the agent's per-report cost in a storm (measured: ~2.1 of ~4.8 ms per 1k JSON reports), so this bounds that part of
//! what a storm makes the agent do on a busy host. Pure: the caller passes the time
//! (CLOCK_MONOTONIC nanoseconds) in.
use std::net::IpAddr;

use crate::{
    FastMap,
    event::Comm,
    report::{Cause, Direction, Origin, Report, ReportType},
};

/// `--max-rate`'s default: reports a second that go out one by one.
pub const DEFAULT_MAX_RATE: u32 = 1000;
/// How long folded reports are gathered before their records go out.
pub const INTERVAL_NS: u64 = 1_000_000_000;
/// Distinct kinds folded per interval; beyond it, reports fold into one `other` kind per
/// (type, direction, cause, origin, benign), which keeps memory and output bounded under a
/// port scan (each closed port a kind, most of them one reset a second: a record each would
/// write as much as the reports).
pub const MAX_KEYS: usize = 256;
/// A kind with fewer reports than this in the last second and so far in this one is quiet,
/// unless its verdict has had ten times as many (a port scan: a kind per port, one verdict). A
/// quiet kind may take any token, where a storming one leaves [`RESERVE_SHARE`] of them.
pub const QUIET_REPORTS: u32 = 10;
/// The share of a second's tokens (1/N) kept for quiet kinds.
pub const RESERVE_SHARE: u64 = 10;

const NS_PER_SEC: u64 = 1_000_000_000;

/// `rate` tokens a second, at most `rate` saved up: a burst of one second's worth. The credit is
/// kept in token-nanoseconds, so refills are exact integers.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    credit: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// Full at the start: the first second's reports all go out.
    pub fn new(rate: u32, now_ns: u64) -> Self {
        let rate = u64::from(rate);
        Self { rate, credit: rate * NS_PER_SEC, last_ns: now_ns }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now_ns: u64) -> bool {
        self.take_leaving(now_ns, 0)
    }

    /// Take one token if more than `reserve` are there.
    pub fn take_leaving(&mut self, now_ns: u64, reserve: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.credit = self.credit.saturating_add(elapsed.saturating_mul(self.rate)).min(self.rate * NS_PER_SEC);
        if self.credit >= reserve.saturating_add(1).saturating_mul(NS_PER_SEC) {
            self.credit -= NS_PER_SEC;
            true
        } else {
            false
        }
    }
}

/// Which port names a folded kind: the local one for sockets this host accepted or that had no
/// connection (a listener's port, a closed port), the remote one for connections this host
/// opened (whose local port is a new ephemeral one each time, and would fold nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Local(u16),
    Remote(u16),
    /// The `other` kind: more than [`MAX_KEYS`] kinds this interval.
    Other,
}

/// What folded reports share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FoldKey {
    pub kind: ReportType,
    pub direction: Option<Direction>,
    pub cause: Cause,
    pub origin: Origin,
    pub benign: bool,
    /// 0 in the `other` kind.
    pub netns: u32,
    pub pid: Option<u32>,
    pub port: Port,
}

impl FoldKey {
    pub fn of(r: &Report) -> Self {
        Self {
            kind: r.kind,
            direction: r.direction,
            cause: r.verdict.cause,
            origin: r.verdict.origin,
            benign: r.verdict.benign,
            netns: r.netns,
            pid: r.owner.as_ref().map(|o| o.pid),
            port: if r.active_open { Port::Remote(r.endpoints.rport) } else { Port::Local(r.endpoints.lport) },
        }
    }

    /// The same verdict, with the socket's process, port and namespace left out.
    fn other(self) -> Self {
        Self { netns: 0, pid: None, port: Port::Other, ..self }
    }
}

#[derive(Debug)]
struct Aggregate {
    count: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
    /// The first folded report's owner name (a process may rename its threads).
    comm: Option<Comm>,
    /// The peer, while every folded report had the same one.
    raddr: Option<IpAddr>,
}

/// Reports of one kind folded in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    pub key: FoldKey,
    pub count: u64,
    /// Event times of the first and last folded report.
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub comm: Option<Comm>,
    /// `None` when the folded reports had different peers.
    pub raddr: Option<IpAddr>,
    /// When the interval began (the earliest time of a report folded in it, or when the agent
    /// folded the first, if sooner) and when this record went out: it holds every folded report.
    pub since_ns: u64,
    pub at_ns: u64,
    pub max_rate: u32,
}

/// Reports per kind and per verdict (the kind's `other`), out or folded, this second and the
/// last, and when this second began.
#[derive(Debug)]
struct StormingKinds {
    kinds: SecondCounts,
    verdicts: SecondCounts,
    began_ns: u64,
}

impl StormingKinds {
    fn new(now_ns: u64) -> Self {
        Self { kinds: SecondCounts::default(), verdicts: SecondCounts::default(), began_ns: now_ns }
    }

    /// Count a report of kind `key`; is that kind, or its verdict, storming (not quiet)?
    fn count(&mut self, key: FoldKey, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.began_ns);
        if elapsed >= NS_PER_SEC {
            self.kinds.next_second(elapsed);
            self.verdicts.next_second(elapsed);
            self.began_ns = now_ns;
        }
        let kind = self.kinds.count(key, QUIET_REPORTS);
        let verdict = self.verdicts.count(key.other(), QUIET_REPORTS * 10);
        kind || verdict
    }
}

/// Reports per key this second and the last; at most [`MAX_KEYS`] keys a second (any other
/// stays quiet).
#[derive(Debug, Default)]
struct SecondCounts {
    this_second: FastMap<FoldKey, u32>,
    last_second: FastMap<FoldKey, u32>,
}

impl SecondCounts {
    fn next_second(&mut self, elapsed_ns: u64) {
        std::mem::swap(&mut self.this_second, &mut self.last_second);
        self.this_second.clear();
        if elapsed_ns >= 2 * NS_PER_SEC {
            self.last_second.clear();
        }
    }

    /// Count a report under `key`: has it had `quiet` or more in the last second, or more so
    /// far in this one?
    fn count(&mut self, key: FoldKey, quiet: u32) -> bool {
        let before = self.last_second.get(&key).copied().unwrap_or(0);
        let room = self.this_second.len() < MAX_KEYS;
        let now = match self.this_second.get_mut(&key) {
            Some(n) => {
                *n += 1;
                *n
            }
            None if room => {
                self.this_second.insert(key, 1);
                1
            }
            None => 0,
        };
        before >= quiet || now > quiet
    }
}

/// The bucket and the folded kinds of the current interval.
#[derive(Debug)]
pub struct Folder {
    max_rate: u32,
    /// `None` with `--max-rate 0`: every report goes out.
    bucket: Option<TokenBucket>,
    open: FastMap<FoldKey, Aggregate>,
    since_ns: Option<u64>,
    storms: StormingKinds,
}

impl Folder {
    pub fn new(max_rate: u32, now_ns: u64) -> Self {
        Self {
            max_rate,
            bucket: (max_rate > 0).then(|| TokenBucket::new(max_rate, now_ns)),
            open: FastMap::default(),
            since_ns: None,
            storms: StormingKinds::new(now_ns),
        }
    }

    /// Should `r` go out on its own? If not, it has been folded.
    pub fn admit(&mut self, r: &Report, now_ns: u64) -> bool {
        let Some(bucket) = self.bucket.as_mut() else { return true };
        let key = FoldKey::of(r);
        let reserve = if self.storms.count(key, now_ns) { u64::from(self.max_rate) / RESERVE_SHARE } else { 0 };
        if bucket.take_leaving(now_ns, reserve) {
            return true;
        }
        self.fold(r, 1, r.ts_ns, now_ns);
        false
    }

    /// Fold `count` reports like `r`, the last of them at `last_ts_ns` (the kernel side counts
    /// some itself: see `kernel_folds`).
    pub fn fold(&mut self, r: &Report, count: u64, last_ts_ns: u64, now_ns: u64) {
        let mut key = FoldKey::of(r);
        if self.open.len() >= MAX_KEYS && !self.open.contains_key(&key) {
            key = key.other();
        }
        let raddr = r.endpoints.raddr;
        let agg = self.open.entry(key).or_insert_with(|| Aggregate {
            count: 0,
            first_ts_ns: r.ts_ns,
            last_ts_ns,
            comm: r.owner.as_ref().map(|o| o.comm),
            raddr: Some(raddr),
        });
        agg.count += count;
        agg.first_ts_ns = agg.first_ts_ns.min(r.ts_ns);
        agg.last_ts_ns = agg.last_ts_ns.max(last_ts_ns);
        if agg.raddr != Some(raddr) {
            agg.raddr = None;
        }
        // Reports come to be folded after their time (held, or counted in the kernel first).
        let since = self.since_ns.get_or_insert(now_ns);
        *since = (*since).min(r.ts_ns);
    }

    /// An interval of folded reports is over.
    pub fn due(&self, now_ns: u64) -> bool {
        self.since_ns.is_some_and(|since| now_ns.saturating_sub(since) >= INTERVAL_NS)
    }

    /// The folded records of the interval, oldest first, and a new interval.
    pub fn take(&mut self, now_ns: u64) -> Vec<Folded> {
        let Some(since_ns) = self.since_ns.take() else { return Vec::new() };
        let mut out: Vec<Folded> = self
            .open
            .drain()
            .map(|(key, a)| Folded {
                key,
                count: a.count,
                first_ts_ns: a.first_ts_ns,
                last_ts_ns: a.last_ts_ns,
                comm: a.comm,
                raddr: a.raddr,
                since_ns,
                at_ns: now_ns,
                max_rate: self.max_rate,
            })
            .collect();
        out.sort_by_key(|f| (f.first_ts_ns, f.last_ts_ns));
        // A storm's many kinds must not keep their table's memory for good.
        if self.open.capacity() > 64 {
            self.open.shrink_to(64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Endpoints, Family, Task},
        report::{Attribution, Verdict},
    };

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_000 * NS_PER_SEC;

    fn refused(pid: u32, lport: u16, ts_ns: u64) -> Report {
        Report {
            kind: ReportType::Reset,
            direction: Some(Direction::Received),
            verdict: Verdict { cause: Cause::Refused, origin: Origin::Peer, benign: false, why: "refused".into() },
            kernel_reason: None,
            state: "SYN_SENT",
            endpoints: Endpoints {
                family: Family::Ipv4,
                laddr: "10.0.0.1".parse().unwrap(),
                lport,
                raddr: "10.0.0.2".parse().unwrap(),
                rport: 8080,
            },
            owner: Some(Task { pid, tid: pid, comm: "curl".into(), cgroup: 0 }),
            attribution: Attribution::SocketOwner,
            netns: 7,
            cgroup: 0,
            workload: None,
            thread: None,
            ts_ns,
            peer_cause: None,
            current: None,
            retransmits: 0,
            active_open: true,
            evidence: None,
        }
    }

    fn no_listener(lport: u16, raddr: &str, ts_ns: u64) -> Report {
        let mut r = refused(0, lport, ts_ns);
        r.direction = Some(Direction::Sent);
        r.verdict = Verdict { cause: Cause::NoListener, origin: Origin::Stack, benign: false, why: "nobody listens".into() };
        r.endpoints.raddr = raddr.parse().unwrap();
        r.endpoints.rport = 40_000;
        r.owner = None;
        r.active_open = false;
        r
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10, T0);
        assert_eq!((0..20).filter(|_| b.take(T0)).count(), 10, "a full second's worth at once");
        assert!(!b.take(T0 + 99 * MS), "no token before 1/rate s");
        assert!(b.take(T0 + 100 * MS));
        assert!(!b.take(T0 + 150 * MS));
        // Over a long run, tokens arrive at exactly the rate, whatever the call pattern.
        let granted = (1..=10_000u64).filter(|i| b.take(T0 + 100 * MS + i * MS)).count();
        assert_eq!(granted, 100, "10 s at 10/s");
    }

    #[test]
    fn bucket_saves_up_at_most_one_second() {
        let mut b = TokenBucket::new(5, T0);
        while b.take(T0) {}
        // An hour idle refills no more than the burst (and does not overflow).
        let later = T0 + 3_600 * NS_PER_SEC;
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 5);
        let mut huge = TokenBucket::new(u32::MAX, 0);
        assert!(huge.take(u64::MAX / 2));
        // Time going backwards (a caller passing an older time) grants nothing extra.
        let mut b = TokenBucket::new(1, T0);
        assert!(b.take(T0));
        assert!(!b.take(T0 - NS_PER_SEC));
        assert!(!b.take(T0 + NS_PER_SEC / 2));
        assert!(b.take(T0 + NS_PER_SEC));
    }

    #[test]
    fn zero_rate_reports_everything() {
        let mut f = Folder::new(0, T0);
        assert!((0..100_000).all(|i| f.admit(&refused(1, 30_000, T0 + i), T0)));
        assert!(!f.due(T0 + 10 * NS_PER_SEC));
        assert!(f.take(T0 + 10 * NS_PER_SEC).is_empty());
    }

    #[test]
    fn reports_over_the_rate_fold_with_exact_counts() {
        let mut f = Folder::new(3, T0);
        // A client refused 10 times (a new local port each time) and a closed port hit 10 times
        // by two peers, all at once.
        let mut out = 0;
        for i in 0..10u16 {
            out += usize::from(f.admit(&refused(42, 30_000 + i, T0 + u64::from(i)), T0));
            let peer = if i < 5 { "10.0.0.1" } else { "10.0.0.3" };
            out += usize::from(f.admit(&no_listener(9, peer, T0 + u64::from(i)), T0));
        }
        assert_eq!(out, 3, "the burst");
        assert!(!f.due(T0 + INTERVAL_NS - 1));
        assert!(f.due(T0 + INTERVAL_NS));
        let folded = f.take(T0 + INTERVAL_NS);
        assert_eq!(folded.len(), 2, "{folded:?}");
        assert_eq!(folded.iter().map(|r| r.count).sum::<u64>(), 17);
        let client = folded.iter().find(|r| r.key.cause == Cause::Refused).unwrap();
        assert_eq!(client.key.port, Port::Remote(8080), "a client's kind is the service it called");
        assert_eq!((client.key.pid, client.comm.map(|c| c.to_string())), (Some(42), Some("curl".into())));
        assert_eq!(client.raddr, "10.0.0.2".parse().ok());
        let server = folded.iter().find(|r| r.key.cause == Cause::NoListener).unwrap();
        assert_eq!(server.key.port, Port::Local(9));
        assert_eq!(server.key.pid, None);
        assert_eq!(server.raddr, None, "two peers");
        assert_eq!((server.first_ts_ns, server.last_ts_ns), (T0 + 1, T0 + 9), "the first ones went out");
        assert_eq!((server.since_ns, server.at_ns, server.max_rate), (T0, T0 + INTERVAL_NS, 3));
        // The interval is over: nothing is held, and nothing is due until more is folded.
        assert!(!f.due(T0 + 5 * INTERVAL_NS));
        assert!(f.take(T0 + 5 * INTERVAL_NS).is_empty());
    }

    #[test]
    fn kinds_differ_by_verdict_owner_port_and_namespace() {
        let base = refused(42, 30_000, T0);
        let mut variants = vec![base.clone()];
        let mut v = base.clone();
        v.verdict.benign = true;
        variants.push(v);
        let mut v = base.clone();
        v.verdict.origin = Origin::Network;
        variants.push(v);
        let mut v = base.clone();
        v.owner = Some(Task { pid: 43, tid: 43, comm: "curl".into(), cgroup: 0 });
        variants.push(v);
        let mut v = base.clone();
        v.endpoints.rport = 8081;
        variants.push(v);
        let mut v = base.clone();
        v.netns = 8;
        variants.push(v);
        let mut v = base.clone();
        v.active_open = false;
        variants.push(v);
        let keys: std::collections::HashSet<FoldKey> = variants.iter().map(FoldKey::of).collect();
        assert_eq!(keys.len(), variants.len());
        // What does not name a kind: the local port of a connection this host opened, the time.
        assert_eq!(FoldKey::of(&base), FoldKey::of(&refused(42, 31_000, T0 + 5)));
    }

    #[test]
    fn an_interval_begins_no_later_than_its_earliest_report() {
        // Counted in the kernel half a second before the agent folds them.
        let mut f = Folder::new(1, T0);
        f.fold(&refused(42, 30_000, T0 - 500), 1500, T0 - 400, T0);
        let folded = f.take(T0 + INTERVAL_NS);
        assert_eq!((folded[0].since_ns, folded[0].first_ts_ns, folded[0].count), (T0 - 500, T0 - 500, 1500));
    }

    #[test]
    fn kinds_are_bounded_and_the_rest_is_still_counted() {
        let mut f = Folder::new(1, T0);
        assert!(f.admit(&no_listener(1, "10.0.0.1", T0), T0));
        let ports = MAX_KEYS as u16 + 100;
        for p in 1..=ports {
            assert!(!f.admit(&no_listener(p, "10.0.0.1", T0 + u64::from(p)), T0));
        }
        let folded = f.take(T0 + INTERVAL_NS);
        assert_eq!(folded.len(), MAX_KEYS + 1);
        let other: Vec<&Folded> = folded.iter().filter(|r| r.key.port == Port::Other).collect();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].count, 100);
        assert_eq!((other[0].key.cause, other[0].key.direction, other[0].key.netns), (Cause::NoListener, Some(Direction::Sent), 0));
        assert_eq!(folded.iter().map(|r| r.count).sum::<u64>(), u64::from(ports));
        // A new interval starts with room for new kinds.
        let later = T0 + INTERVAL_NS + 1;
        assert!(f.admit(&no_listener(60_000, "10.0.0.1", later), later), "a second's token");
        assert!(!f.admit(&no_listener(60_000, "10.0.0.1", later), later));
        assert_eq!(f.take(T0 + 2 * INTERVAL_NS)[0].key.port, Port::Local(60_000));
    }

    #[test]
    fn a_storm_leaves_room_for_a_rare_kind_of_reset() {
        // 3 s of 2000 refusals a second against --max-rate 100; now and then another kind, also
        // just as a second begins, when the storm's kind has its first reports of that second.
        let mut f = Folder::new(100, T0);
        let mut individual = 0u64;
        for i in 0..6_000u64 {
            let now = T0 + i * NS_PER_SEC / 2000;
            individual += u64::from(f.admit(&refused(42, (i % 30_000) as u16, now), now));
            if i % 500 == 1 {
                assert!(f.admit(&no_listener(9, "10.0.0.1", now), now), "the rare kind at {i}");
                individual += 1;
            }
        }
        // Never more than the bucket gives: the burst and the rate.
        assert!(individual <= 100 + 300, "{individual}");
        // The storm still has the rate, less the reserve.
        assert!(individual >= 100 + 300 - 100 / RESERVE_SHARE * 4, "{individual}");
        // Rare kinds all at once find the reserve at least, though the storm came first.
        let now = T0 + 3 * NS_PER_SEC;
        let rare = (0..50u16).filter(|p| f.admit(&no_listener(1_000 + p, "10.0.0.1", now), now)).count() as u64;
        assert!((100 / RESERVE_SHARE..=100 / RESERVE_SHARE + 1).contains(&rare), "{rare}");
    }

    #[test]
    fn a_port_scan_is_one_storming_verdict_and_leaves_room_for_a_rare_one() {
        // A closed port a report, 2000 a second against --max-rate 100: every port its own kind.
        let mut f = Folder::new(100, T0);
        let mut individual = 0u64;
        let mut rare = Vec::new();
        for i in 0..4_000u64 {
            let now = T0 + i * NS_PER_SEC / 2000;
            individual += u64::from(f.admit(&no_listener((i % 60_000) as u16 + 1, "10.0.0.1", now), now));
            if i % 500 == 250 {
                rare.push(f.admit(&refused(7, 40_000, now), now));
            }
        }
        assert!(rare.iter().all(|r| *r), "{rare:?}");
        assert!(individual <= 100 + 200, "{individual}");
        // Output stays bounded: at most MAX_KEYS kinds an interval, the rest in `other`.
        let folded = f.take(T0 + 2 * NS_PER_SEC);
        assert!(folded.len() <= MAX_KEYS + 1, "{}", folded.len());
        assert_eq!(folded.iter().map(|r| r.count).sum::<u64>() + individual, 4_000);
    }

    #[test]
    fn a_steady_storm_goes_out_at_the_rate_and_every_report_is_counted() {
        // 10 s of 2000 reports a second against --max-rate 100, folded records every second.
        let mut f = Folder::new(100, T0);
        let (mut individual, mut folded, mut records) = (0u64, 0u64, 0);
        for i in 0..20_000u64 {
            let now = T0 + i * NS_PER_SEC / 2000;
            individual += u64::from(f.admit(&refused(42, (i % 30_000) as u16, now), now));
            if f.due(now) {
                let out = f.take(now);
                records += out.len();
                folded += out.iter().map(|r| r.count).sum::<u64>();
            }
        }
        let out = f.take(T0 + 10 * NS_PER_SEC);
        records += out.len();
        folded += out.iter().map(|r| r.count).sum::<u64>();
        assert_eq!(individual + folded, 20_000);
        assert!((1000..=1100).contains(&individual), "burst + rate × 10 s: {individual}");
        assert!((9..=11).contains(&records), "one record a second: {records}");
    }
}
