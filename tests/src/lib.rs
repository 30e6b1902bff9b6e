//! Test harness for the end-to-end suite: two network namespaces joined by veth, the real
//! rsttrace binary tracing the real kernel, and `rststim` processes provoking resets.
//! Everything created here is removed on drop, also when a test fails.
use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

pub mod elf;
pub mod grafana;
pub mod prometheus;
pub mod promql;
pub mod routed;
pub mod temp_dir;

/// The suite needs root: say so loudly instead of skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the end-to-end tests load BPF programs and create network namespaces: run them as root (`cargo xtask test` as root)");
    }
}

/// Mount tracefs if nothing has yet (a fresh machine): tests that run rsttrace without
/// CAP_SYS_ADMIN must not depend on an earlier test having let rsttrace mount it.
pub fn ensure_tracefs() {
    let mounted = std::fs::read_to_string("/proc/self/mounts").unwrap().lines().any(|l| l.split_whitespace().nth(2) == Some("tracefs"));
    if !mounted {
        run("mount", &["-t", "tracefs", "nodev", "/sys/kernel/tracing"]);
    }
}

/// Run a command, failing the test with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The inode of a named network namespace (`/run/netns/NAME`), which rsttrace reports as `netns`.
pub fn netns_inode(name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/run/netns/{name}")).unwrap_or_else(|e| panic!("netns {name}: {e}")).ino()
}

pub fn in_ns(ns: &str, cmd: &str, args: &[&str]) {
    let mut full = vec!["netns", "exec", ns, cmd];
    full.extend_from_slice(args);
    run("ip", &full);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Two hosts: `client` and `server` namespaces joined by a veth pair.
pub struct Net {
    pub client: String,
    pub server: String,
    subnet: u8,
    /// Inodes of the two namespaces: every report of this test names one of them.
    inodes: [u64; 2],
}

impl Net {
    /// `subnet` must be unique per test so reports of different tests never mix.
    pub fn new(subnet: u8) -> Self {
        let tag = format!("{}-{subnet}", std::process::id());
        let (client, server) = (format!("rstc-{tag}"), format!("rsts-{tag}"));
        let inodes = [add_netns(&client), add_netns(&server)];
        let net = Net { client, server, subnet, inodes };
        let (vc, vs) = (format!("vc{subnet}x{}", std::process::id() % 10000), format!("vs{subnet}x{}", std::process::id() % 10000));
        veth((&net.client, &vc), (&net.server, &vs));
        for (ns, dev, host) in [(&net.client, &vc, 1), (&net.server, &vs, 2)] {
            link_up(ns, dev, &format!("10.231.{subnet}.{host}/24"), &format!("fd00:231:{subnet}::{host}/64"));
        }
        net
    }

    pub fn client_addr(&self, f: Family) -> String {
        match f {
            Family::V4 => format!("10.231.{}.1", self.subnet),
            Family::V6 => format!("fd00:231:{}::1", self.subnet),
        }
    }

    /// An address of the client's subnet that no interface has yet: a second client's.
    pub fn spare_addr(&self, f: Family) -> String {
        match f {
            Family::V4 => format!("10.231.{}.3", self.subnet),
            Family::V6 => format!("fd00:231:{}::3", self.subnet),
        }
    }

    pub fn server_addr(&self, f: Family) -> String {
        match f {
            Family::V4 => format!("10.231.{}.2", self.subnet),
            Family::V6 => format!("fd00:231:{}::2", self.subnet),
        }
    }

    /// Set a per-namespace sysctl (`net/ipv4/…` under /proc/sys) in namespace `ns`.
    pub fn sysctl(&self, ns: &str, path: &str, value: &str) {
        sysctl(ns, path, value);
    }

    /// Add one nftables rule on the server's `hook` (input/output); removed when the guard drops.
    pub fn server_filter(&self, hook: &str, rule: &str) -> NftTable {
        NftTable::new(&self.server, hook, &[rule])
    }

    /// Does this report come from one of this test's namespaces? Judged by the namespace, not
    /// the addresses, so a report with wrong addresses still counts against the test.
    pub fn owns(&self, report: &Value) -> bool {
        report["netns"].as_u64().is_some_and(|n| self.inodes.contains(&n))
    }

    /// The reports of this test's namespaces, checked as [`checked_reports`] says.
    pub fn reports_of_this_test(&self, reports: Vec<Value>) -> Vec<Value> {
        let subnet = self.subnet;
        checked_reports(reports, &self.inodes, |a| a.starts_with(&format!("10.231.{subnet}.")) || a.starts_with(&format!("fd00:231:{subnet}::")))
    }
}

/// The reports of namespaces `inodes`, checked: a lost event (the set could then be incomplete)
/// or a report with an address that is `ours` in another namespace (a wrong namespace would hide
/// it from the set) fails the test. A loss made only of runs the kernel skipped fails it with
/// [`SkippedRuns`], which [`again_if_the_kernel_skipped_runs`] answers by running it again.
pub fn checked_reports(reports: Vec<Value>, inodes: &[u64], ours: impl Fn(&str) -> bool) -> Vec<Value> {
    let lost: Vec<&Value> = reports.iter().filter(|r| r["type"] == "lost").collect();
    if let Some(last) = lost.last() {
        let message = format!("events were lost: the report set cannot be checked: {lost:?}");
        // Totals by way: the last record has them all (an unread item is known only at exit).
        if last["ring_full"] == 0 && last["unread"] == 0 {
            eprintln!("{message}");
            std::panic::panic_any(SkippedRuns(message));
        }
        panic!("{message}");
    }
    let owned = |r: &Value| r["netns"].as_u64().is_some_and(|n| inodes.contains(&n));
    let ours = |a: &Value| ours(a.as_str().unwrap_or(""));
    let astray: Vec<&Value> = reports.iter().filter(|r| !owned(r) && (ours(&r["laddr"]) || ours(&r["raddr"]))).collect();
    assert!(astray.is_empty(), "reports with this test's addresses in another namespace: {astray:?}");
    reports.into_iter().filter(owned).collect()
}

/// What a test fails with when the only events lost were runs of rsttrace's programs that the
/// kernel skipped: it runs no BPF program inside another on a CPU, so one of ours interrupted by
/// a softirq or timer that hits the same tracepoint (another socket's state change) is dropped
/// and counted. Nothing the scenario did is wrong, but its report set cannot be checked.
pub struct SkippedRuns(pub String);

/// Runs of a scenario when the kernel keeps skipping: a skip is rare (microseconds of overlap,
/// longest under emulation), three in a row is not.
const ATTEMPTS: usize = 3;

/// Run a test's `scenario`, and again (up to [`ATTEMPTS`] in all) when it fails with
/// [`SkippedRuns`]: any other failure, and a skip on the last attempt, fails the test. Every
/// retry is printed.
pub fn again_if_the_kernel_skipped_runs(mut scenario: impl FnMut()) {
    for attempt in 1..=ATTEMPTS {
        let Err(failure) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut scenario)) else { return };
        match failure.downcast_ref::<SkippedRuns>() {
            Some(SkippedRuns(why)) if attempt < ATTEMPTS => eprintln!("attempt {attempt} of {ATTEMPTS} could not be checked ({why}): running it again"),
            Some(SkippedRuns(why)) => panic!("{why} ({ATTEMPTS} attempts in a row)"),
            None => std::panic::resume_unwind(failure),
        }
    }
}

/// Create network namespace `name` (`/run/netns/NAME`) and return its inode.
pub fn add_netns(name: &str) -> u64 {
    run("ip", &["netns", "add", name]);
    netns_inode(name)
}

/// A veth pair from device `a.1` in namespace `a.0` to `b.1` in `b.0`.
pub fn veth(a: (&str, &str), b: (&str, &str)) {
    run("ip", &["link", "add", a.1, "netns", a.0, "type", "veth", "peer", "name", b.1, "netns", b.0]);
}

/// Bring `dev` (and loopback) up in `ns` with an IPv4 and an IPv6 address (CIDR); the IPv6 one
/// skips duplicate address detection, usable at once.
pub fn link_up(ns: &str, dev: &str, v4: &str, v6: &str) {
    in_ns(ns, "ip", &["link", "set", "lo", "up"]);
    in_ns(ns, "ip", &["addr", "add", v4, "dev", dev]);
    in_ns(ns, "ip", &["-6", "addr", "add", v6, "dev", dev, "nodad"]);
    in_ns(ns, "ip", &["link", "set", dev, "up"]);
}

/// Set a per-namespace sysctl (`net/ipv4/…` under /proc/sys) in namespace `ns`.
pub fn sysctl(ns: &str, path: &str, value: &str) {
    in_ns(ns, "sh", &["-c", &format!("echo {value} > /proc/sys/{path}")]);
}

/// An nftables table `inet rst` in namespace `ns`, one chain on `hook` holding `rules`; deleted
/// when the guard drops.
pub struct NftTable {
    ns: String,
}

impl NftTable {
    pub fn new(ns: &str, hook: &str, rules: &[&str]) -> Self {
        let mut script = format!("add table inet rst; add chain inet rst {hook} {{ type filter hook {hook} priority 0; }}");
        for rule in rules {
            script.push_str(&format!("; add rule inet rst {hook} {rule}"));
        }
        in_ns(ns, "nft", &[&script]);
        NftTable { ns: ns.to_string() }
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "exec", &self.ns, "nft", "delete table inet rst"]).status();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The cargo workspace this crate belongs to.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn rsttrace_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RSTTRACE_BIN") {
        return p.into();
    }
    ["target/debug/rsttrace", "target/release/rsttrace"]
        .iter()
        .map(|p| workspace_root().join(p))
        .find(|p| p.exists())
        .expect("rsttrace binary not built: run the suite through `cargo xtask test`")
}

/// `rsttrace --json` running for the duration of a test.
pub struct Tracer {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// What rsttrace printed on stderr up to `tracing TCP resets` (its capture mode).
    startup: Vec<String>,
    /// JSON lines taken off `lines` before the stop.
    early: Vec<String>,
}

impl Tracer {
    /// Send a signal to rsttrace.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(rsttrace_bin())
            .arg("--json")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rsttrace");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let mut tracer = Tracer { child, lines, stderr, startup: Vec::new(), early: Vec::new() };
        loop {
            match tracer.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let started = line.contains("tracing TCP resets");
                    tracer.startup.push(line);
                    if started {
                        return tracer;
                    }
                }
                Err(_) => panic!("rsttrace did not start tracing; stderr: {}", tracer.startup.join("\n")),
            }
        }
    }

    /// SIGINT, wait for exit, and return every JSON report plus stderr.
    pub fn stop(self) -> (Vec<Value>, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Stop with `sig`; rsttrace must exit 0 having reported everything.
    pub fn stop_with(self, sig: i32) -> (Vec<Value>, String) {
        // Held resets are reported after a short wait; give the last ones time to arrive.
        std::thread::sleep(Duration::from_millis(400));
        self.stop_at_once(sig)
    }

    /// The trace's start record, the first line rsttrace printed (it stays out of the result of
    /// a later stop, as every trace record does).
    pub fn start_record(&mut self) -> Value {
        self.early.extend(self.lines.try_iter());
        let first = self.early.first().expect("the trace's start record");
        serde_json::from_str(first).unwrap_or_else(|e| panic!("not JSON: {first}: {e}"))
    }

    /// The reports rsttrace has printed so far (they stay in the result of a later stop).
    pub fn printed_so_far(&mut self) -> Vec<Value> {
        self.early.extend(self.lines.try_iter());
        self.early.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["type"] != "trace").collect()
    }

    /// Stop with `sig` without waiting: whatever rsttrace still holds must be reported on exit.
    /// Its stderr is also kept for [`exactly`]'s failure message.
    pub fn stop_at_once(mut self, sig: i32) -> (Vec<Value>, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = self.child.wait().expect("wait rsttrace");
        // The reader threads end at EOF, once the exited child's pipes are drained.
        let stderr: Vec<String> = std::mem::take(&mut self.startup).into_iter().chain(self.stderr.iter()).collect();
        assert!(status.success(), "rsttrace exited with {status}: {}", stderr.join("\n"));
        let early = std::mem::take(&mut self.early);
        let lines: Vec<Value> = early
            .into_iter()
            .chain(self.lines.iter())
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        let reports = without_trace_records(lines);
        let stderr = stderr.join("\n");
        if let Ok(mut last) = LAST_STDERR.lock() {
            last.clone_from(&stderr);
        }
        (reports, stderr)
    }
}

/// A whole run's JSON lines, checked: the first is the trace's start and the last its end, and
/// every record names the same host and run. Returns the records between.
pub fn without_trace_records(mut lines: Vec<Value>) -> Vec<Value> {
    let (start, end) = (lines.first().cloned().unwrap_or_default(), lines.last().cloned().unwrap_or_default());
    assert_eq!((start["type"].as_str(), start["event"].as_str()), (Some("trace"), Some("start")), "first record: {start}");
    assert_eq!((end["type"].as_str(), end["event"].as_str()), (Some("trace"), Some("end")), "last record: {end}");
    let instance = start["instance"].as_str().expect("the trace's instance").to_string();
    assert!(start["host"].is_string() && start["addresses"].is_array(), "{start}");
    for line in &lines {
        assert_eq!(line["instance"].as_str(), Some(instance.as_str()), "a record of another run: {line}");
        assert_eq!(line["host"], start["host"], "{line}");
    }
    lines.retain(|l| l["type"] != "trace");
    lines
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh cgroup v2 directory (and the ones it is nested in), removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
    /// Every directory made, outermost first.
    made: Vec<PathBuf>,
}

impl Cgroup {
    pub fn new(name: &str) -> Self {
        Self::nested(&[&format!("{name}-{}", std::process::id())])
    }

    /// `parts` nested under the cgroup2 root, as a service manager or container runtime lays
    /// them out (`system.slice`, `docker-ID.scope`, …).
    pub fn nested(parts: &[&str]) -> Self {
        let mut path = cgroup2_root();
        let mut made = Vec::new();
        for part in parts {
            path.push(part);
            if !path.exists() {
                std::fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot make cgroup {}: {e}", path.display()));
                made.push(path.clone());
            }
        }
        Cgroup { path, made }
    }

    /// The path from the hierarchy's root, as rsttrace reports it.
    pub fn relative(&self) -> String {
        format!("/{}", self.path.strip_prefix(cgroup2_root()).unwrap().display())
    }
}

fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("no cgroup v2 hierarchy mounted: cgroups cannot be tested");
    PathBuf::from(root)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone; innermost first.
        for dir in self.made.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `rststim` and `rstload` sit next to the test binary's `deps/` directory.
fn test_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(bin.exists(), "{} missing: build the tests with cargo", bin.display());
    bin
}

fn stim_bin() -> PathBuf {
    test_bin("rststim")
}

/// One `rststim` process.
pub struct Stim {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
}

impl Stim {
    pub fn spawn(ns: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(stim_bin());
        cmd.arg(ns).args(args);
        Self::start(cmd)
    }

    /// The benchmark's load generator, `rstload` (see its usage), in namespace `ns`.
    pub fn load(ns: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(test_bin("rstload"));
        cmd.arg(ns).args(args);
        Self::start(cmd)
    }

    /// Like `spawn`, but the process joins cgroup `dir` before it runs (same pid: exec).
    pub fn spawn_in_cgroup(dir: &std::path::Path, ns: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""]).arg(dir).arg(stim_bin()).arg(ns).args(args);
        Self::start(cmd)
    }

    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn rststim");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Stim { child, stdin, out }
    }

    pub fn pid(&self) -> u64 {
        self.child.id() as u64
    }

    /// Wait for a line starting with `prefix` and return it.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("rststim {} never printed `{prefix}`", self.pid()),
            }
        }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn wait(&mut self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("rststim {} did not finish in {timeout:?}", self.pid());
    }
}

impl Drop for Stim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number just before `marker` on the summary line (`… 12 events lost, 250 events read`)
/// in rsttrace's stderr.
pub fn summary_number(stderr: &str, marker: &str) -> u64 {
    let line = stderr.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("no `{marker}` in: {stderr}"));
    let before = line.split(marker).next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// `n` connects from the client to a closed server port: each one a sent `no_listener` and a
/// received `refused`.
pub fn refused_storm(net: &Net, f: Family, n: u32, port: &str) {
    let c = Stim::spawn(&net.client, &["connect", &net.server_addr(f), port, "--repeat", &n.to_string()]);
    assert_eq!(c.expect_line("refused", Duration::from_secs(60)), format!("refused {n}"));
}

/// A listener on `port` with a backlog of 2 that never accepts, in a server namespace with
/// `tcp_abort_on_overflow` on, and four clients: the fourth completed handshake finds the queue
/// full and is reset (`listen_overflow`). Returns the listener, with three connections still
/// in its queue, and the pid of the client that was reset.
pub fn overflow_accept_queue(net: &Net, f: Family, port: &str) -> (Stim, u64) {
    const STEP: Duration = Duration::from_secs(20);
    net.sysctl(&net.server, "net/ipv4/tcp_abort_on_overflow", "1");
    let addr = net.server_addr(f);
    let server = Stim::spawn(&net.server, &["listen", &addr, port, "overflow"]);
    server.expect_line("ready", STEP);
    let connect = || {
        let c = Stim::spawn(&net.client, &["connect", &addr, port, "--wait-go", "--send", "10"]);
        c.expect_line("ready", STEP);
        c
    };
    let complete = |c: &mut Stim| {
        c.go();
        std::thread::sleep(Duration::from_millis(100));
    };
    // The listener defers accept until data arrives, so a handshake completes when its client
    // sends. The queue of pending handshakes is bounded by the backlog too (past it, SYNs get
    // cookies): fill the accept queue to its backlog of 2, get two more handshakes pending,
    // then complete them: the last one overflows.
    let mut queued: Vec<Stim> = (0..2).map(|_| connect()).collect();
    queued.iter_mut().for_each(complete);
    let mut third = connect();
    let mut fourth = connect();
    complete(&mut third);
    fourth.go();
    assert_eq!(fourth.expect_line("errno", STEP), "errno 104");
    (server, fourth.pid())
}

/// The stderr of the tracer stopped last (its summary counts what it read and reported).
static LAST_STDERR: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// A report as scenarios name it: `sent:CAUSE`, `received:CAUSE` or `abort:CAUSE`.
pub fn label(r: &Value) -> String {
    let cause = r["cause"].as_str().unwrap_or("?");
    match r["type"].as_str() {
        Some("reset") => format!("{}:{cause}", r["direction"].as_str().unwrap_or("?")),
        Some("abort") => format!("abort:{cause}"),
        Some(other) => other.to_string(),
        None => format!("{r}"),
    }
}

/// The reports are exactly `expected` (labels as [`label`] makes them), no more and no fewer, in
/// any order: an extra, duplicate or phantom report fails the scenario as surely as a missing
/// one. A label ending in `+` stands for one or more such reports (a stack answering each
/// retransmitted SYN, as many as the kernel sends). Returns, per expected label, its first report.
pub fn exactly<'a, const N: usize>(reports: &'a [Value], expected: [&str; N]) -> [&'a Value; N] {
    exactly_with_optional(reports, expected, &[]).0
}

/// [`exactly`], where each label in `optional` may also appear once, or not at all: a report the
/// kernel sends or not by the timing of the test host (say so where it is used). Returns the
/// optional reports found.
pub fn exactly_with_optional<'a, const N: usize>(reports: &'a [Value], expected: [&str; N], optional: &[&str]) -> ([&'a Value; N], Vec<&'a Value>) {
    let listing = || {
        let reports = reports.iter().map(|r| format!("  {}  {r}", label(r))).collect::<Vec<_>>().join("\n");
        format!("{reports}\nrsttrace's stderr:\n{}", LAST_STDERR.lock().map(|s| s.clone()).unwrap_or_default())
    };
    let mut used = vec![false; reports.len()];
    let found = expected.map(|want| {
        let (name, many) = want.strip_suffix('+').map_or((want, false), |n| (n, true));
        let mut first = None;
        for i in 0..reports.len() {
            if !used[i] && label(&reports[i]) == name && (many || first.is_none()) {
                used[i] = true;
                first.get_or_insert(i);
            }
        }
        let i = first.unwrap_or_else(|| panic!("no {want} report among the expected {expected:?}; got:\n{}", listing()));
        &reports[i]
    });
    let mut maybe = Vec::new();
    for name in optional {
        if let Some(i) = (0..reports.len()).find(|&i| !used[i] && label(&reports[i]) == *name) {
            used[i] = true;
            maybe.push(&reports[i]);
        }
    }
    let extra: Vec<String> = (0..reports.len()).filter(|&i| !used[i]).map(|i| label(&reports[i])).collect();
    assert!(extra.is_empty(), "reports beyond the expected {expected:?} (optional {optional:?}): {extra:?}; got:\n{}", listing());
    (found, maybe)
}

/// Assert the parts of a report every scenario checks.
pub fn assert_report(r: &Value, family: Family, origin: &str, pid: Option<u64>) {
    assert_eq!(r["origin"], origin, "{r}");
    assert_eq!(r["family"], family.name(), "{r}");
    match pid {
        Some(pid) => {
            assert_eq!(r["pid"].as_u64(), Some(pid), "wrong owner: {r}");
            assert_ne!(r["attribution"], "none", "{r}");
        }
        None => assert!(r["pid"].is_null(), "{r}"),
    }
    for bad in ["swapper", "ksoftirqd"] {
        assert!(!r["comm"].as_str().unwrap_or("").starts_with(bad), "attributed to {bad}: {r}");
    }
    assert!(r["ts"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 30), "{r}");
    assert!(r["netns"].as_u64().is_some_and(|n| n > 0), "{r}");
}

/// This kernel's `tcp:tcp_send_reset` format file, read directly (not through rsttrace): what
/// the tests expect of rsttrace on this kernel follows from it.
pub fn send_reset_format() -> String {
    ensure_tracefs();
    std::fs::read_to_string("/sys/kernel/tracing/events/tcp/tcp_send_reset/format").expect("tcp_send_reset format")
}

/// `kernel_reason` as this kernel must report a reset the newest kernels call `name`: null where
/// `tcp_send_reset` has no reason field (before 6.10), `NOT_SPECIFIED` where its reason table
/// does not name it yet. Read from the format file itself, independently of rsttrace.
pub fn assert_kernel_reason(report: &Value, name: &str) {
    let format = send_reset_format();
    let expected = if !format.contains(" reason;") {
        Value::Null
    } else if !format.contains(&format!("\"{name}\"")) {
        Value::from("NOT_SPECIFIED")
    } else {
        Value::from(name)
    };
    assert_eq!(report["kernel_reason"], expected, "{report}");
}

/// A loopback port nothing listened on a moment ago (the kernel's pick for port 0).
pub fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Run `cargo xtask TASK` in the workspace as a developer would and return the last line it
/// printed on stdout: what it built (its logs go to stderr, shown if it fails).
pub fn xtask(task: &str) -> String {
    let out = Command::new("cargo").current_dir(workspace_root()).args(["xtask", task]).output().expect("run cargo xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo xtask {task} failed ({}):\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_else(|| panic!("cargo xtask {task} printed nothing on stdout:\n{stderr}")).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipping(times: usize) -> impl FnMut() {
        let mut runs = 0;
        move || {
            runs += 1;
            if runs <= times {
                std::panic::panic_any(SkippedRuns(format!("skipped in run {runs}")));
            }
        }
    }

    /// A skip is answered by running the scenario again, up to the last attempt.
    #[test]
    fn a_scenario_the_kernel_skipped_in_runs_again() {
        again_if_the_kernel_skipped_runs(skipping(ATTEMPTS - 1));
    }

    #[test]
    #[should_panic(expected = "3 attempts in a row")]
    fn a_skip_on_every_attempt_fails() {
        again_if_the_kernel_skipped_runs(skipping(ATTEMPTS));
    }

    /// Any other failure fails at once: a wrong report is never run again.
    #[test]
    fn any_other_failure_is_not_run_again() {
        let mut runs = 0;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            again_if_the_kernel_skipped_runs(|| {
                runs += 1;
                panic!("wrong cause");
            })
        }));
        assert!(failed.is_err());
        assert_eq!(runs, 1);
    }

    /// Only a loss the kernel's skipped runs explain is a skip; a full ring buffer or an unread
    /// item fails the test as it is.
    #[test]
    fn only_skipped_runs_make_a_skip() {
        let lost = |ring_full: u64, unread: u64| {
            let reports = vec![serde_json::json!({"type": "lost", "lost": 1, "lost_total": 1, "ring_full": ring_full, "skipped_runs": {}, "unread": unread})];
            let failure = std::panic::catch_unwind(|| checked_reports(reports, &[], |_| false)).expect_err("a loss fails the check");
            failure.is::<SkippedRuns>()
        };
        assert!(lost(0, 0));
        assert!(!lost(1, 0));
        assert!(!lost(0, 1));
    }
}
