//! The resets the kernel side counted past `--max-rate` instead of sending each across the ring
//! buffer (`rsttrace-ebpf/src/fold.rs`): refused SYNs and the refusals connecting sockets
//! received, aborts with SO_LINGER 0 of sockets this host accepted and the resets connections
//! it opened received in ESTABLISHED. The kernel counts under a generation the agent moves on
//! once a second; a generation is taken (read and deleted) only once the kernel has left it for
//! a whole second, so no count is taken twice or missed. Each key becomes a report with its count, for the
//! folder, the summary and the metrics.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{Array, MapData, PerCpuHashMap},
    Ebpf,
};
use rsttrace_common::{
    FoldedCount, FoldedKey, FOLDED_ABORT_LINGER0, FOLDED_REFUSAL_ANSWERED_HERE, FOLDED_REFUSAL_RECEIVED, FOLDED_REFUSED_SYN, FOLDED_RESET_ABORTED_HERE, FOLDED_RESET_RECEIVED,
};

use crate::{
    classify::{classify, Named, Story, Trigger},
    event::{Comm, Endpoints, Family, Task, TcpState},
    judge::Judge,
    loader::LoadError,
    report::{Attribution, Cause, Direction, Report, ReportType},
};

/// How often the generation moves on.
const GENERATION_NS: u64 = 1_000_000_000;

/// One key's counts, summed over the CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFolded {
    pub key: FoldedKey,
    pub count: u64,
    /// `bpf_ktime_get_ns()` of the first and last one counted.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The socket's owner (thread id and name): a refusal's and a received reset's from its
    /// record, an abort's the task that closed it.
    pub owner: Option<(u32, Comm)>,
}

impl KernelFolded {
    /// Sum one key's per-CPU counts; `None` when no CPU counted anything.
    pub fn sum(key: FoldedKey, per_cpu: &[FoldedCount]) -> Option<Self> {
        let counted = || per_cpu.iter().filter(|c| c.count > 0);
        // Saturating: a map read back is not trusted to add up.
        let count = counted().fold(0u64, |sum, c| sum.saturating_add(c.count));
        let first = counted().min_by_key(|c| c.first_ns)?;
        Some(Self {
            key,
            count,
            first_ns: first.first_ns,
            last_ns: counted().map(|c| c.last_ns).max().unwrap_or(first.last_ns),
            owner: (key.tgid != 0).then(|| (first.pid, Comm::from_kernel(&first.comm))),
        })
    }

    /// The report each of them would have made, timed at the first; `None` for a kind this
    /// agent does not know.
    pub fn report(&self, judge: &Judge) -> Option<Report> {
        let k = &self.key;
        let addr = match k.ip_version {
            4 => IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3])),
            6 => IpAddr::V6(Ipv6Addr::from(k.addr)),
            _ => return None,
        };
        let family = if k.ip_version == 4 { Family::Ipv4 } else { Family::Ipv6 };
        // The local address is not kept: the refused port and the other end name the kind.
        let unspecified = if k.ip_version == 4 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        let owner = self.owner.map(|(tid, comm)| Task { pid: k.tgid, tid, comm, cgroup: 0 });
        // The same story as one judged alone: its owner, and what the other end here sent.
        let story = |peer_sent| Story { owner: owner.as_ref().map(Named::from), peer_sent, ..Story::default() };
        let (direction, endpoints, verdict, state, owner, peer_cause) = match k.kind {
            FOLDED_REFUSED_SYN => {
                let endpoints = Endpoints { family, laddr: unspecified, lport: k.port, raddr: addr, rport: 0 }.as_on_the_wire();
                let trigger = Trigger::Sent { reason: None, state: None, trigger_syn: Some(true), facts: None };
                (Direction::Sent, endpoints, classify(&trigger, &Story::default()), "CLOSE", None, None)
            }
            FOLDED_REFUSAL_RECEIVED | FOLDED_REFUSAL_ANSWERED_HERE => {
                // A dual-stack socket's IPv4 connection is reported as IPv4, as one alone is.
                let endpoints = Endpoints { family, laddr: unspecified, lport: 0, raddr: addr, rport: k.port }.as_on_the_wire();
                let answered_here = (k.kind == FOLDED_REFUSAL_ANSWERED_HERE).then_some(Cause::NoListener);
                let verdict = judge.refusal_verdict(&endpoints, answered_here, self.last_ns);
                (Direction::Received, endpoints, verdict, "SYN_SENT", owner, answered_here)
            }
            FOLDED_ABORT_LINGER0 => {
                let endpoints = Endpoints { family, laddr: unspecified, lport: k.port, raddr: addr, rport: 0 }.as_on_the_wire();
                let trigger = Trigger::Sent { reason: Some("TCP_STATE"), state: Some(TcpState::Close), trigger_syn: None, facts: None };
                (Direction::Sent, endpoints, classify(&trigger, &story(None)), "CLOSE", owner, None)
            }
            FOLDED_RESET_RECEIVED | FOLDED_RESET_ABORTED_HERE => {
                // The kernel side counts these only when no other socket of this host was the
                // other end, or that end's abort was noted there.
                let endpoints = Endpoints { family, laddr: unspecified, lport: 0, raddr: addr, rport: k.port }.as_on_the_wire();
                let aborted_here = (k.kind == FOLDED_RESET_ABORTED_HERE).then_some(Cause::AppAbortLinger0);
                let trigger = Trigger::Received { state: Some(TcpState::Established) };
                (Direction::Received, endpoints, classify(&trigger, &story(aborted_here)), "ESTABLISHED", owner, aborted_here)
            }
            _ => return None,
        };
        Some(Report {
            kind: ReportType::Reset,
            direction: Some(direction),
            verdict,
            kernel_reason: None,
            state,
            endpoints,
            attribution: match owner {
                None => Attribution::None,
                // The task in whose close() the RST went out.
                Some(_) if k.kind == FOLDED_ABORT_LINGER0 => Attribution::CurrentTask,
                Some(_) => Attribution::SocketOwner,
            },
            owner,
            netns: k.netns,
            cgroup: k.cgroup,
            workload: None,
            thread: None,
            ts_ns: self.first_ns,
            peer_cause,
            current: None,
            retransmits: 0,
            // Only connections this host opened receive what it counts; it sends for the others.
            active_open: direction == Direction::Received,
            evidence: None,
        })
    }
}

/// The kernel side's counts and its generation.
pub struct KernelFolds {
    counts: PerCpuHashMap<MapData, FoldedKey, FoldedCount>,
    generation: Array<MapData, u32>,
    current: u32,
    moved_ns: u64,
}

impl KernelFolds {
    /// Take the maps out of the loaded object (before it is dropped at exit: the counts are read
    /// once more after the programs are detached).
    pub fn new(ebpf: &mut Ebpf, now_ns: u64) -> Result<Self, LoadError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::Map(name));
        let counts = PerCpuHashMap::try_from(take("FOLDED")?).map_err(|_| LoadError::Map("FOLDED"))?;
        let generation = Array::try_from(take("FOLD_GENERATION")?).map_err(|_| LoadError::Map("FOLD_GENERATION"))?;
        Ok(Self { counts, generation, current: 0, moved_ns: now_ns })
    }

    /// Once a second, move the generation on and take every key of the ones the kernel has left
    /// for a second. `all` (the programs detached, at exit): every key now.
    pub fn take(&mut self, now_ns: u64, all: bool) -> Vec<KernelFolded> {
        if !all {
            if now_ns.saturating_sub(self.moved_ns) < GENERATION_NS {
                return Vec::new();
            }
            self.moved_ns = now_ns;
            let next = self.current.wrapping_add(1);
            if let Err(e) = self.generation.set(0, next, 0) {
                // The kernel counts on under the current one; it is taken once the move works.
                log::warn!("cannot move the kernel's fold generation on: {e}");
                return Vec::new();
            }
            self.current = next;
        }
        // A program that read the generation just before it moved may still count under it.
        let left = |key: &FoldedKey| all || self.current.wrapping_sub(key.generation) >= 2;
        let keys: Vec<FoldedKey> = self.counts.keys().filter_map(Result::ok).filter(|k| left(k)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Left for the next look when it cannot be read: deleting it would lose its counts.
            let Ok(per_cpu) = self.counts.get(&key, 0) else { continue };
            out.extend(KernelFolded::sum(key, &per_cpu));
            let _ = self.counts.remove(&key);
        }
        out.sort_by_key(|f| f.first_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{judge::Visibility, report::{Cause, Origin}};

    fn key(kind: u8) -> FoldedKey {
        FoldedKey { generation: 3, kind, ip_version: 4, port: 9, netns: 4026531840, tgid: 0, cgroup: 0, addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }
    }

    fn on_cpu(count: u64, first_ns: u64, last_ns: u64, pid: u32) -> FoldedCount {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        FoldedCount { count, first_ns, last_ns, pid, _pad: 0, comm }
    }

    #[test]
    fn counts_add_up_over_the_cpus_that_counted() {
        let per_cpu = [on_cpu(0, 0, 0, 0), on_cpu(5, 300, 900, 41), on_cpu(2, 100, 400, 42)];
        let f = KernelFolded::sum(FoldedKey { tgid: 40, ..key(FOLDED_REFUSAL_RECEIVED) }, &per_cpu).unwrap();
        assert_eq!((f.count, f.first_ns, f.last_ns), (7, 100, 900));
        // The owner as the first CPU to count one saw it.
        assert_eq!(f.owner.map(|(tid, comm)| (tid, comm.as_str().to_string())), Some((42, "curl".to_string())));
        assert_eq!(KernelFolded::sum(key(FOLDED_REFUSED_SYN), &[on_cpu(0, 0, 0, 0)]), None);
    }

    #[test]
    fn a_refused_syn_reports_as_no_listener_sent_for_its_local_port() {
        let judge = Judge::new(Visibility::ALL);
        let f = KernelFolded::sum(key(FOLDED_REFUSED_SYN), &[on_cpu(4, 10, 20, 0)]).unwrap();
        let r = f.report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.verdict.origin, r.direction), (Cause::NoListener, Origin::Stack, Some(Direction::Sent)));
        assert_eq!((r.endpoints.lport, r.endpoints.raddr, r.active_open, r.owner.is_none()), (9, "10.0.0.2".parse().unwrap(), false, true));
        assert_eq!((r.ts_ns, r.netns), (10, 4026531840));
    }

    #[test]
    fn a_refusal_reports_as_refused_by_the_peer_for_its_remote_port_and_owner() {
        let judge = Judge::new(Visibility::ALL);
        let mut k = FoldedKey { tgid: 40, cgroup: 77, ..key(FOLDED_REFUSAL_RECEIVED) };
        k.ip_version = 6;
        k.addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let r = KernelFolded::sum(k, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.verdict.origin, r.direction), (Cause::Refused, Origin::Peer, Some(Direction::Received)));
        assert_eq!((r.endpoints.rport, r.endpoints.raddr, r.active_open, r.state), (9, "fd00::2".parse().unwrap(), true, "SYN_SENT"));
        let owner = r.owner.unwrap();
        assert_eq!((owner.pid, owner.tid, owner.comm.as_str(), r.cgroup), (40, 41, "curl", 77));
        // Refused by this host's own stack: its RST's cause, as for one judged alone.
        let here = FoldedKey { kind: FOLDED_REFUSAL_ANSWERED_HERE, ..k };
        let r = KernelFolded::sum(here, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::Refused, Some(Cause::NoListener)));
        // A dual-stack socket's IPv4 connection is reported as IPv4.
        let mapped = FoldedKey { addr: "::ffff:10.0.0.2".parse::<Ipv6Addr>().unwrap().octets(), ..k };
        let r = KernelFolded::sum(mapped, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.endpoints.family, r.endpoints.raddr), (Family::Ipv4, "10.0.0.2".parse().unwrap()));
        // A kind this agent does not know is not made up.
        assert!(KernelFolded::sum(key(9), &[on_cpu(1, 1, 1, 0)]).unwrap().report(&judge).is_none());
    }

    #[test]
    fn an_abort_reports_as_linger0_sent_for_its_local_port_by_the_task_that_closed() {
        let judge = Judge::new(Visibility::ALL);
        let k = FoldedKey { tgid: 40, port: 8080, ..key(FOLDED_ABORT_LINGER0) };
        let r = KernelFolded::sum(k, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.verdict.origin, r.verdict.benign, r.direction), (Cause::AppAbortLinger0, Origin::Application, false, Some(Direction::Sent)));
        assert!(r.verdict.why.starts_with("curl[40] closed with SO_LINGER 0"), "{}", r.verdict.why);
        assert_eq!((r.endpoints.lport, r.endpoints.raddr, r.active_open, r.state, r.attribution), (8080, "10.0.0.2".parse().unwrap(), false, "CLOSE", Attribution::CurrentTask));
        assert_eq!(r.owner.map(|o| (o.pid, o.tid)), Some((40, 41)));
    }

    #[test]
    fn a_received_reset_reports_as_the_peers_for_its_remote_port_and_owner() {
        let judge = Judge::new(Visibility::ALL);
        let k = FoldedKey { tgid: 40, port: 8080, ..key(FOLDED_RESET_RECEIVED) };
        let r = KernelFolded::sum(k, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.verdict.origin, r.direction, r.peer_cause), (Cause::PeerReset, Origin::Peer, Some(Direction::Received), None));
        assert_eq!((r.endpoints.rport, r.endpoints.raddr, r.active_open, r.state, r.attribution), (8080, "10.0.0.2".parse().unwrap(), true, "ESTABLISHED", Attribution::SocketOwner));
        // Its other end here aborted it: that RST's cause, as for one judged alone.
        let here = FoldedKey { kind: FOLDED_RESET_ABORTED_HERE, ..k };
        let r = KernelFolded::sum(here, &[on_cpu(4, 10, 20, 41)]).unwrap().report(&judge).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::AppAbortLinger0)));
        assert!(r.verdict.why.contains("(app_abort_linger0)"), "{}", r.verdict.why);
    }
}
