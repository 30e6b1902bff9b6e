//! The connection table: each connection's story rebuilt from kernel events, and the reports
//! that come out of it.
//!
//! Resets are held for a short moment ([`HOLD_NS`]) before they are classified: the kernel
//! reports what follows a reset (a timeout handed to the owner, the socket's destruction or
//! state change, the peer's own RST on this host) in the next few events, and the verdict needs
//! them. (A received reset's CLOSE is not among them: the kernel side leaves it implied.)
//!
//! Bounded: at most `cap` connections, the oldest closed ones evicted first, evictions counted.
//! A socket address or 4-tuple that starts a new connection (connect, listen, a new child of a
//! listener) starts a new story, so reuse never inherits a stale one.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use crate::{
    classify::{classify, Story, Trigger},
    event::{Endpoints, KernelEvent, Payload, Task, TcpState, TCP_FLAG_SYN},
    recent_sent::{RecentSent, SentRecord},
    tuple_index::TupleIndex,
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
/// A closed connection's story is kept this long: a TIME_WAIT or FIN_WAIT2 socket (60 s on
/// Linux) or a peer that kept talking can still produce a reset that needs it.
pub const CLOSED_TTL_NS: u64 = 120_000_000_000;
/// A received RST and the peer's sent one belong together within this time.
const PEER_MATCH_NS: u64 = 100_000_000;
const PEER_WAIT_NS: u64 = 20_000_000;

const ETIMEDOUT: i32 = 110;
const ECONNABORTED: i32 = 103;

#[derive(Clone, Debug)]
pub struct Connection {
    pub sk: u64,
    pub netns: u32,
    pub endpoints: Endpoints,
    pub state: Option<TcpState>,
    pub opened_ns: u64,
    pub established_ns: Option<u64>,
    pub closed_ns: Option<u64>,
    /// The state it left for CLOSE.
    pub closed_from: Option<TcpState>,
    pub active_open: bool,
    pub owner: Option<Task>,
    pub peer_closed: bool,
    pub retransmits: u32,
    pub syn_retransmits: u32,
    pub same_segment_retransmits: u32,
    last_retransmit_skb: u64,
    /// The owner was told ETIMEDOUT (the only error the kernel side reports: the others echo
    /// a reset already seen).
    pub timed_out: bool,
    pub reset_sent: bool,
    pub reset_received: bool,
    /// The kernel destroyed the socket (it is gone for good, not just disconnected).
    pub destroyed: bool,
    /// Listed in `Tracker::open_clients` under this pid.
    open_client_of: Option<u32>,
}

impl Connection {
    fn new(sk: u64, netns: u32, endpoints: Endpoints, ts: u64) -> Self {
        Self {
            sk,
            netns,
            endpoints,
            state: None,
            opened_ns: ts,
            established_ns: None,
            closed_ns: None,
            closed_from: None,
            active_open: false,
            owner: None,
            peer_closed: false,
            retransmits: 0,
            syn_retransmits: 0,
            same_segment_retransmits: 0,
            last_retransmit_skb: 0,
            timed_out: false,
            reset_sent: false,
            reset_received: false,
            destroyed: false,
            open_client_of: None,
        }
    }

    /// The last state other than CLOSE: the state it is in, or the one it died in.
    pub fn state_before_close(&self) -> Option<TcpState> {
        match self.state {
            Some(TcpState::Close) => self.closed_from,
            other => other,
        }
    }
}

/// A reset or timeout waiting for its follow-up events.
struct Pending {
    event: KernelEvent,
    conn: Option<u64>,
    trigger: Trigger,
    /// The owner when the event itself proves who acted (a close in the owner's system call).
    acting: Option<Task>,
    deadline_ns: u64,
    /// Already waited once for the peer's sent RST to be classified.
    deferred: bool,
    /// For a reset with no connection socket: another process's listener holding the port at
    /// that moment (looked up then: listeners come and go while the reset is held).
    port_taken_by: Option<String>,
    /// This sent reset is the stack's own abort on incoming data, whose `tcp_reset()` just
    /// before was no received RST (see [`Tracker::take_local_abort`]).
    aborted_on_data: bool,
    /// For a reset that may come from closing a listener: the key its siblings share (see
    /// [`Tracker::count_listener_close`]).
    listener_closed_with: Option<ListenerCloseKey>,
    /// For a sent reset: the error its socket's owner was told in the same kernel call.
    error_after: Option<i32>,
}

/// Resets sent to a closing listener's waiting connections share the closer's system call:
/// namespace, local port, closing thread, and which close of a listener on that port it is
/// (a reuseport group closed by one thread is several listeners, each with its own queue).
type ListenerCloseKey = (u32, u16, u32, u64);


#[derive(Debug, Default, Clone, Copy)]
pub struct TableStats {
    pub tracked: usize,
    pub evicted: u64,
}

pub struct Tracker {
    conns: BTreeMap<u64, Connection>,
    by_sk: HashMap<u64, u64>,
    by_tuple: TupleIndex,
    /// (netns, local address, port) of each listening socket → its owner.
    listeners: HashMap<(u32, IpAddr, u16), Task>,
    /// Established, not yet closed connections this host opened, by owner pid: the only
    /// candidates for a race sibling, so a report never scans the whole table.
    open_clients: HashMap<u32, HashSet<u64>>,
    recent_sent: RecentSent,
    pending: VecDeque<Pending>,
    /// (closed at, id) in closing order: expiry and eviction take the oldest closed first.
    closed: VecDeque<(u64, u64)>,
    next_id: u64,
    cap: usize,
    evicted: u64,
    seen: Visibility,
    /// When the agent last noticed kernel events lost (monotonic ns).
    loss_noticed_ns: Option<u64>,
    /// How many connections each listener close reset, and when it began.
    listener_closes: HashMap<ListenerCloseKey, (u64, u32)>,
    /// Per (namespace, port): how many listeners closed there, and when the last one did.
    listener_close_seq: HashMap<(u32, u16), (u64, u64)>,
    /// The latest received reset per socket, for the last [`SAME_CALL_NS`] or so: whether a sent
    /// reset answers one (see [`Tracker::take_local_abort`]) is then one look-up, not a walk.
    received_by_sk: HashMap<u64, (u64, Endpoints)>,
    received_pruned_ns: u64,
}

/// The kernel calls that make one reset story's events (a stack abort's `tcp_reset()` and its
/// RST; a keepalive's RST and its ETIMEDOUT; a listener close resetting its queue) take
/// microseconds natively; a guest under emulation has shown 5 ms between two of them. Every
/// pairing also matches the socket or the 4-tuple, so a generous bound costs no precision.
const SAME_CALL_NS: u64 = 50_000_000;
/// How long a listener close's count is kept: longer than any reset is held.
const LISTENER_CLOSE_KEEP_NS: u64 = 10_000_000_000;

/// After events were lost, for this long a missing event proves nothing.
const LOSS_DOUBT_NS: u64 = 1_000_000_000;

/// What the running kernel lets the tracker conclude from an event's absence.
#[derive(Clone, Copy, Debug)]
pub struct Visibility {
    /// Every RST the stack sends is traced (socket-less and TIME_WAIT ones too, 6.10+).
    /// Without that, a received RST with no matching sent one proves nothing.
    pub every_sent_reset: bool,
    /// `tcp:tcp_destroy_sock` is attached, so a socket not destroyed is still held.
    pub socket_destruction: bool,
}

impl Visibility {
    pub const ALL: Self = Self { every_sent_reset: true, socket_destruction: true };
}

impl Tracker {
    pub fn new(cap: usize, seen: Visibility) -> Self {
        Self {
            conns: BTreeMap::new(),
            by_sk: HashMap::new(),
            by_tuple: TupleIndex::default(),
            listeners: HashMap::new(),
            open_clients: HashMap::new(),
            recent_sent: RecentSent::new(RECENT_SENT_MAX, RECENT_SENT_NS),
            pending: VecDeque::new(),
            closed: VecDeque::new(),
            next_id: 1,
            cap: cap.max(16),
            evicted: 0,
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

    pub fn stats(&self) -> TableStats {
        TableStats { tracked: self.conns.len(), evicted: self.evicted }
    }

    pub fn connection(&self, id: u64) -> Option<&Connection> {
        self.conns.get(&id)
    }

    fn create(&mut self, ev: &KernelEvent) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(id, Connection::new(ev.sk, ev.netns, ev.endpoints, ev.ts_ns));
        if ev.sk != 0 {
            self.by_sk.insert(ev.sk, id);
        }
        self.by_tuple.add(ev.endpoints, id);
        self.evict_over_cap();
        id
    }

    /// The oldest connection that is still closed (a queued one may have been reused or removed).
    fn oldest_closed(&mut self) -> Option<(u64, u64)> {
        while let Some(&(at, id)) = self.closed.front() {
            if self.conns.get(&id).is_some_and(|c| c.closed_ns == Some(at)) {
                return Some((at, id));
            }
            self.closed.pop_front();
        }
        None
    }

    fn evict_over_cap(&mut self) {
        while self.conns.len() > self.cap {
            // Oldest closed connection first; a table full of live ones drops the oldest.
            let victim = self.oldest_closed().map(|(_, id)| id).or_else(|| self.conns.keys().next().copied());
            let Some(id) = victim else { break };
            self.remove(id);
            self.evicted += 1;
        }
    }

    /// Forget closed connections older than [`CLOSED_TTL_NS`] (not counted as evictions).
    fn expire(&mut self, now_ns: u64) {
        while let Some((at, id)) = self.oldest_closed() {
            if at.saturating_add(CLOSED_TTL_NS) > now_ns {
                break;
            }
            self.closed.pop_front();
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else { return };
        unlist_open_client(&mut self.open_clients, id, c.open_client_of);
        if self.by_sk.get(&c.sk) == Some(&id) {
            self.by_sk.remove(&c.sk);
        }
        self.by_tuple.remove(&c.endpoints, id);
    }

    /// The newest connection with these endpoints, in this namespace when it is known.
    fn by_endpoints(&self, endpoints: &Endpoints, netns: u32) -> Option<u64> {
        self.by_tuple.get(endpoints).iter().rev().copied().find(|id| {
            netns == 0 || self.conns.get(id).is_some_and(|c| c.netns == 0 || c.netns == netns)
        })
    }

    /// The connection living on this socket. At connect() the kernel enters SYN_SENT before it
    /// picks the source port, so a story opened with an incomplete tuple is completed here.
    fn by_socket(&mut self, ev: &KernelEvent) -> Option<u64> {
        let id = *self.by_sk.get(&ev.sk)?;
        let c = self.conns.get_mut(&id)?;
        if c.endpoints == ev.endpoints {
            return Some(id);
        }
        // A listener's wildcard remote end is not incomplete: it answers many peers.
        if c.state == Some(TcpState::Listen) {
            return None;
        }
        // connect() enters SYN_SENT before the local port is chosen; a listener's child enters
        // SYN_RECV before its remote end is set. Fields still zero are free to fill in.
        let (old, new) = (&c.endpoints, &ev.endpoints);
        let fits = |a: IpAddr, b: IpAddr| a.is_unspecified() || a == b;
        let port_fits = |a: u16, b: u16| a == 0 || a == b;
        if !(fits(old.laddr, new.laddr) && fits(old.raddr, new.raddr) && port_fits(old.lport, new.lport) && port_fits(old.rport, new.rport)) {
            return None;
        }
        let old = std::mem::replace(&mut c.endpoints, ev.endpoints);
        self.by_tuple.remove(&old, id);
        self.by_tuple.add(ev.endpoints, id);
        Some(id)
    }

    fn find(&mut self, ev: &KernelEvent) -> Option<u64> {
        if ev.sk != 0 {
            if let Some(id) = self.by_socket(ev) {
                return Some(id);
            }
        }
        self.by_endpoints(&ev.endpoints, ev.netns)
    }

    /// Feed one kernel event.
    pub fn observe(&mut self, ev: KernelEvent) {
        match &ev.payload {
            Payload::SetState { old, new } => self.on_set_state(&ev, *old, *new),
            Payload::Retransmit { state } => {
                let state = *state;
                if let Some(c) = self.find(&ev).and_then(|id| self.conns.get_mut(&id)) {
                    if state == Some(TcpState::SynSent) {
                        c.syn_retransmits += 1;
                    } else {
                        c.retransmits += 1;
                        if ev.skb != 0 && ev.skb == c.last_retransmit_skb {
                            c.same_segment_retransmits += 1;
                        } else {
                            c.same_segment_retransmits = 1;
                            c.last_retransmit_skb = ev.skb;
                        }
                    }
                }
            }
            Payload::ErrorReport { error } => {
                let error = *error;
                // The error the owner is told right after this socket's own RST says what sent
                // it (ETIMEDOUT: a keepalive gave up; ECONNABORTED: a tool destroyed it), story
                // or not.
                if let Some(at) = self.held_just_before(&ev, |p| matches!(p.trigger, Trigger::Sent { .. }) && p.event.endpoints == ev.endpoints) {
                    self.pending[at].error_after = Some(error);
                }
                if error != ETIMEDOUT {
                    return;
                }
                let id = self.find(&ev);
                let mut state = None;
                let mut reset_seen = false;
                if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                    c.timed_out = true;
                    // The kernel reports a timeout after tcp_done(): name the state it died in.
                    state = c.state_before_close();
                    reset_seen = c.reset_sent || c.reset_received;
                }
                // A timeout with no RST on either side is an abort of its own; after a
                // keepalive RST the same error is just its echo, story or not (a connection
                // older than rsttrace has none: its RST is found by its endpoints).
                let reset_seen = reset_seen || self.recent_sent.near(&ev.endpoints, ev.ts_ns, SAME_CALL_NS).is_some();
                if !reset_seen {
                    self.hold(ev, id, Trigger::TimedOut { state }, None);
                }
            }
            Payload::SendReset { state, reason } => {
                let state = *state;
                let reason = reason.map(|r| r.1);
                // Without a socket the tuple may still name a connection this host forgot: its
                // story gives the last owner.
                let id = self.find(&ev);
                let aborted_on_data = self.take_local_abort(&ev, reason, id);
                let listener_closed_with = if aborted_on_data { None } else { self.count_listener_close(&ev, state, reason, id) };
                // Closing a listener runs in the closer's system call, reason or not.
                let acting = if listener_closed_with.is_some() { ev.current } else { acting_owner(&ev, state, reason) };
                if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                    c.reset_sent = true;
                    if let Some(task) = &acting {
                        c.owner = Some(task.clone());
                    }
                }
                let trigger = Trigger::Sent {
                    reason,
                    state,
                    trigger_syn: ev.trigger.map(|t| t.tcp_flags & TCP_FLAG_SYN != 0),
                    facts: ev.facts,
                };
                let port_taken_by = match state {
                    None | Some(TcpState::Listen) => self.port_taken(&ev, id),
                    _ => None,
                };
                self.hold(ev, id, trigger, acting);
                if let Some(p) = self.pending.back_mut() {
                    p.port_taken_by = port_taken_by;
                    p.aborted_on_data = aborted_on_data;
                    p.listener_closed_with = listener_closed_with;
                }
            }
            Payload::DestroySock => {
                // By socket alone: tcp_disconnect() has already cleared the destination port.
                if let Some(c) = self.by_sk.get(&ev.sk).and_then(|id| self.conns.get_mut(id)) {
                    c.destroyed = true;
                }
            }
            Payload::ReceiveReset { state: read } => {
                // The state the kernel side read from the socket at that instant is the truth,
                // story or not (a connection older than rsttrace has none).
                let read = *read;
                let id = self.find(&ev);
                let mut state = read;
                if let Some((id, c)) = id.and_then(|id| Some((id, self.conns.get_mut(&id)?))) {
                    c.reset_received = true;
                    state = read.or(c.state);
                    // tcp_reset() closes the socket in the same call, and the kernel side does not
                    // report that CLOSE (`closed_by_reported_reset` in rsttrace-ebpf).
                    if state != Some(TcpState::Close) {
                        c.state = Some(TcpState::Close);
                        closed(c, id, state, ev.ts_ns, &mut self.open_clients, &mut self.closed);
                    }
                }
                self.hold(ev, id, Trigger::Received { state }, None);
            }
        }
    }

    fn on_set_state(&mut self, ev: &KernelEvent, old: Option<TcpState>, new: Option<TcpState>) {
        use TcpState::*;
        let (Some(new), true) = (new, ev.sk != 0) else { return };
        let starts_new_life = match new {
            SynSent | Listen => old == Some(Close),
            SynRecv => old != Some(SynSent),
            _ => false,
        };
        let existing = if starts_new_life { None } else { self.by_socket(ev) };
        let id = match existing {
            Some(id) => id,
            None => self.create(ev),
        };
        let listener_owner = self.listener(ev.netns, &ev.endpoints).cloned();
        let Some(c) = self.conns.get_mut(&id) else { return };
        c.state = Some(new);
        // A transition inside a story may come without its namespace (`Detail::netns` in
        // rsttrace-ebpf): the story's holds.
        if c.netns == 0 {
            c.netns = ev.netns;
        }
        let netns = c.netns;
        if let Some(owner) = &ev.owner {
            // Most events repeat the known owner: write it only on a change.
            if c.owner.as_ref() != Some(owner) {
                c.owner = Some(owner.clone());
            }
        } else if starts_new_life && new == SynSent {
            // connect() runs in the owner's system call (a kworker's, for the kernel's own
            // sockets): the kernel side leaves this owner to the agent (see
            // `owner::is_new_connection` in rsttrace-ebpf).
            c.owner = ev.current;
        } else if new == SynRecv && c.owner.is_none() {
            // A listener's child belongs to whoever accepts it: the listener's owner, until a
            // send, receive or close in another process says otherwise.
            c.owner = listener_owner;
        }
        match (old, new) {
            (_, SynSent) => c.active_open = true,
            (_, Established) => {
                c.established_ns = Some(ev.ts_ns);
                if let (true, None, Some(owner)) = (c.active_open, c.open_client_of, &c.owner) {
                    c.open_client_of = Some(owner.pid);
                    self.open_clients.entry(owner.pid).or_default().insert(id);
                }
            }
            (_, CloseWait) => c.peer_closed = true,
            (_, Close) => closed(c, id, old, ev.ts_ns, &mut self.open_clients, &mut self.closed),
            _ => {}
        }
        match (old, new) {
            (_, Listen) => {
                let owner = c.owner.clone().or(ev.current);
                if let Some(owner) = owner {
                    self.listeners.insert((netns, ev.endpoints.laddr, ev.endpoints.lport), owner);
                }
            }
            (Some(Listen), Close) => {
                self.listeners.remove(&(netns, ev.endpoints.laddr, ev.endpoints.lport));
                // Its queue's resets come next: they are this close's, not an earlier one's
                // (whose reports may still be held, so its count stays).
                let seq = self.listener_close_seq.entry((netns, ev.endpoints.lport)).or_insert((0, 0));
                *seq = (seq.0 + 1, ev.ts_ns);
            }
            _ => {}
        }
    }

    /// A RST is never answered with a RST, so a received reset that this same socket follows
    /// with a sent one within the same kernel call was no RST from the wire: the stack aborted
    /// the connection itself (data arriving after the application shut the socket down or
    /// closed it: `tcp_reset()` first, then the RST, `TCP_ABORT_ON_DATA` where the kernel names
    /// it). The held received reset is dropped and its story no longer counts a received RST;
    /// returns whether this sent reset is such an abort.
    fn take_local_abort(&mut self, ev: &KernelEvent, reason: Option<&str>, id: Option<u64>) -> bool {
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
        if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
            c.reset_received = false;
        }
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
    /// memory), the story does: those leave CLOSE from a closing state, a waiting connection
    /// from ESTABLISHED or CLOSE_WAIT.
    fn count_listener_close(&mut self, ev: &KernelEvent, state: Option<TcpState>, reason: Option<&str>, id: Option<u64>) -> Option<ListenerCloseKey> {
        use TcpState::*;
        let orphan = ev.facts.is_some_and(|f| f.orphan);
        let current = ev.current.filter(|t| !t.is_kernel_context())?;
        if !orphan || state != Some(Close) || !matches!(reason, None | Some("TCP_STATE" | "NOT_SPECIFIED")) {
            return None;
        }
        let closed_from = id.and_then(|id| self.conns.get(&id)).and_then(|c| c.closed_from);
        if matches!(closed_from, Some(FinWait1 | FinWait2 | Closing | LastAck)) {
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

    /// The owner of the listener that serves `endpoints`' local end: bound to that address, or
    /// to the wildcard address of either family (an IPv6 wildcard also takes IPv4).
    fn listener(&self, netns: u32, endpoints: &Endpoints) -> Option<&Task> {
        let any4 = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        [endpoints.laddr, any4, any6]
            .iter()
            .find_map(|addr| self.listeners.get(&(netns, *addr, endpoints.lport)))
    }

    fn hold(&mut self, event: KernelEvent, conn: Option<u64>, trigger: Trigger, acting: Option<Task>) {
        let deadline_ns = event.ts_ns + HOLD_NS;
        match trigger {
            Trigger::Sent { .. } => self.recent_sent.push(event.ts_ns, event.endpoints),
            Trigger::Received { .. } if event.sk != 0 => {
                self.received_by_sk.insert(event.sk, (event.ts_ns, event.endpoints));
            }
            _ => {}
        }
        self.pending.push_back(Pending {
            event,
            conn,
            trigger,
            acting,
            deadline_ns,
            deferred: false,
            port_taken_by: None,
            aborted_on_data: false,
            listener_closed_with: None,
            error_after: None,
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
            self.expire(now_ns);
        }
        out
    }

    fn report(&mut self, p: Pending) -> Report {
        let conn = p.conn.and_then(|id| self.conns.get(&id));
        // A reset answered by a listener concerns the connection it served, not the listener.
        let answered_by_listener = matches!(p.trigger, Trigger::Sent { state: Some(TcpState::Listen), .. });
        let story_owner = conn.and_then(|c| c.owner.clone());
        let owner = if answered_by_listener {
            p.acting.clone().or(story_owner).or_else(|| p.event.owner.clone())
        } else {
            p.acting.clone().or_else(|| p.event.owner.clone()).or(story_owner)
        };
        let attribution = match (&p.acting, &owner) {
            (Some(_), _) => Attribution::CurrentTask,
            (None, Some(_)) => Attribution::SocketOwner,
            (None, None) => Attribution::None,
        };
        let story = self.story(&p, conn, owner.as_ref());
        let verdict = classify(&p.trigger, &story);
        let (kind, direction, state) = match &p.trigger {
            Trigger::Sent { state, .. } => (ReportType::Reset, Some(Direction::Sent), *state),
            Trigger::Received { state } => (ReportType::Reset, Some(Direction::Received), *state),
            Trigger::TimedOut { state } => (ReportType::Abort, None, *state),
        };
        if matches!(p.trigger, Trigger::Sent { .. }) {
            self.recent_sent.set_cause(&p.event.endpoints, p.event.ts_ns, verdict.cause);
        }
        let netns = if p.event.netns != 0 { p.event.netns } else { conn.map_or(0, |c| c.netns) };
        Report {
            kind,
            direction,
            kernel_reason: match &p.event.payload {
                Payload::SendReset { reason, .. } => reason.map(|r| r.1),
                _ => None,
            },
            state: state.map_or("CLOSE", TcpState::name),
            endpoints: p.event.endpoints,
            owner,
            attribution,
            netns,
            ts_ns: p.event.ts_ns,
            peer_cause: story.peer_sent,
            current: p.event.current.clone(),
            retransmits: conn.map_or(0, |c| c.retransmits + c.syn_retransmits),
            // A socket in SYN_SENT was connecting, even when its story was not followed.
            active_open: conn.is_some_and(|c| c.active_open) || state == Some(TcpState::SynSent),
            verdict,
        }
    }

    fn story(&self, p: &Pending, conn: Option<&Connection>, owner: Option<&Task>) -> Story {
        let mut story = Story { owner: owner.map(|o| format!("{}[{}]", o.comm, o.pid)), ..Story::default() };
        if let Some(c) = conn {
            story.active_open = c.active_open;
            story.peer_closed = c.peer_closed;
            story.same_segment_retransmits = c.same_segment_retransmits;
            story.syn_retransmits = c.syn_retransmits;
            story.timed_out = c.timed_out;
            story.closed_from = c.closed_from;
            story.socket_kept = self.seen.socket_destruction && c.closed_ns.is_some() && !c.destroyed;
            story.tuple_reused = self.by_tuple.get(&c.endpoints).len() > 1;
            story.race_sibling = self.race_sibling(c, owner, p.event.ts_ns);
        }
        let reversed = p.event.endpoints.reversed();
        if matches!(p.trigger, Trigger::Received { .. }) {
            story.peer_local = self.seen.every_sent_reset && self.by_tuple.contains(&reversed) && !self.losses_near(p.event.ts_ns);
            story.peer_sent = self.peer_sent(&p.event).map(|r| r.cause.unwrap_or(Cause::Unknown));
        }
        story.port_taken_by = p.port_taken_by.clone();
        story.aborted_on_data = p.aborted_on_data;
        story.timed_out |= p.error_after == Some(ETIMEDOUT);
        story.destroyed = p.error_after == Some(ECONNABORTED);
        story.listener_waiting = p.listener_closed_with.and_then(|key| Some((key.1, self.listener_closes.get(&key)?.1)));
        // The task that ran the call, when it is a process and not the owner: the one that
        // killed someone else's socket.
        story.actor = p.event.current.filter(|t| !t.is_kernel_context() && owner.is_none_or(|o| o.pid != t.pid)).map(|t| format!("{}[{}]", t.comm, t.pid));
        story
    }

    /// The RST this host's other end of the connection sent, just before or just after `ev`.
    fn peer_sent(&self, ev: &KernelEvent) -> Option<&SentRecord> {
        self.recent_sent.near(&ev.endpoints.reversed(), ev.ts_ns, PEER_MATCH_NS)
    }

    /// The owner opened another connection to the same peer (same address, or same port over the
    /// other IP family: happy eyeballs) at about the same time, and that one is still up.
    fn race_sibling(&self, c: &Connection, owner: Option<&Task>, now: u64) -> bool {
        let (Some(owner), true, Some(c_est)) = (owner, c.active_open, c.established_ns) else { return false };
        let Some(candidates) = self.open_clients.get(&owner.pid) else { return false };
        candidates.iter().filter_map(|id| self.conns.get(id)).any(|d| {
            !std::ptr::eq(d, c)
                && d.active_open
                && d.closed_ns.is_none()
                && d.owner.as_ref().is_some_and(|o| o.pid == owner.pid)
                && (d.endpoints.raddr == c.endpoints.raddr
                    || (d.endpoints.rport == c.endpoints.rport && d.endpoints.family != c.endpoints.family))
                && d.opened_ns.abs_diff(c.opened_ns) < RACE_OPEN_WINDOW_NS
                // The race is decided when the later handshake completes; the loser goes right after.
                && d.established_ns.is_some_and(|d_est| now.saturating_sub(d_est.max(c_est)) <= RACE_ABORT_WINDOW_NS)
        })
    }

    /// A socket-less reset on a port whose listener now belongs to another process than the one
    /// that served this peer before.
    fn port_taken(&self, ev: &KernelEvent, conn: Option<u64>) -> Option<String> {
        let served_by = self.conns.get(&conn?)?.owner.as_ref()?;
        let now = self.listener(ev.netns, &ev.endpoints)?;
        (now.pid != served_by.pid).then(|| format!("{}[{}]", now.comm, now.pid))
    }
}

/// The story's socket entered CLOSE from `old` at `ts`: by its own transition, or by a received
/// reset (whose CLOSE comes as no event of its own).
fn closed(
    c: &mut Connection,
    id: u64,
    old: Option<TcpState>,
    ts: u64,
    open_clients: &mut HashMap<u32, HashSet<u64>>,
    closed: &mut VecDeque<(u64, u64)>,
) {
    c.closed_ns = Some(ts);
    c.closed_from = old;
    unlist_open_client(open_clients, id, c.open_client_of.take());
    closed.push_back((ts, id));
}

fn unlist_open_client(open_clients: &mut HashMap<u32, HashSet<u64>>, id: u64, pid: Option<u32>) {
    let Some(pid) = pid else { return };
    if let Some(ids) = open_clients.get_mut(&pid) {
        ids.remove(&id);
        if ids.is_empty() {
            open_clients.remove(&pid);
        }
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rsttrace_common::EventKind;

    use super::*;
    use crate::event::{Family, Segment, SockFacts};
    use crate::report::Origin;
    use TcpState::*;

    const SK: u64 = 0xffff_8880_0000_1000;
    const NETNS: u32 = 4026532000;

    fn task(pid: u32, comm: &str) -> Task {
        Task { pid, tid: pid, comm: comm.into(), cgroup: 0 }
    }

    fn ends(lport: u16) -> Endpoints {
        Endpoints {
            family: Family::Ipv4,
            laddr: "10.0.0.1".parse::<IpAddr>().unwrap(),
            lport,
            raddr: "10.0.0.2".parse::<IpAddr>().unwrap(),
            rport: 80,
        }
    }

    /// A recorded event: `ts` in ms, on socket `sk`.
    fn ev(ts_ms: u64, sk: u64, lport: u16, payload: Payload, current: Task, owner: Option<Task>) -> KernelEvent {
        let kind = match payload {
            Payload::SendReset { .. } => EventKind::SendReset,
            Payload::ReceiveReset { .. } => EventKind::ReceiveReset,
            Payload::Retransmit { .. } => EventKind::Retransmit,
            Payload::SetState { .. } => EventKind::SetState,
            Payload::ErrorReport { .. } => EventKind::ErrorReport,
            Payload::DestroySock => EventKind::DestroySock,
        };
        KernelEvent {
            kind,
            ts_ns: ts_ms * 1_000_000,
            sk,
            skb: 0,
            trigger: None,
            endpoints: ends(lport),
            payload,
            current: Some(current),
            owner,
            netns: NETNS,
            facts: None,
        }
    }

    /// A state change as the kernel side ships it: `current` only where a connection or a
    /// listener begins (`is_new_connection` and LISTEN in rsttrace-ebpf), never inside a story.
    fn state(ts: u64, lport: u16, old: TcpState, new: TcpState, current: Task, owner: Option<Task>) -> KernelEvent {
        let begins = (old == Close && new == SynSent) || (new == SynRecv && old != SynSent) || new == Listen;
        let mut e = ev(ts, SK, lport, Payload::SetState { old: Some(old), new: Some(new) }, current, owner);
        if !begins {
            e.current = None;
        }
        e
    }

    fn sent(ts: u64, sk: u64, st: Option<TcpState>, reason: Option<&'static str>, current: Task) -> KernelEvent {
        let reason = reason.map(|r| (0, r));
        ev(ts, sk, 5000, Payload::SendReset { state: st, reason }, current, None)
    }

    fn run(events: Vec<KernelEvent>) -> (Tracker, Vec<Report>) {
        let mut t = Tracker::new(1024, Visibility::ALL);
        for e in events {
            t.observe(e);
        }
        let reports = t.flush(u64::MAX);
        (t, reports)
    }

    /// connect() as `curl`: SYN_SENT before the port is chosen, then established. The kernel
    /// side records no owner for either (a socket's owner is learned at its first send).
    fn connected(owner: &Task) -> Vec<KernelEvent> {
        vec![
            state(1, 0, Close, SynSent, owner.clone(), None),
            state(2, 5000, SynSent, Established, task(0, "swapper/0"), None),
        ]
    }

    #[test]
    fn linger0_close_in_a_forked_child_names_the_child() {
        let parent = task(100, "server");
        let child = task(101, "worker");
        let mut events = connected(&parent);
        events.push(state(10, 5000, Established, Close, child.clone(), Some(parent.clone())));
        events.push(sent(10, SK, Some(Close), Some("TCP_STATE"), child.clone()));
        // close() destroys the socket in the same call.
        events.push(ev(10, SK, 5000, Payload::DestroySock, child.clone(), None));
        let (_, reports) = run(events);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(r.verdict.cause, Cause::AppAbortLinger0);
        assert_eq!(r.owner.as_ref().unwrap().pid, 101);
        assert_eq!(r.attribution, Attribution::CurrentTask);
    }

    #[test]
    fn disconnect_keeps_the_socket_and_is_not_linger0() {
        let app = task(300, "app");
        let mut events = connected(&app);
        events.push(state(10, 5000, Established, Close, app.clone(), Some(app.clone())));
        events.push(sent(10, SK, Some(Close), Some("TCP_STATE"), app.clone()));
        let (_, reports) = run(events.clone());
        assert_eq!(reports[0].verdict.cause, Cause::AppDisconnect);

        // Where the kernel cannot show destruction, its absence proves nothing.
        let mut t = Tracker::new(64, Visibility { every_sent_reset: true, socket_destruction: false });
        events.into_iter().for_each(|e| t.observe(e));
        assert_eq!(t.flush(u64::MAX)[0].verdict.cause, Cause::AppAbortLinger0);
    }

    /// Two connections by `app`, the first aborted 100 ms after the second's handshake.
    fn race(second: Endpoints) -> Vec<Report> {
        let app = task(500, "app");
        let mut events = connected(&app);
        let mut open = state(5, 0, Close, SynSent, app.clone(), None);
        open.sk = SK + 1;
        open.endpoints = Endpoints { lport: 0, ..second };
        let mut est = state(6, 0, SynSent, Established, task(0, "swapper/0"), None);
        est.sk = SK + 1;
        est.endpoints = second;
        events.extend([open, est]);
        events.push(state(106, 5000, Established, Close, app.clone(), Some(app.clone())));
        events.push(sent(106, SK, Some(Close), Some("TCP_STATE"), app.clone()));
        events.push(ev(106, SK, 5000, Payload::DestroySock, app.clone(), None));
        run(events).1
    }

    #[test]
    fn race_loser_needs_the_same_peer() {
        let same_host = Endpoints { lport: 5001, ..ends(0) };
        assert_eq!(race(same_host)[0].verdict.cause, Cause::ConnectRaceLoser);
        assert!(race(same_host)[0].verdict.benign);
        // Happy eyeballs: the same service over the other family.
        let v6 = Endpoints {
            family: Family::Ipv6,
            laddr: "fd00::1".parse().unwrap(),
            lport: 5002,
            raddr: "fd00::2".parse().unwrap(),
            rport: 80,
        };
        assert_eq!(race(v6)[0].verdict.cause, Cause::ConnectRaceLoser);
        // A proxy talking to another host on the same port: a real abort, not benign.
        let other_host = Endpoints { raddr: "10.0.0.3".parse().unwrap(), lport: 5003, ..ends(0) };
        let r = &race(other_host)[0];
        assert_eq!((r.verdict.cause, r.verdict.benign), (Cause::AppAbortLinger0, false));
    }

    fn with_facts(mut e: KernelEvent, facts: SockFacts) -> KernelEvent {
        e.facts = Some(facts);
        e
    }

    #[test]
    fn a_received_reset_that_its_socket_answers_with_a_rst_is_the_stacks_abort_not_a_phantom() {
        let server = task(80, "server");
        let mut events = connected(&server);
        // Data after shutdown(): tcp_reset() fires the receive tracepoint in the peer's
        // softirq, then the socket sends its RST (6.18: TCP_ABORT_ON_DATA; 6.1: no reason).
        for reason in [Some("TCP_ABORT_ON_DATA"), None] {
            let mut events = events.clone();
            events.push(ev(10, SK, 5000, Payload::ReceiveReset { state: Some(FinWait2) }, task(9, "client"), None));
            events.push(with_facts(sent(10, SK, Some(Close), reason, task(9, "client")), SockFacts::default()));
            let (_, reports) = run(events);
            assert_eq!(reports.len(), 1, "{reason:?}: {reports:?}");
            assert_eq!((reports[0].direction, reports[0].verdict.cause), (Some(Direction::Sent), Cause::DataAfterClose));
            assert!(reports[0].verdict.why.contains("shut the socket down"), "{}", reports[0].verdict.why);
        }
        // A real RST is no such pair with a RST of the same socket that is not the same call's
        // (60 ms later), nor with one the kernel names otherwise.
        events.push(ev(10, SK, 5000, Payload::ReceiveReset { state: Some(Established) }, task(9, "client"), None));
        let later = sent(70, SK, Some(Close), Some("TCP_ABORT_ON_DATA"), task(9, "client"));
        let other_reason = sent(10, SK, Some(Close), Some("TCP_ABORT_ON_CLOSE"), task(7, "x"));
        for second in [later, other_reason] {
            let mut events = events.clone();
            events.push(second);
            let (_, reports) = run(events);
            assert_eq!(reports.len(), 2, "{reports:?}");
            assert!(reports.iter().any(|r| r.direction == Some(Direction::Received)));
        }
    }

    #[test]
    fn closing_a_listener_resets_its_queue_as_listener_closed_counting_the_waiting() {
        let nginx = task(812, "nginx");
        let orphan = SockFacts { orphan: true, ..SockFacts::default() };
        let mut events = Vec::new();
        for (i, reason) in [(0, Some("TCP_STATE")), (1, None)] {
            let mut e = with_facts(sent(10, SK + i, Some(Close), reason, nginx), orphan);
            e.endpoints = ends(80);
            e.endpoints.rport = 5000 + i as u16;
            events.push(e);
        }
        let (_, reports) = run(events);
        assert_eq!(reports.len(), 2);
        for r in &reports {
            assert_eq!((r.verdict.cause, r.verdict.origin), (Cause::ListenerClosed, Origin::Application));
            assert!(r.verdict.why.starts_with("nginx[812] closed its listening socket on port 80 with 2 connections waiting"), "{}", r.verdict.why);
        }
    }

    #[test]
    fn a_listener_close_as_the_kernel_reports_it_counts_only_its_own_queue() {
        let srv = task(812, "srv");
        let orphan = SockFacts { orphan: true, ..SockFacts::default() };
        let wildcard = Endpoints { raddr: "0.0.0.0".parse().unwrap(), rport: 0, ..ends(80) };
        // A listener at `listener` with `queued` children, closed at `ts` ms.
        let closed_listener = |listener: u64, queued: u64, ts: u64| {
            let mut listen = state(ts - 9, 80, Close, Listen, srv, Some(srv));
            (listen.sk, listen.endpoints) = (listener, wildcard);
            let mut events = vec![listen];
            for i in 0..queued {
                let child = |old, new| {
                    let mut e = state(ts - 8, 80, old, new, task(9, "client"), None);
                    e.sk = listener + 1 + i;
                    e.endpoints.rport = 5000 + (listener + i) as u16;
                    e
                };
                events.push(child(Listen, SynRecv));
                events.push(child(SynRecv, Established));
            }
            let mut close = state(ts, 80, Listen, Close, srv, Some(srv));
            (close.sk, close.endpoints) = (listener, wildcard);
            events.push(close);
            for i in 0..queued {
                let mut down = state(ts, 80, Established, Close, srv, None);
                down.sk = listener + 1 + i;
                down.endpoints.rport = 5000 + (listener + i) as u16;
                events.push(down);
                let mut rst = with_facts(sent(ts, listener + 1 + i, Some(Close), Some("TCP_STATE"), srv), orphan);
                rst.endpoints = Endpoints { rport: 5000 + (listener + i) as u16, ..ends(80) };
                events.push(rst);
            }
            events
        };
        // The second listener on the port closes while the first one's resets are still held.
        let mut events = closed_listener(SK, 2, 10);
        events.extend(closed_listener(SK + 100, 1, 20));
        let (_, reports) = run(events);
        let whys: Vec<&str> = reports.iter().map(|r| r.verdict.why.as_str()).collect();
        assert!(reports.iter().all(|r| r.verdict.cause == Cause::ListenerClosed), "{whys:?}");
        assert_eq!(whys.iter().filter(|w| w.contains("port 80 with 2 connections")).count(), 2, "{whys:?}");
        assert_eq!(whys.iter().filter(|w| w.contains("port 80 with 1 connection ")).count(), 1, "{whys:?}");
    }

    #[test]
    fn orphans_reset_by_a_timer_or_by_close_in_a_closing_state_are_not_a_listener_close() {
        let orphan = SockFacts { orphan: true, ..SockFacts::default() };
        // In kernel context (a timer, softirq): not the closer's system call.
        let (_, reports) = run(vec![with_facts(sent(10, SK, Some(Close), None, task(0, "swapper/0")), orphan)]);
        assert_ne!(reports[0].verdict.cause, Cause::ListenerClosed);
        // close() in FIN_WAIT2 with TCP_LINGER2 < 0 on a kernel without reasons: orphaned first.
        let app = task(300, "app");
        let mut events = connected(&app);
        events.push(state(10, 5000, Established, FinWait1, app, Some(app)));
        events.push(state(11, 5000, FinWait1, FinWait2, task(0, "swapper/0"), Some(app)));
        events.push(state(12, 5000, FinWait2, Close, app, Some(app)));
        events.push(with_facts(sent(12, SK, Some(Close), None, app), SockFacts { stand_ins_read: true, ..orphan }));
        events.push(ev(12, SK, 5000, Payload::DestroySock, app, None));
        let (_, reports) = run(events);
        assert_eq!(reports[0].verdict.cause, Cause::Linger2Abort, "{}", reports[0].verdict.why);
    }

    #[test]
    fn a_story_less_connection_is_named_by_the_error_its_rst_is_followed_by() {
        // 6.1, a connection older than rsttrace: no reason, no story.
        let keepalive = vec![
            sent(10, SK, Some(Established), None, task(0, "swapper/1")),
            ev(10, 0, 5000, Payload::ErrorReport { error: 110 }, task(0, "swapper/1"), None),
        ];
        let (_, reports) = run(keepalive);
        assert_eq!(reports.len(), 1, "the timeout is the RST's echo: {reports:?}");
        assert_eq!(reports[0].verdict.cause, Cause::KeepaliveTimeout);
        let destroyed = vec![
            sent(10, SK, Some(Established), None, task(991, "ss")),
            ev(10, 0, 5000, Payload::ErrorReport { error: 103 }, task(991, "ss"), None),
        ];
        let (_, reports) = run(destroyed);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].verdict.cause, Cause::SocketDestroyed);
        assert!(reports[0].verdict.why.starts_with("ss[991] destroyed the socket"), "{}", reports[0].verdict.why);
    }

    #[test]
    fn keepalive_on_an_old_kernel_is_inferred_from_the_timeout() {
        let curl = task(200, "curl");
        let mut events = connected(&curl);
        // 6.1: no reason; the timer runs as swapper; ETIMEDOUT follows after tcp_done().
        events.push(sent(5000, SK, Some(Established), None, task(0, "swapper/1")));
        events.push(state(5000, 5000, Established, Close, task(0, "swapper/1"), Some(curl.clone())));
        events.push(ev(5000, 0, 5000, Payload::ErrorReport { error: 110 }, task(0, "swapper/1"), None));
        let (_, reports) = run(events);
        assert_eq!(reports.len(), 1, "the ETIMEDOUT after a RST is not an abort of its own");
        assert_eq!(reports[0].verdict.cause, Cause::KeepaliveTimeout);
        assert_eq!(reports[0].owner.as_ref().unwrap().comm, "curl");
        assert_eq!(reports[0].attribution, Attribution::SocketOwner);
        assert_eq!(reports[0].kernel_reason, None);
    }

    #[test]
    fn data_after_close_on_an_old_kernel_uses_the_time_wait_socket_story() {
        let nginx = task(812, "nginx");
        let mut events = connected(&nginx);
        events.push(state(10, 5000, Established, FinWait1, nginx.clone(), Some(nginx.clone())));
        events.push(state(11, 5000, FinWait1, FinWait2, task(0, "swapper/0"), Some(nginx.clone())));
        events.push(state(11, 5000, FinWait2, Close, task(0, "swapper/0"), Some(nginx.clone())));
        // The RST comes from the TIME_WAIT mini-socket: another address, the peer's process running.
        let mut rst = sent(20, 0xdead_0000, Some(TimeWait), None, task(300, "client"));
        rst.trigger = Some(Segment { tcp_flags: 0x18, saddr: rst.endpoints.raddr, sport: 80, daddr: rst.endpoints.laddr });
        events.push(rst);
        let (_, reports) = run(events);
        let r = &reports[0];
        assert_eq!(r.verdict.cause, Cause::DataAfterClose);
        assert_eq!(r.verdict.why, "peer sent data after nginx[812] closed the socket");
        assert_eq!(r.owner.as_ref().unwrap().pid, 812);
    }

    #[test]
    fn retransmissions_then_timeout_is_an_abort_in_the_state_it_died_in() {
        let app = task(400, "app");
        let mut events = connected(&app);
        for i in 0..4 {
            let mut r = ev(100 + i, SK, 5000, Payload::Retransmit { state: Some(Established) }, task(0, "ksoftirqd/0"), None);
            r.skb = 0xabc;
            events.push(r);
        }
        events.push(state(900, 5000, Established, Close, task(0, "swapper/0"), Some(app.clone())));
        events.push(ev(900, 0, 5000, Payload::ErrorReport { error: 110 }, task(0, "swapper/0"), None));
        let (_, reports) = run(events);
        let r = &reports[0];
        assert_eq!((r.kind, r.verdict.cause, r.verdict.origin), (ReportType::Abort, Cause::RetransmitTimeout, Origin::Network));
        assert_eq!(r.state, "ESTABLISHED");
        assert_eq!(r.owner.as_ref().unwrap().pid, 400);
        assert!(r.verdict.why.contains("4 times"), "{}", r.verdict.why);
    }

    #[test]
    fn received_reset_is_injected_only_when_the_local_peer_sent_none() {
        let client = task(1, "client");
        let server_side = |ts| {
            // The server's socket: the same connection seen from the other namespace.
            let mut e = state(ts, 80, SynRecv, Established, task(0, "swapper/0"), None);
            e.sk = SK + 1;
            e.endpoints = ends(5000).reversed();
            e
        };
        let mut events = connected(&client);
        events.push(server_side(2));
        events.push(ev(50, SK, 5000, Payload::ReceiveReset { state: None }, task(9, "other"), None));
        let (_, reports) = run(events.clone());
        assert_eq!(reports[0].verdict.cause, Cause::Injected);
        assert_eq!(reports[0].owner.as_ref().unwrap().pid, 1, "never the task the softirq ran in");

        // Events were lost around then: the server's RST may be among them, so not injected.
        let mut t = Tracker::new(1024, Visibility::ALL);
        events.iter().cloned().for_each(|e| t.observe(e));
        t.note_loss(60_000_000);
        assert_eq!(t.flush(u64::MAX)[0].verdict.cause, Cause::PeerReset);

        // Same story, but the server's stack did send it (traced after it was transmitted).
        let mut server_rst = sent(50, SK + 1, Some(Close), Some("TCP_ABORT_ON_CLOSE"), task(7, "server"));
        server_rst.endpoints = ends(5000).reversed();
        events.push(server_rst);
        let (_, reports) = run(events);
        let received = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!(received.verdict.cause, Cause::PeerReset);
        assert_eq!(received.peer_cause, Some(Cause::AppAbortUnread));
    }

    #[test]
    fn table_is_bounded_and_reuse_starts_a_new_story() {
        let mut t = Tracker::new(16, Visibility::ALL);
        for i in 0..40u16 {
            let mut open = state(i as u64, 1000 + i, Close, SynSent, task(1, "a"), None);
            open.sk = SK + i as u64;
            let mut close = state(i as u64, 1000 + i, SynSent, Close, task(1, "a"), None);
            close.sk = SK + i as u64;
            t.observe(open);
            t.observe(close);
        }
        assert_eq!(t.stats().tracked, 16);
        assert_eq!(t.stats().evicted, 24);
        // A socket address reused by a new connect() starts fresh: no inherited owner or retransmits.
        let mut reuse = state(100, 1039, Close, SynSent, task(2, "b"), None);
        reuse.sk = SK + 39;
        t.observe(reuse);
        let id = *t.by_sk.get(&(SK + 39)).unwrap();
        let c = t.connection(id).unwrap();
        assert_eq!(c.state, Some(SynSent));
        assert!(c.closed_from.is_none(), "the old story's states leaked into the new one");
        assert_eq!(c.owner.map(|o| o.pid), Some(2), "the new connect()'s caller owns it, not the old story's");
    }

    #[test]
    fn a_listener_child_at_a_reused_address_starts_without_the_old_owner() {
        let mut t = Tracker::new(16, Visibility::ALL);
        let old = task(1, "old");
        t.observe(state(1, 1000, Close, SynSent, old.clone(), None));
        t.observe(state(2, 1000, SynSent, Close, old.clone(), None));
        // The same socket address, now a child of a listener this table never saw: created in
        // softirq, where `current` is unrelated.
        t.observe(state(3, 80, Listen, SynRecv, task(0, "swapper/0"), None));
        let c = t.connection(*t.by_sk.get(&SK).unwrap()).unwrap();
        assert_eq!(c.state, Some(SynRecv));
        assert!(c.owner.is_none(), "the old story's owner leaked into the child: {:?}", c.owner);
    }

    #[test]
    fn open_clients_list_only_live_established_connections() {
        let app = task(7, "app");
        let mut t = Tracker::new(16, Visibility::ALL);
        for i in 0..40u64 {
            for (old, new) in [(Close, SynSent), (SynSent, Established)] {
                let mut e = state(i, 2000 + i as u16, old, new, app.clone(), Some(app.clone()));
                e.sk = SK + i;
                t.observe(e);
            }
            // Every other one closes; the rest stay open until evicted.
            if i % 2 == 0 {
                let mut close = state(i, 2000 + i as u16, Established, Close, app.clone(), Some(app.clone()));
                close.sk = SK + i;
                t.observe(close);
            }
        }
        let listed = t.open_clients.get(&7).map_or(0, HashSet::len);
        let live = t.conns.values().filter(|c| c.established_ns.is_some() && c.closed_ns.is_none()).count();
        assert_eq!(listed, live);
        assert!(live > 0 && live <= 16, "{live}");
    }

    #[test]
    fn a_received_reset_closes_its_story_without_a_close_event() {
        let client = task(1, "a");
        let mut t = Tracker::new(1024, Visibility::ALL);
        for e in connected(&client) {
            t.observe(e);
        }
        t.observe(ev(10, SK, 5000, Payload::ReceiveReset { state: None }, task(0, "swapper/0"), None));
        let c = t.conns.values().next().unwrap();
        assert_eq!((c.state, c.closed_from, c.closed_ns), (Some(Close), Some(Established), Some(10_000_000)));
        assert!(t.open_clients.is_empty(), "no longer an open client");
        let reports = t.flush(10_000_000 + HOLD_NS);
        assert_eq!((reports.len(), reports[0].state), (1, "ESTABLISHED"), "reported in the state it was in");
        // A CLOSE that does come (the task moved CPUs in between) changes nothing.
        t.observe(state(11, 5000, Established, Close, client, None));
        assert_eq!(t.stats().tracked, 1);
        t.flush(11_000_000 + CLOSED_TTL_NS);
        assert_eq!(t.stats().tracked, 0, "expires like any closed story");
    }

    #[test]
    fn closed_connections_expire_after_their_ttl() {
        let mut t = Tracker::new(1024, Visibility::ALL);
        for e in connected(&task(1, "a")) {
            t.observe(e);
        }
        t.observe(state(10, 5000, Established, Close, task(1, "a"), None));
        t.flush(10_000_000 + CLOSED_TTL_NS - 1);
        assert_eq!(t.stats().tracked, 1);
        t.flush(10_000_000 + CLOSED_TTL_NS);
        assert_eq!(t.stats().tracked, 0);
        assert_eq!(t.stats().evicted, 0, "expiry is not eviction");
        assert!(t.by_tuple.is_empty() && t.by_sk.is_empty(), "indices cleaned");
    }

    #[test]
    fn listener_child_keeps_one_story_from_syn_recv_on() {
        let nginx = task(812, "nginx");
        let mut listen = state(1, 80, Close, Listen, nginx.clone(), Some(nginx.clone()));
        listen.sk = SK + 7;
        listen.endpoints = Endpoints { raddr: "0.0.0.0".parse().unwrap(), rport: 0, ..ends(80) };
        // The child enters SYN_RECV before its remote end is filled in.
        let mut syn_recv = state(2, 80, Listen, SynRecv, task(9, "peer"), None);
        syn_recv.endpoints = listen.endpoints;
        let established = state(3, 80, SynRecv, Established, task(9, "peer"), None);
        let received = ev(4, SK, 80, Payload::ReceiveReset { state: None }, task(9, "peer"), None);
        let (t, reports) = run(vec![listen, syn_recv, established, received]);
        assert_eq!(t.stats().tracked, 2, "listener + one child story");
        assert_eq!(reports[0].owner.as_ref().map(|o| o.pid), Some(812));
        assert_eq!(reports[0].state, "ESTABLISHED");
    }

    #[test]
    fn a_listener_closed_by_a_transition_without_namespace_or_current_is_forgotten() {
        let nginx = task(812, "nginx");
        let mut listen = state(1, 80, Close, Listen, nginx.clone(), Some(nginx));
        listen.endpoints = Endpoints { raddr: "0.0.0.0".parse().unwrap(), rport: 0, ..ends(80) };
        let mut close = state(2, 80, Listen, Close, task(0, "-"), None);
        (close.endpoints, close.netns, close.current) = (listen.endpoints, 0, None);
        let mut t = Tracker::new(64, Visibility::ALL);
        t.observe(listen);
        assert_eq!(t.listeners.len(), 1);
        t.observe(close);
        assert!(t.listeners.is_empty(), "removed under the story's namespace");
    }

    #[test]
    fn without_full_send_tracing_a_lonely_received_reset_is_not_called_injected() {
        let mut t = Tracker::new(64, Visibility { every_sent_reset: false, socket_destruction: true });
        let client = task(1, "client");
        for e in connected(&client) {
            t.observe(e);
        }
        let mut server = state(2, 80, SynRecv, Established, task(0, "swapper/0"), None);
        server.sk = SK + 1;
        server.endpoints = ends(5000).reversed();
        t.observe(server);
        t.observe(ev(50, SK, 5000, Payload::ReceiveReset { state: None }, task(9, "other"), None));
        assert_eq!(t.flush(u64::MAX)[0].verdict.cause, Cause::PeerReset);
    }
}
