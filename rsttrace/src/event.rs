//! Typed kernel events: what one ring-buffer record means once decoded.
use std::net::{IpAddr, Ipv4Addr};

use rsttrace_common::EventKind;

/// TCP states as numbered in `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    pub fn from_kernel(v: i64) -> Option<Self> {
        use TcpState::*;
        Some(match v {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
        }
    }

    /// States in which both ends have exchanged SYNs.
    pub fn is_synchronized(self) -> bool {
        !matches!(self, TcpState::SynSent | TcpState::SynRecv | TcpState::NewSynRecv | TcpState::Listen | TcpState::Close)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// A connection's two ends as this host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
}

/// Three words where the derived hash feeds a dozen pieces: the judge hashes endpoints several
/// times per reset. Equal endpoints hash alike; the family and the kind of address are left to
/// `Eq` (an IPv4 address and the IPv6 one with the same low bits only share a bucket).
impl std::hash::Hash for Endpoints {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v4) => u128::from(v4.to_bits()),
            IpAddr::V6(v6) => v6.to_bits(),
        };
        state.write_u128(bits(self.laddr));
        state.write_u128(bits(self.raddr));
        state.write_u32(u32::from(self.lport) << 16 | u32::from(self.rport));
    }
}

impl Endpoints {
    /// What the wire carried. An IPv6 socket that talks to an IPv4 peer (a dual-stack listener on
    /// `[::]`, the default of nginx `listen [::]`, Java, Go and Node) keeps IPv4-mapped
    /// addresses (`::ffff:10.0.0.1`); its packets are IPv4, so that is what is reported and
    /// filtered. A wildcard end (a listener's) follows the other end.
    pub fn as_on_the_wire(self) -> Self {
        let v4 = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => Some(a),
        };
        let (l, r) = (v4(self.laddr), v4(self.raddr));
        let wildcard = |a: IpAddr| a.is_unspecified();
        match (l, r) {
            (Some(laddr), Some(raddr)) => Self { family: Family::Ipv4, laddr, raddr, ..self },
            (Some(laddr), None) if wildcard(self.raddr) => {
                Self { family: Family::Ipv4, laddr, raddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), ..self }
            }
            (None, Some(raddr)) if wildcard(self.laddr) => {
                Self { family: Family::Ipv4, laddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), raddr, ..self }
            }
            _ => self,
        }
    }

    /// The same connection seen from the other end.
    pub fn reversed(self) -> Self {
        Self {
            family: self.family,
            laddr: self.raddr,
            lport: self.rport,
            raddr: self.laddr,
            rport: self.lport,
        }
    }
}

/// A task's name as the kernel keeps it (at most 16 bytes), stored inline: every event carries
/// two, and copying them must not allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// From the kernel's NUL-padded bytes; a name that is not UTF-8 has its non-ASCII bytes
    /// shown as `?`.
    pub fn from_kernel(raw: &[u8; 16]) -> Self {
        let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&raw[..len]);
        if std::str::from_utf8(&bytes[..len]).is_err() {
            bytes[..len].iter_mut().filter(|b| !b.is_ascii()).for_each(|b| *b = b'?');
        }
        Self { bytes, len: len as u8 }
    }

    pub fn as_str(&self) -> &str {
        // Valid by construction (see `from_kernel` and `From<&str>`).
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// NUL-padded, as the kernel keeps it (`from_kernel` reads it back).
    pub fn to_kernel(&self) -> [u8; 16] {
        self.bytes
    }
}

impl From<&str> for Comm {
    /// Truncated to 16 bytes at a character boundary.
    fn from(name: &str) -> Self {
        let mut len = name.len().min(16);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self { bytes, len: len as u8 }
    }
}

impl std::ops::Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A task as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    pub comm: Comm,
    /// cgroup v2 id, read only under `--cgroup`; 0 otherwise or when unknown. For `current` it is
    /// whoever the CPU was running.
    pub cgroup: u64,
}

impl Task {
    /// Idle tasks and softirq/worker threads: `current` in timer and softirq context.
    pub fn is_kernel_context(&self) -> bool {
        // On the bytes: this runs for every reset, and the names are ASCII.
        let comm = self.comm.as_bytes();
        self.pid == 0 || comm.starts_with(b"swapper") || comm.starts_with(b"ksoftirqd") || comm.starts_with(b"kworker")
    }
}

/// What the kernel side read of a segment's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub tcp_flags: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
}

impl Segment {
    /// A SYN without ACK: it opens a connection.
    pub fn is_bare_syn(&self) -> bool {
        self.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
    }

    /// A SYN-ACK: the answer to a connection this host opened.
    pub fn is_syn_ack(&self) -> bool {
        self.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN | TCP_FLAG_ACK
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    SendReset {
        /// `None` when the reset had no socket (state 0 in the record).
        state: Option<TcpState>,
        /// `sk_rst_reason` value and name; `None` on kernels without the field.
        reason: Option<(u32, &'static str)>,
    },
    ReceiveReset {
        /// The socket's state as the kernel side read it at that instant; `None` where it could not.
        state: Option<TcpState>,
    },
    /// A listener started (`new` LISTEN) or stopped (`old` LISTEN): the kernel side reports no
    /// other state change.
    SetState {
        old: Option<TcpState>,
        new: Option<TcpState>,
    },
    ErrorReport {
        /// Positive errno; the kernel side reports only 110 (ETIMEDOUT) and 103 (ECONNABORTED).
        error: i32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel socket address; 0 when the event has none.
    pub sk: u64,
    /// Kernel address of the segment (sent resets).
    pub skb: u64,
    /// The segment that triggered a sent reset, when the kernel side could read it.
    pub trigger: Option<Segment>,
    pub endpoints: Endpoints,
    pub payload: Payload,
    /// The task the CPU was running.
    pub current: Option<Task>,
    /// When `current` is a thread other than its process's main one: the process's name, as
    /// the kernel had it then.
    pub current_process: Option<Comm>,
    /// The task last seen using the socket in process context, per the kernel side's record.
    pub owner: Option<Task>,
    /// Network namespace inode of the socket; 0 when unknown.
    pub netns: u32,
    /// The cgroup v2 the socket was created in (its id); 0 when unknown or no full socket.
    pub cgroup: u64,
    /// The inode of the socket's file, where a process holds it and no owner is on record or the
    /// one on record did not send or take in the reset itself; 0 otherwise.
    pub inode: u64,
    /// The sending socket's condition: who holds it on every kernel, the reason's stand-ins on
    /// kernels that give no reason.
    pub facts: Option<SockFacts>,
    /// What the kernel side kept of the socket and remembered of other connections.
    pub history: History,
}

/// What the kernel side knew at the event beyond the socket's state: from the socket's record
/// (kept from connect() to CLOSE) and from its memory of other connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// connect() time, for a connection this host opened.
    pub opened_ns: Option<u64>,
    /// When that connection's handshake completed.
    pub established_ns: Option<u64>,
    /// The state the socket left for CLOSE just before, in the same kernel call.
    pub closed_from: Option<TcpState>,
    /// The owner of the last connection on this 4-tuple (a reset with no full socket of its own,
    /// from TIME_WAIT, or answered by a listener).
    pub earlier_owner: Option<Task>,
    /// The socket of that last connection, as the kernel side noted it.
    pub earlier_sk: Option<u64>,
    /// A reset or an error ended that last connection.
    pub earlier_ended_badly: bool,
    /// Another connection the owner opened to the same peer (for an aborted one).
    pub sibling: Option<Sibling>,
    /// The other end is a socket on this host that was open when the RST came, or closed a
    /// moment before.
    pub peer_local: bool,
    /// Received in SYN_SENT: this host's own stack sent the RST, refusing the SYN (the kernel
    /// side saw it go out; the agent may not have, past `--max-rate`).
    pub refused_here: bool,
    /// Received past the handshake: this host's other end of the connection sent the RST,
    /// closing with SO_LINGER 0 (the kernel side noted it; the agent may not have seen it, past
    /// `--max-rate`).
    pub aborted_here: bool,
    /// An earlier connection on this host used the same 4-tuple.
    pub tuple_reused: bool,
    /// In SYN_SENT: the peer on this host still holds an earlier connection on the 4-tuple open.
    pub peer_holds_open: bool,
    /// A state change to CLOSE of a socket its process had closed, whose retransmission timer
    /// gave up (`tcp_orphan_retries`): no RST, no error report follow.
    pub orphan_timed_out: bool,
    /// Resets: every retransmission of the connection; timeouts: how many times in a row the
    /// oldest unacknowledged segment (the SYN, when connecting) timed out.
    pub retransmits: Option<u32>,
    /// Timeouts: how the socket stood when it gave up (`None` where BTF lacked the fields).
    pub timeout: Option<TimeoutFacts>,
    /// RSTs the socket had sent before this event.
    pub resets_sent: u32,
    /// How the peer's segments and this RST arrived (received resets, `--network-evidence`).
    pub arrival: Option<Arrival>,
}

/// What `--network-evidence` sampled of the segments a socket received from its peer, and of the
/// RST that reset it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The peer's segments sampled (not counting RSTs).
    pub segments: u32,
    /// Lowest, highest and last hop count (IPv4 TTL, IPv6 hop limit) among them.
    pub ttl_min: u8,
    pub ttl_max: u8,
    pub ttl_last: u8,
    /// The RST's hop count; `None` when the RST came in a state the per-segment hook does not
    /// see (any but ESTABLISHED).
    pub rst_ttl: Option<u8>,
    /// IPv4: the IP ID of the peer's last segment and of the RST.
    pub ip_id_last: Option<u16>,
    pub rst_ip_id: Option<u16>,
    pub ipv6: bool,
}

/// A connection its owner opened to the same peer as another: the same address, or the same
/// port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sibling {
    pub family: Family,
    pub raddr: IpAddr,
    pub rport: u16,
    pub opened_ns: u64,
    pub established_ns: u64,
    /// Still up when the other was aborted.
    pub open: bool,
}

/// What a socket looked like the moment it sent a reset: who holds it (every kernel) and, where
/// the kernel names no reason, the facts that tell one application abort from another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockFacts {
    /// The reason's stand-ins below (up to `ack_in_window`) were read: this kernel gave none.
    pub stand_ins_read: bool,
    /// SO_LINGER on with a zero timeout.
    pub linger0: bool,
    /// Data arrived that the application never read (more than a FIN's one sequence number).
    pub unread: bool,
    /// Exactly one unread sequence number: a FIN (or a single byte).
    pub unread_one: bool,
    /// The listener's accept queue was over its limit.
    pub accept_queue_full: bool,
    /// The refused segment's ACK was inside the send window (so the stack refused something else).
    pub ack_in_window: bool,
    /// No process holds the socket: a listener's child never accepted, or one already closed
    /// (read on every kernel).
    pub orphan: bool,
    /// A tool destroyed the socket (`ss -K`): ECONNABORTED was pending when it sent (read on
    /// every kernel; pending before the reset only before 6.1.132).
    pub destroyed: bool,
    /// The peer's FIN had arrived: it had finished its side (read on every kernel).
    pub peer_closed: bool,
    /// From CLOSE: close() did not shut the socket, so connect(AF_UNSPEC) disconnected it and
    /// the application keeps it (read on every kernel).
    pub kept: bool,
    /// From CLOSE, on a connection this host opened: data went both ways and everything sent was
    /// acknowledged (read on every kernel).
    pub exchanged: bool,
    /// From CLOSE, on a connection this host opened: no data went either way.
    pub nothing_exchanged: bool,
    /// From CLOSE: the process was ending when its socket was closed for it (killed, crashed
    /// or exited with the socket open).
    pub closer_ended: Option<Ending>,
    /// From CLOSE: TCP_LINGER2 was negative, so the stack resets the orphan as soon as it
    /// reaches FIN_WAIT2.
    pub linger2_negative: bool,
}

/// What a socket that timed out says of its timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutFacts {
    /// Its TCP_USER_TIMEOUT in milliseconds; 0 when unset.
    pub user_timeout_ms: u32,
    /// Probes (zero-window or keepalive) sent since the peer last acknowledged anything: 0 when
    /// it answered the last one.
    pub probes_out: u8,
    /// The persist timer was probing a zero window (not a retransmission's timeout).
    pub zero_window_probed: bool,
    /// The peer answered a probe after the probing began.
    pub answered_probing: bool,
}

/// How a process ended, from its `exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A signal ended it (killed, or crashed).
    Signal(u8),
    /// It exited, with this status.
    Exit(u8),
}

impl Ending {
    pub fn from_exit_code(code: u32) -> Self {
        match code & 0x7f {
            0 => Ending::Exit((code >> 8) as u8),
            signal => Ending::Signal(signal as u8),
        }
    }
}

impl std::fmt::Display for Ending {
    /// What ended the process, as a why says it: "was killed by SIGKILL", "exited (status 3)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Ending::Signal(9) => f.write_str("was killed by SIGKILL"),
            Ending::Signal(15) => f.write_str("was terminated by SIGTERM"),
            Ending::Signal(s @ (4 | 6 | 7 | 8 | 11)) => write!(f, "crashed ({})", signal_name(s)),
            Ending::Signal(s) => write!(f, "was ended by {}", signal_name(s)),
            Ending::Exit(status) => write!(f, "exited (status {status})"),
        }
    }
}

/// A signal's name, for the common ones.
fn signal_name(signal: u8) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_ACK: u8 = 0x10;

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    fn ends(family: Family, laddr: &str, raddr: &str) -> Endpoints {
        Endpoints { family, laddr: laddr.parse().unwrap(), lport: 80, raddr: raddr.parse().unwrap(), rport: 5000 }
    }

    #[test]
    fn ipv4_mapped_ends_are_reported_as_ipv4() {
        let v4 = ends(Family::Ipv4, "10.0.0.1", "10.0.0.2");
        assert_eq!(ends(Family::Ipv6, "::ffff:10.0.0.1", "::ffff:10.0.0.2").as_on_the_wire(), v4);
        assert_eq!(v4.as_on_the_wire(), v4);
        // A dual-stack listener's record: wildcard remote end.
        assert_eq!(ends(Family::Ipv6, "::ffff:10.0.0.1", "::").as_on_the_wire(), ends(Family::Ipv4, "10.0.0.1", "0.0.0.0"));
        // A listener on [::] answering an IPv4 segment: the trigger's addresses are plain IPv4.
        assert_eq!(ends(Family::Ipv6, "10.0.0.1", "10.0.0.2").as_on_the_wire(), v4);
        // Real IPv6, and an all-wildcard listener, stay as they are.
        let v6 = ends(Family::Ipv6, "fd00::1", "fd00::2");
        assert_eq!(v6.as_on_the_wire(), v6);
        let any6 = ends(Family::Ipv6, "::", "::");
        assert_eq!(any6.as_on_the_wire(), any6);
    }
}

#[cfg(test)]
mod comm_tests {
    use super::Comm;

    #[test]
    fn comm_is_read_up_to_the_nul_and_never_invalid() {
        assert_eq!(Comm::from_kernel(b"nginx\0\0\0\0\0\0\0\0\0\0\0"), "nginx");
        assert_eq!(Comm::from_kernel(b"0123456789abcdef").len(), 16);
        // A name cut inside a multi-byte character by the kernel's 16-byte limit.
        let mut raw = [0u8; 16];
        raw[..5].copy_from_slice(&[b'a', 0xc3, 0xa9, 0xe2, 0x82]);
        assert_eq!(Comm::from_kernel(&raw), "a????");
        assert_eq!(Comm::from("ééééééééé").as_str(), "éééééééé");
        assert_eq!(format!("[{:<6}]", Comm::from("ab")), "[ab    ]");
    }
}
