//! Which addresses belong to a network namespace on this host. A connect() to one of them that
//! is answered by a RST that no stack on this host sent was answered by a firewall or a device in
//! the path (`injected`), not by its server: before the handshake the server has no socket that
//! could prove it was there, so the address has to.
//!
//! Read from `/proc/PID/net/fib_trie` (IPv4: the `/32 host LOCAL` entries) and
//! `/proc/PID/net/if_inet6` (IPv6) of one process in each namespace, which needs no capability:
//! at start for every namespace a process is in (naming a process's namespace needs them, so
//! only then), and for each listener's namespace as it starts listening (servers are where
//! connections go). A namespace whose process is gone is forgotten at the next refresh: its
//! addresses prove nothing any more.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// How often the namespaces known are read again (addresses come and go with interfaces).
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A listener's namespace read at most this often (a server starting many listeners at once).
const REREAD_AFTER: Duration = Duration::from_secs(1);
/// `fib_trie` lists every route: on a router with a full table it runs to megabytes. Local
/// addresses are a host's own, few; past this much the rest is not read.
const FIB_TRIE_MAX: usize = 4 << 20;

struct Namespace {
    /// A process in it, whose `/proc/PID/net` shows it.
    pid: u32,
    addresses: Vec<IpAddr>,
    read_at: Instant,
}

pub struct LocalAddresses {
    proc: PathBuf,
    by_netns: HashMap<u32, Namespace>,
    /// How many known namespaces hold each address.
    holders: HashMap<IpAddr, u32>,
    refreshed: Instant,
}

impl LocalAddresses {
    pub fn new() -> Self {
        Self::at(PathBuf::from("/proc"))
    }

    pub fn at(proc: PathBuf) -> Self {
        Self { proc, by_netns: HashMap::new(), holders: HashMap::new(), refreshed: Instant::now() }
    }

    /// Addresses known without reading anything (for tests of what uses them).
    #[cfg(test)]
    pub fn of(addresses: &[IpAddr]) -> Self {
        let mut local = Self::at(PathBuf::from("/nonexistent"));
        for a in addresses {
            *local.holders.entry(*a).or_default() += 1;
        }
        local
    }

    /// Every namespace a process is in, one process each (naming a process's namespace takes
    /// CAP_SYS_PTRACE for others' processes: call while rsttrace still has it).
    pub fn walk(&mut self) {
        let Ok(procs) = std::fs::read_dir(&self.proc) else { return };
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(ns) = std::fs::metadata(entry.path().join("ns/net")) else { continue };
            let netns = ns.ino() as u32;
            if !self.by_netns.contains_key(&netns) {
                self.read(netns, pid);
            }
        }
    }

    /// A process in namespace `netns` (a listener's owner): read its addresses, unless they
    /// were read a moment ago.
    pub fn learn(&mut self, netns: u32, pid: u32) {
        if netns == 0 || self.by_netns.get(&netns).is_some_and(|n| n.read_at.elapsed() < REREAD_AFTER) {
            return;
        }
        self.read(netns, pid);
    }

    /// Read every known namespace again through its process; forget those whose process is gone.
    pub fn refresh(&mut self) {
        self.refreshed = Instant::now();
        let known: Vec<(u32, u32)> = self.by_netns.iter().map(|(netns, n)| (*netns, n.pid)).collect();
        for (netns, pid) in known {
            self.read(netns, pid);
        }
    }

    pub fn refresh_due(&self) -> bool {
        self.refreshed.elapsed() >= REFRESH_EVERY
    }

    /// Some namespace on this host has `address` (IPv4-mapped IPv6 addresses as IPv4).
    pub fn contains(&self, address: &IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*address, IpAddr::V4),
            v4 => *v4,
        };
        self.holders.contains_key(&address)
    }

    fn read(&mut self, netns: u32, pid: u32) {
        let addresses = read_addresses(&self.proc.join(pid.to_string()).join("net"));
        if let Some(old) = self.by_netns.remove(&netns) {
            for a in old.addresses {
                if let Some(n) = self.holders.get_mut(&a) {
                    *n -= 1;
                    if *n == 0 {
                        self.holders.remove(&a);
                    }
                }
            }
        }
        let Some(addresses) = addresses else { return };
        for a in &addresses {
            *self.holders.entry(*a).or_default() += 1;
        }
        self.by_netns.insert(netns, Namespace { pid, addresses, read_at: Instant::now() });
    }
}

impl Default for LocalAddresses {
    fn default() -> Self {
        Self::new()
    }
}

/// The local addresses of the namespace `net` (a `/proc/PID/net` directory) shows; `None` when
/// it cannot be read (the process is gone).
fn read_addresses(net: &Path) -> Option<Vec<IpAddr>> {
    use std::io::Read;
    let mut trie = String::new();
    std::fs::File::open(net.join("fib_trie")).ok()?.take(FIB_TRIE_MAX as u64).read_to_string(&mut trie).ok()?;
    let mut addresses: Vec<IpAddr> = local_ipv4(&trie).into_iter().map(IpAddr::V4).collect();
    // A kernel without IPv6 has no if_inet6.
    if let Ok(inet6) = std::fs::read_to_string(net.join("if_inet6")) {
        addresses.extend(local_ipv6(&inet6).into_iter().map(IpAddr::V6));
    }
    addresses.sort();
    addresses.dedup();
    Some(addresses)
}

/// The `/32 host LOCAL` entries of a `fib_trie` listing: each follows the line naming its
/// address (`|-- 10.0.0.2`).
fn local_ipv4(trie: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = Vec::new();
    for line in trie.lines() {
        let line = line.trim_start();
        if let Some(address) = line.strip_prefix("|-- ").or_else(|| line.strip_prefix("+-- ")) {
            last = address.split(['/', ' ']).next().and_then(|a| a.parse().ok());
        } else if line.starts_with("/32 host LOCAL") {
            out.extend(last);
        }
    }
    out
}

/// The addresses of an `if_inet6` listing: 32 hex digits first on each line.
fn local_ipv6(inet6: &str) -> Vec<Ipv6Addr> {
    inet6
        .lines()
        .filter_map(|line| u128::from_str_radix(line.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.231.9.0/24 2 0 2
        |-- 10.231.9.0
           /24 link UNICAST
        |-- 10.231.9.1
           /32 host LOCAL
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 10.231.9.0/24 2 0 2
     |-- 10.231.9.1
        /32 host LOCAL
     |-- 10.231.9.255
        /32 link BROADCAST
";

    #[test]
    fn fib_trie_and_if_inet6_name_the_local_addresses() {
        assert_eq!(local_ipv4(TRIE), ["10.231.9.1", "127.0.0.1", "10.231.9.1"].map(|a| a.parse::<Ipv4Addr>().unwrap()));
        let inet6 = "fd000231000900000000000000000001 02 40 00 80 vc9x1\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(local_ipv6(inet6), ["fd00:231:9::1", "::1"].map(|a| a.parse::<Ipv6Addr>().unwrap()));
    }

    #[test]
    fn a_namespace_is_known_while_its_process_is() {
        let dir = std::env::temp_dir().join(format!("rsttrace-local-{}", std::process::id()));
        let net = dir.join("42/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("fib_trie"), TRIE).unwrap();
        std::fs::write(net.join("if_inet6"), "fd000231000900000000000000000001 02 40 00 80 vc9x1\n").unwrap();
        let mut local = LocalAddresses::at(dir.clone());
        local.learn(7, 42);
        assert!(local.contains(&"10.231.9.1".parse().unwrap()));
        assert!(local.contains(&"::ffff:10.231.9.1".parse().unwrap()), "IPv4-mapped");
        assert!(local.contains(&"fd00:231:9::1".parse().unwrap()));
        assert!(!local.contains(&"10.231.9.2".parse().unwrap()), "the peer on the link is not local");
        assert!(!local.contains(&"10.231.9.255".parse().unwrap()), "nor the broadcast address");
        // The process is gone: the namespace's addresses prove nothing any more.
        std::fs::remove_dir_all(&net).unwrap();
        local.refresh();
        assert!(!local.contains(&"10.231.9.1".parse().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_namespace_has_loopback() {
        let mut local = LocalAddresses::new();
        local.learn(1, std::process::id());
        assert!(local.contains(&"127.0.0.1".parse().unwrap()));
    }
}
