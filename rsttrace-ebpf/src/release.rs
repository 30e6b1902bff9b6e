//! Who lets go of a socket nobody was seen acting on. A server's socket whose peer resets it
//! while the server waits in `recv()` has no owner on record (an accepted socket's owner is
//! learned only when it closes or shuts down in its owner's call), and the server, told
//! ECONNRESET, closes it at once: before the agent can look for the process holding its file.
//! So the reset's event names the file (`sk_inode`) and the socket is noted here; when the last
//! reference goes (`tcp_destroy_sock`, in the `close()` or exit of the process that held it last),
//! a [`Released`] names that process. Every socket's end runs the hook; while nothing is
//! awaited it reads one word.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use rsttrace_common::{Released, AWAITED_RELEASES, RELEASED_ITEM};

use crate::{
    emit::{process_comm, submit_flags, BPF_RB_NO_WAKEUP},
    maps::EVENTS,
    owner::is_worker_thread,
};

/// How long a release can still name a reset's owner: the agent judges a reset 150 ms after it,
/// or at once if it reads it later (its idle tick is 1 s), so a release later than this comes
/// after the report.
const RELEASE_WINDOW_NS: u64 = 2_000_000_000;

#[derive(Clone, Copy)]
struct Awaited {
    /// The key again: see `await_release`.
    sk: u64,
    inode: u64,
    until_ns: u64,
}

/// An entry being noted: key and value in map memory, not on the stack, which the reset
/// programs that note them have nearly used up (512 bytes for all their frames).
struct Noting {
    sk: u64,
    awaited: Awaited,
}

/// Socket address → its file's inode, for each socket awaited. LRU: a socket its holder keeps
/// past the window is never looked for, and its entry gives way to newer ones.
#[map]
static AWAITING_RELEASE: LruHashMap<u64, Awaited> = LruHashMap::with_max_entries(AWAITED_RELEASES, 0);

#[map]
static NOTING: PerCpuArray<Noting> = PerCpuArray::with_max_entries(1, 0);

/// Until when anything is awaited (`bpf_ktime_get_ns`), 0 for never or over: the one word the
/// hook reads at every socket's end while nothing is.
#[map]
static AWAITED_UNTIL: Array<u64> = Array::with_max_entries(1, 0);

/// Note socket `sk`, whose file has inode `inode`, until it is released or the window is over.
#[inline(always)]
pub fn await_release(sk: u64, inode: u64) {
    if sk == 0 || inode == 0 {
        return;
    }
    let (Some(noting), Some(until)) = (NOTING.get_ptr_mut(0), AWAITED_UNTIL.get_ptr_mut(0)) else { return };
    // SAFETY: array values, valid for the program run; the helper has no preconditions. A
    // program that interrupts this one on this CPU and notes a socket too overwrites the per-CPU
    // entry, maybe between the two stores: a key whose value names another socket is never
    // answered (`destroyed`), so the mix names nobody; that socket's owner is left to a walk or
    // its listener.
    unsafe {
        let until_ns = bpf_ktime_get_ns() + RELEASE_WINDOW_NS;
        (*noting).awaited = Awaited { sk, inode, until_ns };
        (*noting).sk = sk;
        if AWAITING_RELEASE.insert(&(*noting).sk, &(*noting).awaited, 0).is_ok() {
            core::ptr::write_volatile(until, until_ns);
        }
    }
}

/// Socket `sk` is destroyed. If it is awaited, report the task releasing it; a kernel thread
/// (a worker that dropped a file's last reference for a process) names nobody. Past the window
/// the word is cleared, unless another CPU moved it meanwhile (an await noted in the
/// nanoseconds between the two reads goes unanswered: its report names the holder a walk finds,
/// or the listener's owner).
#[inline(always)]
pub fn destroyed(sk: impl FnOnce() -> u64) {
    let Some(until) = AWAITED_UNTIL.get_ptr_mut(0) else { return };
    // SAFETY: an array value, valid for the program run.
    let awaited_until = unsafe { core::ptr::read_volatile(until) };
    if awaited_until == 0 {
        return;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if now > awaited_until {
        // SAFETY: as above.
        unsafe {
            if core::ptr::read_volatile(until) == awaited_until {
                core::ptr::write_volatile(until, 0);
            }
        }
        return;
    }
    let sk = sk();
    // SAFETY: a hash-map value, copied out at once.
    let Some(awaited) = (unsafe { AWAITING_RELEASE.get(&sk) }).copied() else { return };
    // Another CPU's hook for the same address (the socket freed and a new one there) took it.
    // A socket freed at an awaited address past its window, or an entry mixed by two notes.
    if AWAITING_RELEASE.remove(&sk).is_err() || now > awaited.until_ns || awaited.sk != sk {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Released>(0) else { return };
    let item = entry.as_mut_ptr();
    // SAFETY: a reserved, writable ring-buffer slot of size_of::<Released>(); helpers without
    // preconditions.
    unsafe {
        (*item).kind = RELEASED_ITEM;
        (*item).inode = awaited.inode;
        let pid_tgid = bpf_get_current_pid_tgid();
        (*item).pid_tgid = pid_tgid;
        // Pid 0: the idle task, interrupted by a softirq; never a socket's holder.
        if pid_tgid >> 32 == 0 || generated::bpf_get_current_comm((*item).comm.as_mut_ptr().cast(), 16) != 0 || is_worker_thread(&(*item).comm) {
            entry.discard(BPF_RB_NO_WAKEUP);
            return;
        }
        (*item).process_comm = [0; 16];
        if (pid_tgid >> 32) as u32 != pid_tgid as u32 {
            if let Some(name) = process_comm() {
                (*item).process_comm = name;
            }
        }
    }
    entry.submit(submit_flags());
}
