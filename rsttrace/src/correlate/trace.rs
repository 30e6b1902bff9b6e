//! Reading rsttrace JSON Lines into traces: the records of one `instance` (one run of the agent)
//! with the host that wrote them, the addresses and time span they cover, the resets they report
//! and the moments where they may lack some.
use std::{collections::HashMap, io::BufRead, net::IpAddr};

use serde_json::{Map, Value};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Nanoseconds since the Unix epoch, on the clock of the host that wrote the record.
pub type Nanos = i64;

/// 2200-01-01T00:00:00Z: the latest time a record may have.
const LATEST_NS: Nanos = 7_258_118_400 * 1_000_000_000;

/// Reported lost events happened shortly before the `lost` record: the agent checks its counter
/// every 50 ms and holds resets 150 ms, and a full ring buffer holds about 0.1 s of a storm. Two
/// seconds is beyond all of that together.
const LOST_REACH: Nanos = 2_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{file}: cannot read it: {source}")]
    Open {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {what}")]
    Line {
        file: String,
        line: usize,
        what: String,
    },
    #[error("instance {instance}: {what}")]
    Trace { instance: String, what: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Sent,
    Received,
}

/// A connection's ends as one host saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
}

/// One `reset` record.
#[derive(Clone, Debug)]
pub struct Reset {
    pub direction: Direction,
    pub tuple: Tuple,
    pub ts: Nanos,
    /// This end's own evidence says the RST was forged (`evidence.decisive`).
    pub forged_by_evidence: bool,
    /// The line as written. Kept as text, a fraction of the size of its parsed form (a day's
    /// files may hold millions), and parsed again to be written out.
    line: String,
}

impl Reset {
    /// The record with every field as written, in the agent's order.
    pub fn record(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.line) {
            Ok(Value::Object(record)) => record,
            _ => unreachable!("the line was read as a JSON object"),
        }
    }
}

/// A time in which a trace may lack resets it saw: resets of one kind folded past `--max-rate`
/// (a `folded` record says the direction, a port and maybe the peer), or events the kernel could
/// not queue (a `lost` record: any reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: Nanos,
    pub to: Nanos,
    pub direction: Option<Direction>,
    pub lport: Option<u16>,
    pub rport: Option<u16>,
    pub raddr: Option<IpAddr>,
}

/// A time as written (re-emitted as is) and as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub text: String,
    pub ns: Nanos,
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub host: String,
    pub instance: String,
    /// The traced namespace's local addresses, from the `trace` records.
    pub addresses: Vec<IpAddr>,
    /// The `trace` records' times, when the files hold them.
    pub start: Option<Stamp>,
    pub end: Option<Stamp>,
    /// The earliest and latest time of any of the instance's records.
    pub first: Stamp,
    pub last: Stamp,
    pub resets: Vec<Reset>,
    /// The agent ran with filters besides `--netns`, or on a kernel that hid some resets from it
    /// (its start record's `filters`, `unseen`): it may lack reports of its namespace, so its
    /// silence proves nothing.
    pub filtered: bool,
    /// Sorted by `from` once read, so the ones near a moment are found without a scan.
    gaps: Vec<Gap>,
    longest_gap: Nanos,
    /// `resets` by direction and remote port, built once read: what pairing asks of a trace for
    /// one connection end is then a look-up, not a walk of every reset.
    by_remote_port: HashMap<(Direction, u16), Vec<usize>>,
}

impl Trace {
    /// The time the trace covers: from its start record to its end record; a trace whose end
    /// record is missing (the agent was killed) or whose start record was rotated away covers
    /// up to its last, or from its first, record.
    /// The resets of `direction` whose remote end has port `rport`.
    pub fn with_remote_port(&self, direction: Direction, rport: u16) -> impl Iterator<Item = &Reset> {
        self.by_remote_port.get(&(direction, rport)).into_iter().flatten().map(|&i| &self.resets[i])
    }

    pub fn span(&self) -> (Nanos, Nanos) {
        (
            self.start.as_ref().unwrap_or(&self.first).ns,
            self.end.as_ref().unwrap_or(&self.last).ns,
        )
    }

    /// The gaps that come within `reach` of `at`. A storm may leave a folded record every
    /// second for hours; each one is short, so only those starting near `at` can reach it.
    pub fn gaps_near(&self, at: Nanos, reach: Nanos) -> impl Iterator<Item = &Gap> {
        let first = self
            .gaps
            .partition_point(|g| g.from < at - reach - self.longest_gap);
        let last = self.gaps.partition_point(|g| g.from <= at + reach);
        self.gaps[first..last.max(first)]
            .iter()
            .filter(move |g| g.from - reach <= at && at <= g.to + reach)
    }
}

/// A trace being read: the host may come with any of its records.
struct Partial {
    host: Option<String>,
    trace: Trace,
}

/// Reads files one after the other; an instance may span several (a rotated `--output`) and a
/// file may hold several (the agent restarted). Traces keep the order they first appear in.
#[derive(Default)]
pub struct Reader {
    traces: Vec<Partial>,
    by_instance: HashMap<String, usize>,
}

impl Reader {
    /// Every line of one file; `file` names it in errors.
    pub fn read(&mut self, file: &str, input: impl BufRead) -> Result<(), ReadError> {
        for (n, line) in input.lines().enumerate() {
            let at = |what: String| ReadError::Line {
                file: file.to_string(),
                line: n + 1,
                what,
            };
            let line = line.map_err(|e| at(format!("cannot read it: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value =
                serde_json::from_str(&line).map_err(|e| at(format!("not JSON: {e}")))?;
            let Value::Object(record) = value else {
                return Err(at("not a JSON object".to_string()));
            };
            self.add(record, line).map_err(at)?;
        }
        Ok(())
    }

    /// One record, parsed from `line`.
    fn add(&mut self, record: Map<String, Value>, line: String) -> Result<(), String> {
        let kind = record
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let used = matches!(kind.as_str(), "trace" | "reset" | "folded" | "lost");
        let Some(instance) = record.get("instance").and_then(Value::as_str) else {
            if used {
                return Err(format!(
                    "a `{kind}` record without `instance`: written by an rsttrace that writes no trace records"
                ));
            }
            return Ok(());
        };
        // Other types count for the span only, so a record of a type this version does not
        // know is no error even with a missing or odd `ts`.
        let ts = match (record.get("ts").and_then(Value::as_str), used) {
            (Some(text), true) => Some(stamp(text)?),
            (Some(text), false) => stamp(text).ok(),
            (None, true) => return Err(format!("a `{kind}` record without a `ts`")),
            (None, false) => None,
        };
        let host = record
            .get("host")
            .and_then(Value::as_str)
            .map(str::to_string);
        let partial = self.trace(instance, host, ts.clone())?;
        let Some(ts) = ts else { return Ok(()) };
        let trace = &mut partial.trace;
        match kind.as_str() {
            "trace" => {
                let slot = match str_field(&record, "event")? {
                    "start" => &mut trace.start,
                    "end" => &mut trace.end,
                    other => return Err(format!("`event` is `{other}`, not `start` or `end`")),
                };
                if slot.is_some() {
                    return Err(format!(
                        "a second `{}` record for instance {}: is a file given twice?",
                        str_field(&record, "event")?,
                        trace.instance
                    ));
                }
                *slot = Some(ts);
                // Filters, or resets this kernel did not let the agent see.
                let listed = |field: &str| record.get(field).and_then(Value::as_array).is_some_and(|f| !f.is_empty());
                if listed("filters") || listed("unseen") {
                    trace.filtered = true;
                }
                for address in record
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let address = address
                        .as_str()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .ok_or_else(|| format!("`addresses` holds {address}, not an address"))?;
                    if !trace.addresses.contains(&address) {
                        trace.addresses.push(address);
                    }
                }
            }
            "reset" => {
                let direction = direction(&record, "direction")?
                    .ok_or("a reset record whose `direction` is null")?;
                let tuple = Tuple {
                    laddr: addr_field(&record, "laddr")?,
                    lport: port_field(&record, "lport")?,
                    raddr: addr_field(&record, "raddr")?,
                    rport: port_field(&record, "rport")?,
                };
                let forged_by_evidence = record.get("evidence").and_then(|e| e.get("decisive")).and_then(Value::as_bool) == Some(true);
                trace.resets.push(Reset {
                    direction,
                    tuple,
                    ts: ts.ns,
                    forged_by_evidence,
                    line,
                });
            }
            // A folded abort stands for no RST: nothing a peer could have sent or received.
            "folded" if record.get("report_type").and_then(Value::as_str) == Some("reset") => {
                let (from, to) = (
                    ts_field(&record, "first_ts")?,
                    ts_field(&record, "last_ts")?,
                );
                trace.gaps.push(Gap {
                    from: from.ns,
                    to: to.ns,
                    direction: direction(&record, "direction")?,
                    lport: optional(&record, "lport", port_field)?,
                    rport: optional(&record, "rport", port_field)?,
                    raddr: optional(&record, "raddr", addr_field)?,
                });
            }
            "lost" => trace.gaps.push(Gap {
                from: ts.ns - LOST_REACH,
                to: ts.ns,
                direction: None,
                lport: None,
                rport: None,
                raddr: None,
            }),
            _ => {}
        }
        Ok(())
    }

    /// The instance's trace, made at its first record; its span widened to `ts`.
    fn trace(
        &mut self,
        instance: &str,
        host: Option<String>,
        ts: Option<Stamp>,
    ) -> Result<&mut Partial, String> {
        let index = match self.by_instance.get(instance) {
            Some(&i) => i,
            None => {
                let empty = Stamp {
                    text: String::new(),
                    ns: 0,
                };
                self.traces.push(Partial {
                    host: None,
                    trace: Trace {
                        host: String::new(),
                        instance: instance.to_string(),
                        addresses: Vec::new(),
                        start: None,
                        end: None,
                        first: empty.clone(),
                        last: empty,
                        resets: Vec::new(),
                        filtered: false,
                        gaps: Vec::new(),
                        longest_gap: 0,
                        by_remote_port: HashMap::new(),
                    },
                });
                self.by_instance
                    .insert(instance.to_string(), self.traces.len() - 1);
                self.traces.len() - 1
            }
        };
        let partial = &mut self.traces[index];
        match (&partial.host, host) {
            (Some(known), Some(host)) if *known != host => {
                return Err(format!(
                    "instance {instance} is host `{known}` elsewhere, `{host}` here"
                ));
            }
            (None, Some(host)) => partial.host = Some(host),
            _ => {}
        }
        if let Some(ts) = ts {
            let t = &mut partial.trace;
            if t.first.text.is_empty() || ts.ns < t.first.ns {
                t.first = ts.clone();
            }
            if t.last.text.is_empty() || ts.ns > t.last.ns {
                t.last = ts;
            }
        }
        Ok(partial)
    }

    /// The traces read, in the order they first appeared.
    pub fn finish(self) -> Result<Vec<Trace>, ReadError> {
        self.traces
            .into_iter()
            .map(|Partial { host, mut trace }| {
                let fail = |what: &str| ReadError::Trace {
                    instance: trace.instance.clone(),
                    what: what.to_string(),
                };
                trace.host = host.ok_or_else(|| fail("no record names its `host`"))?;
                if trace.first.text.is_empty() {
                    return Err(fail("no record has a `ts`"));
                }
                trace.gaps.sort_by_key(|g| g.from);
                trace.longest_gap = trace.gaps.iter().map(|g| g.to - g.from).max().unwrap_or(0);
                for (i, r) in trace.resets.iter().enumerate() {
                    trace.by_remote_port.entry((r.direction, r.tuple.rport)).or_default().push(i);
                }
                Ok(trace)
            })
            .collect()
    }
}

fn stamp(text: &str) -> Result<Stamp, String> {
    let ns = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))?
        .unix_timestamp_nanos();
    // Years 1970 to 2200 only: the differences of any two such times fit in a Nanos.
    let ns = Nanos::try_from(ns).ok().filter(|ns| (0..=LATEST_NS).contains(ns)).ok_or_else(|| format!("`{text}` is out of range (1970 to 2200)"))?;
    Ok(Stamp {
        text: text.to_string(),
        ns,
    })
}

fn str_field<'a>(record: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    record
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string `{name}`"))
}

fn ts_field(record: &Map<String, Value>, name: &str) -> Result<Stamp, String> {
    stamp(str_field(record, name)?)
}

fn addr_field(record: &Map<String, Value>, name: &str) -> Result<IpAddr, String> {
    let text = str_field(record, name)?;
    text.parse()
        .map_err(|_| format!("`{name}` is `{text}`, not an address"))
}

fn port_field(record: &Map<String, Value>, name: &str) -> Result<u16, String> {
    record
        .get(name)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("no port number `{name}`"))
}

/// A field that may be null or absent.
fn optional<T>(
    record: &Map<String, Value>,
    name: &str,
    read: fn(&Map<String, Value>, &str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match record.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => read(record, name).map(Some),
    }
}

fn direction(record: &Map<String, Value>, name: &str) -> Result<Option<Direction>, String> {
    match record.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_str() {
            Some("sent") => Ok(Some(Direction::Sent)),
            Some("received") => Ok(Some(Direction::Received)),
            _ => Err(format!("`{name}` is {v}, not `sent` or `received`")),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One end's agent: writes records as the agent does, with the fields correlate reads and
    /// those it updates.
    pub struct End {
        pub host: &'static str,
        pub instance: &'static str,
    }

    pub const CLIENT: End = End {
        host: "client",
        instance: "aaaaaaaaaaaaaaaa",
    };
    pub const SERVER: End = End {
        host: "server",
        instance: "bbbbbbbbbbbbbbbb",
    };

    /// `s` seconds after 2026-01-01T10:00:00Z.
    pub fn at(s: f64) -> String {
        let whole = s.floor() as u64;
        let nanos = ((s - s.floor()) * 1e9).round() as u64;
        let (h, m, sec) = (10 + whole / 3600, whole / 60 % 60, whole % 60);
        format!("2026-01-01T{h:02}:{m:02}:{sec:02}.{nanos:09}Z")
    }

    /// `ADDR:PORT` or `[ADDR]:PORT`, the address kept as written.
    fn split(end: &str) -> (&str, u16) {
        let (addr, port) = end.rsplit_once(':').unwrap();
        (
            addr.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap(),
        )
    }

    impl End {
        pub fn start(&self, s: f64, addresses: &[&str]) -> String {
            self.trace("start", s, addresses)
        }

        pub fn end(&self, s: f64, addresses: &[&str]) -> String {
            self.trace("end", s, addresses)
        }

        fn trace(&self, event: &str, s: f64, addresses: &[&str]) -> String {
            serde_json::json!({
                "type": "trace", "event": event, "host": self.host, "instance": self.instance,
                "ts": at(s), "version": "0.1.0", "scope_netns": null, "addresses": addresses,
            })
            .to_string()
        }

        pub fn sent(&self, s: f64, cause: &str, local: &str, remote: &str) -> String {
            self.reset(s, "sent", cause, local, remote)
        }

        pub fn received(&self, s: f64, cause: &str, local: &str, remote: &str) -> String {
            self.reset(s, "received", cause, local, remote)
        }

        fn reset(&self, s: f64, direction: &str, cause: &str, local: &str, remote: &str) -> String {
            let ((laddr, lport), (raddr, rport)) = (split(local), split(remote));
            let (origin, why) = match direction {
                "sent" => ("application", format!("{cause} on this end")),
                _ => (
                    "peer",
                    "peer reset the connection in ESTABLISHED".to_string(),
                ),
            };
            serde_json::json!({
                "type": "reset", "direction": direction, "cause": cause, "origin": origin,
                "benign": false, "state": "ESTABLISHED", "family": "ipv4",
                "laddr": laddr, "lport": lport, "raddr": raddr, "rport": rport,
                "ts": at(s), "why": why, "peer_cause": null,
                "host": self.host, "instance": self.instance, "evidence": null,
            })
            .to_string()
        }
    }

    /// The client's reception, on its port `port`, of a RST from the server's port 80.
    pub fn client_got(s: f64, port: u16) -> String {
        CLIENT.received(s, "peer_reset", &format!("10.0.0.1:{port}"), "10.0.0.2:80")
    }

    /// The server's RST from its port 80 to the client's port `port`.
    pub fn server_sent(s: f64, port: u16) -> String {
        SERVER.sent(
            s,
            "app_abort_unread",
            "10.0.0.2:80",
            &format!("10.0.0.1:{port}"),
        )
    }

    pub fn read(files: &[(&str, &str)]) -> Result<Vec<Trace>, ReadError> {
        let mut reader = Reader::default();
        for (name, text) in files {
            reader.read(name, text.as_bytes())?;
        }
        reader.finish()
    }

    /// The client (10.0.0.1, fd00::1) traced from 10:00:00 to 10:02:00 and the server
    /// (10.0.0.2, fd00::2) from 10:00:00 to 10:01:00, each on its own clock, with these
    /// records between.
    pub fn two_ends(client: &[String], server: &[String]) -> Vec<Trace> {
        let file = |end: &End, records: &[String], until: f64, addresses: &[&str]| {
            let mut lines = vec![end.start(0.0, addresses)];
            lines.extend_from_slice(records);
            lines.push(end.end(until, addresses));
            lines.join("\n")
        };
        let client = file(&CLIENT, client, 120.0, &["10.0.0.1", "fd00::1"]);
        let server = file(&SERVER, server, 60.0, &["10.0.0.2", "fd00::2"]);
        read(&[("client.json", &client), ("server.json", &server)]).unwrap()
    }

    #[test]
    fn a_file_holds_the_traces_of_two_instances_in_order() {
        let restarted = End {
            host: "client",
            instance: "cccccccccccccccc",
        };
        let text = [
            CLIENT.start(0.0, &["10.0.0.1", "fd00::1"]),
            CLIENT.sent(1.5, "no_listener", "10.0.0.1:9", "10.0.0.2:40000"),
            CLIENT.end(2.0, &["10.0.0.1", "fd00::1"]),
            format!(
                r#"{{"type":"abort","host":"client","instance":"{}","ts":"{}"}}"#,
                restarted.instance,
                at(3600.0)
            ),
            restarted.start(3605.0, &["10.0.0.1"]),
            format!(
                r#"{{"type":"lost","lost":3,"host":"client","instance":"{}","ts":"{}"}}"#,
                restarted.instance,
                at(3609.0)
            ),
            String::new(),
        ]
        .join("\n");
        let traces = read(&[("client.json", &text)]).unwrap();
        assert_eq!(traces.len(), 2);
        let (a, b) = (&traces[0], &traces[1]);
        assert_eq!(
            (a.host.as_str(), a.instance.as_str()),
            ("client", CLIENT.instance)
        );
        let addresses: Vec<IpAddr> = ["10.0.0.1", "fd00::1"].map(|a| a.parse().unwrap()).into();
        assert_eq!(a.addresses, addresses);
        assert_eq!(a.resets.len(), 1);
        let r = &a.resets[0];
        assert_eq!(
            (r.direction, r.tuple.lport, r.tuple.rport),
            (Direction::Sent, 9, 40000)
        );
        assert_eq!(
            r.record()["why"],
            "no_listener on this end",
            "the record is kept whole"
        );
        assert_eq!(a.span().1 - a.span().0, 2_000_000_000);
        // The abort came before the start record: it widens the span's first record only.
        assert_eq!(b.first.text, at(3600.0));
        assert_eq!(b.span().0, b.start.as_ref().unwrap().ns);
        let lost: Vec<&Gap> = b.gaps_near(stamp(&at(3607.5)).unwrap().ns, 0).collect();
        assert_eq!(lost.len(), 1, "the lost record reaches back before it");
        assert_eq!(lost[0].to - lost[0].from, LOST_REACH);
    }

    #[test]
    fn a_trace_without_an_end_record_covers_up_to_its_last_record() {
        let text = [
            SERVER.start(0.0, &["10.0.0.2"]),
            SERVER.received(7.25, "peer_reset", "10.0.0.2:5432", "10.0.0.1:50000"),
        ];
        let traces = read(&[("server.json", &text.join("\n"))]).unwrap();
        assert!(traces[0].end.is_none());
        assert_eq!(traces[0].span().1 - traces[0].span().0, 7_250_000_000);
    }

    #[test]
    fn an_instance_continues_across_rotated_files() {
        let (older, newer) = (
            SERVER.start(0.0, &["10.0.0.2"]),
            SERVER.end(1800.0, &["10.0.0.2"]),
        );
        let traces = read(&[("server.json.1", &older), ("server.json", &newer)]).unwrap();
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].span().1 - traces[0].span().0, 1_800_000_000_000);
    }

    #[test]
    fn a_folded_reset_record_is_a_gap_of_its_kind_and_a_folded_abort_none() {
        let folded = |report_type: &str| {
            serde_json::json!({
                "type": "folded", "report_type": report_type, "direction": "sent", "lport": null,
                "rport": 8080, "raddr": null, "count": 900, "first_ts": at(1.0),
                "last_ts": at(1.9), "ts": at(2.0), "host": "server", "instance": SERVER.instance,
            })
            .to_string()
        };
        let text = format!("{}\n{}", folded("reset"), folded("abort"));
        let traces = read(&[("server.json", &text)]).unwrap();
        assert_eq!(traces[0].gaps.len(), 1);
        let gap = traces[0].gaps[0];
        let near = |s: f64, reach: Nanos| {
            traces[0]
                .gaps_near(stamp(&at(s)).unwrap().ns, reach)
                .count()
        };
        assert_eq!(
            (
                near(0.5, 0),
                near(0.5, 500_000_000),
                near(1.5, 0),
                near(2.4, 0)
            ),
            (0, 1, 1, 0)
        );
        let kind = (gap.direction, gap.lport, gap.rport, gap.raddr);
        assert_eq!(kind, (Some(Direction::Sent), None, Some(8080), None));
        assert_eq!(gap.to - gap.from, 900_000_000);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let text = format!("{}\n\n{{\"type\":\"reset\", oops\n", SERVER.start(0.0, &[]));
        let err = read(&[("h.json", &text)]).unwrap_err().to_string();
        assert!(err.starts_with("h.json:3: not JSON: "), "{err}");
        let err = read(&[("h.json", "[1, 2]")]).unwrap_err().to_string();
        assert_eq!(err, "h.json:1: not a JSON object");
    }

    #[test]
    fn records_correlate_cannot_use_are_errors_other_types_are_ignored() {
        let old = r#"{"type":"reset","direction":"sent","ts":"2026-01-01T10:00:00Z"}"#;
        let err = read(&[("old.json", old)]).unwrap_err().to_string();
        assert!(
            err.starts_with("old.json:1: a `reset` record without `instance`"),
            "{err}"
        );
        let bad_addr = SERVER.sent(0.0, "no_listener", "10.0.0.300:9", "10.0.0.1:1");
        let err = read(&[("h.json", &bad_addr)]).unwrap_err().to_string();
        assert_eq!(err, "h.json:1: `laddr` is `10.0.0.300`, not an address");
        let bad_ts = SERVER.start(0.0, &[]).replace(&at(0.0), "yesterday");
        let err = read(&[("h.json", &bad_ts)]).unwrap_err().to_string();
        assert!(err.contains("`yesterday` is not an RFC 3339 time"), "{err}");
        let other = r#"{"type":"correlation","matched":1}
{"type":"abort","instance":"x","host":"h","ts":"2026-01-01T10:00:00Z"}
{"type":"future","instance":"x","ts":"a while ago"}"#;
        let traces = read(&[("h.json", other)]).unwrap();
        assert_eq!(
            traces.len(),
            1,
            "the abort makes a trace, the rest is ignored"
        );
    }

    #[test]
    fn a_file_given_twice_is_an_error() {
        let text = SERVER.start(0.0, &[]);
        let err = read(&[("h.json", &text), ("h.json", &text)])
            .unwrap_err()
            .to_string();
        let expected =
            "a second `start` record for instance bbbbbbbbbbbbbbbb: is a file given twice?";
        assert!(err.contains(expected), "{err}");
    }

    #[test]
    fn an_instance_needs_one_host() {
        let other_host = End {
            host: "elsewhere",
            instance: SERVER.instance,
        };
        let text = format!("{}\n{}", SERVER.start(0.0, &[]), other_host.end(1.0, &[]));
        let err = read(&[("h.json", &text)]).unwrap_err().to_string();
        assert!(
            err.contains("is host `server` elsewhere, `elsewhere` here"),
            "{err}"
        );
        let hostless = r#"{"type":"lost","instance":"x","ts":"2026-01-01T10:00:00Z"}"#;
        let err = read(&[("h.json", hostless)]).unwrap_err().to_string();
        assert_eq!(err, "instance x: no record names its `host`");
    }
}
