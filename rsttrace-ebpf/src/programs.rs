//! The classic tracepoint programs (and the kprobes), one per hook; `typed.rs` shares their
//! logic where it replaces them. Only resets (and a listener's start and end) cross the ring
//! buffer: a connection that never resets leaves nothing but its record in `SOCKS`, marked
//! closed at its CLOSE, and two stores in the history arrays. Event programs reserve the event
//! (the record is copied in), pick out what they must act on from the copy, then submit or
//! discard.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::{kprobe, tracepoint},
    programs::{ProbeContext, TracePointContext},
};
use rsttrace_common::{EventKind, Owner, RaceEntry, SockRecord, TracepointLayout, ERROR_REPORT_SHAPE, SET_STATE_SHAPE};

use crate::{
    emit::{early_field, layout, pending_errors_read, ECONNREFUSED, orphan_timed_out, pending_error, probe_field, record_key, sk_state, Draft, Record},
    evidence, fold, history, release, socks,
    maps::{CloseSlot, TupleKey, RELEASE, TCP_PROBE},
    owner::{
        self, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LISTEN, TCP_NEW_SYN_RECV,
        TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT,
    },
};

pub(crate) const IPPROTO_TCP: u16 = 6;
pub(crate) const AF_INET: u16 = 2;

/// A full socket's reset: its record, or, from CLOSE, the record the CLOSE just before in the
/// same call kept in this CPU's close slots (close() and the stack's aborts change the state
/// first), or left marked in `SOCKS` when the task moved CPU in between.
#[inline(always)]
pub(crate) fn record_at_reset(sk: u64, state: i32) -> (Option<&'static SockRecord>, Option<&'static CloseSlot>) {
    if sk == 0 || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return (None, None); // no full socket: no record
    }
    if state == TCP_CLOSE {
        if let Some(close) = history::last_close(|c| c.sk == sk).or_else(|| closed_on_another_cpu(sk)) {
            return ((close.has_record != 0).then_some(&close.record), Some(close));
        }
    }
    (owner::record(sk), None)
}

/// The CLOSE before this reset ran on another CPU (close() was preempted and moved between its
/// state change and its RST): take what it left in `SOCKS` into this CPU's close slots, as if
/// the CLOSE had run here.
#[inline(always)]
fn closed_on_another_cpu(sk: u64) -> Option<&'static CloseSlot> {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_jiffies64() };
    let (slot, key, closed_from) = socks::closed(sk, now)?;
    // SAFETY: a pointer into array value memory, valid for this program run; the record is
    // copied with volatile reads and checked below.
    let close = history::note_close(sk, closed_from, &key, Some(unsafe { &(*slot).record }), now)?;
    if !socks::still_closed(slot, sk) {
        // Another socket took the slot while it was copied: what was read may be torn.
        close.sk = 0;
        return None;
    }
    Some(close)
}

/// Where `tcp_send_reset` keeps these on every kernel we know (6.1 to 6.18).
const SEND_RESET_SKBADDR: u16 = 8;
const SEND_RESET_SKADDR: u16 = 16;

/// `tcp:tcp_send_reset` where it fires for full sockets only (before 6.10; the kprobe below
/// sees the rest).
#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    send_reset(&ctx, false)
}

/// `tcp:tcp_send_reset` where it fires without a socket too (6.10+), under the classic programs
/// (the typed `send_reset_typed` replaces it otherwise): a refused SYN's RST may be counted here
/// instead (see `fold.rs`). A program of its own: the count's stack, on top of the
/// rest, is more than older verifiers allow, and they never need it.
#[tracepoint]
pub fn tcp_send_reset_counting(ctx: TracePointContext) -> u32 {
    send_reset(&ctx, true)
}

#[inline(always)]
fn send_reset(ctx: &TracePointContext, counting: bool) -> u32 {
    let l = layout(EventKind::SendReset);
    if counting && fold::enabled() && early_field::<u64, SEND_RESET_SKADDR>(ctx, l.skaddr) == Some(0) {
        if fold::refused_syn(early_field::<u64, SEND_RESET_SKBADDR>(ctx, l.skbaddr).unwrap_or(0)) {
            return 0;
        }
    }
    let Some(d) = Draft::reserve(ctx, EventKind::SendReset) else { return 0 };
    let sk: u64 = d.field(l.skaddr).unwrap_or(0);
    let skb: u64 = d.field(l.skbaddr).unwrap_or(0);
    let state: i32 = d.field(l.state).unwrap_or(0);
    let (record, close) = record_at_reset(sk, state);
    note_reset_sent(sk, close);
    d.submit(sk, skb, record, close);
    0
}

/// One more RST sent by the socket at `sk`: counted in its record, or, from CLOSE (whose record
/// the close slot holds now: an abort in close()), marked on its 4-tuple's note as its end.
#[inline(always)]
pub(crate) fn note_reset_sent(sk: u64, close: Option<&CloseSlot>) {
    match close {
        Some(c) => history::mark_ended_badly(&c.key, sk),
        None => {
            if let Some(r) = socks::find(sk) {
                // SAFETY: pointer into array value memory, valid for this program run.
                unsafe { (*r).resets_sent += 1 };
            }
        }
    }
}

/// `tcp_v4_send_reset`/`tcp_v6_send_reset(sk, skb, …)`, attached only on kernels whose
/// `tcp:tcp_send_reset` fires for full sockets alone (before 6.10): the resets sent with no
/// socket (closed port), from a TIME_WAIT socket or for a request socket are seen here.
#[kprobe]
pub fn send_reset_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let skb: u64 = ctx.arg(1).unwrap_or(0);
    let state = sk_state(sk);
    if sk != 0 && state as i32 != TCP_TIME_WAIT && state as i32 != TCP_NEW_SYN_RECV {
        return 0; // a full socket: the tracepoint reports it
    }
    if sk == 0 && fold::refused_syn(skb) {
        return 0;
    }
    if let Some(d) = Draft::reserve_without_record(EventKind::SendReset, state) {
        d.submit(sk, skb, None, None);
    }
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let Some(d) = Draft::reserve(&ctx, EventKind::ReceiveReset) else { return 0 };
    let sk: u64 = d.field(layout(EventKind::ReceiveReset).skaddr).unwrap_or(0);
    d.submit(sk, 0, owner::record(sk), None);
    0
}

/// Where `inet_sock_set_state` keeps its fields on every kernel we know (6.1 to 6.18).
const SET_STATE_SKADDR: u16 = SET_STATE_SHAPE.skaddr;
const SET_STATE_OLDSTATE: u16 = SET_STATE_SHAPE.oldstate;
const SET_STATE_NEWSTATE: u16 = SET_STATE_SHAPE.newstate;
const SET_STATE_SPORT: u16 = SET_STATE_SHAPE.sport;
const SET_STATE_DPORT: u16 = SET_STATE_SHAPE.dport;
const SET_STATE_FAMILY: u16 = SET_STATE_SHAPE.family;
const SET_STATE_PROTOCOL: u16 = SET_STATE_SHAPE.protocol;
const SET_STATE_SADDR: u16 = SET_STATE_SHAPE.saddr4;
const SET_STATE_DADDR: u16 = SET_STATE_SHAPE.daddr4;
const SET_STATE_SADDR_V6: u16 = SET_STATE_SHAPE.saddr6;
const SET_STATE_DADDR_V6: u16 = SET_STATE_SHAPE.daddr6;

/// The record's fields sit where every kernel we know puts them (not PREEMPT_RT's longer header).
#[inline(always)]
fn usual_set_state_layout(l: &TracepointLayout) -> bool {
    l.sport == SET_STATE_SPORT
        && l.dport == SET_STATE_DPORT
        && l.family == SET_STATE_FAMILY
        && l.saddr4 == SET_STATE_SADDR
        && l.daddr4 == SET_STATE_DADDR
        && l.saddr6 == SET_STATE_SADDR_V6
        && l.daddr6 == SET_STATE_DADDR_V6
}

/// A load at a literal offset of the record: the verifier refuses one through a context pointer
/// moved by a register, which a load at a run-time offset becomes.
#[inline(always)]
fn at<T: Copy, const OFFSET: u16>(ctx: &TracePointContext) -> T {
    // SAFETY: inside the record (the caller checked this kernel's layout).
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(OFFSET as usize) as *const T) }
}

/// The 4-tuple of a state change's socket, and its family and remote address as a race entry
/// keeps them.
#[inline(always)]
fn set_state_ends(ctx: &TracePointContext) -> Option<(TupleKey, u16, [u8; 16])> {
    let l = layout(EventKind::SetState);
    if !usual_set_state_layout(&l) {
        let key = record_key(&Record(ctx), &l)?;
        let family = probe_field::<u16>(ctx, l.family)?;
        let mut raddr = [0u8; 16];
        if family == AF_INET {
            raddr[..4].copy_from_slice(&probe_field::<[u8; 4]>(ctx, l.daddr4)?);
        } else {
            raddr = probe_field(ctx, l.daddr6)?;
        }
        return Some((key, family, raddr));
    }
    let family = at::<u16, SET_STATE_FAMILY>(ctx);
    let mut raddr = [0u8; 16];
    let (laddr, raddr_tail) = if family == AF_INET {
        let r = at::<u32, SET_STATE_DADDR>(ctx);
        raddr[..4].copy_from_slice(&r.to_ne_bytes());
        (at::<u32, SET_STATE_SADDR>(ctx), r)
    } else {
        raddr[..8].copy_from_slice(&at::<u64, SET_STATE_DADDR_V6>(ctx).to_ne_bytes());
        raddr[8..].copy_from_slice(&at::<u64, { SET_STATE_DADDR_V6 + 8 }>(ctx).to_ne_bytes());
        (at::<u32, { SET_STATE_SADDR_V6 + 12 }>(ctx), at::<u32, { SET_STATE_DADDR_V6 + 12 }>(ctx))
    };
    let key = TupleKey { lport: at::<u16, SET_STATE_SPORT>(ctx), rport: at::<u16, SET_STATE_DPORT>(ctx), laddr, raddr: raddr_tail };
    Some((key, family, raddr))
}

/// A state change as the program at its hook sees it.
pub(crate) trait StateChange {
    /// The socket's 4-tuple, and its family and remote address as a race entry keeps them.
    fn ends(&self) -> Option<(TupleKey, u16, [u8; 16])>;
    /// A reserved state-change event with the change's record in it (a listener's start or
    /// end, an orphan's timeout).
    fn change_draft(&self) -> Option<Draft>;
    /// The closing socket's pending error (see `pending_error`).
    fn pending_error(&self, sk: u64) -> i32 {
        pending_error(sk)
    }
    /// Whether the socket goes to CLOSE in its owner's close() with SO_LINGER 0 and nothing
    /// unread, so that a RST with reason TCP_STATE comes next (only where the kernel side may
    /// count that RST: see `fold::abort_coming`).
    fn closes_abortively(&self) -> bool {
        false
    }
}

/// A classic tracepoint's record.
struct Classic<'a>(&'a TracePointContext);

impl StateChange for Classic<'_> {
    #[inline(always)]
    fn ends(&self) -> Option<(TupleKey, u16, [u8; 16])> {
        set_state_ends(self.0)
    }

    #[inline(always)]
    fn change_draft(&self) -> Option<Draft> {
        Draft::reserve(self.0, EventKind::SetState)
    }
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::SetState);
    // The tracepoint also fires for SCTP and MPTCP sockets; only TCP matters here.
    if early_field::<u16, SET_STATE_PROTOCOL>(&ctx, l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    let sk = early_field::<u64, SET_STATE_SKADDR>(&ctx, l.skaddr).unwrap_or(0);
    let old = early_field::<i32, SET_STATE_OLDSTATE>(&ctx, l.oldstate).unwrap_or(0);
    let new = early_field::<i32, SET_STATE_NEWSTATE>(&ctx, l.newstate).unwrap_or(0);
    if sk != 0 {
        state_changed(&Classic(&ctx), sk, old, new);
    }
    0
}

/// Keeps each socket's record and the history arrays. Reports only a listener's start (its owner
/// answers for its connections) and end (the resets of its accept queue come next); every other
/// transition stays in the kernel.
#[inline(always)]
pub(crate) fn state_changed<C: StateChange>(change: &C, sk: u64, old: i32, new: i32) {
    match new {
        TCP_SYN_SENT if old == TCP_CLOSE => owner::open(sk),
        // A listener's new child; a record at its address is a freed socket's.
        TCP_SYN_RECV if old != TCP_SYN_SENT => owner::forget_if_any(sk),
        TCP_ESTABLISHED => established(change, sk, old),
        TCP_CLOSE => closed(change, sk, old),
        TCP_LISTEN => {
            let owner = owner::listen(sk);
            report_listener(change, sk, owner);
        }
        _ if owner::is_learned_transition(old, new) => {
            owner::learn(sk);
        }
        _ => {}
    }
}

/// Whether `state_changed` may act on this transition, from the states alone: a typed program
/// checks it before reading the socket, so the many transitions that change nothing (FIN_WAIT1
/// to FIN_WAIT2, ESTABLISHED to CLOSE_WAIT, …) read nothing else. (A classic program has its
/// record already; `state_changed`'s own match passes over them.)
#[inline(always)]
pub(crate) fn changes_records(old: i32, new: i32) -> bool {
    matches!(new, TCP_SYN_SENT | TCP_SYN_RECV | TCP_ESTABLISHED | TCP_CLOSE | TCP_LISTEN) || owner::is_learned_transition(old, new)
}

/// The handshake completed: the 4-tuple is noted as open (a peer on this host is found by it),
/// and a connection this host opened is noted under its owner and remote port (a connect race
/// is found by it).
#[inline(always)]
fn established<C: StateChange>(change: &C, sk: u64, old: i32) {
    let Some((key, family, raddr)) = change.ends() else { return };
    let mut owner = None;
    if let Some(record) = socks::find(sk) {
        // SAFETY: pointer into array value memory, valid for this program run.
        let record = unsafe { &mut *record };
        owner = Some(&record.owner);
        if old == TCP_SYN_SENT && record.opened_ns != 0 {
            // SAFETY: helper without preconditions.
            record.established_ns = unsafe { bpf_ktime_get_ns() };
            let entry = RaceEntry { sk, opened_ns: record.opened_ns, established_ns: record.established_ns, raddr, family, rport: key.rport, _pad: [0; 4] };
            history::note_opened(record.owner.tgid, &entry);
        }
    }
    history::note_tuple(&key, sk, owner, None);
}

/// The socket's life is over: its record moves to this CPU's close slot for the rest of the
/// call, and its 4-tuple is noted as closed by its owner. A listener's close is reported.
#[inline(always)]
fn closed<C: StateChange>(change: &C, sk: u64, old: i32) {
    let key = change.ends().map_or(TupleKey { lport: 0, rport: 0, laddr: 0, raddr: 0 }, |(key, _, _)| key);
    // SAFETY: pointer into array value memory, valid for this program run; read before the
    // slot is marked closed (free for another socket) below.
    let record = socks::find(sk).map(|r| unsafe { &*r });
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_jiffies64() };
    // The record as it was, for the rest of the call: from here on it is read from this CPU's
    // close slot, which no other CPU writes (a later socket may take the table's slot).
    let close: Option<&CloseSlot> = history::note_close(sk, old, &key, record, now).map(|c| c as &CloseSlot);
    let kept = close.filter(|c| c.has_record != 0).map(|c| &c.record);
    // Connections that were up have a history worth keeping, and a connect given up an owner
    // that the RST answering a late SYN-ACK needs (a refused connect has neither). A
    // pending error says a reset or a timer ended it; so does a RST the socket sent just before
    // with none (an orphan's FIN_WAIT2 timer, out of resources); an abort's RST in close(),
    // traced after this CLOSE, marks it after.
    let up = old != TCP_SYN_SENT && old != TCP_LISTEN;
    let connecting = old == TCP_SYN_SENT;
    let err = if up || connecting { change.pending_error(sk) } else { 0 };
    if up && key.rport != 0 {
        let badly = err != 0 || kept.is_some_and(|r| r.resets_sent != 0);
        history::note_tuple(&key, sk, kept.map(|r| &r.owner), Some((now, badly)));
    } else if connecting && err != ECONNREFUSED && key.rport != 0 && pending_errors_read() {
        // A connect given up by its owner (no error), or by a SYN timeout (ended badly), not
        // refused: the peer's SYN-ACK may still come, and the RST answering it, with no socket,
        // finds its owner here. (A storm of refused connects notes nothing, and without the
        // error's offset none is noted.)
        history::note_tuple(&key, sk, kept.map(|r| &r.owner), Some((now, err != 0)));
    }
    socks::mark_closed(sk, old, &key, now);
    // A connection this host opened crosses (the agent tells a connect race's loser, and a client
    // skipping TIME_WAIT, from its history), so only others are noted. (CLOSING and LAST_ACK with
    // data unsent send TCP_STATE's RST too, but are never noted: they cross.) Load-time
    // constant first.
    if fold::enabled() && key.rport != 0 && sends_reset_on_abort(old) && kept.is_none_or(|r| r.opened_ns == 0) && change.closes_abortively() {
        fold::abort_coming(&key);
    }
    let owner = || kept.map_or(Owner::UNKNOWN, |r| r.owner);
    if old == TCP_LISTEN {
        report_listener(change, sk, owner());
    }
    // A connection that was up can die an orphan; a refused or timed-out connect is no orphan.
    if up && orphan_timed_out(sk, err) {
        if let Some(d) = change.change_draft() {
            d.submit_orphan_timeout(sk, owner(), old);
        }
    }
}

/// The states from which an abort sends a RST (the kernel's `tcp_need_reset()`).
#[inline(always)]
fn sends_reset_on_abort(state: i32) -> bool {
    matches!(state, TCP_ESTABLISHED | TCP_CLOSE_WAIT | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_SYN_RECV)
}

/// A listener started or stopped: the agent keeps listeners by port.
#[inline(always)]
fn report_listener<C: StateChange>(change: &C, sk: u64, owner: Owner) {
    if let Some(d) = change.change_draft() {
        d.submit_listener(sk, owner);
    }
}

/// Only ETIMEDOUT and ECONNABORTED are news: a timeout that killed the connection without a RST
/// or named a keepalive's, and a tool's destroying a socket on kernels that give no reason. The
/// other errors (ECONNRESET, ECONNREFUSED, EPIPE) echo a reset the agent already saw, so they are
/// judged from the record before anything is reserved: a refused connect() reports one per socket.
pub(crate) const ETIMEDOUT: i32 = 110;
pub(crate) const ECONNABORTED: i32 = 103;
/// Where `inet_sk_error_report` keeps them on every kernel we know (6.1 to 6.18).
const ERROR_REPORT_ERROR: u16 = ERROR_REPORT_SHAPE.error;
const ERROR_REPORT_SPORT: u16 = ERROR_REPORT_SHAPE.sport;
const ERROR_REPORT_DPORT: u16 = ERROR_REPORT_SHAPE.dport;
const ERROR_REPORT_PROTOCOL: u16 = ERROR_REPORT_SHAPE.protocol;

/// The record has no socket; `tcp_done()` moved it to CLOSE just before on this CPU, so the
/// close slot holds its record, the state it died in, and the socket to read its retransmission
/// count from.
#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    let l = layout(EventKind::ErrorReport);
    if early_field::<u16, ERROR_REPORT_PROTOCOL>(&ctx, l.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    if early_field::<i32, ERROR_REPORT_ERROR>(&ctx, l.error).is_some_and(|e| e != ETIMEDOUT && e != ECONNABORTED) {
        return 0;
    }
    let sport = early_field::<u16, ERROR_REPORT_SPORT>(&ctx, l.sport).unwrap_or(0);
    let dport = early_field::<u16, ERROR_REPORT_DPORT>(&ctx, l.dport).unwrap_or(0);
    let close = history::last_close(|c| c.key.lport == sport && c.key.rport == dport);
    if let Some(d) = Draft::reserve(&ctx, EventKind::ErrorReport) {
        let record = close.filter(|c| c.has_record != 0).map(|c| &c.record);
        d.submit(0, 0, record, close);
    }
    0
}

/// Where `tcp:tcp_destroy_sock` keeps the socket on every kernel we know (6.1 to 6.18).
const DESTROY_SKADDR: u16 = 8;

/// `tcp:tcp_destroy_sock`: a socket's end; see `release.rs`.
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    release::destroyed(|| early_field::<u64, DESTROY_SKADDR>(&ctx, RELEASE.load().skaddr).unwrap_or(0));
    0
}

/// Where `tcp:tcp_probe` keeps these on the kernels that name the segment (6.12 and 6.18).
const TCP_PROBE_SPORT: u16 = 64;
const TCP_PROBE_DPORT: u16 = 66;
const TCP_PROBE_DATA_LEN: u16 = 76;
const TCP_PROBE_SKBADDR: u16 = 120;
const TCP_PROBE_SKADDR: u16 = 128;

/// `--network-evidence`: every segment an established socket receives (`tcp_rcv_established`).
#[tracepoint]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    let l = TCP_PROBE.load();
    let sk = early_field::<u64, TCP_PROBE_SKADDR>(&ctx, l.skaddr).unwrap_or(0);
    let seen = evidence::Seen {
        lport: early_field::<u16, TCP_PROBE_SPORT>(&ctx, l.sport).unwrap_or(0),
        rport: early_field::<u16, TCP_PROBE_DPORT>(&ctx, l.dport).unwrap_or(0),
        data_len: early_field::<u16, TCP_PROBE_DATA_LEN>(&ctx, l.data_len).unwrap_or(0),
    };
    if evidence::skipped(sk, &seen) {
        return 0;
    }
    let skb = early_field::<u64, TCP_PROBE_SKBADDR>(&ctx, l.skbaddr).unwrap_or(0);
    evidence::sample(sk, skb);
    0
}

/// `tcp_rcv_established(sk, skb)`: the same, on kernels whose `tcp:tcp_probe` names neither.
#[kprobe]
pub fn rcv_established_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let skb: u64 = ctx.arg(1).unwrap_or(0);
    evidence::sample(sk, skb);
    0
}
