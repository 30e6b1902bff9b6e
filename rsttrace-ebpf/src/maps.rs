//! Maps and load-time globals shared by all programs.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use rsttrace_common::{KernelConfig, Owner};

/// Field offsets and sizes for this kernel, filled in by the agent before load.
#[unsafe(no_mangle)]
pub static CONFIG: Global<KernelConfig> = Global::new(KernelConfig::EMPTY);

/// Default 4 MiB; the agent may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Events that found the ring buffer full, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sockets that just sent a RST from CLOSE (an abortive close or a disconnect): only their
/// destruction tells the agent anything, so only theirs is reported.
#[map]
pub static ABORTED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// Socket address → owning task. LRU so sockets we never see closing cannot fill it.
#[map]
pub static OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(65536, 0);
