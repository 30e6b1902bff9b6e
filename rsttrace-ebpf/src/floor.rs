//! Empty programs for `rsttrace --cost-floor`: attached to the same hooks as the real ones, they
//! measure what merely running a BPF program there costs on this kernel: the floor under any
//! tracer that uses these tracepoints (`cargo xtask bench` prints it beside rsttrace's own cost).
//! The raw-tracepoint variant (`--cost-floor=raw`) shows what the attach type alone costs: a
//! classic tracepoint first builds its record, a raw one hands over the arguments.
use aya_ebpf::{
    macros::{kprobe, raw_tracepoint, tracepoint},
    programs::{ProbeContext, RawTracePointContext, TracePointContext},
};

#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn floor_raw_tracepoint(_ctx: RawTracePointContext) -> u32 {
    0
}

#[kprobe]
pub fn floor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
