//! Output sinks: the live table, JSON Lines, and the summary. The only module that prints
//! reports.
use std::{
    collections::BTreeMap,
    io::{self, Write},
    net::IpAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    event::Comm,
    evidence::Evidence,
    fold::{Folded, Port, MAX_KEYS},
    lost::Loss,
    report::{Direction, Origin, Report, ReportType},
    trace_info::TraceInfo,
};

/// Turns CLOCK_MONOTONIC event times into wall-clock times. The offset between the two clocks is
/// read again on every tick of the agent's loop ([`Clock::refresh`]): NTP slews the wall clock,
/// and may step it, while a trace runs for days, and every `ts` must line up with the host's
/// other logs and captures.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// A fixed offset instead (tests).
    fixed_offset_ns: Option<i64>,
}

/// The wall clock less the monotonic one, as last read.
static REALTIME_MINUS_MONOTONIC_NS: AtomicI64 = AtomicI64::new(0);

impl Clock {
    pub fn now() -> Self {
        Self::refresh();
        Self { fixed_offset_ns: None }
    }

    /// Read the offset between the clocks again.
    pub fn refresh() {
        let mono = Self::monotonic_now_ns();
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        REALTIME_MINUS_MONOTONIC_NS.store(real - mono as i64, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn fixed(offset_ns: i64) -> Self {
        Self { fixed_offset_ns: Some(offset_ns) }
    }

    pub fn monotonic_now_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn wall_ns(&self, monotonic_ns: u64) -> i128 {
        let offset = self.fixed_offset_ns.unwrap_or_else(|| REALTIME_MINUS_MONOTONIC_NS.load(Ordering::Relaxed));
        monotonic_ns as i128 + i128::from(offset)
    }
}

/// RFC 3339 UTC time with nanoseconds, e.g. `2026-11-23T21:07:56.123456789Z`.
pub fn rfc3339(unix_ns: i128) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339(&mut out, unix_ns);
    String::from_utf8(out).expect("digits and punctuation")
}

/// [`rfc3339`], written into `out`.
fn write_rfc3339(out: &mut Vec<u8>, unix_ns: i128) {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        let _ = write!(out, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod / 60 % 60, sod % 60);
        return;
    }
    // Digit by digit: the formatter's padding was a tenth of the agent's time per JSON line.
    let digits = |out: &mut Vec<u8>, n: u64, width: u32| {
        for place in (0..width).rev() {
            out.push(b'0' + (n / 10u64.pow(place) % 10) as u8);
        }
    };
    digits(out, year as u64, 4);
    out.push(b'-');
    digits(out, month as u64, 2);
    out.push(b'-');
    digits(out, day as u64, 2);
    out.push(b'T');
    digits(out, (sod / 3600) as u64, 2);
    out.push(b':');
    digits(out, (sod / 60 % 60) as u64, 2);
    out.push(b':');
    digits(out, (sod % 60) as u64, 2);
    out.push(b'.');
    digits(out, nanos as u64, 9);
    out.push(b'Z');
}

/// A JSON object's key as [`JsonObject`] takes it: `,"name":`.
macro_rules! member {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// One JSON object written member by member into a line: keys are literals that need no
/// escaping, and each value goes through the cheapest writer that is right for it (serde_json
/// escaped every key and every name, a sixth of the agent's time at 1k reports a second).
struct JsonObject {
    out: Vec<u8>,
    empty: bool,
}

impl JsonObject {
    /// An object written into `out`, cleared first (a sink reuses one buffer for every line).
    fn into(mut out: Vec<u8>) -> Self {
        out.clear();
        out.reserve(1024);
        out.push(b'{');
        Self { out, empty: true }
    }

    /// A member's key, as `member!` writes it: `,"name":`, whose comma the first member drops:
    /// one copy per key.
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        let key = key.as_bytes();
        self.out.extend_from_slice(if self.empty { &key[1..] } else { key });
        self.empty = false;
        &mut self.out
    }

    fn null(&mut self, key: &'static str) {
        self.key(key).extend_from_slice(b"null");
    }

    /// Free text (a process name, a why, a cgroup path): escaped. Most text needs none, and is
    /// copied as it is (serde_json escapes only control characters, quotes and backslashes).
    fn text(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(v) if !v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') => {
                let out = self.key(key);
                out.push(b'"');
                out.extend_from_slice(v.as_bytes());
                out.push(b'"');
            }
            Some(v) => serde_json::to_writer(self.key(key), v).expect("a string serializes"),
            None => self.null(key),
        }
    }

    /// One of rsttrace's own names (`no_listener`, `TIME_WAIT`, `ipv4`): nothing to escape.
    fn name(&mut self, key: &'static str, value: Option<&'static str>) {
        debug_assert!(value.is_none_or(|v| v.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')));
        match value {
            Some(v) => {
                let out = self.key(key);
                out.push(b'"');
                out.extend_from_slice(v.as_bytes());
                out.push(b'"');
            }
            None => self.null(key),
        }
    }

    /// An address. An IPv4 one is written octet by octet: `Display` costs several times as much,
    /// twice in every report.
    fn address(&mut self, key: &'static str, value: IpAddr) {
        let out = self.key(key);
        out.push(b'"');
        match value {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
        out.push(b'"');
    }

    fn number<N: itoa::Integer>(&mut self, key: &'static str, value: Option<N>) {
        match value {
            Some(n) => self.key(key).extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            None => self.null(key),
        }
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key).extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// The `evidence` object, written as serde would write `Evidence`.
    fn evidence(&mut self, key: &'static str, value: Option<&Evidence>) {
        let Some(e) = value else { return self.null(key) };
        let mut inner = JsonObject { out: std::mem::take(self.key(key)), empty: true };
        inner.out.push(b'{');
        inner.number(member!("rst_ttl"), e.rst_ttl);
        inner.number(member!("peer_ttl"), e.peer_ttl);
        inner.bool(member!("peer_ttl_varied"), e.peer_ttl_varied);
        inner.number(member!("peer_segments"), Some(e.peer_segments));
        inner.number(member!("rst_ip_id"), e.rst_ip_id);
        inner.number(member!("peer_ip_id"), e.peer_ip_id);
        inner.bool(member!("peer_talked_after"), e.peer_talked_after);
        inner.bool(member!("decisive"), e.decisive);
        inner.out.push(b'}');
        self.out = inner.out;
    }

    /// The line, with its newline.
    fn line(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

/// One report as its JSON line (with the newline): the event contract of docs/causes.md plus
/// extra context fields, in this order.
pub fn json_line(r: &Report, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    json_line_into(Vec::new(), r, clock, trace)
}

/// [`json_line`], written into `buffer` (whatever it held is cleared): a sink's own buffer, which
/// saves an allocation per report.
fn json_line_into(buffer: Vec<u8>, r: &Report, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    let w = r.workload.as_ref();
    let mut o = JsonObject::into(buffer);
    o.name(member!("type"), Some(r.kind.name()));
    o.name(member!("direction"), r.direction.map(Direction::name));
    o.name(member!("cause"), Some(r.verdict.cause.name()));
    o.name(member!("origin"), Some(r.verdict.origin.name()));
    o.bool(member!("benign"), r.verdict.benign);
    o.text(member!("kernel_reason"), r.kernel_reason);
    o.name(member!("state"), Some(r.state));
    o.name(member!("family"), Some(r.endpoints.family.name()));
    o.address(member!("laddr"), r.endpoints.laddr);
    o.number(member!("lport"), Some(r.endpoints.lport));
    o.address(member!("raddr"), r.endpoints.raddr);
    o.number(member!("rport"), Some(r.endpoints.rport));
    o.number(member!("pid"), r.owner.as_ref().map(|t| t.pid));
    o.text(member!("comm"), r.owner.as_ref().map(|t| t.comm.as_str()));
    o.name(member!("attribution"), Some(r.attribution.name()));
    o.number(member!("netns"), Some(r.netns));
    let out = o.key(member!("ts"));
    out.push(b'"');
    write_rfc3339(out, clock.wall_ns(r.ts_ns));
    out.push(b'"');
    o.text(member!("why"), Some(&r.verdict.why));
    o.name(member!("peer_cause"), r.peer_cause.map(|c| c.name()));
    o.number(member!("tid"), r.owner.as_ref().map(|t| t.tid));
    o.text(member!("thread"), r.thread.as_ref().map(|t| t.as_str()));
    o.number(member!("current_pid"), r.current.as_ref().map(|t| t.pid));
    o.text(member!("current_comm"), r.current.as_ref().map(|t| t.comm.as_str()));
    o.number(member!("retransmits"), Some(r.retransmits));
    o.text(member!("cgroup"), w.map(|w| w.cgroup.as_str()));
    o.text(member!("unit"), w.and_then(|w| w.unit.as_deref()));
    o.text(member!("container_id"), w.and_then(|w| w.container_id.as_deref()));
    o.text(member!("pod_uid"), w.and_then(|w| w.pod_uid.as_deref()));
    o.text(member!("pod"), w.and_then(|w| w.names.pod.as_deref()));
    o.text(member!("pod_namespace"), w.and_then(|w| w.names.pod_namespace.as_deref()));
    o.text(member!("container"), w.and_then(|w| w.names.container.as_deref()));
    o.evidence(member!("evidence"), r.evidence.as_ref());
    o.text(member!("host"), Some(&trace.host));
    o.text(member!("instance"), Some(&trace.instance));
    o.line()
}

/// What [`json_line`] writes, as serde_json would write it: the reference its tests hold it to.
#[cfg(test)]
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(rename = "type")]
    kind: ReportType,
    direction: Option<Direction>,
    cause: &'static str,
    origin: &'static str,
    benign: bool,
    kernel_reason: Option<&'a str>,
    state: &'static str,
    family: &'static str,
    laddr: String,
    lport: u16,
    raddr: String,
    rport: u16,
    pid: Option<u32>,
    comm: Option<&'a str>,
    attribution: crate::report::Attribution,
    netns: u32,
    ts: String,
    why: &'a str,
    peer_cause: Option<&'static str>,
    tid: Option<u32>,
    thread: Option<&'a str>,
    current_pid: Option<u32>,
    current_comm: Option<&'a str>,
    retransmits: u32,
    cgroup: Option<&'a str>,
    unit: Option<&'a str>,
    container_id: Option<&'a str>,
    pod_uid: Option<&'a str>,
    pod: Option<&'a str>,
    pod_namespace: Option<&'a str>,
    container: Option<&'a str>,
    evidence: Option<&'a crate::evidence::Evidence>,
    host: &'a str,
    instance: &'a str,
}

#[cfg(test)]
fn json_line_by_serde(r: &Report, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    let json = JsonReport {
        kind: r.kind,
        direction: r.direction,
        cause: r.verdict.cause.name(),
        origin: r.verdict.origin.name(),
        benign: r.verdict.benign,
        kernel_reason: r.kernel_reason,
        state: r.state,
        family: r.endpoints.family.name(),
        laddr: r.endpoints.laddr.to_string(),
        lport: r.endpoints.lport,
        raddr: r.endpoints.raddr.to_string(),
        rport: r.endpoints.rport,
        pid: r.owner.as_ref().map(|o| o.pid),
        comm: r.owner.as_ref().map(|o| o.comm.as_str()),
        attribution: r.attribution,
        netns: r.netns,
        ts: rfc3339(clock.wall_ns(r.ts_ns)),
        why: &r.verdict.why,
        peer_cause: r.peer_cause.map(|c| c.name()),
        tid: r.owner.as_ref().map(|o| o.tid),
        thread: r.thread.as_ref().map(|t| t.as_str()),
        current_pid: r.current.as_ref().map(|t| t.pid),
        current_comm: r.current.as_ref().map(|t| t.comm.as_str()),
        retransmits: r.retransmits,
        cgroup: r.workload.as_ref().map(|w| w.cgroup.as_str()),
        unit: r.workload.as_ref().and_then(|w| w.unit.as_deref()),
        container_id: r.workload.as_ref().and_then(|w| w.container_id.as_deref()),
        pod_uid: r.workload.as_ref().and_then(|w| w.pod_uid.as_deref()),
        pod: r.workload.as_ref().and_then(|w| w.names.pod.as_deref()),
        pod_namespace: r.workload.as_ref().and_then(|w| w.names.pod_namespace.as_deref()),
        container: r.workload.as_ref().and_then(|w| w.names.container.as_deref()),
        evidence: r.evidence.as_ref(),
        host: &trace.host,
        instance: &trace.instance,
    };
    let mut line = serde_json::to_vec(&json).expect("plain data serializes");
    line.push(b'\n');
    line
}

/// The `{"type":"lost",...}` record JSON consumers get when events were dropped: how many since
/// the last one, in total, and the totals by way (`skipped_runs` by program).
pub fn lost_line(lost_now: u64, loss: &Loss, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    let ts = rfc3339(clock.wall_ns(Clock::monotonic_now_ns()));
    let skipped: serde_json::Map<String, serde_json::Value> = loss.skipped.iter().map(|(name, n)| (name.to_string(), (*n).into())).collect();
    let json = serde_json::json!({
        "type": "lost", "lost": lost_now, "lost_total": loss.total(), "ring_full": loss.ring_full,
        "skipped_runs": skipped, "unread": loss.unread, "ts": ts, "host": trace.host, "instance": trace.instance,
    });
    let mut line = serde_json::to_vec(&json).expect("plain data serializes");
    line.push(b'\n');
    line
}

/// Where a trace starts or ends: a `{"type":"trace",...}` record, the first and the last a run
/// writes, so that a reader knows which host wrote the records between, in which namespace, with
/// which addresses, and over what time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEdge {
    Start,
    End,
}

pub fn trace_line(edge: TraceEdge, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    let json = serde_json::json!({
        "type": "trace",
        "event": match edge { TraceEdge::Start => "start", TraceEdge::End => "end" },
        "host": trace.host,
        "instance": trace.instance,
        "ts": rfc3339(clock.wall_ns(Clock::monotonic_now_ns())),
        "version": env!("CARGO_PKG_VERSION"),
        "scope_netns": trace.scope_netns,
        "addresses": trace.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "filters": trace.filters,
        "unseen": trace.unseen,
    });
    let mut line = serde_json::to_vec(&json).expect("plain data serializes");
    line.push(b'\n');
    line
}

/// The `{"type":"folded",...}` record: reports of one kind over `--max-rate`, counted but not
/// written one by one. `lport` or `rport` is the port that names the kind (the other is null);
/// `raddr` is null when the folded reports had different peers; `other` marks the kind that
/// takes everything past the bound on kinds (then pid, ports and netns are null).
#[derive(Serialize)]
struct JsonFolded<'a> {
    #[serde(rename = "type")]
    record: &'static str,
    /// The type of the folded reports: `reset` or `abort`.
    report_type: ReportType,
    direction: Option<Direction>,
    cause: &'static str,
    origin: &'static str,
    benign: bool,
    lport: Option<u16>,
    rport: Option<u16>,
    raddr: Option<String>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    netns: Option<u32>,
    other: bool,
    count: u64,
    first_ts: String,
    last_ts: String,
    /// When the folding interval began; `ts` is when it ended.
    since: String,
    ts: String,
    max_rate: u32,
    host: &'a str,
    instance: &'a str,
}

/// One folded record as its JSON line (with the newline).
pub fn folded_line(f: &Folded, clock: &Clock, trace: &TraceInfo) -> Vec<u8> {
    let other = f.key.port == Port::Other;
    let json = JsonFolded {
        record: "folded",
        report_type: f.key.kind,
        direction: f.key.direction,
        cause: f.key.cause.name(),
        origin: f.key.origin.name(),
        benign: f.key.benign,
        lport: match f.key.port {
            Port::Local(p) => Some(p),
            _ => None,
        },
        rport: match f.key.port {
            Port::Remote(p) => Some(p),
            _ => None,
        },
        raddr: f.raddr.map(|a| a.to_string()),
        pid: f.key.pid,
        comm: f.comm.as_ref().map(|c| c.as_str()),
        netns: (!other).then_some(f.key.netns),
        other,
        count: f.count,
        first_ts: rfc3339(clock.wall_ns(f.first_ts_ns)),
        last_ts: rfc3339(clock.wall_ns(f.last_ts_ns)),
        since: rfc3339(clock.wall_ns(f.since_ns)),
        ts: rfc3339(clock.wall_ns(f.at_ns)),
        max_rate: f.max_rate,
        host: &trace.host,
        instance: &trace.instance,
    };
    let mut line = serde_json::to_vec(&json).expect("plain data serializes");
    line.push(b'\n');
    line
}

pub trait Sink {
    /// Whether this sink writes `report` at all: one it hides takes no share of `--max-rate`.
    fn shows(&self, _report: &Report) -> bool {
        true
    }
    fn report(&mut self, report: &Report) -> io::Result<()>;
    /// Reports over `--max-rate`, folded into one record with their count.
    fn folded(&mut self, folded: &Folded) -> io::Result<()>;
    /// Events were lost in the kernel; say so in this sink's own format.
    fn lost(&mut self, _lost_now: u64, _loss: &Loss) -> io::Result<()> {
        Ok(())
    }
    /// The trace starts or ends (JSON sinks write a `trace` record).
    fn trace(&mut self, _edge: TraceEdge) -> io::Result<()> {
        Ok(())
    }
    /// End of a batch: make everything written so far visible.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// JSON Lines on a stream, flushed after each batch read from the kernel: live for `| jq`, one
/// write per batch rather than per report under a storm.
pub struct JsonSink<W: Write> {
    out: W,
    clock: Clock,
    trace: Arc<TraceInfo>,
    /// The report line being written, kept for the next one.
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W, clock: Clock, trace: Arc<TraceInfo>) -> Self {
        Self { out, clock, trace, line: Vec::new() }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn report(&mut self, r: &Report) -> io::Result<()> {
        self.line = json_line_into(std::mem::take(&mut self.line), r, &self.clock, &self.trace);
        self.out.write_all(&self.line)
    }

    fn folded(&mut self, f: &Folded) -> io::Result<()> {
        self.out
            .write_all(&folded_line(f, &self.clock, &self.trace))
    }

    fn trace(&mut self, edge: TraceEdge) -> io::Result<()> {
        self.out
            .write_all(&trace_line(edge, &self.clock, &self.trace))?;
        self.out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn lost(&mut self, lost_now: u64, loss: &Loss) -> io::Result<()> {
        self.out
            .write_all(&lost_line(lost_now, loss, &self.clock, &self.trace))?;
        self.out.flush()
    }
}

/// JSON Lines in a file, rotated by size: FILE → FILE.1 → … → FILE.keep. A line is written whole
/// to one file; rotation happens between lines. Created 0640: reports name processes and peers.
pub struct RotatingFile {
    path: std::path::PathBuf,
    max_size: u64,
    keep: u32,
    file: std::fs::File,
    /// The file's size, with the lines not yet written out counted.
    size: u64,
    clock: Clock,
    trace: Arc<TraceInfo>,
    /// The report line being written, kept for the next one.
    line: Vec<u8>,
    /// Whole lines waiting for the end of the batch (or for [`FILE_BATCH`] bytes).
    unwritten: Vec<u8>,
}

/// Lines are written out at the end of each batch, or once this many bytes wait: one write call
/// per batch rather than per report under a storm.
const FILE_BATCH: usize = 64 * 1024;

impl RotatingFile {
    pub fn open(
        path: &std::path::Path,
        max_size: u64,
        keep: u32,
        clock: Clock,
        trace: Arc<TraceInfo>,
    ) -> io::Result<Self> {
        let file = Self::open_file(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_size,
            keep,
            file,
            size,
            clock,
            trace,
            line: Vec::new(),
            unwritten: Vec::with_capacity(FILE_BATCH),
        })
    }

    /// What the file's records say of the run, once attaching told more.
    pub fn set_trace(&mut self, trace: Arc<TraceInfo>) {
        self.trace = trace;
    }

    fn open_file(path: &std::path::Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)
    }

    /// Reopen the path (after logrotate moved the file away: SIGHUP). What the old file was
    /// due goes to it first.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.file = Self::open_file(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    fn rotated(&self, n: u32) -> std::path::PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        name.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.write_out()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.unwritten.extend_from_slice(line);
        self.size += line.len() as u64;
        if self.unwritten.len() >= FILE_BATCH {
            self.write_out()?;
        }
        Ok(())
    }

    /// Whole lines only, in one write call on an O_APPEND file: never interleaved with another
    /// writer's, never split. A failed write (a full disk) loses the batch; the agent then stops
    /// with that error.
    fn write_out(&mut self) -> io::Result<()> {
        if !self.unwritten.is_empty() {
            let written = self.file.write_all(&self.unwritten);
            self.unwritten.clear();
            written?;
        }
        Ok(())
    }
}

impl Drop for RotatingFile {
    /// An early exit (an error elsewhere) still leaves the lines reported so far in the file.
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

impl Sink for RotatingFile {
    fn report(&mut self, r: &Report) -> io::Result<()> {
        let line = json_line_into(std::mem::take(&mut self.line), r, &self.clock, &self.trace);
        let written = self.write_line(&line);
        self.line = line;
        written
    }

    fn folded(&mut self, f: &Folded) -> io::Result<()> {
        let line = folded_line(f, &self.clock, &self.trace);
        self.write_line(&line)
    }

    fn lost(&mut self, lost_now: u64, loss: &Loss) -> io::Result<()> {
        let line = lost_line(lost_now, loss, &self.clock, &self.trace);
        self.write_line(&line)
    }

    fn trace(&mut self, edge: TraceEdge) -> io::Result<()> {
        let line = trace_line(edge, &self.clock, &self.trace);
        self.write_line(&line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TableOptions {
    pub timestamp: bool,
    pub wide: bool,
    pub include_benign: bool,
    /// ANSI colours (only when stdout is a terminal).
    pub colour: bool,
    /// Cut lines to this many columns (terminal width); `None` = never.
    pub width: Option<usize>,
}

impl TableOptions {
    /// Colour and width from stdout: a terminal gets both, a pipe or file neither.
    pub fn for_stdout(timestamp: bool, wide: bool, include_benign: bool) -> Self {
        // SAFETY: isatty/ioctl on fd 1 with a valid winsize pointer.
        let tty = unsafe { libc::isatty(1) } == 1;
        let width = tty.then(|| {
            let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
            let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0;
            if ok { ws.ws_col as usize } else { 80 }
        });
        Self { timestamp, wide, include_benign, colour: tty, width: if wide { None } else { width } }
    }
}

/// The live table: aligned upper-case columns, one line per reset. Narrow by default (local port
/// only, lines cut to the terminal), everything with `-w`.
pub struct TableSink<W: Write> {
    out: W,
    clock: Clock,
    opts: TableOptions,
    header_done: bool,
}

impl<W: Write> TableSink<W> {
    pub fn new(out: W, clock: Clock, opts: TableOptions) -> Self {
        Self { out, clock, opts, header_done: false }
    }

    fn emit(&mut self, line: String, colour: Option<&str>) -> io::Result<()> {
        let line = match self.opts.width {
            Some(w) if line.chars().count() > w => {
                let mut cut: String = line.chars().take(w.saturating_sub(1)).collect();
                cut.push('…');
                cut
            }
            _ => line,
        };
        match colour.filter(|_| self.opts.colour) {
            Some(c) => writeln!(self.out, "\x1b[{c}m{line}\x1b[0m"),
            None => writeln!(self.out, "{line}"),
        }
    }
}

fn endpoint(addr: &std::net::IpAddr, port: u16) -> String {
    endpoint_or_any(Some(*addr), Some(port))
}

/// `ADDR:PORT` where either may be unknown (`*`), as for the ends of a folded kind.
fn endpoint_or_any(addr: Option<std::net::IpAddr>, port: Option<u16>) -> String {
    let port = port.map_or("*".to_string(), |p| p.to_string());
    match addr {
        Some(std::net::IpAddr::V4(a)) => format!("{a}:{port}"),
        Some(std::net::IpAddr::V6(a)) => format!("[{a}]:{port}"),
        None => format!("*:{port}"),
    }
}

fn direction_column(kind: ReportType, direction: Option<Direction>) -> &'static str {
    match (kind, direction) {
        (ReportType::Abort, _) => "ABRT",
        (_, Some(Direction::Sent)) => "SENT",
        _ => "RECV",
    }
}

/// Colour by who is responsible: the application yellow, the network red, the rest plain.
fn origin_colour(benign: bool, origin: Origin) -> Option<&'static str> {
    match (benign, origin) {
        (true, _) => Some("2"),
        (_, Origin::Application) => Some("33"),
        (_, Origin::Network) => Some("31"),
        _ => None,
    }
}

/// One table entry, for a report or a folded record.
struct Row<'a> {
    ts_ns: u64,
    dir: &'static str,
    pid: String,
    comm: &'a str,
    /// The narrow table's LPORT column and the wide table's local end.
    lport: String,
    local: String,
    remote: String,
    state: &'a str,
    cause: &'static str,
    /// The wide table's WORKLOAD: the container, the unit, or the cgroup's last part.
    workload: String,
    why: String,
    colour: Option<&'static str>,
}

impl<W: Write> TableSink<W> {
    fn header(&mut self) -> io::Result<()> {
        let time = if self.opts.timestamp { format!("{:<13}", "TIME") } else { String::new() };
        let header = if self.opts.wide {
            format!(
                "{time}{:<5} {:<7} {:<15} {:<40} {:<40} {:<11} {:<18} {:<24} WHY",
                "DIR", "PID", "COMM", "LADDR:LPORT", "RADDR:RPORT", "STATE", "CAUSE", "WORKLOAD"
            )
        } else {
            format!("{time}{:<4} {:<6} {:<10} {:<5} {:<11} {:<18} RADDR:RPORT", "DIR", "PID", "COMM", "LPORT", "STATE", "CAUSE")
        };
        self.emit(header, None)
    }

    fn row(&mut self, row: Row) -> io::Result<()> {
        if !self.header_done {
            self.header()?;
            self.header_done = true;
        }
        let wall = rfc3339(self.clock.wall_ns(row.ts_ns));
        let time = if self.opts.timestamp { format!("{:<13}", wall.get(11..23).unwrap_or(&wall)) } else { String::new() };
        let Row { dir, pid, comm, lport, local, remote, state, cause, workload, why, colour, .. } = row;
        if self.opts.wide {
            let line = format!("{time}{dir:<5} {pid:<7} {comm:<15} {local:<40} {remote:<40} {state:<11} {cause:<18} {workload:<24} {why}");
            self.emit(line, colour)?;
        } else {
            // Two lines that fit 80 columns: the facts (the variable-width peer last, so only it
            // can be cut), then why, indented under them.
            let line = format!("{time}{dir:<4} {pid:<6} {comm:<10.10} {lport:<5} {state:<11} {cause:<18} {remote}");
            self.emit(line, colour)?;
            self.emit(format!("{}  └ {why}", " ".repeat(time.len())), None)?;
        }
        self.out.flush()
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn shows(&self, r: &Report) -> bool {
        !r.verdict.benign || self.opts.include_benign
    }

    fn report(&mut self, r: &Report) -> io::Result<()> {
        if !self.shows(r) {
            return Ok(());
        }
        let (pid, comm) = match &r.owner {
            Some(o) => (o.pid.to_string(), o.comm.as_str()),
            None => ("-".to_string(), "-"),
        };
        let mut why = r.verdict.why.to_string();
        if r.verdict.benign {
            why.push_str(" (benign)");
        }
        if self.opts.wide {
            if let Some(reason) = &r.kernel_reason {
                why.push_str(&format!(" [{reason}]"));
            }
        }
        self.row(Row {
            ts_ns: r.ts_ns,
            dir: direction_column(r.kind, r.direction),
            pid,
            comm,
            lport: r.endpoints.lport.to_string(),
            local: endpoint(&r.endpoints.laddr, r.endpoints.lport),
            remote: endpoint(&r.endpoints.raddr, r.endpoints.rport),
            state: r.state,
            cause: r.verdict.cause.name(),
            workload: r.workload.as_ref().map_or_else(|| "-".to_string(), |w| w.label()),
            why,
            colour: origin_colour(r.verdict.benign, r.verdict.origin),
        })
    }

    /// One entry per folded kind: `+N` in the STATE column (the folded ones died in various
    /// states), `*` for what varied.
    fn folded(&mut self, f: &Folded) -> io::Result<()> {
        let k = &f.key;
        if k.benign && !self.opts.include_benign {
            return Ok(());
        }
        let (pid, comm) = match (k.port, k.pid) {
            (Port::Other, _) => ("*".to_string(), "*".to_string()),
            (_, Some(pid)) => (pid.to_string(), f.comm.as_ref().map_or("-", |c| c.as_str()).to_string()),
            (_, None) => ("-".to_string(), "-".to_string()),
        };
        let (lport, rport) = match k.port {
            Port::Local(p) => (Some(p), None),
            Port::Remote(p) => (None, Some(p)),
            Port::Other => (None, None),
        };
        let noun = match (k.kind, f.count) {
            (ReportType::Abort, 1) => "abort",
            (ReportType::Abort, _) => "aborts",
            (_, 1) => "reset",
            _ => "resets",
        };
        let secs = f.at_ns.saturating_sub(f.since_ns) as f64 / 1e9;
        // Fits the narrow table's second line (80 columns) for counts up to millions.
        let mut why = if k.port == Port::Other {
            format!("{} {noun} of other kinds in {secs:.1}s folded into this line (over {MAX_KEYS} kinds)", f.count)
        } else {
            format!("{} such {noun} in {secs:.1}s folded into this line (--max-rate {}/s)", f.count, f.max_rate)
        };
        if k.benign {
            why.push_str(" (benign)");
        }
        let state = format!("+{}", f.count);
        self.row(Row {
            ts_ns: f.at_ns,
            dir: direction_column(k.kind, k.direction),
            pid,
            comm: &comm,
            lport: lport.map_or("*".to_string(), |p| p.to_string()),
            local: endpoint_or_any(None, lport),
            remote: endpoint_or_any(f.raddr, rport),
            state: &state,
            cause: k.cause.name(),
            workload: "-".to_string(),
            why,
            colour: origin_colour(k.benign, k.origin),
        })
    }

    fn lost(&mut self, lost_now: u64, loss: &Loss) -> io::Result<()> {
        self.emit(format!("-- {lost_now} kernel events lost, {} in total (see stderr) --", loss.total()), Some("31"))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use crate::{
        event::{Endpoints, Family, Task},
        report::{Attribution, Cause, Direction, Origin, Verdict},
    };

    fn report() -> Report {
        Report {
            kind: ReportType::Reset,
            direction: Some(Direction::Sent),
            verdict: Verdict {
                cause: Cause::DataAfterClose,
                origin: Origin::Application,
                benign: false,
                why: "peer sent data after nginx[812] closed the socket".into(),
            },
            kernel_reason: Some("TCP_TIMEWAIT_SOCKET".into()),
            state: "TIME_WAIT",
            endpoints: Endpoints {
                family: Family::Ipv6,
                laddr: "fd00:1234:5678::2".parse().unwrap(),
                lport: 443,
                raddr: "fd00:1234:5678::1".parse().unwrap(),
                rport: 51234,
            },
            owner: Some(Task { pid: 812, tid: 812, comm: "nginx".into(), cgroup: 0 }),
            attribution: Attribution::SocketOwner,
            netns: 1,
            cgroup: 0,
            workload: None,
            thread: None,
            ts_ns: 0,
            peer_cause: None,
            current: Some(Task { pid: 0, tid: 0, comm: "swapper/0".into(), cgroup: 0 }),
            retransmits: 0,
            active_open: false,
            evidence: None,
        }
    }

    fn test_trace() -> TraceInfo {
        TraceInfo {
            host: "web-1".into(),
            instance: "00112233aabbccdd".into(),
            scope_netns: Some(4026532000),
            addresses: vec!["10.0.0.2".parse().unwrap()],
            filters: vec!["-p 812".into()],
            unseen: Vec::new(),
        }
    }

    #[test]
    fn a_report_line_is_byte_for_byte_what_serde_json_writes() {
        let clock = Clock::now();
        let mut trace = test_trace();
        let plain = report();
        // Nothing known: no owner, no current task, no reason, no direction.
        let mut bare = report();
        (bare.owner, bare.current, bare.kernel_reason, bare.direction, bare.kind) = (None, None, None, None, ReportType::Abort);
        bare.verdict.why = std::borrow::Cow::Borrowed("connection timed out without retransmissions seen");
        // Everything known, with text that must be escaped.
        let mut full = report();
        full.direction = Some(Direction::Received);
        full.verdict.benign = true;
        full.peer_cause = Some(Cause::NoListener);
        full.endpoints = Endpoints { family: Family::Ipv4, laddr: "10.0.0.2".parse().unwrap(), lport: 1, raddr: "10.0.0.1".parse().unwrap(), rport: 65535 };
        full.owner = Some(Task { pid: u32::MAX, tid: 7, comm: "a\"b\\c\u{1}é".into(), cgroup: 0 });
        full.thread = Some("worker\t1".into());
        full.verdict.why = format!("peer \"refused\" ✓ \n{}", "x".repeat(300)).into();
        full.retransmits = 12;
        full.ts_ns = u64::MAX / 2;
        full.workload = Some(std::sync::Arc::new(crate::workload::Workload {
            cgroup: "/kubepods.slice/pod\"q\".slice".into(),
            unit: Some("cri-containerd-0123.scope".into()),
            container_id: Some("0123".into()),
            pod_uid: Some("4f1e".into()),
            names: crate::runtime_names::ContainerNames { pod: Some("web-0".into()), pod_namespace: Some("prod".into()), container: Some("nginx".into()) },
        }));
        full.evidence = Some(crate::evidence::Evidence::new(None, true));
        // Plain text, the edge octets of IPv4, and evidence with every field set.
        let mut sampled = report();
        sampled.direction = Some(Direction::Received);
        sampled.attribution = Attribution::SocketFile;
        sampled.endpoints = Endpoints { family: Family::Ipv4, laddr: "0.9.10.255".parse().unwrap(), lport: 8080, raddr: "100.99.199.200".parse().unwrap(), rport: 0 };
        sampled.thread = Some("plain worker-1 é".into());
        sampled.evidence = Some(crate::evidence::Evidence::new(
            Some(&crate::event::Arrival { segments: 9, ttl_min: 61, ttl_max: 64, ttl_last: 64, rst_ttl: Some(250), ip_id_last: Some(65535), rst_ip_id: Some(7), ipv6: false }),
            true,
        ));
        trace.host = "h\"ost".into();
        for r in [plain, bare, full, sampled] {
            let (hand, serde) = (json_line(&r, &clock, &trace), json_line_by_serde(&r, &clock, &trace));
            assert_eq!(String::from_utf8(hand).unwrap(), String::from_utf8(serde).unwrap());
        }
    }

    #[test]
    fn every_json_record_names_its_host_and_run() {
        let (clock, trace) = (Clock::now(), test_trace());
        let mut received = report();
        received.direction = Some(Direction::Received);
        received.evidence = Some(crate::evidence::Evidence::new(
            Some(&crate::event::Arrival {
                segments: 4,
                ttl_min: 63,
                ttl_max: 63,
                ttl_last: 63,
                rst_ttl: Some(64),
                ip_id_last: Some(9),
                rst_ip_id: Some(0),
                ipv6: false,
            }),
            false,
        ));
        let v: serde_json::Value =
            serde_json::from_slice(&json_line(&received, &clock, &trace)).unwrap();
        assert_eq!(
            (v["host"].as_str(), v["instance"].as_str()),
            (Some("web-1"), Some("00112233aabbccdd"))
        );
        let e = &v["evidence"];
        assert_eq!(
            (
                e["rst_ttl"].as_u64(),
                e["peer_ttl"].as_u64(),
                e["peer_segments"].as_u64()
            ),
            (Some(64), Some(63), Some(4))
        );
        assert_eq!(
            (e["rst_ip_id"].as_u64(), e["peer_ip_id"].as_u64()),
            (Some(0), Some(9))
        );
        assert_eq!(
            (
                e["decisive"].as_bool(),
                e["peer_talked_after"].as_bool(),
                e["peer_ttl_varied"].as_bool()
            ),
            (Some(true), Some(false), Some(false))
        );
        let sent: serde_json::Value =
            serde_json::from_slice(&json_line(&report(), &clock, &trace)).unwrap();
        assert!(sent["evidence"].is_null());
        for line in [
            lost_line(1, &Loss { ring_full: 2, ..Loss::default() }, &clock, &trace),
            folded_line(&folded(Port::Local(443), 3), &clock, &trace),
        ] {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["instance"], "00112233aabbccdd", "{v}");
        }
        let loss = Loss { ring_full: 2, skipped: vec![("set_state_typed", 3)], unread: 1 };
        let lost: serde_json::Value = serde_json::from_slice(&lost_line(4, &loss, &clock, &trace)).unwrap();
        assert_eq!((lost["lost"].as_u64(), lost["lost_total"].as_u64()), (Some(4), Some(6)), "{lost}");
        assert_eq!((lost["ring_full"].as_u64(), lost["unread"].as_u64()), (Some(2), Some(1)), "{lost}");
        assert_eq!(lost["skipped_runs"], serde_json::json!({"set_state_typed": 3}));
        let start: serde_json::Value =
            serde_json::from_slice(&trace_line(TraceEdge::Start, &clock, &trace)).unwrap();
        assert_eq!(
            (start["type"].as_str(), start["event"].as_str()),
            (Some("trace"), Some("start"))
        );
        assert_eq!(start["scope_netns"], 4026532000u64);
        assert_eq!(start["addresses"], serde_json::json!(["10.0.0.2"]));
        assert_eq!(start["filters"], serde_json::json!(["-p 812"]));
        let end: serde_json::Value =
            serde_json::from_slice(&trace_line(TraceEdge::End, &clock, &trace)).unwrap();
        assert_eq!(end["event"], "end");
    }

    #[test]
    fn narrow_table_fits_80_columns_and_keeps_the_why() {
        let mut out = Vec::new();
        let opts = TableOptions { timestamp: false, wide: false, include_benign: false, colour: false, width: Some(80) };
        TableSink::new(&mut out, Clock::now(), opts).report(&report()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert!(text.contains("data_after_close"), "{text}");
        assert!(text.contains("└ peer sent data after nginx[812] closed the socket"), "{text}");
        assert!(!text.contains('\x1b'), "no colour off a terminal");
    }

    #[test]
    fn benign_hidden_unless_asked() {
        let mut benign = report();
        benign.verdict.benign = true;
        let mut benign_folded = folded(Port::Local(443), 3);
        benign_folded.key.benign = true;
        // A header and two lines each when shown.
        for (include, lines) in [(false, 0), (true, 5)] {
            let mut out = Vec::new();
            let opts = TableOptions { timestamp: true, wide: false, include_benign: include, colour: false, width: None };
            let mut table = TableSink::new(&mut out, Clock::now(), opts);
            table.report(&benign).unwrap();
            table.folded(&benign_folded).unwrap();
            assert_eq!(String::from_utf8(out).unwrap().lines().count(), lines);
        }
    }

    fn folded(port: Port, count: u64) -> Folded {
        let r = report();
        Folded {
            key: crate::fold::FoldKey { port, ..crate::fold::FoldKey::of(&r) },
            count,
            first_ts_ns: 5_000_000_000,
            last_ts_ns: 5_900_000_000,
            comm: Some("nginx".into()),
            raddr: None,
            since_ns: 5_100_000_000,
            at_ns: 6_100_000_000,
            max_rate: 50,
        }
    }

    #[test]
    fn a_folded_kind_is_one_entry_with_its_count() {
        let mut out = Vec::new();
        let opts = TableOptions { timestamp: false, wide: false, include_benign: false, colour: false, width: Some(80) };
        let mut table = TableSink::new(&mut out, Clock::now(), opts);
        table.folded(&folded(Port::Local(443), 1950)).unwrap();
        table.folded(&folded(Port::Other, 1)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "a header, then two lines each: {text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
        assert!(lines[1].starts_with("SENT 812    nginx      443   +1950       data_after_close   *:*"), "{text}");
        assert!(lines[2].ends_with("└ 1950 such resets in 1.0s folded into this line (--max-rate 50/s)"), "{text}");
        assert!(lines[3].starts_with("SENT *      *          *     +1 "), "{text}");
        assert!(lines[4].ends_with("└ 1 reset of other kinds in 1.0s folded into this line (over 256 kinds)"), "{text}");
    }

    #[test]
    fn a_folded_record_in_json_says_what_was_folded_and_how_many() {
        let clock = Clock::fixed(0);
        let mut f = folded(Port::Remote(8080), 1950);
        f.raddr = "fd00::1".parse().ok();
        let v: serde_json::Value =
            serde_json::from_slice(&folded_line(&f, &clock, &test_trace())).unwrap();
        assert_eq!(v["type"], "folded");
        assert_eq!(v["report_type"], "reset");
        assert_eq!((v["direction"].as_str(), v["cause"].as_str(), v["origin"].as_str()), (Some("sent"), Some("data_after_close"), Some("application")));
        assert_eq!((v["lport"].is_null(), v["rport"].as_u64()), (true, Some(8080)));
        assert_eq!((v["pid"].as_u64(), v["comm"].as_str(), v["raddr"].as_str()), (Some(812), Some("nginx"), Some("fd00::1")));
        assert_eq!((v["count"].as_u64(), v["max_rate"].as_u64(), v["netns"].as_u64(), v["other"].as_bool()), (Some(1950), Some(50), Some(1), Some(false)));
        assert_eq!(v["first_ts"], "1970-01-01T00:00:05.000000000Z");
        assert_eq!(v["last_ts"], "1970-01-01T00:00:05.900000000Z");
        assert_eq!(v["since"], "1970-01-01T00:00:05.100000000Z");
        assert_eq!(v["ts"], "1970-01-01T00:00:06.100000000Z");
        let other: serde_json::Value =
            serde_json::from_slice(&folded_line(&folded(Port::Other, 2), &clock, &test_trace()))
                .unwrap();
        assert_eq!(
            (
                other["other"].as_bool(),
                other["netns"].is_null(),
                other["lport"].is_null(),
                other["rport"].is_null()
            ),
            (Some(true), true, true, true)
        );
    }

    #[test]
    fn the_summary_says_when_reports_were_folded() {
        let mut summary = Summary::default();
        let mut text = Vec::new();
        summary.add(&report(), 1);
        summary.write(&mut text, 1.0, 0, 0).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("folded"));
        for _ in 0..30 {
            summary.add(&report(), 1);
        }
        summary.add_folded(&folded(Port::Local(443), 30));
        let mut text = Vec::new();
        summary.write(&mut text, 1.0, 0, 0).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(": 31 resets/aborts (0 benign), 0 events lost"), "every reset counted: {text}");
        assert!(text.contains("folded: 30 of them over --max-rate 50/s, written as 1 folded records"), "{text}");
    }
}

/// Counts for the end-of-run summary.
#[derive(Default)]
pub struct Summary {
    pub by_cause: BTreeMap<&'static str, u64>,
    pub by_process: BTreeMap<(Comm, u32), u64>,
    pub by_peer: BTreeMap<std::net::IpAddr, u64>,
    pub by_direction: BTreeMap<&'static str, u64>,
    pub benign: u64,
    pub total: u64,
    /// Of `total`, reports written only as part of a folded record, and how many records.
    pub folded: u64,
    pub folded_records: u64,
    /// Of `total`, resets the kernel side counted without sending them across.
    pub counted_in_kernel: u64,
    max_rate: u32,
    unowned: u64,
    other_processes: u64,
    other_peers: u64,
}

/// Distinct processes or peers counted one by one; the rest share an `other` row, so a port
/// scan or a fork storm cannot grow the summary for days.
const SUMMARY_KEYS_MAX: usize = 10_000;

/// Count under `key`, or under `other` once the map is full.
fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64, other: &mut u64) {
    if let Some(count) = map.get_mut(&key) {
        *count += n;
    } else if map.len() < SUMMARY_KEYS_MAX {
        map.insert(key, n);
    } else {
        *other += n;
    }
}

impl Summary {
    /// `count` reports like `r` (more than one where the kernel side counted them).
    pub fn add(&mut self, r: &Report, count: u64) {
        self.total += count;
        self.benign += u64::from(r.verdict.benign) * count;
        *self.by_cause.entry(r.verdict.cause.name()).or_default() += count;
        match &r.owner {
            Some(o) => bump(&mut self.by_process, (o.comm, o.pid), count, &mut self.other_processes),
            None => self.unowned += count,
        }
        bump(&mut self.by_peer, r.endpoints.raddr, count, &mut self.other_peers);
        let dir = match (r.kind, r.direction) {
            (ReportType::Abort, _) => "abort",
            (_, Some(Direction::Sent)) => "sent",
            _ => "received",
        };
        *self.by_direction.entry(dir).or_default() += count;
    }

    /// A folded record went out (its reports were counted by [`Summary::add`] already).
    pub fn add_folded(&mut self, f: &Folded) {
        self.folded += f.count;
        self.folded_records += 1;
        self.max_rate = f.max_rate;
    }

    /// `events`: read from the ring buffer, what the kernel side shipped (the bench's per
    /// connection figure).
    pub fn write(&self, out: &mut impl Write, seconds: f64, lost: u64, events: u64) -> io::Result<()> {
        writeln!(
            out,
            "rsttrace: traced {seconds:.1}s: {} resets/aborts ({} benign), {lost} events lost, {events} events read",
            self.total, self.benign
        )?;
        if self.folded > 0 {
            writeln!(
                out,
                "  folded: {} of them over --max-rate {}/s, written as {} folded records with their counts",
                self.folded, self.max_rate, self.folded_records
            )?;
        }
        if self.counted_in_kernel > 0 {
            writeln!(out, "  counted in the kernel: {} of them (refusals, SO_LINGER 0 aborts and peer resets past --max-rate, not sent to the agent one by one)", self.counted_in_kernel)?;
        }
        let section = |out: &mut dyn Write, title: &str, rows: Vec<(String, u64)>| -> io::Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            let mut rows = rows;
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let line: Vec<String> = rows.iter().take(10).map(|(k, n)| format!("{k}={n}")).collect();
            writeln!(out, "  by {title}: {}", line.join(" "))
        };
        section(out, "direction", self.by_direction.iter().map(|(k, v)| (k.to_string(), *v)).collect())?;
        section(out, "cause", self.by_cause.iter().map(|(k, v)| (k.to_string(), *v)).collect())?;
        let mut processes: Vec<(String, u64)> = self.by_process.iter().map(|((comm, pid), n)| (format!("{comm}[{pid}]"), *n)).collect();
        processes.extend([("-".to_string(), self.unowned), ("other".to_string(), self.other_processes)].into_iter().filter(|(_, n)| *n > 0));
        section(out, "process", processes)?;
        let mut peers: Vec<(String, u64)> = self.by_peer.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        peers.extend(Some(("other".to_string(), self.other_peers)).filter(|(_, n)| *n > 0));
        section(out, "peer", peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339(1_795_468_076_500_000_000), "2026-11-23T21:07:56.500000000Z");
        assert_eq!(rfc3339(253_402_300_799_999_999_999), "9999-12-31T23:59:59.999999999Z");
        // Outside the four-digit years, the formatter's way.
        assert_eq!(rfc3339(253_402_300_800_000_000_000), "10000-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
