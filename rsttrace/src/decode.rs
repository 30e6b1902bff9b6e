//! Ring-buffer bytes → [`KernelEvent`], using field offsets from the running kernel's format
//! files. Pure: never touches the kernel, never panics on arbitrary bytes.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use rsttrace_common::{
    Event, EventKind, Owner, PeerEvidence, RaceEntry, Released, TracepointLayout, EVENT_SIZE, RELEASED_ITEM,
    FACT_ACCEPT_QUEUE_FULL, FACT_ACK_IN_WINDOW, FACT_CLOSER_EXITING, FACT_DESTROYED, FACT_EXCHANGED, FACT_KEPT, FACT_NOTHING_EXCHANGED, FACT_LINGER0, FACT_LINGER2_NEGATIVE,
    FACT_ORPHAN, FACT_PEER_CLOSED, FACT_UNREAD, FACT_UNREAD_ONE, FLAG_CLOSED_FROM,
    FLAG_EARLIER_ENDED_BADLY, FLAG_PEER_HOLDS_OPEN, FLAG_EARLIER_OWNER, FLAG_EARLIER_SK, FLAG_FACTS_KNOWN, FLAG_NO_RECORD, FLAG_ORPHAN_TIMED_OUT, FLAG_OWNER_KNOWN, FLAG_PEER_LOCAL, FLAG_PROCESS_COMM, FLAG_REFUSED_HERE, FLAG_ABORTED_HERE,
    FLAG_PEER_SAMPLED, FLAG_RETRANSMITS_READ, FLAG_TIMEOUT_READ, PROBING_ANSWERED, PROBING_ZERO_WINDOW, FLAG_SIBLING, FLAG_SIBLING_OPEN, FLAG_STAND_INS_READ,
    FLAG_STATE_READ, FLAG_TRIGGER_KNOWN, FLAG_TUPLE_REUSED, NO_FIELD, RECORD_MAX,
};

use crate::{
    event::{
        Arrival, Comm, Endpoints, Ending, Family, History, KernelEvent, Payload, Segment, Sibling,
        SockFacts, Task, TcpState, TimeoutFacts,
    },
    tracefs::{Field, Format},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes, expected {EVENT_SIZE}")]
    Size(usize),
    #[error("release of {0} bytes, expected {RELEASED_SIZE}")]
    ReleaseSize(usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("{0} event for a tracepoint that was not attached")]
    NotAttached(&'static str),
    #[error("{0} record has no usable address family")]
    Family(&'static str),
}

/// The fields of one tracepoint we decode, located in its record.
#[derive(Clone, Debug, Default)]
pub struct RecordFields {
    skaddr: Option<Field>,
    skbaddr: Option<Field>,
    state: Option<Field>,
    reason: Option<Field>,
    oldstate: Option<Field>,
    newstate: Option<Field>,
    protocol: Option<Field>,
    error: Option<Field>,
    family: Option<Field>,
    sport: Option<Field>,
    dport: Option<Field>,
    saddr: Option<Field>,
    daddr: Option<Field>,
    saddr_v6: Option<Field>,
    daddr_v6: Option<Field>,
    record_size: usize,
    /// Names leaked once per format file read (a few dozen at start-up): every sent reset then
    /// carries a `&'static str` instead of allocating its name.
    reason_names: HashMap<i64, &'static str>,
}

impl RecordFields {
    pub fn from_format(format: &Format) -> Self {
        let f = |name: &str| format.field(name).cloned();
        Self {
            skaddr: f("skaddr"),
            skbaddr: f("skbaddr"),
            state: f("state"),
            reason: f("reason"),
            oldstate: f("oldstate"),
            newstate: f("newstate"),
            protocol: f("protocol"),
            error: f("error"),
            family: f("family"),
            sport: f("sport"),
            dport: f("dport"),
            saddr: f("saddr"),
            daddr: f("daddr"),
            saddr_v6: f("saddr_v6"),
            daddr_v6: f("daddr_v6"),
            record_size: format.record_size().min(RECORD_MAX),
            reason_names: format
                .symbols
                .get("reason")
                .map(|names| names.iter().map(|(value, name)| (*value, &*Box::leak(name.clone().into_boxed_str()))).collect())
                .unwrap_or_default(),
        }
    }

    /// What the kernel programs need of this layout.
    pub fn kernel_layout(&self) -> TracepointLayout {
        let off = |f: &Option<Field>| f.as_ref().map_or(NO_FIELD, |f| f.offset as u16);
        TracepointLayout {
            record_size: self.record_size as u16,
            skaddr: off(&self.skaddr),
            skbaddr: off(&self.skbaddr),
            state: off(&self.state),
            oldstate: off(&self.oldstate),
            newstate: off(&self.newstate),
            protocol: off(&self.protocol),
            family: off(&self.family),
            sport: off(&self.sport),
            dport: off(&self.dport),
            saddr_blob: self.saddr.as_ref().filter(|f| f.size >= 24).map_or(NO_FIELD, |f| f.offset as u16),
            daddr_blob: self.daddr.as_ref().filter(|f| f.size >= 24).map_or(NO_FIELD, |f| f.offset as u16),
            error: off(&self.error),
            saddr4: self.saddr.as_ref().filter(|f| f.size == 4).map_or(NO_FIELD, |f| f.offset as u16),
            daddr4: self.daddr.as_ref().filter(|f| f.size == 4).map_or(NO_FIELD, |f| f.offset as u16),
            saddr6: self.saddr_v6.as_ref().filter(|f| f.size == 16).map_or(NO_FIELD, |f| f.offset as u16),
            daddr6: self.daddr_v6.as_ref().filter(|f| f.size == 16).map_or(NO_FIELD, |f| f.offset as u16),
            reason: off(&self.reason),
        }
    }

    /// The record takes its addresses from the segment (sockaddr blobs, Linux 6.10+), so the
    /// tracepoint can fire without a socket; the older layout reads them from the socket, and
    /// its kernels call it for full sockets only.
    pub fn has_segment_addresses(&self) -> bool {
        self.saddr.as_ref().is_some_and(|f| f.size >= 24)
    }

    /// The reason table names the application's aborts (`TCP_ABORT_ON_CLOSE`, Linux 6.11+);
    /// before that, active resets carry `NOT_SPECIFIED`.
    pub fn has_active_reasons(&self) -> bool {
        self.reason_names.values().any(|n| *n == "TCP_ABORT_ON_CLOSE")
    }

    pub fn has_reason(&self) -> bool {
        self.reason.is_some()
    }

    /// This kernel's number for the reason `name`, as its format's table gives it.
    pub fn reason_value(&self, name: &str) -> Option<u32> {
        self.reason_names.iter().find(|(_, n)| **n == name).and_then(|(value, _)| u32::try_from(*value).ok())
    }
}

fn bytes<'a>(record: &'a [u8], field: &Option<Field>) -> Option<&'a [u8]> {
    let f = field.as_ref()?;
    record.get(f.offset..f.offset + f.size)
}

/// Little-endian integer of 1, 2, 4 or 8 bytes, sign-extended when the field is signed.
fn int(record: &[u8], field: &Option<Field>) -> Option<i64> {
    let b = bytes(record, field)?;
    let signed = field.as_ref()?.signed;
    Some(match b.len() {
        1 if signed => b[0] as i8 as i64,
        1 => b[0] as i64,
        2 if signed => i16::from_le_bytes([b[0], b[1]]) as i64,
        2 => u16::from_le_bytes([b[0], b[1]]) as i64,
        4 if signed => i32::from_le_bytes(b.try_into().ok()?) as i64,
        4 => u32::from_le_bytes(b.try_into().ok()?) as i64,
        8 => i64::from_le_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

/// A `struct sockaddr_in`/`sockaddr_in6` blob (the 6.10+ `tcp_send_reset` layout).
fn sockaddr(blob: &[u8]) -> Option<(u16, IpAddr, u16)> {
    let family = u16::from_le_bytes([*blob.first()?, *blob.get(1)?]);
    let port = u16::from_be_bytes([*blob.get(2)?, *blob.get(3)?]);
    let addr = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(blob.get(4..8)?).ok()?)),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(blob.get(8..24)?).ok()?)),
        _ => return None,
    };
    Some((family, addr, port))
}

impl RecordFields {
    fn endpoints(&self, record: &[u8], what: &'static str) -> Result<Endpoints, DecodeError> {
        // Current tcp_send_reset: sockaddr blobs, local end first.
        if self.saddr.as_ref().is_some_and(|f| f.size >= 24) {
            let local = bytes(record, &self.saddr).and_then(sockaddr);
            let remote = bytes(record, &self.daddr).and_then(sockaddr);
            let (Some((family, laddr, lport)), Some((_, raddr, rport))) = (local, remote) else {
                return Err(DecodeError::Family(what));
            };
            let family = if family == AF_INET { Family::Ipv4 } else { Family::Ipv6 };
            return Ok(Endpoints { family, laddr, lport, raddr, rport });
        }
        let family = match int(record, &self.family).map(|f| f as u16) {
            Some(AF_INET) => Family::Ipv4,
            Some(AF_INET6) => Family::Ipv6,
            _ => return Err(DecodeError::Family(what)),
        };
        let addr = |v4: &Option<Field>, v6: &Option<Field>| -> Option<IpAddr> {
            Some(match family {
                Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes(record, v4)?).ok()?)),
                Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes(record, v6)?).ok()?)),
            })
        };
        let (Some(laddr), Some(raddr)) = (addr(&self.saddr, &self.saddr_v6), addr(&self.daddr, &self.daddr_v6)) else {
            return Err(DecodeError::Family(what));
        };
        // These layouts store ports in host order (the tracepoints apply ntohs).
        Ok(Endpoints {
            family,
            laddr,
            lport: int(record, &self.sport).unwrap_or(0) as u16,
            raddr,
            rport: int(record, &self.dport).unwrap_or(0) as u16,
        })
    }

    fn state(&self, record: &[u8], field: &Option<Field>) -> Option<TcpState> {
        int(record, field).and_then(TcpState::from_kernel)
    }

    fn payload(&self, kind: EventKind, record: &[u8]) -> Payload {
        match kind {
            EventKind::SendReset => Payload::SendReset {
                state: self.state(record, &self.state),
                reason: int(record, &self.reason).map(|r| {
                    let name = self.reason_names.get(&r).copied().unwrap_or_else(|| fallback_reason_name(r));
                    (r as u32, name)
                }),
            },
            EventKind::ReceiveReset => Payload::ReceiveReset { state: None },
            EventKind::SetState => Payload::SetState {
                old: self.state(record, &self.oldstate),
                new: self.state(record, &self.newstate),
            },
            EventKind::ErrorReport => Payload::ErrorReport {
                error: int(record, &self.error).unwrap_or(0) as i32,
            },
        }
    }
}

/// `enum sk_rst_reason` names of Linux 6.12–6.18, used only when the format file's own table
/// lacks a value.
fn fallback_reason_name(value: i64) -> &'static str {
    const NAMES: [&str; 26] = [
        "NOT_SPECIFIED", "NO_SOCKET", "TCP_INVALID_ACK_SEQUENCE", "TCP_RFC7323_PAWS",
        "TCP_TOO_OLD_ACK", "TCP_ACK_UNSENT_DATA", "TCP_FLAGS", "TCP_OLD_ACK", "TCP_ABORT_ON_DATA",
        "TCP_TIMEWAIT_SOCKET", "INVALID_SYN", "TCP_ABORT_ON_CLOSE", "TCP_ABORT_ON_LINGER",
        "TCP_ABORT_ON_MEMORY", "TCP_STATE", "TCP_KEEPALIVE_TIMEOUT", "TCP_DISCONNECT_WITH_DATA",
        "MPTCP_RST_EUNSPEC", "MPTCP_RST_EMPTCP", "MPTCP_RST_ERESOURCE", "MPTCP_RST_EPROHIBIT",
        "MPTCP_RST_EWQ2BIG", "MPTCP_RST_EBADPERF", "MPTCP_RST_EMIDDLEBOX", "ERROR", "MAX",
    ];
    usize::try_from(value).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

fn segment(raw: &Event) -> Option<Segment> {
    let addr = |b: &[u8; 16]| match raw.trigger_ip_version {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    };
    Some(Segment {
        tcp_flags: raw.tcp_flags,
        saddr: addr(&raw.trigger_saddr)?,
        sport: raw.trigger_sport,
        daddr: addr(&raw.trigger_daddr)?,
    })
}

const RELEASED_SIZE: usize = std::mem::size_of::<Released>();

/// One ring-buffer item: a kernel event, or the release of a socket whose reset found no owner.
/// (Unboxed, though an event is much the larger: it moves once, into the judge, and a box would
/// cost an allocation per event.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Event(KernelEvent),
    Released(Release),
}

/// The process that let go of a socket nobody was seen acting on (see `Released`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The socket file's inode, as the reset's event named it.
    pub inode: u64,
    /// The releasing task: its process (`pid`) and thread (`tid`).
    pub pid: u32,
    pub tid: u32,
    /// The process's own name where the kernel read it (the releasing thread's is no name for
    /// its process unless it is the main thread).
    pub process_comm: Option<Comm>,
}

/// A [`Released`] item, told apart by its first word; `None` for any other item.
fn release(data: &[u8]) -> Option<Result<Release, DecodeError>> {
    let kind = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    if kind != RELEASED_ITEM {
        return None;
    }
    if data.len() < RELEASED_SIZE {
        return Some(Err(DecodeError::ReleaseSize(data.len())));
    }
    // SAFETY: length checked; `Released` is plain old data, valid for any bytes; read unaligned.
    let raw = unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<Released>()) };
    let (pid, tid) = ((raw.pid_tgid >> 32) as u32, raw.pid_tgid as u32);
    let process_comm = if raw.process_comm[0] != 0 {
        Some(Comm::from_kernel(&raw.process_comm))
    } else {
        (pid == tid && raw.comm[0] != 0).then(|| Comm::from_kernel(&raw.comm))
    };
    Some(Ok(Release { inode: raw.inode, pid, tid, process_comm }))
}

/// Decodes events for the running kernel.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    /// Indexed by `EventKind`; `None` for tracepoints not attached.
    kinds: [Option<RecordFields>; EventKind::COUNT],
}

impl Decoder {
    pub fn new(kinds: [Option<RecordFields>; EventKind::COUNT]) -> Self {
        Self { kinds }
    }

    /// Any ring-buffer item.
    pub fn decode_item(&self, data: &[u8]) -> Result<Item, DecodeError> {
        match release(data) {
            Some(release) => release.map(Item::Released),
            None => self.decode(data).map(Item::Event),
        }
    }

    pub fn decode(&self, data: &[u8]) -> Result<KernelEvent, DecodeError> {
        if data.len() < EVENT_SIZE {
            return Err(DecodeError::Size(data.len()));
        }
        // Read in place where the ring buffer keeps it aligned (it aligns every record to 8
        // bytes), which spares copying the whole event; copied otherwise.
        let copy;
        let raw: &Event = if data.as_ptr().align_offset(std::mem::align_of::<Event>()) == 0 {
            // SAFETY: length and alignment checked; Event is plain old data, valid for any bytes.
            unsafe { &*data.as_ptr().cast::<Event>() }
        } else {
            // SAFETY: length checked; read unaligned.
            copy = unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<Event>()) };
            &copy
        };
        let kind = EventKind::from_u32(raw.kind).ok_or(DecodeError::Kind(raw.kind))?;
        let fields = self.kinds[kind as usize]
            .as_ref()
            .ok_or(DecodeError::NotAttached(kind.program()))?;
        let record = &raw.record[..(raw.record_size as usize).min(RECORD_MAX)];
        let trigger = (raw.flags & FLAG_TRIGGER_KNOWN != 0).then(|| segment(&raw)).flatten();
        let no_record = raw.flags & FLAG_NO_RECORD != 0;
        let mut endpoints = match trigger {
            // The kprobe path: the reset answers the segment, so its ends are the segment's, reversed.
            Some(t) if no_record => Endpoints {
                family: if t.saddr.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 },
                laddr: t.daddr,
                lport: raw.trigger_dport,
                raddr: t.saddr,
                rport: t.sport,
            },
            None if no_record => return Err(DecodeError::Family("send_reset_kprobe")),
            _ => fields.endpoints(record, kind.program())?,
        };
        if let Some(t) = trigger.filter(|_| endpoints.raddr.is_unspecified()) {
            // A listener answered: the record holds the listener's wildcard remote end (and,
            // for a listener bound to any address, a wildcard local one).
            endpoints.raddr = t.saddr;
            endpoints.rport = t.sport;
            if endpoints.laddr.is_unspecified() {
                endpoints.laddr = t.daddr;
            }
        }
        let endpoints = endpoints.as_on_the_wire();
        let owner = (raw.flags & FLAG_OWNER_KNOWN != 0).then(|| task(&raw.sock.owner));
        Ok(KernelEvent {
            kind,
            ts_ns: raw.ts_ns,
            // An error report's record names no socket: the kernel side found it.
            sk: int(record, &fields.skaddr).map_or(raw.closed_sk, |sk| sk as u64),
            skb: int(record, &fields.skbaddr).unwrap_or(0) as u64,
            trigger,
            endpoints,
            payload: match fields.payload(kind, record) {
                _ if no_record => Payload::SendReset { state: TcpState::from_kernel(raw.sk_state as i64), reason: None },
                Payload::ReceiveReset { .. } if raw.flags & FLAG_STATE_READ != 0 => {
                    Payload::ReceiveReset { state: TcpState::from_kernel(raw.sk_state as i64) }
                }
                payload => payload,
            },
            current: Some(Task {
                pid: (raw.current_pid_tgid >> 32) as u32,
                tid: raw.current_pid_tgid as u32,
                comm: Comm::from_kernel(&raw.current_comm),
                cgroup: raw.current_cgroup,
            }),
            current_process: (raw.flags & FLAG_PROCESS_COMM != 0).then(|| Comm::from_kernel(&raw.current_process_comm)),
            owner,
            netns: raw.netns,
            cgroup: raw.sk_cgroup,
            inode: raw.sk_inode,
            facts: (raw.flags & FLAG_FACTS_KNOWN != 0).then(|| SockFacts {
                stand_ins_read: raw.flags & FLAG_STAND_INS_READ != 0,
                linger0: raw.sk_facts & FACT_LINGER0 != 0,
                unread: raw.sk_facts & FACT_UNREAD != 0,
                unread_one: raw.sk_facts & FACT_UNREAD_ONE != 0,
                accept_queue_full: raw.sk_facts & FACT_ACCEPT_QUEUE_FULL != 0,
                ack_in_window: raw.sk_facts & FACT_ACK_IN_WINDOW != 0,
                orphan: raw.sk_facts & FACT_ORPHAN != 0,
                destroyed: raw.sk_facts & FACT_DESTROYED != 0,
                peer_closed: raw.sk_facts & FACT_PEER_CLOSED != 0,
                kept: raw.sk_facts & FACT_KEPT != 0,
                exchanged: raw.sk_facts & FACT_EXCHANGED != 0,
                nothing_exchanged: raw.sk_facts & FACT_NOTHING_EXCHANGED != 0,
                closer_ended: (raw.sk_facts & FACT_CLOSER_EXITING != 0).then(|| Ending::from_exit_code(raw.closer_exit_code)),
                linger2_negative: raw.sk_facts & FACT_LINGER2_NEGATIVE != 0,
            }),
            history: history(&raw),
        })
    }
}

fn task(owner: &Owner) -> Task {
    Task { pid: owner.tgid, tid: owner.pid, comm: Comm::from_kernel(&owner.comm), cgroup: owner.cgroup }
}

fn history(raw: &Event) -> History {
    let flag = |f: u32| raw.flags & f != 0;
    let nonzero = |ns: u64| (ns != 0).then_some(ns);
    History {
        opened_ns: nonzero(raw.sock.opened_ns),
        established_ns: nonzero(raw.sock.established_ns),
        closed_from: flag(FLAG_CLOSED_FROM).then(|| TcpState::from_kernel(raw.closed_from as i64)).flatten(),
        earlier_owner: (flag(FLAG_EARLIER_OWNER) && raw.earlier.is_known()).then(|| task(&raw.earlier)),
        earlier_sk: (flag(FLAG_EARLIER_SK) && raw.earlier_sk != 0).then_some(raw.earlier_sk),
        earlier_ended_badly: flag(FLAG_EARLIER_SK) && flag(FLAG_EARLIER_ENDED_BADLY),
        sibling: flag(FLAG_SIBLING).then(|| sibling(&raw.sibling, flag(FLAG_SIBLING_OPEN))).flatten(),
        peer_local: flag(FLAG_PEER_LOCAL),
        refused_here: flag(FLAG_REFUSED_HERE),
        aborted_here: flag(FLAG_ABORTED_HERE),
        tuple_reused: flag(FLAG_TUPLE_REUSED),
        peer_holds_open: flag(FLAG_PEER_HOLDS_OPEN),
        orphan_timed_out: flag(FLAG_ORPHAN_TIMED_OUT),
        retransmits: flag(FLAG_RETRANSMITS_READ).then_some(raw.retransmits),
        timeout: flag(FLAG_TIMEOUT_READ).then_some(TimeoutFacts {
            user_timeout_ms: raw.user_timeout_ms,
            probes_out: raw.probes_out,
            zero_window_probed: raw.probing & PROBING_ZERO_WINDOW != 0,
            answered_probing: raw.probing & PROBING_ANSWERED != 0,
        }),
        resets_sent: raw.sock.resets_sent,
        arrival: flag(FLAG_PEER_SAMPLED)
            .then(|| arrival(&raw.peer))
            .flatten(),
    }
}

/// A peer sample, when it holds anything (a socket whose first segment was the RST has none of
/// the peer's own).
fn arrival(p: &PeerEvidence) -> Option<Arrival> {
    let ipv4 = p.ip_version == 4;
    if !ipv4 && p.ip_version != 6 {
        return None;
    }
    let rst_seen = p.rst_ttl != 0;
    Some(Arrival {
        segments: p.segments,
        ttl_min: p.ttl_min,
        ttl_max: p.ttl_max,
        ttl_last: p.ttl_last,
        rst_ttl: rst_seen.then_some(p.rst_ttl),
        // Data segments skipped since the last sample moved the peer's IP ID on unseen.
        ip_id_last: (ipv4 && p.segments > 0 && p.unsampled == 0).then_some(p.ip_id_last),
        rst_ip_id: (ipv4 && rst_seen).then_some(p.rst_ip_id),
        ipv6: !ipv4,
    })
}

/// A race entry's remote end as the wire carries it (an IPv4-mapped address is IPv4).
fn sibling(e: &RaceEntry, open: bool) -> Option<Sibling> {
    let raddr = match e.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(e.raddr[0], e.raddr[1], e.raddr[2], e.raddr[3])),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(e.raddr);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    let family = if raddr.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 };
    Some(Sibling { family, raddr, rport: e.rport, opened_ns: e.opened_ns, established_ns: e.established_ns, open })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tracefs::tests::{kernel_format, KERNELS};
    use rsttrace_common::SockRecord;

    pub fn decoder_for(kernel: &str) -> Decoder {
        let mut kinds: [Option<RecordFields>; EventKind::COUNT] = Default::default();
        for kind in EventKind::ALL {
            let (group, name) = kind.tracepoint();
            kinds[kind as usize] = Some(RecordFields::from_format(&kernel_format(kernel, group, name)));
        }
        Decoder::new(kinds)
    }

    fn put(record: &mut [u8], field: &Field, value: &[u8]) {
        record[field.offset..field.offset + value.len()].copy_from_slice(value);
    }

    /// Build a ring-buffer event for `kind` from named field values, as the kernel would.
    pub fn event_bytes(kernel: &str, kind: EventKind, values: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let (group, name) = kind.tracepoint();
        let format = kernel_format(kernel, group, name);
        let mut raw = Event {
            kind: kind as u32,
            flags: FLAG_OWNER_KNOWN,
            ts_ns: 42,
            current_pid_tgid: (7u64 << 32) | 8,
            current_comm: *b"swapper/1\0\0\0\0\0\0\0",
            current_process_comm: [0; 16],
            current_cgroup: 0,
            sk_cgroup: 0,
            sk_inode: 0,
            sock: SockRecord {
                owner: Owner { tgid: 812, pid: 813, comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0", cgroup: 0, netns: 0, _pad: 0 },
                opened_ns: 0,
                established_ns: 0,
                resets_sent: 0,
                _pad: 0,
            },
            earlier: Owner::UNKNOWN,
            earlier_sk: 0,
            closed_sk: 0,
            sibling: RaceEntry::EMPTY,
            netns: 4026531840,
            retransmits: 0,
            record_size: format.record_size() as u16,
            tcp_flags: 0,
            trigger_ip_version: 0,
            trigger_sport: 0,
            trigger_dport: 0,
            sk_state: 0,
            closed_from: 0,
            sk_facts: 0,
            closer_exit_code: 0,
            user_timeout_ms: 0,
            probes_out: 0,
            probing: 0,
            _pad_probes: [0; 2],
            trigger_saddr: [0; 16],
            trigger_daddr: [0; 16],
            peer: rsttrace_common::PeerEvidence::EMPTY,
            record: [0; RECORD_MAX],
        };
        for (field, value) in values {
            put(&mut raw.record, format.field(field).unwrap(), value);
        }
        // SAFETY: Event is plain old data.
        unsafe { std::slice::from_raw_parts((&raw as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[..2].copy_from_slice(&AF_INET.to_le_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    fn sockaddr_in6(ip: Ipv6Addr, port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[..2].copy_from_slice(&AF_INET6.to_le_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&ip.octets());
        b
    }

    #[test]
    fn send_reset_without_socket_current_layout() {
        for kernel in ["6.12.117-debian-cloud", "6.18.44-host"] {
            let bytes = event_bytes(
                kernel,
                EventKind::SendReset,
                &[
                    ("reason", 1u32.to_le_bytes().to_vec()),
                    ("saddr", sockaddr_in([10, 0, 0, 2], 9)),
                    ("daddr", sockaddr_in([10, 0, 0, 1], 40000)),
                ],
            );
            let e = decoder_for(kernel).decode(&bytes).unwrap();
            assert_eq!(e.sk, 0);
            assert_eq!(e.endpoints.laddr.to_string(), "10.0.0.2");
            assert_eq!((e.endpoints.lport, e.endpoints.rport), (9, 40000));
            assert_eq!(e.endpoints.family, Family::Ipv4);
            assert_eq!(
                e.payload,
                Payload::SendReset { state: None, reason: Some((1, "NO_SOCKET".into())) }
            );
            assert_eq!(e.current.unwrap().comm, "swapper/1");
            assert_eq!(e.owner.as_ref().unwrap().pid, 812);
            assert_eq!(e.owner.unwrap().comm, "nginx");
        }
    }

    /// Decode an event as written by the kprobe path (no record) or with socket facts.
    fn patched(mut bytes: Vec<u8>, edit: impl FnOnce(&mut Event)) -> Vec<u8> {
        // SAFETY: the buffer is one whole Event; read and written unaligned.
        unsafe {
            let mut raw: Event = std::ptr::read_unaligned(bytes.as_ptr().cast());
            edit(&mut raw);
            std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), raw);
        }
        bytes
    }

    #[test]
    fn history_is_decoded_only_under_its_flags() {
        let kernel = "6.18.44-host";
        let record = [("state", 7i32.to_le_bytes().to_vec()), ("saddr", sockaddr_in([10, 0, 0, 1], 5000)), ("daddr", sockaddr_in([10, 0, 0, 2], 80))];
        let bare = event_bytes(kernel, EventKind::SendReset, &record);
        // Stale bytes everywhere a flag is clear: none of them may be read.
        let stale = patched(bare.clone(), |raw| {
            raw.earlier = raw.sock.owner;
            raw.earlier_sk = 7;
            raw.sibling.family = AF_INET;
            raw.retransmits = 9;
            raw.closed_from = 1;
        });
        assert_eq!(decoder_for(kernel).decode(&stale).unwrap().history, History::default());
        let full = patched(bare, |raw| {
            raw.flags |= FLAG_EARLIER_OWNER | FLAG_EARLIER_SK | FLAG_EARLIER_ENDED_BADLY | FLAG_SIBLING | FLAG_SIBLING_OPEN | FLAG_PEER_LOCAL | FLAG_TUPLE_REUSED | FLAG_PEER_HOLDS_OPEN | FLAG_RETRANSMITS_READ | FLAG_CLOSED_FROM | FLAG_ORPHAN_TIMED_OUT | FLAG_REFUSED_HERE | FLAG_ABORTED_HERE;
            raw.sock.opened_ns = 5;
            raw.sock.established_ns = 6;
            raw.earlier = raw.sock.owner;
            raw.earlier_sk = 7;
            // A dual-stack client's IPv4 connection: an IPv4-mapped IPv6 address.
            raw.sibling = RaceEntry { sk: 1, opened_ns: 4, established_ns: 7, raddr: Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets(), family: AF_INET6, rport: 445, _pad: [0; 4] };
            raw.retransmits = 3;
            raw.closed_from = 1;
        });
        let h = decoder_for(kernel).decode(&full).unwrap().history;
        assert_eq!((h.opened_ns, h.established_ns, h.closed_from, h.retransmits), (Some(5), Some(6), Some(TcpState::Established), Some(3)));
        assert_eq!((h.earlier_owner.unwrap().pid, h.earlier_sk), (812, Some(7)));
        assert!(h.earlier_ended_badly && h.peer_local && h.tuple_reused && h.peer_holds_open && h.orphan_timed_out && h.refused_here && h.aborted_here);
        let s = h.sibling.unwrap();
        assert_eq!(s.rport, 445);
        assert_eq!((s.family, s.raddr.to_string(), s.opened_ns, s.established_ns, s.open), (Family::Ipv4, "10.0.0.2".to_string(), 4, 7, true));
    }

    fn released_bytes(pid_tgid: u64, comm: &[u8; 16], process_comm: &[u8; 16]) -> Vec<u8> {
        let raw = Released { kind: RELEASED_ITEM, _pad: 0, inode: 4242, pid_tgid, comm: *comm, process_comm: *process_comm };
        // SAFETY: plain old data viewed as its bytes.
        unsafe { std::slice::from_raw_parts((&raw as *const Released).cast::<u8>(), RELEASED_SIZE) }.to_vec()
    }

    #[test]
    fn a_release_is_told_from_an_event_by_its_first_word_and_names_the_process() {
        let decoder = decoder_for("6.18.44-host");
        let main_thread = released_bytes((7 << 32) | 7, b"nginx\0\0\0\0\0\0\0\0\0\0\0", &[0; 16]);
        let Ok(Item::Released(r)) = decoder.decode_item(&main_thread) else { panic!("not a release") };
        assert_eq!((r.inode, r.pid, r.tid, r.process_comm.map(|c| c.as_str().to_string())), (4242, 7, 7, Some("nginx".into())));
        // Another thread's own name is not its process's: only the leader's, where it was read.
        let worker = released_bytes((7 << 32) | 9, b"worker-3\0\0\0\0\0\0\0\0", &[0; 16]);
        let Ok(Item::Released(r)) = decoder.decode_item(&worker) else { panic!("not a release") };
        assert_eq!((r.pid, r.tid, r.process_comm), (7, 9, None));
        let named = released_bytes((7 << 32) | 9, b"worker-3\0\0\0\0\0\0\0\0", b"gunicorn\0\0\0\0\0\0\0\0");
        let Ok(Item::Released(r)) = decoder.decode_item(&named) else { panic!("not a release") };
        assert_eq!(r.process_comm.map(|c| c.as_str().to_string()), Some("gunicorn".into()));
        assert_eq!(decoder.decode_item(&main_thread[..20]), Err(DecodeError::ReleaseSize(20)));
        // An event is still an event.
        let record = [("state", 7i32.to_le_bytes().to_vec()), ("saddr", sockaddr_in([10, 0, 0, 1], 5000)), ("daddr", sockaddr_in([10, 0, 0, 2], 80))];
        assert!(matches!(decoder.decode_item(&event_bytes("6.18.44-host", EventKind::SendReset, &record)), Ok(Item::Event(_))));
    }

    #[test]
    fn a_threads_process_name_is_read_only_under_its_flag() {
        let kernel = "6.18.44-host";
        let record = [("state", 7i32.to_le_bytes().to_vec()), ("saddr", sockaddr_in([10, 0, 0, 1], 5000)), ("daddr", sockaddr_in([10, 0, 0, 2], 80))];
        let bare = patched(event_bytes(kernel, EventKind::SendReset, &record), |raw| raw.current_process_comm = *b"python3\0\0\0\0\0\0\0\0\0");
        assert_eq!(decoder_for(kernel).decode(&bare).unwrap().current_process, None, "stale bytes");
        let named = patched(bare, |raw| raw.flags |= FLAG_PROCESS_COMM);
        assert_eq!(decoder_for(kernel).decode(&named).unwrap().current_process.map(|c| c.as_str().to_string()), Some("python3".into()));
    }

    #[test]
    fn kprobe_reset_takes_its_ends_from_the_segment_and_its_state_from_the_socket() {
        let bytes = patched(event_bytes("6.1.176-debian-cloud", EventKind::SendReset, &[]), |raw| {
            raw.record_size = 0;
            raw.record = [0xaa; RECORD_MAX]; // an older event's bytes: must not be read
            raw.flags = FLAG_NO_RECORD | FLAG_TRIGGER_KNOWN;
            raw.sk_state = 6; // TIME_WAIT
            raw.tcp_flags = 0x18;
            raw.trigger_ip_version = 4;
            raw.trigger_sport = 40000;
            raw.trigger_dport = 8080;
            raw.trigger_saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
            raw.trigger_daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        });
        let e = decoder_for("6.1.176-debian-cloud").decode(&bytes).unwrap();
        assert_eq!(e.endpoints.family, Family::Ipv4);
        assert_eq!((e.endpoints.laddr, e.endpoints.lport), ("10.0.0.2".parse().unwrap(), 8080));
        assert_eq!((e.endpoints.raddr, e.endpoints.rport), ("10.0.0.1".parse().unwrap(), 40000));
        assert_eq!(e.payload, Payload::SendReset { state: Some(TcpState::TimeWait), reason: None });
        assert!(e.owner.is_none() && e.facts.is_none());

        // No socket at all (closed port), over IPv6.
        let bytes = patched(bytes, |raw| {
            raw.sk_state = 0;
            raw.trigger_ip_version = 6;
            raw.trigger_saddr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
            raw.trigger_daddr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        });
        let e = decoder_for("6.1.176-debian-cloud").decode(&bytes).unwrap();
        assert_eq!(e.endpoints.family, Family::Ipv6);
        assert_eq!(e.endpoints.laddr, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(e.payload, Payload::SendReset { state: None, reason: None });

        // Without the segment there is nothing to name the connection by.
        let bytes = patched(bytes, |raw| raw.flags = FLAG_NO_RECORD);
        assert!(decoder_for("6.1.176-debian-cloud").decode(&bytes).is_err());
    }

    #[test]
    fn socket_facts_are_decoded_only_when_the_kernel_read_them() {
        let base = event_bytes(
            "6.1.176-debian-cloud",
            EventKind::SendReset,
            &[("family", 2u16.to_le_bytes().to_vec()), ("state", 7i32.to_le_bytes().to_vec())],
        );
        let bytes = patched(base.clone(), |raw| raw.sk_facts = FACT_LINGER0 | FACT_UNREAD_ONE);
        assert_eq!(decoder_for("6.1.176-debian-cloud").decode(&bytes).unwrap().facts, None);
        let bytes = patched(base, |raw| {
            raw.flags |= FLAG_FACTS_KNOWN;
            raw.sk_facts = FACT_LINGER0 | FACT_UNREAD_ONE;
        });
        let facts = decoder_for("6.1.176-debian-cloud").decode(&bytes).unwrap().facts.unwrap();
        assert!(facts.linger0 && facts.unread_one && !facts.unread && !facts.accept_queue_full && !facts.ack_in_window);
    }

    /// The capture mode follows the format, never the version: sockaddr blobs mean the tracepoint
    /// fires without a socket; a reason table naming TCP_ABORT_ON_CLOSE means aborts are named.
    #[test]
    fn capture_mode_is_read_from_the_format() {
        let send = |kernel| RecordFields::from_format(&kernel_format(kernel, "tcp", "tcp_send_reset"));
        let old = send("6.1.176-debian-cloud");
        assert!(!old.has_reason() && !old.has_active_reasons() && !old.has_segment_addresses());
        for kernel in ["6.12.117-debian-cloud", "6.18.44-host"] {
            let f = send(kernel);
            assert!(f.has_reason() && f.has_active_reasons() && f.has_segment_addresses(), "{kernel}");
        }
        // A 6.10-style table: reasons for the stack's resets only.
        let path = format!("{}/testdata/kernels/6.12.117-debian-cloud/tcp/tcp_send_reset.format", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("{ 11, \"TCP_ABORT_ON_CLOSE\" },"));
        let cut = text.replace("{ 11, \"TCP_ABORT_ON_CLOSE\" },", "");
        let f = RecordFields::from_format(&crate::tracefs::parse_format(&cut).unwrap());
        assert!(f.has_reason() && !f.has_active_reasons());
    }

    #[test]
    fn send_reset_ipv6_current_layout() {
        let ip: Ipv6Addr = "fd00::2".parse().unwrap();
        let bytes = event_bytes(
            "6.18.44-host",
            EventKind::SendReset,
            &[
                ("skaddr", 0xffff_8888_0000_1000u64.to_le_bytes().to_vec()),
                ("state", 7i32.to_le_bytes().to_vec()),
                ("reason", 14u32.to_le_bytes().to_vec()),
                ("saddr", sockaddr_in6(ip, 8080)),
                ("daddr", sockaddr_in6("fd00::1".parse().unwrap(), 5555)),
            ],
        );
        let e = decoder_for("6.18.44-host").decode(&bytes).unwrap();
        assert_eq!(e.sk, 0xffff_8888_0000_1000);
        assert_eq!(e.endpoints.family, Family::Ipv6);
        assert_eq!(e.endpoints.laddr, IpAddr::V6(ip));
        assert_eq!(
            e.payload,
            Payload::SendReset { state: Some(TcpState::Close), reason: Some((14, "TCP_STATE".into())) }
        );
    }

    #[test]
    fn send_reset_pre_6_10_layout_has_no_reason() {
        let kernel = "6.1.176-debian-cloud";
        let bytes = event_bytes(
            kernel,
            EventKind::SendReset,
            &[
                ("skaddr", 0xffff_1u64.to_le_bytes().to_vec()),
                ("state", 1i32.to_le_bytes().to_vec()),
                ("sport", 8080u16.to_le_bytes().to_vec()),
                ("dport", 41000u16.to_le_bytes().to_vec()),
                ("family", AF_INET6.to_le_bytes().to_vec()),
                ("saddr_v6", "fd00::2".parse::<Ipv6Addr>().unwrap().octets().to_vec()),
                ("daddr_v6", "fd00::1".parse::<Ipv6Addr>().unwrap().octets().to_vec()),
            ],
        );
        let e = decoder_for(kernel).decode(&bytes).unwrap();
        assert_eq!(e.payload, Payload::SendReset { state: Some(TcpState::Established), reason: None });
        assert_eq!(e.endpoints.raddr.to_string(), "fd00::1");
        assert_eq!((e.endpoints.lport, e.endpoints.rport), (8080, 41000));
    }

    #[test]
    fn set_state_and_error_report_on_every_kernel() {
        for kernel in KERNELS {
            let d = decoder_for(kernel);
            let bytes = event_bytes(
                kernel,
                EventKind::SetState,
                &[
                    ("oldstate", 1i32.to_le_bytes().to_vec()),
                    ("newstate", 4i32.to_le_bytes().to_vec()),
                    ("family", AF_INET.to_le_bytes().to_vec()),
                    ("sport", 5000u16.to_le_bytes().to_vec()),
                    ("saddr", vec![127, 0, 0, 1]),
                    ("daddr", vec![127, 0, 0, 2]),
                ],
            );
            let e = d.decode(&bytes).unwrap();
            assert_eq!(
                e.payload,
                Payload::SetState { old: Some(TcpState::Established), new: Some(TcpState::FinWait1) },
                "{kernel}"
            );
            assert_eq!(e.endpoints.raddr.to_string(), "127.0.0.2");
            let bytes = event_bytes(
                kernel,
                EventKind::ErrorReport,
                &[("error", 111i32.to_le_bytes().to_vec()), ("family", AF_INET.to_le_bytes().to_vec())],
            );
            assert_eq!(d.decode(&bytes).unwrap().payload, Payload::ErrorReport { error: 111 }, "{kernel}");
            // Its record names no socket: the one the kernel side found closing is its socket.
            assert_eq!(d.decode(&patched(bytes, |raw| raw.closed_sk = 0xffff_8880_0000_1000)).unwrap().sk, 0xffff_8880_0000_1000, "{kernel}");
        }
    }

    #[test]
    fn preempt_rt_layout_decodes() {
        let format = crate::tracefs::parse_format(crate::tracefs::tests::PREEMPT_RT_SEND_RESET).unwrap();
        let fields = RecordFields::from_format(&format);
        assert_eq!(fields.kernel_layout().skaddr, 24);
        assert_eq!(fields.kernel_layout().state, 32);
        let mut kinds: [Option<RecordFields>; EventKind::COUNT] = Default::default();
        kinds[0] = Some(fields);
        let mut raw = [0u8; EVENT_SIZE];
        let record_at = EVENT_SIZE - RECORD_MAX;
        let size_at = std::mem::offset_of!(Event, record_size);
        raw[size_at..size_at + 2].copy_from_slice(&96u16.to_le_bytes());
        raw[record_at + 36..record_at + 40].copy_from_slice(&1u32.to_le_bytes());
        raw[record_at + 40..record_at + 68].copy_from_slice(&sockaddr_in([1, 2, 3, 4], 80));
        raw[record_at + 68..record_at + 96].copy_from_slice(&sockaddr_in([5, 6, 7, 8], 81));
        let e = Decoder::new(kinds).decode(&raw).unwrap();
        assert_eq!(e.endpoints.laddr.to_string(), "1.2.3.4");
        assert!(matches!(e.payload, Payload::SendReset { reason: Some((1, _)), .. }));
    }

    #[test]
    fn garbage_is_an_error() {
        let d = decoder_for("6.18.44-host");
        assert_eq!(d.decode(&[0; 10]), Err(DecodeError::Size(10)));
        let mut bytes = vec![0u8; EVENT_SIZE];
        bytes[0] = 99;
        assert_eq!(d.decode(&bytes), Err(DecodeError::Kind(99)));
        bytes[0] = EventKind::SetState as u8;
        assert!(matches!(d.decode(&bytes), Err(DecodeError::Family(_))));
        // Any bytes at all: an error or an event, never a panic.
        for seed in 0..2000u32 {
            let mut b = vec![0u8; EVENT_SIZE];
            let mut x = seed.wrapping_mul(2654435761).max(1);
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            b[0] = (seed % 5) as u8;
            b[1..4].fill(0);
            let _ = d.decode(&b);
        }
    }
}
