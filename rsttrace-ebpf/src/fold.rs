//! Storm folding in the kernel. Past `--max-rate` on a CPU, the resets whose verdict needs
//! nothing from the agent's history are counted here, per kind, instead of crossing the ring
//! buffer one by one: a RST this host sent to a bare SYN no socket took (`no_listener`), and one a
//! socket in SYN_SENT received (`refused`, unless the agent finds a listener of this host behind
//! the address and this host's stack did not send that RST: [`refused_here`] tells, from a note
//! each refused SYN leaves). A storm of refused connects is made of these two; crossing, each
//! costs a ring-buffer slot and the agent's decoding and judging, about as much again as the
//! tracing itself. Below the rate everything crosses, so every report is written as before;
//! above it the agent would only have folded them. The agent takes the counts once a second
//! (`kernel_folds.rs` there) and folds them with its own, so every reset is still counted.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
};
use rsttrace_common::{FoldedCount, FoldedKey, Owner, FOLDED_REFUSAL_ANSWERED_HERE, FOLDED_REFUSAL_RECEIVED, FOLDED_REFUSED_SYN};

use crate::{
    emit::{netns_of, trigger_key, trigger_of, Trigger, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN},
    maps::{RefusedSyn, TupleKey, FOLDED, FOLD_BUCKETS, FOLD_COST_NS, FOLD_GENERATION, OFFSETS, REFUSED_BUCKET_BITS, REFUSED_HERE},
};

const NS_PER_SEC: u64 = 1_000_000_000;
/// How long a refused SYN's note answers for the connection it refused: its RST arrives within
/// microseconds over loopback or veth (milliseconds in an emulated guest). Kept short so that a
/// later connection on the same 4-tuple (a retry from a fixed port) is not taken for it.
const REFUSED_HERE_NS: u64 = NS_PER_SEC / 4;

/// A load-time constant: with it off (`--max-rate 0`, a filter, `--network-evidence`) the
/// verifier drops every path below.
#[inline(always)]
pub fn enabled() -> bool {
    FOLD_COST_NS.load() != 0
}

/// Whether one more reset may cross from this CPU now: a token bucket of a second's credit,
/// refilled with time, a token costing `FOLD_COST_NS`. Takes the token.
#[inline(always)]
fn crosses(now: u64) -> bool {
    let cost = FOLD_COST_NS.load();
    let Some(bucket) = FOLD_BUCKETS.get_ptr_mut(0) else { return true };
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
    note_refused_here(&trigger_key(t), now);
    if crosses(now) {
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

/// The first of the two slots of `refusing`'s bucket.
#[inline(always)]
fn refused_bucket(refusing: &TupleKey) -> u32 {
    refusing.hash(REFUSED_BUCKET_BITS) * 2
}

/// This host's stack refuses the connection `refusing` (its own end first) now. Past the rate
/// that RST is counted here, and the agent never sees it: the connecting end, when it is on this
/// host too, learns from this that its RST was no forgery. Two slots a bucket, the older one
/// taken: a note is lost only to two newer ones of its bucket before its RST arrives, a few
/// packets later.
#[inline(always)]
fn note_refused_here(refusing: &TupleKey, now: u64) {
    let first = refused_bucket(refusing);
    let (Some(a), Some(b)) = (REFUSED_HERE.get_ptr_mut(first), REFUSED_HERE.get_ptr_mut(first + 1)) else { return };
    // SAFETY: array value memory, valid for this program run. Two CPUs writing one slot at once
    // can mix two entries; the key is compared, and a wrong match only withholds an `injected`.
    unsafe {
        let slot = if (*a).ns <= (*b).ns { a } else { b };
        *slot = RefusedSyn { key: *refusing, _pad: 0, ns: now };
    }
}

/// Whether this host's stack refused the connection `connecting` (its own end first, as the
/// connecting socket keys it) just before `now`.
#[inline(always)]
pub fn refused_here(connecting: &TupleKey, now: u64) -> bool {
    let refusing = connecting.reversed();
    let first = refused_bucket(&refusing);
    let noted = |slot: Option<&RefusedSyn>| slot.is_some_and(|s| s.key == refusing && now.wrapping_sub(s.ns) < REFUSED_HERE_NS);
    noted(REFUSED_HERE.get(first)) || noted(REFUSED_HERE.get(first + 1))
}

/// What a connecting socket that received a RST says of itself (see [`refusal_received`]).
pub struct Refusal {
    /// This host's own stack sent the RST ([`refused_here`]).
    pub answered_here: bool,
    pub ip_version: u8,
    /// Host order.
    pub rport: u16,
    /// IPv4 in the first four bytes.
    pub raddr: [u8; 16],
    pub netns: u32,
    pub cgroup: u64,
}

/// A RST a socket in SYN_SENT received, whose owner is on record: counted here instead, when
/// this CPU is past its rate.
#[inline(always)]
pub fn refusal_received(owner: &Owner, refusal: impl FnOnce(u64) -> Option<Refusal>) -> bool {
    if !enabled() || !owner.is_known() {
        return false;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if crosses(now) {
        return false;
    }
    let Some(r) = refusal(now) else { return false };
    let mut key = FoldedKey {
        generation: 0,
        kind: if r.answered_here { FOLDED_REFUSAL_ANSWERED_HERE } else { FOLDED_REFUSAL_RECEIVED },
        ip_version: r.ip_version,
        port: r.rport,
        netns: r.netns,
        tgid: owner.tgid,
        cgroup: r.cgroup,
        addr: r.raddr,
    };
    count(&mut key, now, Some(owner))
}
