//! Maps and load-time globals shared by all programs.
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, RingBuf},
    Global,
};
use rsttrace_common::{
    Filter, FoldedCount, FoldedKey, FOLDED_KEYS, PeerSample, RaceEntry, ReleaseLayout, SockOffsets, SockRecord, StructOffsets,
    Submitted, TcpProbeLayout, TracepointLayout, TypedSkbFields, TypedSockFields, PEER_SLOTS,
};
// The 4-tuple notes' types are shared: the agent notes the connections older than it.
pub use rsttrace_common::{TupleEntry, TupleKey, TUPLE_ENDED_BADLY, TUPLE_OPEN, TUPLE_SLOTS};

// The agent's `KernelConfig`, one small global per part, set before load. Separate globals
// because reading one copies it onto the BPF stack: a program reads only the parts it needs.
#[unsafe(no_mangle)]
pub static LAYOUT_SEND_RESET: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_RECEIVE_RESET: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_SET_STATE: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static LAYOUT_ERROR_REPORT: Global<TracepointLayout> = Global::new(TracepointLayout::EMPTY);
#[unsafe(no_mangle)]
pub static RELEASE: Global<ReleaseLayout> = Global::new(ReleaseLayout::NONE);
#[unsafe(no_mangle)]
pub static OFFSETS: Global<StructOffsets> = Global::new(StructOffsets::UNKNOWN);
#[unsafe(no_mangle)]
pub static SOCK_OFFSETS: Global<SockOffsets> = Global::new(SockOffsets::UNKNOWN);
#[unsafe(no_mangle)]
pub static FILTER: Global<Filter> = Global::new(Filter::ANY);
#[unsafe(no_mangle)]
pub static TCP_PROBE: Global<TcpProbeLayout> = Global::new(TcpProbeLayout::NONE);
/// Offsets in `struct sock` for the `tp_btf` programs (`typed.rs`). A plain static, not a
/// `Global`: each field is read on its own (see `typed.rs`).
#[unsafe(no_mangle)]
pub static TYPED_SOCK: TypedSockFields = TypedSockFields::UNKNOWN;
/// Offsets in `struct sk_buff` for the typed `tcp_send_reset` program, read as `TYPED_SOCK`'s.
#[unsafe(no_mangle)]
pub static TYPED_SKB: TypedSkbFields = TypedSkbFields::UNKNOWN;
/// 1 under `--network-evidence`: received resets carry what `PEERS` sampled.
#[unsafe(no_mangle)]
pub static NETWORK_EVIDENCE: Global<u8> = Global::new(0);
/// Events a CPU submits between wakeups of the reader (see `emit::submit_flags`): set at load
/// from the ring buffer's size and the number of CPUs.
#[unsafe(no_mangle)]
pub static WAKEUP_EVERY: Global<u32> = Global::new(64);
/// 1 when any part of `FILTER` is set: the common unfiltered case skips it entirely.
#[unsafe(no_mangle)]
pub static FILTER_ACTIVE: Global<u8> = Global::new(0);

/// Nanoseconds of credit one reset that could be counted in the kernel takes from its CPU's
/// bucket to cross the ring buffer instead (10⁹ / `--max-rate`); 0: the kernel side counts
/// nothing, every reset crosses (`--max-rate 0`, a filter, `--network-evidence`).
#[unsafe(no_mangle)]
pub static FOLD_COST_NS: Global<u64> = Global::new(0);
/// This kernel's number for the `TCP_STATE` reset reason (`enum sk_rst_reason`, whose numbers
/// change between versions), from the tracepoint's format; `u32::MAX` where it has none. An
/// abort with it may be counted in the kernel (see `fold::abort_sent`).
#[unsafe(no_mangle)]
pub static REASON_TCP_STATE: Global<u32> = Global::new(u32::MAX);

/// 4 MiB here; the agent sizes it at load time (`--ring-buffer-kib`, default 8 MiB).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Items submitted to the ring buffer, per CPU: all of them, and since the reader was last woken.
#[map]
pub static SUBMITTED: PerCpuArray<Submitted> = PerCpuArray::with_max_entries(1, 0);

/// Where a `tp_btf` program turns its socket pointer into a number (see `typed::address`): the
/// last socket address stored on this CPU, and a count of the stores.
#[repr(C)]
pub struct AddressScratch {
    pub stores: u64,
    pub address: u64,
}

#[map]
pub static ADDRESS_SCRATCH: PerCpuArray<AddressScratch> = PerCpuArray::with_max_entries(1, 0);

/// Events that found the ring buffer full, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One way of the per-socket table (see `socks.rs`): a socket's address (0, or with
/// `socks::CLOSED` set: free) and its record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockSlot {
    pub sk: u64,
    pub record: SockRecord,
    /// Written at CLOSE, for a reset that close() sends after the task moved to another CPU
    /// (see `socks::mark_closed`): the 4-tuple, and the clock tick (`bpf_jiffies64`'s low 24
    /// bits) above the state it closed from (8 bits).
    pub closed_key: TupleKey,
    pub closed_at_from: u32,
}

/// 2 ways per bucket: 65,536 buckets, 11 MiB of kernel memory.
pub const SOCK_SLOTS: u32 = 131072;

/// Socket address → what the kernel side keeps of it (`SockRecord`), from connect() or its
/// owner's first system call until its CLOSE (after it, until another socket takes the slot).
/// An array indexed by a hash of the address, not a hash map: a lookup is an inlined array
/// access and an insert or delete a store, where a hash map's insert and delete cost ~0.45 and
/// ~0.2 µs on every connection.
#[map]
pub static SOCKS: Array<SockSlot> = Array::with_max_entries(SOCK_SLOTS, 0);

/// Direct-mapped by a hash of the 4-tuple: one array store per connection opened and closed,
/// where a hash map would cost an insert and a delete. A newer connection whose tuple hashes to
/// the same slot overwrites an older one: history is best effort, and the stored key is compared
/// before anything is concluded from a slot.
#[map]
pub static TUPLES: Array<TupleEntry> = Array::with_max_entries(TUPLE_SLOTS, 0);

/// The last two connections one process opened (see `history.rs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RaceSlot {
    pub tgid: u32,
    /// Index of the entry written last.
    pub newest: u32,
    pub entries: [RaceEntry; 2],
}

pub const RACE_SLOTS: u32 = 8192;

#[map]
pub static RACES: Array<RaceSlot> = Array::with_max_entries(RACE_SLOTS, 0);

/// The sockets this CPU moved to CLOSE last, with their records as they were: what comes next in
/// the same kernel call (the abort's RST that close() sends after the state change, the error
/// report after `tcp_done()`) needs it, and another socket may take the record's `SOCKS` slot
/// by then (the slot stays marked closed for a task that moved CPU: see `socks::mark_closed`).
/// Several, because over loopback or veth the RST is traced after its transmission, and the
/// peer's own CLOSE on receiving it runs on this CPU in between (softirq inside the send).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CloseSlot {
    pub sk: u64,
    /// `bpf_jiffies64()` at the change.
    pub jiffies: u64,
    pub old_state: u32,
    /// 1 when `record` holds the socket's record.
    pub has_record: u32,
    pub key: TupleKey,
    pub _pad: u32,
    pub record: SockRecord,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct CloseSlots {
    /// Index of the slot written last.
    pub newest: u32,
    pub _pad: u32,
    pub slots: [CloseSlot; CLOSE_SLOTS],
}

pub const CLOSE_SLOTS: usize = 4;

#[map]
pub static LAST_CLOSES: PerCpuArray<CloseSlots> = PerCpuArray::with_max_entries(1, 0);

/// What `--network-evidence` sampled of each socket's incoming segments (see `evidence.rs`),
/// direct-mapped by a hash of the socket's address like `TUPLES`: one array store per segment, no
/// insert or delete. A socket whose slot another took has no evidence at its reset.
#[map]
pub static PEERS: Array<PeerSample> = Array::with_max_entries(PEER_SLOTS, 0);

/// A CPU's bucket for one kind of the resets the kernel side may count (see `fold.rs`).
#[repr(C)]
pub struct FoldBucket {
    /// Nanoseconds of credit, at most a second's.
    pub credit_ns: u64,
    pub last_ns: u64,
}

#[map]
pub static FOLD_BUCKETS: PerCpuArray<FoldBucket> = PerCpuArray::with_max_entries(crate::fold::STORMS, 0);

/// The resets counted in the kernel instead of crossing, per key and CPU (see `fold.rs`).
#[map]
pub static FOLDED: PerCpuHashMap<FoldedKey, FoldedCount> = PerCpuHashMap::with_max_entries(FOLDED_KEYS, 0);

/// The generation the kernel side counts under now, written by the agent once a second.
#[map]
pub static FOLD_GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// A RST this host sent that the kernel side may count instead of sending across (see
/// `fold::sent_here`): the connection, as the sending end keys it, what the RST was, and when.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ResetHere {
    pub key: TupleKey,
    /// `fold::REFUSED_SYN` or `fold::ABORT_LINGER0`.
    pub kind: u32,
    pub ns: u64,
}

/// 4,096 buckets of two slots.
pub const RESETS_HERE_BUCKET_BITS: u32 = 12;
pub const RESETS_HERE_SLOTS: u32 = 2 << RESETS_HERE_BUCKET_BITS;

/// Indexed by a hash of the 4-tuple, like `TUPLES`, and small enough (192 KiB) to stay in cache
/// through a storm.
#[map]
pub static RESETS_HERE: Array<ResetHere> = Array::with_max_entries(RESETS_HERE_SLOTS, 0);
