//! The sockets older than rsttrace: their start was never traced, yet the judge needs them as
//! much as the later ones. Read once at start, while every process's descriptors and namespace
//! may still be read: `/proc/PID/ns/net` names each namespace, the TCP tables of one process in
//! it (`/proc/PID/net/tcp`, `tcp6`) list its sockets with their inodes, and the holder of each
//! inode is the process that holds it.
//! - A listener: a connection it accepted has its owner before it is ever used (the
//!   listener's), and a connect() to it, answered by a RST no stack here sent, was answered by a
//!   device in the path.
//! - A connection: the kernel side notes it under its 4-tuple as open, with its holder, as it
//!   notes the ones it sees start (the peer on this host behind `injected`, the owner of a RST
//!   from TIME_WAIT); and one this host opened is known as such (a client's benign aborts, the
//!   key a storm's reports fold under).
use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use rsttrace_common::TUPLE_SLOTS;

use crate::{
    event::{Endpoints, Family},
    processes::Processes,
};

/// `TCP_LISTEN`, as the tables print a socket's state (in hex).
const LISTEN: u8 = 0x0A;
/// The states of a connection that completed its handshake and has a full socket:
/// ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING (not TIME_WAIT's remnant).
const SYNCHRONIZED: [u8; 6] = [0x01, 0x04, 0x05, 0x08, 0x09, 0x0B];
const TIME_WAIT: u8 = 0x06;
/// The connections read at most, over every namespace: as many as the kernel side has notes
/// for. The rest of a busier host's tables is not read.
pub const MAX_CONNECTIONS: usize = TUPLE_SLOTS as usize;
/// The lines after the listeners read at most, over every namespace, whatever their state: a
/// host with a million sockets in TIME_WAIT does not spend seconds on them at start.
const MAX_LINES: usize = 2 * MAX_CONNECTIONS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OlderListener {
    pub netns: u32,
    pub addr: IpAddr,
    pub port: u16,
    /// The process holding the listening socket.
    pub pid: u32,
}

/// A connection open when rsttrace started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OlderConnection {
    pub netns: u32,
    pub ends: Endpoints,
    /// The process holding its socket, if any does (an orphan has none).
    pub holder: Option<u32>,
    /// This host opened it: no listener has its local port, which is an ephemeral one.
    pub opened_here: bool,
}

#[derive(Debug, Default)]
pub struct OlderSockets {
    /// Every listener whose holder is known.
    pub listeners: Vec<OlderListener>,
    /// Up to `MAX_CONNECTIONS`.
    pub connections: Vec<OlderConnection>,
    /// The 4-tuples held in TIME_WAIT (namespace, ends), within the same bound: a connect()
    /// that reuses one is answered with the old connection's ACK.
    pub time_waits: Vec<(u32, Endpoints)>,
}

/// The listeners and connections of every namespace some process is in, with the process that
/// holds each (a listener whose holder `processes` does not know is left out). `ephemeral` is
/// the range connect() takes local ports from.
pub fn find(proc: &Path, processes: &mut Processes, ephemeral: (u16, u16)) -> OlderSockets {
    let Ok(entries) = std::fs::read_dir(proc) else { return OlderSockets::default() };
    let mut namespaces = HashSet::new();
    let mut found = OlderSockets::default();
    // Every listening (namespace, address, port), held by a known process or not.
    let mut listening = HashSet::new();
    let mut connections = Vec::new();
    let mut lines_read = 0;
    for entry in entries.flatten() {
        if entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).is_none() {
            continue; // not a process
        }
        let Some(netns) = namespace_of(&entry.path()) else { continue };
        if namespaces.contains(&netns) {
            continue;
        }
        let mut read = false;
        for table in ["tcp", "tcp6"] {
            let Ok(file) = std::fs::File::open(entry.path().join("net").join(table)) else { continue };
            read = true;
            for line in BufReader::new(file).lines().skip(1).map_while(Result::ok) {
                let Some(socket) = parse(&line) else { continue };
                if socket.state == LISTEN {
                    listening.insert((netns, socket.local.0, socket.local.1));
                    if let Some(pid) = processes.holder(socket.inode) {
                        found.listeners.push(OlderListener { netns, addr: socket.local.0, port: socket.local.1, pid });
                    }
                } else {
                    // The kernel lists the listeners first: past the limit, only they are read.
                    lines_read += 1;
                    if connections.len() == MAX_CONNECTIONS || lines_read > MAX_LINES {
                        break;
                    }
                    if socket.state == TIME_WAIT && found.time_waits.len() + connections.len() < MAX_CONNECTIONS {
                        found.time_waits.push((netns, ends_of(&socket)));
                    }
                    if !SYNCHRONIZED.contains(&socket.state) {
                        continue;
                    }
                    let holder = (socket.inode != 0).then(|| processes.holder(socket.inode)).flatten();
                    connections.push((netns, socket, holder));
                }
            }
        }
        // A process that went away before its tables were read leaves the namespace to another.
        if read {
            namespaces.insert(netns);
        }
    }
    let listened = |netns: u32, addr: IpAddr, port: u16| {
        [addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)].iter().any(|a| listening.contains(&(netns, *a, port)))
    };
    // Where the other end is on this host too, it tells: an end a listener accepted was opened
    // by the other, whatever the port; two ends that both look opened (no listener on either
    // port, both ephemeral: a server on an ephemeral port whose listener closed) cannot be told
    // apart, and neither is taken for the opener.
    let is_ephemeral = |port: u16| (ephemeral.0..=ephemeral.1).contains(&port);
    let accepted: HashSet<_> = connections.iter().filter(|(n, s, _)| listened(*n, s.local.0, s.local.1)).map(|(_, s, _)| (s.local, s.remote)).collect();
    let look_opened: HashSet<_> = connections.iter().filter(|(n, s, _)| is_ephemeral(s.local.1) && !listened(*n, s.local.0, s.local.1)).map(|(_, s, _)| (s.local, s.remote)).collect();
    found.connections = connections
        .into_iter()
        .map(|(netns, s, holder)| {
            let ends = ends_of(&s);
            let mirror = (s.remote, s.local);
            let opened_here = !listened(netns, ends.laddr, ends.lport)
                && (accepted.contains(&mirror) || (is_ephemeral(ends.lport) && !look_opened.contains(&mirror)));
            OlderConnection { netns, ends, holder, opened_here }
        })
        .collect();
    found
}

/// The range of local ports connect() takes (`net.ipv4.ip_local_port_range`), the kernel's
/// default where it cannot be read.
pub fn ephemeral_ports(proc: &Path) -> (u16, u16) {
    let range = std::fs::read_to_string(proc.join("sys/net/ipv4/ip_local_port_range")).ok();
    let parsed = range.as_deref().and_then(|r| {
        let mut ports = r.split_whitespace().map(|p| p.parse().ok());
        Some((ports.next()??, ports.next()??))
    });
    parsed.unwrap_or((32768, 60999))
}

/// The inode of the network namespace of the process at `dir` (`net:[4026531840]`).
fn namespace_of(dir: &Path) -> Option<u32> {
    let link = std::fs::read_link(dir.join("ns").join("net")).ok()?;
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// A line of a TCP table: its ends, its state and its inode.
struct TableLine {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
    inode: u64,
}

fn ends_of(line: &TableLine) -> Endpoints {
    let family = if line.local.0.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 };
    Endpoints { family, laddr: line.local.0, lport: line.local.1, raddr: line.remote.0, rport: line.remote.1 }
}

fn parse(line: &str) -> Option<TableLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 {
        return None;
    }
    let end = |field: &str| -> Option<(IpAddr, u16)> {
        let (addr, port) = field.split_once(':')?;
        Some((address(addr)?, u16::from_str_radix(port, 16).ok()?))
    };
    Some(TableLine { local: end(fields[1])?, remote: end(fields[2])?, state: u8::from_str_radix(fields[3], 16).ok()?, inode: fields[9].parse().ok()? })
}

/// An address as the tables print it: the kernel's 32-bit words in network order, each printed
/// as a number of this machine's byte order. An IPv4-mapped one is the IPv4 address it maps, as
/// the reports have it.
fn address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()).map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsRawFd, unix::fs::MetadataExt};

    use super::*;

    #[test]
    fn reads_lines_as_the_tables_print_them() {
        // Lines of a little-endian machine's tables (Linux 6.18).
        if cfg!(target_endian = "little") {
            let v4 = parse("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0").unwrap();
            assert_eq!((v4.local, v4.state, v4.inode), (("127.0.0.1".parse().unwrap(), 8080), LISTEN, 123456));
            let v6 = parse("   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0").unwrap();
            assert_eq!((v6.local, v6.inode), (("::1".parse().unwrap(), 80), 777));
            // An IPv6 socket bound to an IPv4 address (::ffff:10.0.0.1), as Java binds one.
            let mapped = parse("   1: 0000000000000000FFFF00000100000A:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0").unwrap();
            assert_eq!(mapped.local, ("10.0.0.1".parse().unwrap(), 8080));
            let established = parse("   1: 0100007F:1F90 0200007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 20 4 30 10 -1").unwrap();
            assert_eq!((established.remote, established.state), (("127.0.0.2".parse().unwrap(), 0xD2A4), 0x01));
        }
        assert!(parse("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode").is_none());
    }

    #[test]
    fn finds_this_processs_own_listener_and_both_ends_of_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        let inode = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
        let mut processes = Processes::new();
        processes.walk();
        assert_eq!(processes.holder(inode(listener.as_raw_fd())), Some(std::process::id()));
        let netns = namespace_of(Path::new("/proc/self")).unwrap();
        // Every port counts as ephemeral here: only the listener tells the server's end apart.
        let found = find(Path::new("/proc"), &mut processes, (1, u16::MAX));
        let me = OlderListener { netns, addr: "127.0.0.1".parse().unwrap(), port, pid: std::process::id() };
        assert!(found.listeners.contains(&me), "{me:?} not in {:?}", found.listeners);
        let end = |local: std::net::SocketAddr| found.connections.iter().find(|c| c.netns == netns && c.ends.lport == local.port() && c.ends.laddr == local.ip()).copied();
        let mine = Some(std::process::id());
        let client_end = end(client.local_addr().unwrap()).expect("the client's end");
        assert_eq!((client_end.holder, client_end.opened_here, client_end.ends.rport), (mine, true, port));
        let server_end = end(server.local_addr().unwrap()).expect("the server's end");
        assert_eq!((server_end.holder, server_end.opened_here), (mine, false));
        // No port ephemeral: the accepted end still names the client's end as the opener.
        let found = find(Path::new("/proc"), &mut processes, (1, 1));
        let end = |local: std::net::SocketAddr| found.connections.iter().find(|c| c.netns == netns && c.ends.lport == local.port() && c.ends.laddr == local.ip()).copied();
        assert!(end(client.local_addr().unwrap()).unwrap().opened_here);
        // The listener closed, every port ephemeral: nothing tells the two ends apart.
        drop(listener);
        let found = find(Path::new("/proc"), &mut processes, (1, u16::MAX));
        let end = |local: std::net::SocketAddr| found.connections.iter().find(|c| c.netns == netns && c.ends.lport == local.port() && c.ends.laddr == local.ip()).copied();
        assert!(!end(client.local_addr().unwrap()).unwrap().opened_here);
        assert!(!end(server.local_addr().unwrap()).unwrap().opened_here);
    }
}
