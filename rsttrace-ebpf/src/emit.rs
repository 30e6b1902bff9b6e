//! Copy one tracepoint record, with context, into the ring buffer.
use core::ptr::{addr_of_mut, write_volatile};

use aya_ebpf::{
    maps::ring_buf::RingBufEntry,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, generated,
    },
    programs::TracePointContext,
    EbpfContext,
};
use rsttrace_common::{
    Event, EventKind, Filter, Owner, SockOffsets, SockRecord, StructOffsets, TracepointLayout,
    FACT_ACCEPT_QUEUE_FULL, FACT_ACK_IN_WINDOW, FACT_CLOSER_EXITING, FACT_DESTROYED, FACT_EXCHANGED, FACT_KEPT, FACT_LINGER0, FACT_LINGER2_NEGATIVE, FACT_NOTHING_EXCHANGED,
    FACT_ORPHAN, FACT_PEER_CLOSED, FACT_UNREAD, FACT_UNREAD_ONE, FLAG_ABORTED_HERE, FLAG_CLOSED_FROM,
    FLAG_EARLIER_ENDED_BADLY, FLAG_PEER_HOLDS_OPEN, FLAG_EARLIER_OWNER, FLAG_EARLIER_SK, FLAG_FACTS_KNOWN, FLAG_NO_RECORD, FLAG_ORPHAN_TIMED_OUT, FLAG_OWNER_KNOWN, FLAG_PEER_LOCAL, FLAG_PROCESS_COMM,
    FLAG_PEER_SAMPLED, FLAG_RETRANSMITS_READ, FLAG_SIBLING, FLAG_SIBLING_OPEN, FLAG_STAND_INS_READ,
    FLAG_REFUSED_HERE, FLAG_STATE_READ, FLAG_TIMEOUT_READ, FLAG_TRIGGER_KNOWN, FLAG_TUPLE_REUSED, LOST_SLOT, MAX_FILTER_PORTS, NO_FIELD,
    NO_OFFSET, OLDER_CONNECTION, PROBING_ANSWERED, PROBING_ZERO_WINDOW, RECORD_MAX,
};

use crate::{
    evidence, fold, history,
    maps::{
        CloseSlot, TupleKey, EVENTS, TUPLE_OPEN, FILTER, FILTER_ACTIVE, LAYOUT_ERROR_REPORT,
        LAYOUT_RECEIVE_RESET, LAYOUT_SEND_RESET, LAYOUT_SET_STATE, LOST, NETWORK_EVIDENCE, OFFSETS,
        SOCK_OFFSETS, SUBMITTED, WAKEUP_EVERY,
    },
    owner::{self, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT},
    release, words,
};

#[inline(always)]
pub fn layout(kind: EventKind) -> TracepointLayout {
    // `kind` is a constant at every (inlined) call site, so this match folds away.
    match kind {
        EventKind::SendReset => LAYOUT_SEND_RESET.load(),
        EventKind::ReceiveReset => LAYOUT_RECEIVE_RESET.load(),
        EventKind::SetState => LAYOUT_SET_STATE.load(),
        EventKind::ErrorReport => LAYOUT_ERROR_REPORT.load(),
    }
}

/// Read a field straight from the tracepoint record with `bpf_probe_read_kernel`; `None` when
/// this kernel's tracepoint has no such field. A helper call (several hundred ns here): the event
/// programs read their fields from the copy in the ring buffer instead (see [`Draft`]).
#[inline(always)]
pub fn probe_field<T: Copy>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == NO_FIELD {
        return None;
    }
    // SAFETY: bounded read from the tracepoint record through the probe-read helper.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// A record field read before reserving anything: a direct load from the context when the field
/// sits at `USUAL`, the offset every kernel we know gives it (a load at a literal offset, which
/// the verifier requires), else a helper read. `None` when this kernel's record has no such field.
#[inline(always)]
pub fn early_field<T: Copy, const USUAL: u16>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == USUAL {
        // SAFETY: inside the record (the agent took `offset` from this kernel's format file).
        Some(unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(USUAL as usize) as *const T) })
    } else {
        probe_field(ctx, offset)
    }
}

#[inline(always)]
pub(crate) unsafe fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: the probe-read helper turns a bad address into an error, never a fault.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The `struct net *` stored at `holder + offset`; `None` when unknown or null.
#[inline(always)]
fn net_at(holder: u64, offset: u32) -> Option<u64> {
    if holder == 0 || offset == NO_OFFSET {
        return None;
    }
    // SAFETY: probe read only.
    unsafe { read::<u64>(holder + offset as u64) }.filter(|net| *net != 0)
}

/// Network namespace inode behind a `struct net *` stored at `holder + offset`.
#[inline(always)]
fn netns_at(holder: u64, offset: u32, o: &StructOffsets) -> u32 {
    if o.net_inum == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe read only.
    net_at(holder, offset).and_then(|net| unsafe { read::<u32>(net + o.net_inum as u64) }).unwrap_or(0)
}

/// The namespace of a socket (0 when BTF lacked the offsets).
#[inline(always)]
pub fn socket_netns(sk: u64) -> u32 {
    let o = OFFSETS.load();
    netns_at(sk, o.sock_net, &o)
}

/// The id of the cgroup v2 a full socket was created in (0 when BTF lacked the offsets).
#[inline(always)]
fn socket_cgroup(sk: u64, o: &StructOffsets) -> u64 {
    if sk == 0 || o.sock_cgroup == NO_OFFSET || o.cgroup_kn == NO_OFFSET || o.kn_id == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe reads only.
    unsafe {
        let Some(cgroup) = read::<u64>(sk + o.sock_cgroup as u64).filter(|p| *p != 0) else { return 0 };
        let Some(kn) = read::<u64>(cgroup + o.cgroup_kn as u64).filter(|p| *p != 0) else { return 0 };
        read::<u64>(kn + o.kn_id as u64).unwrap_or(0)
    }
}

/// The socket's namespace; without a socket, the namespace of the device the segment came in on.
#[inline(always)]
pub(crate) fn netns_of(sk: u64, skb: u64, o: &StructOffsets) -> u32 {
    if sk != 0 {
        return netns_at(sk, o.sock_net, o);
    }
    if skb == 0 || o.skb_dev == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe read only.
    let dev = unsafe { read::<u64>(skb + o.skb_dev as u64) }.unwrap_or(0);
    netns_at(dev, o.dev_net, o)
}

/// The segment that triggered a sent reset, read from its headers.
pub(crate) struct Trigger {
    pub tcp_flags: u8,
    pub ip_version: u8,
    pub sport: u16,
    pub dport: u16,
    /// Acknowledgment number, host order.
    pub ack_seq: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// Bytes read from the network header on: an IPv6 header (40) and the 16 TCP header bytes
/// through the flags, which also covers an IPv4 header without options and its TCP header.
const HEADERS: usize = 56;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

/// TCP header bytes we use: ports, sequence, acknowledgment, data offset and flags.
const TCP_PREFIX: usize = 16;

/// Three helper reads (each ~50 ns here): the head pointer, both header offsets at once, and
/// [`trigger_at`]'s.
#[inline(always)]
pub(crate) fn trigger_of(skb: u64, o: &StructOffsets) -> Option<Trigger> {
    if skb == 0 || o.skb_head == NO_OFFSET || o.skb_transport_header == NO_OFFSET || o.skb_network_header == NO_OFFSET {
        return None;
    }
    // SAFETY: probe reads only.
    unsafe {
        let head = read::<u64>(skb + o.skb_head as u64)?;
        // `transport_header` and `network_header` are neighbouring u16s in every kernel we know;
        // the fallback keeps a layout that separates them correct.
        let (transport, network) = if o.skb_network_header == o.skb_transport_header + 2 {
            let both = read::<[u16; 2]>(skb + o.skb_transport_header as u64)?;
            (both[0], both[1])
        } else {
            (read::<u16>(skb + o.skb_transport_header as u64)?, read::<u16>(skb + o.skb_network_header as u64)?)
        };
        trigger_at(head, transport, network)
    }
}

/// The segment whose buffer starts at `head`, its IP header `network` and its TCP header
/// `transport` bytes on (`u16::MAX`: not set): one helper read of both headers together, a
/// second where they are apart (IPv4 options).
#[inline(always)]
pub(crate) fn trigger_at(head: u64, transport: u16, network: u16) -> Option<Trigger> {
    if head == 0 || transport == u16::MAX || network == u16::MAX {
        return None;
    }
    // SAFETY: probe reads only.
    unsafe {
        let nh = head + network as u64;
        let headers = read::<[u8; HEADERS]>(nh)?;
        let ip_version = headers[0] >> 4;
        let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
        match ip_version {
            4 => {
                saddr[..4].copy_from_slice(&headers[12..16]);
                daddr[..4].copy_from_slice(&headers[16..20]);
            }
            6 => {
                saddr.copy_from_slice(&headers[8..24]);
                daddr.copy_from_slice(&headers[24..40]);
            }
            _ => return None,
        }
        // Constant slices only: the verifier follows them without range tracking.
        let mut tcp = [0u8; TCP_PREFIX];
        match (transport as i32 - network as i32) as usize {
            IPV4_HEADER => tcp.copy_from_slice(&headers[IPV4_HEADER..IPV4_HEADER + TCP_PREFIX]),
            IPV6_HEADER => tcp.copy_from_slice(&headers[IPV6_HEADER..IPV6_HEADER + TCP_PREFIX]),
            _ => tcp = read::<[u8; TCP_PREFIX]>(head + transport as u64)?,
        }
        Some(Trigger {
            tcp_flags: tcp[13],
            ip_version,
            sport: u16::from_be_bytes([tcp[0], tcp[1]]),
            dport: u16::from_be_bytes([tcp[2], tcp[3]]),
            ack_seq: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
            saddr,
            daddr,
        })
    }
}

pub(crate) const TCP_FLAG_ACK: u8 = 0x10;
pub(crate) const TCP_FLAG_RST: u8 = 0x04;
pub(crate) const TCP_FLAG_SYN: u8 = 0x02;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `enum sock_flags`: SOCK_DEAD, SOCK_DONE, SOCK_URGINLINE, SOCK_KEEPOPEN, SOCK_LINGER (unchanged
/// since Linux 2.6).
pub(crate) const SOCK_LINGER: u64 = 4;

/// What `sock_facts` needs of the segment a reset answers.
#[derive(Clone, Copy)]
struct SegmentAck {
    tcp_flags: u8,
    /// Host order.
    ack_seq: u32,
}

/// What the socket itself says about why it sent a reset, for kernels that give no reason:
/// read at the moment of sending, when nothing has changed yet. `None` when BTF lacks a field.
/// (SO_LINGER 0, the other half of an abort from CLOSE, is a holder fact: read on every kernel.)
#[inline(always)]
fn sock_facts(sk: u64, state: i32, segment: Option<SegmentAck>, o: &SockOffsets) -> Option<u16> {
    // SAFETY: probe reads only.
    unsafe {
        match state {
            // tcp_close() purged the receive queue but left copied_seq behind rcv_nxt: the gap is
            // what the application never read. tcp_disconnect() (SO_LINGER 0) resets it only
            // after sending.
            TCP_CLOSE => {
                if o.rcv_nxt == NO_OFFSET || o.copied_seq == NO_OFFSET {
                    return None;
                }
                let unread = read::<u32>(sk + o.rcv_nxt as u64)?.wrapping_sub(read::<u32>(sk + o.copied_seq as u64)?);
                let mut facts = 0;
                if unread == 1 {
                    facts |= FACT_UNREAD_ONE;
                } else if unread > 1 && unread < 1 << 31 {
                    facts |= FACT_UNREAD;
                }
                Some(facts)
            }
            TCP_LISTEN => {
                if o.ack_backlog == NO_OFFSET || o.max_ack_backlog == NO_OFFSET {
                    return None;
                }
                let backlog = read::<u32>(sk + o.ack_backlog as u64)?;
                let max = read::<u32>(sk + o.max_ack_backlog as u64)?;
                // With tcp_abort_on_overflow off the stack drops the ACK a full queue cannot take:
                // a reset from a full listener then answers some other segment.
                Some(if backlog > max && abort_on_overflow(sk, o) { FACT_ACCEPT_QUEUE_FULL } else { 0 })
            }
            // In SYN_SENT the stack resets an unacceptable ACK, or an acceptable one failing PAWS.
            TCP_SYN_SENT => {
                let t = segment?;
                if o.snd_una == NO_OFFSET || o.snd_nxt == NO_OFFSET {
                    return None; // unknown, not "outside the window"
                }
                if t.tcp_flags & TCP_FLAG_ACK == 0 {
                    return Some(0);
                }
                let una = read::<u32>(sk + o.snd_una as u64)?;
                let nxt = read::<u32>(sk + o.snd_nxt as u64)?;
                let after_una = (t.ack_seq.wrapping_sub(una) as i32) > 0;
                let not_after_nxt = (t.ack_seq.wrapping_sub(nxt) as i32) <= 0;
                Some(if after_una && not_after_nxt { FACT_ACK_IN_WINDOW } else { 0 })
            }
            _ => None,
        }
    }
}

const ECONNABORTED: i32 = 103;
const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;
pub(crate) const ECONNREFUSED: i32 = 111;
/// `enum sock_flags` bit set when the socket's process closed it (`sock_orphan()`).
const SOCK_DEAD: u64 = 0;
/// `enum sock_flags` bit set when the peer's FIN arrived.
pub(crate) const SOCK_DONE: u64 = 1;
/// `RCV_SHUTDOWN | SEND_SHUTDOWN`
pub(crate) const SHUTDOWN_MASK: u8 = 3;

/// Who holds the socket and how it stands, read on every kernel (a reason names none of it): no
/// process ([`FACT_ORPHAN`]); a tool destroyed it ([`FACT_DESTROYED`]: ECONNABORTED pending,
/// where `tcp_abort()` sets it before its reset); the peer had finished ([`FACT_PEER_CLOSED`]);
/// and, from CLOSE, that close() did not shut it ([`FACT_KEPT`]: a disconnect) and whether it
/// had SO_LINGER 0 ([`FACT_LINGER0`]: an abort chosen, whatever was left unread). Through helper
/// reads; a typed program reads the same fields straight from the socket ([`HolderRead`]).
#[inline(always)]
fn holder_facts(sk: u64, state: i32, o: &SockOffsets) -> u16 {
    let field = |offset: u32| (offset != NO_OFFSET).then_some(sk + offset as u64);
    // SAFETY: probe reads only.
    unsafe {
        let socket = field(o.socket).and_then(|at| read::<u64>(at));
        let err = field(o.err).and_then(|at| read::<i32>(at));
        let flags = field(o.flags).and_then(|at| read::<u64>(at));
        let (shutdown, lingertime, linger2) = match state {
            TCP_CLOSE => (
                field(o.shutdown).and_then(|at| read::<u8>(at)),
                field(o.lingertime).and_then(|at| read::<u64>(at)),
                field(o.linger2).and_then(|at| read::<i32>(at)),
            ),
            _ => (None, None, None),
        };
        holder_facts_of(state, socket, err, flags, shutdown, lingertime, linger2)
    }
}

/// [`holder_facts`] from the fields' values, each `None` where it could not be read (or, for
/// `shutdown`, `lingertime` and `linger2`, was not: they count only from CLOSE).
#[inline(always)]
pub(crate) fn holder_facts_of(state: i32, socket: Option<u64>, err: Option<i32>, flags: Option<u64>, shutdown: Option<u8>, lingertime: Option<u64>, linger2: Option<i32>) -> u16 {
    let mut facts = 0;
    if socket == Some(0) {
        facts |= FACT_ORPHAN;
    }
    if err == Some(ECONNABORTED) {
        facts |= FACT_DESTROYED;
    }
    if flags.is_some_and(|f| f & (1 << SOCK_DONE) != 0) {
        facts |= FACT_PEER_CLOSED;
    }
    if state == TCP_CLOSE && shutdown.is_some_and(|s| s & SHUTDOWN_MASK != SHUTDOWN_MASK) {
        facts |= FACT_KEPT;
    }
    if state == TCP_CLOSE && lingertime == Some(0) && flags.is_some_and(|f| f & (1 << SOCK_LINGER) != 0) {
        facts |= FACT_LINGER0;
    }
    if state == TCP_CLOSE && linger2.is_some_and(|l| l < 0) {
        facts |= FACT_LINGER2_NEGATIVE;
    }
    facts
}

/// `PF_EXITING`: the task is in do_exit().
const PF_EXITING: u32 = 4;

/// How the running task is ending, if it is (`PF_EXITING`): its `exit_code`. A process that ends
/// with a socket open has it closed in its own exit, killed, crashed or exited without closing
/// it; `None` otherwise, or where BTF lacked the offsets. Probe reads, only for a reset sent from
/// CLOSE.
#[inline(always)]
fn closer_exit_code() -> Option<u32> {
    let o = OFFSETS.load();
    if o.task_flags == NO_OFFSET || o.task_exit_code == NO_OFFSET {
        return None;
    }
    // SAFETY: the helper has no preconditions; probe reads only.
    unsafe {
        let task = generated::bpf_get_current_task();
        let flags = read::<u32>(task + o.task_flags as u64)?;
        if flags & PF_EXITING == 0 {
            return None;
        }
        read::<u32>(task + o.task_exit_code as u64)
    }
}

/// What data the connection carried, `sent` segments of it out: both ways with everything sent
/// acknowledged (`FACT_EXCHANGED`), none at all (`FACT_NOTHING_EXCHANGED`), or neither; 0 where
/// BTF lacked an offset.
#[inline(always)]
fn exchange_facts(sk: u64, sent: Option<u32>, o: &SockOffsets) -> u16 {
    let (Some(sent), Some(received)) = (sent, read_u32(sk, o.data_segs_in)) else { return 0 };
    exchange_facts_of(sent, received, || (read_u32(sk, o.snd_una), read_u32(sk, o.snd_nxt)))
}

/// [`exchange_facts`] from the counts; `una_nxt` reads `snd_una` and `snd_nxt`, needed only when
/// data went both ways.
#[inline(always)]
pub(crate) fn exchange_facts_of(sent: u32, received: u32, una_nxt: impl FnOnce() -> (Option<u32>, Option<u32>)) -> u16 {
    match (sent, received) {
        (0, 0) => FACT_NOTHING_EXCHANGED,
        (0, _) | (_, 0) => 0,
        _ => match una_nxt() {
            (Some(una), Some(nxt)) if una == nxt => FACT_EXCHANGED,
            _ => 0,
        },
    }
}

/// The inode number of the file of the socket a process holds (`/proc/PID/fd/N` →
/// `socket:[inode]`); 0 when none does or BTF lacked an offset.
#[inline(always)]
fn socket_inode(sk: u64, o: &SockOffsets) -> u64 {
    if sk == 0 || o.socket == NO_OFFSET || o.socket_file == NO_OFFSET || o.file_inode == NO_OFFSET || o.inode_ino == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe reads only.
    unsafe {
        let Some(socket) = read::<u64>(sk + o.socket as u64).filter(|p| *p != 0) else { return 0 };
        let Some(file) = read::<u64>(socket + o.socket_file as u64).filter(|p| *p != 0) else { return 0 };
        let Some(inode) = read::<u64>(file + o.file_inode as u64).filter(|p| *p != 0) else { return 0 };
        read::<u64>(inode + o.inode_ino as u64).unwrap_or(0)
    }
}

/// What a timed-out socket says of how: its TCP_USER_TIMEOUT, and whether the peer answered its
/// last probe (a zero window answered, where only the user timeout gives up).
///
/// # Safety
/// `event` points at a reserved, writable ring-buffer slot.
#[inline(always)]
unsafe fn write_timeout(event: *mut Event, sk: u64, o: &SockOffsets) {
    let read = (read_u8(sk, o.icsk_probes_out), read_u32(sk, o.icsk_user_timeout), read_u32(sk, o.icsk_probes_tstamp), read_u32(sk, o.rcv_tstamp));
    if let (Some(probes), Some(user), Some(probing_since), Some(heard)) = read {
        let probing = if probing_since == 0 {
            0
        } else if (heard.wrapping_sub(probing_since) as i32) > 0 {
            PROBING_ZERO_WINDOW | PROBING_ANSWERED
        } else {
            PROBING_ZERO_WINDOW
        };
        // SAFETY: the caller's contract.
        unsafe {
            (*event).probes_out = probes;
            (*event).probing = probing;
            (*event).user_timeout_ms = user;
            (*event).flags |= FLAG_TIMEOUT_READ;
        }
    }
}

#[inline(always)]
fn read_u32(sk: u64, offset: u32) -> Option<u32> {
    if sk == 0 || offset == NO_OFFSET {
        return None;
    }
    // SAFETY: probe read only.
    unsafe { read::<u32>(sk + offset as u64) }
}

#[inline(always)]
fn read_u8(sk: u64, offset: u32) -> Option<u8> {
    if sk == 0 || offset == NO_OFFSET {
        return None;
    }
    // SAFETY: probe read only.
    unsafe { read::<u8>(sk + offset as u64) }
}

const AF_INET_U32: u16 = 2;

/// The last four bytes of an address as stored in a record or a segment: all of an IPv4 one.
#[inline(always)]
fn tail(addr: &[u8; 16], ipv4: bool) -> u32 {
    if ipv4 {
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]])
    } else {
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]])
    }
}

/// This host's 4-tuple for the connection a segment belongs to: the segment's destination is
/// the local end.
#[inline(always)]
pub(crate) fn trigger_key(t: &Trigger) -> TupleKey {
    segment_key(t.ip_version, t.sport, t.dport, &t.saddr, &t.daddr)
}

/// [`trigger_key`] of a segment's addresses and ports, wherever they are kept.
#[inline(always)]
fn segment_key(ip_version: u8, sport: u16, dport: u16, saddr: &[u8; 16], daddr: &[u8; 16]) -> TupleKey {
    let v4 = ip_version == 4;
    TupleKey { lport: dport, rport: sport, laddr: tail(daddr, v4), raddr: tail(saddr, v4) }
}

/// The 4-tuple of an older-layout record (family, host-order ports, both address arrays).
#[inline(always)]
pub fn record_key<F: Fields>(d: &F, l: &TracepointLayout) -> Option<TupleKey> {
    let family = d.get::<u16>(l.family)?;
    let (laddr, raddr) = if family == AF_INET_U32 {
        (d.get::<u32>(l.saddr4)?, d.get::<u32>(l.daddr4)?)
    } else {
        if l.saddr6 == NO_FIELD || l.daddr6 == NO_FIELD {
            return None;
        }
        (d.get::<u32>(l.saddr6 + 12)?, d.get::<u32>(l.daddr6 + 12)?)
    };
    Some(TupleKey { lport: d.get::<u16>(l.sport)?, rport: d.get::<u16>(l.dport)?, laddr, raddr })
}

/// What the kernel side remembers of the 4-tuple a sent reset answers: the last connection on
/// it (its socket, and who owned it), where no full socket of a connection sent the reset (none,
/// a TIME_WAIT or request socket, or a listener answering for a connection it does not know);
/// and, in SYN_SENT, whether an earlier connection used it. Returns the flags to set.
#[inline(always)]
unsafe fn sent_history(event: *mut Event, sk: u64, state: i32, key: &TupleKey) -> u32 {
    if state == TCP_SYN_SENT {
        return reused_history(key);
    }
    let Some(earlier) = history::tuple(key) else { return 0 };
    if sk == 0 || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || state == TCP_LISTEN {
        // SAFETY: the caller's reserved event.
        unsafe { (*event).earlier_sk = earlier.sk };
        let mut flags = FLAG_EARLIER_SK;
        if history::ended_badly(earlier) {
            flags |= FLAG_EARLIER_ENDED_BADLY;
        }
        if earlier.owner.is_known() {
            // SAFETY: as above.
            unsafe { (*event).earlier = earlier.owner };
            flags |= FLAG_EARLIER_OWNER;
        }
        return flags;
    }
    0
}

/// A socket in SYN_SENT has noted nothing under its 4-tuple yet: a note there is an earlier
/// connection's, of this end or (the 4-tuple reversed) of a peer on this host, which may still
/// hold it open. Returns the flags to set.
#[inline(always)]
fn reused_history(key: &TupleKey) -> u32 {
    let peer = history::tuple(&key.reversed());
    let mut flags = 0;
    if peer.is_some() || history::tuple(key).is_some() {
        flags |= FLAG_TUPLE_REUSED;
    }
    if peer.is_some_and(|p| p.open_or_closed_at == TUPLE_OPEN) {
        flags |= FLAG_PEER_HOLDS_OPEN;
    }
    flags
}

/// An aborted connection this host opened: the other connection its owner opened to the same
/// peer most recently, and whether that one is still up. Returns the flags to set.
#[inline(always)]
unsafe fn race_sibling(event: *mut Event, sk: u64, tgid: u32, key: &TupleKey) -> u32 {
    let Some(sibling) = history::sibling(tgid, key, sk) else { return 0 };
    // SAFETY: the caller's reserved event.
    unsafe { (*event).sibling = *sibling };
    let open = owner::record(sibling.sk).is_some_and(|r| r.opened_ns == sibling.opened_ns);
    FLAG_SIBLING | if open { FLAG_SIBLING_OPEN } else { 0 }
}

/// The socket's namespace has `net.ipv4.tcp_abort_on_overflow` on; `true` when BTF did not say
/// where to read it, as before the sysctl was per namespace.
#[inline(always)]
fn abort_on_overflow(sk: u64, o: &SockOffsets) -> bool {
    if o.abort_on_overflow == NO_OFFSET {
        return true;
    }
    // SAFETY: probe read only.
    net_at(sk, OFFSETS.load().sock_net)
        .and_then(|net| unsafe { read::<u8>(net + o.abort_on_overflow as u64) })
        .is_none_or(|on| on != 0)
}

/// Whether BTF said where a socket's pending error lies: without it [`pending_error`] reads 0.
#[inline(always)]
pub fn pending_errors_read() -> bool {
    SOCK_OFFSETS.load().err != NO_OFFSET
}

/// The socket's pending error (`sk_err`), 0 where it cannot be read. A probe read: this runs
/// once per socket, at its CLOSE.
#[inline(always)]
pub fn pending_error(sk: u64) -> i32 {
    let o = SOCK_OFFSETS.load();
    if sk == 0 || o.err == NO_OFFSET {
        return 0;
    }
    // SAFETY: a probe read only.
    unsafe { read::<i32>(sk + o.err as u64) }.unwrap_or(0)
}

/// The socket, closing with the pending error `err`, is dead (closed by its process: SOCK_DEAD,
/// which a child never accepted is not) and that error is one its timers set: an orphan's
/// retransmission or probe timer gave up. That error is ETIMEDOUT, or the soft error an ICMP
/// message left (host unreachable…); the errors of a reset (ECONNRESET, EPIPE, ECONNREFUSED) and
/// of a destroyed socket (ECONNABORTED) come with a RST that is reported itself. A probe read,
/// for the few sockets that close with such an error.
#[inline(always)]
pub fn orphan_timed_out(sk: u64, err: i32) -> bool {
    let o = SOCK_OFFSETS.load();
    if sk == 0 || o.flags == NO_OFFSET || !is_timers_error(err) {
        return false;
    }
    // SAFETY: a probe read only.
    unsafe { read::<u64>(sk + o.flags as u64) }.is_some_and(|f| f & (1 << SOCK_DEAD) != 0)
}

/// A pending socket error that only a timer (or an ICMP message) leaves: see `orphan_timed_out`.
#[inline(always)]
pub fn is_timers_error(err: i32) -> bool {
    err != 0 && !matches!(err, ECONNRESET | EPIPE | ECONNREFUSED | ECONNABORTED)
}

/// The state of a socket the tracepoint does not describe (kprobe path); 0 without a socket.
#[inline(always)]
pub fn sk_state(sk: u64) -> u8 {
    let o = SOCK_OFFSETS.load();
    if sk == 0 || o.state == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe read only.
    unsafe { read::<u8>(sk + o.state as u64) }.unwrap_or(0)
}

/// Copy the record with direct loads from the context instead of `bpf_probe_read_kernel` (measured
/// at ~800 ns for these 128 bytes). A tracepoint program may read its context at constant aligned
/// offsets from 8 up to the record's size (the kernel refuses to attach one that reads further),
/// and `size` is a load-time constant the verifier sees, so the branches past it are pruned.
/// Only the last partial word, if any, goes through the helper. Bytes 0..8 (the common header, which the agent never reads) stay zero.
#[inline(always)]
unsafe fn copy_record(ctx: &TracePointContext, record: &mut [u8; RECORD_MAX], size: usize) {
    let src = ctx.as_ptr() as *const u8;
    let dst = record.as_mut_ptr();
    macro_rules! words {
        ($($i:literal)*) => {
            $(
                if size >= ($i + 1) * 8 {
                    // SAFETY: constant offset inside the record on both sides.
                    unsafe { (dst.add($i * 8) as *mut u64).write_unaligned(core::ptr::read_volatile(src.add($i * 8) as *const u64)) };
                }
            )*
        };
    }
    // SAFETY: writing inside `record`.
    unsafe { (dst as *mut u64).write_unaligned(0) };
    words!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    // The tail that is not a whole word (records of 60 or 74 bytes on 6.1 and 6.12) through the
    // helper: sub-word loads at literal offsets get merged by LLVM into one load from a context
    // pointer moved by a register, which verifiers before ~6.15 refuse outright.
    let whole = size & !7;
    let rest = size & 7;
    if rest != 0 {
        // SAFETY: `whole + rest == size` bytes lie inside the record on both sides.
        unsafe {
            let _ = generated::bpf_probe_read_kernel(dst.add(whole).cast(), rest as u32, src.add(whole).cast());
        }
    }
}

/// Reserve an event, fill it and submit it; count it as lost when the buffer is full.
/// Where the filter reads record fields from: the copy in a reserved event, or (to filter
/// before reserving) the tracepoint record itself.
pub trait Fields {
    fn get<T: Copy>(&self, offset: u16) -> Option<T>;
}

impl Fields for Draft {
    #[inline(always)]
    fn get<T: Copy>(&self, offset: u16) -> Option<T> {
        self.field(offset)
    }
}

pub struct Record<'a>(pub &'a TracePointContext);

impl Fields for Record<'_> {
    #[inline(always)]
    fn get<T: Copy>(&self, offset: u16) -> Option<T> {
        probe_field(self.0, offset)
    }
}

/// Local or remote port of the record, in host order; `None` when it has none.
#[inline(always)]
fn port<F: Fields>(d: &F, host_order: u16, blob: u16) -> Option<u16> {
    match d.get::<u16>(host_order) {
        Some(p) => Some(p),
        None if blob != NO_FIELD => d.get::<u16>(blob + 2).map(u16::from_be),
        None => None,
    }
}

#[inline(always)]
fn listed(port: u16, list: &[u16; MAX_FILTER_PORTS], count: u8) -> bool {
    let mut i = 0;
    while i < MAX_FILTER_PORTS {
        if i < count as usize && list[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// The filter names a cgroup (`-c`), the only use of a task's cgroup id: the helper is skipped
/// otherwise.
#[inline(always)]
pub fn filters_by_cgroup() -> bool {
    FILTER_ACTIVE.load() != 0 && FILTER.load().cgroup != 0
}

/// The running task's cgroup as the filter compares it: its ancestor at the named cgroup's depth
/// (itself at its own), so that the cgroups below the one named pass too; 0 above that depth.
#[inline(always)]
pub fn filtered_cgroup() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { generated::bpf_get_current_ancestor_cgroup_id(FILTER.load().cgroup_level as i32) }
}

/// The load-time filter. Whatever the kernel cannot judge here passes; the agent re-checks.
#[inline(always)]
fn passes<F: Fields>(d: &F, kind: EventKind, owner: &Owner) -> bool {
    if FILTER_ACTIVE.load() == 0 {
        return true;
    }
    let f = FILTER.load();
    let l = layout(kind);
    if f.family != 0 {
        let family = d.get::<u16>(l.family).or_else(|| d.get::<u16>(l.saddr_blob));
        // An IPv6 socket may carry IPv4 traffic (IPv4-mapped addresses on a dual-stack socket):
        // for `-4` only the agent can judge it, so it passes.
        if family.is_some_and(|fam| fam != f.family && !(f.family == AF_INET && fam == AF_INET6)) {
            return false;
        }
    }
    // A port filter keeps the other end's events too, where its ports are this end's swapped:
    // when that end is on this host, its RST is what a received reset's `peer_cause` names.
    // The agent keeps only the reports the filter names.
    let (sport, dport) = (port(d, l.sport, l.saddr_blob), port(d, l.dport, l.daddr_blob));
    if f.lport_count > 0 {
        if let Some(p) = sport {
            if p != 0 && !listed(p, &f.lports, f.lport_count) && !dport.is_some_and(|q| listed(q, &f.lports, f.lport_count)) {
                return false;
            }
        }
    }
    if f.rport_count > 0 {
        // A listener's record has no remote port (0): pass it for the agent to judge.
        if let Some(p) = dport {
            if p != 0 && !listed(p, &f.rports, f.rport_count) && !sport.is_some_and(|q| listed(q, &f.rports, f.rport_count)) {
                return false;
            }
        }
    }
    // Another owner's RST to a socket of this host that the filter keeps crosses too: the
    // received reset's report names its cause (`peer_cause`). The agent reports only the kept.
    // A listener's RST (a full accept queue's, or for a segment it has no connection for)
    // carries the listener's own addresses, not the connection's: it crosses to be judged.
    !owner.is_known()
        || owner_kept(&f, owner, false)
        || (kind == EventKind::SendReset && (d.get::<i32>(l.state) == Some(TCP_LISTEN) || sent_key(d, &l).is_some_and(|k| to_a_kept_peer(&f, &k))))
}

/// `owner` is the process, or in the cgroup, the filter names; `cgroup_unknown`: its cgroup was
/// not read (the agent's note of a connection older than it), so only its process is judged.
#[inline(always)]
fn owner_kept(f: &Filter, owner: &Owner, cgroup_unknown: bool) -> bool {
    (f.pid == 0 || owner.tgid == f.pid) && (f.cgroup == 0 || cgroup_unknown || owner.cgroup == f.cgroup)
}

/// The sending end's 4-tuple of a sent reset's record: from its address blobs (6.10+, and every
/// typed program's), else from its fields (older kernels).
#[inline(always)]
fn sent_key<F: Fields>(d: &F, l: &TracepointLayout) -> Option<TupleKey> {
    if l.saddr_blob == NO_FIELD || l.daddr_blob == NO_FIELD {
        return record_key(d, l);
    }
    let (local, remote) = (l.saddr_blob, l.daddr_blob);
    // `sockaddr_in`'s address follows its port; `sockaddr_in6`'s a flow label later, and the
    // key keeps its last four bytes.
    let at = if d.get::<u16>(local)? == AF_INET_U32 { 4 } else { 20 };
    Some(TupleKey {
        lport: u16::from_be(d.get::<u16>(local + 2)?),
        rport: u16::from_be(d.get::<u16>(remote + 2)?),
        laddr: d.get::<u32>(local + at)?,
        raddr: d.get::<u32>(remote + at)?,
    })
}

/// The other end of `key` is a socket of this host (open, or closed a moment ago) whose owner
/// the filter keeps, or whose owner the kernel side does not know.
#[inline(always)]
fn to_a_kept_peer(f: &Filter, key: &TupleKey) -> bool {
    let Some(peer) = history::peer_of(key) else { return false };
    let on_record = owner::owner_of(peer.sk);
    let owner = if on_record.is_known() { on_record } else { peer.owner };
    !owner.is_known() || owner_kept(f, &owner, !on_record.is_known() && peer.sk == OLDER_CONNECTION)
}

/// An event reserved in the ring buffer with the tracepoint record already copied in: fields are
/// read from the copy (ordinary memory, any offset the bounds check allows) instead of through a
/// helper call each. Dropped without `submit`, it is discarded.
pub struct Draft {
    entry: Option<RingBufEntry<Event>>,
    kind: EventKind,
    /// Socket state of a `FLAG_NO_RECORD` event (kprobe path); `None` for tracepoint records.
    no_record_state: Option<u8>,
    /// What a typed program read straight from the socket, where `submit` would otherwise read
    /// it through helper calls.
    read: Option<SocketRead>,
    /// The segment a sent reset answers is in the event already ([`Draft::with_trigger`]), and
    /// this is its acknowledgment number (host order), which the event has no field for:
    /// `submit` does not read the segment again.
    trigger_written: Option<u32>,
    /// The namespace of a segment no socket took, read by a typed program; 0: read it here.
    segment_netns: u32,
}

/// A socket's state, retransmissions, cgroup id and namespace, and for a reset it sends who holds
/// it, read by a typed program (direct loads through the pointer the verifier typed: a few ns
/// each, where a helper read costs ~50).
#[derive(Clone, Copy)]
pub struct SocketRead {
    pub state: u8,
    pub retransmits: u32,
    /// 0 when unknown.
    pub cgroup: u64,
    /// The socket's namespace; 0 when unknown.
    pub netns: u32,
    /// For a sent reset, where BTF named the fields.
    pub holder: Option<HolderRead>,
}

/// What a typed program read straight from a socket sending a reset, where `submit` would read
/// it through helpers: [`holder_facts`], [`exchange_facts`] as if the connection was opened here,
/// and the data segments it sent.
#[derive(Clone, Copy)]
pub struct HolderRead {
    pub facts: u16,
    pub exchange: u16,
    pub sent: u32,
}

/// A socket's namespace: its owner's on record, else what a typed program read, else what
/// `through_helpers` reads (0 stands for unknown in each).
#[inline(always)]
pub(crate) fn known_netns(recorded: u32, read: u32, through_helpers: impl FnOnce() -> u32) -> u32 {
    match (recorded, read) {
        (0, 0) => through_helpers(),
        (0, read) => read,
        (known, _) => known,
    }
}

impl Draft {
    /// Reserve and copy; `None` (counted as lost) when the ring buffer is full.
    #[inline(always)]
    pub fn reserve(ctx: &TracePointContext, kind: EventKind) -> Option<Self> {
        // With a filter set, judge the record before taking ring-buffer space: filtered-out
        // events must neither crowd out others nor count as lost. (Helper reads, so only then.)
        if FILTER_ACTIVE.load() != 0 {
            let sk: u64 = probe_field(ctx, layout(kind).skaddr).unwrap_or(0);
            let owner = owner::owner_of(sk);
            if !passes(&Record(ctx), kind, &owner) {
                return None;
            }
        }
        let Some(entry) = EVENTS.reserve::<Event>(0) else {
            count_lost();
            return None;
        };
        Some(Self::with_record(ctx, kind, entry))
    }

    /// Copy the tracepoint record into a reserved slot.
    #[inline(always)]
    fn with_record(ctx: &TracePointContext, kind: EventKind, mut entry: RingBufEntry<Event>) -> Self {
        let record_size = layout(kind).record_size as usize;
        let size = if record_size > RECORD_MAX { RECORD_MAX } else { record_size };
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points at a reserved, writable slot of size_of::<Event>().
        unsafe {
            (*event).kind = kind as u32;
            (*event).record_size = size as u16;
            copy_record(ctx, &mut (*event).record, size);
        }
        Self { entry: Some(entry), kind, no_record_state: None, read: None, trigger_written: None, segment_netns: 0 }
    }

    /// Reserve an event with no tracepoint record behind it (the kprobe path): its addresses come
    /// from the triggering segment. Filtered only by the agent.
    #[inline(always)]
    pub fn reserve_without_record(kind: EventKind, sk_state: u8) -> Option<Self> {
        let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
            count_lost();
            return None;
        };
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points at a reserved, writable slot of size_of::<Event>().
        unsafe {
            (*event).kind = kind as u32;
            (*event).record_size = 0;
        }
        Some(Self { entry: Some(entry), kind, no_record_state: Some(sk_state), read: None, trigger_written: None, segment_netns: 0 })
    }

    /// Reserve an event whose record the caller writes (a `tp_btf` program, which gets no
    /// record from the kernel), sized as this kernel's record.
    #[inline(always)]
    pub fn reserve_synthesized(kind: EventKind) -> Option<Self> {
        let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
            count_lost();
            return None;
        };
        let record_size = layout(kind).record_size as usize;
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points at a reserved, writable slot of size_of::<Event>().
        unsafe {
            (*event).kind = kind as u32;
            (*event).record_size = if record_size > RECORD_MAX { RECORD_MAX as u16 } else { record_size as u16 };
        }
        Some(Self { entry: Some(entry), kind, no_record_state: None, read: None, trigger_written: None, segment_netns: 0 })
    }

    /// The segment this reset answers, read by the caller: written into the event now, where it
    /// takes no BPF stack, and `submit` reads it from there.
    #[inline(always)]
    pub fn with_trigger(mut self, t: &Trigger) -> Self {
        if let Some(entry) = self.entry.as_mut() {
            // SAFETY: the reserved slot, writable until submitted or discarded.
            unsafe { write_trigger(entry.as_mut_ptr(), t) };
            self.trigger_written = Some(t.ack_seq);
        }
        self
    }

    /// The namespace of the segment a socketless reset answers (0: unknown), read by the caller.
    #[inline(always)]
    pub fn with_segment_netns(mut self, netns: u32) -> Self {
        self.segment_netns = netns;
        self
    }

    /// What the socket's fields said, read by the caller: `submit` then reads none of them.
    #[inline(always)]
    pub fn with_socket_read(mut self, read: SocketRead) -> Self {
        self.read = Some(read);
        self
    }

    /// The record's bytes (`RECORD_MAX` of them), to write a synthesized record into.
    #[inline(always)]
    pub fn record_mut(&mut self) -> Option<*mut u8> {
        let entry = self.entry.as_mut()?;
        // SAFETY: the reserved slot, writable until submitted or discarded.
        Some(unsafe { (*entry.as_mut_ptr()).record.as_mut_ptr() })
    }

    /// A field of the copied record; `None` when this kernel's tracepoint has no such field.
    #[inline(always)]
    pub fn field<T: Copy>(&self, offset: u16) -> Option<T> {
        if self.no_record_state.is_some() {
            return None; // no record was copied: the slot holds an older event's bytes
        }
        let entry = self.entry.as_ref()?;
        let off = offset as usize;
        if offset == NO_FIELD || off + core::mem::size_of::<T>() > RECORD_MAX {
            return None;
        }
        // SAFETY: in bounds of the record, checked above; unaligned read of plain data.
        unsafe {
            let record = (*(entry.as_ptr())).record.as_ptr();
            Some(core::ptr::read_unaligned(record.add(off) as *const T))
        }
    }

    /// An orphan's retransmission timer gave up in `old_state` (see `FLAG_ORPHAN_TIMED_OUT`):
    /// the change to CLOSE, with the socket's last owner and how many times in a row its oldest
    /// segment timed out.
    #[inline(always)]
    pub fn submit_orphan_timeout(self, sk: u64, owner: Owner, old_state: i32) -> bool {
        self.submit_state_change(sk, owner, FLAG_ORPHAN_TIMED_OUT | FLAG_CLOSED_FROM, |event| {
            // SAFETY: the reserved slot `submit_state_change` hands over.
            unsafe {
                (*event).sock.opened_ns = 0;
                (*event).sock.established_ns = 0;
                (*event).sock.resets_sent = 0;
                (*event).closed_from = old_state as u8;
                (*event).sk_cgroup = socket_cgroup(sk, &OFFSETS.load());
                (*event).sk_inode = 0;
                let o = SOCK_OFFSETS.load();
                if let Some(n) = read_u8(sk, o.icsk_retransmits) {
                    (*event).retransmits = n as u32;
                    (*event).flags |= FLAG_RETRANSMITS_READ;
                }
                write_timeout(event, sk, &o);
            }
        })
    }

    /// A listener's start or end, with its owner.
    #[inline(always)]
    pub fn submit_listener(self, sk: u64, owner: Owner) -> bool {
        self.submit_state_change(sk, owner, 0, |_| {})
    }

    /// A state change that crosses to the agent, with the socket's owner and `flags`; `fill`
    /// writes what this kind of change adds. Unless the load-time filter rejects it.
    #[inline(always)]
    fn submit_state_change(mut self, sk: u64, owner: Owner, flags: u32, fill: impl FnOnce(*mut Event)) -> bool {
        if !passes(&self, self.kind, &owner) {
            return false;
        }
        let Some(mut entry) = self.entry.take() else { return false };
        let event = entry.as_mut_ptr();
        // SAFETY: `event` points at a reserved, writable ring-buffer slot of size_of::<Event>().
        unsafe {
            (*event).ts_ns = bpf_ktime_get_ns();
            (*event).flags = flags | if owner.is_known() { FLAG_OWNER_KNOWN } else { 0 };
            words::copy(addr_of_mut!((*event).sock.owner), &owner);
            fill_current(event);
            (*event).netns = if owner.netns != 0 { owner.netns } else { socket_netns(sk) };
        }
        fill(event);
        entry.submit(submit_flags());
        true
    }

    /// Fill in what only the kernel knows now and submit, unless the load-time filter rejects it.
    /// `sock` is the socket's record, if it has one; `close` the CLOSE
    /// this socket made just before in the same call, if it did. Returns whether the event went
    /// out (not filtered, not discarded).
    #[inline(always)]
    pub fn submit(mut self, sk: u64, skb: u64, sock: Option<&SockRecord>, close: Option<&CloseSlot>) -> bool {
        let owner = sock.map_or(Owner::UNKNOWN, |r| r.owner);
        if !passes(&self, self.kind, &owner) {
            return false; // dropped: discarded
        }
        let kind = self.kind as u32;
        // Read from the copied record before the entry is taken out of the draft.
        let state: i32 = if kind == EventKind::SendReset as u32 { self.field(layout(EventKind::SendReset).state).unwrap_or(0) } else { 0 };
        let receive_key = if kind == EventKind::ReceiveReset as u32 { record_key(&self, &layout(EventKind::ReceiveReset)) } else { None };
        let Some(mut entry) = self.entry.take() else { return false };
        let offsets = OFFSETS.load();
        let event = entry.as_mut_ptr();
        // Fields the agent reads only under a flag (owner, trigger, history) are not zeroed when
        // the flag is clear: zeroing arrays costs byte-wise loops in BPF, and ring-buffer memory
        // only ever holds this program's own earlier events.
        // SAFETY: `event` points at a reserved, writable ring-buffer slot of size_of::<Event>().
        unsafe {
            (*event).ts_ns = bpf_ktime_get_ns();
            (*event).flags = 0;
            match sock {
                Some(r) => words::copy(addr_of_mut!((*event).sock), r),
                // Volatile: plain stores would be merged into a byte-wise `memset`.
                None => {
                    write_volatile(addr_of_mut!((*event).sock.owner.tgid), 0);
                    write_volatile(addr_of_mut!((*event).sock.opened_ns), 0);
                    write_volatile(addr_of_mut!((*event).sock.established_ns), 0);
                    write_volatile(addr_of_mut!((*event).sock.resets_sent), 0);
                }
            }
            if owner.is_known() {
                (*event).flags = FLAG_OWNER_KNOWN;
            }
            fill_current(event);
            // An error report has no socket of its own: the one that just closed is its socket.
            let closed_sk = match close {
                Some(c) if sk == 0 => c.sk,
                _ => 0,
            };
            (*event).closed_sk = closed_sk;
            let netns_sk = if sk == 0 { closed_sk } else { sk };
            let read_netns = self.read.map_or(self.segment_netns, |r| r.netns);
            (*event).netns = known_netns(owner.netns, read_netns, || netns_of(netns_sk, skb, &offsets));
            // Only a full socket has cgroup data (a TIME_WAIT or request socket does not).
            let full = self.no_record_state.is_none() && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV;
            (*event).sk_cgroup = match self.read {
                _ if !full => 0,
                Some(r) => r.cgroup,
                None => socket_cgroup(netns_sk, &offsets),
            };
            // No owner on record (a socket older than rsttrace that has not been used since, or a
            // server's thread still blocked in recv()), or one that is not the task at hand (a
            // timer's or another process's reset: the owner on record may have handed the file
            // over and exited): the agent looks for the process holding its file. Not for a
            // reset sent from CLOSE: that is close() or shutdown() in its owner's call (which
            // names it), or the stack's abort of an orphan (no file).
            let from_close = kind == EventKind::SendReset as u32 && state == TCP_CLOSE;
            let owner_acting = owner.is_known() && owner.tgid == ((*event).current_pid_tgid >> 32) as u32;
            (*event).sk_inode = if full && !from_close && !owner_acting { socket_inode(netns_sk, &SOCK_OFFSETS.load()) } else { 0 };
            // Its holder may close it before the agent looks: the one that does is named then. Not
            // for a received reset of a socket with an owner on record: in a storm of aborts each
            // would cost a map entry and an item of its own, for the rare socket handed over by
            // an owner gone since (whose holder is then found only while it holds the file).
            if !owner.is_known() || kind == EventKind::SendReset as u32 {
                release::await_release(netns_sk, (*event).sk_inode);
            }
            if let Some(c) = close {
                (*event).closed_from = c.old_state as u8;
                (*event).flags |= FLAG_CLOSED_FROM;
            }
            if let Some(state) = self.no_record_state {
                (*event).flags |= FLAG_NO_RECORD;
                (*event).sk_state = state;
            }
            let sock_offsets = SOCK_OFFSETS.load();
            if kind == EventKind::SendReset as u32 {
                // Read here unless the caller wrote it already.
                let trigger = if self.trigger_written.is_some() { None } else { trigger_of(skb, &offsets) };
                if let Some(t) = &trigger {
                    write_trigger(event, t);
                }
                let segment = match (&trigger, self.trigger_written) {
                    (Some(t), _) => Some(SegmentAck { tcp_flags: t.tcp_flags, ack_seq: t.ack_seq }),
                    (None, Some(ack_seq)) => Some(SegmentAck { tcp_flags: (*event).tcp_flags, ack_seq }),
                    (None, None) => None,
                };
                let trigger_known = segment.is_some();
                // The kprobe runs on entry, before tcp_v{4,6}_send_reset() returns without
                // sending for a segment that is itself a RST (or has no local destination, which
                // never reaches TCP's receive path): nothing was sent, so nothing is reported.
                if self.no_record_state.is_some() && (!trigger_known || (*event).tcp_flags & TCP_FLAG_RST != 0) {
                    entry.discard(BPF_RB_NO_WAKEUP);
                    return false;
                }
                let state = match self.no_record_state {
                    Some(s) => s as i32,
                    None => state,
                };
                if trigger_known {
                    (*event).flags |= FLAG_TRIGGER_KNOWN;
                    // A bare SYN that no socket answered (a port nobody listens on) opens a new
                    // connection: an earlier one's owner on its 4-tuple says nothing of it. The
                    // look-up is a cache miss in 4 MiB (~300 ns here), on every refused connect.
                    let refused_syn = sk == 0 && (*event).tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
                    if !refused_syn {
                        let e = &*event;
                        let key = segment_key(e.trigger_ip_version, e.trigger_sport, e.trigger_dport, &e.trigger_saddr, &e.trigger_daddr);
                        (*event).flags |= sent_history(event, sk, state, &key);
                    }
                }
                // A full socket (the kprobe path sees only TIME_WAIT and request sockets). Who
                // holds it is read whatever the state; the reason's stand-ins only where they
                // say something (`sock_facts` is `None` in other states).
                if sk != 0 && self.no_record_state.is_none() && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV {
                    let typed = self.read.and_then(|r| r.holder);
                    let mut facts = match typed {
                        Some(h) => h.facts,
                        None => holder_facts(sk, state, &sock_offsets),
                    };
                    // An abort of a connection this host opened: did it end an answered request,
                    // a connect probe, or a race's spare (below)?
                    let opened_here = state == TCP_CLOSE && sock.is_some_and(|r| r.opened_ns != 0);
                    let sent = match typed {
                        _ if !opened_here => None,
                        Some(h) => Some(h.sent),
                        None => read_u32(sk, sock_offsets.data_segs_out),
                    };
                    if opened_here {
                        facts |= match typed {
                            Some(h) => h.exchange,
                            None => exchange_facts(sk, sent, &sock_offsets),
                        };
                    }
                    if state == TCP_CLOSE {
                        if let Some(code) = closer_exit_code() {
                            facts |= FACT_CLOSER_EXITING;
                            (*event).closer_exit_code = code;
                        }
                    }
                    (*event).flags |= FLAG_FACTS_KNOWN;
                    // Load-time constant: kernels with a reason field skip the reason's stand-ins.
                    if sock_offsets.active != 0 {
                        if let Some(stand_ins) = sock_facts(sk, state, segment, &sock_offsets) {
                            facts |= stand_ins;
                            (*event).flags |= FLAG_STAND_INS_READ;
                        }
                    }
                    (*event).sk_facts = facts;
                    let retransmits = match self.read {
                        Some(r) => Some(r.retransmits),
                        None => read_u32(sk, sock_offsets.total_retrans),
                    };
                    if let Some(n) = retransmits {
                        (*event).retransmits = n;
                        (*event).flags |= FLAG_RETRANSMITS_READ;
                    }
                    if let (Some(r), Some(c)) = (sock, close) {
                        // A connection that carried data was not a race's spare, however soon
                        // after its handshake it went: only one that sent nothing is looked at.
                        // (Unknown where BTF lacks the count: looked at, as before it was read.)
                        let sent_nothing = !matches!(sent, Some(n) if n > 0);
                        if opened_here && r.established_ns != 0 && sent_nothing {
                            (*event).flags |= race_sibling(event, sk, r.owner.tgid, &c.key);
                        }
                    }
                }
            } else if kind == EventKind::ReceiveReset as u32 && sk != 0 {
                // The record has no state; the socket has it, even for a connection older than
                // rsttrace (tcp_reset() changes it only after the tracepoint).
                let (state, retransmits) = match self.read {
                    Some(r) => (r.state, Some(r.retransmits)),
                    None => (sk_state(sk), read_u32(sk, sock_offsets.total_retrans)),
                };
                if state != 0 {
                    (*event).sk_state = state;
                    (*event).flags |= FLAG_STATE_READ;
                }
                if let Some(n) = retransmits {
                    (*event).retransmits = n;
                    (*event).flags |= FLAG_RETRANSMITS_READ;
                }
                // Load-time constant: without `--network-evidence` nothing was sampled.
                if let Some(k) = receive_key.filter(|_| NETWORK_EVIDENCE.load() != 0) {
                    if let Some(e) = evidence::of(sk, k.lport, k.rport, (*event).ts_ns) {
                        (*event).peer = e;
                        (*event).flags |= FLAG_PEER_SAMPLED;
                    }
                }
                // Not while connecting: the other end has no connection to be found by yet (the
                // agent asks its listeners instead).
                let connecting = state as i32 == TCP_SYN_SENT;
                if receive_key.is_some_and(|k| !connecting && history::peer_here(&k)) {
                    (*event).flags |= FLAG_PEER_LOCAL;
                }
                // Refused by this host's stack, or aborted by its other end here, whose RST the
                // agent may never see (counted in the kernel past the rate): noted since this
                // connection began, where its record says when. Load-time constant: only where
                // the kernel counts.
                if fold::enabled() {
                    let since = sock.map_or(0, |r| if connecting { r.opened_ns } else { r.established_ns });
                    match receive_key.map_or(0, |k| fold::sent_here(&k, since, (*event).ts_ns)) {
                        fold::REFUSED_SYN if connecting => (*event).flags |= FLAG_REFUSED_HERE,
                        fold::ABORT_LINGER0 if !connecting => (*event).flags |= FLAG_ABORTED_HERE,
                        _ => {}
                    }
                }
            } else if kind == EventKind::ErrorReport as u32 {
                if let Some(c) = close {
                    // `tcp_done()` left the count of consecutive timeouts: the SYN's in
                    // SYN_SENT, the oldest unacknowledged segment's after.
                    if let Some(n) = read_u8(c.sk, sock_offsets.icsk_retransmits) {
                        (*event).retransmits = n as u32;
                        (*event).flags |= FLAG_RETRANSMITS_READ;
                    }
                    write_timeout(event, c.sk, &sock_offsets);
                }
            }
        }
        entry.submit(submit_flags());
        true
    }
}

/// The current task, straight into the ring buffer (not through a zeroed stack copy); its cgroup
/// only under a cgroup filter, for an owner named by `current`.
///
/// # Safety
/// `event` points at a reserved, writable ring-buffer slot.
#[inline(always)]
unsafe fn fill_current(event: *mut Event) {
    // SAFETY: the caller's reserved slot; the helpers have no preconditions.
    unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        (*event).current_pid_tgid = pid_tgid;
        if generated::bpf_get_current_comm((*event).current_comm.as_mut_ptr().cast(), 16) != 0 {
            (*event).current_comm[0] = 0;
        }
        // A thread names itself (a worker's comm): its process's name too, for a thread that is
        // not the main one (two probe reads, where a report's owner may be that thread).
        if (pid_tgid >> 32) as u32 != pid_tgid as u32 {
            if let Some(name) = process_comm() {
                (*event).current_process_comm = name;
                (*event).flags |= FLAG_PROCESS_COMM;
            }
        }
        // The acting process's workload: a socket made by another (systemd's socket activation,
        // a parent before a fork and a move) holds its maker's cgroup.
        (*event).current_cgroup = bpf_get_current_cgroup_id();
    }
}

/// The segment a sent reset answers, into its event (read under `FLAG_TRIGGER_KNOWN`).
///
/// # Safety
/// `event` points at a reserved, writable ring-buffer slot.
#[inline(always)]
unsafe fn write_trigger(event: *mut Event, t: &Trigger) {
    // SAFETY: the caller's contract.
    unsafe {
        (*event).tcp_flags = t.tcp_flags;
        (*event).trigger_ip_version = t.ip_version;
        (*event).trigger_sport = t.sport;
        (*event).trigger_dport = t.dport;
        // Four stores each: an array assignment would be a byte-wise `memcpy` (see `words.rs`).
        words::put_address(event.cast(), core::mem::offset_of!(Event, trigger_saddr), &t.saddr);
        words::put_address(event.cast(), core::mem::offset_of!(Event, trigger_daddr), &t.daddr);
    }
}

/// The name of the process `current` belongs to: its group leader's `comm`.
#[inline(always)]
pub(crate) fn process_comm() -> Option<[u8; 16]> {
    let o = OFFSETS.load();
    if o.task_group_leader == NO_OFFSET || o.task_comm == NO_OFFSET {
        return None;
    }
    // SAFETY: the helper has no preconditions; probe reads only.
    unsafe {
        let task = generated::bpf_get_current_task();
        let leader = read::<u64>(task + o.task_group_leader as u64).filter(|p| *p != 0)?;
        read::<[u8; 16]>(leader + o.task_comm as u64)
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            // Nothing for the reader: do not wake it.
            entry.discard(BPF_RB_NO_WAKEUP);
        }
    }
}

pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Count one more item submitted on this CPU (see `Submitted`), and say whether to wake the
/// reader: once per `WAKEUP_EVERY` items on a CPU instead of once per item. A wakeup (an
/// irq_work, a self-interrupt) was measured at 13–15 µs in a VM, and at one per 64 events it made
/// up a third of a received reset's cost. The agent also drains on its own tick (50 ms, 1 s when
/// idle), so a lone event waits at most that long. Counted per CPU (an inlined array access):
/// asking the ring buffer how full it is was measured at ~1.2 µs.
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    match SUBMITTED.get_ptr_mut(0) {
        Some(count) => {
            // SAFETY: per-CPU slot. A program interrupting this one on the same CPU (a softirq's
            // reset) between a load and its store loses one of the two steps (BPF offers Rust no
            // atomic add): the total then counts one item short, which can hide an item never
            // read but never invents one, and a wakeup comes an item late.
            unsafe {
                (*count).total += 1;
                (*count).since_wakeup += 1;
                if (*count).since_wakeup < WAKEUP_EVERY.load() {
                    return BPF_RB_NO_WAKEUP;
                }
                (*count).since_wakeup = 0;
            }
            BPF_RB_FORCE_WAKEUP
        }
        None => BPF_RB_FORCE_WAKEUP,
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(counter) = LOST.get_ptr_mut(LOST_SLOT) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *counter += 1 };
    }
}
