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
//! The ends of connections reset or timed out here are kept longer, bounded (`ended_here`): a
//! peer that talks on long after gets a RST from no socket, whose report names that end.
//!
//! Listeners (their start and end are the only state changes the kernel side reports) are kept
//! by port: they name the owner of a passively opened connection whose owner was never seen,
//! and tell when a port changed hands.
use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::{
    FastMap, FastSet,
    classify::{classify, refused_for_a_full_queue, ConnectEnd, Named, Story, Trigger},
    ended_here::{EarlierEnd, Ended, EndedHere, EndedBy},
    event::{Endpoints, Family, KernelEvent, Payload, Task, TcpState, TCP_FLAG_SYN},
    evidence::Evidence,
    local_addresses::LocalAddresses,
    recent_sent::{Answered, RecentSent, SentRecord, SentVerdict},
    report::{Attribution, Cause, Direction, Report, ReportType, Verdict},
};

/// How long a reset waits for its follow-up events before it is classified.
pub const HOLD_NS: u64 = 150_000_000;
/// Two connections opened this close together by one process count as a race (a lost SYN during
/// IPv6 neighbour discovery costs a 1 s retransmit)...
const RACE_OPEN_WINDOW_NS: u64 = 3_000_000_000;
/// ...when the loser is dropped this soon after the later of the two handshakes. A connection
/// dropped this soon after its handshake without a byte either way is a connect probe.
const RACE_ABORT_WINDOW_NS: u64 = 1_000_000_000;
/// How long a sent RST is remembered for matching the peer's received one, counted back from
/// the oldest reset still held (a received one is judged once its hold is over, however late
/// the agent reads it): more than [`PATH_DELAY_NS`], little enough that a storm's window stays
/// small in memory.
const RECENT_SENT_NS: u64 = 1_200_000_000;
/// A storm sends tens of thousands a second: the memory bound. What it forgets early is
/// remembered as forgotten (see `peer_here_sent_nothing`).
const RECENT_SENT_MAX: usize = 65_536;
/// A received RST and the peer's sent one belong together within this time.
const PEER_MATCH_NS: u64 = 100_000_000;
/// A refusal sent to a connecting end's port at another address (a masquerade's) belongs to its
/// RST within this time: a port alone says less than a 4-tuple, so only a moment before.
const MASQUERADED_MATCH_NS: u64 = 20_000_000;
/// Failing that, a RST the peer sent up to this long before, that no other received reset
/// took, is the one a slow path (a shaped link, a far detour) delivered late.
const PATH_DELAY_NS: u64 = 1_000_000_000;
/// An active reset traced this little before a RST answering a segment on the same connection
/// crossed that segment on the way (natively microseconds apart); longer, it may as well have
/// been lost, and the answer be what reached the peer.
const CROSSED_NS: u64 = 1_000_000;
/// How long after this host reset a connection a segment of it from the peer, which had not
/// heard of that reset (its data or FIN in flight, up to a round trip, or the RST lost on the
/// way), is taken for its echo: the RST answering it says nothing new. Within
/// [`RECENT_SENT_NS`].
const ECHO_NS: u64 = 450_000_000;
const PEER_WAIT_NS: u64 = 20_000_000;
/// How far behind a received reset its local peer's RST is looked for among the held ones
/// (other CPUs' events come in between).
const SENDER_SEARCH: usize = 64;
/// A connection this host opened and aborted this soon after its handshake, once its data was
/// answered and all it sent acknowledged, was a short-lived client's exchange (a health check, a request). Longer,
/// an abort after the last answer may be a transfer cut short, which the socket cannot tell
/// from a finished one: a proxy's server timeout (haproxy's `timeout server`, seconds) aborts
/// a response that stalled after its first bytes, and must not be hidden as benign.
const SHORT_EXCHANGE_NS: u64 = 1_000_000_000;
/// A listener that closed this recently may still be the one that served a connection its
/// successor on the port now answers for (a restart, or another program taking the port).
const LISTENER_MEMORY_NS: u64 = 120_000_000_000;

/// How many connection ends `ended_here` keeps: a storm forgets its oldest first.
const ENDED_HERE_MAX: usize = 16_384;

const ETIMEDOUT: i32 = 110;
const ECONNABORTED: i32 = 103;

/// The earlier end of its connection here that a RST of no socket follows (see
/// [`Judge::earlier_end`]): whose connection it was, and whether it was a moment ago (an echo).
#[derive(Clone, Copy)]
struct Earlier {
    end: EarlierEnd,
    owner: Option<Task>,
    echo: bool,
}

/// What [`Judge::judged`] made of a held event.
struct Judged {
    owner: Option<Task>,
    attribution: Attribution,
    thread: Option<crate::event::Comm>,
    story: Story,
    verdict: Verdict,
}

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
    /// other names one. Held apart, to use only where the socket's own file names nobody (see
    /// [`SocketFiles`]), when the kernel side read that file (no owner on record: the socket was not used
    /// since it was accepted) or the listener listened since before the trace (see
    /// `older_sockets`): a forking server's child holds the socket its parent accepted, and
    /// an older listener's holder is the first of the processes sharing it (a master that never
    /// accepts).
    listener_owner: Option<Task>,
    listener_owner_fallback: Option<Task>,
    /// For a received reset: the peer sent more on the 4-tuple after it, which this host
    /// answered with a RST of no socket (see [`Judge::note_peer_talking`]); for that RST, that
    /// it answers such a segment.
    peer_talked_after: bool,
    /// For a received reset: the RST its peer here sent is one sent well before it (more than
    /// [`PEER_MATCH_NS`]), taken for delayed on the way.
    peer_late: bool,
    /// For a received reset while connecting: a listener of this host served the address and
    /// port connected to when the RST came (the other end was here, though it had no socket for
    /// this connection yet).
    syn_to_listener_here: bool,
    /// For a SYN no socket took: the wildcard address of the port's listener of the other
    /// family (an IPv6-only one on `::` for an IPv4 SYN, one on 0.0.0.0 for an IPv6 SYN).
    listener_of_other_family: Option<IpAddr>,
    /// For a segment no socket took (no SYN), on a port nobody listens on now: the owner of the
    /// listener that served it until it closed, and when it closed. The connection may be one
    /// that listener never accepted (its handshake's end dropped while its queue was full).
    listener_gone: Option<(Task, u64)>,
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
    /// A filter in the kernel (`-p`, `-c`) drops the RSTs of the other end of a connection,
    /// which has an owner of its own.
    pub other_ends_filtered: bool,
}

impl Visibility {
    pub const ALL: Self = Self { every_sent_reset: true, other_ends_filtered: false };
}

/// A listening socket's place: namespace, local address, port.
type ListenerKey = (u32, IpAddr, u16);

/// Who holds a socket's file (its inode), for a socket nobody was seen acting on or whose owner
/// on record is gone.
pub trait SocketFiles {
    fn holder(&mut self, inode: u64) -> Option<Task>;
    /// The process that dropped the file's last reference (closed it, or exited holding it).
    fn released_by(&mut self, inode: u64) -> Option<Task>;
    /// Process `pid` has exited (or is a zombie): it holds no file any more.
    fn gone(&mut self, pid: u32) -> bool;
}

/// Where no file can be looked up (the tests' recorded streams).
#[cfg(test)]
pub struct NoSocketFiles;

#[cfg(test)]
impl SocketFiles for NoSocketFiles {
    fn holder(&mut self, _inode: u64) -> Option<Task> {
        None
    }

    fn released_by(&mut self, _inode: u64) -> Option<Task> {
        None
    }

    fn gone(&mut self, _pid: u32) -> bool {
        false
    }
}

/// When a listener found listening at start began, as the judge keeps it.
const LISTENING_BEFORE_TRACE: u64 = 0;

pub struct Judge {
    /// The listening sockets of each place (several under SO_REUSEPORT, in the order they
    /// started to listen): socket, owner, since when.
    listeners: FastMap<ListenerKey, Vec<(u64, Task, u64)>>,
    /// How many places have listeners on each (address, port), whatever their namespace.
    bound_listeners: FastMap<(IpAddr, u16), u32>,
    /// The owner of the listener that closed at a place last, and when.
    closed_listeners: FastMap<ListenerKey, (Task, u64)>,
    recent_sent: RecentSent,
    ended_here: EndedHere,
    pending: VecDeque<Pending>,
    seen: Visibility,
    /// When the agent last noticed kernel events lost (monotonic ns).
    loss_noticed_ns: Option<u64>,
    /// The trace's start (monotonic ns), after the last program attached: before it, the hooks
    /// attached first saw resets whose other half no later one did (see [`Judge::attached`]).
    attached_ns: u64,
    /// How many connections each listener close reset, and when it began.
    listener_closes: FastMap<ListenerCloseKey, (u64, u32)>,
    /// Per (namespace, port): how many listeners closed there, and when the last one did.
    listener_close_seq: FastMap<(u32, u16), (u64, u64)>,
    /// The connections this host opened before the trace began (see [`Judge::opened_before`]).
    opened_before_trace: FastSet<(u32, Endpoints)>,
    /// The latest received reset per socket, for the last [`SAME_CALL_NS`] or so: whether a sent
    /// reset answers one (see [`Judge::take_local_abort`]) is then one look-up, not a walk.
    received_by_sk: FastMap<u64, (u64, Endpoints)>,
    received_pruned_ns: u64,
    /// Held received resets by 4-tuple, with when they came: a later RST this host sends on the
    /// same 4-tuple is one look-up (see [`Judge::note_peer_talking`]).
    received_by_ends: FastMap<(u32, Endpoints), u64>,
    /// The times of the received resets waiting out of turn for their peer's (see
    /// `flush_at_most`), in the order they wait (which is the order they are judged): with the
    /// oldest held in turn, how far back a sent reset may still be asked for.
    deferred_at: VecDeque<u64>,
    /// The addresses of this host's namespaces that have listeners (the agent keeps it up to
    /// date): a connect() to one of those listeners has its other end here before that end has
    /// a socket.
    pub local_addresses: LocalAddresses,
}

impl Judge {
    pub fn new(seen: Visibility) -> Self {
        Self {
            listeners: FastMap::default(),
            bound_listeners: FastMap::default(),
            closed_listeners: FastMap::default(),
            recent_sent: RecentSent::new(RECENT_SENT_MAX),
            ended_here: EndedHere::new(ENDED_HERE_MAX),
            pending: VecDeque::new(),
            seen,
            loss_noticed_ns: None,
            attached_ns: 0,
            listener_closes: FastMap::default(),
            listener_close_seq: FastMap::default(),
            opened_before_trace: FastSet::default(),
            received_by_sk: FastMap::default(),
            received_pruned_ns: 0,
            received_by_ends: FastMap::default(),
            deferred_at: VecDeque::new(),
            local_addresses: LocalAddresses::new(),
        }
    }

    /// Events were lost: for a while, the absence of an event (the peer's own RST) is no
    /// evidence, so no reset is called injected on that ground.
    pub fn note_loss(&mut self, now_ns: u64) {
        self.loss_noticed_ns = Some(now_ns);
    }

    /// Every program was attached before `now_ns` (the trace's start): only from then on does
    /// the absence of an event say anything. A received reset traced before it may have been
    /// sent while the send hooks were not attached yet.
    pub fn attached(&mut self, now_ns: u64) {
        self.attached_ns = now_ns;
    }

    /// A RST a connecting socket received, which the kernel side counted with others like it
    /// (the last at `ts_ns`), with the cause of the RST this host's stack sent for it if it did
    /// (`answered_here`: a refused SYN): refused by the peer, unless a listener of this host
    /// serves the address it went to and no stack here sent a RST, as for one judged alone.
    pub fn refusal_verdict(&self, endpoints: &Endpoints, answered_here: Option<Cause>, ts_ns: u64) -> Verdict {
        let story = Story {
            peer_sent: answered_here,
            peer_local: self.peer_here_sent_nothing(self.listens_here(&endpoints.reversed()), ts_ns),
            ..Story::default()
        };
        classify(&Trigger::Received { state: Some(TcpState::SynSent) }, &story)
    }

    /// The other end of a received reset at `ts_ns` is on this host (`here`), and the agent would
    /// have seen any RST it sent: every sent one crosses, none was lost around then, and none
    /// sent around then was forgotten to make room.
    fn peer_here_sent_nothing(&self, here: bool, ts_ns: u64) -> bool {
        self.seen.every_sent_reset && here && ts_ns >= self.attached_ns && !self.losses_near(ts_ns) && !self.recent_sent.may_have_forgotten(ts_ns, PEER_MATCH_NS)
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
            // An orphan's timer gave up: the abort of a connection nobody holds, in the state it
            // died in. Its owner is the process that closed it, as the kernel side noted.
            Payload::SetState { old, .. } if ev.history.orphan_timed_out => {
                let state = *old;
                // Kernels without tcp_done_with_error() (before 6.10, unless backported) report
                // the error of a socket nobody holds too, just before its close: that report
                // knows neither the state nor the owner, so this one replaces it.
                if let Some(at) = self.held_just_before(&ev, |p| matches!(p.trigger, Trigger::TimedOut { .. }) && p.event.endpoints == ev.endpoints) {
                    self.pending.remove(at);
                }
                self.hold(ev, Trigger::TimedOut { state }, None);
            }
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
                let reset_before = ev.history.resets_sent > 0 || self.recent_sent.near(&ev.endpoints, ev.ts_ns, SAME_CALL_NS, |_| true).is_some();
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
                    // A bare SYN opens a connection; a SYN-ACK answers one of this host's.
                    trigger_syn: ev.trigger.map(|t| t.is_bare_syn()),
                    facts: ev.facts,
                };
                let port_taken = match state {
                    None | Some(TcpState::Listen) => self.port_taken(&ev, state),
                    _ => None,
                };
                let peer_talking = state.is_none() && self.note_peer_talking(&ev);
                // A listener another process closed (`ss -K` destroying it, a child closing the
                // last copy of its descriptor) is still its owner's: the closer is the actor. A
                // closer whose exit closed it held it last (a prefork worker, a daemon's child
                // the listener was handed to): the listener was its own by then.
                let closer_exiting = ev.facts.is_some_and(|f| f.closer_ended.is_some());
                let listener_owner = listener_closed_with
                    .filter(|_| !closer_exiting)
                    .and_then(|_| self.closed_listener_owner(&ev))
                    .filter(|o| acting.is_some_and(|a| a.pid != o.pid));
                self.hold(ev, trigger, if listener_owner.is_some() { None } else { acting });
                if let Some(p) = self.pending.back_mut() {
                    if listener_owner.is_some() {
                        p.listener_owner = listener_owner;
                    }
                    p.peer_talked_after = peer_talking;
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

    /// A connection this host opened before the trace began (see `older_sockets`): as one whose
    /// connect() was seen, for what follows from that (a client's benign aborts, the key its
    /// reports fold under).
    pub fn opened_before(&mut self, netns: u32, ends: Endpoints) {
        self.opened_before_trace.insert((netns, ends));
    }

    /// This host opened the connection of `ev`: its connect() was seen, or it was open before the
    /// trace began and opened here.
    fn opened_here(&self, ev: &KernelEvent) -> bool {
        ev.history.opened_ns.is_some() || (!self.opened_before_trace.is_empty() && self.opened_before_trace.contains(&(ev.netns, ev.endpoints)))
    }

    /// A listener that was listening before the trace began (see `older_sockets`): as one
    /// whose start was seen, listening since before every event.
    pub fn listening_before(&mut self, netns: u32, addr: IpAddr, port: u16, owner: Task) {
        self.add_listener((netns, addr, port), 0, owner, LISTENING_BEFORE_TRACE);
    }

    /// Listener `sk` (0: one found at start, its socket unknown) listens at `key`.
    fn add_listener(&mut self, key: ListenerKey, sk: u64, owner: Task, since_ns: u64) {
        let members = self.listeners.entry(key).or_default();
        if members.is_empty() {
            *self.bound_listeners.entry((key.1, key.2)).or_default() += 1;
        }
        members.retain(|(s, ..)| *s != sk || sk == 0);
        members.push((sk, owner, since_ns));
    }

    /// Listener `sk` of `closer` (its owner on record) at `key` closed: the member it was, which
    /// under SO_REUSEPORT is not the latest to listen there (a graceful reload closes the old
    /// process's socket while the new one's listens on). A socket not seen listening is taken
    /// for one of its owner's found at start.
    fn remove_listener(&mut self, key: ListenerKey, sk: u64, closer: Option<Task>) -> Option<(Task, u64)> {
        let members = self.listeners.get_mut(&key)?;
        let at = members
            .iter()
            .position(|(s, ..)| *s == sk && sk != 0)
            .or_else(|| members.iter().position(|(s, owner, _)| *s == 0 && closer.is_none_or(|c| c.pid == owner.pid)))?;
        let (_, owner, since) = members.remove(at);
        if members.is_empty() {
            self.listeners.remove(&key);
            if let Some(n) = self.bound_listeners.get_mut(&(key.1, key.2)) {
                *n -= 1;
                if *n == 0 {
                    self.bound_listeners.remove(&(key.1, key.2));
                }
            }
        }
        Some((owner, since))
    }

    fn on_listener(&mut self, ev: &KernelEvent, old: Option<TcpState>, new: Option<TcpState>) {
        let key = (ev.netns, ev.endpoints.laddr, ev.endpoints.lport);
        match (old, new) {
            (_, Some(TcpState::Listen)) => {
                if let Some(owner) = ev.owner.or(ev.current) {
                    self.add_listener(key, ev.sk, owner, ev.ts_ns);
                }
            }
            (Some(TcpState::Listen), Some(TcpState::Close)) => {
                let was = self.remove_listener(key, ev.sk, ev.owner);
                if let Some(owner) = was.map(|(owner, _)| owner).or(ev.owner) {
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

    /// This host sent a RST with no socket: a segment came for a connection it does not have. If
    /// a RST reset that connection a moment ago, the peer is still talking on it, as a peer whose
    /// stack sent that RST would not: its data or ACKs were answered (Weaver et al.'s sign of a
    /// forged RST). Returns whether it was.
    fn note_peer_talking(&mut self, ev: &KernelEvent) -> bool {
        if !self.received_by_ends.contains_key(&(ev.netns, ev.endpoints)) {
            return false; // the common case, a closed port: one look-up
        }
        // A SYN opens a new connection on the 4-tuple: that is not the old peer talking on.
        if ev.trigger.is_none_or(|t| t.tcp_flags & TCP_FLAG_SYN != 0) {
            return false;
        }
        match self.pending.iter_mut().rev().find(|p| Self::received_before(p, ev.netns, &ev.endpoints, ev.ts_ns)) {
            Some(p) => {
                p.peer_talked_after = true;
                true
            }
            None => false,
        }
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
    /// the wildcard address of its family, or IPv6's (one on `::` takes IPv4 too, unless
    /// IPV6_V6ONLY, which the judge cannot see; one on 0.0.0.0 never takes IPv6).
    fn serving_in<'a, T>(among: &'a FastMap<ListenerKey, T>, netns: u32, endpoints: &Endpoints) -> Option<&'a T> {
        let any4 = (endpoints.family == Family::Ipv4).then_some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let any6 = Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        [Some(endpoints.laddr), any4, any6].into_iter().flatten().find_map(|addr| among.get(&(netns, addr, endpoints.lport)))
    }

    /// The wildcard address a listener of the port of `endpoints` holds in the other family, if
    /// that is all: a SYN no socket took there found only a listener of the other family.
    fn listener_of_other_family(&self, netns: u32, endpoints: &Endpoints) -> Option<IpAddr> {
        let other = match endpoints.family {
            Family::Ipv4 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        self.listeners.contains_key(&(netns, other, endpoints.lport)).then_some(other)
    }

    /// The listener serving `endpoints`' local end (the latest to listen, under SO_REUSEPORT):
    /// its owner and since when it listens.
    fn serving(&self, netns: u32, endpoints: &Endpoints) -> Option<(Task, u64)> {
        Self::serving_in(&self.listeners, netns, endpoints).and_then(|members| members.last()).map(|(_, owner, since)| (*owner, *since))
    }

    /// The listener that closed at `endpoints`' local end last: its owner and when it closed.
    fn closed_serving(&self, netns: u32, endpoints: &Endpoints) -> Option<(Task, u64)> {
        Self::serving_in(&self.closed_listeners, netns, endpoints).copied()
    }

    /// The same, where it closed within [`LISTENER_MEMORY_NS`] before `ev`.
    fn closed_serving_lately(&self, ev: &KernelEvent) -> Option<(Task, u64)> {
        self.closed_serving(ev.netns, &ev.endpoints).filter(|(_, closed)| ev.ts_ns.saturating_sub(*closed) < LISTENER_MEMORY_NS)
    }

    /// A listener of one of this host's namespaces serves `server`'s local end: one bound to that
    /// very address (a socket binds only to an address of its namespace), or one on the wildcard
    /// in a namespace that holds the address.
    fn listens_here(&self, server: &Endpoints) -> bool {
        self.bound_listeners.contains_key(&(server.laddr, server.lport))
            || self.local_addresses.namespaces_of(&server.laddr).iter().any(|netns| self.serving(*netns, server).is_some())
    }

    /// A reset with no socket of its connection, sent where another process than the one that
    /// served this peer now listens: (the newcomer, the connection's owner). Only where the
    /// port changed hands: a listener that served it closed, and the one serving it now began
    /// listening after that. (A prefork server's master holds the listener its workers' connections
    /// came from: a worker that served the peer is no predecessor of its master.) The
    /// connection's owner is the kernel side's memory of the 4-tuple or, without it, the listener
    /// that held the same place until the newcomer took it.
    fn port_taken(&self, ev: &KernelEvent, state: Option<TcpState>) -> Option<(Task, Task)> {
        let (listening, since) = self.serving(ev.netns, &ev.endpoints)?;
        let now = if state == Some(TcpState::Listen) { ev.owner.unwrap_or(listening) } else { listening };
        let (predecessor, closed) = self.closed_serving_lately(ev)?;
        if closed > since {
            return None;
        }
        let served_by = ev.history.earlier_owner.unwrap_or(predecessor);
        (now.pid != served_by.pid).then_some((now, served_by))
    }

    /// The owner of the listener that served `ev`'s local end and has just closed.
    fn closed_listener_owner(&self, ev: &KernelEvent) -> Option<Task> {
        self.closed_serving(ev.netns, &ev.endpoints).filter(|(_, closed)| ev.ts_ns.saturating_sub(*closed) < SAME_CALL_NS * 10).map(|(owner, _)| owner)
    }

    fn hold(&mut self, event: KernelEvent, trigger: Trigger, acting: Option<Task>) {
        let deadline_ns = event.ts_ns + HOLD_NS;
        // A SYN that no socket took: no listener's, whatever listens on the port.
        let refused_syn = matches!(trigger, Trigger::Sent { state: None, trigger_syn: Some(true), .. });
        let unowned = event.owner.is_none() && event.history.opened_ns.is_none() && !refused_syn;
        let serving = if unowned { self.serving(event.netns, &event.endpoints) } else { None };
        let listener_of_other_family = if refused_syn { self.listener_of_other_family(event.netns, &event.endpoints) } else { None };
        let segment_unknown = matches!(trigger, Trigger::Sent { state: None, trigger_syn: Some(false), .. });
        let listener_gone = if segment_unknown && self.serving(event.netns, &event.endpoints).is_none() { self.closed_serving_lately(&event) } else { None };
        let (listener_owner, listener_owner_fallback) = match serving {
            Some((owner, since)) if since == LISTENING_BEFORE_TRACE || event.inode != 0 => (None, Some(owner)),
            Some((owner, _)) => (Some(owner), None),
            None => (None, None),
        };
        let syn_to_listener_here = matches!(trigger, Trigger::Received { state: Some(TcpState::SynSent) }) && self.listens_here(&event.endpoints.reversed());
        match trigger {
            Trigger::Sent { state, trigger_syn, .. } => {
                let answered = match (trigger_syn, state) {
                    (Some(false), Some(TcpState::SynSent)) => Answered::HandshakeAck,
                    (Some(false), Some(s)) if s != TcpState::Listen => Answered::SegmentByItsSocket,
                    (Some(false), _) => Answered::Segment,
                    (Some(true), _) | (None, None) => Answered::SynOrUnread,
                    (None, Some(_)) => Answered::Nothing,
                };
                self.recent_sent.push(event.ts_ns, event.endpoints, answered, acting.or(event.owner));
            }
            Trigger::Received { state } => {
                if event.sk != 0 {
                    self.received_by_sk
                        .insert(event.sk, (event.ts_ns, event.endpoints));
                }
                // Only a connection that was up has a peer that could talk on after its RST (a
                // storm of refused connects inserts nothing).
                if state.is_some_and(TcpState::is_synchronized) {
                    self.received_by_ends.insert((event.netns, event.endpoints), event.ts_ns);
                }
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
            listener_owner_fallback,
            peer_talked_after: false,
            peer_late: false,
            syn_to_listener_here,
            listener_of_other_family,
            listener_gone,
        });
    }

    /// Classify every held event whose wait is over (all of them with `now_ns = u64::MAX`),
    /// with no socket's file to ask about.
    #[cfg(test)]
    pub fn flush(&mut self, now_ns: u64) -> Vec<Report> {
        self.flush_at_most(now_ns, usize::MAX, &mut NoSocketFiles)
    }

    /// `flush`, but at most `max` reports, or one more where the last is a received reset judged
    /// right after its sender (the caller drains the ring buffer between batches), asking
    /// `files` who holds the socket of one nobody was seen using.
    pub fn flush_at_most(&mut self, now_ns: u64, max: usize, files: &mut dyn SocketFiles) -> Vec<Report> {
        let mut out = Vec::new();
        while out.len() < max && self.pending.front().is_some_and(|p| p.deadline_ns <= now_ns) {
            let mut p = self.pending.pop_front().expect("front checked");
            // The RST the local peer sent, if any (its time), and its cause once classified.
            let mut peer = match p.trigger {
                Trigger::Received { .. } => self.peer_sent(&p.event).map(|r| (r.ts, r.verdict)),
                _ => None,
            };
            if out.is_empty() {
                // Sized for a storm's batch once one is due: growing it copied every report again.
                out.reserve(max.min(self.pending.len() + 1).min(4096));
            }
            // Active resets are traced after they are transmitted, so over loopback or veth the
            // peer's `received` comes first: the sender is classified before it. Usually the
            // sender is held just behind, its wait over or over within the time this one would
            // wait for it: it is judged at once, out of turn. Otherwise this one waits.
            if let Some((sent_at, None)) = peer {
                let soon = now_ns.saturating_add(PEER_WAIT_NS);
                let behind = self.pending.iter().take(SENDER_SEARCH).position(|n| n.deadline_ns <= soon && Self::is_peer_sent(n, &p, sent_at));
                if let Some(at) = behind {
                    let sender = self.pending.remove(at).expect("position found");
                    out.push(self.report(sender, None, files));
                    peer = self.peer_sent(&p.event).map(|r| (r.ts, r.verdict));
                } else if !p.deferred {
                    p.deferred = true;
                    p.deadline_ns = p.deadline_ns.saturating_add(PEER_WAIT_NS);
                    self.deferred_at.push_back(p.event.ts_ns);
                    self.pending.push_back(p);
                    continue;
                }
            }
            if p.deferred {
                // Judged now, whatever it found.
                self.deferred_at.pop_front();
            }
            if let Some((sent_at, _)) = peer {
                self.recent_sent.set_matched(&p.event.endpoints.reversed(), sent_at);
                p.peer_late = p.event.ts_ns.saturating_sub(sent_at) >= PEER_MATCH_NS;
            }
            let unjudged = SentVerdict { cause: Cause::Unknown, benign: false, after: None };
            out.push(self.report(p, peer.map(|(_, verdict)| verdict.unwrap_or(unjudged)), files));
        }
        let oldest_held = [self.pending.front().map(|p| p.event.ts_ns), self.deferred_at.front().copied()].into_iter().flatten().fold(now_ns, u64::min);
        self.recent_sent.forget_before(oldest_held.saturating_sub(RECENT_SENT_NS));
        if now_ns.saturating_sub(self.received_pruned_ns) > SAME_CALL_NS {
            self.received_by_sk
                .retain(|_, (ts, _)| ts.saturating_add(SAME_CALL_NS) >= now_ns);
            // Kept while their resets may still be held: a deferred one waits behind what came
            // during its own hold, up to about two holds.
            self.received_by_ends
                .retain(|_, ts| ts.saturating_add(2 * HOLD_NS + PEER_WAIT_NS) >= now_ns);
            self.received_pruned_ns = now_ns;
        }
        if now_ns != u64::MAX {
            self.ended_here.expire(now_ns);
            let kept = |at: u64| at.saturating_add(LISTENER_CLOSE_KEEP_NS) > now_ns;
            self.listener_closes.retain(|_, (at, _)| kept(*at));
            self.listener_close_seq.retain(|_, (_, at)| kept(*at));
            self.closed_listeners.retain(|_, (_, at)| at.saturating_add(LISTENER_MEMORY_NS) > now_ns);
        }
        out
    }

    /// `held` is the sent reset, traced at `sent_at`, that `received`'s local peer sent.
    fn is_peer_sent(held: &Pending, received: &Pending, sent_at: u64) -> bool {
        matches!(held.trigger, Trigger::Sent { .. }) && held.event.ts_ns == sent_at && held.event.endpoints == received.event.endpoints.reversed()
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
        let owner = recorded.or(p.listener_owner.filter(|_| Self::accepted(p)));
        let attribution = if owner.is_some() { Attribution::SocketOwner } else { Attribution::None };
        (owner, attribution)
    }

    /// The process holding the socket's file, where `owner` is its owner on record and has
    /// exited since, having handed the socket on (SCM_RIGHTS, or a fork whose parent left): a
    /// timer's reset or a received one runs in no process's call that would name the holder.
    /// Not for a listener answering for a connection (its file is not the connection's), but
    /// for one refusing a handshake with its accept queue full: that is the listener's own
    /// doing (a daemon that forked and left, handing its listener to the child).
    fn handed_over(p: &Pending, owner: Option<Task>, files: &mut dyn SocketFiles) -> Option<Task> {
        let on_record = owner.filter(|o| p.event.inode != 0 && p.event.owner.is_some_and(|r| r.pid == o.pid) && p.acting.is_none())?;
        if let Trigger::Sent { state: state @ Some(TcpState::Listen), reason, trigger_syn, facts } = &p.trigger {
            if !refused_for_a_full_queue(*reason, *state, *trigger_syn, *facts) {
                return None;
            }
        }
        // Another process let go of the file last: it held it, whether the owner on record
        // (which passed it on and closed its own copy) lives on or not.
        if let Some(last) = files.released_by(p.event.inode).filter(|r| r.pid != on_record.pid) {
            return Some(last);
        }
        if !files.gone(on_record.pid) {
            return None;
        }
        files.holder(p.event.inode).filter(|h| h.pid != on_record.pid)
    }

    /// The event's socket may be one a listener accepted: any but a connecting one.
    fn accepted(p: &Pending) -> bool {
        !matches!(p.trigger, Trigger::Received { state: Some(TcpState::SynSent) })
    }

    /// `peer_sent`: for a received reset, the verdict of the RST its local peer sent.
    fn report(&mut self, p: Pending, peer_sent: Option<SentVerdict>, files: &mut dyn SocketFiles) -> Report {
        let earlier = self.earlier_end(&p);
        let mut judged = self.judged(&p, peer_sent, earlier, files);
        // Another cause won (a port another process holds now, a full accept queue whose
        // listener took the segment for a handshake's last ACK): the earlier end is not this
        // RST's story.
        if earlier.is_some() && judged.verdict.cause != Cause::NoSocket {
            judged = self.judged(&p, peer_sent, None, files);
        }
        let Judged { owner, attribution, thread, story, verdict } = judged;
        if let Some(mut how) = Self::ended_by(&p.trigger) {
            if how == EndedBy::Received && peer_sent.is_some() {
                how = EndedBy::ReceivedFromPeer;
            }
            let ended = Ended { ts: p.event.ts_ns, how, cause: verdict.cause, owner, noted_owner: p.event.owner.map(|o| o.pid), sk: p.event.sk };
            self.ended_here.note(p.event.netns, p.event.endpoints, ended);
        }
        if matches!(p.trigger, Trigger::Sent { .. }) {
            // An echo or a sequel is benign in itself, but the peer it resets was reset by it.
            let after = earlier.filter(|_| verdict.cause == Cause::NoSocket).map(|e| e.end);
            let sent = SentVerdict { cause: verdict.cause, benign: verdict.benign && after.is_none(), after };
            self.recent_sent.set_verdict(&p.event.endpoints, p.event.ts_ns, sent);
        }
        let (kind, direction, state) = match &p.trigger {
            Trigger::Sent { state, .. } => (ReportType::Reset, Some(Direction::Sent), *state),
            Trigger::Received { state } => (ReportType::Reset, Some(Direction::Received), *state),
            Trigger::TimedOut { state } => (ReportType::Abort, None, *state),
        };
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
            // A reset in its owner's own call is that process's workload's, whichever cgroup made
            // the socket (on kernels without reasons the call is not always told apart: the
            // owner running is enough).
            cgroup: match (owner, ev.current) {
                (Some(o), Some(running)) if running.pid == o.pid && running.cgroup != 0 && !running.is_kernel_context() => running.cgroup,
                _ => ev.cgroup,
            },
            workload: None,
            thread,
            ts_ns: ev.ts_ns,
            // A RST judged forged is no peer's, whatever the peer sent long before.
            peer_cause: story.peer_sent.filter(|_| verdict.cause != Cause::Injected),
            current: ev.current,
            retransmits: ev.history.retransmits.unwrap_or(0),
            // A socket in SYN_SENT was connecting, even when its record was not kept.
            active_open: self.opened_here(&ev) || state == Some(TcpState::SynSent),
            evidence: story.evidence,
            verdict,
        }
    }

    /// `p`'s owner, story and verdict, taking `earlier` for the end of its connection that it
    /// follows, if any.
    fn judged(&self, p: &Pending, peer_sent: Option<SentVerdict>, earlier: Option<Earlier>, files: &mut dyn SocketFiles) -> Judged {
        let (mut owner, mut attribution) = self.owner(p);
        if let Some(holder) = Self::handed_over(p, owner, files) {
            (owner, attribution) = (Some(holder), Attribution::SocketFile);
        }
        // A RST that follows an earlier end of its connection here: the connection, and so the
        // RST, was that end's owner's (a listener's owner is no party to it).
        if let Some(had) = earlier.and_then(|e| e.owner) {
            (owner, attribution) = (Some(had), Attribution::SocketOwner);
        }
        // Nobody seen acting on it: the process holding its file, else the listener's owner.
        if owner.is_none() {
            if let Some(holder) = Some(p.event.inode).filter(|i| *i != 0).and_then(|i| files.holder(i)) {
                (owner, attribution) = (Some(holder), Attribution::SocketFile);
            } else if let Some(listening) = p.listener_owner_fallback.filter(|_| Self::accepted(p)) {
                (owner, attribution) = (Some(listening), Attribution::SocketOwner);
            } else if let Some((listened, _)) = p.listener_gone {
                (owner, attribution) = (Some(listened), Attribution::SocketOwner);
            }
        }
        // The thread that acted named itself: the report names its process, as the kernel had
        // it then, and the thread apart (`/proc` may not know the process by now).
        let mut thread = None;
        if let (Some(o), Some(process)) = (owner.as_mut(), p.event.current_process) {
            if o.tid != o.pid && p.event.current.is_some_and(|c| c.tid == o.tid) {
                thread = Some(o.comm);
                o.comm = process;
            }
        }
        let mut story = self.story(p, owner.as_ref(), peer_sent);
        match earlier {
            Some(Earlier { echo: true, .. }) => story.echoes_reset = true,
            Some(e) => story.earlier_end = Some(e.end),
            None => {}
        }
        let verdict = classify(&p.trigger, &story);
        Judged { owner, attribution, thread, story, verdict }
    }

    /// The end of `p`'s connection here that `p`, a RST of no connection's socket answering its
    /// peer's segment, follows: this host's reset a moment before (an echo), an end reported
    /// earlier (a sequel), or a RST received a moment before whose report is still held (the
    /// peer talking on is evidence in it too: see `note_peer_talking`).
    fn earlier_end(&self, p: &Pending) -> Option<Earlier> {
        let ts = p.event.ts_ns;
        if let Some(r) = self.echoed_here(p) {
            let end = EarlierEnd { how: EndedBy::Sent, cause: r.verdict.map(|v| v.cause), age_ns: ts.saturating_sub(r.ts) };
            return Some(Earlier { end, owner: r.owner, echo: true });
        }
        if let Some(e) = self.ended_before(p) {
            return Some(Earlier { end: e.seen_at(ts), owner: e.owner, echo: false });
        }
        if !p.peer_talked_after {
            return None;
        }
        let held = self.pending.iter().rev().find(|h| Self::received_before(h, p.event.netns, &p.event.endpoints, ts))?;
        let how = if self.peer_sent(&held.event).is_some() { EndedBy::ReceivedFromPeer } else { EndedBy::Received };
        let end = EarlierEnd { how, cause: None, age_ns: ts.saturating_sub(held.event.ts_ns) };
        Some(Earlier { end, owner: held.event.owner, echo: false })
    }

    /// `held` is a received reset on `endpoints` in `netns` that came no later than `ts`.
    fn received_before(held: &Pending, netns: u32, endpoints: &Endpoints, ts: u64) -> bool {
        matches!(held.trigger, Trigger::Received { .. }) && held.event.netns == netns && held.event.endpoints == *endpoints && held.event.ts_ns <= ts
    }

    fn story(&self, p: &Pending, owner: Option<&Task>, peer_sent: Option<SentVerdict>) -> Story {
        let ev = &p.event;
        let h = &ev.history;
        let facts = ev.facts.unwrap_or_default();
        let mut story = Story {
            owner: owner.map(Named::from),
            active_open: self.opened_here(ev),
            peer_closed: facts.peer_closed,
            // From the handshake's end where known: a slow handshake (a first IPv6 neighbour
            // discovery) is no part of the exchange.
            answered_briefly: facts.exchanged && h.established_ns.or(h.opened_ns).is_some_and(|began| ev.ts_ns.saturating_sub(began) <= SHORT_EXCHANGE_NS),
            probed: facts.nothing_exchanged && h.established_ns.is_some_and(|up| ev.ts_ns.saturating_sub(up) <= RACE_ABORT_WINDOW_NS),
            closed_from: h.closed_from,
            socket_kept: facts.kept,
            tuple_reused: h.tuple_reused,
            peer_holds_open: h.peer_holds_open,
            race_sibling: self.race_sibling(ev),
            listener_of_other_family: p.listener_of_other_family,
            ..Story::default()
        };
        if let Trigger::Sent { state: None, .. } = p.trigger {
            story.answers_syn_ack = ev.trigger.is_some_and(|t| t.is_syn_ack()).then_some(match (h.earlier_sk, h.earlier_ended_badly) {
                (None, _) => ConnectEnd::Unknown,
                (Some(_), false) => ConnectEnd::GivenUp,
                (Some(_), true) => ConnectEnd::TimedOut,
            });
        }
        if let Trigger::Sent { state: Some(TcpState::SynSent), .. } = p.trigger {
            story.peer_refused_syn = self.peer_sent(ev).is_some_and(|r| r.answered == Answered::SynOrUnread);
        }
        if let Trigger::TimedOut { state } = p.trigger {
            story.orphan = h.orphan_timed_out;
            let n = h.retransmits.unwrap_or(0);
            if state == Some(TcpState::SynSent) {
                story.syn_retransmits = n;
            } else {
                story.same_segment_retransmits = n;
                story.no_retransmission_timed_out = h.retransmits == Some(0);
                story.timeout = h.timeout;
            }
        }
        if matches!(p.trigger, Trigger::Received { .. }) {
            // Connecting, the other end has no socket yet to be found by: a listener of this
            // host on the address and port says it is here all the same.
            story.peer_local = self.peer_here_sent_nothing(h.peer_local || p.syn_to_listener_here, ev.ts_ns);
            // The kernel side saw this host's stack refuse the SYN, or the other end here abort
            // with SO_LINGER 0 (that RST may not have crossed: past the rate it is counted in
            // the kernel). The abort's RST came first of any that end sent: a RST its stack
            // sent without a socket, which a match by time may find closer, needs the socket
            // gone.
            story.peer_sent_late = p.peer_late;
            story.peer_sent = if h.aborted_here { Some(Cause::AppAbortLinger0) } else { peer_sent.map(|v| v.cause).or(h.refused_here.then_some(Cause::NoListener)) };
            story.peer_after = peer_sent.filter(|_| !h.aborted_here).and_then(|v| v.after);
            // A peer that reset on purpose (a client skipping TIME_WAIT, a race's loser) did
            // so to this end too.
            story.peer_benign = !h.aborted_here && peer_sent.is_some_and(|v| v.benign);
            if matches!(p.trigger, Trigger::Received { state: Some(TcpState::SynSent) }) && story.peer_sent.is_none() {
                // No RST of this 4-tuple's: one this host's stack sent to this end from another
                // address is the refusal, the SYN having been translated there (a listener here
                // on the address dialled, a published port's proxy, makes it no forgery). Where
                // it would be called forged, one sent to this end's port at another address a
                // moment before is taken too: a masquerade translated this end's address (a
                // container reaching another through the host's published port).
                let (laddr, lport) = (ev.endpoints.laddr, ev.endpoints.lport);
                let refusal = self.recent_sent.refusal_to(Some(laddr), lport, ev.ts_ns, PEER_MATCH_NS).or_else(|| {
                    story.peer_local.then(|| self.recent_sent.refusal_to(None, lport, ev.ts_ns, MASQUERADED_MATCH_NS)).flatten()
                });
                if let Some((ends, refusal)) = refusal {
                    story.refused_behind_nat = Some(SocketAddr::new(ends.laddr, ends.lport));
                    story.peer_sent = refusal.verdict.map(|v| v.cause);
                    story.peer_local = false;
                }
            }
            story.peer_here_untraced = self.seen.other_ends_filtered && (h.peer_local || p.syn_to_listener_here) && story.peer_sent.is_none() && story.refused_behind_nat.is_none();
            story.evidence = Some(Evidence::new(h.arrival.as_ref(), p.peer_talked_after));
        }
        story.port_taken_by = p.port_taken.as_ref().map(|(now, _)| Named::from(now));
        story.aborted_on_data = p.aborted_on_data;
        story.timed_out = p.error_after == Some(ETIMEDOUT);
        story.destroyed = p.error_after == Some(ECONNABORTED);
        story.listener_gone = p.listener_gone.map(|(owner, closed)| (Named::from(&owner), ev.ts_ns.saturating_sub(closed)));
        story.listener_waiting = p.listener_closed_with.and_then(|key| Some((key.1, self.listener_closes.get(&key)?.1)));
        // The task that ran the call, when it is a process and not the owner: the one that
        // killed someone else's socket.
        story.actor = ev.current.filter(|t| !t.is_kernel_context() && owner.is_none_or(|o| o.pid != t.pid)).map(|t| Named::from(&t));
        story
    }

    /// The RST this host's other end of the connection sent that reached `ev`'s end first, just
    /// before or just after `ev`. A RST answering a segment (with no socket, or a listener's,
    /// TIME_WAIT's or a full socket's refusal) is traced in the softirq that received it, before
    /// it is transmitted: one traced after `ev` cannot be what reset it (it answered this end's
    /// data after this end was already reset: by that end's abort it crossed, or by RSTs forged
    /// to both ends). An active reset is traced once transmitted.
    fn peer_sent(&self, ev: &KernelEvent) -> Option<&SentRecord> {
        let ends = ev.endpoints.reversed();
        let Some(nearest) = self.recent_sent.near(&ends, ev.ts_ns, PEER_MATCH_NS, |r| !(r.answered.traced_before_sent() && r.ts > ev.ts_ns)) else {
            return self.recent_sent.near(&ends, ev.ts_ns, PATH_DELAY_NS, |r| !r.matched && r.ts <= ev.ts_ns);
        };
        if nearest.answered.traced_before_sent() {
            // An active reset traced no later than that answer went out before it (one is traced
            // once sent, the other before): over the same path it came first.
            let ts = nearest.ts;
            if let Some(first) = self.recent_sent.near(&ends, ts, CROSSED_NS, |r| r.answered == Answered::Nothing && r.ts <= ts) {
                return Some(first);
            }
        }
        if nearest.answered == Answered::Segment {
            // A listener's (or no socket's) answer just after the connection's own socket
            // answered the peer's data (data after close): the peer's segments in flight met
            // the first, which reached the peer before this echo of it.
            let ts = nearest.ts;
            if let Some(first) = self.recent_sent.near(&ends, ts, ECHO_NS, |r| r.answered == Answered::SegmentByItsSocket && r.ts < ts && !r.matched) {
                return Some(first);
            }
        }
        Some(nearest)
    }

    /// The reset this host sent on the connection that `p`, a held RST of no connection's socket
    /// (none, or a listener's), answered the peer's segment of (no SYN: a new connection echoes
    /// nothing) within [`ECHO_NS`] after it. An active reset is traced once it is sent, which
    /// over loopback or veth includes the peer's whole handling of it: it may come up to
    /// [`SAME_CALL_NS`] after its echo.
    fn echoed_here(&self, p: &Pending) -> Option<&SentRecord> {
        if !Self::answers_without_its_socket(p) {
            return None;
        }
        let ts = p.event.ts_ns;
        // An active reset is traced once sent, so possibly after its echo; a RST the
        // connection's own socket sent for the peer's data (after close) is traced before.
        self.recent_sent.near(&p.event.endpoints, ts, ECHO_NS, |r| match r.answered {
            Answered::Nothing => r.ts <= ts.saturating_add(SAME_CALL_NS),
            Answered::SegmentByItsSocket => r.ts < ts,
            _ => false,
        })
    }

    /// How the connection of `p`, a RST of no connection's socket answering its peer's segment,
    /// ended here before, if a reset or a timeout ended it lately and it is still the last on
    /// its 4-tuple. The kernel side says whether a reset or an error ended the 4-tuple's last
    /// connection (a later one that ended well did not), and names its socket (a socket's memory
    /// may serve a later one on the same 4-tuple: that alone proves nothing) and owner.
    /// A RST received a moment before (the peer talking on after it: `note_peer_talking`) is
    /// taken where the kernel side's note of the 4-tuple is gone: no connection can have come
    /// and gone on the 4-tuple in that moment.
    fn ended_before(&self, p: &Pending) -> Option<Ended> {
        if !Self::answers_without_its_socket(p) {
            return None;
        }
        let h = &p.event.history;
        let e = self.ended_here.latest_before(p.event.netns, &p.event.endpoints, p.event.ts_ns)?;
        let Some(last_sk) = h.earlier_sk else {
            return (p.peer_talked_after && matches!(e.how, EndedBy::Received | EndedBy::ReceivedFromPeer)).then_some(*e);
        };
        let same_socket = e.sk == 0 || last_sk == e.sk;
        let same_owner = h.earlier_owner.is_none_or(|last| e.owner.is_none_or(|o| o.pid == last.pid) || e.noted_owner == Some(last.pid));
        (h.earlier_ended_badly && same_socket && same_owner).then_some(*e)
    }

    /// A sent RST of no connection's socket (none, or a listener's) for a segment of a connection
    /// under way (no SYN: a new connection follows on nothing).
    fn answers_without_its_socket(p: &Pending) -> bool {
        matches!(p.trigger, Trigger::Sent { state: None | Some(TcpState::Listen), trigger_syn: Some(false), .. })
    }

    /// Whether the reset or timeout of `trigger` ended its connection's full socket here, and
    /// how: a RST sent with it (in CLOSE once an abort closed it), one it received while up, a
    /// timeout after the handshake. Not a listener's, a connecting socket's (it goes on
    /// connecting), a TIME_WAIT remnant's or a request socket's: the kernel side notes the 4-tuples
    /// of full sockets only.
    fn ended_by(trigger: &Trigger) -> Option<EndedBy> {
        match *trigger {
            Trigger::Sent { state: Some(s), .. } if s.is_synchronized() && s != TcpState::TimeWait || s == TcpState::Close => Some(EndedBy::Sent),
            Trigger::Received { state: Some(s) } if s.is_synchronized() => Some(EndedBy::Received),
            Trigger::TimedOut { state: Some(s) } if s != TcpState::SynSent => Some(EndedBy::TimedOut),
            _ => None,
        }
    }

    /// The owner opened another connection to the same peer (same address, or the same port
    /// over the other IP family: happy eyeballs) at about the same time, before that one was
    /// up, and that one is still up: the kernel side names it with an aborted connection this
    /// host opened. (One opened once the other was up is no race: a health check's probe after
    /// a request's connection to the same server.)
    fn race_sibling(&self, ev: &KernelEvent) -> bool {
        let h = &ev.history;
        let (Some(opened), Some(established), Some(s)) = (h.opened_ns, h.established_ns, h.sibling) else { return false };
        // The same peer: the same address (two ports, as SMB's 445 and 139, or one), or the
        // other family's address on the same port (happy eyeballs).
        let same_peer = (s.family == ev.endpoints.family && s.raddr == ev.endpoints.raddr) || (s.family != ev.endpoints.family && s.rport == ev.endpoints.rport);
        s.open
            && same_peer
            && s.opened_ns.abs_diff(opened) < RACE_OPEN_WINDOW_NS
            && opened <= s.established_ns
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rsttrace_common::EventKind;

    use super::*;
    use crate::event::{Family, History, Segment, Sibling, SockFacts};
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

    /// A recorded event: `ts` in ms, on socket `sk`, run by `current`, with the socket's owner
    /// as the kernel side's record names it.
    fn ev(ts_ms: u64, sk: u64, payload: Payload, current: Task, owner: Option<Task>) -> KernelEvent {
        let kind = match payload {
            Payload::SendReset { .. } => EventKind::SendReset,
            Payload::ReceiveReset { .. } => EventKind::ReceiveReset,
            Payload::SetState { .. } => EventKind::SetState,
            Payload::ErrorReport { .. } => EventKind::ErrorReport,
        };
        KernelEvent {
            kind,
            ts_ns: ts_ms * 1_000_000,
            sk,
            skb: 0,
            trigger: None,
            endpoints: ends(5000),
            payload,
            current: Some(current),
            current_process: None,
            owner,
            netns: NETNS,
            cgroup: 0,
            inode: 0,
            facts: None,
            history: History::default(),
        }
    }

    fn sent(ts: u64, state: Option<TcpState>, reason: Option<&'static str>, current: Task, owner: Option<Task>) -> KernelEvent {
        let mut e = ev(ts, SK, Payload::SendReset { state, reason: reason.map(|r| (0, r)) }, current, owner);
        e.facts = Some(SockFacts::default());
        e
    }

    fn received(ts: u64, state: TcpState, owner: Option<Task>) -> KernelEvent {
        ev(ts, SK, Payload::ReceiveReset { state: Some(state) }, task(0, "swapper/0"), owner)
    }

    fn listener(ts: u64, old: TcpState, new: TcpState, owner: &Task, laddr: &str) -> KernelEvent {
        let mut e = ev(ts, SK + 0x100, Payload::SetState { old: Some(old), new: Some(new) }, *owner, Some(*owner));
        e.endpoints = Endpoints { laddr: laddr.parse().unwrap(), lport: 80, raddr: "0.0.0.0".parse().unwrap(), rport: 0, family: Family::Ipv4 };
        e
    }

    fn run(events: Vec<KernelEvent>) -> Vec<Report> {
        let mut j = Judge::new(Visibility::ALL);
        events.into_iter().for_each(|e| j.observe(e));
        j.flush(u64::MAX)
    }

    #[test]
    fn linger0_close_in_a_forked_child_names_the_child_and_a_disconnect_is_told_apart() {
        let (parent, child) = (task(100, "server"), task(101, "worker"));
        let r = &run(vec![sent(10, Some(Close), Some("TCP_STATE"), child, Some(parent))])[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid, r.attribution), (Cause::AppAbortLinger0, 101, Attribution::CurrentTask));
        // connect(AF_UNSPEC): close() did not shut the socket.
        let mut disconnect = sent(10, Some(Close), Some("TCP_STATE"), parent, Some(parent));
        disconnect.facts = Some(SockFacts { kept: true, ..SockFacts::default() });
        assert_eq!(run(vec![disconnect])[0].verdict.cause, Cause::AppDisconnect);
    }

    /// A connection `app` opened, aborted 100 ms after `sibling`'s handshake.
    fn aborted_beside(sibling: Option<Sibling>) -> Report {
        let app = task(500, "app");
        let mut abort = sent(106, Some(Close), Some("TCP_STATE"), app, Some(app));
        abort.history = History { opened_ns: Some(1_000_000), established_ns: Some(2_000_000), sibling, ..History::default() };
        run(vec![abort]).remove(0)
    }

    #[test]
    fn a_race_loser_needs_a_live_sibling_to_the_same_peer_or_over_the_other_family() {
        // The aborted connection went to 10.0.0.2 port 80.
        let sibling = |raddr: &str, rport, family, open| Sibling { family, raddr: raddr.parse().unwrap(), rport, opened_ns: 1_500_000, established_ns: 6_000_000, open };
        let same_host = aborted_beside(Some(sibling("10.0.0.2", 80, Family::Ipv4, true)));
        assert_eq!((same_host.verdict.cause, same_host.verdict.benign), (Cause::ConnectRaceLoser, true));
        // Two ports of the same host (SMB's 445 and 139).
        assert_eq!(aborted_beside(Some(sibling("10.0.0.2", 445, Family::Ipv4, true))).verdict.cause, Cause::ConnectRaceLoser);
        // Happy eyeballs: the same service over IPv6.
        assert_eq!(aborted_beside(Some(sibling("fd00::2", 80, Family::Ipv6, true))).verdict.cause, Cause::ConnectRaceLoser);
        // A proxy talking to another host on the same port, another service over the other
        // family, a sibling already gone, none at all: real aborts.
        for other in [
            Some(sibling("10.0.0.3", 80, Family::Ipv4, true)),
            Some(sibling("fd00::2", 443, Family::Ipv6, true)),
            Some(sibling("10.0.0.2", 80, Family::Ipv4, false)),
            None,
        ] {
            let r = aborted_beside(other);
            assert_eq!((r.verdict.cause, r.verdict.benign), (Cause::AppAbortLinger0, false), "{other:?}");
        }
        // Opened (at 1 ms) once the other was up is no race: a health check's connect probe
        // after a request's connection to the same server.
        let up_before = Some(Sibling { opened_ns: 200_000, established_ns: 900_000, ..sibling("10.0.0.2", 81, Family::Ipv4, true) });
        assert_eq!(aborted_beside(up_before).verdict.cause, Cause::AppAbortLinger0);
    }

    #[test]
    fn a_received_reset_that_its_socket_answers_with_a_rst_is_the_stacks_abort_not_a_phantom() {
        let server = task(80, "server");
        for reason in [Some("TCP_ABORT_ON_DATA"), None] {
            let events = vec![received(10, FinWait2, Some(server)), sent(10, Some(Close), reason, task(9, "client"), Some(server))];
            let reports = run(events);
            assert_eq!(reports.len(), 1, "{reason:?}: {reports:?}");
            assert_eq!((reports[0].direction, reports[0].verdict.cause), (Some(Direction::Sent), Cause::DataAfterClose));
            assert!(reports[0].verdict.why.contains("shut the socket down"), "{}", reports[0].verdict.why);
        }
        // A RST 60 ms later is no longer the same call's.
        let reports = run(vec![received(10, Established, Some(server)), sent(70, Some(Close), Some("TCP_ABORT_ON_DATA"), task(9, "c"), None)]);
        assert_eq!(reports.len(), 2, "{reports:?}");
    }

    fn queued_child(ts: u64, closer: Task, closed_from: TcpState) -> KernelEvent {
        let mut e = sent(ts, Some(Close), Some("TCP_STATE"), closer, None);
        e.facts = Some(SockFacts { orphan: true, ..SockFacts::default() });
        e.history.closed_from = Some(closed_from);
        e
    }

    /// The socket files a test's host holds: inode to holder.
    struct Files(Vec<(u64, Task)>);

    impl SocketFiles for Files {
        fn holder(&mut self, inode: u64) -> Option<Task> {
            self.0.iter().find(|(i, _)| *i == inode).map(|(_, t)| *t)
        }

        fn released_by(&mut self, _inode: u64) -> Option<Task> {
            None
        }

        /// Every process but the holders has exited.
        fn gone(&mut self, pid: u32) -> bool {
            !self.0.iter().any(|(_, t)| t.pid == pid)
        }
    }

    #[test]
    fn a_sockets_file_names_its_holder_before_the_listener_that_accepted_it() {
        let (server, child) = (task(300, "nginx"), task(301, "nginx"));
        let mut reset = received(10, Established, None);
        reset.endpoints = Endpoints { lport: 80, rport: 5000, ..ends(0) };
        let owner = |r: &Report| (r.owner.map(|o| o.pid), r.attribution);
        let held = |inode: u64| Files(vec![(inode, child)]);
        for seen_starting in [false, true] {
            let judge = || {
                let mut j = Judge::new(Visibility::ALL);
                if seen_starting {
                    j.observe(listener(1, Close, Listen, &server, "10.0.0.1"));
                } else {
                    j.listening_before(NETNS, "10.0.0.1".parse().unwrap(), 80, server);
                }
                j
            };
            // The kernel side read the socket's file: its holder (a forking server's child).
            reset.inode = 4242;
            let mut j = judge();
            j.observe(reset.clone());
            assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut held(4242)).remove(0)), (Some(301), Attribution::SocketFile));
            // Nobody found holding it: the listener's owner.
            let mut j = judge();
            j.observe(reset.clone());
            assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut held(7)).remove(0)), (Some(300), Attribution::SocketOwner));
            // No file read: the listener's owner at once.
            reset.inode = 0;
            let mut j = judge();
            j.observe(reset.clone());
            assert_eq!(owner(&j.flush(u64::MAX).remove(0)), (Some(300), Attribution::SocketOwner));
        }
    }

    #[test]
    fn a_timers_reset_names_the_holder_of_a_socket_whose_owner_handed_it_on_and_exited() {
        let (connector, holder) = (task(400, "launcher"), task(401, "worker"));
        let mut reset = sent(10, Some(Established), Some("TCP_KEEPALIVE_TIMEOUT"), task(0, "swapper/1"), Some(connector));
        reset.inode = 4242;
        let owner = |r: &Report| (r.owner.map(|o| o.pid), r.attribution);
        // The connector exited (only the worker lives): the worker holds the file.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(reset.clone());
        assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut Files(vec![(4242, holder)])).remove(0)), (Some(401), Attribution::SocketFile));
        // The connector lives (it shares the file with a child, say): it stays the owner.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(reset.clone());
        assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut Files(vec![(4242, holder), (1, connector)])).remove(0)), (Some(400), Attribution::SocketOwner));
        // Gone, and nobody holds the file any more: the owner on record.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(reset);
        assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut Files(vec![])).remove(0)), (Some(400), Attribution::SocketOwner));
    }

    /// A daemon listened, forked and exited, its child serving on: the child's full accept queue
    /// refuses a handshake, and the child holds the listener's file.
    #[test]
    fn a_full_accept_queue_names_the_holder_of_a_listener_whose_creator_exited() {
        let (daemon, child) = (task(500, "daemon"), task(501, "child"));
        let mut refusal = sent(10, Some(Listen), Some("INVALID_SYN"), task(0, "swapper/0"), Some(daemon));
        refusal.trigger = Some(Segment { tcp_flags: 0x10, saddr: refusal.endpoints.raddr, sport: refusal.endpoints.rport, daddr: refusal.endpoints.laddr });
        refusal.inode = 4242;
        let judged = |files: Vec<(u64, Task)>| {
            let mut j = Judge::new(Visibility::ALL);
            j.observe(refusal.clone());
            let r = j.flush_at_most(u64::MAX, 10, &mut Files(files)).remove(0);
            (r.verdict.cause, r.owner.map(|o| o.pid), r.attribution)
        };
        assert_eq!(judged(vec![(4242, child)]), (Cause::ListenOverflow, Some(501), Attribution::SocketFile));
        // The creator lives on, sharing the file: it stays the owner.
        assert_eq!(judged(vec![(4242, child), (1, daemon)]), (Cause::ListenOverflow, Some(500), Attribution::SocketOwner));
    }

    #[test]
    fn a_timers_reset_names_the_process_that_let_go_of_the_socket_last() {
        /// Every file released, by the process given.
        struct Released(Task);
        impl SocketFiles for Released {
            fn holder(&mut self, _inode: u64) -> Option<Task> {
                None
            }
            fn released_by(&mut self, _inode: u64) -> Option<Task> {
                Some(self.0)
            }
            fn gone(&mut self, _pid: u32) -> bool {
                false
            }
        }
        let (launcher, worker) = (task(400, "launcher"), task(401, "worker"));
        let mut reset = sent(10, Some(Established), Some("TCP_KEEPALIVE_TIMEOUT"), task(0, "swapper/1"), Some(launcher));
        reset.inode = 4242;
        let owner = |r: &Report| (r.owner.map(|o| o.pid), r.attribution);
        // The launcher passed the socket on, closed its copy and lives on; the worker, told of
        // the timeout, closed it.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(reset.clone());
        assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut Released(worker)).remove(0)), (Some(401), Attribution::SocketFile));
        // The owner on record closed it last itself: its own.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(reset);
        assert_eq!(owner(&j.flush_at_most(u64::MAX, 10, &mut Released(launcher)).remove(0)), (Some(400), Attribution::SocketOwner));
    }

    #[test]
    fn closing_a_listener_resets_its_queue_as_listener_closed_counting_the_waiting() {
        let nginx = task(812, "nginx");
        let events = vec![
            listener(1, Close, Listen, &nginx, "0.0.0.0"),
            listener(10, Listen, Close, &nginx, "0.0.0.0"),
            queued_child(10, nginx, Established),
            queued_child(10, nginx, CloseWait),
        ];
        let reports = run(events);
        assert_eq!(reports.len(), 2);
        for r in &reports {
            assert_eq!((r.verdict.cause, r.owner.unwrap().pid), (Cause::ListenerClosed, 812));
            assert!(r.verdict.why.contains("with 2 connections waiting"), "{}", r.verdict.why);
        }
        // An orphan a timer or close() resets from a closing state is no listener's.
        let r = &run(vec![queued_child(10, nginx, FinWait2)])[0];
        assert_ne!(r.verdict.cause, Cause::ListenerClosed);
    }

    #[test]
    fn a_reuseport_member_closing_resets_its_own_queue_while_the_newer_member_listens_on() {
        let (old, new) = (task(900, "server"), task(901, "server"));
        let mut second = listener(2, Close, Listen, &new, "0.0.0.0");
        second.sk += 1;
        let mut j = Judge::new(Visibility::ALL);
        for e in [listener(1, Close, Listen, &old, "0.0.0.0"), second, listener(10, Listen, Close, &old, "0.0.0.0"), queued_child(10, old, Established)] {
            j.observe(e);
        }
        let r = &j.flush(u64::MAX)[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid), (Cause::ListenerClosed, 900), "{}", r.verdict.why);
        assert!(!r.verdict.why.contains("901"), "{}", r.verdict.why);
        // The newer member still serves the port.
        assert_eq!(j.serving(NETNS, &Endpoints { lport: 80, ..ends(0) }).map(|(o, _)| o.pid), Some(901));
    }

    #[test]
    fn a_connection_opened_here_before_the_trace_is_a_clients() {
        let curl = task(700, "curl");
        // SO_LINGER 0 once the server had finished: a client skipping TIME_WAIT, if it is one.
        let abort = || {
            let mut e = sent(10, Some(Close), Some("TCP_STATE"), curl, Some(curl));
            e.facts = Some(SockFacts { peer_closed: true, linger0: true, ..SockFacts::default() });
            e
        };
        let judged = |opened_before: bool| {
            let mut j = Judge::new(Visibility::ALL);
            let e = abort();
            if opened_before {
                j.opened_before(e.netns, e.endpoints);
            }
            j.observe(e);
            j.flush(u64::MAX).remove(0)
        };
        let r = judged(true);
        assert_eq!((r.verdict.cause, r.verdict.benign, r.active_open), (Cause::AppAbortLinger0, true, true), "{}", r.verdict.why);
        let r = judged(false);
        assert_eq!((r.verdict.benign, r.active_open), (false, false), "{}", r.verdict.why);
    }

    #[test]
    fn a_listener_another_process_closes_stays_its_owners_and_names_the_closer() {
        let (server, ss) = (task(500, "python3"), task(991, "ss"));
        let mut destroyed = listener(10, Listen, Close, &server, "0.0.0.0");
        destroyed.current = Some(ss);
        // The waiting connection's local end is the listener's.
        let mut waiting = queued_child(10, ss, Established);
        waiting.endpoints.lport = 80;
        let reports = run(vec![listener(1, Close, Listen, &server, "0.0.0.0"), destroyed, waiting]);
        let r = &reports[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid, r.attribution), (Cause::ListenerClosed, 500, Attribution::SocketOwner));
        assert!(r.verdict.why.starts_with("ss[991] closed the listening socket of python3[500] on port 80 with 1 connection waiting"), "{}", r.verdict.why);
    }

    /// A prefork worker whose exit closes the listener its master made and let go of: the
    /// worker held it last, and its exit is what reset the queue.
    #[test]
    fn a_listener_closed_by_the_exit_of_the_process_holding_it_last_is_that_processs() {
        let (master, worker) = (task(500, "python3"), task(502, "worker"));
        let mut closed = listener(10, Listen, Close, &master, "0.0.0.0");
        closed.current = Some(worker);
        let mut waiting = queued_child(10, worker, Established);
        waiting.endpoints.lport = 80;
        waiting.facts = Some(SockFacts { orphan: true, closer_ended: Some(crate::event::Ending::from_exit_code(0)), ..SockFacts::default() });
        let reports = run(vec![listener(1, Close, Listen, &master, "0.0.0.0"), closed, waiting]);
        let r = &reports[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid), (Cause::ListenerClosed, 502), "{r:?}");
        assert!(r.verdict.why.starts_with("worker[502] exited (status 0) with its listening socket on port 80 open"), "{}", r.verdict.why);
    }

    #[test]
    fn the_error_after_a_reset_names_it_and_is_no_report_of_its_own() {
        let curl = task(200, "curl");
        let keepalive = vec![sent(10, Some(Established), None, task(0, "swapper/1"), Some(curl)), ev(10, 0, Payload::ErrorReport { error: 110 }, task(0, "swapper/1"), Some(curl))];
        let reports = run(keepalive);
        assert_eq!(reports.len(), 1, "the timeout is the RST's echo: {reports:?}");
        assert_eq!((reports[0].verdict.cause, reports[0].owner.unwrap().pid, reports[0].attribution), (Cause::KeepaliveTimeout, 200, Attribution::SocketOwner));
        let destroyed = vec![sent(10, Some(Established), None, task(991, "ss"), Some(curl)), ev(10, 0, Payload::ErrorReport { error: 103 }, task(991, "ss"), None)];
        let reports = run(destroyed);
        assert_eq!(reports.len(), 1);
        assert!(reports[0].verdict.why.starts_with("ss[991] destroyed the socket of curl[200]"), "{}", reports[0].verdict.why);
    }

    #[test]
    fn a_timeout_is_an_abort_in_the_state_it_died_in_unless_its_socket_had_reset() {
        let app = task(400, "app");
        let mut timeout = ev(900, 0, Payload::ErrorReport { error: 110 }, task(0, "swapper/0"), Some(app));
        timeout.history = History { closed_from: Some(Established), retransmits: Some(4), ..History::default() };
        let r = &run(vec![timeout.clone()])[0];
        assert_eq!((r.kind, r.verdict.cause, r.verdict.origin), (ReportType::Abort, Cause::RetransmitTimeout, Origin::Network));
        assert_eq!((r.state, r.owner.unwrap().pid), ("ESTABLISHED", 400));
        assert!(r.verdict.why.contains("through 4 retransmission timeouts"), "{}", r.verdict.why);
        timeout.history = History { closed_from: Some(SynSent), retransmits: Some(1), ..History::default() };
        assert_eq!(run(vec![timeout.clone()])[0].verdict.cause, Cause::SynTimeout);
        // A connecting socket that refused a bad answer with a RST and then gave up: that story
        // was told by the RST.
        timeout.history.resets_sent = 1;
        assert!(run(vec![timeout]).is_empty());
    }

    #[test]
    fn a_thread_that_acted_is_named_under_its_process_as_the_kernel_had_it() {
        let worker = Task { pid: 100, tid: 101, comm: "rstworker".into(), cgroup: 0 };
        let mut close = sent(10, Some(Close), Some("TCP_ABORT_ON_CLOSE"), worker, None);
        close.current_process = Some("server".into());
        let r = &run(vec![close])[0];
        let owner = r.owner.unwrap();
        assert_eq!((owner.pid, owner.tid, owner.comm.as_str(), r.thread.map(|t| t.as_str().to_string())), (100, 101, "server", Some("rstworker".into())));
        assert!(r.verdict.why.starts_with("server[100]"), "{}", r.verdict.why);
    }

    #[test]
    fn an_orphans_timeout_is_an_abort_in_the_state_it_died_in_that_names_the_closer() {
        let server = task(500, "nginx");
        let mut change = ev(900, SK, Payload::SetState { old: Some(FinWait1), new: Some(Close) }, task(0, "swapper/1"), Some(server));
        change.history = History { closed_from: Some(FinWait1), retransmits: Some(3), orphan_timed_out: true, ..History::default() };
        let r = &run(vec![change.clone()])[0];
        assert_eq!((r.kind, r.verdict.cause, r.verdict.origin), (ReportType::Abort, Cause::RetransmitTimeout, Origin::Network));
        assert_eq!((r.state, r.owner.unwrap().pid, r.attribution), ("FIN_WAIT1", 500, Attribution::SocketOwner));
        assert!(r.verdict.why.contains("nginx[500] closed the socket") && r.verdict.why.contains("through 3 retransmission timeouts"), "{}", r.verdict.why);
        // Kernels before tcp_done_with_error() report the error first, without the socket's
        // record: one abort, this one.
        let mut error = ev(899, 0, Payload::ErrorReport { error: 110 }, task(0, "swapper/1"), None);
        error.endpoints = change.endpoints;
        let reports = run(vec![error, change.clone()]);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!((reports[0].state, reports[0].owner.unwrap().pid), ("FIN_WAIT1", 500));
        // Any other change to CLOSE is no report.
        change.history.orphan_timed_out = false;
        assert!(run(vec![change]).is_empty());
    }

    #[test]
    fn a_syn_to_a_listener_of_this_host_answered_by_a_rst_no_stack_here_sent_is_injected() {
        let (client, server) = (task(1, "curl"), task(2, "nginx"));
        // ends(): 10.0.0.1 connecting to 10.0.0.2:80. `local`: (namespace, address) pairs this
        // host holds; `listening`: the address a listener on port 80 in NETNS is bound to.
        let judge = |local: &[(u32, &str)], listening: Option<&str>, peer_sent: bool| {
            let mut j = Judge::new(Visibility::ALL);
            j.local_addresses = LocalAddresses::of(&local.iter().map(|(n, a)| (*n, a.parse().unwrap())).collect::<Vec<_>>());
            if let Some(bound) = listening {
                j.observe(listener(10, Close, Listen, &server, bound));
            }
            let rst = received(50, SynSent, Some(client));
            if peer_sent {
                let mut no_listener = sent(49, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
                no_listener.endpoints = rst.endpoints.reversed();
                no_listener.trigger = Some(crate::event::Segment { tcp_flags: TCP_FLAG_SYN, saddr: rst.endpoints.laddr, sport: rst.endpoints.lport, daddr: rst.endpoints.raddr });
                j.observe(no_listener);
            }
            j.observe(rst);
            let reports = j.flush(u64::MAX);
            let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
            (r.verdict.cause, r.verdict.origin)
        };
        let (refused, injected) = ((Cause::Refused, Origin::Peer), (Cause::Injected, Origin::Network));
        let any = Some("0.0.0.0");
        assert_eq!(judge(&[(NETNS, "10.0.0.2")], any, false), injected);
        assert_eq!(judge(&[], Some("10.0.0.2"), false), injected, "a listener bound to the address is proof enough");
        assert_eq!(judge(&[(NETNS, "10.0.0.2")], any, true), refused, "its stack sent the RST");
        assert_eq!(judge(&[(NETNS, "10.0.0.2")], None, false), refused, "nothing listens there: a NAT or IPVS address");
        assert_eq!(judge(&[(NETNS + 1, "10.0.0.2")], any, false), refused, "the listener's namespace does not hold the address");
        assert_eq!(judge(&[(NETNS, "10.0.0.1")], any, false), refused, "the server is elsewhere");
        assert_eq!(judge(&[], Some("10.0.0.3"), false), refused, "a listener on another address");
    }

    #[test]
    fn a_refusal_whose_rst_the_kernel_side_saw_sent_here_is_no_forgery() {
        let (client, server) = (task(1, "curl"), task(2, "nginx"));
        let mut j = Judge::new(Visibility::ALL);
        // A listener of this host serves the address (another namespace sharing it), and the RST
        // this host's stack sent was counted in the kernel, so it never reached the agent.
        j.observe(listener(10, Close, Listen, &server, &ends(5000).reversed().laddr.to_string()));
        let mut rst = received(50, SynSent, Some(client));
        rst.history.refused_here = true;
        j.observe(rst);
        let r = &j.flush(u64::MAX)[0];
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::Refused, Some(Cause::NoListener)));
    }

    #[test]
    fn a_reset_whose_abort_the_kernel_side_saw_sent_here_is_no_forgery() {
        let client = task(1, "curl");
        // The other end is a socket of this host, and no RST it sent reached the agent: forged,
        // unless the kernel side noted that end's abort with SO_LINGER 0 (its RST counted there).
        let verdict = |aborted_here| {
            let mut j = Judge::new(Visibility::ALL);
            let mut rst = received(50, Established, Some(client));
            rst.history.peer_local = true;
            rst.history.aborted_here = aborted_here;
            j.observe(rst);
            let r = &j.flush(u64::MAX)[0];
            (r.verdict.cause, r.peer_cause)
        };
        assert_eq!(verdict(false), (Cause::Injected, None));
        assert_eq!(verdict(true), (Cause::PeerReset, Some(Cause::AppAbortLinger0)));
    }

    #[test]
    fn a_genuine_rst_delayed_on_the_path_is_the_peers_and_taken_once() {
        let (client, server) = (task(1, "client"), task(2, "server"));
        let mut abort = sent(10, Some(Close), Some("TCP_STATE"), server, Some(server));
        (abort.endpoints, abort.sk) = (ends(5000).reversed(), SK + 1);
        abort.facts = Some(SockFacts { linger0: true, ..SockFacts::default() });
        // It arrives 300 ms later; then a RST on a new connection of the same 4-tuple that the
        // peer never sent.
        let mut late = received(310, Established, Some(client));
        (late.endpoints, late.history.peer_local) = (ends(5000), true);
        let mut forged = late.clone();
        (forged.ts_ns, forged.sk) = (700_000_000, SK + 2);
        let reports = run(vec![abort, late, forged]);
        let received: Vec<_> = reports.iter().filter(|r| r.direction == Some(Direction::Received)).map(|r| (r.verdict.cause, r.peer_cause)).collect();
        assert_eq!(received, [(Cause::PeerReset, Some(Cause::AppAbortLinger0)), (Cause::Injected, None)]);
    }

    #[test]
    fn a_segment_the_peer_sent_before_its_rst_arriving_after_it_is_no_sign_of_forgery() {
        let (client, server) = (task(1, "client"), task(2, "server"));
        let mut abort = sent(10, Some(Close), Some("TCP_STATE"), server, Some(server));
        (abort.endpoints, abort.sk) = (ends(5000).reversed(), SK + 1);
        abort.facts = Some(SockFacts { linger0: true, ..SockFacts::default() });
        let mut rst = received(10, Established, Some(client));
        (rst.endpoints, rst.history.peer_local) = (ends(5000), true);
        // The server's data, sent before its RST, held up on the way: it finds no socket here.
        let mut answer = sent(350, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        (answer.sk, answer.facts, answer.endpoints) = (0, None, ends(5000));
        answer.trigger = Some(Segment { tcp_flags: 0x18, saddr: answer.endpoints.raddr, sport: 80, daddr: answer.endpoints.laddr });
        (answer.history.earlier_sk, answer.history.earlier_ended_badly) = (Some(SK), true);
        let reports = run(vec![abort, rst, answer]);
        let r = reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).unwrap();
        assert!(r.verdict.benign, "{}", r.verdict.why);
        assert!(r.verdict.why.contains("the peer's stack sent that RST, and this segment, sent before it, came after it"), "{}", r.verdict.why);
        assert!(!r.verdict.why.contains("forged"), "{}", r.verdict.why);
    }

    #[test]
    fn a_syn_no_socket_took_names_no_listener_and_says_when_the_ports_is_of_the_other_family() {
        let server = task(3, "python3");
        let syn = |laddr: &str| {
            let mut e = sent(20, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
            (e.sk, e.facts) = (0, None);
            e.endpoints = Endpoints { laddr: laddr.parse().unwrap(), lport: 80, rport: 40000, ..ends(80) };
            e.endpoints.family = if e.endpoints.laddr.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 };
            e.trigger = Some(Segment { tcp_flags: 0x02, saddr: e.endpoints.raddr, sport: 40000, daddr: e.endpoints.laddr });
            e
        };
        let judged = |listening_on: &str, to: &str| {
            let r = &run(vec![listener(1, Close, Listen, &server, listening_on), syn(to)])[0];
            (r.verdict.cause, r.owner.map(|o| o.pid), r.verdict.why.to_string())
        };
        let (cause, owner, why) = judged("::", "10.0.0.1");
        assert_eq!((cause, owner), (Cause::NoListener, None));
        assert!(why.contains("on [::], takes IPv6 only"), "{why}");
        let (cause, owner, why) = judged("0.0.0.0", "fd00::1");
        assert_eq!((cause, owner), (Cause::NoListener, None));
        assert!(why.contains("on 0.0.0.0, takes IPv4 only"), "{why}");
        assert_eq!(judged("10.0.0.9", "10.0.0.1"), (Cause::NoListener, None, "SYN to a port nobody listens on".to_string()));
    }

    #[test]
    fn a_refusal_the_kernel_side_counted_is_judged_as_one_alone_would_be() {
        let server = task(2, "nginx");
        let refused_by = ends(5000).reversed().laddr;
        let to = |raddr| Endpoints { raddr, ..ends(5000) };
        let cause = |j: &Judge, answered_here| j.refusal_verdict(&to(refused_by), answered_here, 50).cause;
        let mut j = Judge::new(Visibility::ALL);
        assert_eq!(cause(&j, None), Cause::Refused);
        // A listener of this host is bound to the address, and no stack here sent a RST.
        j.observe(listener(10, Close, Listen, &server, &refused_by.to_string()));
        assert_eq!(cause(&j, None), Cause::Injected);
        // This host's stack did send it (a listener in another namespace on a shared address).
        assert_eq!(cause(&j, Some(Cause::NoListener)), Cause::Refused);
        // Events were lost around then: the RST sent here may be among them.
        j.note_loss(60);
        assert_eq!(cause(&j, None), Cause::Refused);
        // Where only some of the RSTs sent cross, nothing is proven by their absence.
        let mut partial = Judge::new(Visibility { every_sent_reset: false, other_ends_filtered: false });
        partial.observe(listener(10, Close, Listen, &server, &refused_by.to_string()));
        assert_eq!(cause(&partial, None), Cause::Refused);
    }

    #[test]
    fn a_received_reset_is_injected_only_when_an_open_local_peer_sent_none() {
        let client = task(1, "client");
        let mut rst = received(50, Established, Some(client));
        rst.history.peer_local = true;
        let reports = run(vec![rst.clone()]);
        assert_eq!(reports[0].verdict.cause, Cause::Injected);
        assert_eq!(reports[0].owner.unwrap().pid, 1, "never the task the softirq ran in");
        // Events were lost around then: the peer's RST may be among them.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(rst.clone());
        j.note_loss(60_000_000);
        assert_eq!(j.flush(u64::MAX)[0].verdict.cause, Cause::PeerReset);
        // Traced while the programs were being attached: the peer's RST may have come before
        // its hook did.
        let mut j = Judge::new(Visibility::ALL);
        j.attached(60_000_000);
        j.observe(rst.clone());
        assert_eq!(j.flush(u64::MAX)[0].verdict.cause, Cause::PeerReset);
        // The peer's stack did send it (traced after it was transmitted).
        let mut peer = sent(50, Some(Close), Some("TCP_ABORT_ON_CLOSE"), task(7, "server"), None);
        peer.sk = SK + 1;
        peer.endpoints = ends(5000).reversed();
        let reports = run(vec![rst, peer]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::AppAbortUnread)));
    }

    #[test]
    fn a_local_peer_whose_rst_may_have_been_forgotten_to_make_room_is_not_called_a_forger() {
        let mut j = Judge::new(Visibility::ALL);
        j.recent_sent = RecentSent::new(1);
        // Two resets sent just before on other 4-tuples: the cap of one forgets the first.
        for (at, port) in [(40, 6000), (45, 6001)] {
            let mut other = sent(at, Some(Close), Some("TCP_STATE"), task(7, "server"), None);
            other.endpoints = ends(port).reversed();
            j.observe(other);
        }
        let mut rst = received(50, Established, Some(task(1, "client")));
        rst.history.peer_local = true;
        j.observe(rst);
        let reports = j.flush(u64::MAX);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!(r.verdict.cause, Cause::PeerReset);
    }

    #[test]
    fn a_received_reset_whose_sender_is_not_due_yet_waits_for_it_once() {
        let mut j = Judge::new(Visibility::ALL);
        let mut rst = received(50, Established, Some(task(1, "client")));
        rst.history.peer_local = true;
        // Its peer's RST was traced 30 ms later: longer than a received reset waits at once.
        let mut peer = sent(80, Some(Close), Some("TCP_STATE"), task(7, "server"), Some(task(7, "server")));
        peer.sk = SK + 1;
        peer.endpoints = ends(5000).reversed();
        j.observe(rst);
        j.observe(peer);
        assert!(j.flush(50_000_000 + HOLD_NS).is_empty(), "the received reset waits for its sender");
        assert_eq!(j.deferred_at.len(), 1);
        let reports = j.flush(u64::MAX);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::AppAbortLinger0)));
        assert!(j.deferred_at.is_empty() && j.pending.is_empty());
    }

    #[test]
    fn an_abort_storm_reusing_a_4_tuple_within_the_hold_finds_each_rsts_own_sender() {
        // An abort storm cycles through the ephemeral ports: the same 4-tuple is aborted again
        // 100 ms later, and both aborts are read before the first received RST is judged.
        let mut j = Judge::new(Visibility::ALL);
        for at in [50, 150] {
            let mut rst = received(at, Established, Some(task(1, "client")));
            rst.history.peer_local = true;
            let mut peer = sent(at, Some(Close), Some("TCP_STATE"), task(7, "server"), Some(task(7, "server")));
            peer.sk = SK + 1;
            peer.ts_ns += 5_000; // traced after it was transmitted, after the peer's RST
            peer.endpoints = ends(5000).reversed();
            j.observe(rst);
            j.observe(peer);
        }
        let reports = j.flush(u64::MAX);
        let received: Vec<_> = reports.iter().filter(|r| r.direction == Some(Direction::Received)).map(|r| (r.verdict.cause, r.peer_cause)).collect();
        assert_eq!(received, [(Cause::PeerReset, Some(Cause::AppAbortLinger0)); 2]);
    }

    #[test]
    fn a_remote_peers_rst_is_injected_when_it_arrives_unlike_the_peers_segments() {
        use crate::event::Arrival;
        let client = task(1, "client");
        let arrival = |rst_ttl, rst_ip_id| Arrival {
            segments: 8,
            ttl_min: 63,
            ttl_max: 63,
            ttl_last: 63,
            rst_ttl: Some(rst_ttl),
            ip_id_last: Some(4711),
            rst_ip_id: Some(rst_ip_id),
            ipv6: false,
        };
        let mut forged = received(50, Established, Some(client));
        forged.history.arrival = Some(arrival(64, 4712));
        let r = &run(vec![forged])[0];
        assert_eq!(
            (r.verdict.cause, r.verdict.origin),
            (Cause::Injected, Origin::Network)
        );
        assert_eq!(
            r.verdict.why,
            "RST came with TTL 64, the peer's segments with 63: a device in the path sent it"
        );
        assert!(r.evidence.is_some_and(|e| e.decisive));
        // The same hop count as the peer's: the peer sent it.
        let mut genuine = received(50, Established, Some(client));
        genuine.history.arrival = Some(arrival(63, 4712));
        let r = &run(vec![genuine.clone()])[0];
        assert_eq!(
            (r.verdict.cause, &*r.verdict.why),
            (Cause::PeerReset, "peer reset the connection in ESTABLISHED")
        );
        // No samples at all (no --network-evidence): an evidence object that decides nothing.
        let r = &run(vec![received(50, Established, Some(client))])[0];
        assert_eq!(r.verdict.cause, Cause::PeerReset);
        assert_eq!(r.evidence, Some(crate::evidence::Evidence::default()));
    }

    #[test]
    fn the_peer_talking_after_its_rst_is_seen_in_the_rst_this_host_answers_it_with() {
        use crate::event::Arrival;
        let client = task(1, "client");
        let mut rst = received(50, Established, Some(client));
        rst.history.arrival = Some(Arrival {
            segments: 8,
            ttl_min: 64,
            ttl_max: 64,
            ttl_last: 64,
            rst_ttl: Some(64),
            ip_id_last: Some(4711),
            rst_ip_id: Some(31000),
            ipv6: false,
        });
        // The peer's next segment finds no socket: this host answers it with a RST.
        let mut answer = sent(60, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        answer.sk = 0;
        answer.facts = None;
        answer.trigger = Some(Segment {
            tcp_flags: 0x18,
            saddr: answer.endpoints.raddr,
            sport: 80,
            daddr: answer.endpoints.laddr,
        });
        // The kernel side: the 4-tuple's last connection is the one the RST ended.
        answer.history.earlier_sk = Some(SK);
        answer.history.earlier_ended_badly = true;
        let reports = run(vec![rst.clone(), answer.clone()]);
        let r = reports
            .iter()
            .find(|r| r.direction == Some(Direction::Received))
            .unwrap();
        assert!(
            r.evidence
                .is_some_and(|e| e.peer_talked_after && e.decisive),
            "{:?}",
            r.evidence
        );
        assert_eq!(r.verdict.cause, Cause::Injected);
        assert!(
            r.verdict
                .why
                .starts_with("the peer went on sending after its RST, and the RST's IP ID 31000"),
            "{}",
            r.verdict.why
        );
        let a = reports
            .iter()
            .find(|r| r.direction == Some(Direction::Sent))
            .unwrap();
        assert_eq!(a.verdict.cause, Cause::NoSocket);
        assert!(
            a.verdict
                .why
                .contains("that a forged RST reset here 10 ms before: the peer, which never sent that RST, went on sending"),
            "{}",
            a.verdict.why
        );
        // The kernel side's note of the 4-tuple gone (its slot taken by another): a moment after
        // the RST, the peer talking on still follows it.
        let mut unnoted = answer.clone();
        unnoted.history.earlier_sk = None;
        unnoted.history.earlier_ended_badly = false;
        let reports = run(vec![rst.clone(), unnoted]);
        let a = reports.iter().find(|r| r.direction == Some(Direction::Sent)).unwrap();
        assert!(a.verdict.why.contains("that a forged RST reset here 10 ms before"), "{}", a.verdict.why);
        // Judged while the received RST is still held (it waited for its sender): the answer
        // follows it all the same, whose cause is not known yet.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(rst.clone());
        j.observe(answer.clone());
        let end = j.earlier_end(j.pending.back().unwrap()).unwrap();
        assert_eq!((end.end.how, end.end.cause, end.end.age_ns, end.owner.map(|o| o.pid), end.echo), (EndedBy::Received, None, 10_000_000, Some(1), false));
        let story = Story { earlier_end: Some(end.end), owner: Some(Named::new("client", 1)), ..Story::default() };
        let why = classify(&j.pending.back().unwrap().trigger, &story).why;
        assert_eq!(why, "segment of the connection of client[1] that a RST reset here 10 ms before: the peer went on sending, as if it never sent that RST");
        // A RST on another 4-tuple says nothing about this one.
        answer.endpoints.rport = 81;
        let reports = run(vec![rst, answer]);
        let r = reports
            .iter()
            .find(|r| r.direction == Some(Direction::Received))
            .unwrap();
        assert!(
            r.evidence.is_some_and(|e| !e.peer_talked_after),
            "{:?}",
            r.evidence
        );
        assert_eq!(r.verdict.cause, Cause::PeerReset);
        assert!(
            r.verdict
                .why
                .ends_with("(its IP ID 31000 does not follow the peer's 4711)"),
            "{}",
            r.verdict.why
        );
    }

    #[test]
    fn a_peers_socketless_rst_after_this_ends_reset_did_not_cause_it() {
        // Forged RSTs to both ends of a connection over veth: this end's reset comes first, then
        // the peer, its own socket gone, answers this end's data in flight without a socket.
        let client = task(1, "client");
        let mut forged = received(50, Established, Some(client));
        forged.history.peer_local = true;
        let mut answer = sent(52, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        answer.sk = 0;
        answer.facts = None;
        answer.endpoints = ends(5000).reversed();
        answer.trigger = Some(Segment { tcp_flags: 0x18, saddr: answer.endpoints.raddr, sport: 5000, daddr: answer.endpoints.laddr });
        let reports = run(vec![forged.clone(), answer.clone()]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::Injected, None));
        // Traced before this end's reset, the same RST is what reset it.
        answer.ts_ns = 48_000_000;
        let reports = run(vec![answer, forged.clone()]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::NoSocket)));
        // The peer closed with SO_LINGER 0 (the kernel side noted it; its RST was counted there):
        // that RST came first, and the socketless one answered this end's FIN after it.
        forged.history.aborted_here = true;
        let reports = run(vec![answer_before(&forged), forged]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::AppAbortLinger0)));
    }

    /// A server aborting a connection whose client's data is on the way: the abort's RST is
    /// traced once sent, after the client took it in; the data that crossed it is answered by
    /// the listener (or, with none, by no socket) before that.
    fn abort_crossing_data(answering: Option<TcpState>) -> (KernelEvent, KernelEvent, KernelEvent) {
        let (master, worker) = (task(10, "nginx"), task(11, "nginx"));
        let server_side = ends(5000).reversed();
        let mut received_by_client = received(0, Established, Some(task(1, "client")));
        received_by_client.ts_ns = 10_000_000;
        received_by_client.history.peer_local = true;
        let mut echo = sent(0, answering, Some(if answering.is_some() { "TCP_FLAGS" } else { "NO_SOCKET" }), task(1, "client"), Some(master));
        echo.ts_ns = 10_004_000;
        echo.sk = if answering.is_some() { SK + 0x100 } else { 0 };
        echo.facts = None;
        echo.endpoints = server_side;
        echo.trigger = Some(Segment { tcp_flags: 0x18, saddr: server_side.raddr, sport: 5000, daddr: server_side.laddr });
        let mut abort = sent(0, Some(Close), Some("TCP_ABORT_ON_CLOSE"), worker, None);
        abort.ts_ns = 10_010_000;
        abort.endpoints = server_side;
        (received_by_client, echo, abort)
    }

    /// A connecting socket resets the TIME_WAIT's old ACK, connects on its SYN's retry and ends
    /// well; a late segment of the peer then meets no socket. No reset ended that connection:
    /// the answer echoes nothing.
    #[test]
    fn a_segment_after_a_connection_that_reset_a_stale_ack_in_syn_sent_and_then_ended_well_echoes_nothing() {
        let client = task(1, "python3");
        let mut stale_ack = sent(10, Some(SynSent), Some("TCP_INVALID_ACK_SEQUENCE"), client, Some(client));
        stale_ack.trigger = Some(Segment { tcp_flags: 0x10, saddr: stale_ack.endpoints.raddr, sport: stale_ack.endpoints.rport, daddr: stale_ack.endpoints.laddr });
        let mut late = sent(27, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        late.sk = 0;
        late.facts = None;
        late.trigger = stale_ack.trigger;
        let reports = run(vec![stale_ack, late]);
        let r = reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).unwrap();
        assert!(r.verdict.why.starts_with("segment for a connection this host does not know"), "{}", r.verdict.why);
        assert!(reports.iter().any(|r| r.verdict.cause == Cause::TimewaitReuse), "{reports:?}");
    }

    #[test]
    fn data_after_close_followed_by_the_listeners_answers_to_the_rest_is_what_the_peer_was_told() {
        // nginx's worker closed with the request body still coming: its orphan resets the first
        // data after close, and the master's listener answers the segments in flight behind it.
        let worker = task(11, "nginx");
        let (mut received_by_client, mut echo, _) = abort_crossing_data(Some(Listen));
        let mut first = sent(0, Some(Close), Some("TCP_ABORT_ON_DATA"), task(0, "swapper/0"), Some(worker));
        first.ts_ns = 10_000_000;
        first.endpoints = echo.endpoints;
        first.facts = Some(SockFacts { orphan: true, ..SockFacts::default() });
        first.trigger = echo.trigger;
        echo.ts_ns = first.ts_ns + 30_000;
        received_by_client.ts_ns = echo.ts_ns + 20_000;
        let reports = run(vec![first, echo, received_by_client]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::DataAfterClose)), "{}", r.verdict.why);
        let e = reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).unwrap();
        assert!(e.verdict.why.starts_with("segment of the connection nginx[11] reset a moment before"), "{}", e.verdict.why);
        assert_eq!(e.owner.map(|o| o.pid), Some(11));
    }

    #[test]
    fn an_abort_crossing_the_peers_data_is_what_the_peer_was_told_and_the_answer_to_that_data_an_echo() {
        for answering in [Some(Listen), None] {
            let (received_by_client, echo, abort) = abort_crossing_data(answering);
            let reports = run(vec![received_by_client, echo, abort]);
            let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
            assert_eq!((r.verdict.cause, r.peer_cause), (Cause::PeerReset, Some(Cause::AppAbortUnread)), "{answering:?}");
            let e = reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).unwrap();
            // The connection's owner, the worker that aborted it (not the listener's, the master).
            assert_eq!((e.verdict.benign, e.owner.map(|o| o.pid), e.attribution), (true, Some(11), Attribution::SocketOwner), "{answering:?}");
            assert!(e.verdict.why.starts_with("segment of the connection nginx[11] reset a moment before"), "{}", e.verdict.why);
            assert!(reports.iter().any(|r| r.verdict.cause == Cause::AppAbortUnread && !r.verdict.benign));
        }
        // The abort traced just before the echo (the echo's trace comes before it goes out, the
        // abort's after): the abort went out first, and reset the client.
        let (mut received_by_client, mut echo, mut abort) = abort_crossing_data(Some(Listen));
        abort.ts_ns = 10_000_000;
        echo.ts_ns = abort.ts_ns + 50;
        received_by_client.ts_ns = echo.ts_ns + 15_000;
        let reports = run(vec![abort, echo, received_by_client]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!(r.peer_cause, Some(Cause::AppAbortUnread));
        // The abort's RST lost on the way: the echo, traced before the client took it in, is
        // what reset the client, and its being an echo makes the client's reset no more benign.
        let (mut received_by_client, echo, mut abort) = abort_crossing_data(Some(Listen));
        abort.ts_ns = echo.ts_ns - 5_000_000;
        received_by_client.ts_ns = echo.ts_ns + 20_000;
        let reports = run(vec![abort, echo, received_by_client]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause, r.verdict.benign), (Cause::PeerReset, Some(Cause::NoSocket), false));
        assert_eq!(r.verdict.why, "peer reset the connection in ESTABLISHED (no_socket: the peer's end reset it earlier (app_abort_unread), a RST that never got here)");
        assert!(reports.iter().any(|r| r.verdict.cause == Cause::NoSocket && r.verdict.benign));
        // Long after the abort, a segment on the 4-tuple says the abort's RST never reached the
        // peer: the worker's connection still, and nothing new gone wrong.
        for answering in [Some(Listen), None] {
            let (_, mut late, abort) = abort_crossing_data(answering);
            late.ts_ns = abort.ts_ns + 2_300_000_000;
            late.history.earlier_sk = Some(abort.sk);
            late.history.earlier_ended_badly = true;
            let reports = run(vec![abort, late]);
            let r = reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).unwrap();
            assert_eq!((r.verdict.benign, r.owner.map(|o| o.pid), r.attribution), (true, Some(11), Attribution::SocketOwner), "{r:?}");
            assert!(r.verdict.why.starts_with("segment of the connection of nginx[11] that this host reset 2.3 s before (app_abort_unread): that RST never reached the peer"), "{}", r.verdict.why);
        }
        // A SYN on the 4-tuple opens a new connection: refused, no echo, and what its client
        // was told is the refusal.
        let (mut refused, mut syn, abort) = abort_crossing_data(None);
        syn.ts_ns = abort.ts_ns + 1_000_000;
        syn.trigger = syn.trigger.map(|t| Segment { tcp_flags: 0x02, ..t });
        refused.ts_ns = syn.ts_ns + 10_000;
        refused.payload = Payload::ReceiveReset { state: Some(SynSent) };
        let reports = run(vec![abort, syn, refused]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause), (Cause::Refused, Some(Cause::NoListener)));
        let r = reports.iter().find(|r| r.verdict.cause == Cause::NoListener).unwrap();
        assert!(!r.verdict.benign && r.owner.is_some_and(|o| o.pid != 11), "{r:?}");
    }

    /// The client's connection ended here `ended` (a RST received, a timeout), and `later` ns
    /// after that the server's FIN comes, which no socket takes: the client's RST.
    fn segment_after(ended: KernelEvent, later: u64) -> Vec<Report> {
        answer_after(ended, later, |_| {}, None)
    }

    /// `segment_after` with the RST's event as `edit` leaves it, and the RST taken in by
    /// `at_peer`, a socket of this host's, just after.
    fn answer_after(ended: KernelEvent, later: u64, edit: impl FnOnce(&mut KernelEvent), at_peer: Option<KernelEvent>) -> Vec<Report> {
        let mut answer = sent(0, None, Some("NO_SOCKET"), task(0, "swapper/1"), None);
        answer.ts_ns = ended.ts_ns + later;
        answer.sk = 0;
        answer.facts = None;
        answer.trigger = Some(Segment { tcp_flags: 0x11, saddr: answer.endpoints.raddr, sport: 80, daddr: answer.endpoints.laddr });
        // The kernel side's note of the 4-tuple: its last connection, which a reset or an error ended.
        answer.history.earlier_sk = Some(SK);
        answer.history.earlier_ended_badly = true;
        edit(&mut answer);
        // The end was judged long before the answer came.
        let mut j = Judge::new(Visibility::ALL);
        j.observe(ended);
        let mut reports = j.flush(answer.ts_ns);
        let answered_at = answer.ts_ns;
        j.observe(answer);
        if let Some(mut at_peer) = at_peer {
            at_peer.ts_ns = answered_at + 10_000;
            at_peer.endpoints = at_peer.endpoints.reversed();
            at_peer.history.peer_local = true;
            j.observe(at_peer);
        }
        reports.extend(j.flush(u64::MAX));
        reports
    }

    fn no_socket(reports: &[Report]) -> Report {
        reports.iter().find(|r| r.verdict.cause == Cause::NoSocket).cloned().unwrap()
    }

    /// A timeout's event, with the socket the kernel side found closing just before (its
    /// tracepoint names none).
    fn timed_out(owner: Task) -> KernelEvent {
        let mut e = ev(10, SK, Payload::ErrorReport { error: ETIMEDOUT }, task(0, "swapper/0"), Some(owner));
        e.history.closed_from = Some(Established);
        e.history.retransmits = Some(6);
        e
    }

    #[test]
    fn a_segment_long_after_a_reset_or_timeout_ended_its_connection_here_names_that_end() {
        let client = task(1, "client");
        // Reset by a RST forged on the way: the peer talks on, as it would not had it sent it.
        let mut forged = received(10, Established, Some(client));
        forged.history.peer_local = true;
        let reports = segment_after(forged.clone(), 4_000_000_000);
        assert_eq!(reports[0].verdict.cause, Cause::Injected);
        let r = no_socket(&reports);
        assert_eq!((r.verdict.benign, r.owner.map(|o| o.pid), r.attribution), (false, Some(1), Attribution::SocketOwner));
        assert_eq!(r.verdict.why, "segment of the connection of client[1] that a forged RST reset here 4.0 s before: the peer, which never sent that RST, went on sending");
        // A RST from a peer elsewhere, judged the peer's: its talking on says it was not.
        let reports = segment_after(received(10, Established, Some(client)), 600_000_000);
        let r = no_socket(&reports);
        assert!(!r.verdict.benign && r.verdict.why.contains("a RST reset here 600 ms before (peer_reset): the peer went on sending"), "{}", r.verdict.why);
        // A timeout while the peer was out of reach: what the abort's report said.
        let reports = segment_after(timed_out(client), 180_000_000_000);
        assert_eq!(reports[0].verdict.cause, Cause::RetransmitTimeout);
        let r = no_socket(&reports);
        assert_eq!((r.verdict.benign, r.owner.map(|o| o.pid)), (true, Some(1)));
        assert!(r.verdict.why.starts_with("segment of the connection of client[1] that timed out here 3 min before (retransmit_timeout)"), "{}", r.verdict.why);
        // The server's side: reset by that RST, which followed the client's end.
        let reports = answer_after(timed_out(client), 2_000_000_000, |_| {}, Some(received(0, FinWait1, Some(task(2, "server")))));
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause, r.verdict.benign), (Cause::PeerReset, Some(Cause::NoSocket), false));
        assert_eq!(r.verdict.why, "peer reset the connection in FIN_WAIT1 (no_socket: the peer's end timed out earlier (retransmit_timeout))");
        // Longer ago than it is kept, or a SYN (a new connection on the 4-tuple): a segment of
        // a connection this host does not know.
        let r = no_socket(&segment_after(received(10, Established, Some(client)), crate::ended_here::KEEP_NS + 1));
        assert!(r.verdict.why.contains("does not know") && r.owner.is_none(), "{r:?}");
        let syn = |e: &mut KernelEvent| e.trigger = e.trigger.map(|t| Segment { tcp_flags: 0x02, ..t });
        let syn_after = answer_after(received(10, Established, Some(client)), 1_000_000_000, syn, None);
        assert!(syn_after.iter().any(|r| r.verdict.cause == Cause::NoListener && r.owner.is_none()), "{syn_after:?}");
        // A refused connect ended no connection that was up.
        let reports = segment_after(received(10, SynSent, Some(client)), 1_000_000_000);
        assert!(no_socket(&reports).verdict.why.contains("does not know"));
    }

    #[test]
    fn a_later_connection_on_the_4_tuple_is_not_taken_for_the_one_that_ended() {
        let client = task(1, "client");
        // The kernel side says a later connection on the 4-tuple ended well, even in the same
        // socket memory.
        let ended_well = |e: &mut KernelEvent| e.history.earlier_ended_badly = false;
        let reset = || received(10, Established, Some(client));
        let r = no_socket(&answer_after(reset(), 60_000_000_000, ended_well, None));
        assert!(r.verdict.why.contains("does not know"), "{r:?}");
        // Or has no note of the 4-tuple any more: a later connection may have come and gone.
        let no_note = |e: &mut KernelEvent| {
            e.history.earlier_sk = None;
            e.history.earlier_ended_badly = false;
        };
        let r = no_socket(&answer_after(reset(), 60_000_000_000, no_note, None));
        assert!(r.verdict.why.contains("does not know"), "{r:?}");
        // It names the 4-tuple's last connection: the one a RST reset, or a later one (which a
        // reset or an error ended too, unseen: past the rate, or in a gap of the trace).
        let last_sk = |sk: u64| move |e: &mut KernelEvent| e.history.earlier_sk = Some(sk);
        let r = no_socket(&answer_after(reset(), 60_000_000_000, last_sk(SK), None));
        assert!(r.verdict.why.contains("a RST reset here 60.0 s before"), "{}", r.verdict.why);
        let r = no_socket(&answer_after(reset(), 60_000_000_000, last_sk(SK + 0x40), None));
        assert!(r.verdict.why.contains("does not know"), "{r:?}");
        // A timeout's too.
        let r = no_socket(&answer_after(timed_out(client), 60_000_000_000, last_sk(SK), None));
        assert!(r.verdict.why.contains("timed out here 60.0 s before"), "{}", r.verdict.why);
        let r = no_socket(&answer_after(timed_out(client), 60_000_000_000, last_sk(SK + 0x40), None));
        assert!(r.verdict.why.contains("does not know"), "{r:?}");
        // The same socket's memory, owned by another process since: not the same connection.
        let later_owner = |e: &mut KernelEvent| e.history.earlier_owner = Some(task(2, "other"));
        let r = no_socket(&answer_after(timed_out(client), 60_000_000_000, later_owner, None));
        assert_eq!((r.owner.map(|o| o.pid), r.verdict.why.contains("does not know"), r.verdict.benign), (Some(2), true, false));
        // A TIME_WAIT remnant's RST ends nothing the kernel side notes: no sequel of it.
        let tw = sent(10, Some(TimeWait), Some("TCP_TIMEWAIT_SOCKET"), task(0, "swapper/0"), None);
        assert!(no_socket(&segment_after(tw, 2_000_000_000)).verdict.why.contains("does not know"));
    }

    #[test]
    fn an_earlier_end_gives_way_where_another_cause_answers_the_segment() {
        // A listener with a full accept queue answers the last ACK of a new handshake on the
        // 4-tuple of a connection that timed out: an overflow, neither the timed-out
        // connection's owner's nor a sequel, and the peer is told so.
        let mut overflow = |e: &mut KernelEvent| {
            e.payload = Payload::SendReset { state: Some(Listen), reason: None };
            e.sk = SK + 0x100;
            e.facts = Some(SockFacts { accept_queue_full: true, ..SockFacts::default() });
        };
        let reports = answer_after(timed_out(task(1, "client")), 2_000_000_000, &mut overflow, Some(received(0, SynRecv, Some(task(2, "server")))));
        let r = reports.iter().find(|r| r.verdict.cause == Cause::ListenOverflow).unwrap();
        assert!(r.owner.is_none_or(|o| o.pid != 1), "{r:?}");
        let at_peer = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!(at_peer.peer_cause, Some(Cause::ListenOverflow));
        assert!(!at_peer.verdict.why.contains("earlier"), "{}", at_peer.verdict.why);
    }

    #[test]
    fn the_reset_of_a_client_skipping_time_wait_is_benign_at_the_other_end_too() {
        let client = task(1, "client");
        let mut abort = sent(0, Some(Close), Some("TCP_STATE"), client, Some(client));
        abort.ts_ns = 10_010_000;
        abort.history.opened_ns = Some(1_000_000);
        abort.facts = Some(SockFacts { peer_closed: true, ..SockFacts::default() });
        let mut at_server = received(0, CloseWait, Some(task(2, "server")));
        at_server.ts_ns = 10_000_000;
        at_server.endpoints = ends(5000).reversed();
        at_server.history.peer_local = true;
        let reports = run(vec![at_server.clone(), abort.clone()]);
        let sent = reports.iter().find(|r| r.direction == Some(Direction::Sent)).unwrap();
        assert_eq!((sent.verdict.cause, sent.verdict.benign), (Cause::AppAbortLinger0, true));
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert_eq!((r.verdict.cause, r.peer_cause, r.verdict.benign), (Cause::PeerReset, Some(Cause::AppAbortLinger0), true));
        assert!(r.verdict.why.ends_with("; benign, as the peer's side says"), "{}", r.verdict.why);
        // The same abort mid-exchange is no such thing, at either end.
        abort.facts = Some(SockFacts::default());
        abort.history.opened_ns = None;
        let reports = run(vec![at_server, abort]);
        assert!(reports.iter().all(|r| !r.verdict.benign), "{reports:?}");
    }

    /// The peer's stack answering this end's segment without a socket, traced just before `rst`.
    fn answer_before(rst: &KernelEvent) -> KernelEvent {
        let mut answer = sent(0, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        answer.ts_ns = rst.ts_ns - 2_000_000;
        answer.sk = 0;
        answer.facts = None;
        answer.endpoints = rst.endpoints.reversed();
        answer.trigger = Some(Segment { tcp_flags: 0x11, saddr: answer.endpoints.raddr, sport: rst.endpoints.lport, daddr: answer.endpoints.laddr });
        answer
    }

    #[test]
    fn a_syn_on_the_4_tuple_is_a_new_connection_not_the_peer_talking_on() {
        let mut rst = received(50, Established, Some(task(1, "client")));
        rst.history.arrival = Some(crate::event::Arrival { segments: 8, ttl_min: 64, ttl_max: 64, ttl_last: 64, rst_ttl: Some(64), ip_id_last: Some(4711), rst_ip_id: Some(31000), ipv6: false });
        let mut syn = sent(60, None, Some("NO_SOCKET"), task(0, "swapper/0"), None);
        syn.sk = 0;
        syn.facts = None;
        syn.trigger = Some(Segment { tcp_flags: 0x02, saddr: syn.endpoints.raddr, sport: 80, daddr: syn.endpoints.laddr });
        let reports = run(vec![rst.clone(), syn.clone()]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert!(r.evidence.is_some_and(|e| !e.peer_talked_after), "{:?}", r.evidence);
        // Nor does another namespace's RST on the same addresses say anything.
        let mut elsewhere = syn;
        elsewhere.netns = NETNS + 1;
        elsewhere.trigger = Some(Segment { tcp_flags: 0x18, saddr: elsewhere.endpoints.raddr, sport: 80, daddr: elsewhere.endpoints.laddr });
        let reports = run(vec![rst, elsewhere]);
        let r = reports.iter().find(|r| r.direction == Some(Direction::Received)).unwrap();
        assert!(r.evidence.is_some_and(|e| !e.peer_talked_after), "{:?}", r.evidence);
    }

    #[test]
    fn a_time_wait_reset_names_the_closer_the_kernel_side_remembers() {
        let nginx = task(812, "nginx");
        let mut rst = sent(20, Some(TimeWait), None, task(300, "client"), None);
        rst.facts = None;
        rst.trigger = Some(Segment { tcp_flags: 0x18, saddr: rst.endpoints.raddr, sport: 80, daddr: rst.endpoints.laddr });
        rst.history.earlier_owner = Some(nginx);
        let r = &run(vec![rst])[0];
        assert_eq!(r.verdict.why, "peer sent data after nginx[812] closed the socket");
        assert_eq!(r.owner.unwrap().pid, 812);
    }

    fn answered_by_listener(ts: u64, now: &Task) -> KernelEvent {
        let mut e = sent(ts, Some(Listen), Some("TCP_FLAGS"), task(0, "swapper/0"), Some(*now));
        e.endpoints = Endpoints { lport: 80, rport: 5000, ..ends(0) };
        e.trigger = Some(Segment { tcp_flags: 0x18, saddr: e.endpoints.raddr, sport: 80, daddr: e.endpoints.laddr });
        e
    }

    #[test]
    fn a_port_taken_over_by_another_process_is_port_grabbed_for_the_old_owners_connections() {
        let (old, new) = (task(10, "old"), task(20, "new"));
        let handover = vec![listener(1, Close, Listen, &old, "10.0.0.1"), listener(5, Listen, Close, &old, "10.0.0.1"), listener(6, Close, Listen, &new, "10.0.0.1")];
        let mut events = handover.clone();
        events.push(answered_by_listener(10, &new));
        let r = &run(events)[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid), (Cause::PortGrabbed, 10));
        assert!(r.verdict.why.starts_with("new[20] now holds this port"), "{}", r.verdict.why);
        // The kernel side's memory of the 4-tuple names the owner where it has one.
        let mut events = handover;
        let mut rst = answered_by_listener(10, &new);
        rst.history.earlier_owner = Some(new);
        events.push(rst);
        assert_eq!(run(events)[0].verdict.cause, Cause::NoSocket);
        // A prefork server: its master listens, a worker served the connection and closed it;
        // the master's listener answering the peer's late segments took no port from anyone.
        let master = task(30, "nginx");
        let mut rst = answered_by_listener(10, &master);
        rst.history.earlier_owner = Some(task(31, "nginx"));
        let r = &run(vec![listener(1, Close, Listen, &master, "10.0.0.1"), rst])[0];
        assert_eq!(r.verdict.cause, Cause::NoSocket, "{}", r.verdict.why);
        // A listener on another address of the same port is no predecessor.
        let events = vec![listener(1, Close, Listen, &old, "10.9.9.9"), listener(5, Listen, Close, &old, "10.9.9.9"), listener(6, Close, Listen, &new, "10.0.0.1"), answered_by_listener(10, &new)];
        let r = &run(events)[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid), (Cause::NoSocket, 20));
    }

    #[test]
    fn a_connection_nobody_was_seen_using_belongs_to_the_listener_that_accepted_it() {
        let server = task(30, "server");
        // The listener closes while the reset is held: its owner was taken when the reset came.
        let mut killed = sent(10, Some(Established), Some("TCP_STATE"), task(991, "ss"), None);
        killed.endpoints = Endpoints { lport: 80, rport: 5000, ..ends(0) };
        killed.endpoints.laddr = "10.0.0.1".parse().unwrap();
        let events = vec![listener(1, Close, Listen, &server, "0.0.0.0"), killed, listener(20, Listen, Close, &server, "0.0.0.0")];
        let r = &run(events)[0];
        assert_eq!((r.verdict.cause, r.owner.unwrap().pid, r.attribution), (Cause::SocketDestroyed, 30, Attribution::SocketOwner));
        // A connection this host opened is no listener's.
        let mut refused = received(10, SynSent, None);
        refused.endpoints.lport = 80;
        assert_eq!(run(vec![listener(1, Close, Listen, &server, "0.0.0.0"), refused])[0].owner, None);
    }
}
