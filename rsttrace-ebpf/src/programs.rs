//! One program per tracepoint: pick out what the kernel side must act on, then emit.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use rsttrace_common::EventKind;

use crate::{
    emit::{emit, field, layout},
    owner,
};

const IPPROTO_TCP: u16 = 6;

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::SendReset);
    let sk: u64 = field(&ctx, l.skaddr).unwrap_or(0);
    let skb: u64 = field(&ctx, l.skbaddr).unwrap_or(0);
    if sk != 0 && field::<i32>(&ctx, l.state) == Some(owner::TCP_CLOSE) {
        let _ = crate::maps::ABORTED.insert(sk, 1, 0);
    }
    emit(&ctx, EventKind::SendReset, sk, skb);
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = field(&ctx, layout(EventKind::ReceiveReset).skaddr).unwrap_or(0);
    emit(&ctx, EventKind::ReceiveReset, sk, 0);
    0
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let sk: u64 = field(&ctx, layout(EventKind::Retransmit).skaddr).unwrap_or(0);
    emit(&ctx, EventKind::Retransmit, sk, 0);
    0
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::SetState);
    // The tracepoint also fires for SCTP and MPTCP sockets; only TCP matters here.
    if field::<u16>(&ctx, l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    let sk: u64 = field(&ctx, l.skaddr).unwrap_or(0);
    let old: i32 = field(&ctx, l.oldstate).unwrap_or(0);
    let new: i32 = field(&ctx, l.newstate).unwrap_or(0);
    if sk != 0 {
        if new == owner::TCP_SYN_RECV {
            owner::forget(sk);
        } else if owner::is_process_context_transition(old, new) {
            owner::learn(sk);
        }
    }
    emit(&ctx, EventKind::SetState, sk, 0);
    // The socket's life is over; its memory may next hold a TIME_WAIT or request socket that
    // must not inherit this owner. The agent keeps the story.
    if sk != 0 && new == owner::TCP_CLOSE {
        owner::forget(sk);
    }
    0
}

#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::ErrorReport);
    if field::<u16>(&ctx, l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    emit(&ctx, EventKind::ErrorReport, 0, 0);
    0
}

/// Destruction tells an abortive close() (the socket dies in the same call) from a
/// connect(AF_UNSPEC) disconnect (the socket lives on), which the kernel reports alike.
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    let sk: u64 = field(&ctx, layout(EventKind::DestroySock).skaddr).unwrap_or(0);
    // Every socket is destroyed; only an aborted one's destruction is news.
    if sk != 0 && crate::maps::ABORTED.get_ptr(sk).is_some() {
        let _ = crate::maps::ABORTED.remove(sk);
        emit(&ctx, EventKind::DestroySock, sk, 0);
    }
    0
}

/// `sock:sock_send_length` and `sock:sock_recv_length` (Linux 6.4+) run in the system call of
/// the task using the socket: the most reliable owner signal, and the one that follows a socket
/// into a forked child. Nothing is emitted; they only keep `OWNERS` current.
#[tracepoint]
pub fn sock_msg_length(ctx: TracePointContext) -> u32 {
    let l = crate::maps::CONFIG.load().sock_msg;
    if field::<u16>(&ctx, l.protocol) != Some(IPPROTO_TCP) {
        return 0;
    }
    if let Some(sk) = field::<u64>(&ctx, l.sk).filter(|sk| *sk != 0) {
        owner::learn(sk);
    }
    0
}
