//! Command line: parsed with clap into [`Cli`] (mirrors the flags), then checked and turned into
//! the [`Config`] the rest of the program uses.
use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rsttrace_common::MAX_FILTER_PORTS;

use crate::{
    btf, correlate, filter::ReportFilter, fold, loader::{FloorKind, HookKind}, report::Cause, tracefs,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Sent,
    Received,
}

#[derive(Parser, Debug)]
#[command(
    name = "rsttrace",
    version,
    about = "Tell where every TCP reset on this host came from: who sent it, which process owned the socket, and why.",
    // The agent's flags belong to the agent: `rsttrace --json correlate …` is a mistake to say.
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  sudo rsttrace                          live table of every reset and abort
  sudo rsttrace -T -w                    with wall-clock times and full addresses
  sudo rsttrace --json | jq .            one JSON object per reset (fields in docs/causes.md)
  sudo rsttrace -p 812 -L 80,443         only sockets of pid 812 on local ports 80 and 443
  sudo rsttrace --cause data_after_close,app_abort_unread
  sudo rsttrace --summary --interval 60  count only, print totals every minute
  sudo rsttrace --output /var/log/rsttrace.json --rotate-size 100M --rotate-keep 5
  sudo rsttrace --max-rate 100           at most ~100 reports a second, the rest folded and counted
  sudo rsttrace --json --max-rate 0      every reset its own record, however many
  sudo rsttrace --metrics 127.0.0.1:9977 Prometheus metrics on /metrics
  sudo rsttrace --network-evidence       also tell forged RSTs by their hop count (costs per segment)
  rsttrace correlate a.json b.json       pair the resets of two hosts' traces (no root needed)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Only sockets owned by this process id.
    #[arg(short = 'p', long)]
    pub pid: Option<u32>,
    /// Only sockets owned by processes in this cgroup or below it (v2 path, e.g. /sys/fs/cgroup/system.slice/nginx.service, or a slice for all its services).
    #[arg(short = 'c', long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Only sockets in this network namespace: a path (/run/netns/NAME, /proc/PID/ns/net) or its
    /// inode number (the reports' `netns`).
    #[arg(long, value_name = "PATH|INODE")]
    pub netns: Option<String>,
    /// Only sockets created in this container (its id, or the first 12 or more of its digits).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Only these local ports (comma list, at most 8).
    #[arg(short = 'L', long = "lport", value_name = "PORTS", value_delimiter = ',')]
    pub lports: Vec<u16>,
    /// Only these remote ports (comma list, at most 8).
    #[arg(short = 'D', long = "rport", value_name = "PORTS", value_delimiter = ',')]
    pub rports: Vec<u16>,
    /// Only IPv4.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Only IPv6.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Only resets this host sent, or only ones it received.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// Only these causes (comma list; each is explained in docs/causes.md).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub cause: Vec<String>,
    /// Show benign resets in the live table too (they are always counted).
    #[arg(long)]
    pub include_benign: bool,
    /// Add a wall-clock TIME column.
    #[arg(short = 'T', long, conflicts_with_all = ["json", "summary"])]
    pub timestamp: bool,
    /// Wide table: full local and remote addresses, no truncation to the terminal width.
    #[arg(short = 'w', long, conflicts_with_all = ["json", "summary"])]
    pub wide: bool,
    /// Print one JSON object per line instead of the table.
    #[arg(long, conflicts_with = "summary")]
    pub json: bool,
    /// Count only: print the summary every --interval seconds instead of each reset.
    #[arg(long)]
    pub summary: bool,
    /// Seconds between summaries in --summary mode.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), requires = "summary")]
    pub interval: u64,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(short = 'd', long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Also write every report as a JSON line to this file (reopened on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rotate --output when it would grow past this size (e.g. 100M, 1G; 0 = never).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size, requires = "output")]
    pub rotate_size: u64,
    /// Rotated files to keep (FILE.1 … FILE.N).
    #[arg(long, value_name = "N", default_value_t = 5, requires = "output")]
    pub rotate_keep: u32,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9977; a bare port binds 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics: Option<SocketAddr>,
    /// Ring buffer size in KiB (a power of two, at least 4). The default holds ~0.12 s of a
    /// full-rate reset storm on two cores: enough to ride out the agent being descheduled
    /// (4 MiB was not), and all of it counts in rsttrace's RSS once it has wrapped.
    #[arg(long, value_name = "KIB", default_value_t = 8192, value_parser = parse_ring_kib)]
    pub ring_buffer_kib: u32,
    /// Reports a second written one by one; past it, reports are folded into records with
    /// their exact counts (0 = no limit).
    ///
    /// The burst is one second's worth. Reports of one kind (type, direction, cause, origin,
    /// owner, namespace, and the local port, or the remote one for connections this host
    /// opened) are folded into one record a second; the summary and the metrics count every
    /// reset either way. A kind with 10 or more reports in the last second, or a verdict with
    /// 100 (a port scan), leaves the last tenth of the rate to the others: a storm does not
    /// fold a rare reset of another kind. The default reports every reset one by one unless the
    /// host is in a
    /// storm, and in one bounds what writing reports costs the agent at ~2-3 ms of CPU a second
    /// (measured: ~2.1 ms per 1k JSON reports written, ~2.8 ms per 1k table lines, on top of
    /// the ~2.6 ms per 1k resets that decoding, classifying and counting cost whatever the
    /// limit). Past the rate, each CPU counts in the kernel instead of sending them to the
    /// agent (not under a filter or --network-evidence), each kind at its own
    /// rate: refused SYNs, and with the BTF-typed programs the refusals connecting sockets
    /// receive, the SO_LINGER 0 aborts of sockets this host accepted and the resets connections
    /// it opened receive in ESTABLISHED. Their folded records come a few seconds later.
    #[arg(long, value_name = "N", default_value_t = fold::DEFAULT_MAX_RATE)]
    pub max_rate: u32,
    /// Also judge received resets by how they arrived: sample the hop count (IPv4 TTL, IPv6 hop
    /// limit) and IPv4 IP ID of the segments established sockets receive, so that a RST
    /// arriving with another hop count than the peer's own segments is reported `injected` (a
    /// device in the path sent it; docs/causes.md says what else counts).
    ///
    /// Off by default because its hook (tcp:tcp_probe, or a kprobe on tcp_rcv_established where
    /// that tracepoint does not name the segment) runs for every segment an established socket
    /// receives, the hottest path in the stack; it reads a socket's first 8 segments, every one
    /// without data and one data segment in 64 (every one, under the kprobe). Bulk transfers
    /// pay for it: `cargo xtask bench`, target "bulk transfer with --network-evidence". Without
    /// it, a received reset still counts the peer talking after its RST.
    #[arg(long)]
    pub network_evidence: bool,
    /// How the programs attach: `auto` uses BTF-typed tracepoints (tp_btf) where the kernel's BTF
    /// and verifier allow (for tcp_send_reset from Linux 6.10), which skip the record a classic
    /// tracepoint first builds; `classic` keeps classic tracepoints everywhere, as on kernels
    /// without BTF. The start-up line says which ran.
    #[arg(long, env = "RSTTRACE_HOOKS", value_enum, value_name = "KIND", default_value = "auto")]
    pub hooks: HookKind,
    /// tracefs root to read tracepoint formats from (default: find or mount /sys/kernel/tracing).
    #[arg(long, env = "RSTTRACE_TRACEFS", value_name = "DIR")]
    pub tracefs: Option<PathBuf>,
    /// Kernel BTF file.
    #[arg(long, env = "RSTTRACE_BTF", value_name = "FILE", default_value = btf::DEFAULT_PATH)]
    pub btf: PathBuf,
    /// Directory under which the container runtimes keep their state (containerd's task bundles
    /// under run/containerd, CRI-O's under run/containers, Docker's under var/lib/docker), read
    /// for a container's pod, namespace and name: `/` on a host, the host's root where a
    /// container mounts it elsewhere.
    #[arg(long, env = "RSTTRACE_RUNTIME_ROOT", value_name = "DIR", default_value = "/")]
    pub runtime_root: PathBuf,
    /// Attach empty programs to the same hooks and report nothing, until stopped: what merely
    /// hooking there costs on this kernel, the floor under rsttrace's own cost (`cargo xtask bench`).
    /// `raw` attaches them as raw tracepoints: what the attach type alone costs.
    #[arg(long, value_enum, value_name = "KIND", num_args = 0..=1, require_equals = true, default_missing_value = "classic", conflicts_with_all = [
        "json", "summary", "output", "metrics", "pid", "cgroup", "netns", "container", "lports", "rports", "ipv4", "ipv6", "direction", "cause",
        "max_rate", "network_evidence",
    ])]
    pub cost_floor: Option<FloorKind>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Correlate(CorrelateArgs),
}

/// Pair the resets of traces taken at two or more ends (reads files: no root, no BPF)
///
/// Reads each end's `rsttrace --json` output or `--output` files and tells, for every reset,
/// whether the other end's trace shows it: which RST the peer sent and why, which one something
/// in the path forged, which one never arrived.
#[derive(Args, Debug)]
#[command(
    after_help = "Statuses: matched (the peer's trace shows it sent this RST; a received reset gets the
sender's cause as peer_cause), injected (the peer's trace covers the moment and sent none),
lost_in_path (the peer's trace covers the moment and received none), unpaired (no trace covers
the other end then). docs/correlate.md says more.

Examples:
  rsttrace correlate client.json server.json     the two ends' resets as a table
  rsttrace correlate web1.json* db1.json         a trace's rotated files too, in any order
  rsttrace correlate --nat 192.0.2.10=10.0.0.5 client.json server.json
                                                 the client reaches the server's 10.0.0.5 as 192.0.2.10
  rsttrace correlate --json a.json b.json | jq 'select(.pairing.status == \"injected\")'
  rsttrace correlate --window 30 a.json b.json   the hosts' clocks may be up to 30 s apart"
)]
pub struct CorrelateArgs {
    /// rsttrace JSON Lines files from the ends (any order; one may hold several runs).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// An address one end sees as ADDR is the other end's ADDR2 (a NAT between them); repeat
    /// for more.
    #[arg(long, value_name = "ADDR=ADDR2", value_parser = parse_nat)]
    pub nat: Vec<(IpAddr, IpAddr)>,
    /// One JSON object per reset (its fields as written, updated, and `pairing`), then a
    /// `correlation` record, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// How many seconds apart the traces' clocks may be: the skew is measured on pairs of
    /// resets this close.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_window)]
    pub window: Duration,
}

impl From<CorrelateArgs> for correlate::Options {
    fn from(args: CorrelateArgs) -> Self {
        Self {
            files: args.files,
            nat: args.nat,
            json: args.json,
            window: args.window,
        }
    }
}

/// `192.0.2.10=10.0.0.5`.
fn parse_nat(s: &str) -> Result<(IpAddr, IpAddr), String> {
    let bad = || format!("`{s}` is not ADDR=ADDR2 (e.g. 192.0.2.10=10.0.0.5)");
    let (a, b) = s.split_once('=').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// Seconds, fractions allowed; more than none and at most a day (a larger skew is a clock to
/// fix, not to correct for).
fn parse_window(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "`{s}` is not a number of seconds between 0 and 86400"
        )),
    }
}

fn parse_ring_kib(s: &str) -> Result<u32, String> {
    let kib: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        return Err(format!("{kib} KiB: must be a power of two between 4 and 1048576"));
    }
    Ok(kib)
}

/// `100M`, `1G`, `64K` or plain bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size like 100M"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M or G)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

/// `ADDR:PORT`, or a bare port on 127.0.0.1: metrics stay local unless asked otherwise.
fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("`{s}` is not ADDR:PORT (e.g. 127.0.0.1:9977 or [::1]:9977)"))
}

/// How reports are shown on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Table { timestamp: bool, wide: bool, include_benign: bool },
    Json,
    /// Counting only, a summary every interval.
    Summary { interval: Duration },
}

#[derive(Debug, Clone)]
pub struct OutputFile {
    pub path: PathBuf,
    /// 0 = never rotate.
    pub rotate_size: u64,
    pub rotate_keep: u32,
}

/// What the agent runs with.
#[derive(Debug)]
pub struct Config {
    pub view: View,
    pub filter: ReportFilter,
    pub duration: Option<Duration>,
    pub output: Option<OutputFile>,
    pub metrics: Option<SocketAddr>,
    pub ring_buffer_bytes: u32,
    /// Reports a second written one by one (`--max-rate`); 0 = all.
    pub max_rate: u32,
    /// `None`: find or mount the standard tracefs.
    pub tracefs: Option<tracefs::Tracefs>,
    pub btf: PathBuf,
    pub runtime_root: PathBuf,
    /// Empty programs on the same hooks, no reports (`--cost-floor`).
    pub cost_floor: Option<FloorKind>,
    /// Sample how the peer's segments arrive (`--network-evidence`).
    pub network_evidence: bool,
    pub hooks: HookKind,
}

impl TryFrom<Cli> for Config {
    type Error = anyhow::Error;

    fn try_from(cli: Cli) -> anyhow::Result<Self> {
        for (flag, ports) in [("-L/--lport", &cli.lports), ("-D/--rport", &cli.rports)] {
            if ports.len() > MAX_FILTER_PORTS {
                bail!("{flag} takes at most {MAX_FILTER_PORTS} ports, got {}", ports.len());
            }
            if ports.contains(&0) {
                bail!("{flag}: port 0 is not a port");
            }
        }
        // A pid names a process that runs now (it may still open sockets); one that does not
        // would make a trace that can never report anything.
        if let Some(pid) = cli.pid {
            if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
                bail!("-p/--pid: no process {pid} is running");
            }
        }
        let causes = cli
            .cause
            .iter()
            .map(|name| {
                Cause::ALL.iter().copied().find(|c| c.name() == name).with_context(|| {
                    let names: Vec<_> = Cause::ALL.iter().map(|c| c.name()).collect();
                    format!("--cause: unknown cause `{name}` (one of: {})", names.join(", "))
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (cgroup, cgroup_below) = match &cli.cgroup {
            // A cgroup v2 directory's inode number is the id the kernel reports for it.
            Some(path) => (
                Some(
                    std::fs::metadata(path)
                        .with_context(|| format!("--cgroup {}: cannot read it (a cgroup v2 directory?)", path.display()))?
                        .ino(),
                ),
                Some(cgroup_in_hierarchy(path)?),
            ),
            None => (None, None),
        };
        let netns = match &cli.netns {
            Some(arg) => Some(match arg.parse::<u32>() {
                Ok(inode) => inode,
                Err(_) => std::fs::metadata(arg)
                    .with_context(|| format!("--netns {arg}: cannot read it (a namespace file such as /run/netns/NAME, or an inode number)"))?
                    .ino() as u32,
            }),
            None => None,
        };
        if let Some(id) = &cli.container {
            if id.len() < 12 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--container {id}: a container id is 12 to 64 hex digits");
            }
        }
        let view = if cli.summary {
            View::Summary { interval: Duration::from_secs(cli.interval) }
        } else if cli.json {
            View::Json
        } else {
            View::Table { timestamp: cli.timestamp, wide: cli.wide, include_benign: cli.include_benign }
        };
        Ok(Self {
            view,
            filter: ReportFilter {
                pid: cli.pid,
                cgroup,
                cgroup_path: cgroup_below,
                netns,
                container: cli.container.map(|id| id.to_ascii_lowercase()),
                lports: cli.lports,
                rports: cli.rports,
                ipv4_only: cli.ipv4,
                ipv6_only: cli.ipv6,
                direction: cli.direction,
                causes,
            },
            duration: cli.duration.map(Duration::from_secs),
            output: cli.output.map(|path| OutputFile { path, rotate_size: cli.rotate_size, rotate_keep: cli.rotate_keep }),
            metrics: cli.metrics,
            ring_buffer_bytes: cli.ring_buffer_kib * 1024,
            max_rate: cli.max_rate,
            tracefs: cli.tracefs.map(tracefs::Tracefs::at),
            btf: cli.btf,
            runtime_root: cli.runtime_root,
            cost_floor: cli.cost_floor,
            network_evidence: cli.network_evidence,
            hooks: cli.hooks,
        })
    }
}

/// Cgroup directory `path` as a path from the cgroup v2 hierarchy's root (`/system.slice`), as
/// reports name cgroups.
fn cgroup_in_hierarchy(path: &Path) -> anyhow::Result<String> {
    let path = std::fs::canonicalize(path).with_context(|| format!("--cgroup {}: cannot resolve it", path.display()))?;
    let mount = crate::workload::cgroup2_mount().context("--cgroup: no cgroup v2 hierarchy is mounted")?;
    let below = path.strip_prefix(&mount).with_context(|| format!("--cgroup {}: not under the cgroup v2 mount {}", path.display(), mount.display()))?;
    Ok(format!("/{}", below.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["rsttrace"];
        argv.extend_from_slice(args);
        Config::try_from(Cli::try_parse_from(argv)?)
    }

    #[test]
    fn sizes_and_addresses() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("10X").is_err());
        assert_eq!(parse_listen_addr("9977").unwrap().to_string(), "127.0.0.1:9977");
        assert_eq!(parse_listen_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen_addr("nowhere").is_err());
    }

    #[test]
    fn filters_are_checked() {
        let me = std::process::id().to_string();
        let c = config(&["-p", &me, "-L", "80,443", "-4", "--cause", "no_listener"]).unwrap();
        assert_eq!(c.filter.pid, Some(std::process::id()));
        assert!(config(&["-p", "0"]).unwrap_err().to_string().contains("no process 0"));
        assert!(config(&["-p", "4194304"]).is_err(), "above pid_max");
        assert!(config(&["--interval", "5"]).is_err(), "--interval without --summary");
        assert!(config(&["--json", "-w"]).is_err());
        assert!(config(&["--summary", "-T"]).is_err());
        assert_eq!(c.filter.lports, vec![80, 443]);
        assert_eq!(c.filter.causes, vec![Cause::NoListener]);
        assert!(config(&["--cause", "gremlins"]).unwrap_err().to_string().contains("unknown cause `gremlins`"));
        assert!(config(&["-L", "1,2,3,4,5,6,7,8,9"]).is_err());
        assert!(config(&["-4", "-6"]).is_err());
        assert!(config(&["--json", "--summary"]).is_err());
        assert!(config(&["--rotate-size", "1M"]).is_err(), "rotation without --output");
        assert!(config(&["--cgroup", "/nonexistent/cgroup"]).is_err());
        assert!(matches!(config(&["--summary", "--interval", "5"]).unwrap().view, View::Summary { .. }));
    }

    #[test]
    fn max_rate_has_a_default_and_zero_means_no_limit() {
        assert_eq!(config(&[]).unwrap().max_rate, fold::DEFAULT_MAX_RATE);
        assert_eq!(config(&["--max-rate", "0"]).unwrap().max_rate, 0);
        assert_eq!(config(&["--max-rate", "50"]).unwrap().max_rate, 50);
        assert!(config(&["--max-rate", "-1"]).is_err());
        assert!(config(&["--cost-floor", "--max-rate", "5"]).is_err(), "the floor reports nothing");
    }

    #[test]
    fn correlate_is_a_subcommand_whose_flags_are_its_own() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["rsttrace"], args].concat());
        let cli = parse(&[
            "correlate",
            "--nat",
            "192.0.2.10=10.0.0.5",
            "--nat",
            "fd00::1=fd00::2",
            "a.json",
            "b.json",
        ])
        .unwrap();
        let Some(Command::Correlate(args)) = cli.command else {
            panic!("no subcommand")
        };
        let options = correlate::Options::from(args);
        assert_eq!(
            options.files,
            [PathBuf::from("a.json"), PathBuf::from("b.json")]
        );
        assert_eq!(
            options.nat[0],
            ("192.0.2.10".parse().unwrap(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(options.nat[1].1, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(options.window, Duration::from_secs(5));
        assert!(!options.json);
        let cli = parse(&["correlate", "--json", "--window", "0.5", "a.json"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Correlate(CorrelateArgs { json: true, window, .. })) if window == Duration::from_millis(500))
        );
        assert!(parse(&["correlate"]).is_err(), "files are required");
        assert!(parse(&["correlate", "--nat", "192.0.2.10", "a"])
            .unwrap_err()
            .to_string()
            .contains("is not ADDR=ADDR2"));
        assert!(parse(&["correlate", "--window", "0", "a"]).is_err());
        assert!(
            parse(&["--json", "correlate", "a"]).is_err(),
            "agent flags do not go with correlate"
        );
        assert!(parse(&["correlate", "-p", "1", "a"]).is_err());
        assert!(
            parse(&[]).unwrap().command.is_none(),
            "no subcommand: the agent"
        );
    }

    #[test]
    fn cost_floor_takes_an_optional_kind() {
        assert_eq!(config(&[]).unwrap().cost_floor, None);
        assert_eq!(config(&["--cost-floor"]).unwrap().cost_floor, Some(FloorKind::Classic));
        assert_eq!(config(&["--cost-floor", "-d", "4"]).unwrap().cost_floor, Some(FloorKind::Classic));
        assert_eq!(config(&["--cost-floor=raw"]).unwrap().cost_floor, Some(FloorKind::Raw));
        assert!(config(&["--cost-floor", "raw"]).is_err(), "the kind needs `=`");
        assert!(config(&["--cost-floor=raw", "--json"]).is_err(), "the floor reports nothing");
    }
}
