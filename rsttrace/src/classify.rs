//! The classifier: (what happened, the connection's story) → cause, origin, benign, why.
//!
//! Pure and table-tested. It never trusts the kernel reason alone: SO_LINGER 0 arrives as
//! `TCP_STATE`, data after the application closed arrives as `TCP_TIMEWAIT_SOCKET`, and kernels
//! before 6.10 give no reason at all. Where the facts do not single out a cause it says
//! `unknown` and explains what it does know.
use std::{borrow::Cow, fmt, net::{IpAddr, SocketAddr}};

use crate::{
    ended_here::{EarlierEnd, EndedBy},
    event::{Comm, SockFacts, Task, TcpState, TimeoutFacts},
    evidence::Evidence,
    report::{Cause, Origin, Verdict},
};

/// What happened, as far as the event itself says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// This host's stack emitted a RST.
    Sent {
        /// `sk_rst_reason` name; `None` on kernels without it.
        reason: Option<&'static str>,
        /// Local socket state when it was sent; `None` when there was no socket.
        state: Option<TcpState>,
        /// Whether the segment that triggered it was a SYN, when known.
        trigger_syn: Option<bool>,
        /// The socket's condition at that moment: who holds it on every kernel, the reason's
        /// stand-ins only on kernels without a reason.
        facts: Option<SockFacts>,
    },
    /// A local socket accepted a RST.
    Received { state: Option<TcpState> },
    /// The connection died with an error and no RST (ETIMEDOUT).
    TimedOut { state: Option<TcpState> },
}

/// What the connection table knows around the event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Story {
    /// This host opened the connection (connect()).
    pub active_open: bool,
    /// The peer had closed its side (FIN received: CLOSE_WAIT).
    pub peer_closed: bool,
    /// A connection this host opened ended soon after data went both ways, with everything it
    /// sent acknowledged: a request answered.
    pub answered_briefly: bool,
    /// A connection this host opened ended right after its handshake, no data either way.
    pub probed: bool,
    /// Consecutive retransmissions of the same segment at the end.
    pub same_segment_retransmits: u32,
    /// A timeout whose socket counted no retransmission timeout at all (read, not unknown).
    pub no_retransmission_timed_out: bool,
    /// A timeout: the socket's TCP_USER_TIMEOUT and probes, where read.
    pub timeout: Option<TimeoutFacts>,
    pub syn_retransmits: u32,
    /// An earlier connection used the same 4-tuple on this host.
    pub tuple_reused: bool,
    /// ... and the peer, on this host, still holds that earlier connection open (half-open).
    pub peer_holds_open: bool,
    /// The owner was told ETIMEDOUT right after (a timer gave up).
    pub timed_out: bool,
    /// The socket was reset to CLOSE but not destroyed: the application still holds it
    /// (connect(AF_UNSPEC)), unlike close() with SO_LINGER 0, which destroys it at once.
    pub socket_kept: bool,
    /// A local socket is the other end of this connection (peer on this host, any netns).
    pub peer_local: bool,
    /// The other end is on this host, but the RSTs it sends are not all in this trace (a
    /// process or cgroup filter drops its own), and none was seen: its cause is not known.
    pub peer_here_untraced: bool,
    /// The peer's stack (on this host) sent a RST for this connection just before.
    pub peer_sent: Option<Cause>,
    /// That RST was sent well before this one came (delayed on the way, if it is this one).
    pub peer_sent_late: bool,
    /// For a connect refused: the end of this host's stack that refused the SYN (address and
    /// port), where it is not the one dialled: an address translation took the SYN there.
    pub refused_behind_nat: Option<SocketAddr>,
    /// That RST was benign (the peer skipping TIME_WAIT, a race's loser, a connect probe).
    pub peer_benign: bool,
    /// That RST had no socket and followed an earlier end of the connection at the peer: how,
    /// and as what (see `ended_here`).
    pub peer_after: Option<EarlierEnd>,
    /// The owner opened a sibling connection to the same peer at about the same time and keeps it.
    pub race_sibling: bool,
    /// A listener of a different process now holds the local port that served this peer.
    pub port_taken_by: Option<Named>,
    /// For a SYN no socket took: the wildcard address of the port's only listeners, of the other
    /// family.
    pub listener_of_other_family: Option<IpAddr>,
    /// The owning process, for the explanation (`nginx[812]`).
    pub owner: Option<Named>,
    /// The state the socket left for CLOSE, if it did.
    pub closed_from: Option<TcpState>,
    /// The stack aborted the connection on data that arrived after the application shut the
    /// socket down or closed it (its `tcp_reset()` was no received RST).
    pub aborted_on_data: bool,
    /// Closing the listener on this port reset this connection, which waited in its accept
    /// queue with this many, counting itself.
    pub listener_waiting: Option<(u16, u32)>,
    /// The process that ran the call when it is not the owner (`ss[991]` killing nginx's socket).
    pub actor: Option<Named>,
    /// The owner was told ECONNABORTED right after this RST: a tool destroyed the socket.
    pub destroyed: bool,
    /// How a received RST and the peer's segments arrived (see `evidence.rs`).
    pub evidence: Option<Evidence>,
    /// A RST sent with no connection socket (none, or a listener's) for a segment of the
    /// connection this host itself reset a moment before, sent before the peer heard of it.
    pub echoes_reset: bool,
    /// For a RST sent connecting: the other end, on this host, refused that SYN itself (its
    /// stack's RST), so the ACK this end refused was no answer of its.
    pub peer_refused_syn: bool,
    /// For a segment no socket took, on a port nobody listens on: the owner of the listener
    /// that served it, which closed this long ago (ns).
    pub listener_gone: Option<(Named, u64)>,
    /// The connection timed out after its owner closed the socket (an orphan).
    pub orphan: bool,
    /// For a RST sent with no socket: the segment was a SYN-ACK, the peer's answer to a connect
    /// this host no longer has, and how that connect ended as far as the kernel side noted it.
    pub answers_syn_ack: Option<ConnectEnd>,
    /// For a RST sent with no connection socket (none, or a listener's) for a segment of a
    /// connection that a reset or a timeout ended here (not this host's reset a moment before,
    /// which `echoes_reset` says): that end.
    pub earlier_end: Option<EarlierEnd>,
}

/// How a connect that a late SYN-ACK answers ended here, from the kernel side's note of its
/// 4-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectEnd {
    /// Closed before its handshake with no error: its owner gave it up.
    GivenUp,
    /// Its SYNs went unanswered until the kernel gave up (ETIMEDOUT).
    TimedOut,
    /// No note: given up, or never this host's (backscatter of a SYN forged with its address).
    Unknown,
}

/// A process as a why names it: `nginx[812]`. Kept as its parts, so that a story costs no
/// formatting until a why is written with it (a storm writes few of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named {
    pub comm: Comm,
    pub pid: u32,
}

impl Named {
    pub fn new(comm: &str, pid: u32) -> Self {
        Self { comm: comm.into(), pid }
    }
}

impl From<&Task> for Named {
    fn from(t: &Task) -> Self {
        Self { comm: t.comm, pid: t.pid }
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.comm, self.pid)
    }
}

/// A process named in a why, or the words that stand in for it when none is known.
struct OrElse<'a>(Option<&'a Named>, &'static str);

impl fmt::Display for OrElse<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(named) => named.fmt(f),
            None => f.write_str(self.1),
        }
    }
}

/// A why that is a fixed sentence costs no allocation.
fn v(cause: Cause, origin: Origin, why: impl Into<Cow<'static, str>>) -> Verdict {
    Verdict { cause, origin, benign: false, why: why.into() }
}

pub fn classify(trigger: &Trigger, story: &Story) -> Verdict {
    let who = &OrElse(story.owner.as_ref(), "the application");
    match trigger {
        Trigger::Sent { reason, state, trigger_syn, facts } => sent(*reason, *state, *trigger_syn, *facts, story, who),
        Trigger::Received { state } => received(*state, story),
        Trigger::TimedOut { state } => timed_out(*state, story, who),
    }
}

/// A listener's RST refusing a handshake's last ACK while its accept queue is full
/// (`tcp_abort_on_overflow`): reason INVALID_SYN from LISTEN, or, on kernels without reasons, a
/// non-SYN segment answered with the queue read full.
pub fn refused_for_a_full_queue(reason: Option<&str>, state: Option<TcpState>, syn: Option<bool>, facts: Option<SockFacts>) -> bool {
    state == Some(TcpState::Listen) && (reason == Some("INVALID_SYN") || (syn == Some(false) && facts.is_some_and(|f| f.accept_queue_full)))
}

fn sent(reason: Option<&str>, state: Option<TcpState>, syn: Option<bool>, facts: Option<SockFacts>, story: &Story, who: &OrElse) -> Verdict {
    use TcpState::*;
    let app_abort = |cause, why: String| {
        if story.race_sibling {
            return Verdict {
                cause: Cause::ConnectRaceLoser,
                origin: Origin::Application,
                benign: true,
                why: format!("{who} opened two connections to this peer and dropped this one right after the handshake").into(),
            };
        }
        Verdict { cause, origin: Origin::Application, benign: false, why: why.into() }
    };
    // The process was ending when the kernel closed its socket for it (killed, crashed, exited).
    let ended = facts.and_then(|f| f.closer_ended);
    if let Some((port, n)) = story.listener_waiting {
        let waiting = if n == 1 { "1 connection".to_string() } else { format!("{n} connections") };
        let why = match ended {
            Some(ended) => format!("{who} {ended} with its listening socket on port {port} open and {waiting} waiting to be accepted: the kernel closed it"),
            None => match &story.actor {
                Some(closer) => format!("{closer} closed the listening socket of {who} on port {port} with {waiting} waiting to be accepted (ss -K, or a process sharing the socket)"),
                None => format!("{who} closed its listening socket on port {port} with {waiting} waiting to be accepted (a restart or shutdown that does not drain the queue)"),
            },
        };
        return v(Cause::ListenerClosed, Origin::Application, why);
    }
    let orphan = facts.is_some_and(|f| f.orphan);
    // An orphan with TCP_LINGER2 < 0 is reset the moment the peer acknowledges its FIN, which
    // the kernel names TCP_ABORT_ON_DATA whether the segment carried data or not; that check
    // comes first, so the data, if any, decided nothing.
    let linger2_negative = facts.is_some_and(|f| f.linger2_negative);
    if linger2_negative && orphan && !story.aborted_on_data && state == Some(TcpState::Close) && story.closed_from == Some(TcpState::FinWait2) && reason == Some("TCP_ABORT_ON_DATA") {
        return v(Cause::Linger2Abort, Origin::Stack, format!("{who} closed the socket with TCP_LINGER2 < 0: the stack reset it once the peer acknowledged its FIN, without waiting for the peer's"));
    }
    if story.aborted_on_data || reason == Some("TCP_ABORT_ON_DATA") {
        let what = if orphan { "closed the socket" } else { "shut the socket down for reading (shutdown)" };
        return v(Cause::DataAfterClose, Origin::Application, format!("peer sent data after {who} {what}"));
    }
    // An orphan's FIN_WAIT2 timeout running out (TCP_LINGER2, tcp_fin_timeout) also says
    // TCP_STATE, from a timer.
    if reason == Some("TCP_STATE") && state == Some(TcpState::FinWait2) && orphan {
        return v(Cause::Linger2Abort, Origin::Stack, format!("the FIN_WAIT2 timeout of the socket {who} closed ran out (TCP_LINGER2, tcp_fin_timeout)"));
    }
    let destroyed = reason == Some("TCP_STATE") || facts.is_some_and(|f| f.destroyed) || story.destroyed;
    if let Some(live) = state.filter(|s| destroyed && s.is_synchronized()) {
        // Only tcp_abort() sends TCP_STATE from a live connection: `ss -K`, SOCK_DESTROY,
        // bpf_sock_destroy(), in the destroyer's system call.
        let by = OrElse(story.actor.as_ref(), "a tool");
        return v(
            Cause::SocketDestroyed,
            Origin::Application,
            format!("{by} destroyed the socket of {who} in {} (ss -K, SOCK_DESTROY or bpf_sock_destroy)", live.name()),
        );
    }
    let Some(state) = state else {
        // No socket: nothing on this host knew the connection.
        if let Some(taker) = &story.port_taken_by {
            return v(Cause::PortGrabbed, Origin::Stack, format!("{taker} now holds this port; the process that served this peer is gone"));
        }
        return match syn {
            Some(true) => match story.listener_of_other_family {
                Some(IpAddr::V6(_)) => v(Cause::NoListener, Origin::Stack, "SYN over IPv4 to a port whose listener, on [::], takes IPv6 only (IPV6_V6ONLY): nobody listens for IPv4"),
                Some(IpAddr::V4(_)) => v(Cause::NoListener, Origin::Stack, "SYN over IPv6 to a port whose listener, on 0.0.0.0, takes IPv4 only: nobody listens for IPv6"),
                None => v(Cause::NoListener, Origin::Stack, "SYN to a port nobody listens on"),
            },
            Some(false) if story.echoes_reset => echo(who),
            Some(false) if let Some(end) = story.earlier_end => sequel(end, story.owner.as_ref()),
            // The answer to a SYN from this host's address that no socket waits for any more.
            Some(false) if let Some(end) = story.answers_syn_ack => v(Cause::NoSocket, Origin::Stack, syn_ack_late(end, story.owner.as_ref())),
            Some(false) if let Some((listened, closed)) = &story.listener_gone => v(
                Cause::NoSocket,
                Origin::Stack,
                format!("segment for a connection this host does not know, on a port whose listener, {listened}'s, closed {} before: a connection it had not accepted ended with it", Ago(*closed)),
            ),
            Some(false) => v(Cause::NoSocket, Origin::Stack, "segment for a connection this host does not know (forgotten after a timeout, reboot or state loss)"),
            None if reason == Some("NO_SOCKET") || reason.is_none() => {
                v(Cause::Unknown, Origin::Stack, "no socket for the segment; could not read whether it was a SYN")
            }
            None => v(Cause::Unknown, Origin::Stack, format!("no socket, kernel reason {}", reason.unwrap_or("none"))),
        };
    };
    match reason {
        Some("TCP_ABORT_ON_CLOSE") => {
            let why = match ended {
                Some(ended) => format!("{who} {ended} with unread data in the socket: the kernel closed it"),
                None => format!("{who} closed the socket with unread data"),
            };
            let mut verdict = app_abort(Cause::AppAbortUnread, why);
            // With SO_LINGER 0 the close was an abort anyway: the unread rest only named the
            // reason. A client doing that once the peer finished skips TIME_WAIT on purpose (a
            // health check reading only the status line). Before the peer's FIN, unread data
            // may be an answer cut short.
            let chose_abort = facts.is_some_and(|f| f.linger0);
            if verdict.cause == Cause::AppAbortUnread && chose_abort && story.active_open && story.peer_closed {
                verdict.benign = true;
                verdict.why = format!("{who} ended a finished exchange with SO_LINGER 0, the peer's last data unread (skips TIME_WAIT)").into();
            }
            verdict
        }
        Some("TCP_STATE") if state == Close && story.socket_kept => v(
            Cause::AppDisconnect,
            Origin::Application,
            format!("{who} disconnected the socket (connect AF_UNSPEC) with the connection open"),
        ),
        Some("TCP_STATE") if state == Close => {
            let why = match ended {
                Some(ended) => format!("{who} {ended} with the socket open and SO_LINGER 0: the kernel's close aborted it"),
                None => format!("{who} closed with SO_LINGER 0 (abortive close)"),
            };
            let mut verdict = app_abort(Cause::AppAbortLinger0, why);
            // A client that aborts after the peer finished, right after its request was
            // answered, or right after a handshake it only wanted to see complete (a health
            // check's connect probe) is skipping TIME_WAIT on purpose.
            if verdict.cause == Cause::AppAbortLinger0 && story.active_open {
                let why = if story.peer_closed {
                    Some(format!("{who} ended a finished exchange with SO_LINGER 0 (skips TIME_WAIT)"))
                } else if story.answered_briefly {
                    Some(format!("{who} ended a short exchange with SO_LINGER 0 once it was answered and all it sent acknowledged (skips TIME_WAIT)"))
                } else if story.probed {
                    Some(format!("{who} aborted right after the handshake with no data either way: a connect probe, as health checks do (skips TIME_WAIT)"))
                } else {
                    None
                };
                if let Some(why) = why {
                    verdict.benign = true;
                    verdict.why = why.into();
                }
            }
            verdict
        }
        Some("TCP_STATE") | Some("TCP_DISCONNECT_WITH_DATA") => {
            v(Cause::AppDisconnect, Origin::Application, format!("{who} disconnected the connection with data in flight"))
        }
        Some("TCP_TIMEWAIT_SOCKET") => {
            if syn == Some(true) {
                v(Cause::TimewaitReuse, Origin::Stack, "a new SYN reused a 4-tuple still in TIME_WAIT")
            } else {
                v(Cause::DataAfterClose, Origin::Application, format!("peer sent data after {who} closed the socket"))
            }
        }
        Some("TCP_KEEPALIVE_TIMEOUT") => v(Cause::KeepaliveTimeout, Origin::Stack, "keepalive probes went unanswered: peer or path is gone"),
        Some("TCP_ABORT_ON_LINGER") => v(Cause::Linger2Abort, Origin::Stack, format!("{who} closed in FIN_WAIT2 with TCP_LINGER2 < 0")),
        Some("TCP_ABORT_ON_MEMORY") => v(Cause::OrphanMemory, Origin::Stack, "too many orphaned sockets or TCP memory pressure"),
        Some("TCP_RFC7323_PAWS") => v(Cause::PawsReject, Origin::Stack, "segment failed the PAWS timestamp check (NAT mixing timestamp clocks?)"),
        Some("TCP_INVALID_ACK_SEQUENCE") if state == SynSent && story.peer_holds_open => v(
            Cause::TimewaitReuse,
            Origin::Stack,
            "our SYN was answered with an ACK for an older connection on the same 4-tuple, which the peer still holds open (half-open: it never learned that connection ended, its RST lost?)",
        ),
        Some("TCP_INVALID_ACK_SEQUENCE") if state == SynSent && story.tuple_reused => v(
            Cause::TimewaitReuse,
            Origin::Stack,
            "our SYN was answered with an ACK for an older connection on the same 4-tuple (TIME_WAIT reuse)",
        ),
        // An ACK that is not for our SYN comes from a peer holding an older connection on this
        // 4-tuple as it sees it: on another host, or behind NAT, whose port may have been
        // another client's, where no note of this host's tells which.
        Some("TCP_INVALID_ACK_SEQUENCE") if state == SynSent && story.peer_refused_syn => v(
            Cause::InvalidSegment,
            Origin::Stack,
            "our SYN was answered with an ACK not for it, while the peer's stack on this host refused that SYN with a RST: the ACK came from elsewhere (forged?)",
        ),
        Some("TCP_INVALID_ACK_SEQUENCE") if state == SynSent => v(
            Cause::TimewaitReuse,
            Origin::Stack,
            "our SYN was answered with an ACK for an older connection on this 4-tuple, which the peer still holds (TIME_WAIT, or half-open); through NAT, the 4-tuple the peer sees may have been another client's",
        ),
        // tcp_check_req() refusing the final ACK of a handshake: accept queue full with
        // tcp_abort_on_overflow=1 (INVALID_SYN, from the listener).
        _ if state == Listen && story.port_taken_by.is_some() => v(
            Cause::PortGrabbed,
            Origin::Stack,
            format!("{} now holds this port; the process that served this peer is gone", OrElse(story.port_taken_by.as_ref(), "another process")),
        ),
        _ if refused_for_a_full_queue(reason, Some(state), syn, facts) => {
            v(Cause::ListenOverflow, Origin::Stack, "accept queue full and tcp_abort_on_overflow=1: the listener refused the connection")
        }
        // A listener answers a non-SYN segment it has no connection for (TCP_FLAGS on 6.12+).
        _ if state == Listen && syn == Some(false) && story.echoes_reset => echo(who),
        _ if state == Listen && syn == Some(false) && let Some(end) = story.earlier_end => sequel(end, story.owner.as_ref()),
        _ if state == Listen && syn == Some(false) => v(
            Cause::NoSocket,
            Origin::Stack,
            "segment for a connection this host does not know, answered by the listener (forgotten after an abort, a timeout, a restart or state loss)",
        ),
        Some("NO_SOCKET") | Some("INVALID_SYN") | Some("NOT_SPECIFIED") if matches!(state, NewSynRecv | SynRecv) => {
            v(Cause::ListenOverflow, Origin::Stack, "accept queue full and tcp_abort_on_overflow=1: the listener refused the connection")
        }
        Some(r @ ("TCP_INVALID_ACK_SEQUENCE" | "TCP_TOO_OLD_ACK" | "TCP_ACK_UNSENT_DATA" | "TCP_FLAGS" | "TCP_OLD_ACK" | "INVALID_SYN")) => {
            v(Cause::InvalidSegment, Origin::Stack, format!("segment rejected by the stack ({r})"))
        }
        Some(other) if other != "NOT_SPECIFIED" => v(Cause::Unknown, Origin::Unknown, format!("kernel reason {other} in state {}", state.name())),
        _ => sent_without_reason(state, syn, facts, story, who),
    }
}

/// Why a SYN-ACK met no socket: the connect it answers ended here first (`end`), `owner`'s.
fn syn_ack_late(end: ConnectEnd, owner: Option<&Named>) -> String {
    match (end, owner) {
        (ConnectEnd::GivenUp, Some(o)) => format!("the peer's SYN-ACK came after {o} had given up this connect (a connect timeout in the application shorter than the peer's answer, or a race to another address lost)"),
        (ConnectEnd::TimedOut, Some(o)) => format!("the peer's SYN-ACK came after {o}'s connect had timed out here (its SYNs unanswered until tcp_syn_retries ran out): the peer, or the path back, is that slow"),
        _ => "SYN-ACK for a connect this host does not have: one given up before the answer came, or a SYN forged with this host's address by someone else (backscatter of a SYN flood)".to_string(),
    }
}

/// A RST for the peer's segment of the connection `who` reset a moment before, which the peer
/// had not heard of (its data or FIN was on the way, or that RST was lost): nothing new went
/// wrong, the report of that reset says what did.
fn echo(who: &OrElse) -> Verdict {
    Verdict {
        cause: Cause::NoSocket,
        origin: Origin::Stack,
        benign: true,
        why: format!("segment of the connection {who} reset a moment before, sent before the peer heard of it: this RST only echoes that reset").into(),
    }
}

/// A RST for the peer's segment of a connection that ended here a while before (`end`), owned
/// by `owner`: the peer never heard of that end, or paid it no heed. Nothing new went wrong
/// where this host reset or timed the connection out (the report of that end says what did); a
/// peer talking on after a RST that reset it here is a sign that its stack never sent that RST.
fn sequel(end: EarlierEnd, owner: Option<&Named>) -> Verdict {
    let age = Ago(end.age_ns);
    let cause = Because(end.cause);
    let of = match owner {
        Some(o) => format!("the connection of {o}"),
        None => "a connection".to_string(),
    };
    let (benign, why) = match end.how {
        EndedBy::Sent => (
            true,
            format!("segment of {of} that this host reset {age} before{cause}: that RST never reached the peer or went unheeded (lost or dropped on the way), and the peer went on sending; this RST repeats it"),
        ),
        EndedBy::TimedOut => (
            true,
            format!("segment of {of} that timed out here {age} before{cause}: a timeout sends the peer no RST, so it went on sending (once back in reach, or its window open again); this RST tells it the connection is gone"),
        ),
        EndedBy::Received if end.cause == Some(Cause::Injected) => {
            (false, format!("segment of {of} that a forged RST reset here {age} before: the peer, which never sent that RST, went on sending"))
        }
        // Nothing new: what the peer sent before its RST arrived after it.
        EndedBy::ReceivedFromPeer => (
            true,
            format!("segment of {of} that the peer's RST reset here {age} before{cause}: the peer's stack sent that RST, and this segment, sent before it, came after it (delayed or reordered on the way); this RST answers it"),
        ),
        // That RST's own report is still held: the peer talking on is evidence there too.
        EndedBy::Received if end.cause.is_none() => {
            (false, format!("segment of {of} that a RST reset here {age} before: the peer went on sending, as if it never sent that RST"))
        }
        EndedBy::Received => (
            false,
            format!("segment of {of} that a RST reset here {age} before{cause}: the peer went on sending, which it would not do had its stack sent that RST (a device in the path forged it?)"),
        ),
    };
    Verdict { cause: Cause::NoSocket, origin: Origin::Stack, benign, why: why.into() }
}

/// An earlier end's cause as a why names it, ` (retransmit_timeout)`: nothing where it is
/// unknown.
struct Because(Option<Cause>);

impl fmt::Display for Because {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Cause::Unknown) | None => Ok(()),
            Some(c) => write!(f, " ({})", c.name()),
        }
    }
}

/// A time ago as a why says it: `850 ms`, `2.3 s`, `4 min`.
struct Ago(u64);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000_000;
        match ms {
            0..1_000 => write!(f, "{ms} ms"),
            1_000..120_000 => write!(f, "{:.1} s", ms as f64 / 1_000.0),
            _ => write!(f, "{} min", ms / 60_000),
        }
    }
}

/// The reason a kernel that names them would have given, from the socket's facts and the story:
/// tcp_close() checks unread data first, then SO_LINGER 0, then FIN_WAIT2 with linger2 < 0; in
/// SYN_SENT an acceptable ACK can only have failed PAWS.
fn inferred_reason(state: TcpState, facts: Option<SockFacts>, story: &Story) -> Option<&'static str> {
    let facts = facts.filter(|f| f.stand_ins_read);
    match state {
        TcpState::Close if story.socket_kept => Some("TCP_STATE"),
        TcpState::Close => {
            let f = facts?;
            if f.unread || (f.unread_one && !story.peer_closed) {
                Some("TCP_ABORT_ON_CLOSE")
            } else if f.linger0 {
                Some("TCP_STATE")
            } else if story.closed_from == Some(TcpState::FinWait2) {
                // Reaching FIN_WAIT2 resets an orphan at once only with TCP_LINGER2 < 0; else
                // what ended it there was data after its close, acknowledging its FIN.
                Some(if f.linger2_negative { "TCP_ABORT_ON_LINGER" } else { "TCP_ABORT_ON_DATA" })
            } else {
                None
            }
        }
        TcpState::SynSent => facts.map(|f| if f.ack_in_window { "TCP_RFC7323_PAWS" } else { "TCP_INVALID_ACK_SEQUENCE" }),
        _ => None,
    }
}

/// Kernels before 6.10 (and application aborts before 6.11) give no reason: infer from the
/// socket's facts, its state and its history.
fn sent_without_reason(state: TcpState, syn: Option<bool>, facts: Option<SockFacts>, story: &Story, who: &OrElse) -> Verdict {
    use TcpState::*;
    // The facts go along: read on every kernel, they say what a reason does not (SO_LINGER 0
    // chosen, how the closer ended).
    if let Some(reason) = inferred_reason(state, facts, story) {
        return sent(Some(reason), Some(state), syn, facts, story, who);
    }
    match state {
        // tcp_close()/tcp_disconnect() move the socket to CLOSE before sending: an application abort.
        Close => {
            if story.race_sibling {
                return sent(Some("TCP_ABORT_ON_CLOSE"), Some(Close), syn, None, story, who);
            }
            v(Cause::Unknown, Origin::Application, format!("{who} aborted the connection (unread data or SO_LINGER 0; this kernel gives no reason to tell which)"))
        }
        TimeWait if syn == Some(true) => v(Cause::TimewaitReuse, Origin::Stack, "a new SYN reused a 4-tuple still in TIME_WAIT"),
        TimeWait => v(Cause::DataAfterClose, Origin::Application, format!("peer sent data after {who} closed the socket")),
        // Only the keepalive timer sends a RST from ESTABLISHED and then reports ETIMEDOUT.
        Established if story.timed_out => v(Cause::KeepaliveTimeout, Origin::Stack, "keepalive probes went unanswered: peer or path is gone"),
        // An orphan reset in a closing state with no segment behind it: only the timers'
        // tcp_out_of_resources() does that (close() and an abort move to CLOSE first, a
        // segment's RST follows tcp_done(), the keepalive timer waits for nothing in flight).
        FinWait1 | Closing | LastAck if syn.is_none() && facts.is_some_and(|f| f.orphan) => sent(Some("TCP_ABORT_ON_MEMORY"), Some(state), syn, facts, story, who),
        _ => v(Cause::Unknown, Origin::Unknown, format!("reset sent in {} and this kernel gives no reason", state.name())),
    }
}

/// ` (no_listener)`: the cause of the RST the peer's stack on this host sent, when it did, and
/// for one of no socket the earlier end of the connection at the peer that it followed.
struct PeerCause {
    cause: Option<Cause>,
    after: Option<EarlierEnd>,
}

impl fmt::Display for PeerCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(c) = self.cause else { return Ok(()) };
        let c = c.name();
        let Some(end) = self.after else { return write!(f, " ({c})") };
        let first = Because(end.cause);
        match end.how {
            EndedBy::Sent => write!(f, " ({c}: the peer's end reset it earlier{first}, a RST that never got here)"),
            EndedBy::TimedOut => write!(f, " ({c}: the peer's end timed out earlier{first})"),
            EndedBy::Received if end.cause == Some(Cause::Injected) => write!(f, " ({c}: a forged RST reset the peer's end earlier)"),
            EndedBy::Received | EndedBy::ReceivedFromPeer => write!(f, " ({c}: a RST reset the peer's end earlier{first})"),
        }
    }
}

fn received(state: Option<TcpState>, story: &Story) -> Verdict {
    let mut verdict = received_from(state, story);
    // The peer's stack on this host judged its own RST benign: one deliberate act, seen from
    // both ends.
    if story.peer_benign && story.peer_sent.is_some() && matches!(verdict.cause, Cause::PeerReset | Cause::Refused) {
        verdict.benign = true;
        verdict.why = format!("{}; benign, as the peer's side says", verdict.why).into();
    }
    verdict
}

fn received_from(state: Option<TcpState>, story: &Story) -> Verdict {
    let peer_cause = PeerCause { cause: story.peer_sent, after: story.peer_after };
    if story.peer_local && story.peer_sent.is_none() {
        let why = if state == Some(TcpState::SynSent) {
            "our SYN went to an address of this host, whose stack sent no RST: a firewall (reject with tcp reset) or a device in the path answered it"
        } else {
            "RST arrived but the peer's stack on this host sent none: a device or firewall in the path forged it"
        };
        // This end's own evidence agrees: it is named too (alone, it decides for a peer on
        // another host).
        return match story.evidence.as_ref().and_then(Evidence::forged_because) {
            Some(also) => v(Cause::Injected, Origin::Network, format!("{why}; {also}")),
            None => v(Cause::Injected, Origin::Network, why),
        };
    }
    // The peer's own stack on this host is the better witness: only without it, or where the
    // RST it sent came long before (the one a device dropped, and now forged?), does the
    // evidence of one end decide.
    if story.peer_sent.is_none() || story.peer_sent_late {
        if let Some(why) = story.evidence.as_ref().and_then(Evidence::forged_because) {
            return v(Cause::Injected, Origin::Network, why);
        }
    }
    // Doubts matter only where the peer's own stack is not on this host to say what it sent.
    let doubts = match story.peer_sent {
        Some(_) => None,
        None if story.peer_here_untraced => {
            Some("the other end is on this host, but its RST is not in this trace (under -p or -c, another process's RST is traced only to a socket the kernel side knows the filter keeps): its cause is not known".to_string())
        }
        None => story.evidence.as_ref().and_then(Evidence::doubts),
    };
    let doubts = doubts.as_deref().map(|d| format!(" ({d})"));
    let doubts = doubts.as_deref().unwrap_or("");
    match state {
        Some(TcpState::SynSent) if let Some(at) = story.refused_behind_nat => v(
            Cause::Refused,
            Origin::Peer,
            format!("peer refused the connection{peer_cause}: the stack of {at} on this host answered, where an address translation (DNAT, REDIRECT, a published port) took the SYN"),
        ),
        Some(TcpState::SynSent) => v(
            Cause::Refused,
            Origin::Peer,
            format!("peer refused the connection{peer_cause}{doubts}"),
        ),
        Some(s) if s.is_synchronized() || s == TcpState::SynRecv => v(
            Cause::PeerReset,
            Origin::Peer,
            format!(
                "peer reset the connection in {}{peer_cause}{doubts}",
                s.name()
            ),
        ),
        _ => v(
            Cause::Unknown,
            Origin::Unknown,
            format!("RST received on a socket whose state is unknown{doubts}"),
        ),
    }
}

fn timed_out(state: Option<TcpState>, story: &Story, who: &OrElse) -> Verdict {
    // Which limit ran out: the socket's own TCP_USER_TIMEOUT overrides the sysctls.
    let user_timeout = story.timeout.map_or(0, |t| t.user_timeout_ms);
    let limit = |sysctl: &str| match user_timeout {
        0 => format!("the kernel gave the connection up ({sysctl})"),
        ms => format!("its TCP_USER_TIMEOUT ({ms} ms) ran out"),
    };
    match state {
        Some(TcpState::SynSent) => v(
            Cause::SynTimeout,
            Origin::Network,
            format!("SYN retransmitted {} times with no answer: silent firewall or dead host", story.syn_retransmits),
        ),
        _ if story.orphan => v(
            Cause::RetransmitTimeout,
            Origin::Network,
            match story.same_segment_retransmits {
                // A zero window probed until tcp_orphan_retries counts probes, not retransmissions.
                0 => format!("what was left when {who} closed the socket went unacknowledged until {}", limit("tcp_orphan_retries")),
                // The count is of retransmission timeouts (a tail-loss probe before them is not one).
                n => format!("what was left when {who} closed the socket (data, or its FIN) went unacknowledged through {n} retransmission timeouts, then {}", limit("tcp_orphan_retries")),
            },
        ),
        _ if story.same_segment_retransmits > 0 => v(
            Cause::RetransmitTimeout,
            Origin::Network,
            format!("the same segment went unacknowledged through {} retransmission timeouts, then {}; {who}'s connection timed out", story.same_segment_retransmits, limit("tcp_retries2")),
        ),
        // Only a closed window gives up without a retransmission timeout: the persist timer's
        // probes count apart (icsk_probes_out), and the retransmission timer counts none while
        // the window is closed.
        _ if story.no_retransmission_timed_out => zero_window_timed_out(story.timeout, who),
        _ => v(Cause::Unknown, Origin::Unknown, "connection timed out without retransmissions seen"),
    }
}

/// A timeout with no retransmission timed out: the peer's window was closed. A peer that
/// answers zero-window probes keeps the connection open for ever, unless the socket has a
/// TCP_USER_TIMEOUT: then its application stopped reading, and this end's own policy gave up on
/// it. Probes left unanswered are the path's or a vanished peer's.
fn zero_window_timed_out(timeout: Option<TimeoutFacts>, who: &OrElse) -> Verdict {
    let unknown = || {
        v(
            Cause::RetransmitTimeout,
            Origin::Network,
            format!("{who}'s connection timed out with no retransmission timed out: the peer's zero window was probed unanswered until the kernel gave up (peer or path gone while the peer's receive buffer was full)"),
        )
    };
    let Some(t) = timeout else { return unknown() };
    let ms = t.user_timeout_ms;
    // The last probe may still be on its way when a user timeout cuts the last interval short.
    let still_answering = t.probes_out == 0 || (t.answered_probing && t.probes_out <= 1);
    match (t.zero_window_probed, ms) {
        (true, ms) if ms > 0 && still_answering => v(
            Cause::RetransmitTimeout,
            Origin::Peer,
            format!("the peer kept its receive window closed (its application stopped reading) and answered the zero-window probes; {who}'s TCP_USER_TIMEOUT ({ms} ms) ran out while it stayed closed"),
        ),
        (true, _) if t.probes_out > 0 => {
            let n = t.probes_out;
            let answered = if t.answered_probing { "answered the first zero-window probes, then left the last" } else { "left the zero-window probes" };
            let limit = match ms {
                0 => "the kernel gave up (tcp_retries2)".to_string(),
                ms => format!("{who}'s TCP_USER_TIMEOUT ({ms} ms) ran out"),
            };
            v(Cause::RetransmitTimeout, Origin::Network, format!("the peer {answered} {n} unanswered until {limit}: peer or path gone while the peer's receive buffer was full"))
        }
        // The retransmission timer itself, finding the window closed with data in flight (the
        // receiver shrank it): its retransmissions go on as window probes, never counted.
        (false, ms) if ms > 0 => v(
            Cause::RetransmitTimeout,
            Origin::Peer,
            format!("the peer closed its receive window with {who}'s data in flight (its application stopped reading); the data went on as window probes until {who}'s TCP_USER_TIMEOUT ({ms} ms) ran out"),
        ),
        (false, _) => v(
            Cause::RetransmitTimeout,
            Origin::Network,
            format!("the peer closed its receive window with {who}'s data in flight, then fell silent: the data went on as window probes until the kernel gave up, minutes later (peer or path gone)"),
        ),
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn sent(reason: Option<&'static str>, state: Option<TcpState>, syn: Option<bool>) -> Trigger {
        Trigger::Sent { reason, state, trigger_syn: syn, facts: None }
    }

    /// A reset with the kernel's reason and the socket's facts.
    fn sent_with(reason: &'static str, state: TcpState, facts: SockFacts) -> Trigger {
        Trigger::Sent { reason: Some(reason), state: Some(state), trigger_syn: None, facts: Some(facts) }
    }

    /// A reset from a kernel without reasons, with the socket's facts.
    fn inferred(state: TcpState, syn: Option<bool>, facts: SockFacts) -> Trigger {
        Trigger::Sent { reason: None, state: Some(state), trigger_syn: syn, facts: Some(SockFacts { stand_ins_read: true, ..facts }) }
    }

    /// (trigger, story, expected cause, origin, benign)
    #[test]
    fn table() {
        let none = Story::default();
        let client_done = Story { active_open: true, peer_closed: true, ..Story::default() };
        let client_answered = Story { active_open: true, answered_briefly: true, ..Story::default() };
        let server_answered = Story { answered_briefly: true, ..Story::default() };
        let client_probed = Story { active_open: true, probed: true, ..Story::default() };
        let probed_racer = Story { active_open: true, probed: true, race_sibling: true, ..Story::default() };
        let racer = Story { race_sibling: true, ..Story::default() };
        let local_peer = Story { peer_local: true, ..Story::default() };
        let peer_aborted = Story { peer_local: true, peer_sent: Some(Cause::AppAbortUnread), ..Story::default() };
        let retx = Story { same_segment_retransmits: 5, ..Story::default() };
        let probed_window = Story { no_retransmission_timed_out: true, ..Story::default() };
        let told_aborted = Story { destroyed: true, ..Story::default() };
        let reused = Story { tuple_reused: true, ..Story::default() };
        let half_open = Story { tuple_reused: true, peer_holds_open: true, ..Story::default() };
        let peer_refused_syn = Story { peer_refused_syn: true, ..Story::default() };
        let kept = Story { socket_kept: true, ..Story::default() };
        let timer = Story { timed_out: true, ..Story::default() };
        let grabbed = Story { port_taken_by: Some(Named::new("intruder", 9)), ..Story::default() };
        let from_fin_wait2 = Story { closed_from: Some(FinWait2), ..Story::default() };
        let unread = SockFacts { unread: true, ..SockFacts::default() };
        let unread_and_linger0 = SockFacts { unread: true, linger0: true, ..SockFacts::default() };
        let one_unread = SockFacts { unread_one: true, ..SockFacts::default() };
        let fin_unread_linger0 = SockFacts { unread_one: true, linger0: true, ..SockFacts::default() };
        let linger0 = SockFacts { linger0: true, ..SockFacts::default() };
        let in_window = SockFacts { ack_in_window: true, ..SockFacts::default() };
        let queue_full = SockFacts { accept_queue_full: true, ..SockFacts::default() };
        let destroyed = SockFacts { destroyed: true, ..SockFacts::default() };
        let orphaned = SockFacts { orphan: true, ..SockFacts::default() };
        let orphan_linger2 = SockFacts { orphan: true, linger2_negative: true, ..SockFacts::default() };
        let queued = Story { listener_waiting: Some((80, 2)), ..Story::default() };
        let local_abort = Story { aborted_on_data: true, ..Story::default() };
        let cases: Vec<(Trigger, &Story, Cause, Origin, bool)> = vec![
            // 6.12+: reasons present.
            (sent(Some("NO_SOCKET"), None, Some(true)), &none, Cause::NoListener, Origin::Stack, false),
            (sent(Some("NO_SOCKET"), None, Some(false)), &none, Cause::NoSocket, Origin::Stack, false),
            (sent(Some("NO_SOCKET"), None, Some(false)), &grabbed, Cause::PortGrabbed, Origin::Stack, false),
            (sent(Some("TCP_ABORT_ON_CLOSE"), Some(Close), None), &none, Cause::AppAbortUnread, Origin::Application, false),
            (sent(Some("TCP_STATE"), Some(Close), None), &none, Cause::AppAbortLinger0, Origin::Application, false),
            (sent(Some("TCP_STATE"), Some(Close), None), &client_done, Cause::AppAbortLinger0, Origin::Application, true),
            (sent(Some("TCP_STATE"), Some(Close), None), &client_answered, Cause::AppAbortLinger0, Origin::Application, true),
            (sent(Some("TCP_STATE"), Some(Close), None), &server_answered, Cause::AppAbortLinger0, Origin::Application, false),
            (sent(Some("TCP_ABORT_ON_CLOSE"), Some(Close), None), &client_answered, Cause::AppAbortUnread, Origin::Application, false),
            // SO_LINGER 0 chose the abort: a client done with the exchange skips TIME_WAIT.
            (sent_with("TCP_ABORT_ON_CLOSE", Close, linger0), &client_done, Cause::AppAbortUnread, Origin::Application, true),
            (sent_with("TCP_ABORT_ON_CLOSE", Close, linger0), &client_answered, Cause::AppAbortUnread, Origin::Application, false),
            (sent_with("TCP_ABORT_ON_CLOSE", Close, linger0), &client_probed, Cause::AppAbortUnread, Origin::Application, false),
            (sent_with("TCP_ABORT_ON_CLOSE", Close, linger0), &server_answered, Cause::AppAbortUnread, Origin::Application, false),
            (sent_with("TCP_ABORT_ON_CLOSE", Close, SockFacts::default()), &client_done, Cause::AppAbortUnread, Origin::Application, false),
            (sent_with("TCP_ABORT_ON_CLOSE", Close, linger0), &probed_racer, Cause::ConnectRaceLoser, Origin::Application, true),
            (inferred(Close, None, linger0), &client_answered, Cause::AppAbortLinger0, Origin::Application, true),
            (sent(Some("TCP_STATE"), Some(Close), None), &client_probed, Cause::AppAbortLinger0, Origin::Application, true),
            (sent(Some("TCP_STATE"), Some(Close), None), &probed_racer, Cause::ConnectRaceLoser, Origin::Application, true),
            (sent(Some("TCP_STATE"), Some(Close), None), &racer, Cause::ConnectRaceLoser, Origin::Application, true),
            // tcp_abort(): only it sends TCP_STATE from a live connection.
            (sent(Some("TCP_STATE"), Some(Established), None), &none, Cause::SocketDestroyed, Origin::Application, false),
            (sent(Some("TCP_STATE"), Some(Close), None), &queued, Cause::ListenerClosed, Origin::Application, false),
            (Trigger::Sent { reason: Some("TCP_STATE"), state: Some(FinWait2), trigger_syn: None, facts: Some(SockFacts { orphan: true, ..SockFacts::default() }) }, &none, Cause::Linger2Abort, Origin::Stack, false),
            (sent(Some("TCP_ABORT_ON_DATA"), Some(Close), Some(false)), &local_abort, Cause::DataAfterClose, Origin::Application, false),
            (sent(Some("TCP_TIMEWAIT_SOCKET"), Some(TimeWait), Some(false)), &none, Cause::DataAfterClose, Origin::Application, false),
            (sent(Some("TCP_TIMEWAIT_SOCKET"), Some(TimeWait), Some(true)), &none, Cause::TimewaitReuse, Origin::Stack, false),
            (sent(Some("TCP_ABORT_ON_DATA"), Some(Close), Some(false)), &none, Cause::DataAfterClose, Origin::Application, false),
            (sent(Some("TCP_KEEPALIVE_TIMEOUT"), Some(Established), None), &none, Cause::KeepaliveTimeout, Origin::Stack, false),
            (sent(Some("TCP_ABORT_ON_LINGER"), Some(Close), None), &none, Cause::Linger2Abort, Origin::Stack, false),
            // TCP_LINGER2 < 0 resets an orphan when its FIN is acknowledged: named ABORT_ON_DATA.
            (sent_with("TCP_ABORT_ON_DATA", Close, orphan_linger2), &from_fin_wait2, Cause::Linger2Abort, Origin::Stack, false),
            (sent_with("TCP_ABORT_ON_DATA", Close, orphaned), &from_fin_wait2, Cause::DataAfterClose, Origin::Application, false),
            (sent_with("TCP_ABORT_ON_DATA", Close, orphan_linger2), &local_abort, Cause::DataAfterClose, Origin::Application, false),
            (sent(Some("TCP_ABORT_ON_MEMORY"), Some(Close), None), &none, Cause::OrphanMemory, Origin::Stack, false),
            // Without reasons: an orphan's RST from a closing state, no segment behind it.
            (inferred(FinWait1, None, orphaned), &none, Cause::OrphanMemory, Origin::Stack, false),
            (inferred(LastAck, None, orphaned), &none, Cause::OrphanMemory, Origin::Stack, false),
            (inferred(FinWait1, Some(false), orphaned), &none, Cause::Unknown, Origin::Unknown, false),
            (inferred(FinWait1, None, SockFacts::default()), &none, Cause::Unknown, Origin::Unknown, false),
            (sent(Some("TCP_RFC7323_PAWS"), Some(Established), Some(false)), &none, Cause::PawsReject, Origin::Stack, false),
            (sent(Some("TCP_INVALID_ACK_SEQUENCE"), Some(SynSent), Some(false)), &reused, Cause::TimewaitReuse, Origin::Stack, false),
            (sent(Some("TCP_INVALID_ACK_SEQUENCE"), Some(SynSent), Some(false)), &half_open, Cause::TimewaitReuse, Origin::Stack, false),
            (sent(Some("TCP_INVALID_ACK_SEQUENCE"), Some(SynSent), Some(false)), &none, Cause::TimewaitReuse, Origin::Stack, false),
            (sent(Some("TCP_INVALID_ACK_SEQUENCE"), Some(SynSent), Some(false)), &peer_refused_syn, Cause::InvalidSegment, Origin::Stack, false),
            (sent(Some("TCP_INVALID_ACK_SEQUENCE"), Some(Established), Some(false)), &none, Cause::InvalidSegment, Origin::Stack, false),
            (sent(Some("NOT_SPECIFIED"), Some(NewSynRecv), Some(false)), &none, Cause::ListenOverflow, Origin::Stack, false),
            (sent(Some("TCP_FLAGS"), Some(Listen), Some(false)), &none, Cause::NoSocket, Origin::Stack, false),
            // 6.10: NOT_SPECIFIED for what later kernels name, with only who holds the socket read.
            (Trigger::Sent { reason: Some("NOT_SPECIFIED"), state: Some(SynSent), trigger_syn: Some(false), facts: Some(SockFacts::default()) }, &none, Cause::Unknown, Origin::Unknown, false),
            (sent(Some("INVALID_SYN"), Some(Listen), Some(false)), &none, Cause::ListenOverflow, Origin::Stack, false),
            (sent(Some("TCP_FLAGS"), Some(Listen), Some(false)), &grabbed, Cause::PortGrabbed, Origin::Stack, false),
            (sent(Some("TCP_STATE"), Some(Close), None), &kept, Cause::AppDisconnect, Origin::Application, false),
            (sent(None, Some(Listen), Some(false)), &none, Cause::NoSocket, Origin::Stack, false),
            // Pre-6.10 kernels: no reason, no socket-less resets.
            (sent(None, Some(Close), None), &none, Cause::Unknown, Origin::Application, false),
            (sent(None, Some(Close), None), &racer, Cause::ConnectRaceLoser, Origin::Application, true),
            (sent(None, Some(TimeWait), Some(false)), &none, Cause::DataAfterClose, Origin::Application, false),
            (inferred(Established, None, SockFacts::default()), &told_aborted, Cause::SocketDestroyed, Origin::Application, false),
            (sent(None, Some(Established), None), &none, Cause::Unknown, Origin::Unknown, false),
            (sent(None, Some(Established), None), &timer, Cause::KeepaliveTimeout, Origin::Stack, false),
            (sent(None, None, None), &none, Cause::Unknown, Origin::Stack, false),
            (sent(None, None, Some(true)), &none, Cause::NoListener, Origin::Stack, false),
            (sent(None, Some(TimeWait), Some(true)), &none, Cause::TimewaitReuse, Origin::Stack, false),
            // Pre-6.10 kernels, told apart by what the socket looked like when it sent.
            (inferred(Close, None, unread), &none, Cause::AppAbortUnread, Origin::Application, false),
            (inferred(Close, None, unread_and_linger0), &none, Cause::AppAbortUnread, Origin::Application, false),
            (inferred(Close, None, one_unread), &none, Cause::AppAbortUnread, Origin::Application, false),
            (inferred(Close, None, fin_unread_linger0), &client_done, Cause::AppAbortLinger0, Origin::Application, true),
            (inferred(Close, None, linger0), &none, Cause::AppAbortLinger0, Origin::Application, false),
            (inferred(Close, None, linger0), &kept, Cause::AppDisconnect, Origin::Application, false),
            (inferred(Close, None, SockFacts::default()), &kept, Cause::AppDisconnect, Origin::Application, false),
            (inferred(Close, None, SockFacts::default()), &from_fin_wait2, Cause::DataAfterClose, Origin::Application, false),
            (inferred(Close, None, orphan_linger2), &from_fin_wait2, Cause::Linger2Abort, Origin::Stack, false),
            (inferred(Close, None, SockFacts::default()), &none, Cause::Unknown, Origin::Application, false),
            (inferred(SynSent, Some(false), SockFacts::default()), &none, Cause::TimewaitReuse, Origin::Stack, false),
            (inferred(SynSent, Some(false), SockFacts::default()), &reused, Cause::TimewaitReuse, Origin::Stack, false),
            (inferred(SynSent, Some(false), in_window), &none, Cause::PawsReject, Origin::Stack, false),
            (inferred(Listen, Some(false), queue_full), &none, Cause::ListenOverflow, Origin::Stack, false),
            (inferred(Listen, Some(false), SockFacts::default()), &none, Cause::NoSocket, Origin::Stack, false),
            (inferred(Established, None, destroyed), &none, Cause::SocketDestroyed, Origin::Application, false),
            (inferred(Close, None, unread), &queued, Cause::ListenerClosed, Origin::Application, false),
            (inferred(Close, None, unread), &local_abort, Cause::DataAfterClose, Origin::Application, false),
            // Received.
            (Trigger::Received { state: Some(SynSent) }, &none, Cause::Refused, Origin::Peer, false),
            (Trigger::Received { state: Some(Established) }, &none, Cause::PeerReset, Origin::Peer, false),
            (Trigger::Received { state: Some(Established) }, &local_peer, Cause::Injected, Origin::Network, false),
            (Trigger::Received { state: Some(Established) }, &peer_aborted, Cause::PeerReset, Origin::Peer, false),
            (Trigger::Received { state: None }, &none, Cause::Unknown, Origin::Unknown, false),
            // Aborts without a RST.
            (Trigger::TimedOut { state: Some(SynSent) }, &none, Cause::SynTimeout, Origin::Network, false),
            (Trigger::TimedOut { state: Some(Established) }, &retx, Cause::RetransmitTimeout, Origin::Network, false),
            (Trigger::TimedOut { state: Some(Established) }, &probed_window, Cause::RetransmitTimeout, Origin::Network, false),
            (Trigger::TimedOut { state: Some(Established) }, &none, Cause::Unknown, Origin::Unknown, false),
            (Trigger::TimedOut { state: Some(Established) }, &none, Cause::Unknown, Origin::Unknown, false),
        ];
        for (trigger, story, cause, origin, benign) in cases {
            let got = classify(&trigger, story);
            assert_eq!((got.cause, got.origin, got.benign), (cause, origin, benign), "{trigger:?} {story:?}: {}", got.why);
            assert!(!got.why.is_empty());
        }
    }

    /// A timeout names the limit that ran out (the socket's TCP_USER_TIMEOUT over the sysctls),
    /// and a zero window whose probes the peer answered is the peer's: only a user timeout ends it.
    #[test]
    fn a_timeout_names_its_limit_and_a_zero_window_answered_is_the_peers() {
        let timed_out = |retransmits: u32, orphan: bool, t: TimeoutFacts| {
            let story = Story { same_segment_retransmits: retransmits, no_retransmission_timed_out: retransmits == 0, orphan, timeout: Some(t), ..Story::default() };
            classify(&Trigger::TimedOut { state: Some(TcpState::Established) }, &story)
        };
        let facts = |user_timeout_ms, probes_out, zero_window_probed, answered_probing| TimeoutFacts { user_timeout_ms, probes_out, zero_window_probed, answered_probing };
        let cases = [
            (timed_out(0, false, facts(2000, 0, true, true)), Origin::Peer, "answered the zero-window probes; the application's TCP_USER_TIMEOUT (2000 ms) ran out"),
            // The user timeout cut the last interval short: the last probe still on its way.
            (timed_out(0, false, facts(2000, 1, true, true)), Origin::Peer, "answered the zero-window probes"),
            (timed_out(0, false, facts(3000, 4, true, false)), Origin::Network, "left the zero-window probes 4 unanswered until the application's TCP_USER_TIMEOUT (3000 ms) ran out"),
            (timed_out(0, false, facts(3000, 3, true, true)), Origin::Network, "answered the first zero-window probes, then left the last 3 unanswered"),
            (timed_out(0, false, facts(0, 15, true, false)), Origin::Network, "15 unanswered until the kernel gave up (tcp_retries2)"),
            (timed_out(0, false, facts(100, 0, false, false)), Origin::Peer, "closed its receive window with the application's data in flight"),
            (timed_out(0, false, facts(0, 0, false, false)), Origin::Network, "then fell silent"),
            (timed_out(5, false, facts(0, 0, false, false)), Origin::Network, "5 retransmission timeouts, then the kernel gave the connection up (tcp_retries2)"),
            (timed_out(3, false, facts(1500, 0, false, false)), Origin::Network, "3 retransmission timeouts, then its TCP_USER_TIMEOUT (1500 ms) ran out"),
            (timed_out(1, true, facts(1500, 0, false, false)), Origin::Network, "through 1 retransmission timeouts, then its TCP_USER_TIMEOUT (1500 ms) ran out"),
            (timed_out(1, true, facts(0, 0, false, false)), Origin::Network, "then the kernel gave the connection up (tcp_orphan_retries)"),
        ];
        for (got, origin, says) in cases {
            assert_eq!((got.cause, got.origin), (Cause::RetransmitTimeout, origin), "{}", got.why);
            assert!(got.why.contains(says), "{} lacks {says}", got.why);
        }
    }

    /// A RST answering a SYN-ACK with no socket names the connect it answers, as far as the
    /// kernel side noted how that connect ended; without a note it claims nothing.
    #[test]
    fn a_late_syn_ack_names_the_connect_given_up_or_timed_out() {
        let curl = Named::new("curl", 40);
        let late = |end, owner: Option<&Named>| {
            let story = Story { answers_syn_ack: Some(end), owner: owner.cloned(), ..Story::default() };
            classify(&sent(Some("NO_SOCKET"), None, Some(false)), &story)
        };
        for (got, says) in [
            (late(ConnectEnd::GivenUp, Some(&curl)), "after curl[40] had given up this connect"),
            (late(ConnectEnd::TimedOut, Some(&curl)), "after curl[40]'s connect had timed out here"),
            (late(ConnectEnd::Unknown, None), "one given up before the answer came, or a SYN forged with this host's address"),
        ] {
            assert_eq!((got.cause, got.origin, got.benign), (Cause::NoSocket, Origin::Stack, false));
            assert!(got.why.contains(says), "{} lacks {says}", got.why);
        }
    }

    /// A connect refused by this host's stack from another address than the one dialled (an
    /// address translation took the SYN there) is refused, though a listener here serves the
    /// address dialled.
    #[test]
    fn a_refusal_from_behind_an_address_translation_is_refused() {
        let story = Story { refused_behind_nat: Some("10.0.2.2:9".parse().unwrap()), peer_sent: Some(Cause::NoListener), ..Story::default() };
        let verdict = classify(&Trigger::Received { state: Some(SynSent) }, &story);
        assert_eq!((verdict.cause, verdict.origin), (Cause::Refused, Origin::Peer));
        assert!(verdict.why.contains("(no_listener): the stack of 10.0.2.2:9 on this host answered"), "{}", verdict.why);
    }

    #[test]
    fn a_forged_rst_names_every_ground_it_is_judged_forged_on() {
        let arrival = crate::event::Arrival { segments: 8, ttl_min: 63, ttl_max: 63, ttl_last: 63, rst_ttl: Some(64), ip_id_last: None, rst_ip_id: None, ipv6: false };
        let story = Story { peer_local: true, evidence: Some(Evidence::new(Some(&arrival), false)), ..Story::default() };
        let verdict = classify(&Trigger::Received { state: Some(Established) }, &story);
        assert_eq!(verdict.cause, Cause::Injected);
        assert_eq!(
            verdict.why,
            "RST arrived but the peer's stack on this host sent none: a device or firewall in the path forged it; RST came with TTL 64, the peer's segments with 63: a device in the path sent it"
        );
    }

    #[test]
    fn a_local_abort_on_data_says_whether_the_socket_was_closed_or_shut_down() {
        let story = Story { owner: Some(Named::new("srv", 7)), aborted_on_data: true, ..Story::default() };
        let facts = |orphan| Some(SockFacts { orphan, ..SockFacts::default() });
        let why = |orphan| classify(&Trigger::Sent { reason: None, state: Some(Close), trigger_syn: None, facts: facts(orphan) }, &story).why;
        assert_eq!(why(true), "peer sent data after srv[7] closed the socket");
        assert_eq!(why(false), "peer sent data after srv[7] shut the socket down for reading (shutdown)");
    }

    #[test]
    fn a_process_ending_with_the_socket_open_is_said_to_have_ended_so() {
        use crate::event::Ending;
        let story = Story { owner: Some(Named::new("socat", 77)), ..Story::default() };
        let ended = |code, unread| SockFacts { closer_ended: Some(Ending::from_exit_code(code)), unread, ..SockFacts::default() };
        let why = |reason, facts| classify(&sent_with(reason, Close, facts), &story).why.into_owned();
        // SIGKILL, a crash dumping core (0x80), an exit with status 3.
        assert_eq!(why("TCP_ABORT_ON_CLOSE", ended(9, true)), "socat[77] was killed by SIGKILL with unread data in the socket: the kernel closed it");
        assert_eq!(why("TCP_ABORT_ON_CLOSE", ended(0x80 | 11, true)), "socat[77] crashed (SIGSEGV) with unread data in the socket: the kernel closed it");
        assert_eq!(why("TCP_STATE", ended(3 << 8, false)), "socat[77] exited (status 3) with the socket open and SO_LINGER 0: the kernel's close aborted it");
        assert_eq!(why("TCP_ABORT_ON_CLOSE", SockFacts::default()), "socat[77] closed the socket with unread data");
        // A kernel that gives no reason: the same, from the unread data read instead.
        let without_reason = classify(&inferred(Close, None, ended(9, true)), &story);
        assert_eq!(without_reason.why, "socat[77] was killed by SIGKILL with unread data in the socket: the kernel closed it");
        let closing_listener = Story { listener_waiting: Some((8080, 2)), ..story };
        let verdict = classify(&sent_with("TCP_STATE", Close, ended(15, false)), &closing_listener);
        assert_eq!(verdict.cause, Cause::ListenerClosed);
        assert!(verdict.why.starts_with("socat[77] was terminated by SIGTERM with its listening socket on port 8080 open"), "{}", verdict.why);
    }

    #[test]
    fn a_destroyed_socket_names_who_destroyed_it_and_whose_it_was() {
        let story = Story { owner: Some(Named::new("nginx", 812)), actor: Some(Named::new("ss", 991)), ..Story::default() };
        let got = classify(&sent(Some("TCP_STATE"), Some(Established), None), &story);
        assert_eq!(got.why, "ss[991] destroyed the socket of nginx[812] in ESTABLISHED (ss -K, SOCK_DESTROY or bpf_sock_destroy)");
        let story = Story { owner: Some(Named::new("nginx", 812)), listener_waiting: Some((80, 1)), ..Story::default() };
        let got = classify(&sent(Some("TCP_STATE"), Some(Close), None), &story);
        assert!(got.why.starts_with("nginx[812] closed its listening socket on port 80 with 1 connection waiting"), "{}", got.why);
    }

    #[test]
    fn why_names_the_owner() {
        let story = Story { owner: Some(Named::new("nginx", 812)), ..Story::default() };
        let got = classify(&sent(Some("TCP_TIMEWAIT_SOCKET"), Some(TimeWait), Some(false)), &story);
        assert_eq!(got.why, "peer sent data after nginx[812] closed the socket");
    }
}
