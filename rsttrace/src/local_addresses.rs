//! Which addresses belong to which network namespace of this host. A connect() to a listener
//! of this host answered by a RST that no stack on this host sent was answered by a firewall or
//! a device in the path (`injected`), not by its server. Before the handshake the server has no
//! socket that could prove it was there: the listener on the address's namespace does.
//!
//! Read from `/proc/PID/net/fib_trie` (IPv4: the `/32 host LOCAL` entries) and
//! `/proc/PID/net/if_inet6` (IPv6) of a listener's owner as it starts listening, which needs no
//! capability, and again every [`REFRESH_EVERY`]; a namespace whose process is gone by then is
//! forgotten (its listener is gone with it).
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
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
    /// The namespaces that hold each address (overlapping private ranges: several).
    holders: HashMap<IpAddr, Vec<u32>>,
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
    pub fn of(addresses: &[(u32, IpAddr)]) -> Self {
        let mut local = Self::at(PathBuf::from("/nonexistent"));
        for (netns, a) in addresses {
            local.holders.entry(*a).or_default().push(*netns);
        }
        local
    }

    /// A process in namespace `netns` (a listener's owner): read its addresses, unless they
    /// were read a moment ago. A process gone already leaves what was known as it was.
    pub fn learn(&mut self, netns: u32, pid: u32) {
        if netns == 0 || self.by_netns.get(&netns).is_some_and(|n| n.read_at.elapsed() < REREAD_AFTER) {
            return;
        }
        if let Some(addresses) = read_addresses(&self.proc.join(pid.to_string()).join("net")) {
            self.replace(netns, Some(Namespace { pid, addresses, read_at: Instant::now() }));
        }
    }

    /// Read every known namespace again through its process; forget those whose process is gone.
    pub fn refresh(&mut self) {
        self.refreshed = Instant::now();
        let known: Vec<(u32, u32)> = self.by_netns.iter().map(|(netns, n)| (*netns, n.pid)).collect();
        for (netns, pid) in known {
            let addresses = read_addresses(&self.proc.join(pid.to_string()).join("net"));
            self.replace(netns, addresses.map(|addresses| Namespace { pid, addresses, read_at: Instant::now() }));
        }
    }

    pub fn refresh_due(&self) -> bool {
        self.refreshed.elapsed() >= REFRESH_EVERY
    }

    /// The namespaces that hold `address` (IPv4-mapped IPv6 addresses as IPv4).
    pub fn namespaces_of(&self, address: &IpAddr) -> &[u32] {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*address, IpAddr::V4),
            v4 => *v4,
        };
        self.holders.get(&address).map_or(&[], Vec::as_slice)
    }

    fn replace(&mut self, netns: u32, new: Option<Namespace>) {
        if let Some(old) = self.by_netns.remove(&netns) {
            for a in old.addresses {
                if let Some(holders) = self.holders.get_mut(&a) {
                    holders.retain(|n| *n != netns);
                    if holders.is_empty() {
                        self.holders.remove(&a);
                    }
                }
            }
        }
        if let Some(new) = new {
            for a in &new.addresses {
                self.holders.entry(*a).or_default().push(netns);
            }
            self.by_netns.insert(netns, new);
        }
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
        let held = |local: &LocalAddresses, a: &str| local.namespaces_of(&a.parse().unwrap()).to_vec();
        local.learn(7, 42);
        assert_eq!(held(&local, "10.231.9.1"), [7]);
        assert_eq!(held(&local, "::ffff:10.231.9.1"), [7], "IPv4-mapped");
        assert_eq!(held(&local, "fd00:231:9::1"), [7]);
        assert!(held(&local, "10.231.9.2").is_empty(), "the peer on the link is not local");
        assert!(held(&local, "10.231.9.255").is_empty(), "nor the broadcast address");
        // Another listener of the namespace whose process is gone already changes nothing.
        std::thread::sleep(REREAD_AFTER);
        local.learn(7, 43);
        assert_eq!(held(&local, "10.231.9.1"), [7]);
        // The process is gone at the refresh: the namespace's addresses prove nothing any more.
        std::fs::remove_dir_all(&net).unwrap();
        local.refresh();
        assert!(held(&local, "10.231.9.1").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_namespace_has_loopback() {
        let mut local = LocalAddresses::new();
        local.learn(1, std::process::id());
        assert_eq!(local.namespaces_of(&"127.0.0.1".parse().unwrap()), [1]);
    }
}
