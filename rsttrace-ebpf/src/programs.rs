//! One program per tracepoint: reserve the event (the record is copied in), pick out what the
//! kernel side must act on from the copy, then submit or discard. Programs that usually ship
//! nothing (error reports, destructions, a received reset's CLOSE) decide from the record first.
use aya_ebpf::{
    helpers::generated::bpf_jiffies64,
    macros::{kprobe, tracepoint},
    programs::{ProbeContext, TracePointContext},
};
use rsttrace_common::{EventKind, Owner};

use crate::{
    emit::{early_field, filters_by_owner, layout, sk_state, Detail, Draft},
    maps::{ResetSlot, ABORTED, RESET_CLOSES, SOCK_MSG},
    owner,
};

const IPPROTO_TCP: u16 = 6;

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::SendReset);
    let Some(d) = Draft::reserve(&ctx, EventKind::SendReset) else { return 0 };
    let sk: u64 = d.field(l.skaddr).unwrap_or(0);
    let skb: u64 = d.field(l.skbaddr).unwrap_or(0);
    // Sent from CLOSE: an abortive close or a disconnect, told apart by whether it is destroyed.
    if sk != 0 && d.field::<i32>(l.state) == Some(owner::TCP_CLOSE) {
        let _ = ABORTED.insert(sk, 1, 0);
    }
    d.submit(sk, skb);
    0
}

/// `tcp_v4_send_reset`/`tcp_v6_send_reset(sk, skb, …)`, attached only on kernels whose
/// `tcp:tcp_send_reset` fires for full sockets alone (before 6.10): the resets sent with no
/// socket (closed port), from a TIME_WAIT socket or for a request socket are seen here.
#[kprobe]
pub fn send_reset_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let skb: u64 = ctx.arg(1).unwrap_or(0);
    let state = sk_state(sk);
    if sk != 0 && state as i32 != owner::TCP_TIME_WAIT && state as i32 != owner::TCP_NEW_SYN_RECV {
        return 0; // a full socket: the tracepoint reports it
    }
    if let Some(d) = Draft::reserve_without_record(EventKind::SendReset, state) {
        d.submit(sk, skb);
    }
    0
}

/// A received reset kills its socket: `tcp_reset()` calls `tcp_done()` next, and that CLOSE is
/// not reported (the agent closes the story at the reset). Only for a reset that went out: a lost
/// or filtered one leaves the CLOSE to tell.
#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let Some(d) = Draft::reserve(&ctx, EventKind::ReceiveReset) else { return 0 };
    let sk: u64 = d.field(layout(EventKind::ReceiveReset).skaddr).unwrap_or(0);
    if d.submit(sk, 0) {
        if let Some(slot) = RESET_CLOSES.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs;
            // `bpf_jiffies64` has no preconditions.
            unsafe { *slot = ResetSlot { sk, jiffies: bpf_jiffies64() } };
        }
    }
    0
}

/// How many clock ticks after a reported reset its CLOSE may come: microseconds apart in one
/// kernel call, so the same or the next tick (1 to 8 ms by HZ) leaves room for interrupts and
/// rules out a later socket at a reused address. Ticks, because the clock itself costs ~60 ns.
const RESET_CLOSE_WITHIN_TICKS: u64 = 2;

/// This state change is the CLOSE of the socket whose received reset this CPU reported just
/// before. Every state change clears the slot, so only the next one on this CPU can match, and
/// only within [`RESET_CLOSE_WITHIN_TICKS`]. A slot left behind (`tcp_reset()` of a socket already in
/// CLOSE makes no change; a task that moved CPUs in between makes it elsewhere, where it is
/// reported) thus cannot hide the CLOSE of a later socket at the same address.
#[inline(always)]
fn closed_by_reported_reset(sk: u64, new: i32) -> bool {
    let Some(slot) = RESET_CLOSES.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs; the helper
    // has no preconditions.
    unsafe {
        let reset_sk = (*slot).sk;
        if reset_sk == 0 {
            return false; // the common case: nothing to clear
        }
        (*slot).sk = 0;
        reset_sk == sk && new == owner::TCP_CLOSE && bpf_jiffies64().wrapping_sub((*slot).jiffies) < RESET_CLOSE_WITHIN_TICKS
    }
}

/// Where `inet_sock_set_state` keeps these on every kernel we know (6.1 to 6.18).
const SET_STATE_SKADDR: u16 = 8;
const SET_STATE_NEWSTATE: u16 = 20;

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let Some(d) = Draft::reserve(&ctx, EventKind::Retransmit) else { return 0 };
    let sk: u64 = d.field(layout(EventKind::Retransmit).skaddr).unwrap_or(0);
    d.submit(sk, 0);
    0
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::SetState);
    let sk = early_field::<u64, SET_STATE_SKADDR>(&ctx, l.skaddr).unwrap_or(0);
    let new = early_field::<i32, SET_STATE_NEWSTATE>(&ctx, l.newstate).unwrap_or(0);
    if closed_by_reported_reset(sk, new) {
        // The socket's life is over (see below): forget its owner all the same.
        owner::forget_if_any(sk);
        return 0;
    }
    // Unfiltered until submit: the owner bookkeeping below must also run for sockets the filter
    // drops, or their stale owners would outlive them and misjudge the next socket at the address.
    let Some(d) = Draft::reserve_unfiltered(&ctx, EventKind::SetState) else { return 0 };
    // The tracepoint also fires for SCTP and MPTCP sockets; only TCP matters here.
    if d.field::<u16>(l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0; // dropped: discarded
    }
    let old: i32 = d.field(l.oldstate).unwrap_or(0);
    let new_connection = owner::is_new_connection(old, new);
    let starts_story = new_connection || new == owner::TCP_LISTEN;
    let detail = Detail {
        // connect()'s owner, and a listener's if nothing else names it, is `current`.
        current: starts_story,
        // A new story needs it; so does a close, the last word on a story that may have begun
        // unseen (before rsttrace started, or evicted since) and, for a listener, the key its
        // owner is filed under. Free when the owner on record has it.
        netns: starts_story || new == owner::TCP_CLOSE,
    };
    let owner = if sk == 0 {
        Owner::UNKNOWN
    } else if new_connection {
        if new == owner::TCP_SYN_SENT && filters_by_owner() {
            // `-p`/`-c` judge events in the kernel by owner: without it here, every event of
            // this socket would cross the ring buffer for the agent to drop.
            owner::learn(sk)
        } else {
            owner::forget_if_any(sk);
            Owner::UNKNOWN
        }
    } else if owner::is_learned_transition(old, new) {
        owner::learn(sk)
    } else {
        owner::lookup(sk)
    };
    d.submit_owned(sk, 0, owner, detail);
    // The socket's life is over; its memory may next hold a TIME_WAIT or request socket that
    // must not inherit this owner. The agent keeps the story.
    if new == owner::TCP_CLOSE && owner.is_known() {
        owner::forget(sk);
    }
    0
}

/// Only ETIMEDOUT and ECONNABORTED are news: a timeout that killed the connection without a RST
/// or named a keepalive's, and a tool's destroying a socket on kernels that give no reason. The
/// other errors (ECONNRESET, ECONNREFUSED, EPIPE) echo a reset the agent already saw, so they are
/// judged from the record before anything is reserved: a refused connect() reports one per socket.
const ETIMEDOUT: i32 = 110;
const ECONNABORTED: i32 = 103;
/// Where `inet_sk_error_report` keeps them on every kernel we know (6.1 to 6.18).
const ERROR_REPORT_ERROR: u16 = 8;
const ERROR_REPORT_PROTOCOL: u16 = 18;

#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::ErrorReport);
    if early_field::<u16, ERROR_REPORT_PROTOCOL>(&ctx, l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    if early_field::<i32, ERROR_REPORT_ERROR>(&ctx, l.error).is_some_and(|e| e != ETIMEDOUT && e != ECONNABORTED) {
        return 0;
    }
    if let Some(d) = Draft::reserve(&ctx, EventKind::ErrorReport) {
        d.submit(0, 0);
    }
    0
}

/// `skaddr` in `tcp_destroy_sock` on every kernel we know.
const DESTROY_SOCK_SKADDR: u16 = 8;

/// Destruction tells an abortive close() (the socket dies in the same call) from a
/// connect(AF_UNSPEC) disconnect (the socket lives on), which the kernel reports alike. Every
/// socket is destroyed; only an aborted one's destruction is news, so nothing is reserved first.
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    let sk: u64 = early_field::<u64, DESTROY_SOCK_SKADDR>(&ctx, layout(EventKind::DestroySock).skaddr).unwrap_or(0);
    if sk != 0 && ABORTED.get_ptr(sk).is_some() {
        let _ = ABORTED.remove(sk);
        if let Some(d) = Draft::reserve(&ctx, EventKind::DestroySock) {
            d.submit(sk, 0);
        }
    }
    0
}

/// Where `sock_send_length`/`sock_recv_length` keep these on every kernel that has them (6.4+)
/// without PREEMPT_RT.
const SOCK_MSG_SK: u16 = 8;
const SOCK_MSG_PROTOCOL: u16 = 18;

/// `sock:sock_send_length` and `sock:sock_recv_length` (Linux 6.4+) run in the system call of
/// the task using the socket: the most reliable owner signal, and the one that follows a socket
/// into a forked child. Nothing is emitted; they only keep `OWNERS` current. They fire for every
/// message on every socket, so they must stay cheap.
#[tracepoint]
pub fn sock_msg_length(ctx: TracePointContext) -> u32 {
    let l = SOCK_MSG.load();
    let protocol = early_field::<u16, SOCK_MSG_PROTOCOL>(&ctx, l.protocol).unwrap_or(0);
    let sk = early_field::<u64, SOCK_MSG_SK>(&ctx, l.sk).unwrap_or(0);
    if protocol == IPPROTO_TCP && sk != 0 {
        let _ = owner::learn(sk);
    }
    0
}
