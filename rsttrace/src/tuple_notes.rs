//! The kernel side's notes of 4-tuples (`TUPLES`), which it writes as each connection completes
//! its handshake and closes: here the agent writes those of the connections already open when
//! it started, so that what the notes tell (the peer on this host behind `injected`, the owner
//! of a RST from TIME_WAIT or for a forgotten connection, a port taken over) holds for them too.
use std::net::IpAddr;

use aya::{maps::Array, Ebpf};
use rsttrace_common::{Owner, TupleEntry, TupleKey, OLDER_CONNECTION, TUPLE_OPEN};

use crate::{
    event::{Comm, Endpoints},
    older_sockets::OlderConnection,
};

/// The closing tick of a TIME_WAIT older than rsttrace: long past (when it closed is not
/// known), even (it did not end badly), and neither `TUPLE_OPEN` nor 0.
const CLOSED_BEFORE_TRACE: u32 = 2;

/// Note `connections` as open, each with its holder (named by `name`), and the 4-tuples of
/// `time_waits` as closed, where a slot of the 4-tuple's bucket is still empty: a note written
/// since the programs attached is newer. Returns how many were noted.
pub fn note_older(ebpf: &mut Ebpf, connections: &[OlderConnection], time_waits: &[(u32, Endpoints)], mut name: impl FnMut(u32) -> Option<Comm>) -> Result<usize, String> {
    let map = ebpf.map_mut("TUPLES").ok_or("map TUPLES missing")?;
    let mut tuples: Array<_, TupleEntry> = Array::try_from(map).map_err(|e| format!("TUPLES: {e}"))?;
    let open = connections.iter().map(|c| {
        let owner = c.holder.map_or(Owner::UNKNOWN, |pid| {
            let comm = name(pid).map_or([0; 16], |n| n.to_kernel());
            Owner { tgid: pid, pid, comm, cgroup: 0, netns: c.netns, _pad: 0 }
        });
        TupleEntry { key: key_of(&c.ends), open_or_closed_at: TUPLE_OPEN, sk: OLDER_CONNECTION, owner }
    });
    // A RST from TIME_WAIT, or a SYN that reuses it, finds the connection's note: its owner is
    // not known (a TIME_WAIT socket has no file).
    let closed = time_waits.iter().map(|(_, ends)| TupleEntry { key: key_of(ends), open_or_closed_at: CLOSED_BEFORE_TRACE, sk: OLDER_CONNECTION, owner: Owner::UNKNOWN });
    let mut noted = 0;
    for entry in open.collect::<Vec<_>>().into_iter().chain(closed) {
        let bucket = entry.key.bucket();
        let Some(slot) = [bucket, bucket | 1].into_iter().find(|slot| tuples.get(slot, 0).is_ok_and(|e| e.sk == 0)) else { continue };
        if tuples.set(slot, entry, 0).is_ok() {
            noted += 1;
        }
    }
    Ok(noted)
}

/// The kernel side's key of a connection: ports in host order, of each address its last four
/// bytes as they lie in memory (an IPv4 address whole).
fn key_of(ends: &Endpoints) -> TupleKey {
    let tail = |a: IpAddr| match a {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]])
        }
    };
    TupleKey { lport: ends.lport, rport: ends.rport, laddr: tail(ends.laddr), raddr: tail(ends.raddr) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Endpoints, Family};

    #[test]
    fn keys_hold_the_addresses_as_the_kernel_side_reads_them() {
        let ends = Endpoints { family: Family::Ipv4, laddr: "10.0.0.1".parse().unwrap(), lport: 40000, raddr: "10.0.0.2".parse().unwrap(), rport: 80 };
        let key = key_of(&ends);
        // `skc_daddr` as a load reads it: the address's bytes in network order.
        assert_eq!((key.lport, key.rport, key.laddr.to_ne_bytes(), key.raddr.to_ne_bytes()), (40000, 80, [10, 0, 0, 1], [10, 0, 0, 2]));
        let ends = Endpoints { family: Family::Ipv6, laddr: "fd00::1:2".parse().unwrap(), raddr: "fd00::3:4".parse().unwrap(), ..ends };
        let key = key_of(&ends);
        assert_eq!((key.laddr.to_ne_bytes(), key.raddr.to_ne_bytes()), ([0, 1, 0, 2], [0, 3, 0, 4]));
    }
}
