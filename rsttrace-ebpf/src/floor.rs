//! Empty programs for `rsttrace --cost-floor`: attached to the same hooks as the real ones, they
//! measure what merely running a BPF program there costs on this kernel: the floor under any
//! tracer that uses these tracepoints (`cargo xtask bench` prints it beside rsttrace's own cost).
//! Empty raw and BTF-typed tracepoint programs on the same tracepoints measured the same within
//! noise on the project's machines, so the attach type does not move this floor.
use aya_ebpf::{
    macros::{kprobe, tracepoint},
    programs::{ProbeContext, TracePointContext},
};

#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[kprobe]
pub fn floor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
