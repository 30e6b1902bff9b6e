//! Each full socket's record (`SOCKS`): its owner, learned only at points that are certainly in
//! process context, and when a connection this host opened began and completed its handshake.
use core::ptr::{addr_of_mut, write_volatile};

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated};
use rsttrace_common::{Owner, SockRecord};

use crate::{
    emit::{filtered_cgroup, filters_by_cgroup, socket_netns},
    socks,
};

pub const TCP_ESTABLISHED: i32 = 1;
pub const TCP_SYN_SENT: i32 = 2;
pub const TCP_SYN_RECV: i32 = 3;
pub const TCP_FIN_WAIT1: i32 = 4;
pub const TCP_FIN_WAIT2: i32 = 5;
pub const TCP_TIME_WAIT: i32 = 6;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_CLOSE_WAIT: i32 = 8;
pub const TCP_LAST_ACK: i32 = 9;
pub const TCP_LISTEN: i32 = 10;
pub const TCP_NEW_SYN_RECV: i32 = 12;

/// Transitions made only in the owner's system call whose owner the kernel side keeps: listen()
/// (rare, and a listener's resets are sent in softirq, where only this record names it), and
/// close() or shutdown() (the closer may be a forked child that never sent on the socket, and
/// later events, the peer's RST in FIN_WAIT1 or a timer giving up, must carry it).
pub fn is_learned_transition(old: i32, new: i32) -> bool {
    new == TCP_LISTEN || matches!((old, new), (TCP_ESTABLISHED, TCP_FIN_WAIT1) | (TCP_CLOSE_WAIT, TCP_LAST_ACK))
}

/// Write `current` (whose `bpf_get_current_pid_tgid` the caller read: each helper call costs
/// ~50 ns here) into `dst` as the owner of a socket in namespace `netns` (0: not read yet),
/// field by field: an `Owner` built on the stack and copied would cost a byte-wise `memcpy`
/// (see `words.rs`).
///
/// # Safety
/// `dst` points at a writable `Owner` (map value memory).
///
/// (Its cgroup is read only under a cgroup filter, as the filter compares it: the ancestor at
/// the filter's depth, so that a process in a cgroup below the one named passes.)
#[inline(always)]
unsafe fn write_current_owner(dst: *mut Owner, pid_tgid: u64, netns: u32) {
    // SAFETY: the caller's contract; the helpers have no preconditions (`comm` is zeroed by the
    // helper itself if it fails).
    unsafe {
        write_volatile(addr_of_mut!((*dst).tgid), (pid_tgid >> 32) as u32);
        write_volatile(addr_of_mut!((*dst).pid), pid_tgid as u32);
        generated::bpf_get_current_comm(addr_of_mut!((*dst).comm).cast(), 16);
        write_volatile(addr_of_mut!((*dst).cgroup), if filters_by_cgroup() { filtered_cgroup() } else { 0 });
        write_volatile(addr_of_mut!((*dst).netns), netns);
    }
}

/// Write a new record into `dst`: `current` (`pid_tgid`) as its owner, and when it was opened
/// (0: not here).
///
/// # Safety
/// `dst` points at a writable `SockRecord` (map value memory).
#[inline(always)]
unsafe fn write_new_record(dst: *mut SockRecord, pid_tgid: u64, netns: u32, opened_ns: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        write_current_owner(addr_of_mut!((*dst).owner), pid_tgid, netns);
        write_volatile(addr_of_mut!((*dst).opened_ns), opened_ns);
        write_volatile(addr_of_mut!((*dst).established_ns), 0);
        write_volatile(addr_of_mut!((*dst).resets_sent), 0);
    }
}

/// connect(): a new record in its owner's system call, replacing whatever an earlier socket at
/// this address left. The namespace is read when a reset needs it.
#[inline(always)]
pub fn open(sk: u64) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `insert` hands over its slot's record.
    socks::insert(sk, |r| unsafe { write_new_record(r, pid_tgid, 0, now) });
}

/// listen(): a new record in its owner's system call, as connect() makes one. Learning the
/// owner into whatever record the slot held would keep that record's namespace, and a socket
/// freed without passing through CLOSE (one that only failed to send) leaves its record behind
/// for the next socket at its address.
#[inline(always)]
pub fn listen(sk: u64) -> Owner {
    let netns = socket_netns(sk);
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `insert` hands over its slot's record, and returns it.
    socks::insert(sk, |r| unsafe { write_new_record(r, pid_tgid, netns, 0) }).map_or(Owner::UNKNOWN, |r| unsafe { (*r).owner })
}

/// Record `current` as the owner of `sk` (a close or shutdown in its owner's call), skipping the
/// map write when nothing changed.
#[inline(always)]
pub fn learn(sk: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let pid = pid_tgid as u32;
    // The namespace is read when a reset needs it, as for connect().
    let Some(known) = socks::find(sk) else {
        // SAFETY: `insert` hands over its slot's record.
        socks::insert(sk, |r| unsafe { write_new_record(r, pid_tgid, 0, 0) });
        return;
    };
    // SAFETY: pointer into array value memory, valid for this program run.
    let known = unsafe { &mut *known };
    if known.owner.tgid == tgid && known.owner.pid == pid {
        return;
    }
    // A worker thread closing a socket for the kernel (a file's last reference dropped outside
    // its process, deferred to a workqueue) is not its owner: the one on record stays.
    if known.owner.is_known() && bpf_get_current_comm().is_ok_and(|comm| is_worker_thread(&comm)) {
        return;
    }
    // Another thread of the same process (a pool's) keeps the namespace on record; another
    // process leaves it to be read again: the record may be a freed socket's (see `listen`).
    let netns = if known.owner.tgid == tgid { known.owner.netns } else { 0 };
    // SAFETY: the record's owner, in map value memory.
    unsafe { write_current_owner(&mut known.owner, pid_tgid, netns) };
}

/// `kworker/…`: a kernel worker thread.
#[inline(always)]
pub(crate) fn is_worker_thread(comm: &[u8; 16]) -> bool {
    comm[..8] == *b"kworker/"
}

/// Drop the record of `sk`, if any (a listener's new child at an address an earlier socket used).
/// A closed socket's mark stays: the child's own CLOSE, or the next insert, clears it.
#[inline(always)]
pub fn forget_if_any(sk: u64) {
    socks::remove(sk);
}

/// The record of `sk`, if it has one (a pointer into the map, valid for this program run).
#[inline(always)]
pub fn record(sk: u64) -> Option<&'static SockRecord> {
    // SAFETY: array values are plain data, valid while the program runs.
    socks::find(sk).map(|p| unsafe { &*p })
}

/// The owner on record for `sk`; `Owner::UNKNOWN` when there is none.
#[inline(always)]
pub fn owner_of(sk: u64) -> Owner {
    record(sk).map_or(Owner::UNKNOWN, |r| r.owner)
}
