//! `rststim ROUTERNS forge-rst SERVER PORT`: a device in the path resetting a connection in the
//! names of both ends, as firewalls, intrusion prevention systems and censors do. Run in the
//! router's namespace, it watches what the router forwards of the connection to SERVER:PORT
//! (an AF_PACKET socket sees every segment the router sends out), prints `ready` once watching
//! and `flowing` once the server has streamed a few KiB. On `go` (a line on stdin) it forges two
//! RSTs with the exact sequence numbers the ends expect next, through raw sockets, so the router's
//! own stack adds the IP headers with its default TTL / hop limit: to the client in the server's
//! name and to the server in the client's. It prints `forged`, then
//! `ttl forwarded A forged B`: the hop counts the forwarded segments and the forged RSTs left
//! the router with, which are the ones the ends receive them with (a veth link keeps them).
//!
//! Quiet the connection before `go` (drop it in the router's forward chain): a segment still in
//! flight when the RSTs land would find no socket and draw another RST from that end.
use std::{
    collections::BTreeSet,
    io::{BufRead, Write},
    net::{IpAddr, SocketAddr},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{raw_tcp_socket, ready, send_segment, set_int, tcp_header, TCP_ACK, TCP_RST};

const TCP_SYN: u8 = 0x02;
const TCP_FIN: u8 = 0x01;
/// Streamed bytes after which the ends have seen enough of each other to judge hop counts.
const FLOWING: u64 = 4096;
/// After `go`, how long segments already forwarded still get read before forging.
const SETTLE: Duration = Duration::from_millis(200);

/// What the router forwarded of one direction of the connection.
#[derive(Default)]
struct Direction {
    /// The sequence number after the furthest one forwarded (SYN and FIN count one): the one the
    /// receiver expects next, as the links between the hosts lose nothing.
    next: Option<u32>,
    data: u64,
}

impl Direction {
    fn saw(&mut self, seg: &Segment) {
        let end = seg.seq.wrapping_add(seg.payload).wrapping_add(u32::from(seg.flags & (TCP_SYN | TCP_FIN) != 0));
        // Sequence space wraps: `end` is further when it is less than half the space ahead.
        if self.next.is_none_or(|next| (end.wrapping_sub(next) as i32) > 0) {
            self.next = Some(end);
        }
        self.data += u64::from(seg.payload);
    }
}

/// The parts of a captured IP packet carrying TCP that the forger reads.
struct Segment {
    src: SocketAddr,
    dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    ttl: u8,
    seq: u32,
    flags: u8,
    payload: u32,
}

/// Parse an IPv4 or IPv6 packet (no IPv6 extension headers: the scenarios send none). Lengths
/// come from the IP header, as the capture keeps only the headers.
fn parse(pkt: &[u8]) -> Option<Segment> {
    let (src, dst, ttl, tcp, ip_payload): (IpAddr, IpAddr, u8, &[u8], usize) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 && pkt[9] == 6 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            let src = <[u8; 4]>::try_from(&pkt[12..16]).ok()?;
            let dst = <[u8; 4]>::try_from(&pkt[16..20]).ok()?;
            (src.into(), dst.into(), pkt[8], pkt.get(ihl..)?, total.checked_sub(ihl)?)
        }
        6 if pkt.len() >= 40 && pkt[6] == 6 => {
            let src = <[u8; 16]>::try_from(&pkt[8..24]).ok()?;
            let dst = <[u8; 16]>::try_from(&pkt[24..40]).ok()?;
            (src.into(), dst.into(), pkt[7], &pkt[40..], usize::from(u16::from_be_bytes([pkt[4], pkt[5]])))
        }
        _ => return None,
    };
    if tcp.len() < 20 {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    Some(Segment {
        src: SocketAddr::new(src, u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([tcp[2], tcp[3]])),
        ttl,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        payload: u32::try_from(ip_payload.checked_sub(doff)?).ok()?,
    })
}

/// Every packet this namespace sends out, without link headers, read with a short timeout so
/// the caller can look at stdin in between.
struct Capture {
    fd: i32,
    buf: [u8; 256],
}

impl Capture {
    fn open() -> Self {
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from((libc::ETH_P_ALL as u16).to_be())) };
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 20_000 };
        // SAFETY: pointer to a live timeval of the given size.
        let rc = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&timeout as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32)
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        // Room for the stream's segments between two reads: a lost capture would mean a stale
        // sequence number.
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        Capture { fd, buf: [0; 256] }
    }

    /// The next outgoing TCP segment, or None when none came within the timeout.
    fn next(&mut self) -> Option<Segment> {
        loop {
            // SAFETY: zeroed sockaddr_ll is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buffers valid for their lengths; a longer packet is truncated.
            let n = unsafe { libc::recvfrom(self.fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0, (&mut from as *mut libc::sockaddr_ll).cast(), &mut len) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted), "recvfrom: {e}");
                return None;
            }
            // Received copies of the same segments come in too: only what the router sends out
            // is what the ends get.
            if from.sll_pkttype == libc::PACKET_OUTGOING as u8 {
                if let Some(seg) = parse(&self.buf[..n as usize]) {
                    return Some(seg);
                }
            }
        }
    }
}

pub fn forge_rst(server: SocketAddr) {
    let mut capture = Capture::open();
    let go = {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            let _ = tx.send(());
        });
        rx
    };
    ready();
    let mut client: Option<SocketAddr> = None;
    let (mut to_client, mut to_server) = (Direction::default(), Direction::default());
    let mut forwarded_ttl = BTreeSet::new();
    let mut flowing = false;
    let mut settle_until: Option<Instant> = None;
    while settle_until.is_none_or(|t| Instant::now() < t) {
        if settle_until.is_none() && go.try_recv().is_ok() {
            settle_until = Some(Instant::now() + SETTLE);
        }
        let Some(seg) = capture.next() else { continue };
        // The first connection seen to the server is the one watched.
        let (peer, direction) = if seg.src == server {
            (seg.dst, &mut to_client)
        } else if seg.dst == server {
            (seg.src, &mut to_server)
        } else {
            continue;
        };
        if *client.get_or_insert(peer) != peer {
            continue;
        }
        direction.saw(&seg);
        forwarded_ttl.insert(seg.ttl);
        if !flowing && to_client.data >= FLOWING {
            flowing = true;
            println!("flowing");
            std::io::stdout().flush().unwrap();
        }
    }
    let client = client.expect("no segment of the connection crossed the router");
    let (server_next, client_next) = (to_client.next.expect("nothing forwarded to the client"), to_server.next.expect("nothing forwarded to the server"));
    // RST+ACK with the sequence number each end expects next: accepted at once (a RST that is
    // only inside the window draws a challenge ACK instead, RFC 5961).
    for (from, to, seq, ack) in [(server, client, server_next, client_next), (client, server, client_next, server_next)] {
        let fd = raw_tcp_socket(to);
        // The source is the other end's address, not the router's own.
        let (level, opt) = if to.is_ipv4() { (libc::SOL_IP, libc::IP_TRANSPARENT) } else { (libc::SOL_IPV6, libc::IPV6_TRANSPARENT) };
        set_int(fd, level, opt, 1);
        let mut seg = tcp_header(from.port(), to.port(), seq, ack, TCP_RST | TCP_ACK, 0, &[]);
        send_segment(fd, from.ip(), to.ip(), &mut seg);
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
    println!("forged");
    std::io::stdout().flush().unwrap();
    // The forged RSTs leave through the same capture: the hop count they carry.
    let mut forged_ttl = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 2 && Instant::now() < deadline {
        if let Some(seg) = capture.next() {
            if seg.flags & TCP_RST != 0 && [(server, client), (client, server)].contains(&(seg.src, seg.dst)) {
                forged_ttl.insert(seg.ttl);
                seen += 1;
            }
        }
    }
    let list = |set: &BTreeSet<u8>| set.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    println!("ttl forwarded {} forged {}", list(&forwarded_ttl), list(&forged_ttl));
    std::io::stdout().flush().unwrap();
}
