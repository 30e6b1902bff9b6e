//! Report filters. The cheap, decisive part (owner pid and cgroup, ports, family) is pushed into
//! the kernel so filtered-out events never cross the ring buffer; the kernel lets through what it
//! cannot judge (owner not known yet, no port in the record), so the full filter is applied
//! again here, exactly, to each report. The namespace and container are judged here only.
use rsttrace_common::{Filter, MAX_FILTER_PORTS};

use crate::{
    cli::DirectionArg,
    event::Family,
    report::{Cause, Direction, Report},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportFilter {
    pub pid: Option<u32>,
    /// cgroup v2 id: of the cgroup named, whose descendants pass too.
    pub cgroup: Option<u64>,
    /// Its path from the hierarchy's root (`/system.slice`): its parts are its depth.
    pub cgroup_path: Option<String>,
    /// Network namespace inode (judged here, from the report).
    pub netns: Option<u32>,
    /// A container id or its prefix (judged here, from the report's workload).
    pub container: Option<String>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    pub ipv4_only: bool,
    pub ipv6_only: bool,
    pub direction: Option<DirectionArg>,
    pub causes: Vec<Cause>,
}

impl ReportFilter {
    /// Whether part of it is applied here, to the reports, rather than in the kernel.
    pub fn in_agent(&self) -> bool {
        self.netns.is_some() || self.container.is_some() || self.direction.is_some() || !self.causes.is_empty()
    }

    /// The part the kernel programs apply.
    pub fn kernel(&self) -> Filter {
        let mut f = Filter::ANY;
        f.pid = self.pid.unwrap_or(0);
        f.cgroup = self.cgroup.unwrap_or(0);
        f.cgroup_level = self.cgroup_path.as_deref().map_or(0, |p| p.split('/').filter(|c| !c.is_empty()).count() as u32);
        f.family = if self.ipv4_only {
            AF_INET
        } else if self.ipv6_only {
            AF_INET6
        } else {
            0
        };
        for (ports, list, count) in [(&self.lports, &mut f.lports, &mut f.lport_count), (&self.rports, &mut f.rports, &mut f.rport_count)] {
            let n = ports.len().min(MAX_FILTER_PORTS);
            list[..n].copy_from_slice(&ports[..n]);
            *count = n as u8;
        }
        f
    }

    /// The kernel part may drop the RST this host sent to a socket the filter keeps: under a
    /// filter on the process or cgroup, another owner's RST crosses only where the kernel side's
    /// note of the receiving socket shows it kept (a port filter keeps the other end's events,
    /// whose ports are reversed). A missing `sent` then proves nothing.
    pub fn drops_other_ends_in_kernel(&self) -> bool {
        self.pid.is_some() || self.cgroup.is_some()
    }

    /// The filters other than the namespace, as flags: a trace with any of them may lack reports
    /// of its namespace (`rsttrace correlate` then cannot take it as a witness).
    pub fn narrowing(&self) -> Vec<String> {
        let ports = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut out = Vec::new();
        out.extend(self.pid.map(|p| format!("-p {p}")));
        out.extend(self.cgroup.map(|c| match &self.cgroup_path {
            Some(path) => format!("-c {path}"),
            None => format!("-c (cgroup id {c})"),
        }));
        out.extend(self.container.as_ref().map(|c| format!("--container {c}")));
        if !self.lports.is_empty() {
            out.push(format!("-L {}", ports(&self.lports)));
        }
        if !self.rports.is_empty() {
            out.push(format!("-D {}", ports(&self.rports)));
        }
        if self.ipv4_only {
            out.push("-4".into());
        }
        if self.ipv6_only {
            out.push("-6".into());
        }
        out.extend(self.direction.map(|d| format!("--direction {}", if d == DirectionArg::Sent { "sent" } else { "received" })));
        if !self.causes.is_empty() {
            out.push(format!("--cause {}", self.causes.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")));
        }
        out
    }

    /// The report's cgroup (its owner's, where it acted itself) is the one named or below it.
    fn holds(&self, r: &Report) -> bool {
        let (Some(named), Some(w)) = (self.cgroup_path.as_deref(), r.workload.as_ref()) else { return false };
        let named = named.trim_end_matches('/');
        w.cgroup == named || w.cgroup.strip_prefix(named).is_some_and(|rest| rest.starts_with('/'))
    }

    pub fn matches(&self, r: &Report) -> bool {
        let owner = r.owner.as_ref();
        self.pid.is_none_or(|pid| owner.is_some_and(|o| o.pid == pid))
            && self.cgroup.is_none_or(|cg| owner.is_some_and(|o| o.cgroup == cg) || self.holds(r))
            && self.netns.is_none_or(|ns| r.netns == ns)
            && self.container.as_ref().is_none_or(|id| {
                r.workload.as_ref().and_then(|w| w.container_id.as_ref()).is_some_and(|c| c.starts_with(id.as_str()))
            })
            && (self.lports.is_empty() || self.lports.contains(&r.endpoints.lport))
            && (self.rports.is_empty() || self.rports.contains(&r.endpoints.rport))
            && !(self.ipv4_only && r.endpoints.family != Family::Ipv4)
            && !(self.ipv6_only && r.endpoints.family != Family::Ipv6)
            && match self.direction {
                None => true,
                Some(DirectionArg::Sent) => r.direction == Some(Direction::Sent),
                Some(DirectionArg::Received) => r.direction == Some(Direction::Received),
            }
            && (self.causes.is_empty() || self.causes.contains(&r.verdict.cause))
    }
}
