//! The BTF-typed (`tp_btf`) programs: the kernel hands over the tracepoint's arguments instead
//! of first building a record for a classic program, and the socket's fields are read straight
//! from it. The agent attaches them, all or none (but `tcp_send_reset`'s, left out alone where the
//! verifier refuses it), where the kernel's BTF names the fields (`TYPED_SOCK`), its records have
//! the layout these programs write, and the verifier accepts them; the classic programs of `programs.rs` stay for other kernels, and for `tcp_send_reset`
//! where its record has the layout before 6.10 (its programs here write the later one, which
//! takes the addresses from the segment where there is no full socket).
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_skc_to_tcp_sock},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use rsttrace_common::{
    EventKind, Owner, SockRecord, TracepointLayout, ERROR_REPORT_SHAPE, FOLDED_REFUSAL_ANSWERED_HERE, FOLDED_REFUSAL_RECEIVED, FOLDED_RESET_ABORTED_HERE, FOLDED_RESET_RECEIVED, NO_FIELD, NO_OFFSET,
    RECEIVE_RESET_SHAPE, SEND_RESET_SHAPE, SET_STATE_SHAPE,
};

use crate::{
    emit::{
        exchange_facts_of, holder_facts_of, known_netns, process_comm, socket_netns, trigger_at, Draft, HolderRead, SocketRead, Trigger,
        SHUTDOWN_MASK, SOCK_DONE, SOCK_LINGER,
    },
    fold::{self, Abort, Received},
    owner::{TCP_CLOSE, TCP_ESTABLISHED, TCP_NEW_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT},
    maps::{TupleKey, ADDRESS_SCRATCH, REASON_TCP_STATE, TYPED_SKB, TYPED_SOCK},
    history, owner, release, words,
    programs::{changes_records, note_reset_sent, record_at_reset, state_changed, StateChange, AF_INET, ECONNABORTED, ETIMEDOUT, IPPROTO_TCP},
};

const AF_INET6: u16 = 10;

/// One offset of `TYPED_SOCK`, read on its own from the read-only global: the verifier then
/// knows its value, as it must for a typed pointer moved by it.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a plain read of a static.
        unsafe { read_volatile(addr_of!(TYPED_SOCK.$field)) as usize }
    };
}

/// One offset of `TYPED_SKB`, read as `offset!` reads `TYPED_SOCK`'s.
macro_rules! skb_offset {
    ($field:ident) => {
        // SAFETY: a plain read of a static.
        unsafe { read_volatile(addr_of!(TYPED_SKB.$field)) as usize }
    };
}

/// A field of the socket at `offset`.
///
/// # Safety
/// `sk` is a non-null socket pointer the verifier typed, and `offset` a field of type `T` in it.
#[inline(always)]
unsafe fn at<T: Copy>(sk: u64, offset: usize) -> T {
    // SAFETY: the caller's contract; the verifier checks the access against the kernel's BTF.
    unsafe { read_volatile((sk as *const u8).add(offset) as *const T) }
}

/// The socket's address as a plain number, to hash and compare: the verifier forbids arithmetic
/// on a typed pointer (the hash), but the same eight bytes stored in a map and loaded back are a
/// number (the kernel lets a privileged program store a pointer there). The slot is per CPU; a
/// program that interrupts this one on the same CPU (softirq) between the store and the load
/// stores its own socket there, and the count of stores tells: then a helper reads the pointer
/// instead (~60–100 ns here, where the round trip costs a few).
#[inline(always)]
fn address(sk: u64) -> u64 {
    if let Some(slot) = ADDRESS_SCRATCH.get_ptr_mut(0) {
        // SAFETY: a per-CPU map value; volatile, so the compiler neither drops the round trip
        // nor reorders it around the counts.
        unsafe {
            let mine = read_volatile(addr_of!((*slot).stores)).wrapping_add(1);
            write_volatile(addr_of_mut!((*slot).stores), mine);
            write_volatile(addr_of_mut!((*slot).address), sk);
            let address = read_volatile(addr_of!((*slot).address));
            if read_volatile(addr_of!((*slot).stores)) == mine {
                return address;
            }
        }
    }
    let local = core::ptr::addr_of!(sk);
    // SAFETY: a probe read of a local.
    unsafe { bpf_probe_read_kernel(local) }.unwrap_or(0)
}

#[inline(always)]
fn is_tcp(sk: u64) -> bool {
    // SAFETY: callers pass the tracepoint's non-null socket.
    sk != 0 && unsafe { at::<u16>(sk, offset!(protocol)) } == IPPROTO_TCP
}

/// The socket's local port, network order. While the socket holds its port that is `skc_num`,
/// read straight from `struct sock`, since a helper call costs ~50 ns here (every return in the
/// kernel goes through a mitigation). Once the kernel released the port (before some CLOSEs) it
/// is `inet_sport`, past `struct sock`, where the verifier lets a `struct sock` pointer read
/// nothing: `bpf_skc_to_tcp_sock` (a check of the protocol, no copy) types the same socket as
/// the `tcp_sock` that holds it.
#[inline(always)]
fn local_port(sk: u64) -> Option<u16> {
    // A load-time constant: the verifier drops the read where BTF lacked the offset.
    if offset!(num) != NO_OFFSET as usize {
        // SAFETY: callers pass the tracepoint's non-null socket; `skc_num` is in `sock_common`.
        let bound = unsafe { at::<u16>(sk, offset!(num)) };
        if bound != 0 {
            return Some(bound.to_be());
        }
    }
    // SAFETY: the helper takes any socket pointer and returns null for one that is not TCP's.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
    if tcp.is_null() {
        return None;
    }
    // SAFETY: a field of the `tcp_sock` the verifier typed, at its offset from BTF.
    Some(unsafe { read_volatile(tcp.add(offset!(sport)) as *const u16) })
}

/// What `submit` would read through helpers: the socket's state, its retransmissions (a
/// `tcp_sock` field, through the pointer `bpf_skc_to_tcp_sock` types) and its cgroup id (a walk
/// of two pointers the verifier types from BTF; a null one reads as 0); for a reset it sends
/// from the state `sending` (the one its record names), who holds it and what it carried.
#[inline(always)]
fn socket_read(sk: u64, sending: Option<i32>) -> Option<SocketRead> {
    // SAFETY: as in `local_port`.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
    if tcp.is_null() {
        return None;
    }
    // SAFETY: fields at their offsets from BTF in the socket the verifier typed, and in the
    // structures its typed pointers lead to.
    unsafe {
        let state = at::<u8>(sk, offset!(state));
        let retransmits = read_volatile(tcp.add(offset!(total_retrans)) as *const u32);
        let holder = sending.and_then(|state| holder_read(sk, tcp, state));
        Some(SocketRead { state, retransmits, cgroup: cgroup(sk), netns: netns(sk), holder })
    }
}

/// The socket's cgroup v2 id: a walk of two pointers the verifier types from BTF (a null one
/// reads as 0); 0 where BTF lacked an offset.
#[inline(always)]
fn cgroup(sk: u64) -> u64 {
    // Load-time constants: the verifier drops the walk where BTF lacked an offset.
    if offset!(cgroup) == NO_OFFSET as usize || offset!(cgroup_kn) == NO_OFFSET as usize || offset!(kn_id) == NO_OFFSET as usize {
        return 0;
    }
    // SAFETY: fields at their offsets from BTF in the socket the verifier typed, and in the
    // cgroup and kernfs node its typed pointers lead to.
    unsafe { walk(sk, offset!(cgroup), offset!(cgroup_kn), offset!(kn_id)) }
}

/// The `T` at `last` in the structure that the pointer at `second` leads to, in the one the
/// pointer at `first` of `base` leads to: pointers the verifier types from BTF; a null one reads
/// as 0.
///
/// # Safety
/// `base` is a non-null pointer the verifier typed, and the offsets are fields of the types
/// along the way, from BTF.
#[inline(always)]
unsafe fn walk<T: Copy + Default>(base: u64, first: usize, second: usize, last: usize) -> T {
    // SAFETY: the caller's contract.
    unsafe {
        let middle = at::<*const u8>(base, first);
        if middle.is_null() {
            return T::default();
        }
        let end = read_volatile(middle.add(second) as *const *const u8);
        if end.is_null() {
            return T::default();
        }
        read_volatile(end.add(last) as *const T)
    }
}

/// What `emit::holder_facts` and `exchange_facts` would read through helpers for a reset `sk`
/// sends from `state`, straight from it; `None` where BTF lacked a field.
///
/// # Safety
/// `sk` is a full TCP socket the verifier typed, `tcp` the same socket typed as `tcp_sock`.
#[inline(always)]
unsafe fn holder_read(sk: u64, tcp: *const u8, state: i32) -> Option<HolderRead> {
    // Load-time constants: the verifier drops the reads where BTF lacked an offset.
    let known = [offset!(socket), offset!(flags), offset!(shutdown), offset!(data_segs_in), offset!(data_segs_out), offset!(snd_una), offset!(snd_nxt)];
    if known.iter().any(|o| *o == NO_OFFSET as usize) {
        return None;
    }
    // SAFETY: fields at their offsets from BTF in the sockets the caller's contract names.
    unsafe {
        let tcp_field = |offset: usize| read_volatile(tcp.add(offset) as *const u32);
        let closing = state == owner::TCP_CLOSE;
        let shutdown = closing.then(|| at::<u8>(sk, offset!(shutdown)));
        // `sk_lingertime` is a long. A load-time constant: the verifier drops the read where BTF
        // lacked the offset.
        let lingertime = (closing && offset!(lingertime) != NO_OFFSET as usize).then(|| at::<i64>(sk, offset!(lingertime)) as u64);
        // A `tcp_sock` field: read through the pointer the verifier typed as one.
        let linger2 = (closing && offset!(linger2) != NO_OFFSET as usize).then(|| read_volatile(tcp.add(offset!(linger2)) as *const i32));
        let facts = holder_facts_of(state, Some(at::<u64>(sk, offset!(socket))), Some(at::<i32>(sk, offset!(err))), Some(at::<u64>(sk, offset!(flags))), shutdown, lingertime, linger2);
        let sent = tcp_field(offset!(data_segs_out));
        let exchange = exchange_facts_of(sent, tcp_field(offset!(data_segs_in)), || (Some(tcp_field(offset!(snd_una))), Some(tcp_field(offset!(snd_nxt)))));
        Some(HolderRead { facts, exchange, sent })
    }
}

/// The socket's network namespace (its inode number) through the pointers the verifier types
/// from BTF, where a helper would read each; 0 where BTF lacked the offsets.
#[inline(always)]
fn netns(sk: u64) -> u32 {
    // Load-time constants: the verifier drops the walk where BTF lacked an offset.
    if offset!(net) == NO_OFFSET as usize || offset!(net_inum) == NO_OFFSET as usize {
        return 0;
    }
    // SAFETY: fields at their offsets from BTF in the socket the verifier typed, and in the
    // namespace its typed pointer leads to.
    unsafe {
        let net = at::<*const u8>(sk, offset!(net));
        if net.is_null() {
            return 0;
        }
        read_volatile(net.add(offset!(net_inum)) as *const u32)
    }
}

/// The socket's 4-tuple, and its family and remote address as a race entry keeps them.
#[inline(always)]
fn ends_of(sk: u64) -> Option<(TupleKey, u16, [u8; 16])> {
    // SAFETY: `sk` is a tracepoint's non-null socket (every caller checked).
    let (family, rport) = unsafe { (at::<u16>(sk, offset!(family)), u16::from_be(at::<u16>(sk, offset!(dport)))) };
    let lport = u16::from_be(local_port(sk)?);
    let mut raddr = [0u8; 16];
    // SAFETY: as above.
    let (laddr, raddr_tail) = unsafe {
        if family == AF_INET {
            let r: u32 = at(sk, offset!(daddr));
            raddr[..4].copy_from_slice(&r.to_ne_bytes());
            (at::<u32>(sk, offset!(rcv_saddr)), r)
        } else {
            let v6 = offset!(v6_daddr);
            for i in 0..4 {
                raddr[i * 4..i * 4 + 4].copy_from_slice(&at::<u32>(sk, v6 + i * 4).to_ne_bytes());
            }
            (at::<u32>(sk, offset!(v6_rcv_saddr) + 12), at::<u32>(sk, v6 + 12))
        }
    };
    Some((TupleKey { lport, rport, laddr, raddr: raddr_tail }, family, raddr))
}

/// Reserve an event of `kind` and write into it the record its classic tracepoint would have
/// built, as far as `shape` (see `rsttrace_common::SET_STATE_SHAPE`) has fields: the socket, its
/// ends, and what `fill` adds. The shape is a constant, so every store is at a literal offset.
#[inline(always)]
fn draft_with_ends(kind: EventKind, shape: &TracepointLayout, sk: u64, address: u64, fill: impl FnOnce(*mut u8)) -> Option<Draft> {
    let (key, family, raddr) = ends_of(sk)?;
    let mut d = Draft::reserve_synthesized(kind)?;
    let record = d.record_mut()?;
    // SAFETY: constant offsets inside the record (`shape.record_size` of RECORD_MAX bytes),
    // see `words::put`; `sk` as in `ends_of`.
    unsafe {
        words::zero(record, shape.record_size as usize);
        if shape.skaddr != NO_FIELD {
            words::put(record, shape.skaddr as usize, address);
        }
        if shape.protocol != NO_FIELD {
            words::put(record, shape.protocol as usize, IPPROTO_TCP);
        }
        words::put(record, shape.sport as usize, key.lport);
        words::put(record, shape.dport as usize, key.rport);
        words::put(record, shape.family as usize, family);
        if family == AF_INET {
            words::put(record, shape.saddr4 as usize, key.laddr);
            words::put(record, shape.daddr4 as usize, key.raddr);
        } else {
            let local = offset!(v6_rcv_saddr);
            for i in 0..4 {
                words::put(record, shape.saddr6 as usize + i * 4, at::<u32>(sk, local + i * 4));
            }
            words::put_address(record, shape.daddr6 as usize, &raddr);
        }
        fill(record);
    }
    Some(d)
}

/// A state change as a `tp_btf` program sees it: the socket (the typed pointer, which only field
/// reads may use, and its address as a number), and the states.
struct Typed {
    sk: u64,
    address: u64,
    old: i32,
    new: i32,
}

impl StateChange for Typed {
    #[inline(always)]
    fn ends(&self) -> Option<(TupleKey, u16, [u8; 16])> {
        ends_of(self.sk)
    }

    #[inline(always)]
    fn change_draft(&self) -> Option<Draft> {
        let (old, new) = (self.old, self.new);
        draft_with_ends(EventKind::SetState, &SET_STATE_SHAPE, self.sk, self.address, |record| {
            // SAFETY: constant offsets inside the record.
            unsafe {
                words::put(record, SET_STATE_SHAPE.oldstate as usize, old);
                words::put(record, SET_STATE_SHAPE.newstate as usize, new);
            }
        })
    }

    /// The pending error read straight from the socket, with no helper.
    #[inline(always)]
    fn pending_error(&self, _sk: u64) -> i32 {
        // SAFETY: the tracepoint's non-null socket (`is_tcp` checked).
        unsafe { at(self.sk, offset!(err)) }
    }

    /// What `tcp_close()` checks before it sends that RST, read from the socket: the
    /// application shut it down both ways and still holds its file (a disconnect keeps it open,
    /// a listener's unaccepted child has no file), SO_LINGER with a zero time, and nothing
    /// unread but the peer's FIN (unread data sends TCP_ABORT_ON_CLOSE instead). Most sockets
    /// stop at the flag.
    #[inline(always)]
    fn closes_abortively(&self) -> bool {
        // Load-time constants: the verifier drops the reads where BTF lacked an offset.
        let needed = [offset!(flags), offset!(socket), offset!(shutdown), offset!(lingertime), offset!(rcv_nxt), offset!(copied_seq)];
        if needed.iter().any(|o| *o == NO_OFFSET as usize) {
            return false;
        }
        // SAFETY: fields of the tracepoint's full socket at their offsets from BTF.
        let flags = unsafe { at::<u64>(self.sk, offset!(flags)) };
        if flags & (1 << SOCK_LINGER) == 0 {
            return false;
        }
        // SAFETY: as above.
        let (socket, shutdown) = unsafe { (at::<u64>(self.sk, offset!(socket)), at::<u8>(self.sk, offset!(shutdown))) };
        // A pending error: the stack's own reset or timeout ends the socket (`tcp_reset()`,
        // `tcp_done_with_error()` set it first; `tcp_disconnect()` only after its RST).
        // SAFETY: as above.
        if socket == 0 || shutdown & SHUTDOWN_MASK != SHUTDOWN_MASK || unsafe { at::<i32>(self.sk, offset!(err)) } != 0 {
            return false;
        }
        // SAFETY: as above (`sk_lingertime` is a long).
        if unsafe { at::<i64>(self.sk, offset!(lingertime)) } != 0 {
            return false;
        }
        // SAFETY: the helper takes any socket pointer and returns null for one that is not TCP's.
        let tcp = unsafe { bpf_skc_to_tcp_sock(self.sk as *mut c_void) } as *const u8;
        if tcp.is_null() {
            return false;
        }
        // SAFETY: fields of the `tcp_sock` the verifier typed, at their offsets from BTF.
        let unread = unsafe { read_volatile(tcp.add(offset!(rcv_nxt)) as *const u32).wrapping_sub(read_volatile(tcp.add(offset!(copied_seq)) as *const u32)) };
        // The peer's FIN takes a sequence number but is no data.
        unread == 0 || (unread == 1 && flags & (1 << SOCK_DONE) != 0)
    }
}

/// `inet_sock_set_state(sk, oldstate, newstate)`.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn set_state_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let (old, new) = (ctx.arg(1), ctx.arg(2));
    // The tracepoint also fires for SCTP and MPTCP sockets; only TCP matters here.
    if !changes_records(old, new) || !is_tcp(sk) {
        return 0;
    }
    let change = Typed { sk, address: address(sk), old, new };
    state_changed(&change, change.address, old, new);
    0
}

/// `tcp_receive_reset(sk)`: see `programs::tcp_receive_reset`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn receive_reset_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        return 0;
    }
    let address = address(sk);
    let read = socket_read(sk, None);
    let record = owner::record(address);
    if let (Some(r), Some(record)) = (read, record) {
        let folded = match r.state as i32 {
            TCP_SYN_SENT => fold::reset_received(&record.owner, fold::Storm::Refusal, |now| refusal(sk, record, &r, now)),
            // A connection this host opened; one it accepted has no record here.
            TCP_ESTABLISHED if record.opened_ns != 0 => fold::reset_received(&record.owner, fold::Storm::PeerReset, |now| peer_reset(sk, record, &r, now)),
            _ => false,
        };
        if folded {
            return 0;
        }
    }
    if let Some(d) = draft_with_ends(EventKind::ReceiveReset, &RECEIVE_RESET_SHAPE, sk, address, |_| {}) {
        let d = match read {
            Some(read) => d.with_socket_read(read),
            None => d,
        };
        d.submit(address, 0, record, None);
    }
    0
}

/// `tcp_send_reset(sk, skb, reason)`, where its record has the 6.10+ layout (`SEND_RESET_SHAPE`):
/// see `programs::tcp_send_reset_counting`. Either pointer may be null: a RST answering a segment
/// no socket took has no socket, an active reset no segment. The record takes its addresses from
/// a full socket, else from the segment, as the kernel's does. One program (a second on the same
/// tracepoint would be skipped, and counted as a loss, wherever one reset's run interrupts
/// another's), whose two paths are BPF functions of their own: inlined, both would need more
/// stack than BPF has, where calls count only the deepest chain.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn send_reset_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        return sent_without_socket(ctx.as_ptr());
    }
    // Load-time constant: the verifier drops the call where the kernel side counts nothing. A
    // call of its own, beside `sent_by_socket` rather than under it: three frames deep, the
    // stack is more than 6.12's verifier allows.
    if fold::enabled() && abort_folded(ctx.as_ptr()) {
        return 0;
    }
    sent_by_socket(ctx.as_ptr())
}

/// A reset sent by a socket (full, TIME_WAIT or request): see [`send_reset_typed`].
#[inline(never)]
fn sent_by_socket(ctx: *mut c_void) -> u32 {
    let ctx = BtfTracePointContext::new(ctx);
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        return 0;
    }
    // A number, for the record: a typed pointer that may be null allows no arithmetic.
    let skb = address(ctx.arg(1));
    let reason: u32 = ctx.arg(2);
    // SAFETY: a non-null socket; `skc_state` is in the part every kind of socket shares.
    let state = unsafe { at::<u8>(sk, offset!(state)) } as i32;
    let address = address(sk);
    // TIME_WAIT and request sockets lack the fields of a full one.
    let full = state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV;
    // The segment goes into the event with the record (`with_trigger`): `submit` reads it there.
    let draft = if full {
        full_socket(&ctx).and_then(|sk| sent_draft_of_socket(sk, address, skb, state, reason)).map(|d| match segment(&ctx) {
            Some(t) => d.with_trigger(&t),
            None => d,
        })
    } else {
        sent_draft(address, skb, state, reason, segment(&ctx).as_ref())
    };
    let Some(d) = draft else { return 0 };
    let (record, close) = record_at_reset(address, state);
    note_reset_sent(address, close);
    let read = if full { full_socket(&ctx).and_then(|sk| socket_read(sk, Some(state))) } else { None };
    let d = match read {
        Some(read) => d.with_socket_read(read),
        None => d,
    };
    d.submit(address, skb, record, close);
    0
}

/// A RST for a segment no socket took (a closed port): its record takes its addresses from the
/// segment, and a refused SYN's may be counted here instead (see `fold.rs`).
#[inline(never)]
fn sent_without_socket(ctx: *mut c_void) -> u32 {
    let ctx = BtfTracePointContext::new(ctx);
    let skb = address(ctx.arg(1));
    let reason: u32 = ctx.arg(2);
    let trigger = segment(&ctx);
    if trigger.as_ref().is_some_and(|t| fold::refused_syn_seen(t, || segment_netns(&ctx))) {
        return 0;
    }
    if let Some(d) = sent_draft(0, skb, 0, reason, trigger.as_ref()) {
        d.with_segment_netns(segment_netns(&ctx)).submit(0, skb, None, None);
    }
    0
}

/// The segment `tcp_send_reset` answers: where its headers lie read straight from the typed
/// `sk_buff` (loaded again and checked, as `full_socket` is), and only the headers through a
/// helper ([`trigger_at`]).
#[inline(always)]
fn segment(ctx: &BtfTracePointContext) -> Option<Trigger> {
    // Load-time constants: the verifier drops the reads where BTF lacked an offset.
    if skb_offset!(head) == NO_OFFSET as usize || skb_offset!(transport_header) == NO_OFFSET as usize || skb_offset!(network_header) == NO_OFFSET as usize {
        return None;
    }
    let skb = segment_buffer(ctx)?;
    // SAFETY: fields of the non-null `sk_buff` the verifier typed, at their offsets from BTF.
    let (head, transport, network) = unsafe { (at::<u64>(skb, skb_offset!(head)), at::<u16>(skb, skb_offset!(transport_header)), at::<u16>(skb, skb_offset!(network_header))) };
    trigger_at(head, transport, network)
}

/// `tcp_send_reset`'s `sk_buff`, loaded again from the context and checked where it is used.
#[inline(always)]
fn segment_buffer(ctx: &BtfTracePointContext) -> Option<u64> {
    // SAFETY: the second of the tracepoint's arguments, which the context holds.
    let skb = unsafe { read_volatile((ctx.as_ptr() as *const u64).add(1)) };
    (skb != 0).then_some(skb)
}

/// The namespace of the device the segment came in on, through the pointers the verifier types
/// from BTF (a null one reads as 0), where `netns_of` reads each through a helper; 0 where BTF
/// lacked an offset.
#[inline(always)]
fn segment_netns(ctx: &BtfTracePointContext) -> u32 {
    // Load-time constants: the verifier drops the walk where BTF lacked an offset.
    if skb_offset!(dev) == NO_OFFSET as usize || skb_offset!(dev_net) == NO_OFFSET as usize || offset!(net_inum) == NO_OFFSET as usize {
        return 0;
    }
    let Some(skb) = segment_buffer(ctx) else { return 0 };
    // SAFETY: fields at their offsets from BTF of the `sk_buff` the verifier typed and of the
    // device and namespace its typed pointers lead to.
    unsafe { walk(skb, skb_offset!(dev), skb_offset!(dev_net), offset!(net_inum)) }
}

/// `tcp_send_reset`'s socket, loaded again and checked where it is used: a check the compiler
/// folded into an earlier one would leave the verifier a pointer that may be null.
#[inline(always)]
fn full_socket(ctx: &BtfTracePointContext) -> Option<u64> {
    // SAFETY: the first of the tracepoint's arguments, which the context holds.
    let sk = unsafe { read_volatile(ctx.as_ptr() as *const u64) };
    (sk != 0).then_some(sk)
}

/// Reserve a sent reset and write the record `tcp_send_reset` would have built, its addresses
/// taken from the segment `trigger` answered (none without one), which goes into the event too;
/// `None` when the ring buffer is full.
#[inline(always)]
fn sent_draft(address: u64, skb: u64, state: i32, reason: u32, trigger: Option<&Trigger>) -> Option<Draft> {
    let mut d = Draft::reserve_synthesized(EventKind::SendReset)?;
    let record = d.record_mut()?;
    // SAFETY: the record's bytes.
    unsafe { sent_record(record, address, skb, state, reason) };
    if let Some(t) = trigger {
        // The segment came from the other end: its destination is this one.
        let family = if t.ip_version == 4 { AF_INET } else { AF_INET6 };
        // SAFETY: as above.
        unsafe {
            sockaddr(record, SEND_RESET_SHAPE.saddr_blob, family, t.dport, &t.daddr);
            sockaddr(record, SEND_RESET_SHAPE.daddr_blob, family, t.sport, &t.saddr);
        }
        return Some(d.with_trigger(t));
    }
    Some(d)
}

/// [`sent_draft`] for `sk`, a non-null full socket: the addresses are the socket's.
#[inline(always)]
fn sent_draft_of_socket(sk: u64, address: u64, skb: u64, state: i32, reason: u32) -> Option<Draft> {
    let (key, family, raddr) = ends_of(sk)?;
    let mut d = Draft::reserve_synthesized(EventKind::SendReset)?;
    let record = d.record_mut()?;
    // SAFETY: the record's bytes; `sk` as in `ends_of`.
    unsafe {
        sent_record(record, address, skb, state, reason);
        sockaddr(record, SEND_RESET_SHAPE.daddr_blob, family, key.rport, &raddr);
        if family == AF_INET {
            let mut laddr = [0u8; 16];
            laddr[..4].copy_from_slice(&key.laddr.to_ne_bytes());
            sockaddr(record, SEND_RESET_SHAPE.saddr_blob, family, key.lport, &laddr);
        } else {
            sockaddr(record, SEND_RESET_SHAPE.saddr_blob, family, key.lport, &[0; 16]);
            let local = offset!(v6_rcv_saddr);
            for i in 0..4 {
                words::put(record, SEND_RESET_SHAPE.saddr_blob as usize + 8 + i * 4, at::<u32>(sk, local + i * 4));
            }
        }
    }
    Some(d)
}

/// The fixed part of a `tcp_send_reset` record (`SEND_RESET_SHAPE`), the rest zeroed.
///
/// # Safety
/// `record` points at `RECORD_MAX` writable bytes.
#[inline(always)]
unsafe fn sent_record(record: *mut u8, address: u64, skb: u64, state: i32, reason: u32) {
    let s = SEND_RESET_SHAPE;
    // SAFETY: constant offsets inside the record (see `words::put`).
    unsafe {
        words::zero(record, s.record_size as usize);
        words::put(record, s.skbaddr as usize, skb);
        words::put(record, s.skaddr as usize, address);
        words::put(record, s.state as usize, state);
        words::put(record, s.reason as usize, reason);
    }
}

/// A `struct sockaddr_in`/`sockaddr_in6` at `offset` of the record: family, network-order port,
/// then the address (IPv4 in the first four bytes of `addr`).
///
/// # Safety
/// As [`sent_record`]; `offset` is one of the record's blobs.
#[inline(always)]
unsafe fn sockaddr(record: *mut u8, offset: u16, family: u16, port: u16, addr: &[u8; 16]) {
    // SAFETY: the caller's contract.
    unsafe {
        let offset = offset as usize;
        words::put(record, offset, family);
        words::put(record, offset + 2, port.to_be());
        if family == AF_INET {
            words::put(record, offset + 4, u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]));
        } else {
            words::put_address(record, offset + 8, addr);
        }
    }
}

/// A connecting socket's refusal, as the kernel side counts it (see `fold.rs`); `record` is the
/// socket's.
#[inline(always)]
fn refusal(sk: u64, record: &SockRecord, read: &SocketRead, now: u64) -> Option<Received> {
    let (key, family, raddr) = ends_of(sk)?;
    let netns = known_netns(record.owner.netns, read.netns, || socket_netns(sk));
    let kind = if fold::sent_here(&key, record.opened_ns, now) == fold::REFUSED_SYN { FOLDED_REFUSAL_ANSWERED_HERE } else { FOLDED_REFUSAL_RECEIVED };
    Some(Received { kind, ip_version: if family == AF_INET { 4 } else { 6 }, rport: key.rport, raddr, netns, cgroup: read.cgroup })
}

/// A reset a connection this host opened received in ESTABLISHED, as the kernel side counts
/// it (see `fold.rs`); `record` is the socket's. Its other end on this host aborted it, or it
/// has none there. `None` for one whose other end is a socket of this host whose RST was not
/// noted here: the agent tells whether that end's RST crossed or the one received was forged.
#[inline(always)]
fn peer_reset(sk: u64, record: &SockRecord, read: &SocketRead, now: u64) -> Option<Received> {
    let (key, family, raddr) = ends_of(sk)?;
    let kind = if fold::sent_here(&key, record.established_ns, now) == fold::ABORT_LINGER0 {
        FOLDED_RESET_ABORTED_HERE
    } else if history::peer_here(&key) {
        return None;
    } else {
        FOLDED_RESET_RECEIVED
    };
    let netns = known_netns(record.owner.netns, read.netns, || socket_netns(sk));
    Some(Received { kind, ip_version: if family == AF_INET { 4 } else { 6 }, rport: key.rport, raddr, netns, cgroup: read.cgroup })
}

/// A RST a full socket sends (see `send_reset_typed`), from CLOSE with reason TCP_STATE: counted
/// in the kernel (see `fold.rs`) when the CLOSE just before in the same call noted it as the RST
/// of close() with SO_LINGER 0 of a socket this host accepted (`Typed::closes_abortively`); its
/// owner is the task closing it. A function of its own, as `sent_by_socket` is, for the stack.
#[inline(never)]
fn abort_folded(ctx: *mut c_void) -> bool {
    let ctx = BtfTracePointContext::new(ctx);
    let Some(sk) = full_socket(&ctx) else { return false };
    let reason: u32 = ctx.arg(2);
    // SAFETY: a non-null socket; `skc_state` is in the part every kind of socket shares.
    if reason != REASON_TCP_STATE.load() || unsafe { at::<u8>(sk, offset!(state)) } as i32 != TCP_CLOSE {
        return false;
    }
    let Some((key, family, raddr)) = ends_of(sk) else { return false };
    fold::abort_sent(&key, || {
        let pid_tgid = bpf_get_current_pid_tgid();
        let comm = bpf_get_current_comm().ok()?;
        // A kernel thread closing the file for the process (a deferred release) is no owner.
        if pid_tgid >> 32 == 0 || owner::is_worker_thread(&comm) {
            return None;
        }
        // The process's name, as a report names it (a thread's own goes into its `thread`).
        let comm = if (pid_tgid >> 32) as u32 != pid_tgid as u32 { process_comm().unwrap_or(comm) } else { comm };
        let netns = netns(sk);
        let closer = Owner { tgid: (pid_tgid >> 32) as u32, pid: pid_tgid as u32, comm, netns, ..Owner::UNKNOWN };
        Some((closer, Abort { ip_version: if family == AF_INET { 4 } else { 6 }, raddr, netns, cgroup: cgroup(sk) }))
    })
}

/// `inet_sk_error_report(sk)`: see `programs::inet_sk_error_report`. The socket is at hand here,
/// but found in the close slot by its ports as there, so both programs report alike.
#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn error_report_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    if !is_tcp(sk) {
        return 0;
    }
    // SAFETY: the tracepoint's non-null socket (`is_tcp` checked).
    let error: i32 = unsafe { at(sk, offset!(err)) };
    if error != ETIMEDOUT && error != ECONNABORTED {
        return 0;
    }
    let Some(d) = draft_with_ends(EventKind::ErrorReport, &ERROR_REPORT_SHAPE, sk, address(sk), |record| {
        // SAFETY: a constant offset inside the record.
        unsafe { words::put(record, ERROR_REPORT_SHAPE.error as usize, error) };
    }) else {
        return 0;
    };
    let (sport, dport) = (d.field::<u16>(ERROR_REPORT_SHAPE.sport).unwrap_or(0), d.field::<u16>(ERROR_REPORT_SHAPE.dport).unwrap_or(0));
    let close = history::last_close(|c| c.key.lport == sport && c.key.rport == dport);
    let record = close.filter(|c| c.has_record != 0).map(|c| &c.record);
    d.submit(0, 0, record, close);
    0
}

/// `tcp_destroy_sock(sk)`: see `programs::tcp_destroy_sock`. The socket's address is taken only
/// when a socket is awaited.
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn destroy_sock_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    release::destroyed(|| address(sk));
    0
}
