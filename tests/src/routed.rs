//! Two hosts with a router between them: `client` — `router` — `server`, three network
//! namespaces joined by two veth links on two subnets, the router forwarding IPv4 and IPv6.
//! A segment that crosses the router arrives with a hop count one lower (TTL / hop limit 63)
//! than a segment the router sends itself (64): what tells a device in the path from the peer.
//! Each end stands for a host of its own, traced by its own rsttrace (`--netns`), and the two
//! traces are read together by `rsttrace correlate`. Everything is removed on drop.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{add_netns, checked_reports, in_ns, link_up, rsttrace_bin, sysctl, veth, Family, NftTable};

/// One end of the path: each is a host of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Client,
    Server,
}

pub struct Routed {
    pub client: String,
    pub router: String,
    pub server: String,
    subnet: u8,
    /// Inodes of the client's and the server's namespaces.
    inodes: [u64; 2],
}

/// The router's host number on both of its links.
const ROUTER_HOST: u8 = 254;

impl Routed {
    /// `subnet` must be unique per test so reports of different tests never mix. The links use
    /// 10.232.SUBNET.0/24 (client side) and 10.233.SUBNET.0/24 (server side), and
    /// fd00:232:SUBNET::/64 and fd00:233:SUBNET::/64: apart from [`crate::Net`]'s 10.231.
    pub fn new(subnet: u8) -> Self {
        let tag = format!("{}-{subnet}", std::process::id());
        let [client, router, server] = ["rstc", "rstr", "rsts"].map(|p| format!("{p}-{tag}"));
        // Built before the namespaces so that its drop removes whatever was made if a step fails.
        let mut routed = Routed { client, router, server, subnet, inodes: [0; 2] };
        routed.inodes[0] = add_netns(&routed.client);
        add_netns(&routed.router);
        routed.inodes[1] = add_netns(&routed.server);
        for ns in [&routed.client, &routed.router, &routed.server] {
            // No duplicate address detection for the links' link-local addresses either: a
            // forwarding router solicits its next hop from its link-local address, and would
            // hold the first forwarded segments until that address left its tentative state
            // (a second or two).
            for conf in ["all", "default"] {
                sysctl(ns, &format!("net/ipv6/conf/{conf}/accept_dad"), "0");
            }
        }
        sysctl(&routed.router, "net/ipv4/ip_forward", "1");
        sysctl(&routed.router, "net/ipv6/conf/all/forwarding", "1");
        let dev = |name: &str| format!("{name}{subnet}x{}", std::process::id() % 10000);
        let (client_dev, router_c, router_s, server_dev) = (dev("c"), dev("rc"), dev("rs"), dev("s"));
        veth((&routed.client, &client_dev), (&routed.router, &router_c));
        veth((&routed.router, &router_s), (&routed.server, &server_dev));
        let cidr = |link: u16, host: u8| (format!("10.{link}.{subnet}.{host}/24"), format!("fd00:{link}:{subnet}::{host:x}/64"));
        for (ns, dev, (v4, v6)) in [
            (&routed.client, &client_dev, cidr(232, 1)),
            (&routed.router, &router_c, cidr(232, ROUTER_HOST)),
            (&routed.router, &router_s, cidr(233, ROUTER_HOST)),
            (&routed.server, &server_dev, cidr(233, 2)),
        ] {
            link_up(ns, dev, &v4, &v6);
        }
        for (ns, dev) in [(&routed.client, &client_dev), (&routed.router, &router_c), (&routed.router, &router_s), (&routed.server, &server_dev)] {
            wait_carrier(ns, dev);
        }
        for (ns, link) in [(&routed.client, 232), (&routed.server, 233)] {
            in_ns(ns, "ip", &["route", "add", "default", "via", &format!("10.{link}.{subnet}.{ROUTER_HOST}")]);
            in_ns(ns, "ip", &["-6", "route", "add", "default", "via", &format!("fd00:{link}:{subnet}::{ROUTER_HOST:x}")]);
        }
        routed
    }

    pub fn addr(&self, end: End, f: Family) -> String {
        let (link, host) = match end {
            End::Client => (232, 1),
            End::Server => (233, 2),
        };
        match f {
            Family::V4 => format!("10.{link}.{}.{host}", self.subnet),
            Family::V6 => format!("fd00:{link}:{}::{host}", self.subnet),
        }
    }

    pub fn ns(&self, end: End) -> &str {
        match end {
            End::Client => &self.client,
            End::Server => &self.server,
        }
    }

    /// The namespace file of `end`, as `rsttrace --netns` takes it.
    pub fn netns_path(&self, end: End) -> String {
        format!("/run/netns/{}", self.ns(end))
    }

    pub fn inode(&self, end: End) -> u64 {
        self.inodes[end as usize]
    }

    /// Rules in the router's forward chain (what crosses it, not what it sends itself); removed
    /// when the guard drops.
    pub fn router_filter(&self, rules: &[&str]) -> NftTable {
        NftTable::new(&self.router, "forward", rules)
    }

    /// The reports of `end`'s namespace, checked: a lost event, or a report with this test's
    /// addresses in any other namespace (the other end's included: each trace stands for one
    /// host, so `--netns` must hold) fails the test.
    pub fn reports_of(&self, end: End, reports: Vec<Value>) -> Vec<Value> {
        self.checked(reports, &[self.inode(end)])
    }

    /// The reports of both ends' namespaces, as one trace of the whole host has them.
    pub fn reports_of_both(&self, reports: Vec<Value>) -> Vec<Value> {
        self.checked(reports, &[self.inode(End::Client), self.inode(End::Server)])
    }

    fn checked(&self, reports: Vec<Value>, inodes: &[u64]) -> Vec<Value> {
        let subnet = self.subnet;
        let ours = |a: &str| {
            ["10.232", "10.233"].iter().any(|l| a.starts_with(&format!("{l}.{subnet}.")))
                || ["fd00:232", "fd00:233"].iter().any(|l| a.starts_with(&format!("{l}:{subnet}:")))
        };
        checked_reports(reports, inodes, ours)
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Wait until `dev` in `ns` has its carrier. The kernel may take up to a second to notice a
/// veth's peer came up (its link events are rate-limited), and until then IPv6 neither answers
/// nor sends neighbour solicitations on it: the first segments of a test would wait for that.
fn wait_carrier(ns: &str, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip").args(["-n", ns, "-o", "link", "show", dev]).output().expect("run ip");
        let line = String::from_utf8_lossy(&out.stdout);
        if line.contains(",LOWER_UP") && !line.contains("NO-CARRIER") {
            return;
        }
        assert!(Instant::now() < deadline, "{dev} in {ns} has no carrier after 10 s: {line}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rsttrace correlate FILE... --json`, as an operator runs it on the traces of two hosts: every
/// line it prints, parsed. It must exit 0.
pub fn correlate(files: &[&Path]) -> Vec<Value> {
    let out = Command::new(rsttrace_bin()).arg("correlate").args(files).arg("--json").output().expect("run rsttrace correlate");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rsttrace correlate exited with {}:\n{stderr}{stdout}", out.status);
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("correlate printed a line that is not JSON: {l}: {e}"))).collect()
}
