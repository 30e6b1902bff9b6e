//! From kernel events to reports: each reset judged from the facts it arrives with, and paired
//! with the few events that belong to the same moment.
//!
//! A reset carries what the kernel side kept of its socket (owner, when a connection this host
//! opened began and completed its handshake, the state it left for CLOSE) and what it remembers
//! of other connections (the last owner of the 4-tuple, a sibling connection, an open peer on
//! this host); a connection that never resets sends the agent nothing. What the agent adds is
//! pairing within a moment: the peer's own RST on this host, the error the owner is told right
//! after (a timeout, a tool's destroying the socket), the stack's abort that follows a
//! `tcp_reset()` of its own, the resets of one listener's close. So resets are held for a short
//! moment ([`HOLD_NS`]) before they are classified.
//!
//! Listeners (their start and end are the only state changes the kernel side reports) are kept
//! by port: they name the owner of a passively opened connection whose owner was never seen,
//! and tell when a port changed hands.
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::{
    classify::{classify, Story, Trigger},
    event::{Endpoints, KernelEvent, Payload, Task, TcpState, TCP_FLAG_SYN},
    recent_sent::{RecentSent, SentRecord},
    report::{Attribution, Cause, Direction, Report, ReportType},
};

/// How long a reset waits for its follow-up events before it is classified.
pub const HOLD_NS: u64 = 150_000_000;
/// Two connections opened this close together by one process count as a race (a lost SYN during
/// IPv6 neighbour discovery costs a 1 s retransmit)...
const RACE_OPEN_WINDOW_NS: u64 = 3_000_000_000;
/// ...when the loser is dropped this soon after the later of the two handshakes.
const RACE_ABORT_WINDOW_NS: u64 = 1_000_000_000;
/// How long a sent RST is remembered for matching the peer's received one.
const RECENT_SENT_NS: u64 = 5_000_000_000;
/// A storm sends tens of thousands a second; a peer's RST is looked for within a second of it.
const RECENT_SENT_MAX: usize = 65_536;
/// A received RST and the peer's sent one belong together within this time.
const PEER_MATCH_NS: u64 = 100_000_000;
const PEER_WAIT_NS: u64 = 20_000_000;
/// A listener that closed this recently may still be the one that served a connection its
/// successor on the port now answers for (a restart, or another program taking the port).
const LISTENER_MEMORY_NS: u64 = 120_000_000_000;

const ETIMEDOUT: i32 = 110;
const ECONNABORTED: i32 = 103;

/// A reset or timeout waiting for its follow-up events.
struct Pending {
    event: KernelEvent,
    trigger: Trigger,
    /// The owner when the event itself proves who acted (a close in the owner's system call).
    acting: Option<Task>,
    deadline_ns: u64,
    /// Already waited once for the peer's sent RST to be classified.
    deferred: bool,
    /// For a reset with no connection socket: another process's listener holding the port at
    /// that moment (looked up then: listeners come and go while the reset is held), and the
    /// owner of the connection it answers for.
    port_taken: Option<(Task, Task)>,
    /// This sent reset is the stack's own abort on incoming data, whose `tcp_reset()` just
    /// before was no received RST (see [`Judge::take_local_abort`]).
    aborted_on_data: bool,
    /// For a reset that may come from closing a listener: the key its siblings share (see
    /// [`Judge::count_listener_close`]).
    listener_closed_with: Option<ListenerCloseKey>,
    /// For a sent reset: the error its socket's owner was told in the same kernel call.
    error_after: Option<i32>,
    /// The owner of the listener on the socket's local end when the event came (the listener may
    /// be gone by the time it is classified): the owner of a connection it accepted, when no
    /// other names one.
    listener_owner: Option<Task>,
}

/// Resets sent to a closing listener's waiting connections share the closer's system call:
/// namespace, local port, closing thread, and which close of a listener on that port it is
/// (a reuseport group closed by one thread is several listeners, each with its own queue).
type ListenerCloseKey = (u32, u16, u32, u64);

/// The kernel calls that make one reset story's events (a stack abort's `tcp_reset()` and its
/// RST; a keepalive's RST and its ETIMEDOUT; a listener close resetting its queue) take
/// microseconds natively; a guest under emulation has shown 5 ms between two of them. Every
/// pairing also matches the socket or the 4-tuple, so a generous bound costs no precision.
const SAME_CALL_NS: u64 = 50_000_000;
/// How long a listener close's count is kept: longer than any reset is held.
const LISTENER_CLOSE_KEEP_NS: u64 = 10_000_000_000;

/// After events were lost, for this long a missing event proves nothing.
const LOSS_DOUBT_NS: u64 = 1_000_000_000;

/// What the running kernel lets the judge conclude from an event's absence.
#[derive(Clone, Copy, Debug)]
pub struct Visibility {
    /// Every RST the stack sends is traced (socket-less and TIME_WAIT ones too, 6.10+, or the
    /// kprobe before). Without that, a received RST with no matching sent one proves nothing.
    pub every_sent_reset: bool,
}

impl Visibility {
    pub const ALL: Self = Self { every_sent_reset: true };
}

/// A listening socket's place: namespace, local address, port.
type ListenerKey = (u32, IpAddr, u16);

pub struct Judge {
    /// Each listening socket's owner, and since when it listens.
    listeners: HashMap<ListenerKey, (Task, u64)>,
    /// The owner of the listener that closed at a place last, and when.
    closed_listeners: HashMap<ListenerKey, (Task, u64)>,
    recent_sent: RecentSent,
    pending: VecDeque<Pending>,
    seen: Visibility,
    /// When the agent last noticed kernel events lost (monotonic ns).
    loss_noticed_ns: Option<u64>,
    /// How many connections each listener close reset, and when it began.
    listener_closes: HashMap<ListenerCloseKey, (u64, u32)>,
    /// Per (namespace, port): how many listeners closed there, and when the last one did.
    listener_close_seq: HashMap<(u32, u16), (u64, u64)>,
    /// The latest received reset per socket, for the last [`SAME_CALL_NS`] or so: whether a sent
    /// reset answers one (see [`Judge::take_local_abort`]) is then one look-up, not a walk.
    received_by_sk: HashMap<u64, (u64, Endpoints)>,
    received_pruned_ns: u64,
}

impl Judge {
    pub fn new(seen: Visibility) -> Self {
        Self {
            listeners: HashMap::new(),
            closed_listeners: HashMap::new(),
            recent_sent: RecentSent::new(RECENT_SENT_MAX, RECENT_SENT_NS),
            pending: VecDeque::new(),
            seen,
            loss_noticed_ns: None,
            listener_closes: HashMap::new(),
            listener_close_seq: HashMap::new(),
            received_by_sk: HashMap::new(),
            received_pruned_ns: 0,
        }
    }

    /// Events were lost: for a while, the absence of an event (the peer's own RST) is no
    /// evidence, so no reset is called injected on that ground.
    pub fn note_loss(&mut self, now_ns: u64) {
        self.loss_noticed_ns = Some(now_ns);
    }

    fn losses_near(&self, ts_ns: u64) -> bool {
        self.loss_noticed_ns.is_some_and(|at| at.saturating_add(LOSS_DOUBT_NS) >= ts_ns && at <= ts_ns.saturating_add(LOSS_DOUBT_NS))
    }

    /// Held events whose wait is over as of `now_ns`.
    pub fn has_due(&self, now_ns: u64) -> bool {
        self.pending.front().is_some_and(|p| p.deadline_ns <= now_ns)
    }

    /// Resets and timeouts held for their follow-up events.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Feed one kernel event.
    pub fn observe(&mut self, ev: KernelEvent) {
        match &ev.payload {
            Payload::SetState { old, new } => self.on_listener(&ev, *old, *new),
            Payload::ErrorReport { error } => {
                let error = *error;
                // The error the owner is told right after this socket's own RST says what sent
                // it (ETIMEDOUT: a keepalive gave up; ECONNABORTED: a tool destroyed it).
                if let Some(at) = self.held_just_before(&ev, |p| matches!(p.trigger, Trigger::Sent { .. }) && p.event.endpoints == ev.endpoints) {
                    self.pending[at].error_after = Some(error);
                }
                // A timeout with no RST is an abort of its own; after a keepalive RST the same
                // error is just its echo, and after a connecting socket refused a bad answer
                // with a RST, the end of that story.
                let reset_before = ev.history.resets_sent > 0 || self.recent_sent.near(&ev.endpoints, ev.ts_ns, SAME_CALL_NS).is_some();
                if error == ETIMEDOUT && !reset_before {
                    // The kernel reports a timeout after tcp_done(): the state it died in is the
                    // one it left for CLOSE.
                    let state = ev.history.closed_from;
                    self.hold(ev, Trigger::TimedOut { state }, None);
                }
            }
            Payload::SendReset { state, reason } => {
                let state = *state;
                let reason = reason.map(|r| r.1);
                let aborted_on_data = self.take_local_abort(&ev, reason);
                let listener_closed_with = if aborted_on_data { None } else { self.count_listener_close(&ev, state, reason) };
                // Closing a listener runs in the closer's system call, reason or not.
                let acting = if listener_closed_with.is_some() { ev.current } else { acting_owner(&ev, state, reason) };
                let trigger = Trigger::Sent {
                    reason,
                    state,
                    trigger_syn: ev.trigger.map(|t| t.tcp_flags & TCP_FLAG_SYN != 0),
                    facts: ev.facts,
                };
                let port_taken = match state {
                    None | Some(TcpState::Listen) => self.port_taken(&ev, state),
                    _ => None,
                };
                self.hold(ev, trigger, acting);
                if let Some(p) = self.pending.back_mut() {
                    p.port_taken = port_taken;
                    p.aborted_on_data = aborted_on_data;
                    p.listener_closed_with = listener_closed_with;
                }
            }
            Payload::ReceiveReset { state } => {
                let state = *state;
                self.hold(ev, Trigger::Received { state }, None);
            }
        }
    }

    fn on_listener(&mut self, ev: &KernelEvent, old: Option<TcpState>, new: Option<TcpState>) {
        let key = (ev.netns, ev.endpoints.laddr, ev.endpoints.lport);
        match (old, new) {
            (_, Some(TcpState::Listen)) => {
                if let Some(owner) = ev.owner.or(ev.current) {
                    self.listeners.insert(key, (owner, ev.ts_ns));
                }
            }
            (Some(TcpState::Listen), Some(TcpState::Close)) => {
                if let Some(owner) = self.listeners.remove(&key).map(|(owner, _)| owner).or(ev.owner) {
                    self.closed_listeners.insert(key, (owner, ev.ts_ns));
                }
                // Its queue's resets come next: they are this close's, not an earlier one's
                // (whose reports may still be held, so its count stays).
                let seq = self.listener_close_seq.entry((ev.netns, ev.endpoints.lport)).or_insert((0, 0));
                *seq = (seq.0 + 1, ev.ts_ns);
            }
            _ => {}
        }
    }

    /// A RST is never answered with a RST, so a received reset that this same socket follows
    /// with a sent one within the same kernel call was no RST from the wire: the stack aborted
    /// the connection itself (data arriving after the application shut the socket down or
    /// closed it: `tcp_reset()` first, then the RST, `TCP_ABORT_ON_DATA` where the kernel names
    /// it). The held received reset is dropped; returns whether this sent reset is such an abort.
    fn take_local_abort(&mut self, ev: &KernelEvent, reason: Option<&str>) -> bool {
        if ev.sk == 0 || !matches!(reason, None | Some("TCP_ABORT_ON_DATA" | "NOT_SPECIFIED")) {
            return false;
        }
        // The common case, a RST with no received one on its socket just before: one look-up.
        if !self.received_by_sk.get(&ev.sk).is_some_and(|(ts, ends)| *ends == ev.endpoints && ev.ts_ns.saturating_sub(*ts) <= SAME_CALL_NS) {
            return false;
        }
        let Some(at) = self.held_just_before(ev, |p| {
            matches!(p.trigger, Trigger::Received { .. }) && p.event.sk == ev.sk && p.event.endpoints == ev.endpoints
        }) else {
            return false;
        };
        self.pending.remove(at);
        true
    }

    /// The newest held event matching `wanted` that came at most [`SAME_CALL_NS`] before `ev`.
    /// Held events are in arrival order, so the walk back stops at the first one older than
    /// that: a storm holds thousands and every sent reset asks. (A received reset deferred for
    /// its peer's RST was pushed back out of order; it is skipped, never a reason to stop.)
    fn held_just_before(&self, ev: &KernelEvent, wanted: impl Fn(&Pending) -> bool) -> Option<usize> {
        let since = ev.ts_ns.saturating_sub(SAME_CALL_NS);
        for (at, p) in self.pending.iter().enumerate().rev() {
            if p.deferred {
                continue;
            }
            if p.event.ts_ns < since {
                return None;
            }
            if wanted(p) {
                return Some(at);
            }
        }
        None
    }

    /// A reset that closing a listener sends to a connection still waiting in its accept queue:
    /// no process holds the socket (never accepted), it is already CLOSE, the kernel names the
    /// state (or no reason at all), and it runs in the closer's system call. Counts it with its
    /// siblings; returns their shared key.
    /// Where no reason tells it from the other orphans' aborts in close() (linger2 < 0, orphan
    /// memory), the state it left for CLOSE does: those leave from a closing state, a waiting
    /// connection from ESTABLISHED or CLOSE_WAIT.
    fn count_listener_close(&mut self, ev: &KernelEvent, state: Option<TcpState>, reason: Option<&str>) -> Option<ListenerCloseKey> {
        use TcpState::*;
        let orphan = ev.facts.is_some_and(|f| f.orphan);
        let current = ev.current.filter(|t| !t.is_kernel_context())?;
        if !orphan || state != Some(Close) || !matches!(reason, None | Some("TCP_STATE" | "NOT_SPECIFIED")) {
            return None;
        }
        if matches!(ev.history.closed_from, Some(FinWait1 | FinWait2 | Closing | LastAck)) {
            return None;
        }
        let seq = self.listener_close_seq.get(&(ev.netns, ev.endpoints.lport)).map_or(0, |(seq, _)| *seq);
        let key = (ev.netns, ev.endpoints.lport, current.tid, seq);
        let entry = self.listener_closes.entry(key).or_insert((ev.ts_ns, 0));
        if ev.ts_ns.saturating_sub(entry.0) > SAME_CALL_NS * 10 {
            *entry = (ev.ts_ns, 0); // a later close by the same thread
        }
        entry.1 += 1;
        Some(key)
    }

    /// The listener that serves `endpoints`' local end in `among`: bound to that address, or to
    /// the wildcard address of either family (an IPv6 wildcard also takes IPv4).
    fn serving<'a>(among: &'a HashMap<ListenerKey, (Task, u64)>, netns: u32, endpoints: &Endpoints) -> Option<&'a (Task, u64)> {
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        [endpoints.laddr, any4, any6].iter().find_map(|addr| among.get(&(netns, *addr, endpoints.lport)))
    }

    /// The owner of the listener that serves `endpoints`' local end.
    fn listener(&self, netns: u32, endpoints: &Endpoints) -> Option<Task> {
        Self::serving(&self.listeners, netns, endpoints).map(|(owner, _)| *owner)
    }

    /// A reset with no socket of its connection, sent where another process than the one that
    /// served this peer now listens: (the newcomer, the connection's owner). The connection's
    /// owner is the kernel side's memory of the 4-tuple or, without it, the listener that held
    /// the same place until the newcomer took it.
    fn port_taken(&self, ev: &KernelEvent, state: Option<TcpState>) -> Option<(Task, Task)> {
        let (listening, since) = *Self::serving(&self.listeners, ev.netns, &ev.endpoints)?;
        let now = if state == Some(TcpState::Listen) { ev.owner.unwrap_or(listening) } else { listening };
        let served_by = ev.history.earlier_owner.or_else(|| {
            let (owner, closed) = Self::serving(&self.closed_listeners, ev.netns, &ev.endpoints)?;
            (*closed <= since && ev.ts_ns.saturating_sub(*closed) < LISTENER_MEMORY_NS).then_some(*owner)
        })?;
        (now.pid != served_by.pid).then_some((now, served_by))
    }

    fn hold(&mut self, event: KernelEvent, trigger: Trigger, acting: Option<Task>) {
        let deadline_ns = event.ts_ns + HOLD_NS;
        let listener_owner = if event.owner.is_none() && event.history.opened_ns.is_none() { self.listener(event.netns, &event.endpoints) } else { None };
        match trigger {
            Trigger::Sent { .. } => self.recent_sent.push(event.ts_ns, event.endpoints),
            Trigger::Received { .. } if event.sk != 0 => {
                self.received_by_sk.insert(event.sk, (event.ts_ns, event.endpoints));
            }
            _ => {}
        }
        self.pending.push_back(Pending {
            event,
            trigger,
            acting,
            deadline_ns,
            deferred: false,
            port_taken: None,
            aborted_on_data: false,
            listener_closed_with: None,
            error_after: None,
            listener_owner,
        });
    }

    /// Classify every held event whose wait is over (all of them with `now_ns = u64::MAX`).
    pub fn flush(&mut self, now_ns: u64) -> Vec<Report> {
        self.flush_at_most(now_ns, usize::MAX)
    }

    /// `flush`, but at most `max` reports: the caller drains the ring buffer between batches.
    pub fn flush_at_most(&mut self, now_ns: u64, max: usize) -> Vec<Report> {
        let mut out = Vec::new();
        while out.len() < max && self.pending.front().is_some_and(|p| p.deadline_ns <= now_ns) {
            let mut p = self.pending.pop_front().expect("front checked");
            // Active resets are traced after they are transmitted, so over loopback or veth the
            // peer's `received` comes first: let the sender be classified before it.
            if matches!(p.trigger, Trigger::Received { .. }) && !p.deferred {
                if let Some(r) = self.peer_sent(&p.event) {
                    if r.cause.is_none() {
                        p.deferred = true;
                        p.deadline_ns = p.deadline_ns.saturating_add(PEER_WAIT_NS);
                        self.pending.push_back(p);
                        continue;
                    }
                }
            }
            out.push(self.report(p));
        }
        self.recent_sent.expire(now_ns.min(u64::MAX - 1));
        if now_ns.saturating_sub(self.received_pruned_ns) > SAME_CALL_NS {
            self.received_by_sk.retain(|_, (ts, _)| ts.saturating_add(SAME_CALL_NS) >= now_ns);
            self.received_pruned_ns = now_ns;
        }
        if now_ns != u64::MAX {
            let kept = |at: u64| at.saturating_add(LISTENER_CLOSE_KEEP_NS) > now_ns;
            self.listener_closes.retain(|_, (at, _)| kept(*at));
            self.listener_close_seq.retain(|_, (_, at)| kept(*at));
            self.closed_listeners.retain(|_, (_, at)| at.saturating_add(LISTENER_MEMORY_NS) > now_ns);
        }
        out
    }

    /// The socket's owner: who acted, else the kernel side's record (the connection's, or its
    /// 4-tuple's last owner where no full socket sent), else, for a connection a listener
    /// accepted, the listener's owner.
    fn owner(&self, p: &Pending) -> (Option<Task>, Attribution) {
        if let Some(task) = p.acting {
            return (Some(task), Attribution::CurrentTask);
        }
        let ev = &p.event;
        let answered_by_listener = matches!(p.trigger, Trigger::Sent { state: Some(TcpState::Listen), .. });
        let recorded = match (&p.port_taken, answered_by_listener) {
            (Some((_, served_by)), _) => Some(*served_by),
            // A listener answering concerns the connection it served, not the listener.
            (None, true) => ev.history.earlier_owner.or(ev.owner),
            (None, false) => ev.owner.or(ev.history.earlier_owner),
        };
        let passive = !matches!(p.trigger, Trigger::Received { state: Some(TcpState::SynSent) });
        let owner = recorded.or(p.listener_owner.filter(|_| passive));
        let attribution = if owner.is_some() { Attribution::SocketOwner } else { Attribution::None };
        (owner, attribution)
    }

    fn report(&mut self, p: Pending) -> Report {
        let (owner, attribution) = self.owner(&p);
        let story = self.story(&p, owner.as_ref());
        let verdict = classify(&p.trigger, &story);
        let (kind, direction, state) = match &p.trigger {
            Trigger::Sent { state, .. } => (ReportType::Reset, Some(Direction::Sent), *state),
            Trigger::Received { state } => (ReportType::Reset, Some(Direction::Received), *state),
            Trigger::TimedOut { state } => (ReportType::Abort, None, *state),
        };
        if matches!(p.trigger, Trigger::Sent { .. }) {
            self.recent_sent.set_cause(&p.event.endpoints, p.event.ts_ns, verdict.cause);
        }
        let ev = p.event;
        Report {
            kind,
            direction,
            kernel_reason: match &ev.payload {
                Payload::SendReset { reason, .. } => reason.map(|r| r.1),
                _ => None,
            },
            state: state.map_or("CLOSE", TcpState::name),
            endpoints: ev.endpoints,
            owner,
            attribution,
            netns: ev.netns,
            ts_ns: ev.ts_ns,
            peer_cause: story.peer_sent,
            current: ev.current,
            retransmits: ev.history.retransmits.unwrap_or(0),
            // A socket in SYN_SENT was connecting, even when its record was not kept.
            active_open: ev.history.opened_ns.is_some() || state == Some(TcpState::SynSent),
            verdict,
        }
    }

    fn story(&self, p: &Pending, owner: Option<&Task>) -> Story {
        let ev = &p.event;
        let h = &ev.history;
        let facts = ev.facts.unwrap_or_default();
        let mut story = Story {
            owner: owner.map(|o| format!("{}[{}]", o.comm, o.pid)),
            active_open: h.opened_ns.is_some(),
            peer_closed: facts.peer_closed,
            closed_from: h.closed_from,
            socket_kept: facts.kept,
            tuple_reused: h.tuple_reused,
            race_sibling: self.race_sibling(ev),
            ..Story::default()
        };
        if let Trigger::TimedOut { state } = p.trigger {
            let n = h.retransmits.unwrap_or(0);
            if state == Some(TcpState::SynSent) {
                story.syn_retransmits = n;
            } else {
                story.same_segment_retransmits = n;
            }
        }
        if matches!(p.trigger, Trigger::Received { .. }) {
            story.peer_local = self.seen.every_sent_reset && h.peer_local && !self.losses_near(ev.ts_ns);
            story.peer_sent = self.peer_sent(ev).map(|r| r.cause.unwrap_or(Cause::Unknown));
        }
        story.port_taken_by = p.port_taken.as_ref().map(|(now, _)| format!("{}[{}]", now.comm, now.pid));
        story.aborted_on_data = p.aborted_on_data;
        story.timed_out = p.error_after == Some(ETIMEDOUT);
        story.destroyed = p.error_after == Some(ECONNABORTED);
        story.listener_waiting = p.listener_closed_with.and_then(|key| Some((key.1, self.listener_closes.get(&key)?.1)));
        // The task that ran the call, when it is a process and not the owner: the one that
        // killed someone else's socket.
        story.actor = ev.current.filter(|t| !t.is_kernel_context() && owner.is_none_or(|o| o.pid != t.pid)).map(|t| format!("{}[{}]", t.comm, t.pid));
        story
    }

    /// The RST this host's other end of the connection sent, just before or just after `ev`.
    fn peer_sent(&self, ev: &KernelEvent) -> Option<&SentRecord> {
        self.recent_sent.near(&ev.endpoints.reversed(), ev.ts_ns, PEER_MATCH_NS)
    }

    /// The owner opened another connection to the same peer (same address, or the same port
    /// over the other IP family: happy eyeballs) at about the same time, and that one is still
    /// up: the kernel side names it with an aborted connection this host opened.
    fn race_sibling(&self, ev: &KernelEvent) -> bool {
        let h = &ev.history;
        let (Some(opened), Some(established), Some(s)) = (h.opened_ns, h.established_ns, h.sibling) else { return false };
        s.open
            && (s.raddr == ev.endpoints.raddr || s.family != ev.endpoints.family)
            && s.opened_ns.abs_diff(opened) < RACE_OPEN_WINDOW_NS
            // The race is decided when the later handshake completes; the loser goes right after.
            && ev.ts_ns.saturating_sub(s.established_ns.max(established)) <= RACE_ABORT_WINDOW_NS
    }
}

/// Resets sent from inside the owner's own system call (close, shutdown, disconnect): the socket
/// is already CLOSE when tcp_close()/tcp_disconnect() send them, and the reason names the call.
/// There `current` is the process that closed the socket, which is its owner at that moment
/// (even a forked child that inherited it).
fn acting_owner(ev: &KernelEvent, state: Option<TcpState>, reason: Option<&str>) -> Option<Task> {
    let in_syscall = state == Some(TcpState::Close)
        && matches!(
            reason,
            Some("TCP_ABORT_ON_CLOSE" | "TCP_STATE" | "TCP_DISCONNECT_WITH_DATA" | "TCP_ABORT_ON_LINGER" | "TCP_ABORT_ON_MEMORY")
        );
    ev.current.filter(|task| in_syscall && !task.is_kernel_context())
}
