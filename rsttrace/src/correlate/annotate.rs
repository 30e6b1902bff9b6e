//! What correlate writes: each reset as its agent wrote it, updated where the other end's trace
//! changes the verdict and with its `pairing`, on one time line; then the `correlation` record.
use serde_json::{json, Map, Value};

use super::{
    pairing::{Correlation, ResetId, Status},
    trace::{Direction, Nanos, Trace},
};

/// One reset in the listing.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub id: ResetId,
    pub status: Status,
    /// Its own trace's clock (the listing's order is on the first trace's, through the skews).
    pub ts: Nanos,
}

/// Every reset of every trace in time order, a received reset right after the sent reset it
/// was matched with; each record is made when it is written.
pub struct Listing<'a> {
    traces: &'a [Trace],
    correlation: &'a Correlation,
    pub rows: Vec<Row>,
}

impl<'a> Listing<'a> {
    pub fn new(traces: &'a [Trace], correlation: &'a Correlation) -> Self {
        let offsets = correlation.offsets(traces.len());
        let at = |id: ResetId| traces[id.trace].resets[id.index].ts - offsets[id.trace];
        let mut rows = Vec::new();
        for (t, trace) in traces.iter().enumerate() {
            for (index, reset) in trace.resets.iter().enumerate() {
                let id = ResetId { trace: t, index };
                let pairing = correlation.pairing(id);
                // Once the skew is out, a pair's two times are equally likely either way
                // round; cause before effect reads better.
                let key = match (reset.direction, pairing.peer_reset) {
                    (Direction::Received, Some(sent)) => (at(sent), 1),
                    _ => (at(id), 0),
                };
                rows.push((
                    key,
                    Row {
                        id,
                        status: pairing.status,
                        ts: reset.ts,
                    },
                ));
            }
        }
        // Stable: resets of one moment keep their traces' order and each trace's own.
        rows.sort_by_key(|(key, _)| *key);
        let rows = rows.into_iter().map(|(_, row)| row).collect();
        Self {
            traces,
            correlation,
            rows,
        }
    }

    /// The reset's record as written, updated where the other end's trace changes the verdict,
    /// with its `pairing`.
    pub fn record(&self, row: &Row) -> Map<String, Value> {
        let (traces, c, id) = (self.traces, self.correlation, row.id);
        let reset = &traces[id.trace].resets[id.index];
        let pairing = c.pairing(id);
        let mut record = reset.record();
        let peer = pairing.peer_trace.map(|p| &traces[p]);
        let peer_record = pairing
            .peer_reset
            .map(|p| traces[p.trace].resets[p.index].record());
        let peer_field = |name: &str| peer_record.as_ref().and_then(|r| r.get(name)).cloned();
        match (pairing.status, reset.direction, peer) {
            (Status::Matched, Direction::Received, Some(peer)) => {
                matched(
                    &mut record,
                    &peer.host,
                    peer_field("cause").unwrap_or(Value::Null),
                );
            }
            (Status::Injected, _, Some(peer)) => injected(&mut record, &peer.host),
            _ => {}
        }
        let pairing = json!({
            "status": pairing.status.name(),
            "peer_host": peer.map(|p| &p.host),
            "peer_instance": peer.map(|p| &p.instance),
            "peer_ts": peer_field("ts"),
            "skew_ms": pairing.peer_trace.and_then(|p| c.skew(id.trace, p)).map(ms),
        });
        record.insert("pairing".to_string(), pairing);
        record
    }
}

fn text<'a>(record: &'a Map<String, Value>, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// A received reset whose sender's trace shows it sent: the sender's cause is its
/// `peer_cause`, and a one-end verdict of forgery gives way to the sender's record.
fn matched(record: &mut Map<String, Value>, peer_host: &str, sender_cause: Value) {
    if text(record, "cause") == "injected" {
        // What the agent says of a RST from the peer itself, by the state it came in.
        let cause = if text(record, "state") == "SYN_SENT" {
            "refused"
        } else {
            "peer_reset"
        };
        let why = format!(
            "the peer's trace (host {peer_host}) shows it sent this RST ({}); this end's evidence alone had said: {}",
            sender_cause.as_str().unwrap_or("cause unknown"),
            text(record, "why")
        );
        record.insert("cause".to_string(), cause.into());
        record.insert("origin".to_string(), "peer".into());
        record.insert("why".to_string(), why.into());
    }
    record.insert("peer_cause".to_string(), sender_cause);
}

/// A received reset the peer's trace shows no sign of sending.
fn injected(record: &mut Map<String, Value>, peer_host: &str) {
    let mut why = format!(
        "the peer's trace (host {peer_host}) covers this moment and shows no RST sent on this connection"
    );
    if text(record, "cause") == "injected" {
        why.push_str(&format!(
            "; this end's evidence agrees: {}",
            text(record, "why")
        ));
    }
    record.insert("cause".to_string(), "injected".into());
    record.insert("origin".to_string(), "network".into());
    record.insert("benign".to_string(), false.into());
    record.insert("why".to_string(), why.into());
}

/// Milliseconds, to the microsecond.
fn ms(ns: Nanos) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// A trace as the summary names it.
#[derive(Debug, PartialEq)]
pub struct TraceLine {
    /// The host, or host/instance where the inputs hold several traces of that host.
    pub label: String,
    pub host: String,
    pub instance: String,
    pub start: String,
    pub end: String,
    /// The end is the trace's end record (else its last record: the agent was stopped hard).
    pub ended: bool,
    pub resets: usize,
}

#[derive(Debug, PartialEq)]
pub struct SkewLine {
    /// `A->B`: how far A's clock runs ahead of B's.
    pub label: String,
    pub ms: f64,
    pub samples: usize,
}

/// The counts after the resets.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub traces: Vec<TraceLine>,
    /// Pairs: each is two resets.
    pub matched: usize,
    pub injected: usize,
    pub lost_in_path: usize,
    pub unpaired: usize,
    pub skews: Vec<SkewLine>,
}

impl Summary {
    pub fn new(traces: &[Trace], c: &Correlation) -> Self {
        let label = |t: &Trace| {
            if traces.iter().filter(|o| o.host == t.host).count() > 1 {
                format!("{}/{}", t.host, t.instance)
            } else {
                t.host.clone()
            }
        };
        let count = |status| {
            c.pairings
                .iter()
                .flatten()
                .filter(|p| p.status == status)
                .count()
        };
        Self {
            traces: traces
                .iter()
                .map(|t| TraceLine {
                    label: label(t),
                    host: t.host.clone(),
                    instance: t.instance.clone(),
                    start: t.start.as_ref().unwrap_or(&t.first).text.clone(),
                    end: t.end.as_ref().unwrap_or(&t.last).text.clone(),
                    ended: t.end.is_some(),
                    resets: t.resets.len(),
                })
                .collect(),
            matched: count(Status::Matched) / 2,
            injected: count(Status::Injected),
            lost_in_path: count(Status::LostInPath),
            unpaired: count(Status::Unpaired),
            skews: c
                .skews
                .iter()
                .map(|(&(a, b), s)| SkewLine {
                    label: format!("{}->{}", label(&traces[a]), label(&traces[b])),
                    ms: ms(s.ns),
                    samples: s.samples,
                })
                .collect(),
        }
    }

    /// The closing `correlation` record.
    pub fn record(&self) -> Value {
        json!({
            "type": "correlation",
            "traces": self.traces.iter().map(|t| json!({
                "host": t.host, "instance": t.instance, "start": t.start, "end": t.end, "resets": t.resets,
            })).collect::<Vec<_>>(),
            "matched": self.matched,
            "injected": self.injected,
            "lost_in_path": self.lost_in_path,
            "unpaired": self.unpaired,
            "skew_ms": self.skews.iter().map(|s| (s.label.clone(), json!(s.ms))).collect::<Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{
        pairing::{correlate, Nat},
        trace::tests::{at, client_got, read, server_sent, two_ends, End, CLIENT, SERVER},
    };

    fn correlated(client: &[String], server: &[String]) -> (Vec<Trace>, Correlation) {
        let traces = two_ends(client, server);
        let c = correlate(&traces, &Nat::default(), 5_000_000_000);
        (traces, c)
    }

    /// The same, judged forged by the client's own evidence.
    fn judged_injected(s: f64, port: u16, state: &str) -> String {
        let mut v: Value = serde_json::from_str(&client_got(s, port)).unwrap();
        v["cause"] = "injected".into();
        v["origin"] = "network".into();
        v["state"] = state.into();
        v["why"] =
            "RST came with TTL 64, the peer's segments with 63: a device in the path sent it"
                .into();
        v.to_string()
    }

    #[test]
    fn a_matched_reception_takes_the_senders_cause_and_its_trace_wins_over_one_end_evidence() {
        let (traces, c) = correlated(
            &[
                client_got(12.0, 50000),
                judged_injected(22.0, 50001, "ESTABLISHED"),
                judged_injected(32.0, 50002, "SYN_SENT"),
            ],
            &[
                server_sent(10.0, 50000),
                server_sent(20.0, 50001),
                server_sent(30.0, 50002),
            ],
        );
        let listing = Listing::new(&traces, &c);
        assert_eq!(listing.rows.len(), 6);
        let client: Vec<Map<String, Value>> = listing
            .rows
            .iter()
            .filter(|r| r.id.trace == 0)
            .map(|r| listing.record(r))
            .collect();
        let plain = &client[0];
        let verdict = (plain["cause"].as_str(), plain["peer_cause"].as_str());
        assert_eq!(verdict, (Some("peer_reset"), Some("app_abort_unread")));
        assert_eq!(
            plain["why"], "peer reset the connection in ESTABLISHED",
            "no verdict changed"
        );
        let pairing = json!({
            "status": "matched", "peer_host": "server", "peer_instance": SERVER.instance,
            "peer_ts": at(10.0), "skew_ms": 2000.0,
        });
        assert_eq!(plain["pairing"], pairing);
        let overruled = &client[1];
        let verdict = (overruled["cause"].as_str(), overruled["origin"].as_str());
        assert_eq!(verdict, (Some("peer_reset"), Some("peer")));
        assert_eq!(
            overruled["why"],
            "the peer's trace (host server) shows it sent this RST (app_abort_unread); this end's \
             evidence alone had said: RST came with TTL 64, the peer's segments with 63: a device \
             in the path sent it"
        );
        assert_eq!(
            client[2]["cause"], "refused",
            "a RST answering a SYN is a refusal"
        );
        // Every other field is re-emitted as written, in the agent's order.
        let keys: Vec<&str> = plain.keys().map(String::as_str).collect();
        assert_eq!(keys.first(), Some(&"type"));
        assert_eq!(keys.last(), Some(&"pairing"));
        assert_eq!(plain["evidence"], Value::Null);
        // The sender's own record gains only its pairing.
        let sender = listing.record(listing.rows.iter().find(|r| r.id.trace == 1).unwrap());
        assert_eq!(sender["cause"], "app_abort_unread");
        assert_eq!(sender["pairing"]["skew_ms"], -2000.0);
    }

    #[test]
    fn an_injected_reception_says_so_and_keeps_this_ends_evidence() {
        let (traces, c) = correlated(
            &[
                client_got(12.0, 50000),
                judged_injected(22.0, 50001, "ESTABLISHED"),
            ],
            &[],
        );
        let listing = Listing::new(&traces, &c);
        let r = &listing.record(&listing.rows[0]);
        let verdict = (
            r["cause"].as_str(),
            r["origin"].as_str(),
            r["peer_cause"].is_null(),
        );
        assert_eq!(verdict, (Some("injected"), Some("network"), true));
        assert_eq!(
            r["why"],
            "the peer's trace (host server) covers this moment and shows no RST sent on this connection"
        );
        let pairing = json!({
            "status": "injected", "peer_host": "server", "peer_instance": SERVER.instance,
            "peer_ts": null, "skew_ms": null,
        });
        assert_eq!(r["pairing"], pairing);
        let second = listing.record(&listing.rows[1]);
        let why = second["why"].as_str().unwrap();
        assert!(why.ends_with("; this end's evidence agrees: RST came with TTL 64, the peer's segments with 63: a device in the path sent it"), "{why}");
    }

    #[test]
    fn resets_are_listed_on_one_time_line_and_counted() {
        let elsewhere = CLIENT.sent(13.0, "no_listener", "10.0.0.1:9", "192.0.2.1:40000");
        let (traces, c) = correlated(
            &[client_got(12.0, 50000), elsewhere],
            &[server_sent(10.0, 50000), server_sent(40.0, 50009)],
        );
        let listing = Listing::new(&traces, &c);
        let order: Vec<(usize, String)> = listing
            .rows
            .iter()
            .map(|r| {
                (
                    r.id.trace,
                    listing.record(r)["ts"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // The server's resets moved 2 s later, onto the client's clock: its 10 s is the client's
        // 12 s, where its reception follows it, and its 40 s comes after the client's 13 s.
        let expected = [(1, at(10.0)), (0, at(12.0)), (0, at(13.0)), (1, at(40.0))];
        assert_eq!(order, expected);
        let summary = Summary::new(&traces, &c);
        let counts = (
            summary.matched,
            summary.injected,
            summary.lost_in_path,
            summary.unpaired,
        );
        assert_eq!(counts, (1, 0, 1, 1));
        let record = summary.record();
        assert_eq!(record["type"], "correlation");
        assert_eq!(record["skew_ms"], json!({"client->server": 2000.0}));
        let server = json!({
            "host": "server", "instance": SERVER.instance, "start": at(0.0), "end": at(60.0), "resets": 2,
        });
        assert_eq!(record["traces"][1], server);
    }

    #[test]
    fn two_traces_of_one_host_are_told_apart_by_instance() {
        let restarted = End {
            host: "client",
            instance: "cccccccccccccccc",
        };
        let text = [CLIENT.start(0.0, &[]), restarted.start(30.0, &[])].join("\n");
        let traces = read(&[("client.json", &text)]).unwrap();
        let summary = Summary::new(&traces, &correlate(&traces, &Nat::default(), 5_000_000_000));
        assert_eq!(summary.traces[1].label, "client/cccccccccccccccc");
        assert!(!summary.traces[1].ended);
        assert_eq!(summary.traces[1].end, at(30.0), "its last record");
    }
}
