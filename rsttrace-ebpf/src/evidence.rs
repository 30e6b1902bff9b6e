//! `--network-evidence`: how the peer's own segments arrive (hop count, IPv4 IP ID), so that a
//! received RST that does not arrive like them can be told apart as sent by a device in the path.
//! Runs for every segment an established socket receives, the hottest path in the stack, so on
//! `tcp:tcp_probe` it samples: a socket's first segments, every segment without data (ACKs, and
//! the RST itself), and one data segment in `SAMPLE_EVERY` (a path that changes shows within that
//! many); the others cost an array look-up and a counter, judged from the record before any probe
//! read. (A RST that carries data is skipped with them.) The kprobe of older kernels has no
//! record to judge from: it reads every segment. No map insert, nothing sent to the agent. Off by
//! default; the agent attaches it only under the flag.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use rsttrace_common::{PeerEvidence, PeerSample, NO_OFFSET, PEER_SLOTS};

use crate::{
    emit::read,
    maps::{OFFSETS, PEERS},
};

const TCP_FLAG_RST: u8 = 0x04;
/// IPv4's first 12 bytes hold its IP ID (4..6) and TTL (8); IPv6's first 8 its hop limit (7).
const IP_PREFIX: usize = 12;
/// TCP header bytes through the flags.
const TCP_PREFIX: usize = 14;
/// A RST sampled longer ago than this is not the one being reported (the reset follows its
/// segment in the same softirq; a RST that reset nothing, out of window, can be older).
const RST_FRESH_NS: u64 = 50_000_000;
/// Every segment of a socket's first ones is sampled...
const SAMPLE_FIRST: u32 = 8;
/// ...then one data segment in this many.
const SAMPLE_EVERY: u32 = 64;

/// What the tracepoint's record says of a segment before any probe read (the kprobe has none).
pub struct Seen {
    pub lport: u16,
    pub rport: u16,
    pub data_len: u16,
}

/// A data segment of a socket already sampled, outside the sampling: counted, not read.
#[inline(always)]
pub fn skipped(sk: u64, seen: &Seen) -> bool {
    if seen.data_len == 0 {
        return false; // an ACK, a window update, or a RST: always sampled
    }
    let Some(p) = PEERS.get_ptr_mut(slot(sk)) else { return false };
    // SAFETY: array value memory, valid for this program run.
    let p: &mut PeerSample = unsafe { &mut *p };
    if p.sk != sk || p.lport != seen.lport || p.rport != seen.rport || p.seen < SAMPLE_FIRST || p.seen % SAMPLE_EVERY == 0 {
        return false;
    }
    p.seen = p.seen.saturating_add(1);
    p.evidence.unsampled = p.evidence.unsampled.saturating_add(1);
    true
}

#[inline(always)]
fn slot(sk: u64) -> u32 {
    let mixed = (sk as u32) ^ ((sk >> 32) as u32);
    (mixed.wrapping_mul(0x9E37_79B1) >> 16) & (PEER_SLOTS - 1)
}

/// One incoming segment of an established socket (`tcp:tcp_probe`, or a kprobe on
/// `tcp_rcv_established` where that tracepoint does not name the segment).
#[inline(always)]
pub fn sample(sk: u64, skb: u64) {
    let o = OFFSETS.load();
    if sk == 0
        || skb == 0
        || o.skb_head == NO_OFFSET
        || o.skb_transport_header == NO_OFFSET
        || o.skb_network_header == NO_OFFSET
    {
        return;
    }
    // SAFETY: probe reads only; the slot pointer is array value memory valid for this run.
    unsafe {
        let Some(head) = read::<u64>(skb + o.skb_head as u64) else {
            return;
        };
        let Some(transport) = read::<u16>(skb + o.skb_transport_header as u64) else {
            return;
        };
        let Some(network) = read::<u16>(skb + o.skb_network_header as u64) else {
            return;
        };
        if head == 0 || transport == u16::MAX || network == u16::MAX {
            return;
        }
        let Some(ip) = read::<[u8; IP_PREFIX]>(head + network as u64) else {
            return;
        };
        let Some(tcp) = read::<[u8; TCP_PREFIX]>(head + transport as u64) else {
            return;
        };
        let version = ip[0] >> 4;
        let (ttl, ip_id) = match version {
            4 => (ip[8], u16::from_be_bytes([ip[4], ip[5]])),
            6 => (ip[7], 0),
            _ => return,
        };
        let rport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let lport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let Some(p) = PEERS.get_ptr_mut(slot(sk)) else {
            return;
        };
        let p: &mut PeerSample = &mut *p;
        if p.sk != sk || p.lport != lport || p.rport != rport {
            // Another socket's slot, or an earlier socket's at this address: start over.
            p.sk = sk;
            p.lport = lport;
            p.rport = rport;
            p.evidence = PeerEvidence::EMPTY;
            p.rst_ns = 0;
            p.seen = 0;
        }
        p.seen = p.seen.saturating_add(1);
        let e = &mut p.evidence;
        e.ip_version = version;
        if tcp[13] & TCP_FLAG_RST != 0 {
            e.rst_ttl = ttl;
            e.rst_ip_id = ip_id;
            p.rst_ns = bpf_ktime_get_ns();
            return;
        }
        if e.segments == 0 || ttl < e.ttl_min {
            e.ttl_min = ttl;
        }
        if e.segments == 0 || ttl > e.ttl_max {
            e.ttl_max = ttl;
        }
        e.ttl_last = ttl;
        e.ip_id_last = ip_id;
        e.unsampled = 0;
        e.segments = e.segments.saturating_add(1);
    }
}

/// What was sampled on `sk`, for its reset received at `now_ns` on the connection between
/// `lport` and `rport`: the RST's own hop count only if that RST is this one (taken, so a later
/// reset cannot take it again). A slot of an earlier socket at the same address is not this one's.
#[inline(always)]
pub fn of(sk: u64, lport: u16, rport: u16, now_ns: u64) -> Option<PeerEvidence> {
    let p = PEERS.get_ptr_mut(slot(sk))?;
    // SAFETY: array value memory, valid for this program run.
    let p: &mut PeerSample = unsafe { &mut *p };
    if p.sk != sk || p.lport != lport || p.rport != rport {
        return None;
    }
    let mut e = p.evidence;
    if p.rst_ns == 0 || now_ns.wrapping_sub(p.rst_ns) > RST_FRESH_NS {
        e.rst_ttl = 0;
        e.rst_ip_id = 0;
    }
    p.rst_ns = 0;
    Some(e)
}
