//! correlate's output: JSON Lines, or a table with the counts after it. The only part of
//! correlate that writes.
use std::{
    io::{self, Write},
    net::IpAddr,
};

use serde_json::{Map, Value};

use super::annotate::{Listing, Row, Summary};
use crate::output::rfc3339;

/// Each reset as a JSON object, then the `correlation` record.
pub fn json(out: &mut impl Write, listing: &Listing, summary: &Summary) -> io::Result<()> {
    for row in &listing.rows {
        serde_json::to_writer(&mut *out, &listing.record(row))?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *out, &summary.record())?;
    out.write_all(b"\n")
}

const HEADER: [&str; 8] = [
    "TIME",
    "HOST",
    "DIR",
    "CAUSE",
    "PEER-CAUSE",
    "PAIRING",
    "LOCAL",
    "REMOTE",
];

/// One line a reset, its `why` under it, then the traces, the skews and the counts. Columns are
/// as wide as their widest entry: the whole listing is known before it is written.
pub fn table(out: &mut impl Write, listing: &Listing, summary: &Summary) -> io::Result<()> {
    // The columns and the why of each reset: what the widths need, not the whole record.
    let lines: Vec<([String; 8], Option<String>)> = listing
        .rows
        .iter()
        .map(|row| columns(row, &listing.record(row), summary))
        .collect();
    if !lines.is_empty() {
        let mut widths = HEADER.map(str::len);
        for (cells, _) in &lines {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let aligned = |cells: [&str; 8]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate().take(7) {
                text.push_str(&format!("{cell:<w$} ", w = widths[i]));
            }
            text + cells[7]
        };
        writeln!(out, "{}", aligned(HEADER))?;
        for (cells, why) in &lines {
            writeln!(out, "{}", aligned(cells.each_ref().map(String::as_str)))?;
            if let Some(why) = why {
                writeln!(out, "  └ {why}")?;
            }
        }
        writeln!(out)?;
    }
    footer(out, summary)
}

/// The table's columns for one reset, and its `why`.
fn columns(row: &Row, r: &Map<String, Value>, summary: &Summary) -> ([String; 8], Option<String>) {
    let text = |name: &str| {
        r.get(name)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    // Addresses as parsed: one spelling of each, whatever the agent wrote.
    let end = |addr: &str, port: &str| {
        let port = r.get(port).map_or("-".to_string(), Value::to_string);
        match text(addr).parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            Ok(a) => format!("{a}:{port}"),
            Err(_) => format!("{}:{port}", text(addr)),
        }
    };
    let wall = rfc3339(row.ts.into());
    let cells = [
        // Each host's own clock, as its agent wrote it; the order is the skew-corrected one.
        wall.get(11..23).unwrap_or(&wall).to_string(),
        summary.traces[row.id.trace].label.clone(),
        if text("direction") == "sent" {
            "SENT"
        } else {
            "RECV"
        }
        .to_string(),
        text("cause"),
        text("peer_cause"),
        row.status.name().to_string(),
        end("laddr", "lport"),
        end("raddr", "rport"),
    ];
    let why = r
        .get("why")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty());
    (cells, why.map(str::to_string))
}

fn footer(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    let host_width = s
        .traces
        .iter()
        .map(|t| t.host.chars().count())
        .max()
        .unwrap_or(0);
    writeln!(out, "traces:")?;
    for t in &s.traces {
        let until = if t.ended {
            ""
        } else {
            " (its last record: no end record)"
        };
        writeln!(
            out,
            "  {:<host_width$} {}  {} to {}{until}, {}",
            t.host,
            t.instance,
            t.start,
            t.end,
            count(t.resets, "reset")
        )?;
    }
    if s.skews.is_empty() {
        writeln!(out, "clock skew: not estimated (no received reset within --window of a sent one on its connection)")?;
    }
    for k in &s.skews {
        writeln!(
            out,
            "clock skew: {} {:+.3} ms (median of {})",
            k.label,
            k.ms,
            count(k.samples, "pair")
        )?;
    }
    writeln!(
        out,
        "matched: {}, injected: {}, lost_in_path: {}, unpaired: {}",
        count(s.matched, "pair"),
        s.injected,
        s.lost_in_path,
        s.unpaired
    )
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{
        annotate::{self, TraceLine},
        pairing::{correlate, Nat},
        trace::tests::{two_ends, CLIENT, SERVER},
    };

    fn render(json_lines: bool) -> String {
        let client = [
            // The server's clock, 3 s behind, read 10:00:05 then: inside its trace, which sent none.
            CLIENT.received(8.0, "peer_reset", "[fd00::1]:50001", "[fd00:0:0::2]:80"),
            CLIENT.received(13.0, "peer_reset", "[fd00::1]:50000", "[fd00::2]:80"),
        ];
        let server = [SERVER.sent(10.0, "app_abort_unread", "[fd00::2]:80", "[fd00::1]:50000")];
        let traces = two_ends(&client, &server);
        let c = correlate(&traces, &Nat::default(), 5_000_000_000);
        let (listing, summary) = (
            Listing::new(&traces, &c),
            annotate::Summary::new(&traces, &c),
        );
        let mut out = Vec::new();
        if json_lines {
            json(&mut out, &listing, &summary).unwrap();
        } else {
            table(&mut out, &listing, &summary).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_table_lists_each_reset_then_the_traces_and_counts() {
        let text = render(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "TIME         HOST   DIR  CAUSE            PEER-CAUSE       PAIRING  LOCAL           REMOTE",
                "10:00:08.000 client RECV injected         -                injected [fd00::1]:50001 [fd00::2]:80",
                "  └ the peer's trace (host server) covers this moment and shows no RST sent on this connection",
                "10:00:10.000 server SENT app_abort_unread -                matched  [fd00::2]:80    [fd00::1]:50000",
                "  └ app_abort_unread on this end",
                "10:00:13.000 client RECV peer_reset       app_abort_unread matched  [fd00::1]:50000 [fd00::2]:80",
                "  └ peer reset the connection in ESTABLISHED",
                "",
                "traces:",
                "  client aaaaaaaaaaaaaaaa  2026-01-01T10:00:00.000000000Z to 2026-01-01T10:02:00.000000000Z, 2 resets",
                "  server bbbbbbbbbbbbbbbb  2026-01-01T10:00:00.000000000Z to 2026-01-01T10:01:00.000000000Z, 1 reset",
                "clock skew: client->server +3000.000 ms (median of 1 pair)",
                "matched: 1 pair, injected: 1, lost_in_path: 0, unpaired: 0",
            ]
        );
    }

    #[test]
    fn the_footer_says_when_a_trace_has_no_end_record_or_no_skew_was_found() {
        let summary = Summary {
            traces: vec![TraceLine {
                label: "db".to_string(),
                host: "db".to_string(),
                instance: "0123456789abcdef".to_string(),
                start: "2026-01-01T10:00:00Z".to_string(),
                end: "2026-01-01T10:05:00Z".to_string(),
                ended: false,
                resets: 0,
            }],
            matched: 0,
            injected: 0,
            lost_in_path: 0,
            unpaired: 0,
            skews: vec![],
        };
        let mut out = Vec::new();
        footer(&mut out, &summary).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "traces:
  db 0123456789abcdef  2026-01-01T10:00:00Z to 2026-01-01T10:05:00Z (its last record: no end record), 0 resets
clock skew: not estimated (no received reset within --window of a sent one on its connection)
matched: 0 pairs, injected: 0, lost_in_path: 0, unpaired: 0
"
        );
    }

    #[test]
    fn json_is_one_object_a_reset_then_the_correlation_record() {
        let text = render(true);
        let values: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values.len(), 4);
        assert!(values[..3]
            .iter()
            .all(|v| v["type"] == "reset" && v["pairing"].is_object()));
        assert_eq!(
            values[1]["raddr"], "fd00::1",
            "addresses as the agent wrote them"
        );
        assert_eq!(values[0]["raddr"], "fd00:0:0::2");
        assert_eq!(values[3]["type"], "correlation");
        assert_eq!(values[3]["matched"], 1);
    }
}
