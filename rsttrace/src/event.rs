//! Typed kernel events: what one ring-buffer record means once decoded.
use std::net::IpAddr;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
}

impl Endpoints {
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

/// A task as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    pub comm: String,
    /// cgroup v2 id; 0 when unknown. For `current` it is whoever the CPU was running.
    pub cgroup: u64,
}

impl Task {
    /// Idle tasks and softirq/worker threads: `current` in timer and softirq context.
    pub fn is_kernel_context(&self) -> bool {
        self.pid == 0
            || self.comm.starts_with("swapper")
            || self.comm.starts_with("ksoftirqd")
            || self.comm.starts_with("kworker")
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    SendReset {
        /// `None` when the reset had no socket (state 0 in the record).
        state: Option<TcpState>,
        /// `sk_rst_reason` value and name; `None` on kernels without the field.
        reason: Option<(u32, String)>,
    },
    ReceiveReset,
    Retransmit {
        state: Option<TcpState>,
    },
    SetState {
        old: Option<TcpState>,
        new: Option<TcpState>,
    },
    ErrorReport {
        /// Positive errno; the kernel side reports only 110 (ETIMEDOUT).
        error: i32,
    },
    DestroySock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel socket address; 0 when the event has none.
    pub sk: u64,
    /// Kernel address of the segment (sent resets, retransmits); a retransmit of the same
    /// segment reuses it.
    pub skb: u64,
    /// The segment that triggered a sent reset, when the kernel side could read it.
    pub trigger: Option<Segment>,
    pub endpoints: Endpoints,
    pub payload: Payload,
    pub current: Task,
    /// The task last seen using the socket in process context, per the kernel side's map.
    pub owner: Option<Task>,
    /// Network namespace inode of the socket; 0 when unknown.
    pub netns: u32,
    /// The sending socket's condition, on kernels that give no reset reason.
    pub facts: Option<SockFacts>,
}

/// What a socket looked like the moment it sent a reset, read where the kernel names no reason:
/// the facts that tell one application abort from another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockFacts {
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
}

pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_ACK: u8 = 0x10;
