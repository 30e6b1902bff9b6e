//! The listening sockets older than rsttrace: their start was never traced, yet the judge needs
//! them as much as the later ones. A connection one of them accepted has its owner before it is
//! ever used (the listener's), and a connect() to one, answered by a RST no stack here sent, was
//! answered by a device in the path. Read once at start, while every process's descriptors and
//! namespace may still be read: `/proc/PID/ns/net` names each namespace, the TCP tables of one
//! process in it (`/proc/PID/net/tcp`, `tcp6`) list its listeners with their inodes, and the
//! holder of each inode is the process that listens.
use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use crate::processes::Processes;

/// `TCP_LISTEN` as the tables print a socket's state.
const LISTEN: &str = "0A";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OlderListener {
    pub netns: u32,
    pub addr: IpAddr,
    pub port: u16,
    /// The process holding the listening socket.
    pub pid: u32,
}

/// Every listener of every namespace some process is in, with the process that holds it (one
/// whose holder `processes` does not know is left out).
pub fn find(proc: &Path, processes: &mut Processes) -> Vec<OlderListener> {
    let Ok(entries) = std::fs::read_dir(proc) else { return Vec::new() };
    let mut namespaces = HashSet::new();
    let mut found = Vec::new();
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
            // The kernel lists the listening sockets first: the rest (every connection, a
            // million lines on a busy host) is not read.
            for line in BufReader::new(file).lines().skip(1).map_while(Result::ok).map_while(|l| listening(&l)) {
                let (addr, port, inode) = line;
                if let Some(pid) = processes.holder(inode) {
                    found.push(OlderListener { netns, addr, port, pid });
                }
            }
        }
        // A process that went away before its tables were read leaves the namespace to another.
        if read {
            namespaces.insert(netns);
        }
    }
    found
}

/// The inode of the network namespace of the process at `dir` (`net:[4026531840]`).
fn namespace_of(dir: &Path) -> Option<u32> {
    let link = std::fs::read_link(dir.join("ns").join("net")).ok()?;
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// A line of a TCP table that is a listener: its address, port and inode.
fn listening(line: &str) -> Option<(IpAddr, u16, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || fields[3] != LISTEN {
        return None;
    }
    let (addr, port) = fields[1].split_once(':')?;
    let inode = fields[9].parse().ok()?;
    Some((address(addr)?, u16::from_str_radix(port, 16).ok()?, inode))
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
    fn reads_listeners_as_the_tables_print_them() {
        // Lines of a little-endian machine's tables (Linux 6.18).
        if cfg!(target_endian = "little") {
            let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
            assert_eq!(listening(v4), Some(("127.0.0.1".parse().unwrap(), 8080, 123456)));
            let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
            assert_eq!(listening(v6), Some(("::1".parse().unwrap(), 80, 777)));
            // An IPv6 socket bound to an IPv4 address (::ffff:10.0.0.1), as Java binds one.
            let mapped = "   1: 0000000000000000FFFF00000100000A:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0";
            assert_eq!(listening(mapped), Some(("10.0.0.1".parse().unwrap(), 8080, 778)));
        }
        let established = "   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(listening(established), None);
        assert_eq!(listening("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"), None);
    }

    #[test]
    fn finds_this_processs_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap().ino();
        let mut processes = Processes::new();
        processes.walk();
        assert_eq!(processes.holder(inode), Some(std::process::id()));
        let netns = namespace_of(Path::new("/proc/self")).unwrap();
        let found = find(Path::new("/proc"), &mut processes);
        let me = OlderListener { netns, addr: "127.0.0.1".parse().unwrap(), port, pid: std::process::id() };
        assert!(found.contains(&me), "{me:?} not in {found:?}");
    }
}
