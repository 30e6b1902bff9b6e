//! Types shared by the kernel programs (`rsttrace-ebpf`) and the agent (`rsttrace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding and fixed sizes, because the same bytes
//! are written by BPF code and read by userspace. Sizes are pinned with const assertions so a
//! change on one side cannot silently shift the other.
#![no_std]

/// Which tracepoint produced an event. The discriminant doubles as the index into
/// [`KernelConfig::layouts`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SendReset = 0,
    ReceiveReset = 1,
    SetState = 2,
    ErrorReport = 3,
}

impl EventKind {
    pub const COUNT: usize = 4;
    pub const ALL: [EventKind; Self::COUNT] = [EventKind::SendReset, EventKind::ReceiveReset, EventKind::SetState, EventKind::ErrorReport];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    /// `(group, name)` of the tracepoint in tracefs.
    pub const fn tracepoint(self) -> (&'static str, &'static str) {
        match self {
            EventKind::SendReset => ("tcp", "tcp_send_reset"),
            EventKind::ReceiveReset => ("tcp", "tcp_receive_reset"),
            EventKind::SetState => ("sock", "inet_sock_set_state"),
            EventKind::ErrorReport => ("sock", "inet_sk_error_report"),
        }
    }

    /// Name of the BPF program attached to this tracepoint.
    pub const fn program(self) -> &'static str {
        match self {
            EventKind::SendReset => "tcp_send_reset",
            EventKind::ReceiveReset => "tcp_receive_reset",
            EventKind::SetState => "inet_sock_set_state",
            EventKind::ErrorReport => "inet_sk_error_report",
        }
    }
}

/// Marks a field the running kernel's tracepoint does not have.
pub const NO_FIELD: u16 = u16::MAX;

/// Bytes of a tracepoint record copied into an event. The largest record we attach to is
/// 88 bytes on 6.12/6.18; the slack covers PREEMPT_RT's larger common header and new fields.
pub const RECORD_MAX: usize = 128;

/// Where the fields the kernel programs themselves need sit in one tracepoint's record,
/// resolved by the agent from the tracefs format file before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    /// Bytes of the record to copy (at most [`RECORD_MAX`]); 0 = tracepoint not attached.
    pub record_size: u16,
    pub skaddr: u16,
    pub skbaddr: u16,
    pub state: u16,
    pub oldstate: u16,
    pub newstate: u16,
    pub protocol: u16,
    /// Host-order `family`, `sport` (local) and `dport` (remote) fields of the older layouts.
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    /// `sockaddr` blobs of the current `tcp_send_reset` layout (local, remote): family at +0,
    /// network-order port at +2.
    pub saddr_blob: u16,
    pub daddr_blob: u16,
    /// `inet_sk_error_report.error`
    pub error: u16,
    /// The older layouts' address arrays: IPv4 (`saddr[4]`, `daddr[4]`) and IPv6 (`saddr_v6`,
    /// `daddr_v6`), local end first; a 4-tuple's key is built from them (see [`TupleKey`]).
    pub saddr4: u16,
    pub daddr4: u16,
    pub saddr6: u16,
    pub daddr6: u16,
    /// `tcp_send_reset.reason` (Linux 6.10+): the agent reads it, and a typed program writes it.
    pub reason: u16,
}

impl TracepointLayout {
    pub const EMPTY: Self = Self {
        record_size: 0,
        skaddr: NO_FIELD,
        skbaddr: NO_FIELD,
        state: NO_FIELD,
        oldstate: NO_FIELD,
        newstate: NO_FIELD,
        protocol: NO_FIELD,
        family: NO_FIELD,
        sport: NO_FIELD,
        dport: NO_FIELD,
        saddr_blob: NO_FIELD,
        daddr_blob: NO_FIELD,
        error: NO_FIELD,
        saddr4: NO_FIELD,
        daddr4: NO_FIELD,
        saddr6: NO_FIELD,
        daddr6: NO_FIELD,
        reason: NO_FIELD,
    };
}

/// Where the `tcp:tcp_destroy_sock` record keeps the socket's address: the hook that names the
/// process letting go of a socket nobody was seen acting on (see [`Released`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseLayout {
    pub skaddr: u16,
    pub _pad: u16,
}

impl ReleaseLayout {
    pub const NONE: Self = Self { skaddr: NO_FIELD, _pad: 0 };
}

/// The `kind` of a [`Released`] ring-buffer item: past every [`EventKind`], so that the first
/// word of an item tells the two apart.
pub const RELEASED_ITEM: u32 = 0x100;

/// A socket that reset with no owner on record while a process held its file (its event carried
/// `sk_inode`), let go of since: the task whose `close()` (or exit) released it last. The owner
/// of a server's socket that a peer reset while the server waited in `recv()`, and that it
/// closed at once, before the agent could look for its holder.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Released {
    /// [`RELEASED_ITEM`].
    pub kind: u32,
    pub _pad: u32,
    /// The socket file's inode, as the reset's event carried it.
    pub inode: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the upper 32 bits.
    pub pid_tgid: u64,
    /// The releasing thread's `comm`.
    pub comm: [u8; 16],
    /// Its process's own name (the group leader's `comm`); zeros where the thread is the leader
    /// or it could not be read.
    pub process_comm: [u8; 16],
}

/// Sockets awaited at most (their resets found no owner while a process held them).
pub const AWAITED_RELEASES: u32 = 4096;

/// The records the BTF-typed programs write in place of the classic tracepoints' own, laid out
/// as every kernel we know lays those out (6.1 to 6.18): the agent uses a typed program only
/// where this kernel's record has exactly this layout, so that one decoder reads both.
pub const SET_STATE_SHAPE: TracepointLayout = TracepointLayout {
    record_size: 72,
    skaddr: 8,
    oldstate: 16,
    newstate: 20,
    sport: 24,
    dport: 26,
    family: 28,
    protocol: 30,
    saddr4: 32,
    daddr4: 36,
    saddr6: 40,
    daddr6: 56,
    ..TracepointLayout::EMPTY
};

/// `tcp:tcp_receive_reset` (its `sock_cookie` at 64, which nothing reads, is written as 0).
pub const RECEIVE_RESET_SHAPE: TracepointLayout = TracepointLayout {
    record_size: 72,
    skaddr: 8,
    sport: 16,
    dport: 18,
    family: 20,
    saddr4: 22,
    daddr4: 26,
    saddr6: 30,
    daddr6: 46,
    ..TracepointLayout::EMPTY
};

/// `tcp:tcp_send_reset` as Linux 6.10+ lays it out: a reason, and `sockaddr` blobs that come from
/// the socket where it is full and from the segment otherwise (the tracepoint then fires without
/// a socket too). The older layout keeps the classic program.
pub const SEND_RESET_SHAPE: TracepointLayout = TracepointLayout {
    record_size: 88,
    skbaddr: 8,
    skaddr: 16,
    state: 24,
    reason: 28,
    saddr_blob: 32,
    daddr_blob: 60,
    ..TracepointLayout::EMPTY
};

pub const ERROR_REPORT_SHAPE: TracepointLayout = TracepointLayout {
    record_size: 60,
    error: 8,
    sport: 12,
    dport: 14,
    family: 16,
    protocol: 18,
    saddr4: 20,
    daddr4: 24,
    saddr6: 28,
    daddr6: 44,
    ..TracepointLayout::EMPTY
};

/// Where a `struct sock` keeps what the BTF-typed (`tp_btf`) programs read from it directly, from
/// the running kernel's BTF; `NO_OFFSET` where BTF lacks one (those programs are then not used).
/// Each is read on its own from the read-only global, so the verifier knows it as a constant: a
/// typed pointer may only move by a known amount.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypedSockFields {
    /// `sock.sk_protocol` (u16)
    pub protocol: u32,
    /// `sock.sk_err` (int)
    pub err: u32,
    /// `sock_common.skc_family` (u16)
    pub family: u32,
    /// `inet_sock.inet_sport`: the local port, network order (u16), which stays when the
    /// kernel releases the port before the state change to CLOSE. Beyond `struct sock`: read
    /// through the `tcp_sock` pointer `bpf_skc_to_tcp_sock` returns.
    pub sport: u32,
    /// `sock_common.skc_num`: the same port, host order, in `struct sock` (read without a helper
    /// call) but zeroed when the port is released. Optional: without it `sport` is read.
    pub num: u32,
    /// `sock_common.skc_dport`: the remote port, network order (u16)
    pub dport: u32,
    /// `sock_common.skc_rcv_saddr`, `skc_daddr` (IPv4, 4 bytes)
    pub rcv_saddr: u32,
    pub daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`, `skc_v6_daddr` (16 bytes)
    pub v6_rcv_saddr: u32,
    pub v6_daddr: u32,
    /// `sock_common.skc_state` (u8)
    pub state: u32,
    /// `tcp_sock.total_retrans` (u32), read through the `tcp_sock` pointer as `sport` is.
    pub total_retrans: u32,
    /// The socket's cgroup v2 id: `sock.sk_cgrp_data.cgroup` (a `struct cgroup *`), its `kn`
    /// (a `struct kernfs_node *`) and that node's `id` (u64). Optional: without them the id is 0.
    pub cgroup: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    /// The socket's network namespace: `sock_common.skc_net.net` (a `struct net *`) and that
    /// namespace's `ns.inum` (u32). Optional: without them it is read through helpers.
    pub net: u32,
    pub net_inum: u32,
    /// Who holds a socket that sends a reset and what it carried (`emit::holder_facts` and
    /// `exchange_facts`, without a helper read each): `sock.sk_socket` (a `struct socket *`),
    /// `sock_common.skc_flags` (unsigned long), `sock.sk_shutdown` (u8), and the `tcp_sock`
    /// counts `data_segs_in`, `data_segs_out`, `snd_una`, `snd_nxt` (u32 each). Optional: without
    /// any of them a sent reset reads them through helpers.
    pub socket: u32,
    pub flags: u32,
    pub shutdown: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    /// What `tcp_close()` checks before an abortive close's RST: `sock.sk_lingertime` (long),
    /// and the `tcp_sock`'s `rcv_nxt` and `copied_seq` (u32 each: what arrived and what the
    /// application read). Optional: without them no abort is counted in the kernel.
    pub lingertime: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    /// `tcp_sock.linger2` (int): TCP_LINGER2, negative to reset an orphan reaching FIN_WAIT2.
    /// Optional: without it `FACT_LINGER2_NEGATIVE` is never set.
    pub linger2: u32,
}

impl TypedSockFields {
    pub const UNKNOWN: Self = Self {
        protocol: NO_OFFSET,
        err: NO_OFFSET,
        family: NO_OFFSET,
        sport: NO_OFFSET,
        num: NO_OFFSET,
        dport: NO_OFFSET,
        rcv_saddr: NO_OFFSET,
        daddr: NO_OFFSET,
        v6_rcv_saddr: NO_OFFSET,
        v6_daddr: NO_OFFSET,
        state: NO_OFFSET,
        total_retrans: NO_OFFSET,
        cgroup: NO_OFFSET,
        cgroup_kn: NO_OFFSET,
        kn_id: NO_OFFSET,
        net: NO_OFFSET,
        net_inum: NO_OFFSET,
        socket: NO_OFFSET,
        flags: NO_OFFSET,
        shutdown: NO_OFFSET,
        data_segs_in: NO_OFFSET,
        data_segs_out: NO_OFFSET,
        snd_una: NO_OFFSET,
        snd_nxt: NO_OFFSET,
        lingertime: NO_OFFSET,
        rcv_nxt: NO_OFFSET,
        copied_seq: NO_OFFSET,
        linger2: NO_OFFSET,
    };

    /// Every offset the typed programs need is known (the cgroup's are optional).
    pub fn complete(&self) -> bool {
        [
            self.protocol,
            self.err,
            self.family,
            self.sport,
            self.dport,
            self.rcv_saddr,
            self.daddr,
            self.v6_rcv_saddr,
            self.v6_daddr,
            self.state,
            self.total_retrans,
        ]
        .iter()
        .all(|o| *o != NO_OFFSET)
    }
}

/// Offsets (from BTF) in `struct sk_buff` for the typed `tcp_send_reset` program, which reads
/// where the segment's headers lie and its device's namespace straight from its typed pointer
/// (five helper calls fewer), each read on its own as `TypedSockFields`' are. `NO_OFFSET` where
/// BTF lacked one: the reset then goes without what it locates (the helper reads need the same
/// offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypedSkbFields {
    /// `sk_buff.head` (unsigned char *)
    pub head: u32,
    /// `sk_buff.transport_header`, `network_header` (u16 offsets from `head`)
    pub transport_header: u32,
    pub network_header: u32,
    /// `sk_buff.dev` (a `struct net_device *`) and that device's `nd_net` (its `struct net *`):
    /// the namespace of a segment no socket took, with `TypedSockFields::net_inum`.
    pub dev: u32,
    pub dev_net: u32,
}

impl TypedSkbFields {
    pub const UNKNOWN: Self = Self { head: NO_OFFSET, transport_header: NO_OFFSET, network_header: NO_OFFSET, dev: NO_OFFSET, dev_net: NO_OFFSET };
}

/// Offsets (from BTF) for the iterator that finds which process holds a socket's file
/// (`holders.rs` on both sides), each read on its own as `TypedSockFields`' are.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HolderFields {
    /// `file.f_inode` (a `struct inode *`)
    pub file_inode: u32,
    /// `inode.i_ino` (unsigned long) and `inode.i_mode` (umode_t, u16)
    pub inode_ino: u32,
    pub inode_mode: u32,
    /// `task_struct.tgid` (pid_t): the process
    pub task_tgid: u32,
}

impl HolderFields {
    pub const UNKNOWN: Self = Self { file_inode: NO_OFFSET, inode_ino: NO_OFFSET, inode_mode: NO_OFFSET, task_tgid: NO_OFFSET };

    pub fn complete(&self) -> bool {
        [self.file_inode, self.inode_ino, self.inode_mode, self.task_tgid].iter().all(|o| *o != NO_OFFSET)
    }
}

/// One socket file the holder iterator found: the process holding it and the file's inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldSocket {
    pub inode: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// Socket files one run of the holder iterator looks for at most.
pub const WANTED_FILES: u32 = 1024;

/// Everything the kernel programs are told at load time (set as one small global per part).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    pub layouts: [TracepointLayout; EventKind::COUNT],
    pub release: ReleaseLayout,
    pub offsets: StructOffsets,
    pub sock: SockOffsets,
    pub filter: Filter,
}

/// Most ports one `-L`/`-D` list may name (the kernel checks each in a fixed loop).
pub const MAX_FILTER_PORTS: usize = 8;

/// Filters applied in the kernel, so events outside them never reach the ring buffer. An event
/// the kernel cannot judge (owner not known yet, no port in the record) passes, and the agent
/// applies the same filter exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Owner process (tgid); 0 = any.
    pub pid: u32,
    /// 2 (AF_INET) or 10 (AF_INET6); 0 = any.
    pub family: u16,
    pub lport_count: u8,
    pub rport_count: u8,
    /// Owner's cgroup id (cgroup v2 inode), or that of its ancestor at `cgroup_level`; 0 = any.
    pub cgroup: u64,
    pub lports: [u16; MAX_FILTER_PORTS],
    pub rports: [u16; MAX_FILTER_PORTS],
    /// The depth of `cgroup` in the cgroup v2 hierarchy (its root: 0): an owner in it or in a
    /// cgroup below it has it as its ancestor at this level.
    pub cgroup_level: u32,
    pub _pad: u32,
}

impl Filter {
    pub const ANY: Self = Self {
        pid: 0,
        family: 0,
        lport_count: 0,
        rport_count: 0,
        cgroup: 0,
        lports: [0; MAX_FILTER_PORTS],
        rports: [0; MAX_FILTER_PORTS],
        cgroup_level: 0,
        _pad: 0,
    };
}

/// Offsets (from BTF) of the socket fields that say why a reset was sent on kernels whose
/// `tcp_send_reset` has no reason: read only there. `NO_OFFSET` when BTF could not tell.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `sock.__sk_common.skc_state`
    pub state: u32,
    /// `sock.__sk_common.skc_flags` (`sk_flags`; bit `SOCK_LINGER`)
    pub flags: u32,
    /// `sock.sk_lingertime`
    pub lingertime: u32,
    /// `sock.sk_ack_backlog`, `sock.sk_max_ack_backlog`
    pub ack_backlog: u32,
    pub max_ack_backlog: u32,
    /// `tcp_sock.rcv_nxt`, `tcp_sock.copied_seq`: what arrived and what the application read.
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    /// `tcp_sock.snd_una`, `tcp_sock.snd_nxt`: the window an acceptable ACK falls in.
    pub snd_una: u32,
    pub snd_nxt: u32,
    /// `net.ipv4.sysctl_tcp_abort_on_overflow` (a u8), relative to `struct net`.
    pub abort_on_overflow: u32,
    /// 1 when the kernel side should read these facts (no `reason` field on this kernel).
    pub active: u32,
    /// `sock.sk_socket`: NULL for a socket no process holds (a listener's child never accepted,
    /// or one already closed). Read on every kernel.
    pub socket: u32,
    /// `sock.sk_err`: the error pending for the owner (ECONNABORTED once a tool destroyed it).
    pub err: u32,
    /// `sock.sk_shutdown`: close() sets both directions before it sends an abort's RST;
    /// connect(AF_UNSPEC) leaves it as the application had it.
    pub shutdown: u32,
    /// `inet_connection_sock.icsk_retransmits`: consecutive timeouts of the oldest unacknowledged
    /// segment (the SYN, in SYN_SENT); `tcp_done()` leaves it for the error report that follows.
    pub icsk_retransmits: u32,
    /// `inet_connection_sock.icsk_probes_out` (u8): zero-window (or keepalive) probes sent since
    /// the peer last acknowledged anything; every acceptable ACK, a probe's answer too, resets it.
    pub icsk_probes_out: u32,
    /// `inet_connection_sock.icsk_user_timeout` (u32): the socket's TCP_USER_TIMEOUT in ms, 0 unset.
    pub icsk_user_timeout: u32,
    /// `inet_connection_sock.icsk_probes_tstamp` (u32): when the persist timer began probing a
    /// zero window, 0 when it is not (a retransmission timeout never sets it).
    pub icsk_probes_tstamp: u32,
    /// `tcp_sock.rcv_tstamp` (u32 jiffies): when the peer last acknowledged anything (a window
    /// probe's answer too).
    pub rcv_tstamp: u32,
    /// `tcp_sock.total_retrans`: every retransmission of the connection.
    pub total_retrans: u32,
    /// `tcp_sock.data_segs_out`: segments sent with data. A connection dropped in a connect
    /// race sent none.
    pub data_segs_out: u32,
    /// `tcp_sock.data_segs_in`: segments received with data (an answer came).
    pub data_segs_in: u32,
    /// `socket.file`, `file.f_inode`, `inode.i_ino`: the inode number of the socket's file, which
    /// `/proc/PID/fd` shows as `socket:[N]`: how the agent finds the holder of a socket whose
    /// owner the kernel side never saw.
    pub socket_file: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    /// `tcp_sock.linger2` (int): see `TypedSockFields::linger2`.
    pub linger2: u32,
    /// Keeps the filter after these offsets aligned in `KernelConfig`.
    pub _pad: u32,
}

impl SockOffsets {
    pub const UNKNOWN: Self = Self {
        state: NO_OFFSET,
        flags: NO_OFFSET,
        lingertime: NO_OFFSET,
        ack_backlog: NO_OFFSET,
        max_ack_backlog: NO_OFFSET,
        rcv_nxt: NO_OFFSET,
        copied_seq: NO_OFFSET,
        snd_una: NO_OFFSET,
        snd_nxt: NO_OFFSET,
        abort_on_overflow: NO_OFFSET,
        active: 0,
        socket: NO_OFFSET,
        err: NO_OFFSET,
        shutdown: NO_OFFSET,
        icsk_retransmits: NO_OFFSET,
        icsk_probes_out: NO_OFFSET,
        icsk_user_timeout: NO_OFFSET,
        icsk_probes_tstamp: NO_OFFSET,
        rcv_tstamp: NO_OFFSET,
        total_retrans: NO_OFFSET,
        data_segs_out: NO_OFFSET,
        data_segs_in: NO_OFFSET,
        socket_file: NO_OFFSET,
        file_inode: NO_OFFSET,
        inode_ino: NO_OFFSET,
        linger2: NO_OFFSET,
        _pad: 0,
    };
}

/// `Event::sk_facts` bits: the socket's condition when it sent a reset. The reason's stand-ins
/// (unread data, a full accept queue, the ACK's window) are read on kernels without reasons;
/// the others, each marked so, on every kernel.
/// SO_LINGER is on with a zero timeout. Read from CLOSE on every kernel (close() chose an abort:
/// the reason then says only whether unread data came first).
pub const FACT_LINGER0: u16 = 1;
/// More than one sequence number arrived that the application never read (data, not just a FIN).
pub const FACT_UNREAD: u16 = 2;
/// Exactly one unread sequence number: a lone FIN, or one byte.
pub const FACT_UNREAD_ONE: u16 = 4;
/// A listener's accept queue is over its limit and its namespace has tcp_abort_on_overflow on
/// (or BTF did not say where to read it): the only way a full queue makes a listener reset.
pub const FACT_ACCEPT_QUEUE_FULL: u16 = 8;
/// The triggering segment's ACK falls inside snd_una..=snd_nxt (so not what the stack refused).
pub const FACT_ACK_IN_WINDOW: u16 = 16;
/// No process holds the socket (`sk_socket` NULL): a listener's child never accepted, or a
/// socket its application already closed. Read on every kernel.
pub const FACT_ORPHAN: u16 = 32;
/// The socket's pending error is ECONNABORTED: something destroyed it (`ss -K`, SOCK_DESTROY,
/// `bpf_sock_destroy`). Read on every kernel; set before the reset only where `tcp_abort()`
/// reports its error first (6.1 before 6.1.132); later kernels report it after, as an error
/// report the agent pairs with the reset.
pub const FACT_DESTROYED: u16 = 64;
/// The peer's FIN arrived (`SOCK_DONE`): it had finished its side. Read on every kernel.
pub const FACT_PEER_CLOSED: u16 = 128;
/// A reset from CLOSE whose socket close() did not shut (`sk_shutdown` not both directions):
/// connect(AF_UNSPEC) disconnected it and the application keeps it.
pub const FACT_KEPT: u16 = 256;
/// From CLOSE, on a connection this host opened: data went both ways and everything sent was
/// acknowledged (a request answered, nothing in flight). Read on every kernel.
pub const FACT_EXCHANGED: u16 = 512;
/// From CLOSE, on a connection this host opened: no data went either way (a connect probe).
pub const FACT_NOTHING_EXCHANGED: u16 = 1024;
/// From CLOSE: the task running was exiting (`PF_EXITING`), so a process that ended with the
/// socket open had it closed for it (killed, crashed, or exited without closing);
/// `Event::closer_exit_code` says how. Read on every kernel where BTF names the fields.
pub const FACT_CLOSER_EXITING: u16 = 2048;
/// From CLOSE: the socket had TCP_LINGER2 < 0, which makes the stack reset an orphan the moment
/// it reaches FIN_WAIT2 (the kernel then names `TCP_ABORT_ON_DATA`, data or not).
pub const FACT_LINGER2_NEGATIVE: u16 = 4096;

/// Kernel struct member offsets from BTF; `NO_OFFSET` when BTF could not tell.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructOffsets {
    /// `sock.__sk_common.skc_net`
    pub sock_net: u32,
    /// `net.ns.inum`
    pub net_inum: u32,
    /// `sk_buff.dev`
    pub skb_dev: u32,
    /// `net_device.nd_net`
    pub dev_net: u32,
    /// `sk_buff.head`
    pub skb_head: u32,
    /// `sk_buff.transport_header` (a u16 offset from `head`)
    pub skb_transport_header: u32,
    /// `sk_buff.network_header` (a u16 offset from `head`)
    pub skb_network_header: u32,
    /// `sock.sk_cgrp_data.cgroup`, `cgroup.kn`, `kernfs_node.id`: the cgroup v2 the socket was
    /// created in, and its id (the inode number of its directory).
    pub sock_cgroup: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    /// `task_struct.group_leader`, `task_struct.comm`: a thread's process's own name.
    pub task_group_leader: u32,
    pub task_comm: u32,
    /// `task_struct.flags`, `task_struct.exit_code`: whether a task is exiting, and how.
    pub task_flags: u32,
    pub task_exit_code: u32,
}

impl StructOffsets {
    pub const UNKNOWN: Self = Self {
        sock_net: NO_OFFSET,
        net_inum: NO_OFFSET,
        skb_dev: NO_OFFSET,
        dev_net: NO_OFFSET,
        skb_head: NO_OFFSET,
        skb_transport_header: NO_OFFSET,
        skb_network_header: NO_OFFSET,
        sock_cgroup: NO_OFFSET,
        cgroup_kn: NO_OFFSET,
        kn_id: NO_OFFSET,
        task_group_leader: NO_OFFSET,
        task_comm: NO_OFFSET,
        task_flags: NO_OFFSET,
        task_exit_code: NO_OFFSET,
    };
}

pub const NO_OFFSET: u32 = u32::MAX;

impl KernelConfig {
    pub const EMPTY: Self = Self {
        layouts: [TracepointLayout::EMPTY; EventKind::COUNT],
        release: ReleaseLayout::NONE,
        offsets: StructOffsets::UNKNOWN,
        sock: SockOffsets::UNKNOWN,
        filter: Filter::ANY,
    };
}

const _: () = assert!(core::mem::size_of::<TracepointLayout>() == 36);
const _: () = assert!(core::mem::size_of::<Filter>() == 56);
// Layouts, the release layout, StructOffsets, SockOffsets, the filter: no padding between them
// (the parts go to the kernel one by one, each without padding, and the filter's u64 falls aligned).
const _: () = assert!(core::mem::size_of::<KernelConfig>() == 36 * EventKind::COUNT + 4 + 48 + 116 + 56);

/// The task a socket belongs to, as last seen acting on it in process context.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub tgid: u32,
    pub pid: u32,
    pub comm: [u8; 16],
    /// cgroup v2 id of the owner, read in its own context; only under a cgroup filter (its only
    /// use), 0 otherwise.
    pub cgroup: u64,
    /// The socket's network namespace inode, read once when the owner is learned (it never
    /// changes), so events of an owned socket skip the two pointer reads; 0 when unknown.
    pub netns: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Owner>() == 40);

impl Owner {
    /// No owner known. The idle task (tgid 0) never makes a socket's system call, so a zero
    /// tgid is free to mean this. (The kernel side passes this instead of `Option<Owner>`:
    /// a `None` carries an undefined payload, and older verifiers refuse a program that
    /// copies undefined registers.)
    pub const UNKNOWN: Self = Self { tgid: 0, pid: 0, comm: [0; 16], cgroup: 0, netns: 0, _pad: 0 };

    pub fn is_known(&self) -> bool {
        self.tgid != 0
    }
}

/// What the kernel side keeps of one full socket, from connect() (or the first time its owner
/// is seen) to its CLOSE, and ships with the socket's reset: the facts a verdict needs that the
/// socket itself no longer shows then. Nothing of it crosses the ring buffer otherwise.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    pub owner: Owner,
    /// connect() time (`bpf_ktime_get_ns`); 0 for a socket this host did not open.
    pub opened_ns: u64,
    /// When a connection this host opened completed its handshake; 0 before, or not opened here.
    pub established_ns: u64,
    /// RSTs the socket sent while it lived (a SYN_SENT socket refusing a bad answer goes on
    /// connecting: its later timeout is that story's end, not an abort of its own).
    pub resets_sent: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SockRecord>() == 64);

/// A connection this host opened, as remembered under its owner: the candidate sibling of a
/// connect race (two ports, happy eyeballs) when one of the two is aborted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaceEntry {
    pub sk: u64,
    pub opened_ns: u64,
    pub established_ns: u64,
    /// Remote address: 4 bytes for AF_INET, 16 for AF_INET6 (IPv4-mapped included).
    pub raddr: [u8; 16],
    /// AF_INET or AF_INET6; 0 for an empty entry.
    pub family: u16,
    /// Remote port, host order.
    pub rport: u16,
    pub _pad: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<RaceEntry>() == 48);

impl RaceEntry {
    pub const EMPTY: Self = Self { sk: 0, opened_ns: 0, established_ns: 0, raddr: [0; 16], family: 0, rport: 0, _pad: [0; 4] };
}

/// `Event::flags` bits.
pub const FLAG_OWNER_KNOWN: u32 = 1;
/// The `trigger_*` fields describe the segment that triggered a sent reset.
pub const FLAG_TRIGGER_KNOWN: u32 = 2;
/// `sk_facts` was read from the socket: who holds it (`FACT_ORPHAN`, `FACT_DESTROYED`), whether
/// the peer had closed (`FACT_PEER_CLOSED`) and, from CLOSE, whether close() shut it
/// (`FACT_KEPT`) on every kernel; the reason's stand-ins where `FLAG_STAND_INS_READ` says so.
pub const FLAG_FACTS_KNOWN: u32 = 4;
/// The kernel gives no reason for this reset, and `sk_facts` holds the socket's condition that
/// stands in for one.
pub const FLAG_STAND_INS_READ: u32 = 64;
/// A reset seen by the kprobe on `tcp_v{4,6}_send_reset` where the tracepoint stays silent (no
/// socket, or a TIME_WAIT or request socket, before 6.10): no record; the addresses are the
/// trigger's, reversed, and `sk_state` is the socket's state (0 without one).
pub const FLAG_NO_RECORD: u32 = 8;
/// `sk_state` holds the socket's state read at that instant (received resets, whose records
/// carry none).
pub const FLAG_STATE_READ: u32 = 32;
/// `earlier` is the owner of the last connection this host knew on the same 4-tuple (a reset
/// with no full socket, from TIME_WAIT, or answered by a listener).
pub const FLAG_EARLIER_OWNER: u32 = 128;
/// `sibling` holds another connection the owner opened to the same peer: the same remote
/// address, or the same remote port (an aborted connection this host opened that sent no data).
pub const FLAG_SIBLING: u32 = 256;
/// ... and that connection is still up.
pub const FLAG_SIBLING_OPEN: u32 = 512;
/// A socket on this host is the other end of this connection, open when the RST came or closed
/// a moment before (received resets).
pub const FLAG_PEER_LOCAL: u32 = 1024;
/// An earlier connection on this host used the same 4-tuple (a reset sent in SYN_SENT).
pub const FLAG_TUPLE_REUSED: u32 = 2048;
/// `retransmits` was read from the socket.
pub const FLAG_RETRANSMITS_READ: u32 = 4096;
/// `closed_from` is the state the socket left for CLOSE just before this event.
pub const FLAG_CLOSED_FROM: u32 = 8192;

/// `Event::flags`: `peer` holds what `--network-evidence` sampled of the peer's segments on this
/// socket (received resets).
pub const FLAG_PEER_SAMPLED: u32 = 16384;
/// A state change to CLOSE of a socket its process had closed (its data or FIN still
/// unacknowledged) whose retransmission timer gave up (`tcp_orphan_retries`): the kernel sends no
/// RST and, since tcp_done_with_error() (6.10, backported to some older series), reports no
/// error for it, so this change is the only sure sign of it.
pub const FLAG_ORPHAN_TIMED_OUT: u32 = 32768;
/// `current_process_comm` holds the name of the process `current` is a thread of.
pub const FLAG_PROCESS_COMM: u32 = 65536;
/// A RST received in SYN_SENT that this host's own stack sent, refusing the SYN (no socket took
/// it): the kernel side saw that RST go out, where the agent may not have (it was counted in the
/// kernel past `--max-rate`).
pub const FLAG_REFUSED_HERE: u32 = 131072;
/// A RST received by a connection past its handshake that this host's other end of the
/// connection sent, closing with SO_LINGER 0: noted by the kernel side at that end's CLOSE, before
/// the RST went out, whether the RST was then counted in the kernel past `--max-rate` (and the
/// agent never saw it) or crossed.
pub const FLAG_ABORTED_HERE: u32 = 262144;
/// `earlier_sk` is the socket of the last connection this host knew on the same 4-tuple (a
/// reset with no full socket, from TIME_WAIT, or answered by a listener): which connection's
/// end the agent may take this RST for, and not a later one's on the same 4-tuple.
pub const FLAG_EARLIER_SK: u32 = 524288;
/// ... and a reset or an error ended that connection (a RST sent or received, a timer giving up),
/// where a later connection on the 4-tuple that ended well would have cleared it.
pub const FLAG_EARLIER_ENDED_BADLY: u32 = 1048576;
/// A reset sent in SYN_SENT: the other end of the 4-tuple is a socket of this host whose note
/// says its connection is still open (a half-open connection: the peer never learned that an
/// earlier one on the 4-tuple ended), where `FLAG_TUPLE_REUSED` alone may be a TIME_WAIT.
pub const FLAG_PEER_HOLDS_OPEN: u32 = 2097152;
/// A timeout (error report or orphan's): `Event::user_timeout_ms`, `probes_out` and `probing`
/// were read from the socket.
pub const FLAG_TIMEOUT_READ: u32 = 4194304;
/// `Event::probing`: the persist timer was probing a zero window (`icsk_probes_tstamp` set).
pub const PROBING_ZERO_WINDOW: u8 = 1;
/// `Event::probing`: the peer acknowledged something after the probing began
/// (`rcv_tstamp` after `icsk_probes_tstamp`): it answered a probe.
pub const PROBING_ANSWERED: u8 = 2;

/// Where `tcp:tcp_probe` keeps the socket and the segment (6.12 and 6.18 have both, 6.1 neither); `NO_FIELD`
/// when this kernel's record lacks them (then a kprobe on `tcp_rcv_established` samples instead).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpProbeLayout {
    pub skaddr: u16,
    pub skbaddr: u16,
    /// The socket's local and remote ports (host order) and the segment's payload length: what
    /// tells a data segment of a socket already sampled, skipped without a probe read.
    pub sport: u16,
    pub dport: u16,
    pub data_len: u16,
}

impl TcpProbeLayout {
    pub const NONE: Self = Self { skaddr: NO_FIELD, skbaddr: NO_FIELD, sport: NO_FIELD, dport: NO_FIELD, data_len: NO_FIELD };
}

/// What the kernel side sampled of one socket's incoming segments (`--network-evidence`): the
/// hop count (IPv4 TTL, IPv6 hop limit) and IPv4 IP ID the peer's segments arrived with, and the
/// same of the last RST that arrived. One slot per socket in a hash-indexed array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSample {
    /// The socket; with the ports it tells a slot's socket from a later one at the same address.
    pub sk: u64,
    pub lport: u16,
    pub rport: u16,
    pub evidence: PeerEvidence,
    /// Segments seen (sampled or skipped), saturating.
    pub seen: u32,
    /// When the last RST arrived (`bpf_ktime_get_ns`); 0: none.
    pub rst_ns: u64,
}

const _: () = assert!(core::mem::size_of::<PeerSample>() == 40);

/// Slots of the kernel side's `PEERS` array of samples (a power of two: it is indexed by a hash).
pub const PEER_SLOTS: u32 = 65536;

/// The part of a [`PeerSample`] a received reset carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerEvidence {
    /// Non-RST segments sampled (saturating).
    pub segments: u32,
    pub ttl_min: u8,
    pub ttl_max: u8,
    pub ttl_last: u8,
    /// Hop count of the RST; 0 when the RST was not seen (it came in a state other than
    /// ESTABLISHED, where the per-segment hook does not run).
    pub rst_ttl: u8,
    /// IPv4 only: the IP ID of the last segment and of the RST.
    pub ip_id_last: u16,
    pub rst_ip_id: u16,
    /// 4 or 6: the IP version of the segments.
    pub ip_version: u8,
    pub _pad: u8,
    /// Data segments skipped since the last one sampled (saturating): `ip_id_last` is that
    /// much behind the peer's sequence.
    pub unsampled: u16,
}

const _: () = assert!(core::mem::size_of::<PeerEvidence>() == 16);

impl PeerEvidence {
    pub const EMPTY: Self = Self {
        segments: 0,
        ttl_min: 0,
        ttl_max: 0,
        ttl_last: 0,
        rst_ttl: 0,
        ip_id_last: 0,
        rst_ip_id: 0,
        ip_version: 0,
        _pad: 0,
        unsampled: 0,
    };
}

/// One ring-buffer record: the tracepoint's raw record plus what only the kernel knows at that
/// instant (the current task, the socket's record, its network namespace, the facts read from
/// it and from what the kernel side remembers of other connections).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub kind: u32,
    pub flags: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the upper 32 bits.
    pub current_pid_tgid: u64,
    pub current_comm: [u8; 16],
    /// For a thread that is not its process's main one, the process's own name (its group
    /// leader's `comm`), read now: the process may be gone when the report is written. Valid
    /// under `FLAG_PROCESS_COMM`.
    pub current_process_comm: [u8; 16],
    /// cgroup v2 id of `current` (meaningful only where `current` is the owner).
    pub current_cgroup: u64,
    /// cgroup v2 id of the cgroup the socket was created in; 0 without a full socket or offsets.
    pub sk_cgroup: u64,
    /// Inode number of the socket's file, read only when no owner is on record and a process
    /// holds the socket; 0 otherwise.
    pub sk_inode: u64,
    /// What the kernel side kept of the socket (`FLAG_OWNER_KNOWN` for its owner; the times are
    /// 0 when unknown).
    pub sock: SockRecord,
    /// See `FLAG_EARLIER_OWNER`.
    pub earlier: Owner,
    /// See `FLAG_EARLIER_SK`.
    pub earlier_sk: u64,
    /// An error report's socket, whose record names none: the one that closed just before in the
    /// same call (0 when not found, and for every other event).
    pub closed_sk: u64,
    /// See `FLAG_SIBLING`.
    pub sibling: RaceEntry,
    /// Network namespace inode of the socket (or, without one, of the device the triggering
    /// segment arrived on); 0 when unknown.
    pub netns: u32,
    /// Received and sent resets: `tcp_sock.total_retrans`; error reports: `icsk_retransmits`
    /// (consecutive timeouts). Valid under `FLAG_RETRANSMITS_READ`.
    pub retransmits: u32,
    pub record_size: u16,
    /// The segment that triggered a sent reset (`FLAG_TRIGGER_KNOWN`): TCP flags, IP version,
    /// source port and address. A reset answered by a listener carries the listener's addresses
    /// in the tracepoint record; the real peer is only in the segment.
    pub tcp_flags: u8,
    pub trigger_ip_version: u8,
    pub trigger_sport: u16,
    pub trigger_dport: u16,
    /// Socket state for `FLAG_NO_RECORD` and `FLAG_STATE_READ` events (0: no socket).
    pub sk_state: u8,
    /// See `FLAG_CLOSED_FROM`.
    pub closed_from: u8,
    /// `FACT_*` bits, valid under `FLAG_FACTS_KNOWN`.
    pub sk_facts: u16,
    /// Under `FACT_CLOSER_EXITING`: the exiting task's `exit_code` (a signal number in the low
    /// seven bits, else the exit status above them).
    pub closer_exit_code: u32,
    /// Under `FLAG_TIMEOUT_READ`: the socket's TCP_USER_TIMEOUT (ms, 0 unset) and its probes
    /// unanswered (`icsk_probes_out`) when it timed out.
    pub user_timeout_ms: u32,
    pub probes_out: u8,
    /// `PROBING_*` bits: the persist timer was probing a zero window, and the peer answered
    /// since it began.
    pub probing: u8,
    pub _pad_probes: [u8; 2],
    pub trigger_saddr: [u8; 16],
    pub trigger_daddr: [u8; 16],
    /// See `FLAG_PEER_SAMPLED`.
    pub peer: PeerEvidence,
    pub record: [u8; RECORD_MAX],
}

pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();
const _: () = assert!(
    EVENT_SIZE == 8 + 8 + 8 + 16 + 16 + 8 + 8 + 8 + 64 + 40 + 8 + 8 + 48 + 8 + 16 + 8 + 32 + 16 + RECORD_MAX
);
const _: () = assert!(core::mem::offset_of!(Event, record) == EVENT_SIZE - RECORD_MAX);

/// Index of the single slot of the per-CPU lost-event counter.
pub const LOST_SLOT: u32 = 0;

/// What a CPU submitted to the ring buffer (`SUBMITTED`, one slot): every item, and those since
/// the reader was last woken. At exit, once the programs are detached and the ring buffer
/// drained, the agent compares the sum with what it read: an item it never read is counted lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Submitted {
    pub total: u64,
    pub since_wakeup: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Submitted>() == 16);

/// What a storm's resets share when the kernel side counts them instead of sending each across
/// the ring buffer (`rsttrace-ebpf/src/fold.rs`): past `--max-rate` on a CPU, a RST this host
/// sent to a SYN for a port nobody listens on, one a connecting socket received, one a socket
/// this host accepted sent closing with SO_LINGER 0, and one a connection this host opened
/// received in ESTABLISHED. Each is judged by what it is here (the agent asks only whether a
/// listener of this host serves a refused address); the agent turns the counts into folded
/// records.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FoldedKey {
    /// The agent's count of seconds when the kernel counted these (`FOLD_GENERATION`): the agent
    /// takes a generation only once the kernel has moved on from it, so no count is missed.
    pub generation: u32,
    /// One of the `FOLDED_` kinds below.
    pub kind: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Host order: the port of the service (a refused SYN's and an abort's local one, the remote
    /// one of a connection this host opened).
    pub port: u16,
    pub netns: u32,
    /// The socket's owner (0 for a refused SYN, which has no socket).
    pub tgid: u32,
    /// The socket's cgroup v2 id; 0 when unknown or for a refused SYN.
    pub cgroup: u64,
    /// The other end: a refused SYN's sender, the peer of a socket.
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<FoldedKey>() == 40);

/// A RST sent to a SYN no socket took ([`FoldedKey::kind`]).
pub const FOLDED_REFUSED_SYN: u8 = 1;
/// A RST a socket in SYN_SENT received ([`FoldedKey::kind`]), which no stack of this host
/// was seen to send.
pub const FOLDED_REFUSAL_RECEIVED: u8 = 2;
/// A RST a socket in SYN_SENT received that this host's stack sent, refusing its SYN.
pub const FOLDED_REFUSAL_ANSWERED_HERE: u8 = 3;
/// A RST a socket this host accepted sent from close() with SO_LINGER 0 (CLOSE, reason
/// TCP_STATE), its owner the process that closed it.
pub const FOLDED_ABORT_LINGER0: u8 = 4;
/// A RST a connection this host opened received in ESTABLISHED from a peer that is no socket of
/// this host.
pub const FOLDED_RESET_RECEIVED: u8 = 5;
/// A RST a connection this host opened received in ESTABLISHED that its other end on this host
/// sent closing with SO_LINGER 0 (counted as [`FOLDED_ABORT_LINGER0`] or sent across).
pub const FOLDED_RESET_ABORTED_HERE: u8 = 6;

/// One CPU's count of the resets under one [`FoldedKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldedCount {
    pub count: u64,
    /// `bpf_ktime_get_ns()` of the first and last one counted.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The socket's owner (thread id and name): its record's, or for an abort the task that
    /// closed it.
    pub pid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<FoldedCount>() == 48);

/// Distinct [`FoldedKey`]s the kernel side counts at once (two generations' worth); a reset
/// whose key finds the table full crosses the ring buffer as usual. A per-CPU table: 48 bytes a
/// key and CPU, 6 MiB on 128 CPUs.
pub const FOLDED_KEYS: u32 = 1024;

/// A connection's 4-tuple as the kernel side keys it: ports in host order, and of each address
/// its last four bytes (the whole IPv4 address, also IPv4-mapped; for IPv6 a hash input that the
/// stored key then confirms together with both ports).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TupleKey {
    pub lport: u16,
    pub rport: u16,
    pub laddr: u32,
    pub raddr: u32,
}

impl TupleKey {
    /// Mixed for indexing a table of `2^bits` entries: the kernel side's, and the agent's when
    /// it notes the connections older than it.
    #[inline(always)]
    pub fn hash(&self, bits: u32) -> u32 {
        let mixed = (self.laddr ^ self.raddr.rotate_left(16)) ^ (((self.lport as u32) << 16) | self.rport as u32);
        (mixed.wrapping_mul(0x9E37_79B1) >> 16) & ((1 << bits) - 1)
    }

    /// The first of the two `TUPLES` slots its note may lie in (the other is the next): a
    /// bucket of two ways (see the kernel side's `history.rs`).
    #[inline(always)]
    pub fn bucket(&self) -> u32 {
        self.hash(TUPLE_SLOT_BITS) & !1
    }

    pub fn reversed(&self) -> Self {
        Self { lport: self.rport, rport: self.lport, laddr: self.raddr, raddr: self.laddr }
    }
}

/// The last connection seen on a 4-tuple (see the kernel side's `history.rs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TupleEntry {
    pub key: TupleKey,
    /// `TUPLE_OPEN` from the handshake's completion to CLOSE; after it, the clock tick it
    /// closed at (`bpf_jiffies64`'s low 32 bits, never `TUPLE_OPEN` or 0), whose lowest bit is
    /// `TUPLE_ENDED_BADLY` (see `history::note_tuple`).
    pub open_or_closed_at: u32,
    /// The connection's socket; 0 in a slot never written, `OLDER_CONNECTION` for a connection
    /// open before rsttrace started, which the agent noted.
    pub sk: u64,
    pub owner: Owner,
}

const _: () = assert!(core::mem::size_of::<TupleEntry>() == 64);

pub const TUPLE_OPEN: u32 = 1;
/// In a closed entry's tick: a reset or an error ended the connection.
pub const TUPLE_ENDED_BADLY: u32 = 1;

pub const TUPLE_SLOT_BITS: u32 = 16;
pub const TUPLE_SLOTS: u32 = 1 << TUPLE_SLOT_BITS;
/// `TupleEntry::sk` of a connection the agent found open at its start: its socket's address is
/// not known there, and no socket's is 1.
pub const OLDER_CONNECTION: u64 = 1;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // Plain integers and arrays of them, no padding: safe to hand to the loader as bytes.
    unsafe impl aya::Pod for TracepointLayout {}
    unsafe impl aya::Pod for ReleaseLayout {}
    unsafe impl aya::Pod for TcpProbeLayout {}
    unsafe impl aya::Pod for StructOffsets {}
    unsafe impl aya::Pod for SockOffsets {}
    unsafe impl aya::Pod for TypedSockFields {}
    unsafe impl aya::Pod for HolderFields {}
    unsafe impl aya::Pod for TypedSkbFields {}
    unsafe impl aya::Pod for Filter {}
    unsafe impl aya::Pod for Owner {}
    unsafe impl aya::Pod for TupleEntry {}
    unsafe impl aya::Pod for SockRecord {}
    unsafe impl aya::Pod for FoldedKey {}
    unsafe impl aya::Pod for FoldedCount {}
    unsafe impl aya::Pod for Submitted {}
}
