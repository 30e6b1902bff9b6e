//! Was a received RST sent by the peer, or forged by a device in the path? The one-end evidence of
//! Weaver, Sommer and Paxson ("Detecting Forged TCP Reset Packets", NDSS 2009): a forger sits at
//! another distance from this host than the peer (its RST arrives with another hop count), does
//! not continue the peer's IPv4 IP ID sequence, and cannot stop the peer, which goes on sending
//! after "its" RST. Pure: the facts come from the kernel side and the judge.
use serde::Serialize;

use crate::event::Arrival;

/// Peer segments needed before their hop count says where the peer is: one could be a stray.
const MIN_SEGMENTS: u32 = 2;
/// A genuine RST from the peer's socket takes the next IP ID of its sequence; segments merged by
/// GRO and those the peer sent after the last sampled one move it on by at most some dozens.
const IP_ID_SLACK: u16 = 1024;

/// What one end saw of a received RST and of the peer's own segments: the `evidence` object of a
/// received reset's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The hop count (IPv4 TTL, IPv6 hop limit) the RST arrived with.
    pub rst_ttl: Option<u8>,
    /// The hop count of the peer's own segments (the last one, when they varied).
    pub peer_ttl: Option<u8>,
    pub peer_ttl_varied: bool,
    pub peer_segments: u32,
    pub rst_ip_id: Option<u16>,
    pub peer_ip_id: Option<u16>,
    /// The peer sent more on this 4-tuple after the RST (this host answered it with a RST).
    pub peer_talked_after: bool,
    /// The evidence alone says the RST was forged.
    pub decisive: bool,
    #[serde(skip)]
    ipv6: bool,
    /// The hop counts the peer's segments arrived with, lowest and highest.
    #[serde(skip)]
    peer_ttls: (u8, u8),
}

impl Evidence {
    pub fn new(arrival: Option<&Arrival>, peer_talked_after: bool) -> Self {
        let mut e = Evidence {
            peer_talked_after,
            ..Evidence::default()
        };
        if let Some(a) = arrival {
            e.ipv6 = a.ipv6;
            e.rst_ttl = a.rst_ttl;
            if a.segments > 0 {
                e.peer_ttl = Some(a.ttl_last);
                e.peer_ttl_varied = a.ttl_min != a.ttl_max;
                e.peer_segments = a.segments;
                e.peer_ip_id = a.ip_id_last;
                e.peer_ttls = (a.ttl_min, a.ttl_max);
            }
            e.rst_ip_id = a.rst_ip_id;
            e.decisive = e.hops_differ() || (peer_talked_after && e.ip_id_off_sequence());
        }
        e
    }

    /// The RST's hop count is none the peer's segments ever arrived with.
    fn hops_differ(&self) -> bool {
        let (low, high) = self.peer_ttls;
        self.peer_segments >= MIN_SEGMENTS && self.rst_ttl.is_some_and(|t| t < low || t > high)
    }

    /// The RST's IP ID does not follow the peer's (IPv4 peers that number their segments). An ID
    /// of 0 says nothing on either side: a peer may send 0 throughout, and Linux sends every RST
    /// without a socket (its socket gone, TIME_WAIT) with ID 0, as nftables' reject does.
    fn ip_id_off_sequence(&self) -> bool {
        match (self.rst_ip_id, self.peer_ip_id) {
            (Some(rst), Some(peer)) if self.peer_segments >= MIN_SEGMENTS && peer != 0 && rst != 0 => {
                let ahead = rst.wrapping_sub(peer);
                ahead == 0 || ahead > IP_ID_SLACK
            }
            _ => false,
        }
    }

    fn hop_name(&self) -> &'static str {
        if self.ipv6 {
            "hop limit"
        } else {
            "TTL"
        }
    }

    /// Why a decisive RST was forged, in one sentence.
    pub fn forged_because(&self) -> Option<String> {
        if !self.decisive {
            return None;
        }
        if self.hops_differ() {
            let (low, high) = self.peer_ttls;
            let peer = if low == high {
                low.to_string()
            } else {
                format!("{low} to {high}")
            };
            return Some(format!(
                "RST came with {} {}, the peer's segments with {peer}: a device in the path sent it",
                self.hop_name(),
                self.rst_ttl.unwrap_or(0)
            ));
        }
        Some(format!(
            "the peer went on sending after its RST, and the RST's IP ID {} does not follow the peer's {}: a device in the path sent it",
            self.rst_ip_id.unwrap_or(0),
            self.peer_ip_id.unwrap_or(0)
        ))
    }

    /// What makes a RST that is not judged forged look doubtful, for its `why`; `None` when nothing.
    pub fn doubts(&self) -> Option<String> {
        if self.decisive {
            return None;
        }
        let mut doubts = Vec::new();
        if self.peer_talked_after {
            doubts.push("the peer went on sending after it".to_string());
        }
        if self.ip_id_off_sequence() {
            doubts.push(format!(
                "its IP ID {} does not follow the peer's {}",
                self.rst_ip_id.unwrap_or(0),
                self.peer_ip_id.unwrap_or(0)
            ));
        }
        (!doubts.is_empty()).then(|| doubts.join(", and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(
        segments: u32,
        ttls: (u8, u8, u8),
        rst_ttl: Option<u8>,
        ids: Option<(u16, u16)>,
    ) -> Arrival {
        Arrival {
            segments,
            ttl_min: ttls.0,
            ttl_max: ttls.1,
            ttl_last: ttls.2,
            rst_ttl,
            ip_id_last: ids.map(|i| i.0),
            rst_ip_id: ids.map(|i| i.1),
            ipv6: false,
        }
    }

    #[test]
    fn a_rst_from_another_distance_than_the_peer_is_forged() {
        let e = Evidence::new(
            Some(&arrival(12, (63, 63, 63), Some(64), Some((4711, 0)))),
            false,
        );
        assert!(e.decisive);
        assert_eq!(
            (e.rst_ttl, e.peer_ttl, e.peer_segments),
            (Some(64), Some(63), 12)
        );
        assert_eq!(
            e.forged_because().unwrap(),
            "RST came with TTL 64, the peer's segments with 63: a device in the path sent it"
        );
        let v6 = Evidence::new(
            Some(&Arrival {
                ipv6: true,
                ..arrival(3, (63, 63, 63), Some(64), None)
            }),
            false,
        );
        assert!(v6
            .forged_because()
            .unwrap()
            .starts_with("RST came with hop limit 64"));
    }

    #[test]
    fn a_genuine_rst_through_routers_arrives_like_the_peers_segments() {
        // Behind a NAT and routers: every segment of the flow, the RST too, lost the same hops.
        let e = Evidence::new(
            Some(&arrival(40, (52, 52, 52), Some(52), Some((100, 101)))),
            false,
        );
        assert!(!e.decisive);
        assert_eq!(e.doubts(), None);
        assert_eq!(e.forged_because(), None);
    }

    #[test]
    fn one_segment_or_an_unseen_rst_decides_nothing() {
        assert!(!Evidence::new(Some(&arrival(1, (63, 63, 63), Some(64), None)), false).decisive);
        // The RST came outside ESTABLISHED: its hop count was not sampled.
        assert!(!Evidence::new(Some(&arrival(9, (63, 63, 63), None, None)), true).decisive);
        let none = Evidence::new(None, false);
        assert_eq!(none, Evidence::default());
    }

    #[test]
    fn a_path_that_changed_keeps_every_hop_count_it_had() {
        let within = Evidence::new(Some(&arrival(30, (61, 63, 61), Some(63), None)), false);
        assert!(!within.decisive && within.peer_ttl_varied);
        let outside = Evidence::new(Some(&arrival(30, (61, 63, 61), Some(64), None)), false);
        assert!(outside.decisive);
        assert_eq!(
            outside.forged_because().unwrap(),
            "RST came with TTL 64, the peer's segments with 61 to 63: a device in the path sent it"
        );
    }

    #[test]
    fn the_peer_talking_after_its_rst_decides_only_with_an_ip_id_out_of_sequence() {
        // A forger numbering its own segments: far from the peer's sequence.
        let talked = Evidence::new(Some(&arrival(5, (64, 64, 64), Some(64), Some((4711, 31000)))), true);
        assert!(talked.decisive);
        assert!(talked.forged_because().unwrap().contains("IP ID 31000 does not follow the peer's 4711"));
        let in_sequence = Evidence::new(Some(&arrival(5, (64, 64, 64), Some(64), Some((4711, 4712)))), true);
        assert!(!in_sequence.decisive);
        assert_eq!(in_sequence.doubts().unwrap(), "the peer went on sending after it");
        let quiet = Evidence::new(Some(&arrival(5, (64, 64, 64), Some(64), Some((4711, 31000)))), false);
        assert!(!quiet.decisive);
        assert_eq!(quiet.doubts().unwrap(), "its IP ID 31000 does not follow the peer's 4711");
        // ID 0 says nothing: a peer that sends 0 throughout, and every Linux RST without a socket
        // (the peer's socket gone), which a reordered segment of the peer can follow.
        for ids in [(0, 0), (4711, 0)] {
            let zero = Evidence::new(Some(&arrival(5, (64, 64, 64), Some(64), Some(ids))), true);
            assert!(!zero.decisive, "{ids:?}");
            assert_eq!(zero.doubts().unwrap(), "the peer went on sending after it");
        }
    }
}
