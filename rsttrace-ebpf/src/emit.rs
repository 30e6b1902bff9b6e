//! Copy one tracepoint record, with context, into the ring buffer.
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    programs::TracePointContext,
    EbpfContext,
};
use rsttrace_common::{
    Event, EventKind, Owner, StructOffsets, TracepointLayout, FLAG_OWNER_KNOWN, FLAG_TRIGGER_KNOWN,
    LOST_SLOT, MAX_FILTER_PORTS, NO_FIELD, NO_OFFSET, RECORD_MAX,
};

use crate::{
    maps::{CONFIG, EVENTS, LOST},
    owner,
};

#[inline(always)]
pub fn layout(kind: EventKind) -> TracepointLayout {
    CONFIG.load().layouts[kind as usize]
}

/// Read a field of the record; `None` when this kernel's tracepoint has no such field.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == NO_FIELD {
        return None;
    }
    // SAFETY: bounded read from the tracepoint record through the probe-read helper.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

#[inline(always)]
unsafe fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: the probe-read helper turns a bad address into an error, never a fault.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Network namespace inode behind a `struct net *` stored at `holder + offset`.
#[inline(always)]
fn netns_at(holder: u64, offset: u32, o: &StructOffsets) -> u32 {
    if holder == 0 || offset == NO_OFFSET || o.net_inum == NO_OFFSET {
        return 0;
    }
    // SAFETY: probe reads only.
    unsafe {
        match read::<u64>(holder + offset as u64) {
            Some(net) if net != 0 => read::<u32>(net + o.net_inum as u64).unwrap_or(0),
            _ => 0,
        }
    }
}

/// The socket's namespace; without a socket, the namespace of the device the segment came in on.
#[inline(always)]
fn netns_of(sk: u64, skb: u64, o: &StructOffsets) -> u32 {
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
struct Trigger {
    tcp_flags: u8,
    ip_version: u8,
    sport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

#[inline(always)]
fn trigger_of(skb: u64, o: &StructOffsets) -> Option<Trigger> {
    if skb == 0 || o.skb_head == NO_OFFSET || o.skb_transport_header == NO_OFFSET || o.skb_network_header == NO_OFFSET {
        return None;
    }
    // SAFETY: probe reads only.
    unsafe {
        let head = read::<u64>(skb + o.skb_head as u64)?;
        let transport = read::<u16>(skb + o.skb_transport_header as u64)?;
        let network = read::<u16>(skb + o.skb_network_header as u64)?;
        if head == 0 || transport == u16::MAX || network == u16::MAX {
            return None;
        }
        let th = head + transport as u64;
        let nh = head + network as u64;
        let ip_version = read::<u8>(nh)? >> 4;
        let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
        match ip_version {
            4 => {
                saddr[..4].copy_from_slice(&read::<[u8; 4]>(nh + 12)?);
                daddr[..4].copy_from_slice(&read::<[u8; 4]>(nh + 16)?);
            }
            6 => {
                saddr = read::<[u8; 16]>(nh + 8)?;
                daddr = read::<[u8; 16]>(nh + 24)?;
            }
            _ => return None,
        }
        Some(Trigger {
            tcp_flags: read::<u8>(th + 13)?,
            ip_version,
            sport: u16::from_be(read::<u16>(th)?),
            saddr,
            daddr,
        })
    }
}

/// Reserve an event, fill it and submit it; count it as lost when the buffer is full.
/// Local or remote port and family of the record, in host order; `None` when it has none.
#[inline(always)]
fn port(ctx: &TracePointContext, host_order: u16, blob: u16) -> Option<u16> {
    match field::<u16>(ctx, host_order) {
        Some(p) => Some(p),
        None if blob != NO_FIELD => field::<u16>(ctx, blob + 2).map(u16::from_be),
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

/// The load-time filter. Whatever the kernel cannot judge here passes; the agent re-checks.
#[inline(always)]
fn passes(ctx: &TracePointContext, kind: EventKind, owner: &Option<Owner>) -> bool {
    let f = CONFIG.load().filter;
    let l = layout(kind);
    if f.family != 0 {
        let family = field::<u16>(ctx, l.family).or_else(|| {
            if l.saddr_blob == NO_FIELD { None } else { field::<u16>(ctx, l.saddr_blob) }
        });
        if family.is_some_and(|fam| fam != f.family) {
            return false;
        }
    }
    if f.lport_count > 0 {
        if let Some(p) = port(ctx, l.sport, l.saddr_blob) {
            if p != 0 && !listed(p, &f.lports, f.lport_count) {
                return false;
            }
        }
    }
    if f.rport_count > 0 {
        // A listener's record has no remote port (0): pass it for the agent to judge.
        if let Some(p) = port(ctx, l.dport, l.daddr_blob) {
            if p != 0 && !listed(p, &f.rports, f.rport_count) {
                return false;
            }
        }
    }
    if let Some(o) = owner {
        if (f.pid != 0 && o.tgid != f.pid) || (f.cgroup != 0 && o.cgroup != f.cgroup) {
            return false;
        }
    }
    true
}

#[inline(always)]
pub fn emit(ctx: &TracePointContext, kind: EventKind, sk: u64, skb: u64) {
    let owner = if sk != 0 { owner::lookup(sk) } else { None };
    if !passes(ctx, kind, &owner) {
        return;
    }
    let record_size = layout(kind).record_size as usize;
    let offsets = CONFIG.load().offsets;
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, writable ring-buffer slot of size_of::<Event>().
    unsafe {
        (*event).kind = kind as u32;
        (*event).ts_ns = bpf_ktime_get_ns();
        (*event).current_pid_tgid = bpf_get_current_pid_tgid();
        (*event).current_comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*event).current_cgroup = bpf_get_current_cgroup_id();
        match owner {
            Some(owner) => {
                (*event).owner = owner;
                (*event).flags = FLAG_OWNER_KNOWN;
            }
            None => {
                (*event).owner = Owner { tgid: 0, pid: 0, comm: [0; 16], cgroup: 0 };
                (*event).flags = 0;
            }
        }
        (*event).netns = netns_of(sk, skb, &offsets);
        (*event).tcp_flags = 0;
        (*event).trigger_ip_version = 0;
        (*event).trigger_sport = 0;
        (*event)._pad = [0; 6];
        (*event).trigger_saddr = [0; 16];
        (*event).trigger_daddr = [0; 16];
        if kind as u32 == EventKind::SendReset as u32 {
            if let Some(t) = trigger_of(skb, &offsets) {
                (*event).tcp_flags = t.tcp_flags;
                (*event).trigger_ip_version = t.ip_version;
                (*event).trigger_sport = t.sport;
                (*event).trigger_saddr = t.saddr;
                (*event).trigger_daddr = t.daddr;
                (*event).flags |= FLAG_TRIGGER_KNOWN;
            }
        }
        let size = if record_size > RECORD_MAX { RECORD_MAX } else { record_size };
        (*event).record_size = size as u16;
        // The record lives at the start of a per-CPU trace buffer far larger than RECORD_MAX, so
        // a fixed-size copy is always in bounds; the agent only reads `record_size` bytes of it.
        if bpf_probe_read_kernel_buf(ctx.as_ptr() as *const u8, &mut (*event).record).is_err() {
            entry.discard(0);
            return;
        }
    }
    entry.submit(wakeup_flags());
}

/// Wake the reader only once a batch has piled up: one wakeup per ~64 KiB instead of one per
/// event. The agent also drains on its own short tick, so a lone event waits at most that long.
const WAKEUP_BYTES: u64 = 64 * 1024;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(counter) = LOST.get_ptr_mut(LOST_SLOT) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *counter += 1 };
    }
}
