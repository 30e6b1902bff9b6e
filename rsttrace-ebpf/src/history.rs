//! What the kernel side remembers across connections, for the facts no single socket holds at
//! its reset: which connection last used a 4-tuple and who owned it (the owner of a reset sent
//! from TIME_WAIT or for a forgotten connection, a port taken over by another process, a 4-tuple
//! reused, a peer on this host), and which connections a process opened last (a connect
//! race). Plain arrays indexed by a hash: no map insert or delete.
use core::ptr::{addr_of_mut, write_volatile};

use aya_ebpf::helpers::bpf_jiffies64;
use rsttrace_common::{Owner, RaceEntry, SockRecord, OLDER_CONNECTION};

use crate::{
    programs::AF_INET,
    words,
    maps::{CloseSlot, CloseSlots, RaceSlot, TupleEntry, TupleKey, CLOSE_SLOTS, LAST_CLOSES, RACES, RACE_SLOTS, TUPLES, TUPLE_ENDED_BADLY, TUPLE_OPEN},
};

// A 4-tuple's note lies in one of the two slots of its bucket (a 128-byte pair of cache lines,
// which the CPU fetches together): one way, and the 4-tuples hashing to the bucket would
// overwrite each other's notes, a busy host's churn soon erasing every long-lived connection's
// (whose peer on this host is what tells a forged RST). A note is written over a closed one,
// never over an open one: where both ways hold open connections, the newcomer goes unnoted.

/// The slot of `bucket` holding `key`'s note, if any.
#[inline(always)]
fn slot_of(bucket: u32, key: &TupleKey) -> Option<*mut TupleEntry> {
    let (first, second) = (TUPLES.get_ptr_mut(bucket)?, TUPLES.get_ptr_mut(bucket | 1)?);
    // SAFETY: pointers into the array's value memory, plain data, valid for this program run.
    let holds = |e: *mut TupleEntry| unsafe { (*e).key == *key && (*e).sk != 0 };
    if holds(first) {
        Some(first)
    } else if holds(second) {
        Some(second)
    } else {
        None
    }
}

/// Where a new note of `key` goes in `bucket`: over its own earlier one, else a free or closed
/// slot (of two closed, the one closed first); nowhere when both hold open connections (on a
/// busy host most newcomers are short-lived: an incumbent is likelier the long-lived one).
#[inline(always)]
fn slot_for(bucket: u32, key: &TupleKey) -> Option<*mut TupleEntry> {
    if let Some(own) = slot_of(bucket, key) {
        return Some(own);
    }
    let (first, second) = (TUPLES.get_ptr_mut(bucket)?, TUPLES.get_ptr_mut(bucket | 1)?);
    // SAFETY: as in `slot_of`.
    let (a, b) = unsafe { ((*first).open_or_closed_at, (*second).open_or_closed_at) };
    let open = |at: u32| at == TUPLE_OPEN;
    Some(match (open(a), open(b)) {
        (true, true) => return None,
        (false, true) => first,
        (true, false) => second,
        // A free slot's 0 is the oldest tick of all.
        (false, false) => {
            if a == 0 || (b != 0 && (b.wrapping_sub(a) as i32) > 0) {
                first
            } else {
                second
            }
        }
    })
}

/// The handshake completed (`closed_at` `None`) or the connection closed at that clock tick,
/// a reset or an error ending it or not (its pending error then; an abort's RST, traced after
/// its CLOSE, marks it with [`mark_ended_badly`]): note it under its 4-tuple. A closing
/// socket's owner comes from its record; without one, the owner noted when it opened stays.
#[inline(always)]
pub fn note_tuple(key: &TupleKey, sk: u64, owner: Option<&Owner>, closed_at: Option<(u64, bool)>) {
    let Some(slot) = slot_for(key.bucket(), key) else { return };
    // SAFETY: pointer into the array's value memory, valid for this program run. Two CPUs writing
    // one slot at once can mix two entries; readers compare the key and treat history as a hint.
    unsafe {
        let known = owner.filter(|o| o.is_known());
        // The same connection closing: the one noted at its handshake, or before the agent started.
        let keep_owner = closed_at.is_some() && known.is_none() && ((*slot).sk == sk || (*slot).sk == OLDER_CONNECTION) && (*slot).key == *key;
        (*slot).key = *key;
        (*slot).open_or_closed_at = match closed_at {
            None => TUPLE_OPEN,
            Some((tick, badly)) => ((tick as u32) & !TUPLE_ENDED_BADLY).max(TUPLE_OPEN + 1) | if badly { TUPLE_ENDED_BADLY } else { 0 },
        };
        (*slot).sk = sk;
        if !keep_owner {
            match known {
                Some(o) => words::copy(addr_of_mut!((*slot).owner), o),
                // Readers look no further than an unknown owner's tgid.
                None => write_volatile(addr_of_mut!((*slot).owner.tgid), 0),
            }
        }
    }
}

/// A reset or an error ended the connection `entry` notes, which is closed.
#[inline(always)]
pub fn ended_badly(entry: &TupleEntry) -> bool {
    entry.open_or_closed_at != TUPLE_OPEN && entry.open_or_closed_at & TUPLE_ENDED_BADLY != 0
}

/// `sk`, closed under `key`, sent a RST after its CLOSE (an abort in close()): its entry, if still
/// its own, says a reset ended it.
#[inline(always)]
pub fn mark_ended_badly(key: &TupleKey, sk: u64) {
    let Some(slot) = slot_of(key.bucket(), key) else { return };
    // SAFETY: pointer into the array's value memory, valid for this program run; a hint, as
    // `note_tuple` writes it.
    unsafe {
        if (*slot).sk == sk && (*slot).open_or_closed_at != TUPLE_OPEN {
            (*slot).open_or_closed_at |= TUPLE_ENDED_BADLY;
        }
    }
}

/// How many clock ticks a closed connection's end still counts as a socket of this host (10 s
/// at HZ=1000, 40 s at Debian's 250): long enough for a RST forged to the other end after the
/// first, short enough that its address cannot have moved to another host since.
const CLOSED_LATELY_TICKS: u32 = 10_000;

/// The connection noted under `key` is open, or closed within `CLOSED_LATELY_TICKS` of `now`
/// (`bpf_jiffies64`).
#[inline(always)]
fn open_or_closed_lately(entry: &TupleEntry, now: u64) -> bool {
    // The tick without its lowest bit (`TUPLE_ENDED_BADLY`), which may be past `now`.
    let closed_at = entry.open_or_closed_at & !TUPLE_ENDED_BADLY;
    entry.open_or_closed_at == TUPLE_OPEN || (entry.open_or_closed_at > TUPLE_OPEN && (now as u32).wrapping_sub(closed_at) < CLOSED_LATELY_TICKS)
}

/// The other end of the connection `receiving` (its own end first) is a socket of this host,
/// open or closed a moment ago (reset by a RST forged to it first): any RST its stack sent is
/// traced. The look-up is a cache miss in 4 MiB.
#[inline(always)]
pub fn peer_here(receiving: &TupleKey) -> bool {
    peer_of(receiving).is_some()
}

/// The note of the other end of the connection `key` (its own end first), where that end is a
/// socket of this host, open or closed a moment ago (see [`peer_here`]).
#[inline(always)]
pub fn peer_of(key: &TupleKey) -> Option<&'static TupleEntry> {
    // SAFETY: helper without preconditions.
    tuple(&key.reversed()).filter(|peer| open_or_closed_lately(peer, unsafe { bpf_jiffies64() }))
}

/// The last connection noted under `key`, if its bucket still holds it. A pointer into the
/// map, valid for this program run: copies of these would not fit the BPF stack beside an
/// event's.
#[inline(always)]
pub fn tuple(key: &TupleKey) -> Option<&'static TupleEntry> {
    // SAFETY: array value memory, plain data, valid while the program runs.
    slot_of(key.bucket(), key).map(|slot| unsafe { &*slot })
}

#[inline(always)]
fn race_slot(tgid: u32) -> u32 {
    tgid.wrapping_mul(0x9E37_79B1) >> 19 & (RACE_SLOTS - 1)
}

/// A connection this host opened completed its handshake: remember it under its owner, beside
/// the one before it.
#[inline(always)]
pub fn note_opened(tgid: u32, entry: &RaceEntry) {
    let Some(slot) = RACES.get_ptr_mut(race_slot(tgid)) else { return };
    // SAFETY: pointer into the array's value memory, valid for this program run.
    unsafe {
        let s: &mut RaceSlot = &mut *slot;
        if s.tgid != tgid {
            s.tgid = tgid;
            // Readers take an entry of family 0 for none.
            write_volatile(addr_of_mut!(s.entries[1].family), 0);
            s.newest = 0;
            words::copy(addr_of_mut!(s.entries[0]), entry);
            return;
        }
        let next = if s.newest == 0 { 1 } else { 0 };
        s.newest = next;
        if next == 0 {
            words::copy(addr_of_mut!(s.entries[0]), entry);
        } else {
            words::copy(addr_of_mut!(s.entries[1]), entry);
        }
    }
}

/// The other connection `tgid` opened most recently to the peer of `key`: to its address (any
/// port), else to its port (the other family's address, happy eyeballs); a pointer into the map.
/// The agent tells a race from the families, addresses and times.
#[inline(always)]
pub fn sibling(tgid: u32, key: &TupleKey, sk: u64) -> Option<&'static RaceEntry> {
    let slot = RACES.get_ptr(race_slot(tgid))?;
    // SAFETY: array value memory, plain data, valid while the program runs.
    let s: &'static RaceSlot = unsafe { &*slot };
    if s.tgid != tgid {
        return None;
    }
    let (newest, older) = if s.newest == 0 { (&s.entries[0], &s.entries[1]) } else { (&s.entries[1], &s.entries[0]) };
    let other = |e: &RaceEntry| e.family != 0 && e.sk != sk;
    let same_address = |e: &RaceEntry| other(e) && address_tail(e) == key.raddr;
    let same_port = |e: &RaceEntry| other(e) && e.rport == key.rport;
    if same_address(newest) {
        Some(newest)
    } else if same_address(older) {
        Some(older)
    } else if same_port(newest) {
        Some(newest)
    } else if same_port(older) {
        Some(older)
    } else {
        None
    }
}

/// The last four bytes of an entry's remote address, as a `TupleKey` keeps them.
#[inline(always)]
fn address_tail(e: &RaceEntry) -> u32 {
    let at = if e.family == AF_INET { 0 } else { 12 };
    u32::from_ne_bytes([e.raddr[at], e.raddr[at + 1], e.raddr[at + 2], e.raddr[at + 3]])
}

/// How many clock ticks after a CLOSE the same kernel call's next event may come: microseconds
/// apart natively, but a guest under emulation has shown 12 ms between a CLOSE and its RST (the
/// peer's softirq runs in between), and a tick is 1 to 4 ms by HZ. The slots are matched by
/// socket and searched newest first, so the bound only keeps an old slot from answering for a
/// later socket at the same address. Ticks, because the clock itself costs ~60 ns.
const SAME_CALL_TICKS: u64 = 32;

/// `sk` moved from `old` to CLOSE at clock tick `now`: keep it, and its record as it was, for
/// the rest of the call. Returns the slot written.
#[inline(always)]
pub fn note_close(sk: u64, old: i32, key: &TupleKey, record: Option<&SockRecord>, now: u64) -> Option<&'static mut CloseSlot> {
    let all = LAST_CLOSES.get_ptr_mut(0)?;
    // SAFETY: per-CPU slots, no concurrent writer on this CPU while the program runs (a nested
    // program in softirq finishes before this one resumes); the helper has no preconditions.
    unsafe {
        let all: &mut CloseSlots = &mut *all;
        let at = (all.newest as usize + 1) % CLOSE_SLOTS;
        all.newest = at as u32;
        let s: &mut CloseSlot = &mut all.slots[at];
        s.sk = sk;
        s.jiffies = now;
        s.old_state = old as u32;
        s.key = *key;
        match record {
            Some(r) => {
                words::copy(addr_of_mut!(s.record), r);
                s.has_record = 1;
            }
            None => s.has_record = 0,
        }
        Some(s)
    }
}

/// The latest CLOSE this CPU made just now that is `wanted` (a pointer into the map).
#[inline(always)]
pub fn last_close(wanted: impl Fn(&CloseSlot) -> bool) -> Option<&'static CloseSlot> {
    let all = LAST_CLOSES.get_ptr(0)?;
    // SAFETY: per-CPU slots, plain data, valid while the program runs; the helper has no
    // preconditions.
    let all: &'static CloseSlots = unsafe { &*all };
    let now = unsafe { bpf_jiffies64() };
    let mut i = 0;
    while i < CLOSE_SLOTS {
        // Newest first: a socket address closed twice in a row is the later socket's.
        let s = &all.slots[(all.newest as usize + CLOSE_SLOTS - i) % CLOSE_SLOTS];
        if s.sk != 0 && now.wrapping_sub(s.jiffies) < SAME_CALL_TICKS && wanted(s) {
            return Some(s);
        }
        i += 1;
    }
    None
}
