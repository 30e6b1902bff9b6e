//! Which host and which run of rsttrace wrote a record, and what that run covers: the facts
//! `rsttrace correlate` needs to put two hosts' traces side by side (every JSON record names
//! `host` and `instance`; the `trace` records add the namespace and its addresses).
use std::{
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::bail;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceInfo {
    pub host: String,
    /// Random per run: one host's traces before and after a restart are told apart by it.
    pub instance: String,
    /// The namespace `--netns` limits the trace to (its inode).
    pub scope_netns: Option<u32>,
    /// This end's addresses: those of the `--netns` namespace, else of rsttrace's own. A peer's
    /// trace that names an address is the trace of that end.
    pub addresses: Vec<IpAddr>,
    /// Filters besides `--netns`, as flags: such a trace may lack reports of its namespace.
    pub filters: Vec<String>,
    /// Resets this kernel does not let the run see (its capture mode): the trace may lack them.
    pub unseen: Vec<String>,
}

impl TraceInfo {
    /// Needs CAP_SYS_ADMIN to enter `scope`'s namespace: call it before privileges are dropped.
    pub fn gather(scope: Option<u32>, filters: Vec<String>) -> Self {
        // Without them the trace still serves; it only cannot vouch for its end in `correlate`.
        let addresses = match scope {
            Some(inode) => match netns_path(inode) {
                Some(path) => addresses_in(&path).unwrap_or_else(|e| {
                    eprintln!("rsttrace: --netns: cannot read the addresses of {}: {e:#}; the trace records list none", path.display());
                    Vec::new()
                }),
                None => {
                    eprintln!("rsttrace: --netns {inode}: no namespace file has this inode (/run/netns/*, /proc/*/ns/net) to read its addresses from; the trace records list none");
                    Vec::new()
                }
            },
            None => addresses_here().unwrap_or_else(|e| {
                eprintln!("rsttrace: cannot read this host's addresses: {e:#}; the trace records list none");
                Vec::new()
            }),
        };
        Self {
            host: hostname(),
            instance: instance_id(),
            scope_netns: scope,
            addresses,
            filters,
            unseen: Vec::new(),
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: valid buffer of the given length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown".into();
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: valid buffer of the given length. A short read leaves zeros: still a usable id.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file that opens the namespace with this inode: a named one, else one a process is in.
fn netns_path(inode: u32) -> Option<PathBuf> {
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let processes = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path().join("ns/net"));
    named
        .chain(processes)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() as u32 == inode))
}

/// The addresses of another namespace, read from a thread that enters it (a thread's network
/// namespace is its own; the rest of rsttrace stays where it is).
fn addresses_in(path: &Path) -> anyhow::Result<Vec<IpAddr>> {
    let file = std::fs::File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a namespace file descriptor that stays open for the call.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("entering it: {}", std::io::Error::last_os_error());
            }
            addresses_here()
        })
        .join()
        .unwrap_or_else(|_| bail!("the thread reading them panicked"))
    })
}

/// The calling thread's namespace's addresses, without loopback and link-local ones (which name
/// no host to a peer).
fn addresses_here() -> anyhow::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        bail!("getifaddrs: {}", std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: a node of the list getifaddrs returned; its address, when set, is a sockaddr
        // of the family it names.
        unsafe {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                let ip = match (*addr).sa_family as i32 {
                    libc::AF_INET => Some(IpAddr::from(
                        (*addr.cast::<libc::sockaddr_in>())
                            .sin_addr
                            .s_addr
                            .to_ne_bytes(),
                    )),
                    libc::AF_INET6 => Some(IpAddr::from(
                        (*addr.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr,
                    )),
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| !ip.is_loopback() && !is_link_local(ip)) {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
            at = (*at).ifa_next;
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_has_a_host_and_an_instance_of_its_own() {
        let (a, b) = (instance_id(), instance_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(!hostname().is_empty());
    }

    #[test]
    fn addresses_leave_out_loopback_and_link_local() {
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(is_link_local(&"169.254.1.1".parse().unwrap()));
        assert!(!is_link_local(&"fd00::1".parse().unwrap()));
        let here = addresses_here().unwrap();
        assert!(here.iter().all(|ip| !ip.is_loopback()), "{here:?}");
    }
}
