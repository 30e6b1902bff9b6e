//! Learning which task owns a socket, only at points that are certainly in process context.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid};
use rsttrace_common::Owner;

use crate::{
    emit::{filters_by_cgroup, socket_netns},
    maps::OWNERS,
};

pub const TCP_ESTABLISHED: i32 = 1;
pub const TCP_SYN_SENT: i32 = 2;
pub const TCP_SYN_RECV: i32 = 3;
pub const TCP_FIN_WAIT1: i32 = 4;
pub const TCP_TIME_WAIT: i32 = 6;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_CLOSE_WAIT: i32 = 8;
pub const TCP_LAST_ACK: i32 = 9;
pub const TCP_LISTEN: i32 = 10;
pub const TCP_NEW_SYN_RECV: i32 = 12;

/// A new connection: connect() (CLOSE -> SYN_SENT) or a listener's new child (not the
/// SYN_SENT -> SYN_RECV of a simultaneous open). An owner on record for its address is a freed
/// socket's. connect() runs in its owner's system call, but that owner is not learned here: the
/// agent takes it from the event's `current`, and learning it (an LRU insert now and a delete at
/// CLOSE, ~300 ns per refused connection) would serve only later events of a socket that never
/// sends or receives, which the agent already attributes from its story.
pub fn is_new_connection(old: i32, new: i32) -> bool {
    (old == TCP_CLOSE && new == TCP_SYN_SENT) || (new == TCP_SYN_RECV && old != TCP_SYN_SENT)
}

/// Transitions made only in the owner's system call whose owner the kernel side keeps: listen()
/// (rare, and a listener's resets are sent in softirq, where only this record names it), and
/// close() or shutdown() (the closer may be a forked child that never sent on the socket, and
/// later events, the peer's RST in FIN_WAIT1 or a timer giving up, must carry it).
pub fn is_learned_transition(old: i32, new: i32) -> bool {
    new == TCP_LISTEN || matches!((old, new), (TCP_ESTABLISHED, TCP_FIN_WAIT1) | (TCP_CLOSE_WAIT, TCP_LAST_ACK))
}

/// Record `current` as the owner of `sk`, skipping the map write when nothing changed (the
/// send/receive hooks call this on every message). Returns the owner now on record.
#[inline(always)]
pub fn learn(sk: u64) -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let pid = pid_tgid as u32;
    let mut netns = 0;
    let mut known_owner = Owner::UNKNOWN;
    if let Some(known) = OWNERS.get_ptr(sk) {
        // SAFETY: pointer into map value memory, valid for this program run.
        let known = unsafe { &*known };
        if known.tgid == tgid && known.pid == pid {
            return *known;
        }
        netns = known.netns;
        known_owner = *known;
    }
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // A worker thread closing a socket for the kernel (a file's last reference dropped outside
    // its process, deferred to a workqueue) is not its owner: the one on record stays.
    if known_owner.is_known() && is_worker_thread(&comm) {
        return known_owner;
    }
    if netns == 0 {
        netns = socket_netns(sk);
    }
    // SAFETY: helper without preconditions.
    let cgroup = if filters_by_cgroup() { unsafe { bpf_get_current_cgroup_id() } } else { 0 };
    let owner = Owner { tgid, pid, comm, cgroup, netns, _pad: 0 };
    let _ = OWNERS.insert(sk, owner, 0);
    owner
}

/// `kworker/…`: a kernel worker thread.
#[inline(always)]
fn is_worker_thread(comm: &[u8; 16]) -> bool {
    comm[..8] == *b"kworker/"
}

/// Drop the owner on record for `sk`.
#[inline(always)]
pub fn forget(sk: u64) {
    let _ = OWNERS.remove(sk);
}

/// `forget` for a socket that most likely has no owner on record: deleting a missing key takes
/// the bucket lock, finding it missing does not.
#[inline(always)]
pub fn forget_if_any(sk: u64) {
    if OWNERS.get_ptr(sk).is_some() {
        forget(sk);
    }
}

/// The owner on record for `sk`; `Owner::UNKNOWN` when there is none (or no socket).
#[inline(always)]
pub fn lookup(sk: u64) -> Owner {
    if sk == 0 {
        return Owner::UNKNOWN;
    }
    match OWNERS.get_ptr(sk) {
        // SAFETY: map values are plain data.
        Some(p) => unsafe { *p },
        None => Owner::UNKNOWN,
    }
}
