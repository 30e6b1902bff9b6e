//! Maps and load-time globals shared by all programs.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use rsttrace_common::{Filter, Owner, SockMsgLayout, SockOffsets, StructOffsets, TracepointLayout, NO_FIELD};

// The agent's `KernelConfig`, one small global per part, set before load. Separate globals
// because reading one copies it onto the BPF stack: a program reads only the parts it needs.
#[unsafe(no_mangle)]
pub static LAYOUT_SEND_RESET: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_RECEIVE_RESET: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_RETRANSMIT: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_SET_STATE: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_ERROR_REPORT: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_DESTROY_SOCK: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static SOCK_MSG: Global<SockMsgLayout> = Global::new(SockMsgLayout { sk: NO_FIELD, protocol: NO_FIELD });
#[unsafe(no_mangle)]
pub static OFFSETS: Global<StructOffsets> = Global::new(StructOffsets::UNKNOWN);
/// Read only on kernels whose tcp_send_reset has no reason (`active`).
#[unsafe(no_mangle)]
pub static SOCK_OFFSETS: Global<SockOffsets> = Global::new(SockOffsets::UNKNOWN);
#[unsafe(no_mangle)]
pub static FILTER: Global<Filter> = Global::new(Filter::ANY);
/// 1 when any part of `FILTER` is set: the common unfiltered case skips it entirely.
#[unsafe(no_mangle)]
pub static FILTER_ACTIVE: Global<u8> = Global::new(0);

/// 4 MiB here; the agent sizes it at load time (`--ring-buffer-kib`, default 8 MiB).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Events submitted since the reader was last woken, per CPU.
#[map]
pub static WAKEUPS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The received reset this CPU reported last, until its next state change: the CLOSE that
/// `tcp_reset()` makes next is implied and not reported.
#[map]
pub static RESET_CLOSES: PerCpuArray<ResetSlot> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ResetSlot {
    pub sk: u64,
    /// `bpf_jiffies64()` when the reset was reported.
    pub jiffies: u64,
}


/// Events that found the ring buffer full, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sockets that just sent a RST from CLOSE (an abortive close or a disconnect): only their
/// destruction tells the agent anything, so only theirs is reported.
// One shared LRU list: split per CPU, an entry could be evicted before its destroy arrives.
#[map]
pub static ABORTED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// Socket address → owning task. LRU so sockets we never see closing cannot fill it.
// One shared LRU list, not one per CPU (BPF_F_NO_COMMON_LRU): split per CPU, each CPU's list
// holds 65536/CPUs entries, and a CPU busy with short connections would evict the owner of a
// long-lived one learned there while the map stood mostly empty. Shared, it evicts about the
// globally oldest (each CPU holds back a small batch of free entries). It also measured ~20 ns
// cheaper per insert here.
#[map]
pub static OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(65536, 0);
