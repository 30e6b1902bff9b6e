//! The BTF-typed (`tp_btf`) programs for the hooks every connection crosses: the kernel hands
//! over the tracepoint's arguments instead of first building a record for a classic program, and
//! the socket's fields are read straight from it. The agent attaches these where the kernel's
//! BTF names the fields (`TYPED_SOCK`) and the program loads; the classic programs of
//! `programs.rs` stay for other kernels.
use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use rsttrace_common::EventKind;

use crate::{
    emit::{read, Draft},
    maps::{TupleKey, ADDRESS, TYPED_SOCK},
    owner,
    programs::{state_changed, StateChange, AF_INET, IPPROTO_TCP},
};

/// One offset of `TYPED_SOCK`, read on its own from the read-only global: the verifier then
/// knows its value, as it must for a typed pointer moved by it.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a plain read of a static.
        unsafe { read_volatile(addr_of!(TYPED_SOCK.$field)) as usize }
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
/// on a typed pointer (the hash), but a pointer stored in a map reads back as a number.
#[inline(always)]
fn address(sk: u64) -> u64 {
    let Some(slot) = ADDRESS.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot; volatile so that the store and load stay.
    unsafe {
        core::ptr::write_volatile(slot, sk);
        core::ptr::read_volatile(slot)
    }
}

#[inline(always)]
fn is_tcp(sk: u64) -> bool {
    // SAFETY: callers pass the tracepoint's non-null socket.
    sk != 0 && unsafe { at::<u16>(sk, offset!(protocol)) } == IPPROTO_TCP
}

/// A state change as a `tp_btf` program sees it: the socket (the typed pointer, which only field
/// reads may use), and what it holds.
struct Typed {
    sk: u64,
    old: i32,
    new: i32,
}

impl Typed {
    /// The remote address as 4 words (IPv4: the first).
    #[inline(always)]
    fn remote(&self, family: u16) -> [u32; 4] {
        // SAFETY: `sk` is the tracepoint's non-null socket (checked before `Typed` is built).
        unsafe {
            if family == AF_INET {
                return [at(self.sk, offset!(daddr)), 0, 0, 0];
            }
            let v6 = offset!(v6_daddr);
            [at(self.sk, v6), at(self.sk, v6 + 4), at(self.sk, v6 + 8), at(self.sk, v6 + 12)]
        }
    }
}

impl StateChange for Typed {
    #[inline(always)]
    fn ends(&self) -> Option<(TupleKey, u16, [u8; 16])> {
        // SAFETY: as in `remote`.
        let (family, rport) = unsafe { (at::<u16>(self.sk, offset!(family)), u16::from_be(at::<u16>(self.sk, offset!(dport)))) };
        // SAFETY: probe read only.
        let lport = u16::from_be(unsafe { read::<u16>(address(self.sk) + offset!(sport) as u64) }?);
        let remote = self.remote(family);
        let mut raddr = [0u8; 16];
        let (laddr, raddr_tail) = if family == AF_INET {
            raddr[..4].copy_from_slice(&remote[0].to_ne_bytes());
            // SAFETY: as in `remote`.
            (unsafe { at::<u32>(self.sk, offset!(rcv_saddr)) }, remote[0])
        } else {
            for (i, word) in remote.iter().enumerate() {
                raddr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            // SAFETY: as in `remote`.
            (unsafe { at::<u32>(self.sk, offset!(v6_rcv_saddr) + 12) }, remote[3])
        };
        Some((TupleKey { lport, rport, laddr, raddr: raddr_tail }, family, raddr))
    }

    /// A listener's event carries the record a classic program would have copied, written here
    /// at the offsets every kernel we know gives `inet_sock_set_state` (the agent attaches this
    /// program only where they hold).
    #[inline(always)]
    fn listener_draft(&self) -> Option<Draft> {
        let (key, family, raddr) = self.ends()?;
        let mut d = Draft::reserve_synthesized(EventKind::SetState)?;
        let record = d.record_mut()?;
        // SAFETY: constant offsets inside the record (72 bytes of RECORD_MAX), unaligned stores.
        unsafe {
            let put = |offset: usize, bytes: &[u8]| {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), record.add(offset), bytes.len());
            };
            core::ptr::write_bytes(record, 0, 72);
            put(8, &address(self.sk).to_ne_bytes());
            put(16, &self.old.to_ne_bytes());
            put(20, &self.new.to_ne_bytes());
            put(24, &key.lport.to_ne_bytes());
            put(26, &key.rport.to_ne_bytes());
            put(28, &family.to_ne_bytes());
            put(30, &IPPROTO_TCP.to_ne_bytes());
            if family == AF_INET {
                put(32, &key.laddr.to_ne_bytes());
                put(36, &raddr[..4]);
            } else {
                let local = offset!(v6_rcv_saddr);
                for i in 0..4 {
                    put(40 + i * 4, &at::<u32>(self.sk, local + i * 4).to_ne_bytes());
                }
                put(56, &raddr);
            }
        }
        Some(d)
    }
}

/// `inet_sock_set_state(sk, oldstate, newstate)`.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn set_state_typed(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    // The tracepoint also fires for SCTP and MPTCP sockets; only TCP matters here.
    if !is_tcp(sk) {
        return 0;
    }
    let change = Typed { sk, old: ctx.arg(1), new: ctx.arg(2) };
    state_changed(&change, address(sk), change.old, change.new);
    0
}

/// `sock_send_length`/`sock_recv_length(sk, ret, flags)`: see `programs::sock_msg_length`.
#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_typed(ctx: BtfTracePointContext) -> u32 {
    learn_owner(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_typed(ctx: BtfTracePointContext) -> u32 {
    learn_owner(ctx.arg(0));
    0
}

#[inline(always)]
fn learn_owner(sk: u64) {
    if is_tcp(sk) {
        let _ = owner::learn(address(sk));
    }
}
