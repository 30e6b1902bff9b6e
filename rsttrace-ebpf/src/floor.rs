//! Empty programs for `rsttrace --cost-floor`: attached to the same hooks as the real ones, they
//! measure what merely running a BPF program there costs on this kernel, the floor under any
//! tracer on these hooks (`cargo xtask bench` prints it beside rsttrace's own cost).
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
