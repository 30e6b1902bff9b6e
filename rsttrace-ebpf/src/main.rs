//! rsttrace kernel programs.
//!
//! Design: BTF-typed tracepoints (`tp_btf`, `typed.rs`) where the kernel's BTF allows, classic
//! ones (`programs.rs`) elsewhere and for `tcp_send_reset` before 6.10. A classic program copies its
//! tracepoint's raw record into the ring buffer and the agent decodes it with field offsets read
//! from the running kernel's tracefs `format` files, so one object works on every layout
//! (`tcp_send_reset` changed shape in 6.10; PREEMPT_RT kernels shift every field). A typed
//! program gets the tracepoint's arguments instead, without the record the kernel builds for a
//! classic one, reads the socket's fields straight from it (offsets from BTF, in `TYPED_SOCK`),
//! and writes the record the classic tracepoint would have built where it reports something, at
//! the offsets every known kernel gives it: the agent chooses the typed programs only where this
//! kernel's records have those, and one decoder reads both. The few fields a classic program
//! itself reads (socket address, states, protocol) come from the same format files through the
//! load-time globals in `maps.rs`, set by the agent before load. A field offset of `NO_FIELD`
//! means "this kernel has no such field".
//!
//! Only resets cross the ring buffer (and a listener's start and end, the two errors that name a
//! reset or a timeout, and the release of a socket whose reset found no owner: `release.rs`): a connection that never resets costs its state changes' program
//! runs and a few array loads and stores, nothing in the agent. What a verdict needs from before
//! the reset is kept in the kernel: per socket, `SOCKS` (its owner, learned only in process context,
//! and when a connection this host opened began and completed its handshake), and across
//! connections, the history arrays of `history.rs`. A reset carries them, with what the socket
//! itself says at that instant. Under `--network-evidence` one more program samples how the peer's
//! segments arrive (`evidence.rs`). Past `--max-rate` on a CPU, a storm's refused SYNs and the
//! refusals connecting sockets receive are counted by kind instead of crossing (`fold.rs`).
//! Apart from the tracing, an iterator the agent runs on demand names the process holding a
//! socket's file (`holders.rs`): past its start the agent may not read `/proc/PID/fd`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod evidence;
#[cfg(target_arch = "bpf")]
mod floor;
#[cfg(target_arch = "bpf")]
mod fold;
#[cfg(target_arch = "bpf")]
mod history;
#[cfg(target_arch = "bpf")]
mod holders;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod owner;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod release;
#[cfg(target_arch = "bpf")]
mod socks;
#[cfg(target_arch = "bpf")]
mod typed;
#[cfg(target_arch = "bpf")]
mod words;

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
