//! "It came from the network" (issue 17): a client and a server on two hosts with a router
//! between them ([`Routed`]). Each host is traced by an rsttrace of its own, limited to its
//! namespace (`--netns`), with the per-segment evidence on (`--network-evidence`) and its records
//! kept in a file (`--output`), as an operator runs it on two machines; `rsttrace correlate` then
//! reads the two files. A segment from the other end crosses the router and arrives with a
//! TTL / hop limit of 63; one the router sends itself arrives with 64.
use std::{path::PathBuf, process::Command, time::Duration};

use rsttrace_tests::{
    again_if_the_kernel_skipped_runs, assert_report, exactly, require_root,
    routed::{correlate, End, Routed},
    temp_dir::TempDir,
    Family, Stim, Tracer,
};
use serde_json::Value;

use super::{PORT, T};

/// The hop count a segment the router sends itself arrives with.
const ROUTER_HOPS: u64 = 64;
/// The hop count a segment from the other end arrives with: one router on the way.
const PEER_HOPS: u64 = 63;
/// How long both traces run before a scenario and after it. Two hosts' clocks are known only
/// up to an estimate, so correlate takes a trace's word for a moment only well inside its span
/// (a second from either end): the scenario happens where each trace can vouch for it.
const MARGIN: Duration = Duration::from_millis(1500);

/// One rsttrace per host, each writing its records to a file of its own.
struct Traces {
    client: Tracer,
    server: Tracer,
    dir: TempDir,
}

/// What one host's rsttrace reported.
struct Trace {
    /// The resets and aborts of the host's namespace, checked by [`Routed::reports_of`].
    reports: Vec<Value>,
    /// Its `--output` file, which correlate reads.
    file: PathBuf,
}

impl Traces {
    fn start(routed: &Routed, name: &str) -> Self {
        let dir = TempDir::new(name);
        let start = |end: End| {
            let file = dir.join(file_name(end));
            Tracer::start(&["--netns", &routed.netns_path(end), "--network-evidence", "--output", file.to_str().unwrap()])
        };
        let traces = Traces { client: start(End::Client), server: start(End::Server), dir };
        std::thread::sleep(MARGIN);
        traces
    }

    /// Stop both rsttraces; each host's trace, the client's first. The directory of the files
    /// lives as long as the returned guard.
    fn stop(self, routed: &Routed) -> (Trace, Trace, TempDir) {
        std::thread::sleep(MARGIN);
        let Traces { client, server, dir } = self;
        let stop = |tracer: Tracer, end: End| {
            let (records, _) = tracer.stop();
            Trace { reports: routed.reports_of(end, records), file: dir.join(file_name(end)) }
        };
        let (client, server) = (stop(client, End::Client), stop(server, End::Server));
        (client, server, dir)
    }
}

fn file_name(end: End) -> &'static str {
    match end {
        End::Client => "client.json",
        End::Server => "server.json",
    }
}

/// The trace records in a host's file, which tell correlate what the trace covers: one `start`
/// and one `end`, of one instance, scoped to that host's namespace and listing its address.
/// Returns the instance.
fn assert_trace_records(trace: &Trace, routed: &Routed, end: End, f: Family) -> String {
    let text = std::fs::read_to_string(&trace.file).unwrap_or_else(|e| panic!("{}: {e}", trace.file.display()));
    let records: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON: {l}: {e}", trace.file.display()))).collect();
    let of = |event: &str| records.iter().filter(|r| r["type"] == "trace" && r["event"] == event).collect::<Vec<_>>();
    let (start, stop) = (of("start"), of("end"));
    assert!(start.len() == 1 && stop.len() == 1, "{end:?}: one trace start and one end expected in {}: {records:?}", trace.file.display());
    let instance = start[0]["instance"].as_str().unwrap_or_else(|| panic!("no instance: {}", start[0])).to_string();
    assert_eq!(stop[0]["instance"], instance.as_str(), "{}", stop[0]);
    assert_eq!(start[0]["scope_netns"].as_u64(), Some(routed.inode(end)), "{}", start[0]);
    let addr = routed.addr(end, f);
    assert!(start[0]["addresses"].as_array().is_some_and(|a| a.iter().any(|x| *x == addr.as_str())), "{end:?}'s trace does not list {addr}: {}", start[0]);
    for r in &records {
        assert_eq!(r["instance"], instance.as_str(), "{r}");
    }
    instance
}

/// A received reset's evidence: the hop counts of the RST and of the peer's own segments, and
/// whether they alone say the RST was forged.
fn assert_evidence(r: &Value, f: Family, rst_ttl: u64, peer_ttl: u64, decisive: bool) {
    let e = &r["evidence"];
    assert_eq!(e["rst_ttl"].as_u64(), Some(rst_ttl), "rst_ttl: {r}");
    assert_eq!(e["peer_ttl"].as_u64(), Some(peer_ttl), "peer_ttl: {r}");
    assert_eq!(e["peer_ttl_varied"], false, "{r}");
    // Each scenario has the peer send several segments: one alone could be a stray.
    assert!(e["peer_segments"].as_u64().is_some_and(|n| n >= 2), "peer_segments: {r}");
    assert_eq!(e["decisive"], decisive, "decisive: {r}");
    // Decisive hop counts are named in `why`, whatever other ground it gives first.
    let hops = format!("RST came with {} {rst_ttl}, the peer's segments with {peer_ttl}", if f == Family::V6 { "hop limit" } else { "TTL" });
    assert_eq!(r["why"].as_str().is_some_and(|w| w.contains(&hops)), decisive, "{r}");
    if f == Family::V6 {
        assert!(e["rst_ip_id"].is_null() && e["peer_ip_id"].is_null(), "IPv6 has no IP ID: {r}");
    }
}

/// `rsttrace correlate` on the two hosts' files: its resets, and its one `correlation` record,
/// which must count two traces.
fn correlate_hosts(client: &Trace, server: &Trace) -> (Vec<Value>, Value) {
    let out = correlate(&[&client.file, &server.file]);
    let resets: Vec<Value> = out.iter().filter(|r| r["type"] == "reset").cloned().collect();
    let summary: Vec<&Value> = out.iter().filter(|r| r["type"] == "correlation").collect();
    assert_eq!(summary.len(), 1, "one correlation record expected: {out:?}");
    assert_eq!(summary[0]["traces"].as_array().map(Vec::len), Some(2), "{}", summary[0]);
    (resets, summary[0].clone())
}

/// The correlation's counts: `matched` counts pairs, the others resets.
fn assert_counts(summary: &Value, matched: u64, injected: u64, lost_in_path: u64, unpaired: u64) {
    let counts = ["matched", "injected", "lost_in_path", "unpaired"].map(|k| summary[k].as_u64());
    assert_eq!(counts, [Some(matched), Some(injected), Some(lost_in_path), Some(unpaired)], "{summary}");
}

/// The reset that `end`'s host reported, among correlate's.
fn of_host<'a>(resets: &'a [Value], routed: &Routed, end: End, direction: &str) -> &'a Value {
    let found: Vec<&Value> = resets.iter().filter(|r| r["netns"] == routed.inode(end) && r["direction"] == direction).collect();
    assert_eq!(found.len(), 1, "one {direction} reset of the {end:?} expected: {resets:?}");
    found[0]
}

/// A server in `mode` (see rststim) listening on the server host.
fn serve(routed: &Routed, f: Family, mode: &str) -> Stim {
    let server = Stim::spawn(&routed.server, &["listen", &routed.addr(End::Server, f), PORT, mode]);
    server.expect_line("ready", T);
    server
}

/// A client on the client host connecting to the server, with rststim's `options`.
fn connect(routed: &Routed, f: Family, options: &[&str]) -> Stim {
    let server = routed.addr(End::Server, f);
    let mut args = vec!["connect", &server, PORT];
    args.extend_from_slice(options);
    Stim::spawn(&routed.client, &args)
}

/// The router forges exact-sequence RSTs to both ends while the server streams to the client:
/// each end receives a RST in its peer's name, one hop closer than its peer. Each host's trace
/// alone says it was injected; the two together say neither end sent one.
fn forged_resets_to_both_ends(subnet: u8, f: Family) {
    require_root();
    let routed = Routed::new(subnet);
    let traces = Traces::start(&routed, &format!("forged-{}", f.name()));
    let server = serve(&routed, f, "stream");
    let mut forger = Stim::spawn(&routed.router, &["forge-rst", &routed.addr(End::Server, f), PORT]);
    forger.expect_line("ready", T);
    let client = connect(&routed, f, &[]);
    client.expect_line("ready", T);
    forger.expect_line("flowing", T);
    // The device blocks the connection, then resets both ends: no genuine segment still in
    // flight lands after a forged RST (its end would answer it with a RST of its own).
    let _block = routed.router_filter(&[&format!("tcp sport {PORT} drop"), &format!("tcp dport {PORT} drop")]);
    forger.go();
    forger.expect_line("forged", T);
    // What the test stands on, seen at the router: forwarded segments and forged RSTs differ
    // by one hop.
    assert_eq!(forger.expect_line("ttl", T), format!("ttl forwarded {PEER_HOPS} forged {ROUTER_HOPS}"));
    // Both sockets were reset.
    assert_eq!(client.expect_line("errno", T), "errno 104");
    assert_eq!(server.expect_line("errno", T), "errno 104");
    let (on_client, on_server, _dir) = traces.stop(&routed);

    for (trace, end, pid) in [(&on_client, End::Client, client.pid()), (&on_server, End::Server, server.pid())] {
        let [received] = exactly(&trace.reports, ["received:injected"]);
        assert_report(received, f, "network", Some(pid));
        assert_evidence(received, f, ROUTER_HOPS, PEER_HOPS, true);
        assert_trace_records(trace, &routed, end, f);
    }

    let (resets, summary) = correlate_hosts(&on_client, &on_server);
    exactly(&resets, ["received:injected", "received:injected"]);
    for end in [End::Client, End::Server] {
        let r = of_host(&resets, &routed, end, "received");
        assert_eq!((r["pairing"]["status"].as_str(), r["origin"].as_str()), (Some("injected"), Some("network")), "{end:?}: {r}");
    }
    assert_counts(&summary, 0, 2, 0, 0);
}

#[test]
fn forged_resets_to_both_ends_are_injected_by_their_hop_count() {
    again_if_the_kernel_skipped_runs(|| {
        forged_resets_to_both_ends(90, Family::V4);
    });
}

#[test]
fn forged_resets_to_both_ends_over_ipv6_are_injected_by_their_hop_limit() {
    again_if_the_kernel_skipped_runs(|| {
        forged_resets_to_both_ends(93, Family::V6);
    });
}

/// The router's firewall starts rejecting the client's data mid-connection with `reject with
/// tcp reset` in its forward chain: the client receives a RST in the server's name, one hop
/// closer than the server; the server hears nothing and sends nothing. The server's trace
/// covers that moment without a RST sent: correlate says injected too.
#[test]
fn a_reject_in_the_routers_forward_chain_is_injected_and_the_server_sent_none() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let f = Family::V4;
        let routed = Routed::new(91);
        let traces = Traces::start(&routed, "router-reject");
        // Kept until the traces stop: its exit would close the connection.
        let _server = serve(&routed, f, "greet");
        let mut client = connect(&routed, f, &["--wait-go", "--send", "100"]);
        client.expect_line("ready", T);
        // The greeting crosses the router meanwhile: the client host sees the server's hop count.
        std::thread::sleep(Duration::from_millis(300));
        let _reject = routed.router_filter(&[&format!("tcp dport {PORT} reject with tcp reset")]);
        client.go();
        assert_eq!(client.expect_line("errno", T), "errno 104");
        // The server never learned: its end of the connection is still established.
        let established = established(&routed, End::Server);
        assert!(established.contains(&routed.addr(End::Client, f)), "the server's connection should be open: {established}");
        // Stopped before the server exits: its FIN would draw the client host's no-socket RST.
        let (on_client, on_server, _dir) = traces.stop(&routed);

        let [received] = exactly(&on_client.reports, ["received:injected"]);
        assert_report(received, f, "network", Some(client.pid()));
        assert_evidence(received, f, ROUTER_HOPS, PEER_HOPS, true);
        exactly(&on_server.reports, []);
        assert_trace_records(&on_client, &routed, End::Client, f);
        assert_trace_records(&on_server, &routed, End::Server, f);

        let (resets, summary) = correlate_hosts(&on_client, &on_server);
        let [r] = exactly(&resets, ["received:injected"]);
        assert_eq!((r["pairing"]["status"].as_str(), r["origin"].as_str()), (Some("injected"), Some("network")), "{r}");
        assert_counts(&summary, 0, 1, 0, 0);
    });
}

/// The router's firewall rejects the connection both ways with `reject with tcp reset`: the
/// server's next segment draws a RST to the server, and, later, the client's next one a RST to
/// the client, whose peer is reset and gone by then. Both ends are on this host and neither
/// stack sent a RST: one trace of the host, without the hop counts, calls both injected.
#[test]
fn a_firewall_resetting_each_end_in_turn_is_injected_at_both() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let routed = Routed::new(94);
        for f in [Family::V4, Family::V6] {
            let tracer = Tracer::start(&[]);
            let server = serve(&routed, f, "stream");
            let mut client = connect(&routed, f, &["--wait-go", "--send", "100"]);
            client.expect_line("ready", T);
            std::thread::sleep(Duration::from_millis(300));
            let reject = routed.router_filter(&[&format!("tcp sport {PORT} reject with tcp reset"), &format!("tcp dport {PORT} reject with tcp reset")]);
            assert_eq!(server.expect_line("errno", T), "errno 104");
            std::thread::sleep(Duration::from_millis(500));
            client.go();
            assert_eq!(client.expect_line("errno", T), "errno 104");
            drop(reject);
            std::thread::sleep(MARGIN);
            let (records, _) = tracer.stop();
            let reports: Vec<Value> = routed.reports_of_both(records).into_iter().filter(|r| r["family"] == f.name()).collect();
            exactly(&reports, ["received:injected", "received:injected"]);
            for (end, pid) in [(End::Server, server.pid()), (End::Client, client.pid())] {
                let r = reports.iter().find(|r| r["laddr"] == routed.addr(end, f)).unwrap_or_else(|| panic!("no report at the {end:?}: {reports:?}"));
                assert_report(r, f, "network", Some(pid));
            }
        }
    });
}

/// A genuine abort through the router (the client closes with SO_LINGER 0): the RST crosses the
/// router like the client's other segments, one hop count for all, so the server's evidence
/// (several segments of the client's) decides nothing and the reset stays the peer's; correlate
/// pairs it with the client's.
#[test]
fn a_genuine_abort_through_the_router_keeps_its_cause_on_both_ends() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let f = Family::V4;
        let routed = Routed::new(92);
        let traces = Traces::start(&routed, "router-abort");
        let server = serve(&routed, f, "hold");
        // Three writes 100 ms apart, then the abort: the server sees the client's hop count on
        // several segments first.
        let mut client = connect(&routed, f, &["--send-after", "0", "--linger0"]);
        client.wait(T);
        // The abort reached the server.
        assert_eq!(server.expect_line("errno", T), "errno 104");
        let (on_client, on_server, _dir) = traces.stop(&routed);

        let [sent] = exactly(&on_client.reports, ["sent:app_abort_linger0"]);
        assert_report(sent, f, "application", Some(client.pid()));
        let [received] = exactly(&on_server.reports, ["received:peer_reset"]);
        assert_report(received, f, "peer", Some(server.pid()));
        assert_evidence(received, f, PEER_HOPS, PEER_HOPS, false);
        let client_instance = assert_trace_records(&on_client, &routed, End::Client, f);
        let server_instance = assert_trace_records(&on_server, &routed, End::Server, f);

        let (resets, summary) = correlate_hosts(&on_client, &on_server);
        exactly(&resets, ["sent:app_abort_linger0", "received:peer_reset"]);
        let received = of_host(&resets, &routed, End::Server, "received");
        assert_eq!(received["pairing"]["status"], "matched", "{received}");
        assert_eq!(received["peer_cause"], "app_abort_linger0", "{received}");
        assert_eq!(received["pairing"]["peer_instance"], client_instance.as_str(), "{received}");
        let sent = of_host(&resets, &routed, End::Client, "sent");
        assert_eq!(sent["pairing"]["status"], "matched", "{sent}");
        assert_eq!(sent["pairing"]["peer_instance"], server_instance.as_str(), "{sent}");
        assert_counts(&summary, 1, 0, 0, 0);
    });
}

/// The server aborts (it closes with the client's request unread) and its RST is held up on the
/// way: the router drops it, and a moment later sends the client the same RST (the server's
/// address, the sequence number the client expects), as a slow or shaped path delivers it late.
/// The server's stack did send that RST: the client's reset is the peer's, with the server's
/// cause, not a forgery.
#[test]
fn a_genuine_rst_delayed_on_the_way_is_the_peers() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let routed = Routed::new(95);
        for f in [Family::V4, Family::V6] {
            let tracer = Tracer::start(&[]);
            let server = serve(&routed, f, "unread-close");
            let mut delayer = Stim::spawn(&routed.router, &["forge-rst", &routed.addr(End::Server, f), PORT]);
            delayer.expect_line("ready", T);
            let mut client = connect(&routed, f, &["--send", "100", "--wait-go"]);
            client.expect_line("ready", T);
            let held_up = routed.router_filter(&[&format!("tcp sport {PORT} tcp flags rst drop")]);
            client.go();
            // The server closes 50 ms after the request arrives; the forger settles 200 ms
            // after `go`. The RST comes 300 ms or more late: well past the 100 ms a RST and its
            // peer's pair within, within the 1 s of a late one.
            std::thread::sleep(Duration::from_millis(100));
            delayer.go();
            delayer.expect_line("forged", T);
            assert_eq!(client.expect_line("errno", T), "errno 104");
            drop(held_up);
            std::thread::sleep(Duration::from_millis(300));
            let (records, _) = tracer.stop();
            let reports: Vec<Value> = routed.reports_of_both(records).into_iter().filter(|r| r["family"] == f.name()).collect();
            let [sent, received] = exactly(&reports, ["sent:app_abort_unread", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(server.pid()));
            assert_report(received, f, "peer", Some(client.pid()));
            assert_eq!(received["peer_cause"], "app_abort_unread", "{received}");
        }
    });
}

/// `ss`'s established TCP connections in `end`'s namespace.
fn established(routed: &Routed, end: End) -> String {
    let out = Command::new("ip").args(["netns", "exec", routed.ns(end), "ss", "-Htn", "state", "established"]).output().expect("run ss");
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
