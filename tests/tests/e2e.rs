//! End-to-end: the real rsttrace against the real kernel, resets provoked between two network
//! namespaces, reports asserted. Run as root with `--test-threads=1` (`cargo xtask test`).
use std::time::Duration;

use rsttrace_tests::{
    again_if_the_kernel_skipped_runs, assert_kernel_reason, assert_report, exactly, exactly_with_optional, in_ns, overflow_accept_queue, require_root, send_reset_format, Cgroup, Family, Net, Stim, Tracer,
    FAMILIES,
};
use rsttrace_common::{TupleKey, TUPLE_SLOT_BITS};
use serde_json::Value;

// In a directory of its own: cargo would build tests/tests/network.rs as a test program apart
// from e2e, which the kernel matrix (`cargo xtask vm-test`) does not run.
#[path = "e2e/network.rs"]
mod network;

const PORT: &str = "8080";
const CLOSED_PORT: &str = "9";
const T: Duration = Duration::from_secs(20);

fn listen(net: &Net, f: Family, mode: &str) -> Stim {
    let s = Stim::spawn(&net.server, &["listen", &net.server_addr(f), PORT, mode]);
    s.expect_line("ready", T);
    s
}

fn client(net: &Net, f: Family, port: &str, opts: &[&str]) -> Stim {
    let mut args = vec!["connect".to_string(), net.server_addr(f), port.to_string()];
    args.extend(opts.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Stim::spawn(&net.client, &args)
}

/// A client that connects, waits while the server's firewall gets `rule`, then carries on and
/// must end with `errno`. Returns the client's and the server's pids. The server exits last,
/// once its firewall is gone and more than an echo's moment after the client's end (a crossing
/// is told apart from a sequel by time): see [`assert_teardown`].
fn client_then_filter(net: &Net, f: Family, opts: &[&str], rule: &str, errno: &str) -> Vec<u64> {
    let server = listen(net, f, "hold");
    let mut opts = opts.to_vec();
    opts.push("--wait-go");
    let mut c = client(net, f, PORT, &opts);
    c.expect_line("ready", T);
    let filter = net.server_filter("input", rule);
    c.go();
    assert_eq!(c.expect_line("errno", T), errno);
    drop(filter);
    std::thread::sleep(Duration::from_millis(1200));
    vec![c.pid(), server.pid()]
}

/// How the client's end came before the server's FIN: what the no-socket RST's `why` says of
/// it, whether that RST is benign (it only repeats what the client's report said), and what the
/// server's report says of it.
struct ClientEnd {
    no_socket_says: &'static str,
    benign: bool,
    server_told: &'static str,
}

/// A keepalive timeout's end: its RST dropped on the way, the server's FIN draws the echo.
const KEEPALIVE_END: ClientEnd = ClientEnd {
    no_socket_says: "(keepalive_timeout): that RST never reached the peer",
    benign: true,
    server_told: "(no_socket: the peer's end reset it earlier (keepalive_timeout), a RST that never got here)",
};

/// The server of [`client_then_filter`] exits after its client's connection died: its FIN finds
/// no socket on the client host, which answers with a RST that the server receives.
/// The no-socket RST names the client, whose connection that was, and how it ended there; the
/// server's report says so too.
fn assert_teardown(no_socket: &Value, received: &Value, f: Family, pids: &[u64], end: ClientEnd) {
    let (client, server) = (pids[0], pids[1]);
    assert_report(no_socket, f, "stack", Some(client));
    assert_eq!(no_socket["peer_cause"], Value::Null);
    assert!(no_socket["why"].as_str().unwrap().contains(end.no_socket_says), "{no_socket}");
    assert_eq!(no_socket["benign"], end.benign, "{no_socket}");
    assert_report(received, f, "peer", Some(server));
    assert_eq!(received["peer_cause"], "no_socket");
    assert_eq!(received["benign"], false, "{received}");
    assert!(received["why"].as_str().unwrap().contains(end.server_told), "{received}");
    assert_eq!((&no_socket["raddr"], &no_socket["rport"]), (&received["laddr"], &received["lport"]));
}

/// Run `scenario` for IPv4 and IPv6 under one tracer; returns this test's reports per family.
/// The tracer samples how segments arrive (`--network-evidence`): every genuine reset of every
/// scenario must keep its cause with the forged-RST evidence on (none may turn `injected`), and
/// the per-segment hook runs on every kernel of the matrix.
fn traced(subnet: u8, scenario: impl Fn(&Net, Family) -> Vec<u64>) -> Vec<(Family, Vec<Value>, Vec<u64>)> {
    require_root();
    let net = Net::new(subnet);
    let tracer = Tracer::start(&["--network-evidence"]);
    let pids: Vec<Vec<u64>> = FAMILIES.iter().map(|f| scenario(&net, *f)).collect();
    let (reports, stderr) = tracer.stop();
    if std::env::var_os("RSTTRACE_TEST_STDERR").is_some() {
        eprintln!("{stderr}");
    }
    let mine = net.reports_of_this_test(reports);
    FAMILIES
        .iter()
        .zip(pids)
        .map(|(f, pids)| (*f, mine.iter().filter(|r| r["family"] == f.name()).cloned().collect(), pids))
        .collect()
}

/// The port's only listener is an IPv6 socket on `::` with IPV6_V6ONLY (asyncio's default for
/// `::`), and the client connects over IPv4: no socket takes the SYN, so the reset is nobody's,
/// not the listener owner's, and the why says what listens instead.
#[test]
fn a_syn_over_ipv4_to_an_ipv6_only_listener_is_no_listener_and_nobodys() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(79);
        let tracer = Tracer::start(&[]);
        let server = Stim::spawn(&net.server, &["listen", "::", PORT, "hold+v6only"]);
        server.expect_line("ready", T);
        let c = client(&net, Family::V4, PORT, &[]);
        assert_eq!(c.expect_line("errno", T), "errno 111");
        let (reports, _) = tracer.stop();
        let reports = net.reports_of_this_test(reports);
        let [sent, received] = exactly(&reports, ["sent:no_listener", "received:refused"]);
        assert_report(sent, Family::V4, "stack", None);
        assert_eq!(sent["attribution"], "none", "{sent}");
        assert!(sent["why"].as_str().unwrap().contains("on [::], takes IPv6 only"), "{sent}");
        assert_report(received, Family::V4, "peer", Some(c.pid()));
        drop(server);
    });
}

/// The client renames itself once connected (a process setting its title); the server's abort
/// then resets it in the softirq: the report names the owner as it is called now, not as the
/// kernel side learned it when it connected.
#[test]
fn a_received_reset_names_its_owner_as_it_is_called_now() {
    again_if_the_kernel_skipped_runs(|| {
        for (_f, reports, pids) in traced(82, |net, f| {
            let mut server = listen(net, f, "linger0-on-go");
            let c = client(net, f, PORT, &["--rename", "renamed"]);
            c.expect_line("ready", T);
            server.go();
            assert_eq!(c.expect_line("errno", T), "errno 104");
            // Reported while the client lives on (a report waits 150 ms for what follows, and
            // an idle agent reads its ring buffer once a second).
            std::thread::sleep(Duration::from_millis(2500));
            vec![c.pid()]
        }) {
            let [_, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_eq!((received["pid"].as_u64(), received["comm"].as_str()), (Some(pids[0]), Some("renamed")), "{received}");
        }
    });
}

#[test]
fn closed_port_no_listener_and_refused() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(1, |net, f| {
            let c = client(net, f, CLOSED_PORT, &[]);
            assert_eq!(c.expect_line("errno", T), "errno 111");
            vec![c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:no_listener", "received:refused"]);
            assert_report(sent, f, "stack", None);
            assert_kernel_reason(sent, "NO_SOCKET");
            assert_eq!(sent["state"], "CLOSE");
            assert_eq!(sent["lport"], 9);
            assert_eq!(sent["attribution"], "none");
            assert_report(received, f, "peer", Some(pids[0]));
            assert_eq!(received["state"], "SYN_SENT");
            assert_eq!(received["rport"], 9);
            assert_eq!(received["lport"], sent["rport"]);
            assert_eq!(received["laddr"], sent["raddr"]);
            assert_eq!(received["peer_cause"], "no_listener");
            // The two ends live in different namespaces.
            assert_ne!(received["netns"], sent["netns"]);
        }
    });
}

/// The socket is closed by a thread that named itself, and its process exits right after: the
/// report names the process (`comm`), and the thread apart (`thread`) where the report names the
/// thread that acted (kernels with reasons: the close is known to run in the owner's call), as
/// the kernel had them, since `/proc` no longer knows either when the report is written.
#[test]
fn a_thread_that_named_itself_is_reported_under_its_process() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in closed_with_unread_data(32, "unread-close-in-a-named-thread") {
            let [sent, _] = exactly(&reports, ["sent:app_abort_unread", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            let thread = (sent["attribution"] == "current_task").then_some("rstworker");
            assert_eq!((sent["comm"].as_str(), sent["thread"].as_str()), (Some("rststim"), thread), "{sent}");
            assert!(sent["why"].as_str().unwrap().starts_with(&format!("rststim[{}]", pids[0])), "{sent}");
        }
    });
}

/// A server in `mode` closes a connection with the 100 bytes its client sent unread; the client
/// is told ECONNRESET. The pids are the server's and the client's.
fn closed_with_unread_data(subnet: u8, mode: &str) -> Vec<(Family, Vec<Value>, Vec<u64>)> {
    traced(subnet, |net, f| {
        let server = listen(net, f, mode);
        let c = client(net, f, PORT, &["--send", "100"]);
        assert_eq!(c.expect_line("errno", T), "errno 104");
        vec![server.pid(), c.pid()]
    })
}

#[test]
fn close_with_unread_data_is_app_abort_unread() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in closed_with_unread_data(2, "unread-close") {
            let [sent, received] = exactly(&reports, ["sent:app_abort_unread", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_kernel_reason(sent, "TCP_ABORT_ON_CLOSE");
            assert_report(received, f, "peer", Some(pids[1]));
            assert_eq!(received["peer_cause"], "app_abort_unread");
            assert_eq!(received["state"], "ESTABLISHED");
        }
    });
}

/// A server that ends with a connection open and the client's data unread in it: the kernel
/// closes the socket in the process's exit, and the report says how the process ended, with the
/// exit status or the signal that killed it (`kill -9`, an OOM kill, a crash).
#[test]
fn a_server_ending_with_unread_data_is_said_to_have_exited_or_been_killed() {
    again_if_the_kernel_skipped_runs(|| {
        let exits = |net: &Net, f: Family| {
            let server = listen(net, f, "exit-unread");
            let c = client(net, f, PORT, &["--send", "10"]);
            assert_eq!(c.expect_line("errno", T), "errno 104");
            vec![server.pid(), c.pid()]
        };
        let killed = |net: &Net, f: Family| {
            let server = listen(net, f, "hold-unread");
            let c = client(net, f, PORT, &["--send", "10"]);
            server.expect_line("unread", T);
            let pid = server.pid();
            drop(server); // SIGKILL
            assert_eq!(c.expect_line("errno", T), "errno 104");
            vec![pid, c.pid()]
        };
        for (subnet, ended) in [(50, "exited (status 3)"), (51, "was killed by SIGKILL")] {
            let runs = if subnet == 50 { traced(subnet, exits) } else { traced(subnet, killed) };
            for (f, reports, pids) in runs {
                let [sent, received] = exactly(&reports, ["sent:app_abort_unread", "received:peer_reset"]);
                assert_report(sent, f, "application", Some(pids[0]));
                let why = format!("rststim[{}] {ended} with unread data in the socket: the kernel closed it", pids[0]);
                assert_eq!(sent["why"], why.as_str(), "{sent}");
                assert_report(received, f, "peer", Some(pids[1]));
                assert_eq!(received["peer_cause"], "app_abort_unread");
            }
        }
    });
}

#[test]
fn so_linger_zero_is_app_abort_linger0_not_tcp_state() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(3, |net, f| {
            let server = listen(net, f, "linger0");
            let c = client(net, f, PORT, &["--send", "10"]);
            assert_eq!(c.expect_line("errno", T), "errno 104");
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_kernel_reason(sent, "TCP_STATE");
            assert_eq!(sent["benign"], false, "a server's abort: {sent}");
            assert_report(received, f, "peer", Some(pids[1]));
            assert_eq!(received["peer_cause"], "app_abort_linger0");
        }
    });
}

/// An abort storm cycles through the ephemeral ports and meets the same 4-tuple again within a
/// fraction of a second. Here one client port is aborted by the server five times, about 40 ms
/// apart: the later aborts are read before the first received RST is judged (150 ms after it),
/// yet every received RST finds its own peer's RST, and none is called injected.
#[test]
fn aborts_that_reuse_one_4_tuple_in_quick_succession_are_each_the_peers() {
    again_if_the_kernel_skipped_runs(|| {
        const ABORTS: usize = 5;
        for (_, reports, pids) in traced(38, |net, f| {
            let server = listen(net, f, "linger0");
            let mut pids = vec![server.pid()];
            for _ in 0..ABORTS {
                let c = client(net, f, PORT, &["--send", "10", "--local-port", "40038"]);
                assert_eq!(c.expect_line("errno", T), "errno 104");
                pids.push(c.pid());
                std::thread::sleep(Duration::from_millis(40));
            }
            pids
        }) {
            let sent: Vec<&Value> = reports.iter().filter(|r| r["direction"] == "sent").collect();
            let received: Vec<&Value> = reports.iter().filter(|r| r["direction"] == "received").collect();
            assert_eq!((sent.len(), received.len()), (ABORTS, ABORTS), "{reports:?}");
            for r in &sent {
                assert_eq!((r["cause"].as_str(), r["pid"].as_u64()), (Some("app_abort_linger0"), Some(pids[0])), "{r}");
            }
            for r in &received {
                assert_eq!((r["cause"].as_str(), r["peer_cause"].as_str(), r["lport"].as_u64()), (Some("peer_reset"), Some("app_abort_linger0"), Some(40038)), "{r}");
            }
            // Each client's own, whatever order they were written in.
            let mut owners: Vec<u64> = received.iter().filter_map(|r| r["pid"].as_u64()).collect();
            owners.sort();
            let mut clients = pids[1..].to_vec();
            clients.sort();
            assert_eq!(owners, clients, "{received:?}");
        }
    });
}

/// A forking server (inetd, sshd, a prefork server): the process that accepted the connection
/// hands it to a child and closes its copy. Reset before the child used it, the connection is
/// the child's, found by the socket's file (by the kernel: rsttrace keeps no privilege to read
/// a root process's `/proc/PID/fd`), not the listener's owner's.
#[test]
fn a_connection_reset_before_the_forked_child_holding_it_used_it_is_the_childs() {
    again_if_the_kernel_skipped_runs(|| {
        abort_to_a_forked_child(37, "fork-hold");
    });
}

/// The same server, but its child waits in recv() and closes the connection the moment the
/// peer's RST fails it, before the agent reads the reset: the socket had no owner on record and
/// no process holds it by the time anyone could look, so the kernel names the child as it lets
/// go of the socket (`tcp:tcp_destroy_sock`); the listener's owner, the parent, is not it.
#[test]
fn a_connection_its_forked_child_closes_as_soon_as_it_is_reset_is_the_childs() {
    again_if_the_kernel_skipped_runs(|| {
        abort_to_a_forked_child(39, "fork-read-close");
    });
}

/// A client aborts (SO_LINGER 0) its connection to a forking server of `mode`: the received
/// reset is the child's, found by its socket's file.
fn abort_to_a_forked_child(subnet: u8, mode: &str) {
    for (f, reports, pids) in traced(subnet, |net, f| {
        let server = listen(net, f, mode);
        let mut c = client(net, f, PORT, &["--wait-go", "--linger0"]);
        c.expect_line("ready", T);
        let child: u64 = server.expect_line("child", T).trim_start_matches("child ").parse().expect("child pid");
        c.go();
        c.wait(T);
        vec![server.pid(), c.pid(), child]
    }) {
        let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
        assert_report(sent, f, "application", Some(pids[1]));
        assert_report(received, f, "peer", Some(pids[2]));
        assert_eq!(received["attribution"], "socket_file", "{received}");
    }
}

#[test]
fn data_after_close_blames_the_closer_not_the_sender() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(4, |net, f| {
            let server = listen(net, f, "close-first");
            let c = client(net, f, PORT, &["--send-after", "300"]);
            c.expect_line("errno", T);
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:data_after_close", "received:peer_reset"]);
            // The RST runs in the client's softirq; the socket belonged to the server.
            assert_report(sent, f, "application", Some(pids[0]));
            // The FIN's acknowledgment turns the closed socket into a TIME_WAIT remnant, unless it
            // waited in the backlog of close() itself (seen in a slow guest): the socket then stays
            // a full FIN_WAIT2 socket, which the data aborts (see
            // `data_after_close_on_an_orphaned_fin_wait2_socket_is_one_sent_reset`). Either way the
            // closer is blamed.
            match sent["state"].as_str() {
                Some("TIME_WAIT") => assert_kernel_reason(sent, "TCP_TIMEWAIT_SOCKET"),
                Some("CLOSE") => assert_kernel_reason(sent, "TCP_ABORT_ON_DATA"),
                _ => panic!("neither a TIME_WAIT remnant nor a FIN_WAIT2 socket aborted on data: {sent}"),
            }
            assert_ne!(sent["current_pid"].as_u64(), Some(pids[0]), "scenario should have owner != current: {sent}");
            assert_report(received, f, "peer", Some(pids[1]));
        }
    });
}

/// The server closes, then is killed; the client's later data meets what is left of the
/// connection: the closer is blamed, and the why says it has exited since (a kill, a crash or a
/// restart is what to look into, not an idle timeout).
#[test]
fn data_after_close_says_when_the_closer_has_exited_since() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(55, |net, f| {
            let server = listen(net, f, "close-first");
            let mut c = client(net, f, PORT, &["--send-after", "300", "--wait-go"]);
            c.expect_line("ready", T);
            std::thread::sleep(Duration::from_millis(300));
            let server_pid = server.pid();
            drop(server);
            c.go();
            c.expect_line("errno", T);
            vec![server_pid, c.pid()]
        }) {
            let [sent, _] = exactly(&reports, ["sent:data_after_close", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert!(sent["why"].as_str().unwrap().contains(&format!("[{}] has exited since", pids[0])), "{sent}");
        }
    });
}

#[test]
fn keepalive_timeout_runs_in_a_timer_but_names_the_owner() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(5, |net, f| {
            client_then_filter(net, f, &["--keepalive", "1,1,2"], "tcp dport 8080 drop", "errno 110")
        }) {
            // The keepalive RST (the server's firewall drops it) and nothing else for it: not also an
            // abort. Then the server exits: its FIN finds no socket on the client host.
            let [sent, no_socket, received] = exactly(&reports, ["sent:keepalive_timeout", "sent:no_socket", "received:peer_reset"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_kernel_reason(sent, "TCP_KEEPALIVE_TIMEOUT");
            assert_eq!(sent["attribution"], "socket_owner");
            assert_teardown(no_socket, received, f, &pids, KEEPALIVE_END);
        }
    });
}

/// A launcher connects, hands the connection over to a worker (a forked child) and exits; the
/// keepalive's RST, sent from a timer, is the worker's: the process holding the socket's file,
/// not the owner on record, which is gone.
#[test]
fn a_timers_reset_of_a_connection_handed_over_names_the_process_holding_it() {
    timers_reset_of_a_connection_handed_over(69, "--hand-over");
}

/// The same, the launcher closing its copy of the socket and living on: the worker, which let go
/// of it last, held it, not the owner on record.
#[test]
fn a_timers_reset_of_a_connection_handed_over_by_a_launcher_that_lives_on_is_the_workers() {
    timers_reset_of_a_connection_handed_over(52, "--hand-over-and-stay");
}

fn timers_reset_of_a_connection_handed_over(subnet: u8, hand_over: &str) {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(subnet, |net, f| {
            let server = listen(net, f, "hold");
            let mut c = client(net, f, PORT, &["--keepalive", "1,1,2", hand_over, "--wait-go"]);
            let holder = c.expect_line("holder", T).trim_start_matches("holder ").parse().expect("holder pid");
            c.expect_line("ready", T);
            let filter = net.server_filter("input", "tcp dport 8080 drop");
            c.go();
            assert_eq!(c.expect_line("errno", T), "errno 110");
            drop(filter);
            std::thread::sleep(Duration::from_millis(1200));
            vec![holder, server.pid(), c.pid()]
        }) {
            assert_ne!(pids[0], pids[2], "the worker is not the launcher");
            let [sent, no_socket, received] = exactly(&reports, ["sent:keepalive_timeout", "sent:no_socket", "received:peer_reset"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["attribution"], "socket_file", "{sent}");
            assert_teardown(no_socket, received, f, &pids, KEEPALIVE_END);
        }
    });
}

/// The server stops reading: its window closes, and the client's data waits on zero-window
/// probes, which the server's firewall then drops. The client's TCP_USER_TIMEOUT gives up with
/// no retransmission timed out: the persist timer's timeout, the network's doing all the same.
#[test]
fn a_zero_window_probed_in_vain_is_a_retransmit_timeout() {
    zero_window_timed_out(81, true, "network", "unanswered until");
}

/// The same with every probe answered (the window stays closed): the connection would stay
/// open for ever but for the client's TCP_USER_TIMEOUT. The peer's doing, not the network's.
#[test]
fn a_zero_window_answered_until_the_user_timeout_is_the_peers() {
    zero_window_timed_out(90, false, "peer", "answered the zero-window probes");
}

fn zero_window_timed_out(subnet: u8, probes_dropped: bool, origin: &str, why: &str) {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(subnet, |net, f| {
            let _server = listen(net, f, "stall-answer-on-go");
            let mut c = client(net, f, PORT, &["--user-timeout", "3000", "--send", "50000000", "--wait-go"]);
            c.expect_line("ready", T);
            c.go();
            // All it could send is acknowledged, the window closed: only probes go out.
            std::thread::sleep(Duration::from_millis(700));
            let filter = probes_dropped.then(|| net.server_filter("input", "tcp dport 8080 drop"));
            assert_eq!(c.expect_line("errno", T), "errno 110");
            drop(filter);
            vec![c.pid()]
        }) {
            let aborts: Vec<Value> = reports.iter().filter(|r| r["type"] == "abort").cloned().collect();
            let [abort] = exactly(&aborts, ["abort:retransmit_timeout"]);
            assert_report(abort, f, origin, Some(pids[0]));
            let said = abort["why"].as_str().unwrap();
            assert!(said.contains(why) && said.contains("TCP_USER_TIMEOUT (3000 ms)"), "{abort}");
        }
    });
}

#[test]
fn retransmit_timeout_is_an_abort_without_rst() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(6, |net, f| {
            client_then_filter(net, f, &["--user-timeout", "1500", "--send", "100"], "tcp dport 8080 drop", "errno 110")
        }) {
            let [abort, no_socket, received] = exactly(&reports, ["abort:retransmit_timeout", "sent:no_socket", "received:peer_reset"]);
            assert_report(abort, f, "network", Some(pids[0]));
            let end = ClientEnd {
                no_socket_says: "that timed out here",
                benign: true,
                server_told: "(no_socket: the peer's end timed out earlier (retransmit_timeout))",
            };
            assert_teardown(no_socket, received, f, &pids, end);
            assert!(abort["direction"].is_null());
            assert!(abort["retransmits"].as_u64().unwrap() >= 1, "{abort}");
            // (RFC 3339 UTC strings of equal length order like the times they name.)
            assert!(
                !reports.iter().any(|r| r["direction"] == "sent" && r["ts"].as_str() < abort["ts"].as_str()),
                "Linux sends no RST on a retransmission timeout: {reports:?}"
            );
        }
    });
}

/// The server closes with data its client never acknowledges (the client's segments are dropped
/// on the way in): the orphan retransmits until `tcp_orphan_retries`, then the kernel drops it,
/// with no RST and no error report to anyone. An abort in FIN_WAIT1 that names the server,
/// which closed it; then the client aborts with the server's data unread.
#[test]
fn an_orphan_whose_data_is_never_acknowledged_times_out() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(30, |net, f| {
            net.sysctl(&net.server, "net/ipv4/tcp_orphan_retries", "1");
            let mut server = listen(net, f, "write-close-on-go");
            let mut c = client(net, f, PORT, &["--wait-go", "--linger0"]);
            c.expect_line("ready", T);
            let filter = net.server_filter("input", "tcp dport 8080 drop");
            server.go();
            server.expect_line("closed", T);
            // One retransmission after ~200 ms, given up ~400 ms later; slow guests take longer.
            std::thread::sleep(Duration::from_secs(4));
            c.go();
            c.wait(T);
            drop(filter);
            vec![server.pid(), c.pid()]
        }) {
            let [abort, sent] = exactly(&reports, ["abort:retransmit_timeout", "sent:app_abort_unread"]);
            assert_report(abort, f, "network", Some(pids[0]));
            assert_eq!(abort["state"], "FIN_WAIT1", "{abort}");
            assert!(abort["retransmits"].as_u64().unwrap() >= 1, "{abort}");
            assert_report(sent, f, "application", Some(pids[1]));
        }
    });
}

/// A connection older than rsttrace, its client reset by the server's firewall: injected all
/// the same (the agent notes the connections it finds open at start as the kernel side notes
/// those it sees open, so the peer on this host is known), and so is the rest of the story, with
/// the client as the owner.
#[test]
fn a_rst_forged_to_a_connection_older_than_rsttrace_is_injected() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(66);
        for f in FAMILIES {
            let wait = Duration::from_millis(1200);
            let (mine, pids) = older_connection_filtered(&net, f, &["--send", "100"], "tcp dport 8080 reject with tcp reset", "errno 104", wait);
            assert_forged_to_the_client(&mine, f, &pids);
        }
    });
}

/// Aborts keep coming while rsttrace attaches its programs one by one: a RST received before
/// the trace's start (the last program attached before it) may have been sent before the send
/// hooks were, so its peer's missing report proves nothing, and none is called injected.
#[test]
fn resets_while_rsttrace_attaches_are_never_injected() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(68);
        let f = Family::V4;
        let _server = listen(&net, f, "linger0");
        let storm = client(&net, f, PORT, &["--repeat", "1000000", "--until-reset"]);
        // The storm is under way before the tracer starts.
        std::thread::sleep(Duration::from_millis(300));
        let mut tracer = Tracer::start(&["--max-rate", "0"]);
        std::thread::sleep(Duration::from_millis(300));
        let start = tracer.start_record()["ts"].as_str().expect("the start's time").to_string();
        let (reports, _) = tracer.stop();
        drop(storm);
        let mine = net.reports_of_this_test(reports);
        // (RFC 3339 UTC strings of equal length order like the times they name.)
        let before: Vec<&Value> = mine.iter().filter(|r| r["ts"].as_str().unwrap() < start.as_str()).collect();
        assert!(before.iter().any(|r| r["cause"] == "peer_reset"), "no reset traced before the start: {} after", mine.len());
        let injected: Vec<&&Value> = before.iter().filter(|r| r["cause"] == "injected").collect();
        assert!(injected.is_empty(), "{} of {} injected, first: {}", injected.len(), before.len(), injected[0]);
    });
}

/// The client's report of a RST the server's firewall forged to it (injected), and those of the
/// teardown after it (see [`assert_teardown`]); returns the first.
fn assert_forged_to_the_client<'a>(reports: &'a [Value], f: Family, pids: &[u64]) -> &'a Value {
    let [received, no_socket, teardown] = exactly(reports, ["received:injected", "sent:no_socket", "received:peer_reset"]);
    assert_report(received, f, "network", Some(pids[0]));
    let end = ClientEnd {
        no_socket_says: "that a forged RST reset here",
        benign: false,
        server_told: "(no_socket: a forged RST reset the peer's end earlier)",
    };
    assert_teardown(no_socket, teardown, f, pids, end);
    received
}

/// A client's connection to a holding server, open before rsttrace starts: the server's
/// firewall takes `rule`, the client goes on (`client_opts`) until its call fails with `errno`,
/// and `wait` later the server exits. The reports of this test, and the pids of the client and
/// the server.
fn older_connection_filtered(net: &Net, f: Family, client_opts: &[&str], rule: &str, errno: &str, wait: Duration) -> (Vec<Value>, Vec<u64>) {
    let server = listen(net, f, "hold");
    let mut opts = client_opts.to_vec();
    opts.push("--wait-go");
    let mut c = client(net, f, PORT, &opts);
    c.expect_line("ready", T);
    let tracer = Tracer::start(&[]);
    let filter = net.server_filter("input", rule);
    c.go();
    assert_eq!(c.expect_line("errno", T), errno);
    drop(filter);
    std::thread::sleep(wait);
    let pids = vec![c.pid(), server.pid()];
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    let (reports, _) = tracer.stop();
    (net.reports_of_this_test(reports), pids)
}

/// The server's firewall answers connects with `reject with tcp reset`: connect() fails with
/// ECONNREFUSED as if nothing listened, but the server's stack sent no RST, and its address says
/// the server is on this host: injected, not refused.
#[test]
fn a_firewall_rejecting_the_syn_is_injected_not_refused() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(31, |net, f| {
            let _server = listen(net, f, "hold");
            let _reject = net.server_filter("input", "tcp dport 8080 reject with tcp reset");
            let c = client(net, f, PORT, &[]);
            assert_eq!(c.expect_line("errno", T), "errno 111");
            vec![c.pid()]
        }) {
            let [received] = exactly(&reports, ["received:injected"]);
            assert_report(received, f, "network", Some(pids[0]));
            assert_eq!(received["state"], "SYN_SENT", "{received}");
            assert!(received["peer_cause"].is_null(), "{received}");
        }
    });
}

/// The server's namespace translates its port (DNAT, as a published port or a transparent
/// proxy does) to one nobody listens on, while a listener holds the port dialled (a port
/// publisher's own proxy): its stack refuses the SYN from the other port, and the client's
/// refusal is that RST's, not a forgery, though no RST of the dialled 4-tuple was sent. Then the
/// client's address is translated too (a masquerade, as a container reaching another through
/// the host's published port): the RST goes to the translated address, with the client's port.
#[test]
fn a_refusal_through_an_address_translation_is_refused_not_injected() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(56, |net, f| {
            let _server = listen(net, f, "hold");
            let (family, to) = match f {
                Family::V4 => ("ip", format!("{}:{CLOSED_PORT}", net.server_addr(f))),
                Family::V6 => ("ip6", format!("[{}]:{CLOSED_PORT}", net.server_addr(f))),
            };
            let script = format!("add table {family} nat; add chain {family} nat pre {{ type nat hook prerouting priority -100; }}; add rule {family} nat pre tcp dport {PORT} dnat to {to}");
            in_ns(&net.server, "nft", &[&script]);
            let translated = client(net, f, PORT, &[]);
            assert_eq!(translated.expect_line("errno", T), "errno 111");
            let masquerade = format!("add chain {family} nat in {{ type nat hook input priority 100; }}; add rule {family} nat in tcp dport {CLOSED_PORT} snat to {}", net.spare_addr(f));
            in_ns(&net.server, "nft", &[&masquerade]);
            let masqueraded = client(net, f, PORT, &[]);
            assert_eq!(masqueraded.expect_line("errno", T), "errno 111");
            vec![translated.pid(), masqueraded.pid()]
        }) {
            exactly(&reports, ["sent:no_listener", "sent:no_listener", "received:refused", "received:refused"]);
            let sent: Vec<&Value> = reports.iter().filter(|r| r["direction"] == "sent").collect();
            assert!(sent.iter().all(|s| s["lport"].as_u64() == Some(CLOSED_PORT.parse().unwrap())), "{sent:?}");
            assert_ne!(sent[0]["raddr"], sent[1]["raddr"], "one RST went to the masquerade's address: {sent:?}");
            for (received, pid) in reports.iter().filter(|r| r["direction"] == "received").zip(pids) {
                assert_report(received, f, "peer", Some(pid));
                assert_eq!((received["state"].as_str(), received["peer_cause"].as_str()), (Some("SYN_SENT"), Some("no_listener")), "{received}");
                assert!(received["why"].as_str().unwrap().contains(&format!(":{CLOSED_PORT} on this host answered, where an address translation")), "{received}");
            }
        }
    });
}

/// The client gives its connect up before the server's SYN-ACK comes (the SYN-ACKs are held
/// back until then): its host answers the late SYN-ACK with a RST of no socket, which is no
/// refused SYN but the connect its owner gave up.
#[test]
fn a_syn_ack_after_the_client_gave_up_its_connect_is_no_socket_of_that_client() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(91, |net, f| {
            let _server = listen(net, f, "hold");
            let held_back = net.server_filter("output", "tcp flags & (syn | ack) == syn | ack drop");
            let c = client(net, f, PORT, &["--connect-timeout", "300"]);
            assert_eq!(c.expect_line("gave up", T), "gave up");
            drop(held_back);
            // The SYN-ACK is sent again 1 s after the first.
            std::thread::sleep(Duration::from_millis(2500));
            vec![c.pid()]
        }) {
            let [sent] = exactly(&reports, ["sent:no_socket"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["rport"].as_u64(), Some(PORT.parse().unwrap()), "the RST goes to the server: {sent}");
            assert!(sent["why"].as_str().unwrap().contains("SYN-ACK came after"), "{sent}");
        }
    });
}

#[test]
fn unanswered_syn_is_syn_timeout() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(7, |net, f| {
            let _filter = net.server_filter("input", "tcp dport 8080 drop");
            let c = client(net, f, PORT, &["--syncnt", "1"]);
            assert_eq!(c.expect_line("errno", T), "errno 110");
            vec![c.pid()]
        }) {
            let [abort] = exactly(&reports, ["abort:syn_timeout"]);
            assert_report(abort, f, "network", Some(pids[0]));
            assert_eq!(abort["state"], "SYN_SENT");
        }
    });
}

#[test]
fn firewall_reset_is_injected() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(8, |net, f| {
            client_then_filter(net, f, &["--send", "100"], "tcp dport 8080 reject with tcp reset", "errno 104")
        }) {
            let received = assert_forged_to_the_client(&reports, f, &pids);
            assert!(
                !reports.iter().any(|r| r["direction"] == "sent" && r["ts"].as_str() <= received["ts"].as_str()),
                "no stack sent a RST before the forged one: {reports:?}"
            );
        }
    });
}

/// The kernel side keeps each 4-tuple's note (behind `injected`: the other end is a socket of
/// this host) in a bucket of two slots. Another connection whose note hashes to the very slot of
/// the server's note comes and goes first: its note takes the bucket's other slot, not the open
/// connection's, and the RST the server's firewall forges to the client is still injected.
#[test]
fn a_forged_rst_is_injected_though_another_connections_note_hashed_to_the_servers_slot() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(78, |net, f| {
            let (mine, other) = colliding_ports(net, f);
            let server = listen(net, f, "hold");
            let mut c = client(net, f, PORT, &["--local-port", &mine.to_string(), "--send", "100", "--wait-go"]);
            c.expect_line("ready", T);
            let mut colliding = client(net, f, PORT, &["--local-port", &other.to_string(), "--close-at-once"]);
            colliding.expect_line("ready", T);
            colliding.wait(T);
            let filter = net.server_filter("input", "tcp dport 8080 reject with tcp reset");
            c.go();
            assert_eq!(c.expect_line("errno", T), "errno 104");
            drop(filter);
            std::thread::sleep(Duration::from_millis(1200));
            vec![c.pid(), server.pid()]
        }) {
            assert_forged_to_the_client(&reports, f, &pids);
        }
    });
}

/// Two client ports of `net`'s client to the server's PORT: the server's note of the first's
/// connection and a note of the second's (either end's) hash to the same `TUPLES` slot. Searched
/// from a port that differs run to run (a retry must not meet the last run's TIME_WAIT).
fn colliding_ports(net: &Net, f: Family) -> (u16, u16) {
    let tail = |addr: String| -> u32 {
        let octets = match addr.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(a) => a.octets(),
            std::net::IpAddr::V6(a) => a.octets()[12..].try_into().unwrap(),
        };
        u32::from_ne_bytes(octets)
    };
    let (client, server) = (tail(net.client_addr(f)), tail(net.server_addr(f)));
    let port: u16 = PORT.parse().unwrap();
    let slot = |key: TupleKey| key.hash(TUPLE_SLOT_BITS);
    let server_end = |p: u16| TupleKey { lport: port, rport: p, laddr: server, raddr: client };
    let client_end = |p: u16| TupleKey { lport: p, rport: port, laddr: client, raddr: server };
    let from = 41_000 + (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() % 10_000) as u16;
    for mine in from..from + 2_000 {
        let target = slot(server_end(mine));
        if let Some(other) = (41_000..61_000).filter(|p| *p != mine).find(|p| slot(server_end(*p)) == target || slot(client_end(*p)) == target) {
            return (mine, other);
        }
    }
    panic!("no two client ports whose notes share a slot");
}

/// A client with `opts` against a server that holds its connections, until the client exits.
/// The pid is the client's.
fn client_of_a_holding_server(subnet: u8, opts: &[&str]) -> Vec<(Family, Vec<Value>, Vec<u64>)> {
    traced(subnet, |net, f| {
        let _server = listen(net, f, "hold");
        let mut c = client(net, f, PORT, opts);
        c.expect_line("ready", T);
        c.wait(T);
        vec![c.pid()]
    })
}

#[test]
fn second_connection_dropped_after_handshake_is_benign_race_loser() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(9, &["--race"]) {
            let [sent, received] = exactly(&reports, ["sent:connect_race_loser", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_eq!(sent["benign"], true);
            assert_eq!(received["peer_cause"], "connect_race_loser");
        }
    });
}

/// Two connections to two ports of one server, as SMB's clients open 445 and 139: the one
/// dropped right after its handshake, beside the other, is a connect race's loser too.
#[test]
fn a_connection_dropped_beside_one_to_another_port_of_the_server_is_a_benign_race_loser() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(36, |net, f| {
            let _first = listen(net, f, "hold");
            let second = Stim::spawn(&net.server, &["listen", &net.server_addr(f), "8081", "hold"]);
            second.expect_line("ready", T);
            let mut c = client(net, f, PORT, &["--race-port", "8081"]);
            c.expect_line("ready", T);
            c.wait(T);
            vec![c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:connect_race_loser", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_eq!((sent["benign"].as_bool(), sent["rport"].as_u64()), (Some(true), Some(8080)), "{sent}");
            assert_eq!(received["peer_cause"], "connect_race_loser");
        }
    });
}

/// The same timing, but the aborted connection carried a request first: an ordinary abort with
/// SO_LINGER 0, which is not benign, even with the owner's other connection to the peer open.
#[test]
fn a_connection_that_carried_a_request_is_no_race_loser() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(29, &["--race", "--send", "100"]) {
            // On a slow host the server's acknowledgment of the request can reach the client after
            // the abort: the client's stack answers it with a RST of no socket, and that may be the
            // RST the server takes.
            let ([sent, received], _) = exactly_with_optional(&reports, ["sent:app_abort_linger0", "received:peer_reset"], &["sent:no_socket"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_eq!(sent["benign"], false);
            assert!(["app_abort_linger0", "no_socket"].contains(&received["peer_cause"].as_str().unwrap_or("")), "{received}");
        }
    });
}

/// A client that aborts with SO_LINGER 0 as soon as its request is answered, the server keeping
/// the connection open (a health check, a short-lived client skipping TIME_WAIT): benign, unlike
/// the abort of a request still unanswered (above) or a server's abort (`so_linger_zero_…`).
#[test]
fn a_clients_linger0_once_its_request_is_answered_is_benign() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(33, |net, f| {
            let server = listen(net, f, "answer");
            let mut c = client(net, f, PORT, &["--send", "10", "--await-answer", "--linger0"]);
            c.wait(T);
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[1]));
            assert_eq!(sent["benign"], true, "{sent}");
            assert_report(received, f, "peer", Some(pids[0]));
            assert_eq!(received["peer_cause"], "app_abort_linger0");
        }
    });
}

/// A client that aborts with SO_LINGER 0 1.5 s after the first bytes of its answer, all it sent
/// acknowledged: a proxy whose server timeout fired on a response that stalled (haproxy's
/// `timeout server`). The socket cannot tell it from a slow exchange that finished; it must not
/// be hidden as a benign one.
#[test]
fn a_clients_linger0_long_after_the_answer_began_is_not_benign() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(49, |net, f| {
            let server = listen(net, f, "answer");
            let mut c = client(net, f, PORT, &["--send", "10", "--await-answer", "--give-up-after", "1500", "--linger0"]);
            c.wait(T);
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[1]));
            assert_eq!(sent["benign"], false, "{sent}");
            assert_report(received, f, "peer", Some(pids[0]));
            assert_eq!((received["peer_cause"].as_str(), received["benign"].as_bool()), (Some("app_abort_linger0"), Some(false)), "{received}");
        }
    });
}

/// A client that connects and aborts at once with SO_LINGER 0, not a byte either way: the
/// connect probe of a health checker (haproxy's `check` on a TCP backend), benign.
#[test]
fn a_clients_linger0_right_after_the_handshake_is_a_benign_connect_probe() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(34, &["--linger0"]) {
            let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_eq!(sent["benign"], true, "{sent}");
            assert_eq!(received["peer_cause"], "app_abort_linger0");
        }
    });
}

#[test]
fn close_in_fin_wait2_with_negative_linger2_is_linger2_abort() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(10, &["--linger2-abort"]) {
            let [sent, received] = exactly(&reports, ["sent:linger2_abort", "received:peer_reset"]);
            assert_eq!(received["peer_cause"], "linger2_abort");
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_kernel_reason(sent, "TCP_ABORT_ON_LINGER");
        }
    });
}

/// The host's orphan limit (`net.ipv4.tcp_max_orphans`, one for all namespaces) set to `value`
/// while the guard lives; the old limit comes back when it drops, a failed assertion included.
struct OrphanLimit(String);

impl OrphanLimit {
    const PATH: &'static str = "/proc/sys/net/ipv4/tcp_max_orphans";

    fn set(value: &str) -> Self {
        let old = std::fs::read_to_string(Self::PATH).expect("tcp_max_orphans");
        std::fs::write(Self::PATH, value).expect("set tcp_max_orphans");
        OrphanLimit(old.trim().to_string())
    }
}

impl Drop for OrphanLimit {
    fn drop(&mut self) {
        std::fs::write(Self::PATH, &self.0).expect("restore tcp_max_orphans");
    }
}

/// With no orphan allowed, a closed socket whose data waits on the server's closed window is
/// reset by its probe timer (`tcp_out_of_resources`, before its CLOSE, with no error pending).
/// That RST is hidden from the server, which answers 2 s later: the client's stack resets the
/// answer from no socket, and names the orphan's end as what the RST repeats. Kernels without
/// reasons tell the orphan's reset by its closing state with no segment behind it.
#[test]
fn an_orphan_reset_for_want_of_memory_is_orphan_memory_and_named_by_its_sequel() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(57, |net, f| {
            let mut server = listen(net, f, "stall-answer-on-go");
            let hide_rst = net.server_filter("input", "tcp flags rst drop");
            let limit = OrphanLimit::set("0");
            let c = client(net, f, PORT, &["--fill-close"]);
            c.expect_line("closed", T);
            // Zero-window probes back off from ~200 ms; the orphan check runs at each.
            std::thread::sleep(Duration::from_secs(2));
            drop(limit);
            server.go();
            server.expect_line("answered", T);
            // The answer's retransmissions meet the client's stack; once the filter is gone, its
            // RST reaches the server.
            std::thread::sleep(Duration::from_millis(500));
            drop(hide_rst);
            server.expect_line("errno", T);
            vec![server.pid(), c.pid()]
        }) {
            let (repeats, rest): (Vec<Value>, Vec<Value>) = reports.into_iter().partition(|r| r["cause"] == "no_socket");
            assert!(!repeats.is_empty(), "no RST for the answer: {rest:?}");
            // Without reasons (before 6.10), told by the orphan's closing state, no segment behind.
            let [orphan, server] = exactly(&rest, ["sent:orphan_memory", "received:peer_reset"]);
            assert_report(orphan, f, "stack", Some(pids[1]));
            assert_kernel_reason(orphan, "TCP_ABORT_ON_MEMORY");
            assert_eq!(orphan["state"], "FIN_WAIT1", "{orphan}");
            for r in &repeats {
                assert_report(r, f, "stack", Some(pids[1]));
                let why = r["why"].as_str().unwrap();
                assert!(why.contains("that this host reset") && why.contains("(orphan_memory): that RST never reached the peer"), "{r}");
                assert_eq!(r["benign"], true, "{r}");
            }
            assert_report(server, f, "peer", Some(pids[0]));
            assert_eq!(server["peer_cause"], "no_socket", "{server}");
        }
    });
}

/// Closed at once with TCP_LINGER2 < 0 (in FIN_WAIT1): the stack resets the orphan when the
/// server acknowledges the FIN, a segment without data that 6.10+ kernels name
/// TCP_ABORT_ON_DATA all the same: linger2_abort, not data_after_close.
#[test]
fn close_in_fin_wait1_with_negative_linger2_is_linger2_abort_when_the_fin_is_acknowledged() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(58, &["--linger2-abort", "--close-at-once"]) {
            let [sent, received] = exactly(&reports, ["sent:linger2_abort", "received:peer_reset"]);
            assert_eq!(received["peer_cause"], "linger2_abort");
            assert_report(sent, f, "stack", Some(pids[0]));
            assert!(matches!(sent["kernel_reason"].as_str(), None | Some("TCP_ABORT_ON_DATA" | "TCP_ABORT_ON_LINGER")), "{sent}");
        }
    });
}

#[test]
fn segment_for_a_forgotten_connection_is_no_socket() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(11, |net, f| {
            let mut server = listen(net, f, "linger0-on-go");
            let mut c = client(net, f, PORT, &["--wait-go", "--send-after", "0"]);
            c.expect_line("ready", T);
            // The server aborts, but its RST never reaches the client: the client is left talking
            // to a connection the server no longer knows.
            let hide_rst = net.server_filter("output", "tcp flags rst drop");
            server.go();
            server.expect_line("closed", T);
            // IPv4: the client talks on a moment later, IPv6 well after (see below).
            std::thread::sleep(Duration::from_millis(if f == Family::V4 { 100 } else { 1000 }));
            drop(hide_rst);
            c.go();
            c.expect_line("errno", T);
            vec![server.pid(), c.pid()]
        }) {
            let [sent, abort, client] = exactly(&reports, ["sent:no_socket", "sent:app_abort_linger0", "received:peer_reset"]);
            // No socket any more: the connection's, and so the RST's, is the server that aborted
            // it, and the RST only echoes that abort, which the client never heard of: a moment
            // after it (IPv4), or repeats it, a second after it (IPv6).
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!((sent["benign"].as_bool(), sent["attribution"].as_str()), (Some(true), Some("socket_owner")), "{sent}");
            let why = sent["why"].as_str().unwrap();
            match f {
                Family::V4 => assert!(why.starts_with("segment of the connection rststim[") && why.contains("reset a moment before"), "{sent}"),
                Family::V6 => assert!(why.starts_with("segment of the connection of rststim[") && why.contains("(app_abort_linger0): that RST never reached the peer"), "{sent}"),
            }
            // The port still has a listener: it answers the stray segment (TCP_FLAGS), and its
            // record names no peer; the peer comes from the segment itself.
            assert_kernel_reason(sent, "TCP_FLAGS");
            assert_eq!(sent["state"], "LISTEN");
            assert_eq!(sent["raddr"], client["laddr"]);
            assert_eq!(sent["rport"], client["lport"]);
            assert_report(abort, f, "application", Some(pids[0]));
            assert_report(client, f, "peer", Some(pids[1]));
            // What reached the client was the echo; the abort is no benign thing to it.
            assert_eq!((&client["peer_cause"], &client["benign"]), (&Value::from("no_socket"), &Value::from(false)), "{client}");
            assert!(client["why"].as_str().unwrap().contains("(no_socket: the peer's end reset it earlier"), "{client}");
        }
    });
}

/// A connection on a fixed client port is aborted by its client; a second one on the same
/// 4-tuple, to the same server process, ends well (the client closes first, the server after
/// it); then a stray segment on that 4-tuple comes to the server. Its RST follows neither
/// connection's end: the kernel side knows the second one ended well (its socket may even sit
/// where the first one's did), so the first one's reset is not named.
#[test]
fn a_later_connection_on_the_4_tuple_hides_the_end_of_an_earlier_one() {
    const CLIENT_PORT: &str = "40404"; // rststim's stray segments come from this port
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(53, |net, f| {
            let server = listen(net, f, "drain-then-close");
            let mut c = client(net, f, PORT, &["--local-port", CLIENT_PORT, "--send", "10", "--linger0"]);
            c.wait(T);
            let c = client(net, f, PORT, &["--local-port", CLIENT_PORT, "--send", "10", "--wait-go"]);
            c.expect_line("ready", T);
            // The client's exit closes first; then the server, once it reads the end.
            drop(c);
            std::thread::sleep(Duration::from_millis(500));
            let stray = Stim::spawn(&net.client, &["stray-ack", &net.server_addr(f), PORT, &net.client_addr(f)]);
            assert_eq!(stray.expect_line("sent", T), "sent");
            std::thread::sleep(Duration::from_millis(300));
            vec![server.pid()]
        }) {
            // The server's answer to the stray ACK, to the client's port (and, in a slow guest,
            // its answer to the client's TIME_WAIT acknowledging a retransmitted FIN).
            let (answers, rest): (Vec<Value>, Vec<Value>) = reports.into_iter().partition(|r| r["direction"] == "sent" && r["rport"] == 40404);
            assert!(!answers.is_empty() && answers.iter().all(|a| a["cause"] == "no_socket"), "{answers:?}");
            // The client's abort may cross the server's ACK of its data, whose RST echoes it.
            let ([abort, reset], echo) = exactly_with_optional(&rest, ["sent:app_abort_linger0", "received:peer_reset"], &["sent:no_socket"]);
            assert_eq!((abort["rport"].as_u64(), reset["pid"].as_u64()), (Some(8080), Some(pids[0])), "{abort}\n{reset}");
            assert!(echo.iter().all(|e| e["benign"] == true && e["why"].as_str().unwrap().contains("reset a moment before")), "{echo:?}");
            for sent in &answers {
                assert!(sent["why"].as_str().unwrap().contains("does not know"), "{sent}");
                assert_eq!(sent["benign"], false, "{sent}");
                // The 4-tuple's last owner, as the kernel side noted it: the server.
                assert_report(sent, f, "stack", Some(pids[0]));
            }
        }
    });
}

/// A client on a fixed port aborts, but its RST never reaches the server, which still holds
/// the connection (half-open); the client connects again from the same port. The server answers
/// the SYN with an ACK for the old connection, which the connecting client resets: the reuse of
/// a 4-tuple that the peer holds open, not one in TIME_WAIT, and the server is told.
#[test]
fn reconnecting_into_a_half_open_connection_is_reuse_of_a_4_tuple_the_peer_holds_open() {
    const CLIENT_PORT: &str = "40406";
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(67, |net, f| {
            let server = listen(net, f, "hold");
            let hide_rst = net.server_filter("input", "tcp flags rst drop");
            let mut first = client(net, f, PORT, &["--local-port", CLIENT_PORT, "--send", "10", "--linger0"]);
            first.wait(T);
            drop(hide_rst);
            // Its SYN retransmitted after the RST, the second connection is made.
            let second = client(net, f, PORT, &["--local-port", CLIENT_PORT]);
            second.expect_line("ready", T);
            vec![server.pid(), second.pid()]
        }) {
            let [_, reuse, told] = exactly(&reports, ["sent:app_abort_linger0", "sent:timewait_reuse", "received:peer_reset"]);
            assert_report(reuse, f, "stack", Some(pids[1]));
            assert_eq!(reuse["state"], "SYN_SENT", "{reuse}");
            assert!(reuse["why"].as_str().unwrap().contains("which the peer still holds open (half-open"), "{reuse}");
            assert_report(told, f, "peer", Some(pids[0]));
            assert_eq!((told["state"].as_str(), told["peer_cause"].as_str()), (Some("ESTABLISHED"), Some("timewait_reuse")), "{told}");
        }
    });
}

#[test]
fn disconnect_with_af_unspec_is_app_disconnect_not_linger0() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in client_of_a_holding_server(12, &["--send", "10", "--disconnect"]) {
            let [sent, received] = exactly(&reports, ["sent:app_disconnect", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[0]));
            assert_kernel_reason(sent, "TCP_STATE");
            assert_eq!(received["peer_cause"], "app_disconnect");
        }
    });
}

#[test]
fn full_accept_queue_with_abort_on_overflow_is_listen_overflow() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(13, |net, f| {
            let (server, reset_client) = overflow_accept_queue(net, f, PORT);
            vec![server.pid(), reset_client]
        }) {
            // The overflow, then the server exits with three connections still in its queue.
            let [sent, closed, ..] = exactly(
                &reports,
                ["sent:listen_overflow", "sent:listener_closed", "sent:listener_closed", "sent:listener_closed", "received:peer_reset", "received:peer_reset", "received:peer_reset", "received:peer_reset"],
            );
            // The connection was never accepted: the listener's owner is the one to look at.
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["state"], "LISTEN");
            assert_report(closed, f, "application", Some(pids[0]));
            let overflowed: Vec<&Value> = reports.iter().filter(|r| r["peer_cause"] == "listen_overflow").collect();
            assert_eq!(overflowed.len(), 1, "{reports:?}");
            assert_report(overflowed[0], f, "peer", Some(pids[1]));
            assert_eq!(sent["raddr"], overflowed[0]["laddr"]);
            assert_eq!(sent["rport"], overflowed[0]["lport"]);
        }
    });
}

#[test]
fn another_process_on_the_port_is_port_grabbed() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(14, |net, f| {
            let mut old = listen(net, f, "linger0-on-go");
            let mut c = client(net, f, PORT, &["--wait-go", "--send-after", "0"]);
            c.expect_line("ready", T);
            // The old server forgets the connection without telling the client, then exits, and
            // another program takes over its port.
            let hide_rst = net.server_filter("output", "tcp flags rst drop");
            old.go();
            old.expect_line("closed", T);
            let old_pid = old.pid();
            drop(old);
            let new = listen(net, f, "hold");
            drop(hide_rst);
            c.go();
            c.expect_line("errno", T);
            vec![old_pid, new.pid()]
        }) {
            let [sent, _, _] = exactly(&reports, ["sent:port_grabbed", "sent:app_abort_linger0", "received:peer_reset"]);
            // The connection belonged to the old server; the why names the newcomer.
            assert_report(sent, f, "stack", Some(pids[0]));
            assert!(sent["why"].as_str().unwrap().contains(&format!("[{}]", pids[1])), "{sent}");
        }
    });
}

#[test]
fn reconnecting_into_time_wait_with_an_old_sequence_is_timewait_reuse() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(15, |net, f| {
            // Without timestamps the TIME_WAIT side can only judge the new SYN by its sequence.
            net.sysctl(&net.client, "net/ipv4/tcp_timestamps", "0");
            let _server = listen(net, f, "drain-then-close");
            let c = client(net, f, PORT, &["--reuse-after-bulk"]);
            c.expect_line("ready", T);
            assert_eq!(c.expect_line("reconnected", T), "reconnected");
            vec![c.pid()]
        }) {
            // Under slow emulation a segment of the refused handshake can reach the server after
            // the client's RST ended its TIME_WAIT socket: the listener then answers it (a real
            // RST, for a connection the server no longer knows). Seen once on 6.1 under TCG.
            let ([sent], late) = exactly_with_optional(&reports, ["sent:timewait_reuse"], &["sent:no_socket"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["state"], "SYN_SENT");
            assert_kernel_reason(sent, "TCP_INVALID_ACK_SEQUENCE");
            for r in late {
                assert_eq!((&r["state"], &r["rport"]), (&Value::from("LISTEN"), &sent["lport"]), "{r}");
                assert!(r["ts"].as_str() > sent["ts"].as_str(), "{r}");
            }
        }
    });
}

/// The same, the server's TIME_WAIT older than rsttrace: read from the TCP tables at start, it
/// still tells a reused 4-tuple from a segment the stack merely rejected.
#[test]
fn reconnecting_into_a_time_wait_older_than_rsttrace_is_timewait_reuse() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(54);
        net.sysctl(&net.client, "net/ipv4/tcp_timestamps", "0");
        for f in FAMILIES {
            let _server = listen(&net, f, "drain-then-close");
            let mut c = client(&net, f, PORT, &["--reuse-after-bulk", "--wait-go"]);
            c.expect_line("ready", T);
            c.go();
            c.expect_line("time-wait", T);
            let tracer = Tracer::start(&[]);
            c.go();
            assert_eq!(c.expect_line("reconnected", T), "reconnected");
            std::thread::sleep(Duration::from_millis(300));
            let (reports, _) = tracer.stop();
            let mine: Vec<Value> = net.reports_of_this_test(reports).into_iter().filter(|r| r["family"] == f.name()).collect();
            let ([sent], _) = exactly_with_optional(&mine, ["sent:timewait_reuse"], &["sent:no_socket"]);
            assert_report(sent, f, "stack", Some(c.pid()));
            assert_kernel_reason(sent, "TCP_INVALID_ACK_SEQUENCE");
        }
    });
}

/// The client's port a NAT in the client's namespace gives the connections from its second
/// address (as to another client behind the same NAT).
const NAT_PORT: &str = "40123";

/// A source NAT in the client's namespace: connections from a second address of the client
/// leave from the client's address and `port`, as another host's behind one NAT would. The
/// NAT's record of a closed connection lasts 1 s (not 120), so that the port is soon free for
/// the next. Returns that second address.
fn behind_a_nat(net: &Net, f: Family, port: &str) -> String {
    let behind = net.spare_addr(f);
    let (family, prefix, to) = match f {
        Family::V4 => ("ip", "/32", format!("{}:{port}", net.client_addr(f))),
        Family::V6 => ("ip6", "/128", format!("[{}]:{port}", net.client_addr(f))),
    };
    in_ns(&net.client, "ip", &["addr", "add", &format!("{behind}{prefix}"), "dev", "lo"]);
    let script = format!(
        "add table {family} nat; add chain {family} nat post {{ type nat hook postrouting priority 100; }}; add rule {family} nat post {family} saddr {behind} meta l4proto tcp snat to {to}"
    );
    in_ns(&net.client, "nft", &[&script]);
    net.sysctl(&net.client, "net/netfilter/nf_conntrack_tcp_timeout_time_wait", "1");
    behind
}

#[test]
fn a_syn_through_a_nat_into_another_clients_time_wait_is_timewait_reuse() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(86, |net, f| {
            // Without timestamps the TIME_WAIT side can only judge the new SYN by its sequence:
            // half the time it takes that for an old connection's, and answers with an ACK.
            net.sysctl(&net.client, "net/ipv4/tcp_timestamps", "0");
            let behind = behind_a_nat(net, f, NAT_PORT);
            let _server = listen(net, f, "close-first");
            let c = client(net, f, PORT, &["--local-port", NAT_PORT, "--reconnect-from", &behind]);
            let met = c.expect_line("time-wait: ", Duration::from_secs(60));
            assert!(met.starts_with("time-wait: met"), "{met}");
            vec![c.pid()]
        }) {
            // The server's TIME_WAIT is of the 4-tuple the NAT made, not of this socket's, so
            // no note of this host's ties the two: the ACK alone says what the peer holds. (Once
            // on 6.1 under TCG a segment reached the client's second address 15 ms after that
            // RST, with no socket there: its own RST, no_socket, says nothing of the reuse.)
            let ([sent], _) = exactly_with_optional(&reports, ["sent:timewait_reuse"], &["sent:no_socket"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["state"], "SYN_SENT");
            assert_kernel_reason(sent, "TCP_INVALID_ACK_SEQUENCE");
            assert!(sent["why"].as_str().unwrap().contains("through NAT"), "{sent}");
        }
    });
}

/// A client in SYN_SENT answered by a forged segment from a raw socket on the server host (no
/// listener there, and the stack's own RST to the SYN is filtered out).
fn forged_answer(net: &Net, f: Family, mode: &str) -> u64 {
    let _hide_rst = net.server_filter("output", "tcp flags rst drop");
    let forger = Stim::spawn(&net.server, &["forge", &net.server_addr(f), PORT, mode]);
    forger.expect_line("ready", T);
    let c = client(net, f, PORT, &["--syncnt", "1"]);
    forger.expect_line("forged", T);
    c.expect_line("errno", T);
    c.pid()
}

#[test]
fn forged_ack_to_a_connecting_socket_is_invalid_segment() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(16, |net, f| vec![forged_answer(net, f, "bad-ack")]) {
            // The server's own answers to the SYN (retransmitted) are sent, then dropped by its firewall.
            let [sent, _] = exactly(&reports, ["sent:invalid_segment", "sent:no_listener+"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["state"], "SYN_SENT");
            assert_kernel_reason(sent, "TCP_INVALID_ACK_SEQUENCE");
            // The server's stack refused that SYN itself: the ACK was no older connection's.
            assert!(sent["why"].as_str().unwrap().contains("refused that SYN"), "{sent}");
        }
    });
}

#[test]
fn syn_ack_with_a_bogus_timestamp_echo_is_paws_reject() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(17, |net, f| vec![forged_answer(net, f, "paws")]) {
            let [sent, _] = exactly(&reports, ["sent:paws_reject", "sent:no_listener+"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            assert_eq!(sent["state"], "SYN_SENT");
            assert_kernel_reason(sent, "TCP_RFC7323_PAWS");
        }
    });
}

/// rsttrace names its capture mode in one start-up line, matching what this kernel's
/// tcp_send_reset format offers (read here independently).
#[test]
fn start_up_line_names_the_capture_mode_of_this_kernel() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let format = send_reset_format();
        let (_, stderr) = Tracer::start(&["--network-evidence"]).stop();
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("capture mode:")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        let line = lines[0];
        // The per-segment hook: the tracepoint where its record names the segment (6.8+).
        let probe = std::fs::read_to_string("/sys/kernel/tracing/events/tcp/tcp_probe/format").expect("tcp_probe format");
        if probe.contains(" skbaddr;") && probe.contains(" skaddr;") {
            assert!(line.contains("hop counts sampled from tcp:tcp_probe"), "{line}");
        } else {
            assert!(line.contains("hop counts sampled by a kprobe on tcp_rcv_established"), "{line}");
        }
        if format.contains(" reason;") {
            assert!(line.contains("capture mode: kernel reasons"), "{line}");
        } else {
            assert!(line.contains("no kernel reasons") && line.contains("kernel_reason null"), "{line}");
        }
        if format.contains("saddr[28]") {
            assert!(line.contains("resets without a socket from tcp_send_reset"), "{line}");
        } else {
            // Before 6.10 the tracepoint fires for full sockets only: the kprobe must be attached.
            assert!(line.contains("from a kprobe on tcp_v4/v6_send_reset"), "{line}");
        }
        // Every kernel of the matrix has BTF, and the typed programs must load on each; `cargo
        // xtask test` runs this suite once more with RSTTRACE_HOOKS=classic for the fallback.
        if std::env::var("RSTTRACE_HOOKS").as_deref() == Ok("classic") {
            assert!(line.contains("; classic tracepoints (--hooks classic);"), "{line}");
        } else {
            assert!(std::path::Path::new("/sys/kernel/btf/vmlinux").exists(), "a kernel without BTF");
            // Before 6.10, `tcp_send_reset` keeps its classic program (the record of every socket).
            let typed = if format.contains("saddr[28]") { "; BTF-typed tracepoints;" } else { "; BTF-typed tracepoints (classic for tcp_send_reset: its record has the layout before 6.10);" };
            assert!(line.contains(typed), "{line}");
            // As shipped, with the paths that count storms in the kernel, which
            // `--network-evidence` leaves out: the verifier takes the same programs.
            let (_, shipped) = Tracer::start(&[]).stop();
            let shipped = shipped.lines().find(|l| l.contains("capture mode:")).unwrap_or_default().to_string();
            assert!(shipped.contains(typed), "{shipped}");
        }
    });
}

/// Connections waiting in the accept queue of the listener on `port`, as the kernel shows it to
/// process `pid`'s namespace (`/proc/PID/net/tcp*`: a listener's rx_queue is its accept queue).
fn accept_queue(pid: u64, f: Family, port: u16) -> Option<u32> {
    let file = if f == Family::V4 { "tcp" } else { "tcp6" };
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
        let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        (local_port == port && *state == "0A").then(|| u32::from_str_radix(queues.split(':').nth(1)?, 16).ok())?
    })
}

/// A bare ACK to a listener whose accept queue is full, with tcp_abort_on_overflow off (the
/// default): the full queue did not cause this reset (the stack would drop an overflowing ACK),
/// the listener just has no such connection. Kernels without a reason field must not guess
/// listen_overflow from the queue alone.
#[test]
fn stray_ack_to_a_full_listener_without_abort_on_overflow_is_no_socket() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(19, |net, f| {
            net.sysctl(&net.server, "net/ipv4/tcp_abort_on_overflow", "0");
            let server = listen(net, f, "overflow");
            // Three handshakes completed one after another over a backlog of 2 (each has the SYN
            // queue to itself): the accept queue ends over its limit, and /proc must show it.
            let queued: Vec<Stim> = (0..3)
                .map(|_| {
                    let mut c = client(net, f, PORT, &["--wait-go", "--send", "10"]);
                    c.expect_line("ready", T);
                    c.go();
                    std::thread::sleep(Duration::from_millis(100));
                    c
                })
                .collect();
            let queued_now = accept_queue(server.pid(), f, 8080);
            assert!(queued_now.is_some_and(|n| n > 2), "{f:?}: accept queue not over its backlog of 2: {queued_now:?}");
            let stray = Stim::spawn(&net.client, &["stray-ack", &net.server_addr(f), PORT, &net.client_addr(f)]);
            assert_eq!(stray.expect_line("sent", T), "sent");
            std::thread::sleep(Duration::from_millis(300));
            drop(queued);
            vec![server.pid()]
        }) {
            // One reset answers the stray ACK; then the server exits with three connections queued.
            // Their clients were killed just before: each client's socket is an orphan that sent
            // its FIN, and one whose FIN the server's stack acknowledged first has become a
            // FIN_WAIT2 remnant, which takes the listener's RST without tcp_receive_reset. How many
            // had is the test host's timing.
            let ([sent, ..], _) = exactly_with_optional(
                &reports,
                ["sent:no_socket", "sent:listener_closed", "sent:listener_closed", "sent:listener_closed"],
                &["received:peer_reset", "received:peer_reset", "received:peer_reset"],
            );
            assert_eq!(sent["rport"], 40404);
            assert_eq!(sent["state"], "LISTEN");
            assert_report(sent, f, "stack", Some(pids[0]));
        }
    });
}

/// A RST for a connection nobody has is never answered: no `sent` report may appear for it
/// (on 6.1 the kprobe fires before tcp_v4/v6_send_reset() returns for such a segment).
#[test]
fn a_stray_rst_is_not_answered_and_not_reported_as_sent() {
    again_if_the_kernel_skipped_runs(|| {
        for (_, reports, _) in traced(18, |net, f| {
            let stray = Stim::spawn(&net.client, &["stray-rst", &net.server_addr(f), CLOSED_PORT, &net.client_addr(f)]);
            assert_eq!(stray.expect_line("sent", T), "sent");
            // A real closed-port reset afterwards: once it is reported, the stray one would be too.
            let c = client(net, f, CLOSED_PORT, &[]);
            assert_eq!(c.expect_line("errno", T), "errno 111");
            vec![]
        }) {
            // Only the closed-port pair, the sent one answering the refused connect: nothing for
            // the stray RST (its source port is 40404; the connect's is ephemeral).
            let [sent, received] = exactly(&reports, ["sent:no_listener", "received:refused"]);
            assert_eq!((&sent["raddr"], &sent["rport"]), (&received["laddr"], &received["lport"]), "{reports:?}");
        }
    });
}

/// The server shuts its socket down (SHUT_RDWR) but keeps it; the client keeps sending. The
/// stack aborts: `tcp_reset()` on its own socket (the kernel's receive-reset tracepoint fires
/// although no RST arrived), then its RST. One sent report, no phantom received one.
#[test]
fn data_after_shutdown_is_data_after_close_and_no_received_reset_on_the_server() {
    again_if_the_kernel_skipped_runs(|| {
        data_after_the_stack_aborted(20, "shutdown-first", None, "shut the socket down for reading (shutdown)");
    });
}

/// A server in `server_mode` stops reading (after `sysctl` on its host); the client sends after
/// 300 ms; the stack aborts on that data. Exactly one sent report whose `why` says `why_end`
/// (then, where the server has exited since, that it has), and the client's received one.
fn data_after_the_stack_aborted(subnet: u8, server_mode: &str, sysctl: Option<(&str, &str)>, why_end: &str) {
    for (f, reports, pids) in traced(subnet, |net, f| {
        if let Some((path, value)) = sysctl {
            net.sysctl(&net.server, path, value);
        }
        let server = listen(net, f, server_mode);
        let c = client(net, f, PORT, &["--send-after", "300"]);
        c.expect_line("errno", T);
        vec![server.pid(), c.pid()]
    }) {
        let [sent, received] = exactly(&reports, ["sent:data_after_close", "received:peer_reset"]);
        assert_report(sent, f, "application", Some(pids[0]));
        assert_kernel_reason(sent, "TCP_ABORT_ON_DATA");
        assert_eq!(sent["state"], "CLOSE");
        assert!(sent["why"].as_str().unwrap().contains(why_end), "{sent}");
        assert_report(received, f, "peer", Some(pids[1]));
        assert_eq!(received["peer_cause"], "data_after_close");
    }
}

/// A server closes its listening socket while two connections wait in its accept queue: the
/// kernel resets both in the closer's system call.
#[test]
fn closing_a_listener_with_waiting_connections_is_listener_closed() {
    listener_closed_under_two_waiting(21, |_, server| {
        server.go();
        server.expect_line("closed", T);
    });
}

/// `ss -K` destroys the listener under two waiting connections: the listener is still its
/// server's, which the reports name, with `ss` as the closer.
#[test]
fn a_listener_destroyed_by_ss_is_its_servers_with_ss_named_as_the_closer() {
    listener_closed_under_two_waiting(59, |net, _| {
        rsttrace_tests::in_ns(&net.server, "ss", &["-K", "-tln", "sport", "=", ":8080"]);
    });
}

/// A graceful reload: the old server and its successor listen on one port with SO_REUSEPORT,
/// and the old one, which started first, closes its listener under the connections waiting in
/// its own queue. Those resets are the old server's; the successor, listening on, is no party.
#[test]
fn a_reuseport_member_closing_its_listener_resets_its_own_queue_as_its_own() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(77, |net, f| {
            let mut old = listen(net, f, "close-listener-on-go+reuseport");
            let new = listen(net, f, "hold+reuseport");
            // The group spreads handshakes by their 4-tuples: of 16, some wait in the old one's
            // queue (all 16 going to one member: 1 time in 32,768).
            let clients: Vec<Stim> = (0..16)
                .map(|_| {
                    let c = client(net, f, PORT, &[]);
                    c.expect_line("ready", T);
                    c
                })
                .collect();
            old.go();
            old.expect_line("closed", T);
            std::thread::sleep(Duration::from_millis(500));
            drop(clients);
            vec![old.pid(), new.pid()]
        }) {
            let sent: Vec<&Value> = reports.iter().filter(|r| r["direction"] == "sent").collect();
            assert!(!sent.is_empty(), "no reset of the old server's queue: {reports:?}");
            for r in &sent {
                assert_eq!(r["cause"], "listener_closed", "{r}");
                assert_report(r, f, "application", Some(pids[0]));
                assert!(r["why"].as_str().unwrap().starts_with(&format!("rststim[{}] closed its listening socket", pids[0])), "{r}");
            }
            let received = reports.iter().filter(|r| r["direction"] == "received").inspect(|r| assert_eq!(r["peer_cause"], "listener_closed", "{r}")).count();
            assert_eq!(received, sent.len(), "{reports:?}");
        }
    });
}

/// The server's stack never gets the handshake's last ACK (a full accept queue drops it so,
/// here a firewall), so the client takes the connection for open while the server has only
/// its half-open request; the listener closes, and the client's data then meets no socket.
#[test]
fn data_for_a_handshake_a_closed_listener_never_finished_names_that_listener() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(87, |net, f| {
            let mut server = listen(net, f, "close-listener-on-go");
            let last_ack = net.server_filter("input", &format!("tcp dport {PORT} tcp flags & (syn | ack) == ack drop"));
            let mut c = client(net, f, PORT, &["--wait-go", "--send", "100"]);
            c.expect_line("ready", T);
            server.go();
            server.expect_line("closed", T);
            drop(last_ack);
            c.go();
            assert_eq!(c.expect_line("errno", T), "errno 104");
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:no_socket", "received:peer_reset"]);
            assert_report(sent, f, "stack", Some(pids[0]));
            let why = sent["why"].as_str().unwrap();
            assert!(why.contains(&format!("whose listener, rststim[{}]'s, closed", pids[0])), "{sent}");
            assert_report(received, f, "peer", Some(pids[1]));
            assert_eq!(received["peer_cause"], "no_socket", "{received}");
        }
    });
}

/// Two connections wait in the accept queue of a server that never accepts; `close` closes its
/// listener. Both are reset, reported as the server's.
fn listener_closed_under_two_waiting(subnet: u8, close: impl Fn(&Net, &mut Stim)) {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(subnet, |net, f| {
            let mut server = listen(net, f, "close-listener-on-go");
            let clients: Vec<Stim> = (0..2)
                .map(|_| {
                    let c = client(net, f, PORT, &[]);
                    c.expect_line("ready", T);
                    c
                })
                .collect();
            close(net, &mut server);
            for c in &clients {
                assert_eq!(c.expect_line("errno", T), "errno 104");
            }
            let mut pids = vec![server.pid()];
            pids.extend(clients.iter().map(Stim::pid));
            pids
        }) {
            let [sent, _, received, _] =
                exactly(&reports, ["sent:listener_closed", "sent:listener_closed", "received:peer_reset", "received:peer_reset"]);
            for r in reports.iter().filter(|r| r["direction"] == "sent") {
                assert_report(r, f, "application", Some(pids[0]));
                assert_kernel_reason(r, "TCP_STATE");
                assert_eq!(r["lport"], 8080);
                let why = r["why"].as_str().unwrap();
                assert!(why.contains(" on port 8080 with 2 connections waiting"), "{r}");
                // Closed by another process: `ss` acted, as `current_*` and `why` say.
                if r["current_pid"] != r["pid"] {
                    assert_eq!(r["current_comm"], "ss", "{r}");
                    assert!(why.starts_with(&format!("ss[{}] closed the listening socket of rststim[{}]", r["current_pid"], pids[0])), "{r}");
                } else {
                    assert!(why.starts_with(&format!("rststim[{}] closed its listening socket", pids[0])), "{r}");
                }
            }
            for r in reports.iter().filter(|r| r["direction"] == "received") {
                assert_eq!(r["peer_cause"], "listener_closed");
                assert!(pids[1..].contains(&r["pid"].as_u64().unwrap()), "{r}");
            }
            assert_eq!(sent["benign"], false);
            assert_eq!(received["state"], "ESTABLISHED");
        }
    });
}

/// An administrator kills an established connection with `ss -K` on the server host: the RST
/// runs in ss's system call, on a socket ss does not own.
#[test]
fn ss_kill_is_socket_destroyed_by_ss_on_the_owners_socket() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(22, |net, f| {
            let server = listen(net, f, "hold");
            let c = client(net, f, PORT, &[]);
            c.expect_line("ready", T);
            std::thread::sleep(Duration::from_millis(100));
            let peer = if f == Family::V6 { format!("[{}]", net.client_addr(f)) } else { net.client_addr(f) };
            rsttrace_tests::in_ns(&net.server, "ss", &["-K", "-t", "dst", &peer]);
            assert_eq!(c.expect_line("errno", T), "errno 104");
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:socket_destroyed", "received:peer_reset"]);
            // The owner stays the server; the killer is the task that ran the call.
            // The server never used the socket, so it has no owner on record: it is found holding
            // the socket's file.
            assert_report(sent, f, "application", Some(pids[0]));
            assert_eq!(sent["attribution"], "socket_file", "{sent}");
            assert_eq!(sent["current_comm"], "ss");
            assert_eq!(sent["state"], "ESTABLISHED");
            let why = sent["why"].as_str().unwrap();
            assert!(why.starts_with(&format!("ss[{}] destroyed the socket of rststim[{}]", sent["current_pid"], pids[0])), "{sent}");
            assert_report(received, f, "peer", Some(pids[1]));
            assert_eq!(received["peer_cause"], "socket_destroyed");
        }
    });
}

/// A connection established before rsttrace starts (most long-lived ones on a production host)
/// dies of a keepalive timeout: one report, not also a timeout abort; then the server exits and
/// the RST its FIN draws is received in the state the kernel holds, FIN_WAIT1.
#[test]
fn keepalive_timeout_on_a_connection_older_than_rsttrace() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(23);
        for f in FAMILIES {
            let (mine, pids) = older_connection_filtered(&net, f, &["--keepalive", "1,1,2"], "tcp dport 8080 drop", "errno 110", Duration::ZERO);
            let [sent, no_socket, received] = exactly(&mine, ["sent:keepalive_timeout", "sent:no_socket", "received:peer_reset"]);
            assert_kernel_reason(sent, "TCP_KEEPALIVE_TIMEOUT");
            // Never used while rsttrace ran: its holder is found by the socket's file, the way
            // `ss -p` finds it, even though the client closed it at once after the error.
            assert_eq!((sent["pid"].as_u64(), sent["attribution"].as_str()), (Some(pids[0]), Some("socket_file")), "{sent}");
            assert_eq!(sent["state"], "ESTABLISHED");
            assert_eq!(sent["family"], f.name());
            assert_eq!(no_socket["family"], f.name());
            assert_report(received, f, "peer", Some(pids[1]));
            assert_eq!(received["state"], "FIN_WAIT1");
            assert_eq!(received["peer_cause"], "no_socket");
        }
    });
}

/// A server that listened before rsttrace started: the connection it accepted and never used
/// is still its own when the client aborts it, and a firewall's RST to a connect() to it is
/// still no refusal of its (rsttrace reads the listeners older than itself at start).
#[test]
fn a_listener_older_than_rsttrace_owns_its_connections_and_a_forged_refusal_is_injected() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(35);
        for f in FAMILIES {
            let server = listen(&net, f, "hold");
            let tracer = Tracer::start(&[]);
            // The probe aborts once told: its handshake's last ACK, sent from connect()'s
            // softirq, must not be overtaken by its RST from another CPU (seen under TCG), which
            // would leave the server's half-open request to vanish unreported.
            let mut probe = client(&net, f, PORT, &["--linger0", "--wait-go"]);
            probe.expect_line("ready", T);
            std::thread::sleep(std::time::Duration::from_millis(100));
            probe.go();
            probe.wait(T);
            let reject = net.server_filter("input", "tcp dport 8080 tcp flags syn reject with tcp reset");
            let refused = client(&net, f, PORT, &[]);
            assert_eq!(refused.expect_line("errno", T), "errno 111");
            drop(reject);
            let (reports, _) = tracer.stop();
            let mine = net.reports_of_this_test(reports);
            let [sent, received, injected] = exactly(&mine, ["sent:app_abort_linger0", "received:peer_reset", "received:injected"]);
            assert_report(sent, f, "application", Some(probe.pid()));
            assert_report(received, f, "peer", Some(server.pid()));
            assert_report(injected, f, "network", Some(refused.pid()));
            assert_eq!(injected["state"], "SYN_SENT", "{injected}");
        }
    });
}

/// A server listening on `[::]` (dual-stack, as nginx `listen [::]`, Java, Go and Node do)
/// resets an IPv4 client: the reports say what the wire carried, IPv4 with plain addresses, and
/// `-4` keeps them.
#[test]
fn ipv4_client_of_a_dual_stack_listener_is_reported_as_ipv4() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(24);
        let tracer = Tracer::start(&["-4"]);
        let server = Stim::spawn(&net.server, &["listen", "::", PORT, "unread-close"]);
        server.expect_line("ready", T);
        let c = client(&net, Family::V4, PORT, &["--send", "100"]);
        assert_eq!(c.expect_line("errno", T), "errno 104");
        let (reports, _) = tracer.stop();
        let mine = net.reports_of_this_test(reports);
        let [sent, received] = exactly(&mine, ["sent:app_abort_unread", "received:peer_reset"]);
        assert_report(sent, Family::V4, "application", Some(server.pid()));
        assert_eq!(sent["laddr"], net.server_addr(Family::V4));
        assert_eq!(sent["raddr"], net.client_addr(Family::V4));
        assert_report(received, Family::V4, "peer", Some(c.pid()));
        assert_eq!(received["peer_cause"], "app_abort_unread");
    });
}

/// With `tcp_fin_timeout` over a minute, a closed socket waits in FIN_WAIT2 as a full (orphaned)
/// socket instead of a TIME_WAIT remnant: data arriving then makes the stack abort it the same
/// way as after shutdown() (`tcp_reset()` on its own socket, then its RST), and the report says
/// the application closed it.
#[test]
fn data_after_close_on_an_orphaned_fin_wait2_socket_is_one_sent_reset() {
    again_if_the_kernel_skipped_runs(|| {
        data_after_the_stack_aborted(25, "close-first", Some(("net/ipv4/tcp_fin_timeout", "120")), "closed the socket");
    });
}

/// Happy eyeballs (RFC 8305): a client races the service's IPv4 and IPv6 addresses, keeps the
/// IPv6 connection and aborts the IPv4 one right after its handshake. The two remote addresses
/// differ; the process, the remote port and the timing make it a race.
#[test]
fn happy_eyeballs_loser_over_the_other_family_is_a_benign_race_loser() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(26);
        let tracer = Tracer::start(&[]);
        let server = Stim::spawn(&net.server, &["listen", "::", PORT, "hold"]);
        server.expect_line("ready", T);
        let mut c = client(&net, Family::V4, PORT, &["--race-with", &net.server_addr(Family::V6)]);
        c.expect_line("ready", T);
        c.wait(T);
        let (reports, _) = tracer.stop();
        let mine = net.reports_of_this_test(reports);
        let [sent, received] = exactly(&mine, ["sent:connect_race_loser", "received:peer_reset"]);
        assert_report(sent, Family::V4, "application", Some(c.pid()));
        assert_eq!(sent["benign"], true);
        assert_report(received, Family::V4, "peer", Some(server.pid()));
        assert_eq!(received["peer_cause"], "connect_race_loser");
    });
}

/// Each end of a reset runs in a cgroup laid out as a service manager or container runtime lays
/// it out; each report names the cgroup its socket was created in and what that says: the
/// systemd unit, the container, the pod; and, where the runtime's state on the host says, the
/// pod's name and namespace and the container's name. (A server's accepted sockets are its
/// listener's.)
#[test]
fn reports_name_the_unit_container_and_pod_of_the_socket() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(27);
        let top = format!("rsttrace-e2e-{}", std::process::id());
        let id = |n: u8| format!("{n:x}").repeat(64);
        let pod = "0b3a2f1e-5c7d-4e2a-9b1c-6d8e7f0a1b2c";
        let pod_slice = format!("kubepods-burstable-pod{}.slice", pod.replace('-', "_"));
        let service = Cgroup::nested(&[&top, "system.slice", "shop.service"]);
        let docker = Cgroup::nested(&[&top, "system.slice", &format!("docker-{}.scope", id(1))]);
        let kubelet = Cgroup::nested(&[&top, "kubepods.slice", "kubepods-burstable.slice", &pod_slice, &format!("cri-containerd-{}.scope", id(2))]);
        let cgroupfs = Cgroup::nested(&[&top, "kubepods", "besteffort", &format!("pod{pod}"), &id(3)]);
        // What the runtimes keep on the host for these containers: containerd's task bundle with its
        // CRI plugin's annotations, Docker's container config; the cgroupfs container has none.
        let runtimes = rsttrace_tests::temp_dir::TempDir::new("e2e-runtimes");
        let put = |relative: &str, body: &str| {
            let path = runtimes.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        };
        put(
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{}/config.json", id(2)),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-name":"shop-7c9d","io.kubernetes.cri.sandbox-namespace":"retail","io.kubernetes.cri.container-name":"api"}}"#,
        );
        put(&format!("var/lib/docker/containers/{}/config.v2.json", id(1)), r#"{"Name":"/checkout","Config":{"Labels":{}}}"#);
        let tracer = Tracer::start(&["--runtime-root", runtimes.path().to_str().unwrap()]);
        let f = Family::V4;
        for (server_cg, client_cg, port) in [(&service, &docker, "8080"), (&kubelet, &cgroupfs, "8081")] {
            let server = Stim::spawn_in_cgroup(&server_cg.path, &net.server, &["listen", &net.server_addr(f), port, "unread-close"]);
            server.expect_line("ready", T);
            let c = Stim::spawn_in_cgroup(&client_cg.path, &net.client, &["connect", &net.server_addr(f), port, "--send", "100"]);
            assert_eq!(c.expect_line("errno", T), "errno 104");
        }
        let (reports, _) = tracer.stop();
        let mine = net.reports_of_this_test(reports);
        exactly(&mine, ["sent:app_abort_unread", "received:peer_reset", "sent:app_abort_unread", "received:peer_reset"]);
        let find = |direction: &str, end: &str, port: u64| mine.iter().find(|r| r["direction"] == direction && r[end] == port).unwrap();
        let (a_sent, a_received) = (find("sent", "lport", 8080), find("received", "rport", 8080));
        let (b_sent, b_received) = (find("sent", "lport", 8081), find("received", "rport", 8081));
        let identity = |r: &Value| (r["cgroup"].clone(), r["unit"].clone(), r["container_id"].clone(), r["pod_uid"].clone());
        let v = |s: &str| Value::from(s);
        assert_eq!(identity(a_sent), (v(&service.relative()), v("shop.service"), Value::Null, Value::Null), "{a_sent}");
        let docker_scope = format!("docker-{}.scope", id(1));
        assert_eq!(identity(a_received), (v(&docker.relative()), v(&docker_scope), v(&id(1)), Value::Null), "{a_received}");
        let containerd_scope = format!("cri-containerd-{}.scope", id(2));
        assert_eq!(identity(b_sent), (v(&kubelet.relative()), v(&containerd_scope), v(&id(2)), v(pod)), "{b_sent}");
        assert_eq!(identity(b_received), (v(&cgroupfs.relative()), Value::Null, v(&id(3)), v(pod)), "{b_received}");
        let names = |r: &Value| (r["pod"].clone(), r["pod_namespace"].clone(), r["container"].clone());
        assert_eq!(names(a_sent), (Value::Null, Value::Null, Value::Null), "a service, no container: {a_sent}");
        assert_eq!(names(a_received), (Value::Null, Value::Null, v("checkout")), "{a_received}");
        assert_eq!(names(b_sent), (v("shop-7c9d"), v("retail"), v("api")), "{b_sent}");
        assert_eq!(names(b_received), (Value::Null, Value::Null, Value::Null), "no runtime state: {b_received}");
    });
}

/// Socket activation: the service manager makes the listening socket in its own cgroup, and the
/// service, in another, accepts on it. A reset the service sends in its own call (closing with
/// data unread) is its workload's, not the socket maker's, whose cgroup the socket holds.
#[test]
fn a_reset_sent_in_its_owners_call_is_that_processes_workload_not_the_socket_makers() {
    again_if_the_kernel_skipped_runs(|| {
        require_root();
        let net = Net::new(83);
        let top = format!("rsttrace-e2e-activation-{}", std::process::id());
        let manager = Cgroup::nested(&[&top, "init.scope"]);
        let service = Cgroup::nested(&[&top, "system.slice", "echo.service"]);
        let tracer = Tracer::start(&[]);
        let f = Family::V4;
        let server = Stim::spawn_in_cgroup(&manager.path, &net.server, &["listen", &net.server_addr(f), PORT, "unread-close"]);
        server.expect_line("ready", T);
        // The listener was made in the manager's cgroup; the service takes it over.
        std::fs::write(service.path.join("cgroup.procs"), server.pid().to_string()).unwrap();
        let c = client(&net, f, PORT, &["--send", "100"]);
        assert_eq!(c.expect_line("errno", T), "errno 104");
        let (reports, _) = tracer.stop();
        let mine = net.reports_of_this_test(reports);
        let [sent, _] = exactly(&mine, ["sent:app_abort_unread", "received:peer_reset"]);
        let workload = (sent["pid"].as_u64(), sent["cgroup"].as_str(), sent["unit"].as_str());
        assert_eq!(workload, (Some(server.pid()), Some(service.relative().as_str()), Some("echo.service")), "{sent}");
    });
}

/// A client aborts a connection the server has not accepted yet: the RST reaches a socket in the
/// listener's accept queue, which no process has touched; it belongs to the listener's owner.
#[test]
fn a_reset_in_the_accept_queue_belongs_to_the_listeners_owner() {
    again_if_the_kernel_skipped_runs(|| {
        for (f, reports, pids) in traced(28, |net, f| {
            let mut server = listen(net, f, "close-listener-on-go");
            let mut c = client(net, f, PORT, &["--linger0", "--wait-go"]);
            c.expect_line("ready", T);
            // The handshake's last ACK first: a RST overtaking it (another CPU of a slow guest)
            // finds only the request, and the listener answers the ACK that follows.
            std::thread::sleep(Duration::from_millis(100));
            c.go();
            c.wait(T);
            std::thread::sleep(Duration::from_millis(100));
            server.go();
            server.expect_line("closed", T);
            vec![server.pid(), c.pid()]
        }) {
            let [sent, received] = exactly(&reports, ["sent:app_abort_linger0", "received:peer_reset"]);
            assert_report(sent, f, "application", Some(pids[1]));
            assert_report(received, f, "peer", Some(pids[0]));
            assert_eq!((received["attribution"].as_str(), received["lport"].as_u64()), (Some("socket_owner"), Some(8080)));
        }
    });
}
