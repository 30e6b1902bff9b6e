//! Storm folding in the kernel. Past `--max-rate` a second of one kind on a CPU, the resets whose
//! verdict needs nothing from the agent's history are counted here, per kind, instead of
//! crossing the ring buffer one by one:
//! - a RST this host sent to a bare SYN no socket took (`no_listener`), and one a socket in
//!   SYN_SENT received (`refused`, unless the agent finds a listener of this host behind the
//!   address and this host's stack did not send that RST);
//! - a RST a socket this host accepted sent from close() with SO_LINGER 0 (`app_abort_linger0`),
//!   and one a connection this host opened received in ESTABLISHED (`peer_reset`), unless its
//!   other end is a socket of this host whose RST was not noted here (the agent then tells a
//!   genuine RST from a forged one).
//!
//! [`sent_here`] tells the receiving end what this host sent, from a note each such RST leaves.
//! A storm of refused connects is made of the first two, one of aborted connections of the
//! other two; crossing, each costs a ring-buffer slot and the agent's decoding and judging,
//! about as much again as the tracing itself. Below the rate everything crosses, so every
//! report is written as before; above it the agent would only have folded them. The agent takes
//! the counts once a second (`kernel_folds.rs` there) and folds them with its own, so every reset
//! is still counted.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
};
use rsttrace_common::{FoldedCount, FoldedKey, Owner, FOLDED_ABORT_LINGER0, FOLDED_REFUSED_SYN};

use crate::{
    emit::{netns_of, trigger_key, trigger_of, Trigger, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN},
    maps::{ResetHere, TupleKey, FOLDED, FOLD_BUCKETS, FOLD_COST_NS, FOLD_GENERATION, OFFSETS, RESETS_HERE, RESETS_HERE_BUCKET_BITS},
};

const NS_PER_SEC: u64 = 1_000_000_000;
/// How long a note answers for the RST it names: the RST arrives within microseconds over
/// loopback or veth (milliseconds in an emulated guest). Kept short so that a later connection
/// on the same 4-tuple (a retry from a fixed port) is not taken for it.
const SENT_HERE_NS: u64 = NS_PER_SEC / 4;

/// What a note in `RESETS_HERE` says this host sent ([`ResetHere::kind`]; 0 in a slot never
/// written).
pub const REFUSED_SYN: u32 = 1;
pub const ABORT_LINGER0: u32 = 2;

/// The kinds counted here, each with a bucket of its own on each CPU: a storm of one kind must
/// not take the tokens of a rare reset of another (a connection's `peer_reset` among a port's
/// refusals), which then goes to the agent with all it knows.
#[derive(Clone, Copy)]
pub enum Storm {
    RefusedSyn = 0,
    AbortLinger0 = 1,
    Refusal = 2,
    PeerReset = 3,
}
pub const STORMS: u32 = 4;

/// A load-time constant: with it off (`--max-rate 0`, a filter, `--network-evidence`) the
/// verifier drops every path below.
#[inline(always)]
pub fn enabled() -> bool {
    FOLD_COST_NS.load() != 0
}

/// Whether one more reset of kind `storm` may cross from this CPU now: a token bucket of a
/// second's credit, refilled with time, a token costing `FOLD_COST_NS`. Takes the token.
#[inline(always)]
fn crosses(now: u64, storm: Storm) -> bool {
    let cost = FOLD_COST_NS.load();
    let Some(bucket) = FOLD_BUCKETS.get_ptr_mut(storm as u32) else { return true };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
    unsafe {
        let earned = now.wrapping_sub((*bucket).last_ns).min(NS_PER_SEC);
        let credit = ((*bucket).credit_ns + earned).min(NS_PER_SEC);
        (*bucket).last_ns = now;
        if credit >= cost {
            (*bucket).credit_ns = credit - cost;
            true
        } else {
            (*bucket).credit_ns = credit;
            false
        }
    }
}

/// Count one reset under `key` (in the current generation) on this CPU; `false` when the table
/// is full, and the reset must cross.
#[inline(always)]
fn count(key: &mut FoldedKey, now: u64, owner: Option<&Owner>) -> bool {
    key.generation = FOLD_GENERATION.get(0).copied().unwrap_or(0);
    for _ in 0..2 {
        if let Some(c) = FOLDED.get_ptr_mut(&*key) {
            // SAFETY: this CPU's value of a per-CPU map, valid for this program run.
            unsafe {
                if (*c).count == 0 {
                    // The key is another CPU's so far.
                    (*c).first_ns = now;
                    if let Some(o) = owner {
                        (*c).pid = o.pid;
                        (*c).comm = o.comm;
                    }
                }
                (*c).count += 1;
                (*c).last_ns = now;
            }
            return true;
        }
        let mut first = FoldedCount { count: 1, first_ns: now, last_ns: now, ..FoldedCount::default() };
        if let Some(o) = owner {
            first.pid = o.pid;
            first.comm = o.comm;
        }
        if FOLDED.insert(&*key, &first, BPF_NOEXIST as u64).is_ok() {
            return true;
        }
        // Full, or another CPU inserted the key just now: look once more.
    }
    false
}

/// A RST about to go out with no socket for segment `skb`: counted here instead, when the
/// segment is a bare SYN (a port nobody listens on) and this CPU is past its rate.
#[inline(always)]
pub fn refused_syn(skb: u64) -> bool {
    if !enabled() {
        return false;
    }
    let offsets = OFFSETS.load();
    match trigger_of(skb, &offsets) {
        Some(t) => refused_syn_seen(&t, || netns_of(0, skb, &offsets)),
        None => false,
    }
}

/// [`refused_syn`] for a segment already read (`t`), whose namespace `netns` reads.
#[inline(always)]
pub fn refused_syn_seen(t: &Trigger, netns: impl FnOnce() -> u32) -> bool {
    if !enabled() {
        return false;
    }
    if t.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) != TCP_FLAG_SYN {
        return false;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    note_sent_here(&trigger_key(t), REFUSED_SYN, now);
    if crosses(now, Storm::RefusedSyn) {
        return false;
    }
    let mut key = FoldedKey {
        generation: 0,
        kind: FOLDED_REFUSED_SYN,
        ip_version: t.ip_version,
        port: t.dport,
        netns: netns(),
        tgid: 0,
        cgroup: 0,
        addr: t.saddr,
    };
    count(&mut key, now, None)
}

/// A socket this host accepted sends a RST closing with SO_LINGER 0 (see
/// `typed::abort_folded`): its peer, namespace and cgroup.
pub struct Abort {
    pub ip_version: u8,
    /// IPv4 in the first four bytes.
    pub raddr: [u8; 16],
    pub netns: u32,
    pub cgroup: u64,
}

/// The connection `sending` (its own end first) goes to CLOSE in close() with SO_LINGER 0, and
/// the RST comes next in the same call (see `typed::Typed::closes_abortively`). Noted now, before
/// that RST is sent: its other end, when it is on this host, may take it in before the RST's own
/// tracepoint fires (over loopback and veth, inside the sending), and must know it was no
/// forgery whether or not the RST is counted here.
#[inline(always)]
pub fn abort_coming(sending: &TupleKey) {
    if enabled() {
        // SAFETY: helper without preconditions.
        note_sent_here(sending, ABORT_LINGER0, unsafe { bpf_ktime_get_ns() });
    }
}

/// The abort of the connection `sending` (its own end first): counted here instead, when this
/// CPU is past its rate and its CLOSE noted it as coming ([`abort_coming`]), so that its other
/// end knows it. Only then does `counted` read its owner (the task closing it) and the rest;
/// `None` from it: it crosses.
#[inline(always)]
pub fn abort_sent(sending: &TupleKey, counted: impl FnOnce() -> Option<(Owner, Abort)>) -> bool {
    if !enabled() {
        return false;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if noted(sending, 0, now) != ABORT_LINGER0 || crosses(now, Storm::AbortLinger0) {
        return false;
    }
    let Some((owner, abort)) = counted() else { return false };
    let mut key = FoldedKey {
        generation: 0,
        kind: FOLDED_ABORT_LINGER0,
        ip_version: abort.ip_version,
        port: sending.lport,
        netns: abort.netns,
        tgid: owner.tgid,
        cgroup: abort.cgroup,
        addr: abort.raddr,
    };
    count(&mut key, now, Some(&owner))
}

/// The first of the two slots of `sending`'s bucket.
#[inline(always)]
fn here_bucket(sending: &TupleKey) -> u32 {
    sending.hash(RESETS_HERE_BUCKET_BITS) * 2
}

/// This host sends a RST of `kind` on the connection `sending` (its own end first) now. Past
/// the rate it is counted here, and the agent never sees it: the other end, when it is on this
/// host too, learns from this that its RST was no forgery. Two slots a bucket, the older one
/// taken: a note is lost only to two newer ones of its bucket before its RST arrives, a few
/// packets later.
#[inline(always)]
fn note_sent_here(sending: &TupleKey, kind: u32, now: u64) {
    let first = here_bucket(sending);
    let (Some(a), Some(b)) = (RESETS_HERE.get_ptr_mut(first), RESETS_HERE.get_ptr_mut(first + 1)) else { return };
    // SAFETY: array value memory, valid for this program run. Two CPUs writing one slot at once
    // can mix two entries; the key is compared, and a wrong match only withholds an `injected`.
    unsafe {
        let slot = if (*a).ns <= (*b).ns { a } else { b };
        *slot = ResetHere { key: *sending, kind, ns: now };
    }
}

/// What this host sent on the connection `receiving` (its own end first, as the receiving
/// socket keys it) after `since` and just before `now`: [`REFUSED_SYN`], [`ABORT_LINGER0`], or 0
/// when nothing was noted. `since` is when the receiving socket connected (or its handshake
/// completed), where it knows: an aborted connection leaves no TIME_WAIT, so the next one on
/// its 4-tuple may follow within the note's time.
#[inline(always)]
pub fn sent_here(receiving: &TupleKey, since: u64, now: u64) -> u32 {
    noted(&receiving.reversed(), since, now)
}

/// What was noted last for the connection `sending` (its own end first) after `since` and just
/// before `now`; 0: nothing.
#[inline(always)]
fn noted(sending: &TupleKey, since: u64, now: u64) -> u32 {
    let first = here_bucket(sending);
    let (Some(a), Some(b)) = (RESETS_HERE.get(first), RESETS_HERE.get(first + 1)) else { return 0 };
    let fits = |s: &ResetHere| s.key == *sending && s.ns > since && now.wrapping_sub(s.ns) < SENT_HERE_NS;
    match (fits(a), fits(b)) {
        (true, true) if b.ns > a.ns => b.kind,
        (true, _) => a.kind,
        (false, true) => b.kind,
        (false, false) => 0,
    }
}

/// What a socket that received a RST says of itself (see [`reset_received`]).
pub struct Received {
    /// The `FOLDED_` kind it is counted under.
    pub kind: u8,
    pub ip_version: u8,
    /// Host order.
    pub rport: u16,
    /// IPv4 in the first four bytes.
    pub raddr: [u8; 16],
    pub netns: u32,
    pub cgroup: u64,
}

/// A RST a connecting (`Storm::Refusal`) or connected (`Storm::PeerReset`) socket received,
/// whose owner is on record: counted here instead, when this CPU is past that kind's rate and
/// `received` names its kind (`None`: it crosses).
#[inline(always)]
pub fn reset_received(owner: &Owner, storm: Storm, received: impl FnOnce(u64) -> Option<Received>) -> bool {
    if !enabled() || !owner.is_known() {
        return false;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if crosses(now, storm) {
        return false;
    }
    let Some(r) = received(now) else { return false };
    let mut key = FoldedKey {
        generation: 0,
        kind: r.kind,
        ip_version: r.ip_version,
        port: r.rport,
        netns: r.netns,
        tgid: owner.tgid,
        cgroup: r.cgroup,
        addr: r.raddr,
    };
    count(&mut key, now, Some(owner))
}
