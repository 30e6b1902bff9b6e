//! rsttrace kernel programs.
//!
//! Design: classic tracepoints, not BTF-typed ones. Every program copies its tracepoint's raw
//! record into the ring buffer and lets the agent decode it with field offsets read from the
//! running kernel's tracefs `format` files, so one object works on every layout (`tcp_send_reset`
//! changed shape in 6.10; PREEMPT_RT kernels shift every field). The few fields the kernel side
//! itself reads (socket address, states, protocol) come from the same format files through the
//! load-time globals in `maps.rs`, set by the agent before load. A field offset of `NO_FIELD` means "this kernel
//! has no such field".
//!
//! The kernel side also keeps `OWNERS`, socket → the task last seen acting on it in process
//! context (listen, close, send, receive; the agent takes connect's from its event, see
//! `owner::is_new_connection`). A reset is often sent or received while
//! `current` is some unrelated task (a timer in `swapper`, softirq in the peer's process), so each
//! event carries both `current` and the socket's owner, and the agent decides which to trust.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod floor;
#[cfg(target_arch = "bpf")]
mod history;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod owner;
#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// On the host this crate is an empty binary so `cargo check --workspace` stays happy.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
