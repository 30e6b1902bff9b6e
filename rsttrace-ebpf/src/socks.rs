//! The per-socket table (`SOCKS`): buckets of two slots in an array, indexed by a hash of the
//! socket's address. A socket's slot is marked closed at its CLOSE, free for the next insert,
//! so the table holds the sockets alive now, plus the few that never pass through CLOSE while
//! traced (a socket that only failed to send): those are replaced when their bucket is needed.
//! A socket that finds both slots of its bucket held by others takes the second: the first keeps
//! the socket that has held it longest, on a busy host the long-lived connection whose owner a
//! timer's reset will need, and the second serves the churn. Two CPUs writing one bucket at
//! once may lose an insert; the socket then has no record, as a socket evicted from a full table
//! has none.
use core::ptr::{read_volatile, write_volatile};

use rsttrace_common::SockRecord;

use crate::maps::{SockSlot, TupleKey, SOCKS, SOCK_SLOTS};

/// Set in a slot's address once its socket went to CLOSE (socket addresses are aligned: a live
/// one's low bit is clear). The record stays readable there until another socket takes the slot.
const CLOSED: u64 = 1;

/// How long after its CLOSE a marked slot answers for its socket: a preempted close() waits
/// for a CPU, milliseconds on a busy host; a mark older than that is an earlier socket's whose
/// successor at the address went unseen. Ticks (1 to 4 ms by HZ), within the 24 bits kept.
const MOVED_CALL_TICKS: u32 = 256;

/// The slot is free for a new socket: empty, or left by a closed one.
#[inline(always)]
fn free(slot_sk: u64) -> bool {
    slot_sk == 0 || slot_sk & CLOSED != 0
}

#[inline(always)]
fn first_slot(sk: u64) -> u32 {
    // Sockets come from slab caches: the low bits are alignment, the highest the same for all.
    let folded = (sk >> 6) as u32 ^ (sk >> 32) as u32;
    ((folded.wrapping_mul(0x9E37_79B1) >> 16) & (SOCK_SLOTS / 2 - 1)) * 2
}

/// The two slots of `sk`'s bucket (pointers into the array, valid for this program run).
#[inline(always)]
fn bucket(sk: u64) -> Option<(*mut SockSlot, *mut SockSlot)> {
    let first = first_slot(sk);
    Some((SOCKS.get_ptr_mut(first)?, SOCKS.get_ptr_mut(first + 1)?))
}

/// The slot of `sk`'s bucket whose address reads `value`: `sk`, or `sk | CLOSED` (a pointer
/// into the array, valid for this program run).
#[inline(always)]
fn slot_reading(sk: u64, value: u64) -> Option<*mut SockSlot> {
    if sk == 0 {
        return None;
    }
    let (a, b) = bucket(sk)?;
    // SAFETY: array value memory, plain data, valid while the program runs.
    unsafe {
        if read_volatile(&(*a).sk) == value {
            Some(a)
        } else if read_volatile(&(*b).sk) == value {
            Some(b)
        } else {
            None
        }
    }
}

/// The record of `sk`, if it has one (a pointer into the array, valid for this program run).
#[inline(always)]
pub fn find(sk: u64) -> Option<*mut SockRecord> {
    // SAFETY: a slot pointer, as `slot_reading` says.
    slot_reading(sk, sk).map(|slot| unsafe { &mut (*slot).record as *mut SockRecord })
}

/// Make the record `write` writes (into the slot, not through a copy) the record of `sk`,
/// replacing the one it had. Returns the slot's record (valid for this program run).
#[inline(always)]
pub fn insert(sk: u64, write: impl FnOnce(*mut SockRecord)) -> Option<*const SockRecord> {
    let (a, b) = bucket(sk)?;
    // SAFETY: as in `find`. The slot is freed before the record is written and the address put
    // in after, all volatile so the compiler keeps that order (BPF has no fences): a reader on
    // another CPU looking up the slot's earlier socket then finds it gone rather than reading
    // the new record as its own, short of the CPU reordering the stores (x86 does not) or two
    // writers at once (see above). `write` writes volatile too, or through a helper, which the
    // compiler does not move stores across either.
    unsafe {
        let (slot, other) = if (*a).sk == sk || (free((*a).sk) && (*b).sk != sk) { (a, b) } else { (b, a) };
        // An earlier socket's mark at this address goes: one mark per address, never its own.
        if read_volatile(&(*other).sk) == sk | CLOSED {
            write_volatile(&mut (*other).sk, 0);
        }
        write_volatile(&mut (*slot).sk, 0);
        write(&mut (*slot).record);
        write_volatile(&mut (*slot).sk, sk);
        Some(&(*slot).record)
    }
}

/// `sk` went to CLOSE from `old` (with 4-tuple `key`) at clock tick `now`: mark its slot
/// closed, free for the next socket, and keep with the record what a reset of the same call
/// needs. close() changes the state and then sends its RST with the socket locked but the task
/// preemptible: if it moved to another CPU in between, that CPU's close slots lack the socket
/// and [`closed`] finds it here. A socket without a record clears the mark an earlier socket at
/// its address left, which is not its own. (An insert on another CPU that evicts the slot
/// between the check and the mark loses its record, as a lost insert does, and the mark then
/// vouches for that record: nanoseconds, and only a moved reset of this socket would read it.)
#[inline(always)]
pub fn mark_closed(sk: u64, old: i32, key: &TupleKey, now: u64) {
    let Some(slot) = slot_reading(sk, sk) else {
        clear_mark(sk);
        return;
    };
    // SAFETY: a slot pointer, as `slot_reading` says; the mark goes in last, volatile, after
    // what it vouches for.
    unsafe {
        write_volatile(&mut (*slot).closed_key, *key);
        write_volatile(&mut (*slot).closed_at_from, ((now as u32) << 8) | (old as u32 & 0xff));
        write_volatile(&mut (*slot).sk, sk | CLOSED);
    }
}

/// Clear any mark at `sk`'s address (in either slot of its bucket).
#[inline(always)]
fn clear_mark(sk: u64) {
    let Some((a, b)) = bucket(sk) else { return };
    // SAFETY: as in `slot_reading`.
    unsafe {
        for slot in [a, b] {
            if read_volatile(&(*slot).sk) == sk | CLOSED {
                write_volatile(&mut (*slot).sk, 0);
            }
        }
    }
}

/// What `sk`'s CLOSE left in its slot at most [`MOVED_CALL_TICKS`] before tick `now`: the slot
/// (a pointer into the array, valid for this program run), the 4-tuple and the state it closed
/// from. Check [`still_closed`] after reading the record.
#[inline(always)]
pub fn closed(sk: u64, now: u64) -> Option<(*const SockSlot, TupleKey, i32)> {
    let slot = slot_reading(sk, sk | CLOSED)?;
    // SAFETY: a slot pointer, as `slot_reading` says; volatile, so the reads stay before the
    // check that vouches for them.
    let (key, at_from) = unsafe { (read_volatile(&(*slot).closed_key), read_volatile(&(*slot).closed_at_from)) };
    let age = ((now as u32) & 0x00ff_ffff).wrapping_sub(at_from >> 8) & 0x00ff_ffff;
    (age < MOVED_CALL_TICKS).then_some((slot as *const SockSlot, key, (at_from & 0xff) as i32))
}

/// Nobody took `slot` while it was read: an insert clears the address before it writes the
/// record (see `insert`), so a mark still there vouches for what was read before, all reads
/// volatile (so in this order) on a CPU that keeps loads in order (x86 does; arm64 would need
/// a barrier).
#[inline(always)]
pub fn still_closed(slot: *const SockSlot, sk: u64) -> bool {
    // SAFETY: a pointer from `closed`, valid for this program run.
    unsafe { read_volatile(&(*slot).sk) == sk | CLOSED }
}

/// Free the slot of `sk`, if it has one.
#[inline(always)]
pub fn remove(sk: u64) {
    if let Some(slot) = slot_reading(sk, sk) {
        // SAFETY: a slot pointer, as `slot_reading` says.
        unsafe { write_volatile(&mut (*slot).sk, 0) };
    }
}
