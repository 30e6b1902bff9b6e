//! Output sinks: the live table, JSON Lines, and the summary. The only module that prints
//! reports.
use std::{
    collections::BTreeMap,
    io::{self, Write},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::report::{Attribution, Report, ReportType};

/// Turns CLOCK_MONOTONIC event times into wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_monotonic_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        Self { realtime_minus_monotonic_ns: real - mono }
    }

    pub fn monotonic_now_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn wall_ns(&self, monotonic_ns: u64) -> i128 {
        monotonic_ns as i128 + self.realtime_minus_monotonic_ns
    }
}

/// RFC 3339 UTC time with nanoseconds, e.g. `2026-11-23T21:07:56.123456789Z`.
pub fn rfc3339(unix_ns: i128) -> String {
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The JSON object of one report: RESETS.md's event contract plus extra context fields.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(rename = "type")]
    kind: ReportType,
    direction: Option<crate::report::Direction>,
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
    attribution: Attribution,
    netns: u32,
    ts: String,
    why: &'a str,
    peer_cause: Option<&'static str>,
    tid: Option<u32>,
    current_pid: u32,
    current_comm: &'a str,
    retransmits: u32,
}

pub trait Sink {
    fn report(&mut self, report: &Report) -> io::Result<()>;
}

pub struct JsonSink<W: Write> {
    out: W,
    clock: Clock,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W, clock: Clock) -> Self {
        Self { out, clock }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn report(&mut self, r: &Report) -> io::Result<()> {
        let json = JsonReport {
            kind: r.kind,
            direction: r.direction,
            cause: r.verdict.cause.name(),
            origin: r.verdict.origin.name(),
            benign: r.verdict.benign,
            kernel_reason: r.kernel_reason.as_deref(),
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
            ts: rfc3339(self.clock.wall_ns(r.ts_ns)),
            why: &r.verdict.why,
            peer_cause: r.peer_cause.map(|c| c.name()),
            tid: r.owner.as_ref().map(|o| o.tid),
            current_pid: r.current.pid,
            current_comm: &r.current.comm,
            retransmits: r.retransmits,
        };
        serde_json::to_writer(&mut self.out, &json)?;
        self.out.write_all(b"\n")?;
        // One flush per event so `| jq` and tailing work live.
        self.out.flush()
    }
}

pub struct TableSink<W: Write> {
    out: W,
    clock: Clock,
    header_done: bool,
}

impl<W: Write> TableSink<W> {
    pub fn new(out: W, clock: Clock) -> Self {
        Self { out, clock, header_done: false }
    }
}

fn endpoint(addr: &std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn report(&mut self, r: &Report) -> io::Result<()> {
        if !self.header_done {
            writeln!(
                self.out,
                "{:<12} {:<5} {:<7} {:<15} {:<22} {:<22} {:<11} {:<18} WHY",
                "TIME", "DIR", "PID", "COMM", "LADDR:LPORT", "RADDR:RPORT", "STATE", "CAUSE"
            )?;
            self.header_done = true;
        }
        let wall = rfc3339(self.clock.wall_ns(r.ts_ns));
        let time = wall.get(11..23).unwrap_or(&wall);
        let dir = match (r.kind, r.direction) {
            (ReportType::Abort, _) => "ABORT",
            (_, Some(crate::report::Direction::Sent)) => "SENT",
            _ => "RECV",
        };
        let (pid, comm) = match &r.owner {
            Some(o) => (o.pid.to_string(), o.comm.as_str()),
            None => ("-".to_string(), "-"),
        };
        let mut why = r.verdict.why.clone();
        if let Some(reason) = &r.kernel_reason {
            why.push_str(&format!(" [{reason}]"));
        }
        if r.verdict.benign {
            why.push_str(" (benign)");
        }
        writeln!(
            self.out,
            "{time:<12} {dir:<5} {pid:<7} {comm:<15} {:<22} {:<22} {:<11} {:<18} {why}",
            endpoint(&r.endpoints.laddr, r.endpoints.lport),
            endpoint(&r.endpoints.raddr, r.endpoints.rport),
            r.state,
            r.verdict.cause.name(),
        )?;
        self.out.flush()
    }
}

/// Counts for the end-of-run summary.
#[derive(Default)]
pub struct Summary {
    pub by_cause: BTreeMap<&'static str, u64>,
    pub by_process: BTreeMap<String, u64>,
    pub by_peer: BTreeMap<String, u64>,
    pub by_direction: BTreeMap<&'static str, u64>,
    pub total: u64,
}

/// Distinct processes or peers counted one by one; the rest share an `other` row, so a port
/// scan or a fork storm cannot grow the summary for days.
const SUMMARY_KEYS_MAX: usize = 10_000;

fn bump(map: &mut BTreeMap<String, u64>, key: String) {
    if map.len() >= SUMMARY_KEYS_MAX && !map.contains_key(&key) {
        *map.entry("other".to_string()).or_default() += 1;
    } else {
        *map.entry(key).or_default() += 1;
    }
}

impl Summary {
    pub fn add(&mut self, r: &Report) {
        self.total += 1;
        *self.by_cause.entry(r.verdict.cause.name()).or_default() += 1;
        let process = r.owner.as_ref().map_or("-".to_string(), |o| format!("{}[{}]", o.comm, o.pid));
        bump(&mut self.by_process, process);
        bump(&mut self.by_peer, r.endpoints.raddr.to_string());
        let dir = match (r.kind, r.direction) {
            (ReportType::Abort, _) => "abort",
            (_, Some(crate::report::Direction::Sent)) => "sent",
            _ => "received",
        };
        *self.by_direction.entry(dir).or_default() += 1;
    }

    pub fn write(&self, out: &mut impl Write, seconds: f64, lost: u64, evicted: u64) -> io::Result<()> {
        writeln!(out, "rsttrace: traced {seconds:.1}s: {} resets/aborts, {lost} events lost, {evicted} connections evicted", self.total)?;
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
        section(out, "process", self.by_process.iter().map(|(k, v)| (k.clone(), *v)).collect())?;
        section(out, "peer", self.by_peer.iter().map(|(k, v)| (k.clone(), *v)).collect())
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
    }
}
