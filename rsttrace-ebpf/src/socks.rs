//! The per-socket table (`SOCKS`): buckets of two slots in an array, indexed by a hash of the
//! socket's address. A socket's slot is freed at its CLOSE, so the table holds the sockets alive
//! now, plus the few that never pass through CLOSE while traced (a socket that only failed to
//! send): those are replaced when their bucket is needed. A socket that finds both slots of its
//! bucket held by others takes the second: the first keeps the socket that has held it longest,
//! on a busy host the long-lived connection whose owner a timer's reset will need, and the
//! second serves the churn. Two CPUs writing one bucket at once may lose an insert; the socket
//! then has no record, as a socket evicted from a full table has none.
use rsttrace_common::SockRecord;

use crate::maps::{SockSlot, SOCKS, SOCK_SLOTS};

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

/// The record of `sk`, if it has one (a pointer into the array, valid for this program run).
#[inline(always)]
pub fn find(sk: u64) -> Option<*mut SockRecord> {
    if sk == 0 {
        return None;
    }
    let (a, b) = bucket(sk)?;
    // SAFETY: array value memory, plain data, valid while the program runs.
    unsafe {
        if (*a).sk == sk {
            Some(&mut (*a).record)
        } else if (*b).sk == sk {
            Some(&mut (*b).record)
        } else {
            None
        }
    }
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
        let slot = if (*a).sk == sk || ((*a).sk == 0 && (*b).sk != sk) { a } else { b };
        core::ptr::write_volatile(&mut (*slot).sk, 0);
        write(&mut (*slot).record);
        core::ptr::write_volatile(&mut (*slot).sk, sk);
        Some(&(*slot).record)
    }
}

/// Free the slot of `sk`, if it has one.
#[inline(always)]
pub fn remove(sk: u64) {
    let Some((a, b)) = bucket(sk) else { return };
    // SAFETY: as in `find`.
    unsafe {
        if (*a).sk == sk {
            (*a).sk = 0;
        } else if (*b).sk == sk {
            (*b).sk = 0;
        }
    }
}
