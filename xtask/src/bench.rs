//! `cargo xtask bench`: what a busy production host feels from rsttrace, side by side with no
//! tracer, empty programs on the same hooks and the bpftrace one-liner a user would write
//! instead. Every workload keeps every core busy (one load process per core), so the agent's
//! CPU comes out of the workload's; every run gets its own fresh pair of network namespaces,
//! which no other run's TIME_WAIT sockets share; rounds alternate, their order rotated.
//! Prints the figures and writes them to `bench/results.md` (produced here, never edited);
//! `--short` is a quick run for development that writes `target/bench-short.md` instead.
use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    netns::Pair,
    probe::{cpu_secs, program_ids, reap_with_cpu, status_kib},
};

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
const METRICS_PORT: u16 = 19_978;
/// What a user would run instead: print every sent reset.
const BPFTRACE_ONE_LINER: &str = r#"tracepoint:tcp:tcp_send_reset { printf("%d %s %d\n", pid, comm, args->state); }"#;
const LOAD: &str = "target/release/rstload";
const RSTTRACE: &str = "target/release/rsttrace";
/// The bench's namespaces; the /24 is 10.232.SUBNET.0 (the soak uses 1).
const NETNS_TAG: &str = "rstbench";
const SUBNET: u8 = 2;
/// A port nobody listens on in the server namespace.
const CLOSED_PORT: &str = "9";
/// The paced run's refused connects a second: each is two resets, so 1k resets a second.
const PACED_CONNECTS_PER_SEC: u32 = 500;
/// How long a tracer gets after the load to read and report what it left queued or held:
/// rsttrace holds a reset ~170 ms and reads its ring buffer at least once a second.
const SETTLE: Duration = Duration::from_millis(1500);
/// Server `i` (one per core) listens on this port plus `i`.
const FIRST_SERVER_PORT: u16 = 7000;
/// Connections the memory bound churns through one rsttrace.
const MEMORY_CONNECTIONS: u64 = 1_000_000;

/// How long each part runs: the full bench, or `--short` for development.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    rounds: usize,
    /// One throughput run.
    seconds: u64,
    /// One run per workload and tracer with the kernel's BPF statistics on.
    profile_seconds: u64,
    /// The full-rate storm of the lost-events check.
    storm_seconds: u64,
    /// The paced 1k resets/s run.
    paced_seconds: u64,
    /// The memory bound stops at MEMORY_CONNECTIONS or after this long, in batches of
    /// `batch_seconds`.
    memory_limit_seconds: u64,
    batch_seconds: u64,
    short: bool,
}

impl Plan {
    // 5 rounds of 4 s: a single run varies by 10% here (a no-tracer run against another), and a
    // median of five holds still where one of three did not. With 9 tracers, 4 workloads, the
    // profiling runs, the 60 s storm and the 1M connections, the whole bench takes about 25
    // minutes here from a warm build.
    pub const FULL: Plan = Plan {
        rounds: 5,
        seconds: 4,
        profile_seconds: 2,
        storm_seconds: 60,
        paced_seconds: 10,
        memory_limit_seconds: 240,
        batch_seconds: 10,
        short: false,
    };
    /// Every part once, briefly: for working on the bench, not for figures.
    pub const SHORT: Plan = Plan {
        rounds: 2,
        seconds: 1,
        profile_seconds: 1,
        storm_seconds: 3,
        paced_seconds: 2,
        memory_limit_seconds: 4,
        batch_seconds: 2,
        short: true,
    };

    fn results_path(&self) -> &'static str {
        if self.short { "target/bench-short.md" } else { "bench/results.md" }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tracer {
    None,
    /// A second run without a tracer: its ratio to the first is the noise.
    Control,
    /// `--json --max-rate 0`: every report written.
    RsttraceJson,
    /// `--json` as shipped: storms past 1000 reports/s folded into counted records.
    RsttraceFolded,
    RsttraceSummary,
    /// `--json --max-rate 0 --network-evidence`: also a program on every received segment.
    RsttraceEvidence,
    /// `rsttrace --cost-floor`: empty programs on rsttrace's hooks.
    Floor,
    /// `rsttrace --cost-floor=raw`: the same as raw tracepoints, which build no record.
    FloorRaw,
    Bpftrace,
}

impl Tracer {
    const ALL: [Tracer; 9] = [
        Tracer::None,
        Tracer::Control,
        Tracer::RsttraceJson,
        Tracer::RsttraceFolded,
        Tracer::RsttraceSummary,
        Tracer::RsttraceEvidence,
        Tracer::Floor,
        Tracer::FloorRaw,
        Tracer::Bpftrace,
    ];

    fn name(self) -> &'static str {
        match self {
            Tracer::None => "no tracer",
            Tracer::Control => "no tracer (control)",
            Tracer::RsttraceJson => "rsttrace --json --max-rate 0 > file",
            Tracer::RsttraceFolded => "rsttrace --json > file (storms folded past 1000/s)",
            Tracer::RsttraceSummary => "rsttrace --summary",
            Tracer::RsttraceEvidence => "rsttrace --json --max-rate 0 --network-evidence > file",
            Tracer::Floor => "empty programs on rsttrace's hooks (--cost-floor)",
            Tracer::FloorRaw => "empty programs as raw tracepoints (--cost-floor=raw)",
            Tracer::Bpftrace => "bpftrace one-liner",
        }
    }

    fn untraced(self) -> bool {
        matches!(self, Tracer::None | Tracer::Control)
    }

    /// A process that reads events and reports: the floors attach programs and read nothing.
    fn reads_events(self) -> bool {
        matches!(self, Tracer::RsttraceJson | Tracer::RsttraceFolded | Tracer::RsttraceSummary | Tracer::RsttraceEvidence | Tracer::Bpftrace)
    }

    fn command(self) -> Option<Command> {
        let (program, args): (&str, &[&str]) = match self {
            Tracer::None | Tracer::Control => return None,
            // Every report written (no folding): the per-event cost.
            Tracer::RsttraceJson => (RSTTRACE, &["--json", "--max-rate", "0"]),
            Tracer::RsttraceFolded => (RSTTRACE, &["--json"]),
            Tracer::RsttraceSummary => (RSTTRACE, &["--summary", "--interval", "3600"]),
            Tracer::RsttraceEvidence => (RSTTRACE, &["--json", "--max-rate", "0", "--network-evidence"]),
            Tracer::Floor => (RSTTRACE, &["--cost-floor"]),
            Tracer::FloorRaw => (RSTTRACE, &["--cost-floor=raw"]),
            Tracer::Bpftrace => ("bpftrace", &["-e", BPFTRACE_ONE_LINER]),
        };
        let mut c = Command::new(program);
        c.args(args);
        Some(c)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Workload {
    Churn,
    ResetStorm,
    AbortStorm,
    Bulk,
}

impl Workload {
    const ALL: [Workload; 4] = [Workload::Churn, Workload::ResetStorm, Workload::AbortStorm, Workload::Bulk];

    fn name(self) -> &'static str {
        match self {
            Workload::Churn => "connection churn, no resets",
            Workload::ResetStorm => "reset storm: connects to a closed port",
            Workload::AbortStorm => "abort storm: the server closes with SO_LINGER 0",
            Workload::Bulk => "bulk transfer: one connection per core, 64 KiB writes",
        }
    }

    /// What one `ops` of rstload is, per second, and its scale.
    fn unit(self) -> (&'static str, f64) {
        match self {
            Workload::Churn => ("connections/s", 1.0),
            Workload::ResetStorm => ("refused connects/s", 1.0),
            Workload::AbortStorm => ("aborted connections/s", 1.0),
            Workload::Bulk => ("MiB/s", 1024.0 * 1024.0),
        }
    }

    /// A storm's unit as its exact count names it: each is two resets (one sent, one received).
    fn storm_unit(self) -> Option<&'static str> {
        match self {
            Workload::ResetStorm => Some("refused connect"),
            Workload::AbortStorm => Some("aborted connection"),
            Workload::Churn | Workload::Bulk => None,
        }
    }

    /// The (direction, cause) of every reset the workload provokes: its client's and server's.
    fn provokes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Workload::Churn | Workload::Bulk => &[],
            Workload::ResetStorm => &[("sent", "no_listener"), ("received", "refused")],
            Workload::AbortStorm => &[("sent", "app_abort_linger0"), ("received", "peer_reset")],
        }
    }

    /// rstload's server and client modes; no server: the port is closed.
    fn modes(self) -> (Option<&'static str>, &'static str) {
        match self {
            Workload::Churn => (Some("serve-echo"), "connect"),
            Workload::ResetStorm => (None, "storm"),
            Workload::AbortStorm => (Some("serve-abort"), "connect"),
            Workload::Bulk => (Some("serve-sink"), "bulk"),
        }
    }
}

/// What rstload did: its workload's unit, and the connections it attempted.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    ops: u64,
    conns: u64,
}

impl Load {
    fn parse(stdout: &[u8]) -> Result<Load> {
        let text = String::from_utf8_lossy(stdout);
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok());
        Ok(Load { ops: field("ops ").context("rstload printed no ops")?, conns: field("conns ").context("rstload printed no conns")? })
    }

    fn add(self, other: Load) -> Load {
        Load { ops: self.ops + other.ops, conns: self.conns + other.conns }
    }
}

/// A fresh pair of namespaces joined by veth, with the workload's servers (one per core) in
/// the server namespace: no other run's sockets share them. Servers are
/// killed, then the namespaces deleted, on drop.
struct Bed {
    servers: Vec<Child>,
    pair: Pair,
    cores: usize,
    workload: Workload,
}

impl Bed {
    fn new(workload: Workload, cores: usize) -> Result<Bed> {
        let pair = Pair::new(NETNS_TAG, SUBNET)?;
        let mut bed = Bed { servers: Vec::new(), pair, cores, workload };
        if let (Some(mode), _) = workload.modes() {
            for i in 0..cores {
                let port = (FIRST_SERVER_PORT + i as u16).to_string();
                let mut server =
                    Command::new(LOAD).args([&bed.pair.server, mode, &bed.pair.server_addr, &port]).stdout(Stdio::piped()).spawn()?;
                let mut line = String::new();
                BufReader::new(server.stdout.take().context("server stdout")?).read_line(&mut line)?;
                bed.servers.push(server);
                if line.trim() != "ready" {
                    bail!("rstload {mode} on port {port} did not start");
                }
            }
        }
        Ok(bed)
    }

    /// One client per core for `seconds`; their sum.
    fn load(&self, workload: Workload, seconds: u64) -> Result<Load> {
        let secs = seconds.to_string();
        let (_, mode) = workload.modes();
        let clients = (0..self.cores)
            .map(|i| {
                let port = if workload == Workload::ResetStorm { CLOSED_PORT.to_string() } else { (FIRST_SERVER_PORT + i as u16).to_string() };
                Command::new(LOAD).args([&self.pair.client, mode, &self.pair.server_addr, &port, &secs]).stdout(Stdio::piped()).spawn()
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("starting rstload")?;
        let mut total = Load::default();
        for client in clients {
            let out = client.wait_with_output()?;
            if !out.status.success() {
                bail!("rstload {mode} failed ({})", out.status);
            }
            total = total.add(Load::parse(&out.stdout)?);
        }
        Ok(total)
    }

}

impl Drop for Bed {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// One BPF program as bpftool lists it.
struct Program {
    id: u64,
    kind: String,
    name: String,
    run_time_ns: u64,
    run_cnt: u64,
}

fn bpf_programs() -> Result<Vec<Program>> {
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().context("bpftool")?;
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).context("bpftool prog show: not a JSON array")?;
    Ok(list
        .iter()
        .map(|p| Program {
            id: p["id"].as_u64().unwrap_or(0),
            kind: p["type"].as_str().unwrap_or("").to_string(),
            name: p["name"].as_str().unwrap_or("?").to_string(),
            // Absent while the kernel's statistics are off.
            run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
            run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
        })
        .collect())
}

/// Tracing programs that are not `ours`: another tracer on the host, taxing the workload too.
fn foreign_tracing_programs(ours: &HashSet<u64>) -> Result<usize> {
    let tracing = ["tracepoint", "raw_tracepoint", "kprobe", "tracing", "perf_event"];
    Ok(bpf_programs()?.iter().filter(|p| tracing.contains(&p.kind.as_str()) && !ours.contains(&p.id)).count())
}

/// Per BPF program name: (run_time_ns, run_cnt).
type ProgramTimes = BTreeMap<String, (u64, u64)>;

/// A tracer started and attached.
struct Running {
    tracer: Tracer,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Its BPF programs, once attached.
    programs: HashSet<u64>,
}

/// What a tracer said of itself when it stopped.
#[derive(Clone, Copy, Debug, Default)]
struct Account {
    lost: u64,
    /// Reports (rsttrace's resets/aborts; bpftrace's printed lines).
    reports: u64,
    /// Events that crossed from the kernel (rsttrace's count; for bpftrace its lines).
    events: u64,
    /// rsttrace --json: resets whose both ends are the bed's.
    bed_resets: Option<u64>,
    /// rsttrace --json: those of them judged otherwise than the workload provokes them.
    misjudged: u64,
    /// Its CPU from attached until it had caught up after the load ([`SETTLE`]): the work the
    /// connections made.
    cpu_secs: f64,
    /// Its CPU from SIGINT to exited: the final drain, the summary, and detaching (unregistering
    /// the programs and freeing the ring buffer: a few ms of kernel work, once per run).
    exit_cpu_secs: f64,
}

fn start_tracer(tracer: Tracer) -> Result<Option<Running>> {
    let Some(mut cmd) = tracer.command() else { return Ok(None) };
    let base = std::env::temp_dir().join(format!("rsttrace-bench-{}", std::process::id()));
    let (stdout, stderr) = (base.with_extension("out"), base.with_extension("err"));
    let mut child = cmd
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?)
        .spawn()
        .with_context(|| format!("starting {}", tracer.name()))?;
    // Ready: rsttrace says "attached" on stderr (its floors too); bpftrace "Attaching" on stdout.
    let (file, marker) = if tracer == Tracer::Bpftrace { (&stdout, "Attaching") } else { (&stderr, "rsttrace: attached") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(file).unwrap_or_default().contains(marker) {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let said = std::fs::read_to_string(&stderr).unwrap_or_default();
            bail!("{} did not start: {said}", tracer.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let programs = program_ids(child.id());
    Ok(Some(Running { tracer, child, stdout, stderr, programs }))
}

impl Running {
    fn programs(&self) -> Result<ProgramTimes> {
        let mut out = BTreeMap::new();
        for p in bpf_programs()?.into_iter().filter(|p| self.programs.contains(&p.id)) {
            let e = out.entry(p.name).or_insert((0, 0));
            e.0 += p.run_time_ns;
            e.1 += p.run_cnt;
        }
        Ok(out)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, wait for the drain and the summary, read the tracer's own account. `bed`: count
    /// the JSON reports about its connections.
    fn stop(self, cpu_at_start: f64, bed: Option<&Bed>) -> Result<Account> {
        let pid = self.pid();
        let cpu_before_stop = cpu_secs(pid);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        // Reaped here rather than by `Child::wait`, for the CPU time wait4 reports with it.
        // rsttrace is never signalled twice: a second SIGINT ends its drain at once.
        let again = matches!(self.tracer, Tracer::Bpftrace).then_some(Duration::from_secs(10));
        let cpu_at_exit = reap_with_cpu(pid, again).with_context(|| format!("waiting for {}", self.tracer.name()))?;
        let stderr = std::fs::read_to_string(&self.stderr)?;
        let mut account = match self.tracer {
            Tracer::Bpftrace => {
                let lost = stderr.lines().filter_map(|l| l.strip_prefix("Lost ")?.split(' ').next()?.parse::<u64>().ok()).sum();
                // Printed events only: not its banner, nor the empty line it may print on exit.
                let lines = BufReader::new(File::open(&self.stdout)?)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.is_empty() && !l.starts_with("Attaching"))
                    .count() as u64;
                Account { lost, reports: lines, events: lines, ..Account::default() }
            }
            Tracer::RsttraceJson | Tracer::RsttraceFolded | Tracer::RsttraceSummary | Tracer::RsttraceEvidence => {
                // The summary goes to stderr with --json, to stdout (small) with --summary.
                let summary = match stderr.lines().find(|l| l.contains(" resets/aborts")) {
                    Some(l) => l.to_string(),
                    None => std::fs::read_to_string(&self.stdout)?.lines().find(|l| l.contains(" resets/aborts")).unwrap_or("").to_string(),
                };
                Account {
                    lost: number_before(&summary, " events lost"),
                    reports: number_before(&summary, " resets/aborts"),
                    events: number_before(&summary, " events read"),
                    ..Account::default()
                }
            }
            _ => Account::default(),
        };
        account.cpu_secs = cpu_before_stop - cpu_at_start;
        account.exit_cpu_secs = (cpu_at_exit - cpu_before_stop).max(0.0);
        if let (Tracer::RsttraceJson | Tracer::RsttraceFolded, Some(bed)) = (self.tracer, bed) {
            // The bed's records by namespace (the tracer sees the whole host); folded records
            // carry no addresses.
            let inodes = bed.pair.inodes();
            let mut resets = 0;
            for line in BufReader::new(File::open(&self.stdout)?).lines() {
                let v: Value = serde_json::from_str(&line?).context("rsttrace --json printed a line that is not JSON")?;
                if !v["netns"].as_u64().is_some_and(|n| inodes.contains(&n)) {
                    continue;
                }
                let count = match v["type"].as_str() {
                    Some("reset") => 1,
                    // Past --max-rate: one record per kind a second, with its exact count.
                    Some("folded") if v["report_type"] == "reset" => v["count"].as_u64().unwrap_or(0),
                    _ => 0,
                };
                resets += count;
                let verdict = (v["direction"].as_str().unwrap_or("-"), v["cause"].as_str().unwrap_or("-"));
                if !bed.workload.provokes().contains(&verdict) {
                    account.misjudged += count;
                }
            }
            account.bed_resets = Some(resets);
        }
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
        Ok(account)
    }
}

/// The number just before `marker` in rsttrace's summary line; 0 when absent.
fn number_before(line: &str, marker: &str) -> u64 {
    line.split(marker).next().filter(|_| line.contains(marker)).and_then(|s| s.rsplit([' ', ':']).find(|w| !w.is_empty())).and_then(|w| w.parse().ok()).unwrap_or(0)
}

/// One measured run.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    load: Load,
    account: Account,
    peak_rss_kib: u64,
    /// Tracing programs on the host that were not this run's (another tracer running).
    foreign: usize,
}

fn measure(plan: &Plan, cores: usize, workload: Workload, tracer: Tracer) -> Result<Run> {
    let bed = Bed::new(workload, cores)?;
    let running = start_tracer(tracer)?;
    let ours = running.as_ref().map(|r| r.programs.clone()).unwrap_or_default();
    let foreign_before = foreign_tracing_programs(&ours)?;
    let cpu0 = running.as_ref().map_or(0.0, |r| cpu_secs(r.pid()));
    let load = bed.load(workload, plan.seconds)?;
    let foreign = foreign_before.max(foreign_tracing_programs(&ours)?);
    let mut run = Run { load, foreign, ..Run::default() };
    if let Some(r) = running {
        // Time to read and report what the load left queued or held, so that its work counts
        // as the connections' and not as the exit's.
        std::thread::sleep(SETTLE);
        run.peak_rss_kib = status_kib(r.pid(), "VmHWM");
        run.account = r.stop(cpu0, Some(&bed))?;
    }
    Ok(run)
}

/// One run per tracer with the kernel's BPF statistics on: BPF time per program, and how often
/// each ran per connection.
fn profile(plan: &Plan, cores: usize, workload: Workload) -> Result<BTreeMap<Tracer, (ProgramTimes, Load)>> {
    let _stats = BpfStatsOn::new()?;
    let mut per_tracer = BTreeMap::new();
    for tracer in Tracer::ALL.into_iter().filter(|t| !t.untraced()) {
        let bed = Bed::new(workload, cores)?;
        let r = start_tracer(tracer)?.context("a tracer to profile")?;
        let before = r.programs()?;
        let load = bed.load(workload, plan.profile_seconds)?;
        let after = r.programs()?;
        r.stop(0.0, None)?;
        let during = after
            .into_iter()
            .map(|(name, (ns, cnt))| {
                let (ns0, cnt0) = before.get(&name).copied().unwrap_or((0, 0));
                (name, (ns - ns0, cnt - cnt0))
            })
            .collect();
        per_tracer.insert(tracer, (during, load));
    }
    Ok(per_tracer)
}

pub fn bench(plan: Plan) -> Result<()> {
    crate::install_debian(&["bpftrace", "bpftool"])?;
    crate::cmd("cargo", &["build", "--release", "--package", "rsttrace", "--package", "rsttrace-tests", "--bins"])?;
    let _restore = BpfStatsRestore(std::fs::read_to_string(BPF_STATS)?.trim().to_string());
    // Off for every throughput figure, as on a production host: the kernel's run-time
    // accounting (two clock reads per program run) slowed the storm by 2-6% here, the empty
    // programs of the floor most. On only for the profiling runs.
    std::fs::write(BPF_STATS, "0")?;
    let report = run_all(&plan)?;
    print!("{report}");
    let path = plan.results_path();
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, report)?;
    eprintln!("bench: results in {path}");
    Ok(())
}

/// Puts `kernel.bpf_stats_enabled` back as it was however the bench ends, a panic included.
struct BpfStatsRestore(String);

impl Drop for BpfStatsRestore {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// The kernel's BPF statistics on while this lives.
struct BpfStatsOn;

impl BpfStatsOn {
    fn new() -> Result<Self> {
        std::fs::write(BPF_STATS, "1")?;
        Ok(Self)
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, "0");
    }
}

/// The 60 s storm at full rate on every core: lost events, and how exactly rsttrace counted.
#[derive(Debug)]
struct Sustained {
    tracer: Tracer,
    load: Load,
    account: Account,
    peak_kib: u64,
    /// Bytes of JSON the tracer had written when the load stopped.
    written: u64,
}

#[derive(Debug)]
struct Paced {
    core_pct: f64,
    account: Account,
}

#[derive(Debug)]
struct Memory {
    conns: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_string)).unwrap_or_else(|| "?".into())
}

fn run_all(plan: &Plan) -> Result<String> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    let mut results: BTreeMap<(Workload, Tracer), Vec<Run>> = BTreeMap::new();
    let mut profiles: Profiles = BTreeMap::new();
    for workload in Workload::ALL {
        for round in 0..plan.rounds {
            // Rotate the order so drift over time hits every tracer alike.
            let mut order = Tracer::ALL.to_vec();
            let n = order.len();
            order.rotate_left(round * n / plan.rounds);
            for tracer in order {
                let run = measure(plan, cores, workload, tracer)?;
                let (unit, scale) = workload.unit();
                eprintln!(
                    "bench: {:<28} {:<52} round {round}: {:>8.0} {unit}{}",
                    workload.name().split(':').next().unwrap_or(""),
                    tracer.name(),
                    run.load.ops as f64 / scale / plan.seconds as f64,
                    if run.foreign > 0 { " (another tracer was running)" } else { "" }
                );
                results.entry((workload, tracer)).or_default().push(run);
            }
        }
        profiles.insert(workload, profile(plan, cores, workload)?);
    }

    // The lost-events target: a full-rate storm on every core, with JSON as shipped (folding
    // past --max-rate) and with every report written, which also measures the disk.
    let mut sustained = Vec::new();
    for tracer in [Tracer::RsttraceFolded, Tracer::RsttraceJson] {
        let bed = Bed::new(Workload::ResetStorm, cores)?;
        let r = start_tracer(tracer)?.context("rsttrace")?;
        let load = bed.load(Workload::ResetStorm, plan.storm_seconds)?;
        // The agent works off its backlog for a moment after the load stops: peak after that.
        std::thread::sleep(Duration::from_secs(1));
        let peak_kib = status_kib(r.pid(), "VmHWM");
        let written = std::fs::metadata(&r.stdout).map_or(0, |m| m.len());
        let account = r.stop(0.0, None)?;
        eprintln!("bench: {} s storm, {}: {} refused connects, {} lost", plan.storm_seconds, tracer.name(), load.ops, account.lost);
        sustained.push(Sustained { tracer, load, account, peak_kib, written });
    }

    // A steady 1k resets/s from one paced process (two per refused connect: the server stack's
    // and the client's): the agent's CPU as a share of one core.
    // The storm before wrote gigabytes of JSON: its writeback, still under way, would slow the
    // agent's own writes here, a cost of the storm and not of a steady rate.
    // SAFETY: a system call without arguments.
    unsafe { libc::sync() };
    let paced = {
        let bed = Bed::new(Workload::ResetStorm, cores)?;
        let r = start_tracer(Tracer::RsttraceJson)?.context("rsttrace")?;
        let cpu0 = cpu_secs(r.pid());
        let t0 = Instant::now();
        let out = Command::new(LOAD)
            .args([&bed.pair.client, "rate", &bed.pair.server_addr, CLOSED_PORT, &plan.paced_seconds.to_string(), &PACED_CONNECTS_PER_SEC.to_string()])
            .output()?;
        Load::parse(&out.stdout)?;
        let wall = t0.elapsed().as_secs_f64();
        std::thread::sleep(SETTLE);
        let account = r.stop(cpu0, None)?;
        Paced { core_pct: account.cpu_secs / wall * 100.0, account }
    };

    // Memory bound: distinct connections churned through one rsttrace until 1M (or the limit).
    let memory = {
        let bed = Bed::new(Workload::Churn, cores)?;
        let metrics = METRICS_PORT.to_string();
        let mut tracer = Command::new(RSTTRACE)
            .args(["--summary", "--interval", "3600", "--metrics", &metrics])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(3));
        let t0 = Instant::now();
        let mut conns = 0u64;
        while conns < MEMORY_CONNECTIONS && t0.elapsed() < Duration::from_secs(plan.memory_limit_seconds) {
            conns += bed.load(Workload::Churn, plan.batch_seconds)?.ops;
        }
        let (rss_kib, hwm_kib) = (status_kib(tracer.id(), "VmRSS"), status_kib(tracer.id(), "VmHWM"));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
        tracer.wait()?;
        eprintln!("bench: memory: {conns} connections, RSS {rss_kib} KiB");
        Memory { conns, rss_kib, hwm_kib }
    };
    let setting = Setting { plan: *plan, cores, load_before, load_after: load_average(), took: started.elapsed() };
    write_report(&setting, &results, &profiles, &sustained, &paced, &memory)
}

/// A throughput ratio over the rounds.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    lo: f64,
    hi: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(f64::total_cmp);
        Spread { median: v.get(v.len() / 2).copied().unwrap_or(f64::NAN), lo: v.first().copied().unwrap_or(f64::NAN), hi: v.last().copied().unwrap_or(f64::NAN) }
    }
}

/// Where a throughput target lies against the rounds of the two floors; `None` below both.
fn floor_verdict(name: &str, target: f64, classic: Spread, raw: Spread) -> Option<String> {
    if classic.hi.max(raw.hi) < target {
        Some(format!("The {name} target ({target}×) lies above every round of both floors: no program on these hooks reaches it here."))
    } else if classic.hi < target {
        Some(format!(
            "The {name} target ({target}×) lies above every round of the classic floor, not of the raw one: only programs on \
             raw tracepoints that cost almost nothing could reach it."
        ))
    } else if classic.median < target {
        Some(format!("The {name} target ({target}×) lies within the rounds of the classic floor: empty programs alone reach it in some rounds only."))
    } else {
        None
    }
}

/// BPF time per program and the load it served, per workload and tracer, from the profiling runs.
type Profiles = BTreeMap<Workload, BTreeMap<Tracer, (ProgramTimes, Load)>>;

/// What a program's name says it runs on (bpftool truncates names to 15 characters).
fn runs_per_reset(name: &str) -> bool {
    name.contains("send_reset") || name.contains("receive_res")
}

fn runs_per_state_change(name: &str) -> bool {
    name.contains("sock_set_s") || name.contains("set_state")
}

/// Fewer runs than this in a profiling run make no figure for a target: a few dozen runs (a
/// state change in the bulk transfer) read whatever else the host was doing then.
const MIN_RUNS: u64 = 1000;

/// The worst ns per run among the rsttrace --json programs that `pick` selects, over the
/// workloads where they ran at least MIN_RUNS times.
fn worst_ns(profiles: &Profiles, pick: fn(&str) -> bool) -> Option<(f64, String)> {
    let mut worst: Option<(f64, String)> = None;
    for (workload, tracers) in profiles {
        let Some((programs, _)) = tracers.get(&Tracer::RsttraceJson) else { continue };
        for (name, (ns, cnt)) in programs.iter().filter(|(n, (_, cnt))| pick(n) && *cnt >= MIN_RUNS) {
            let per_run = *ns as f64 / *cnt as f64;
            if worst.as_ref().is_none_or(|(w, _)| per_run > *w) {
                worst = Some((per_run, format!("{name}, {}", workload.name().split(':').next().unwrap_or(""))));
            }
        }
    }
    worst
}

/// A throughput target's mark. When the control row (no tracer against no tracer) is further
/// from 1.00 than the ratio is from the target, the noise could flip the verdict: it says so.
fn throughput_mark(ratio: f64, target: f64, control: f64, also: bool) -> String {
    let mark = if ratio >= target && also { "met" } else { "NOT met" };
    if (ratio - target).abs() < (control - 1.0).abs() {
        format!("{mark}, within the noise (control {control:.3}×)")
    } else {
        mark.to_string()
    }
}

struct Setting {
    plan: Plan,
    cores: usize,
    load_before: String,
    load_after: String,
    took: Duration,
}

/// Per workload: the ratio of each tracer, and the figures the targets read.
struct Row {
    ratio: Spread,
    events_per_conn: f64,
    cpu_ms_per_k_conns: f64,
}

fn write_report(
    cx: &Setting,
    results: &BTreeMap<(Workload, Tracer), Vec<Run>>,
    profiles: &Profiles,
    sustained: &[Sustained],
    paced: &Paced,
    memory: &Memory,
) -> Result<String> {
    let plan = &cx.plan;
    let mut md = String::new();
    writeln!(md, "# rsttrace benchmark results\n")?;
    if plan.short {
        writeln!(md, "**A `--short` run: for working on the bench, not figures to quote.**\n")?;
    }
    writeln!(
        md,
        "Produced by `cargo xtask bench` in {:.0} s at commit {} on {} ({} cores); 1-minute load average {} before, {} after.\n\n\
         Every workload runs one load process per core (and, over veth, one server per core), so the tracer's CPU comes out \
         of the workload's, as on a busy production host. Each run gets its own fresh pair of network namespaces joined by veth, \
         which no other run's TIME_WAIT sockets share. {} rounds of {} s per workload and tracer, the order \
         rotated every round; a ratio is a run's throughput over the same round's no-tracer run (median, and min–max over \
         the rounds). The control row is a second run without any tracer: its ratio is the noise.\n\n\
         Throughput was taken with `kernel.bpf_stats_enabled` off, as on a production host. BPF ns per run by program, \
         and runs per connection, come from one more run of {} s per workload and tracer with it on. Ring-buffer events \
         per connection: rsttrace's own count of events read (its summary line) over the connections the load attempted \
         (bpftrace: lines printed). Agent CPU: the tracer process's CPU time, its threads' run time to the microsecond, from attached \
         until {:.1} s after the load, time enough to read and report all it left; what exiting then costs (the last drain, \
         the summary, detaching the programs) is its own column, per run: it is paid once, not per connection. Reports, events and BPF runs are host-wide: other traffic on the host counts too.\n\n\
         bpftrace runs `{BPFTRACE_ONE_LINER}`.\n",
        cx.took.as_secs_f64(),
        crate::output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        cx.cores,
        cx.load_before,
        cx.load_after,
        plan.rounds,
        plan.seconds,
        plan.profile_seconds,
        SETTLE.as_secs_f64(),
    )?;
    let disturbed: usize = results.values().flatten().filter(|r| r.foreign > 0).count();
    if disturbed > 0 {
        writeln!(
            md,
            "**Disturbed: {disturbed} of {} runs found other tracing BPF programs loaded on the host (another tracer was \
             running); their figures include its cost.**\n",
            results.values().map(Vec::len).sum::<usize>()
        )?;
    }
    let mut rows: BTreeMap<(Workload, Tracer), Row> = BTreeMap::new();
    // Per storm: its exact-count line, and whether every round was exact.
    let mut exact: BTreeMap<Workload, (String, bool)> = BTreeMap::new();
    let (mut judged, mut misjudged) = (0, 0);
    // Workloads that provoke resets of which no report was read: nothing was checked there.
    let mut unchecked = Vec::new();
    for workload in Workload::ALL {
        let (unit, scale) = workload.unit();
        let base = &results[&(workload, Tracer::None)];
        writeln!(md, "## {}\n", workload.name())?;
        writeln!(
            md,
            "| tracer | {unit} (median) | ratio vs no tracer | ring-buffer events per connection | BPF ns per run by program (runs per connection) | agent CPU ms per 1k connections | agent CPU, % of one core | agent CPU at exit, ms per run | lost | peak RSS MiB |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
        for tracer in Tracer::ALL {
            let runs = &results[&(workload, tracer)];
            let ratio = Spread::of(runs.iter().zip(base).map(|(r, b)| r.load.ops as f64 / b.load.ops.max(1) as f64).collect());
            let throughput = Spread::of(runs.iter().map(|r| r.load.ops as f64 / scale / plan.seconds as f64).collect()).median;
            let conns: u64 = runs.iter().map(|r| r.load.conns).sum();
            let events: u64 = runs.iter().map(|r| r.account.events).sum();
            let cpu: f64 = runs.iter().map(|r| r.account.cpu_secs).sum();
            let exit_ms = runs.iter().map(|r| r.account.exit_cpu_secs).sum::<f64>() * 1000.0 / runs.len().max(1) as f64;
            let lost: u64 = runs.iter().map(|r| r.account.lost).sum();
            let rss = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
            let row = Row {
                ratio,
                events_per_conn: events as f64 / conns.max(1) as f64,
                cpu_ms_per_k_conns: cpu * 1000.0 / (conns.max(1) as f64 / 1000.0),
            };
            let bpf = match profiles[&workload].get(&tracer) {
                Some((programs, load)) => programs
                    .iter()
                    .filter(|(_, (_, cnt))| *cnt > 0)
                    .map(|(name, (ns, cnt))| format!("{name} {:.0} ({:.2})", *ns as f64 / *cnt as f64, *cnt as f64 / load.conns.max(1) as f64))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "-".into(),
            };
            let bpf = match bpf.as_str() {
                "" => "none ran".to_string(),
                _ => bpf,
            };
            let dash = || "-".to_string();
            let reads = tracer.reads_events();
            writeln!(
                md,
                "| {} | {throughput:.0} | {} | {} | {bpf} | {} | {} | {} | {} | {} |",
                tracer.name(),
                if tracer == Tracer::None { "1.00".into() } else { format!("{:.3} ({:.3}–{:.3})", ratio.median, ratio.lo, ratio.hi) },
                if tracer.untraced() { dash() } else if reads { format!("{:.3}", row.events_per_conn) } else { "0".into() },
                if reads { format!("{:.3}", row.cpu_ms_per_k_conns) } else { dash() },
                if reads { format!("{:.2}", cpu / (runs.len() as f64 * plan.seconds as f64) * 100.0) } else { dash() },
                if reads { format!("{exit_ms:.1}") } else { dash() },
                if reads { lost.to_string() } else { dash() },
                if tracer.untraced() { dash() } else { format!("{rss:.1}") },
            )?;
            rows.insert((workload, tracer), row);
        }
        if let Some(unit) = workload.storm_unit() {
            // Every refused connect, every aborted connection, is one sent and one received reset.
            let runs = &results[&(workload, Tracer::RsttraceFolded)];
            let expected: u64 = runs.iter().map(|r| 2 * r.load.ops).sum();
            let bed: u64 = runs.iter().filter_map(|r| r.account.bed_resets).sum();
            let all: u64 = runs.iter().map(|r| r.account.reports).sum();
            let lost: u64 = runs.iter().map(|r| r.account.lost).sum();
            let every_round = lost == 0 && runs.iter().all(|r| r.account.bed_resets == Some(2 * r.load.ops));
            let line = format!(
                "{bed} resets reported for {expected} expected (two per {unit}), {} in every round, {lost} lost",
                if every_round { "exact" } else { "NOT exact" }
            );
            writeln!(md, "\nCounts, rsttrace --json (folding) over the rounds, reports and folded counts: {line}; {} resets in all on the host.", all)?;
            exact.insert(workload, (line, every_round));
        }
        // Under load, the verdicts stay those of the resets the workload provokes.
        let json_runs = || [Tracer::RsttraceJson, Tracer::RsttraceFolded].into_iter().flat_map(|t| &results[&(workload, t)]);
        let bed: u64 = json_runs().filter_map(|r| r.account.bed_resets).sum();
        let wrong: u64 = json_runs().map(|r| r.account.misjudged).sum();
        (judged, misjudged) = (judged + bed, misjudged + wrong);
        if bed == 0 && !workload.provokes().is_empty() {
            unchecked.push(workload.name());
        }
        let provoked: Vec<String> = workload.provokes().iter().map(|(d, c)| format!("{d} {c}")).collect();
        writeln!(
            md,
            "\nVerdicts, rsttrace --json (both rows) over the rounds: {bed} resets between the load's namespaces, {wrong} judged otherwise than {}.",
            if provoked.is_empty() { "none provoked".to_string() } else { provoked.join(" or ") }
        )?;
        writeln!(md)?;
    }

    writeln!(md, "## Full-rate storm for {} s, every core\n", plan.storm_seconds)?;
    for run in sustained {
        writeln!(
            md,
            "{}: {} connects refused ({:.0}/s), {} reports on the host ({} expected: two per refused connect), {} events read, {} events lost; peak RSS {:.1} MiB; {:.2} GiB of JSON written.\n",
            run.tracer.name(),
            run.load.ops,
            run.load.ops as f64 / plan.storm_seconds as f64,
            run.account.reports,
            2 * run.load.ops,
            run.account.events,
            run.account.lost,
            run.peak_kib as f64 / 1024.0,
            run.written as f64 / (1u64 << 30) as f64
        )?;
    }
    writeln!(
        md,
        "## Steady 1k resets/s, {} s, one paced process\n\n{PACED_CONNECTS_PER_SEC} refused connects a second, two resets each (the server stack's and the client's). rsttrace --json: {:.2}% of one core, {} reports, {} lost.\n",
        plan.paced_seconds, paced.core_pct, paced.account.reports, paced.account.lost
    )?;
    writeln!(
        md,
        "## Memory bound\n\n{} distinct connections churned through `rsttrace --summary` (every core): RSS {:.1} MiB at the end (peak {:.1} MiB).\n",
        memory.conns,
        memory.rss_kib as f64 / 1024.0,
        memory.hwm_kib as f64 / 1024.0
    )?;

    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let json = |w: Workload| &rows[&(w, Tracer::RsttraceJson)];
    writeln!(md, "## Targets\n\nThroughput targets read rsttrace --json --max-rate 0, every report written (median ratio over the rounds), but for the storms', which read --json as shipped (folding past 1000/s).\n")?;
    writeln!(md, "| target | measured | |\n|---|---|---|")?;
    let throughput_targets = [
        (Workload::Churn, "connection churn", 0.98),
        (Workload::ResetStorm, "reset storm", 0.90),
        (Workload::AbortStorm, "abort storm (SO_LINGER 0 over veth)", 0.95),
        (Workload::Bulk, "bulk transfer", 0.99),
    ];
    for (w, name, target) in throughput_targets {
        let r = json(w).ratio.median;
        let control = rows[&(w, Tracer::Control)].ratio.median;
        if let Some((exact_line, every_round)) = exact.get(&w) {
            let folded = rows[&(w, Tracer::RsttraceFolded)].ratio.median;
            writeln!(md, "| {name} ≥ {target}× with exact counts (--json, folding) | {folded:.3}×; {exact_line} | {} |", throughput_mark(folded, target, control, *every_round))?;
            let one_liner = rows[&(w, Tracer::Bpftrace)].ratio.median;
            writeln!(md, "| {name}, per-event (--max-rate 0): ahead of the bpftrace one-liner | {r:.3}× vs {one_liner:.3}× | {} |", mark(r > one_liner))?;
        } else {
            writeln!(md, "| {name} ≥ {target}× | {r:.3}× | {} |", throughput_mark(r, target, control, true))?;
        }
    }
    let unread = if unchecked.is_empty() { String::new() } else { format!("; none read in: {}", unchecked.join(", ")) };
    writeln!(
        md,
        "| every reset the load provokes judged as such (--json, both rows, every workload) | {misjudged} of {judged} otherwise{unread} | {} |",
        mark(misjudged == 0 && unchecked.is_empty())
    )?;
    // The per-segment hook is on by default only if bulk transfers do not feel it.
    let evidence = rows[&(Workload::Bulk, Tracer::RsttraceEvidence)].ratio.median;
    let bulk_control = rows[&(Workload::Bulk, Tracer::Control)].ratio.median;
    let evidence_mark = throughput_mark(evidence, 0.99, bulk_control, true);
    let default = if evidence_mark.starts_with("met") { "could be on by default" } else { "so it stays off by default" };
    writeln!(md, "| bulk transfer with --network-evidence ≥ 0.99× (its per-segment hook on by default) | {evidence:.3}× | {evidence_mark}: {default} |")?;
    let (churn, bulk) = (json(Workload::Churn), json(Workload::Bulk));
    let events = churn.events_per_conn.max(bulk.events_per_conn);
    writeln!(
        md,
        "| ring-buffer events per connection that ends without a reset = 0 | {:.3} churn, {:.3} bulk | {} |",
        churn.events_per_conn,
        bulk.events_per_conn,
        mark(events == 0.0)
    )?;
    writeln!(
        md,
        "| agent CPU per 1k such connections ≤ 0.1 ms | {:.3} ms (churn) | {} |",
        churn.cpu_ms_per_k_conns,
        mark(churn.cpu_ms_per_k_conns <= 0.1)
    )?;
    for (what, limit, pick) in [("reset event", 300.0, runs_per_reset as fn(&str) -> bool), ("state change", 100.0, runs_per_state_change)] {
        match worst_ns(profiles, pick) {
            Some((ns, at)) => writeln!(md, "| BPF ≤ {limit} ns per {what} | {ns:.0} ns (worst: {at}) | {} |", mark(ns <= limit))?,
            None => writeln!(md, "| BPF ≤ {limit} ns per {what} | no such program ran {MIN_RUNS} times | NOT met |")?,
        }
    }
    let (shipped, every) = (&sustained[0], &sustained[1]);
    writeln!(
        md,
        "| 0 events lost in the {} s full-rate storm (--json as shipped) | {} lost (every report written: {} lost, {:.2} GiB of JSON) | {} |",
        plan.storm_seconds,
        shipped.account.lost,
        every.account.lost,
        every.written as f64 / (1u64 << 30) as f64,
        mark(shipped.account.lost == 0)
    )?;
    writeln!(
        md,
        "| RSS ≤ 64 MiB after 1M connections | {:.1} MiB after {} | {} |",
        memory.rss_kib as f64 / 1024.0,
        memory.conns,
        mark(memory.rss_kib <= 64 * 1024 && memory.conns >= MEMORY_CONNECTIONS)
    )?;
    writeln!(md, "| ≤ 2% of one core at a steady 1k resets/s | {:.2}% | {} |", paced.core_pct, mark(paced.core_pct <= 2.0))?;

    let controls: Vec<String> = Workload::ALL.iter().map(|w| format!("{:.3}", rows[&(*w, Tracer::Control)].ratio.median)).collect();
    writeln!(md, "\nNoise: the control rows (no tracer against no tracer) read {} (churn, reset storm, abort storm, bulk).", controls.join(", "))?;
    for (w, name, target) in throughput_targets {
        let (classic, raw) = (rows[&(w, Tracer::Floor)].ratio, rows[&(w, Tracer::FloorRaw)].ratio);
        if let Some(verdict) = floor_verdict(name, target, classic, raw) {
            writeln!(md, "\n{verdict}")?;
        }
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(median: f64, hi: f64) -> Spread {
        Spread { median, lo: median, hi }
    }

    #[test]
    fn a_target_is_placed_against_every_round_of_both_floors() {
        let verdict = |classic, raw| floor_verdict("storm", 0.97, classic, raw).unwrap_or_default();
        assert!(verdict(spread(0.93, 0.94), spread(0.96, 0.969)).contains("above every round of both"));
        // A raw round at the target: reachable in principle, by raw programs only.
        assert!(verdict(spread(0.93, 0.94), spread(0.968, 0.971)).contains("not of the raw one"));
        assert!(verdict(spread(0.965, 0.975), spread(0.99, 1.0)).contains("some rounds only"));
        assert_eq!(verdict(spread(0.98, 0.99), spread(0.99, 1.0)), "");
    }

    #[test]
    fn a_throughput_verdict_within_the_control_rows_noise_says_so() {
        assert_eq!(throughput_mark(0.99, 0.98, 1.005, true), "met");
        assert_eq!(throughput_mark(0.84, 0.98, 0.999, true), "NOT met");
        assert_eq!(throughput_mark(0.99, 0.98, 0.999, false), "NOT met");
        assert_eq!(throughput_mark(1.025, 0.99, 1.135, true), "met, within the noise (control 1.135×)");
        assert_eq!(throughput_mark(0.669, 0.90, 0.746, true), "NOT met, within the noise (control 0.746×)");
    }

    #[test]
    fn the_summary_line_is_read_by_its_markers() {
        let line = "rsttrace: traced 4.0s: 120 resets/aborts (0 benign), 3 events lost, 250 events read";
        assert_eq!(number_before(line, " resets/aborts"), 120);
        assert_eq!(number_before(line, " events lost"), 3);
        assert_eq!(number_before(line, " events read"), 250);
        assert_eq!(number_before("rsttrace: traced 1.0s: 5 resets/aborts", " events read"), 0);
    }

    #[test]
    fn a_spread_is_the_median_and_range_of_the_rounds() {
        let s = Spread::of(vec![0.9, 1.1, 1.0]);
        assert_eq!((s.median, s.lo, s.hi), (1.0, 0.9, 1.1));
    }
}
