//! The kernel side's notes of 4-tuples (`TUPLES`), which it writes as each connection completes
//! its handshake and closes: here the agent writes those of the connections already open when
//! it started, so that what the notes tell (the peer on this host behind `injected`, the owner
//! of a RST from TIME_WAIT or for a forgotten connection, a port taken over) holds for them too.
use std::net::IpAddr;

use aya::{maps::Array, Ebpf};
use rsttrace_common::{Owner, TupleEntry, TupleKey, OLDER_CONNECTION, TUPLE_OPEN};

use crate::{event::Comm, older_sockets::OlderConnection};

/// Note `connections` as open, each with its holder (named by `name`), where a slot of its
/// 4-tuple's bucket is still empty: a note written since the programs attached is newer. Returns how
/// many were noted.
pub fn note_older(ebpf: &mut Ebpf, connections: &[OlderConnection], mut name: impl FnMut(u32) -> Option<Comm>) -> Result<usize, String> {
    let map = ebpf.map_mut("TUPLES").ok_or("map TUPLES missing")?;
    let mut tuples: Array<_, TupleEntry> = Array::try_from(map).map_err(|e| format!("TUPLES: {e}"))?;
    let mut noted = 0;
    for c in connections {
        let key = key_of(c);
        let bucket = key.bucket();
        let Some(slot) = [bucket, bucket | 1].into_iter().find(|slot| tuples.get(slot, 0).is_ok_and(|e| e.sk == 0)) else { continue };
        let owner = c.holder.map_or(Owner::UNKNOWN, |pid| {
            let comm = name(pid).map_or([0; 16], |n| n.to_kernel());
            Owner { tgid: pid, pid, comm, cgroup: 0, netns: c.netns, _pad: 0 }
        });
        let entry = TupleEntry { key, open_or_closed_at: TUPLE_OPEN, sk: OLDER_CONNECTION, owner };
        if tuples.set(slot, entry, 0).is_ok() {
            noted += 1;
        }
    }
    Ok(noted)
}

/// The kernel side's key of a connection: ports in host order, of each address its last four
/// bytes as they lie in memory (an IPv4 address whole).
fn key_of(c: &OlderConnection) -> TupleKey {
    let tail = |a: IpAddr| match a {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]])
        }
    };
    TupleKey { lport: c.ends.lport, rport: c.ends.rport, laddr: tail(c.ends.laddr), raddr: tail(c.ends.raddr) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Endpoints, Family};

    #[test]
    fn keys_hold_the_addresses_as_the_kernel_side_reads_them() {
        let ends = Endpoints { family: Family::Ipv4, laddr: "10.0.0.1".parse().unwrap(), lport: 40000, raddr: "10.0.0.2".parse().unwrap(), rport: 80 };
        let key = key_of(&OlderConnection { netns: 1, ends, holder: None, opened_here: true });
        // `skc_daddr` as a load reads it: the address's bytes in network order.
        assert_eq!((key.lport, key.rport, key.laddr.to_ne_bytes(), key.raddr.to_ne_bytes()), (40000, 80, [10, 0, 0, 1], [10, 0, 0, 2]));
        let ends = Endpoints { family: Family::Ipv6, laddr: "fd00::1:2".parse().unwrap(), raddr: "fd00::3:4".parse().unwrap(), ..ends };
        let key = key_of(&OlderConnection { netns: 1, ends, holder: None, opened_here: true });
        assert_eq!((key.laddr.to_ne_bytes(), key.raddr.to_ne_bytes()), ([0, 1, 0, 2], [0, 3, 0, 4]));
    }
}
