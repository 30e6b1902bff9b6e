//! End-to-end: what operators rely on around the reports: in-kernel filters, the JSON contract's
//! types, the summary, file rotation under a storm, the metrics endpoint, and storms folded past
//! `--max-rate`.
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use rsttrace_tests::{refused_storm, require_root, summary_number, Cgroup, Family, Net, Stim, Tracer, FAMILIES};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn refused(net: &Net, f: Family, n: u32) {
    refused_storm(net, f, n, "9");
}

fn lost_total(stderr: &str) -> u64 {
    summary_number(stderr, " events lost,")
}

#[test]
fn family_and_port_filters_drop_events_in_the_kernel() {
    require_root();
    let net = Net::new(40);
    let tracer = Tracer::start(&["-6", "-L", "9"]);
    for f in FAMILIES {
        refused(&net, f, 2);
    }
    let (reports, stderr) = tracer.stop();
    let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    // Only IPv6 with local port 9: the server's sent resets; the clients' received ones have
    // an ephemeral local port.
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.iter().all(|r| r["family"] == "ipv6" && r["lport"] == 9 && r["direction"] == "sent"));
    assert_eq!(lost_total(&stderr), 0, "filtered events are not lost events: {stderr}");
}

/// A port filter keeps the other end's RST in view where that end is on this host: the client's
/// refusal, the only report -D keeps, names this host's stack refusing the SYN as its cause.
#[test]
fn a_remote_port_filter_keeps_a_local_peers_cause() {
    require_root();
    let net = Net::new(85);
    let tracer = Tracer::start(&["-D", "9"]);
    refused(&net, Family::V4, 1);
    let (reports, _) = tracer.stop();
    let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    let [r] = mine.as_slice() else { panic!("{mine:?}") };
    assert_eq!((r["direction"].as_str(), r["cause"].as_str(), r["rport"].as_u64()), (Some("received"), Some("refused"), Some(9)), "{r}");
    assert_eq!(r["peer_cause"], "no_listener", "{r}");
}

/// Under `-p`, a received reset sent by another process on this host still names that RST's
/// cause (`peer_cause`); the sender's own report stays out.
#[test]
fn a_pid_filter_keeps_the_cause_of_a_local_peers_reset() {
    keeps_the_cause_of_a_local_peers_reset(88, |net, args| Stim::spawn(&net.server, args), |server| vec!["-p".into(), server.pid().to_string()]);
}

/// The same under `-c`, the server in the cgroup.
#[test]
fn a_cgroup_filter_keeps_the_cause_of_a_local_peers_reset() {
    let cgroup = Cgroup::new("rsttrace-peer");
    let path = cgroup.path.to_str().unwrap().to_string();
    keeps_the_cause_of_a_local_peers_reset(89, |net, args| Stim::spawn_in_cgroup(&cgroup.path, &net.server, args), |_| vec!["-c".into(), path.clone()]);
}

/// A server (`spawn`) the filter (`filter`) keeps, and a client outside it that aborts its
/// connection: only the server's received reset is reported, with the client's cause.
fn keeps_the_cause_of_a_local_peers_reset(subnet: u8, spawn: impl Fn(&Net, &[&str]) -> Stim, filter: impl Fn(&Stim) -> Vec<String>) {
    require_root();
    let net = Net::new(subnet);
    for f in FAMILIES {
        let server = spawn(&net, &["listen", &net.server_addr(f), "8080", "hold"]);
        server.expect_line("ready", T);
        let args = filter(&server);
        let tracer = Tracer::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut c = Stim::spawn(&net.client, &["connect", &net.server_addr(f), "8080", "--wait-go", "--linger0"]);
        c.expect_line("ready", T);
        c.go();
        assert_eq!(server.expect_line("errno", T), "errno 104");
        let (reports, _) = tracer.stop();
        let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
        let [r] = mine.as_slice() else { panic!("{f:?}: {mine:?}") };
        assert_eq!((r["direction"].as_str(), r["cause"].as_str(), r["pid"].as_u64()), (Some("received"), Some("peer_reset"), Some(server.pid())), "{r}");
        assert_eq!(r["peer_cause"], "app_abort_linger0", "{r}");
    }
}

#[test]
fn pid_filter_keeps_only_that_owners_sockets() {
    require_root();
    let net = Net::new(41);
    let server = Stim::spawn(&net.server, &["listen", &net.server_addr(Family::V4), "8080", "unread-close"]);
    server.expect_line("ready", T);
    let tracer = Tracer::start(&["-p", &server.pid().to_string()]);
    refused(&net, Family::V4, 2);
    let c = Stim::spawn(&net.client, &["connect", &net.server_addr(Family::V4), "8080", "--send", "10"]);
    c.expect_line("errno", T);
    let (reports, stderr) = tracer.stop();
    let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|r| r["pid"].as_u64() == Some(server.pid())), "{mine:?}");
    assert!(mine.iter().any(|r| r["cause"] == "app_abort_unread"));
    assert_eq!(lost_total(&stderr), 0);
}

#[test]
fn json_reports_carry_every_contract_field_with_its_type() {
    require_root();
    let net = Net::new(42);
    let tracer = Tracer::start(&[]);
    for f in FAMILIES {
        refused(&net, f, 1);
    }
    let (reports, _) = tracer.stop();
    let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    assert_eq!(mine.len(), 4, "{mine:?}");
    for r in mine {
        assert!(["reset", "abort"].contains(&r["type"].as_str().unwrap()), "{r}");
        assert!(["sent", "received"].contains(&r["direction"].as_str().unwrap()), "{r}");
        for field in ["cause", "origin", "state", "family", "laddr", "raddr", "attribution", "ts", "why"] {
            assert!(r[field].is_string(), "{field} not a string: {r}");
        }
        assert!(r["benign"].is_boolean(), "{r}");
        assert!(r["kernel_reason"].is_string() || r["kernel_reason"].is_null(), "{r}");
        for field in ["lport", "rport", "netns"] {
            assert!(r[field].is_u64(), "{field} not an integer: {r}");
        }
        assert!(r["pid"].is_u64() || r["pid"].is_null(), "{r}");
        assert!(r["comm"].is_string() || r["comm"].is_null(), "{r}");
        assert_eq!(r["pid"].is_null(), r["attribution"] == "none", "{r}");
        let laddr: std::net::IpAddr = r["laddr"].as_str().unwrap().parse().unwrap();
        assert_eq!(laddr.is_ipv4(), r["family"] == "ipv4", "{r}");
    }
}

#[test]
fn summary_counts_match_the_reported_events() {
    require_root();
    let net = Net::new(43);
    let tracer = Tracer::start(&[]);
    refused(&net, Family::V4, 3);
    refused(&net, Family::V6, 2);
    let (reports, stderr) = tracer.stop();
    let count = |cause: &str| reports.iter().filter(|r| r["cause"] == cause).count();
    let line = stderr.lines().find(|l| l.trim_start().starts_with("by cause:")).expect("by cause line");
    for cause in ["no_listener", "refused"] {
        assert!(count(cause) >= 5);
        assert!(line.contains(&format!("{cause}={}", count(cause))), "{line} vs {} {cause}", count(cause));
    }
    let total = stderr.lines().find(|l| l.contains("resets/aborts")).unwrap();
    assert!(total.contains(&format!(": {} resets/aborts", reports.len())), "{total} vs {}", reports.len());
    // Every report rests on at least one event from the kernel.
    assert!(summary_number(&stderr, " events read") >= reports.len() as u64, "{total}");
}

#[test]
fn rotation_never_loses_or_splits_a_line_under_a_storm() {
    require_root();
    let net = Net::new(44);
    let dir = std::env::temp_dir().join(format!("rsttrace-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("resets.json");
    // Every report its own line (no folding): rotation is what is tested here.
    let tracer = Tracer::start(&["--output", file.to_str().unwrap(), "--rotate-size", "16K", "--rotate-keep", "1000", "--max-rate", "0"]);
    refused(&net, Family::V4, 300);
    refused(&net, Family::V6, 300);
    let (reports, stderr) = tracer.stop();
    let mut lines = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        files += 1;
        assert!(text.len() as u64 <= 16 * 1024, "{} is {} bytes", path.display(), text.len());
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends mid-line", path.display());
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("split line in {}: {line}: {e}", path.display()));
            assert!(v["type"].is_string());
            // The trace's start and end records are in the files too, not on stdout's list.
            if v["type"] != "trace" {
                lines += 1;
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(files > 5, "only {files} files: rotation did not happen");
    assert!(reports.len() >= 1200, "storm produced {} reports", reports.len());
    assert_eq!(lines, reports.len(), "file lines vs stdout reports (lost: {})", lost_total(&stderr));
}

/// The metrics endpoint's whole answer (status line, headers, body).
fn scrape(port: u16) -> String {
    let mut http = TcpStream::connect(("127.0.0.1", port)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    body
}

/// A metrics port of this test run's own.
fn metrics_port(offset: u16) -> u16 {
    19_000 + (std::process::id() % 1000) as u16 + offset
}

/// The value of the metrics line that starts with `series` (labels included).
fn metric(body: &str, series: &str) -> u64 {
    let line = body.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no `{series}` in:\n{body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn metrics_endpoint_counts_the_scenario() {
    require_root();
    let net = Net::new(45);
    let port = metrics_port(0);
    // A closed port of its own, filtered in the kernel: nothing else on the host is counted.
    let tracer = Tracer::start(&["--metrics", &port.to_string(), "--direction", "sent", "--cause", "no_listener", "-L", "19"]);
    for f in FAMILIES {
        refused_storm(&net, f, 2, "19");
    }
    std::thread::sleep(Duration::from_millis(500));
    let body = scrape(port);
    let (reports, stderr) = tracer.stop();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let expected = format!(
        "rsttrace_resets_total{{direction=\"sent\",cause=\"no_listener\",origin=\"stack\",comm=\"-\",unit=\"-\",container=\"-\"}} {}",
        reports.len()
    );
    assert_eq!(reports.len(), 4, "{reports:?}\nmetrics:\n{body}\nstderr:\n{stderr}");
    assert!(body.contains(&expected), "missing `{expected}` in:\n{body}");
    assert!(body.contains("rsttrace_events_lost_total 0"), "{body}");
    assert_eq!(metric(&body, "rsttrace_reports_folded_total"), 0, "4 reports are far below the default --max-rate");
    assert_eq!(metric(&body, "rsttrace_reports_held"), 0, "every report was classified and written");
    assert!(body.contains("rsttrace_build_info{version="), "{body}");
}

/// `-c` keeps the sockets owned in the cgroup named and in the cgroups below it (a slice's
/// services, a pod's containers), and no other.
#[test]
fn cgroup_filter_keeps_only_sockets_owned_inside_it() {
    require_root();
    let net = Net::new(46);
    let name = format!("rsttrace-test-{}", std::process::id());
    let cgroup = Cgroup::nested(&[&name]);
    let below = Cgroup::nested(&[&name, "worker.scope"]);
    let addr = net.server_addr(Family::V4);
    let inside = Stim::spawn_in_cgroup(&cgroup.path, &net.server, &["listen", &addr, "8080", "unread-close"]);
    inside.expect_line("ready", T);
    let deeper = Stim::spawn_in_cgroup(&below.path, &net.server, &["listen", &addr, "8082", "unread-close"]);
    deeper.expect_line("ready", T);
    let outside = Stim::spawn(&net.server, &["listen", &addr, "8081", "unread-close"]);
    outside.expect_line("ready", T);
    let tracer = Tracer::start(&["-c", cgroup.path.to_str().unwrap()]);
    for port in ["8080", "8081", "8082"] {
        let c = Stim::spawn(&net.client, &["connect", &addr, port, "--send", "10"]);
        c.expect_line("errno", T);
    }
    let (reports, _) = tracer.stop();
    let mine: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    for server in [&inside, &deeper] {
        assert!(mine.iter().any(|r| r["cause"] == "app_abort_unread" && r["pid"].as_u64() == Some(server.pid())), "{} missing: {mine:?}", server.pid());
    }
    assert!(mine.iter().all(|r| [inside.pid(), deeper.pid()].contains(&r["pid"].as_u64().unwrap_or(0))), "only the cgroup's sockets: {mine:?}");
    drop(inside);
    drop(deeper);
    drop(outside);
}

/// A reset's series in the metrics carry the socket's workload: its systemd unit and container.
#[test]
fn metrics_label_resets_with_the_sockets_unit_and_container() {
    require_root();
    let net = Net::new(47);
    let port = metrics_port(3);
    let id = "ab".repeat(32);
    let scope = format!("docker-{id}.scope");
    let cgroup = Cgroup::nested(&[&format!("rsttrace-op-{}", std::process::id()), "system.slice", &scope]);
    let addr = net.server_addr(Family::V4);
    let tracer = Tracer::start(&["--metrics", &port.to_string(), "-L", "8080"]);
    let server = Stim::spawn_in_cgroup(&cgroup.path, &net.server, &["listen", &addr, "8080", "unread-close"]);
    server.expect_line("ready", T);
    let c = Stim::spawn(&net.client, &["connect", &addr, "8080", "--send", "10"]);
    assert_eq!(c.expect_line("errno", T), "errno 104");
    std::thread::sleep(Duration::from_millis(500));
    let body = scrape(port);
    let (reports, _) = tracer.stop();
    assert!(reports.iter().any(|r| net.owns(r) && r["container_id"] == id.as_str()), "{reports:?}");
    let series = format!(
        "rsttrace_resets_total{{direction=\"sent\",cause=\"app_abort_unread\",origin=\"application\",comm=\"rststim\",unit=\"{scope}\",container=\"{}\"}}",
        &id[..12]
    );
    assert_eq!(metric(&body, &series), 1, "{body}");
    drop(server);
}

/// `--container` keeps the resets of sockets made in one container; `--netns` those of one
/// network namespace, named by path or by inode.
#[test]
fn container_and_netns_filters_keep_only_their_sockets() {
    require_root();
    let net = Net::new(48);
    let top = format!("rsttrace-op-{}", std::process::id());
    let (mine, other) = ("cd".repeat(32), "ef".repeat(32));
    let inside = Cgroup::nested(&[&top, "system.slice", &format!("docker-{mine}.scope")]);
    let outside = Cgroup::nested(&[&top, "system.slice", &format!("docker-{other}.scope")]);
    let addr = net.server_addr(Family::V4);
    let by_container = Tracer::start(&["--container", &mine[..12]]);
    let server_ns = format!("/run/netns/{}", net.server);
    let by_path = Tracer::start(&["--netns", &server_ns]);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&server_ns).unwrap()).to_string();
    let by_inode = Tracer::start(&["--netns", &inode]);
    for (cgroup, port) in [(&inside, "8080"), (&outside, "8081")] {
        let server = Stim::spawn_in_cgroup(&cgroup.path, &net.server, &["listen", &addr, port, "unread-close"]);
        server.expect_line("ready", T);
        let c = Stim::spawn(&net.client, &["connect", &addr, port, "--send", "10"]);
        assert_eq!(c.expect_line("errno", T), "errno 104");
    }
    let (contained, _) = by_container.stop();
    assert_eq!(contained.len(), 1, "only the sent reset of the container's socket: {contained:?}");
    assert_eq!((contained[0]["container_id"].as_str(), contained[0]["lport"].as_u64()), (Some(mine.as_str()), Some(8080)));
    for tracer in [by_path, by_inode] {
        let (reports, _) = tracer.stop();
        let ours: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
        assert_eq!(ours.len(), 2, "the two sent resets, not the client's received ones: {reports:?}");
        assert!(reports.iter().all(|r| r["netns"].to_string() == inode), "{reports:?}");
    }
}

#[test]
fn cost_floor_attaches_empty_programs_and_reports_nothing() {
    let classic = cost_floor_run("--cost-floor", "floor_tracepoin");
    let raw = cost_floor_run("--cost-floor=raw", "floor_raw_trace");
    assert_eq!(classic, raw, "raw tracepoints on every hook the classic floor uses");
}

/// Run the floor while resets happen: every tracepoint runs `tracepoint_program` (a name as the
/// kernel truncates it), no real program runs, and nothing is reported. Returns how many
/// tracepoints it ran on.
fn cost_floor_run(flag: &str, tracepoint_program: &str) -> usize {
    require_root();
    let net = Net::new(64);
    let mut floor = std::process::Command::new(rsttrace_tests::rsttrace_bin())
        .args([flag, "-d", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rsttrace --cost-floor");
    let stderr = std::io::BufReader::new(floor.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
        let attached = line.contains("attached empty programs");
        seen.push(line);
        if attached {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("attached empty programs")), "{seen:?}");
    // This process's attachments: every one runs an empty program, none a real one; every
    // tracepoint (all but a kprobe) the one asked for. Five tracepoints on every kernel we know:
    // the two resets, state changes, error reports and sockets' ends.
    let attached = attached_programs(floor.id());
    assert!(attached.len() >= 5, "one attachment per hook: {attached:?}");
    assert!(attached.iter().all(|name| name.starts_with("floor_")), "{attached:?}");
    let on_tracepoints: Vec<&String> = attached.iter().filter(|name| *name != "floor_kprobe").collect();
    assert!(on_tracepoints.len() >= 5 && on_tracepoints.iter().all(|n| *n == tracepoint_program), "{attached:?}");
    for f in FAMILIES {
        refused(&net, f, 2);
    }
    let out = floor.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "the floor reports nothing: {}", String::from_utf8_lossy(&out.stdout));
    on_tracepoints.len()
}

/// Names of the programs behind the BPF links process `pid` holds (from its fdinfo; aya attaches
/// tracepoints and kprobes through links on this kernel).
fn attached_programs(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("bpftool").args(["prog", "show", "-j"]).output().expect("bpftool");
    let programs: Value = serde_json::from_slice(&out.stdout).expect("bpftool -j output");
    let name_of = |id: u64| {
        programs.as_array().into_iter().flatten().find(|p| p["id"].as_u64() == Some(id)).and_then(|p| p["name"].as_str()).unwrap_or("?").to_string()
    };
    let mut names = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo").map_while(Result::ok) {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if !info.lines().any(|l| l.starts_with("link_type:")) {
            continue;
        }
        let prog = info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|v| v.trim().parse().ok());
        names.extend(prog.map(name_of));
    }
    names
}

/// The connects of one storm, and the two reports each gives.
const STORM: u64 = 2000;
const STORM_KINDS: [(&str, &str); 2] = [("sent", "no_listener"), ("received", "refused")];

fn is_report(r: &Value) -> bool {
    r["type"] == "reset" || r["type"] == "abort"
}

fn is_kind(r: &Value, direction: &str, cause: &str) -> bool {
    r["direction"] == direction && r["cause"] == cause
}

/// Over --max-rate, reports are folded, not dropped: the reports written one by one stay within
/// the bucket (50 at once, then 50 a second), and, per direction and cause, they and the folded
/// records' counts add up to exactly the storm, whether the agent or the kernel side counted
/// them. Stopped by SIGTERM right after the storm, so the last interval's folded records, and
/// the kernel side's last counts, come from the exit path.
#[test]
fn a_storm_past_max_rate_is_folded_and_every_reset_counted() {
    require_root();
    let net = Net::new(70);
    let started = Instant::now();
    let tracer = Tracer::start(&["--max-rate", "50"]);
    refused(&net, Family::V4, STORM as u32);
    let (reports, stderr) = tracer.stop_at_once(libc::SIGTERM);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(lost_total(&stderr), 0, "a lost event would break the exact count: {stderr}");
    assert!(reports.iter().all(|r| is_report(r) || r["type"] == "folded"), "{reports:?}");
    // The bucket is the host's: every report written one by one counts, this test's or not.
    let one_by_one = reports.iter().filter(|r| is_report(r)).count();
    assert!(one_by_one as f64 <= 50.0 + 50.0 * seconds, "{one_by_one} reports one by one in {seconds:.1} s at --max-rate 50");
    let folded: Vec<&Value> = reports.iter().filter(|r| r["type"] == "folded").collect();
    for (direction, cause) in STORM_KINDS {
        let alone = reports.iter().filter(|r| is_report(r) && net.owns(r) && is_kind(r, direction, cause)).count() as u64;
        let kind: Vec<&&Value> = folded.iter().filter(|r| net.owns(r) && is_kind(r, direction, cause)).collect();
        let in_folds: u64 = kind.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert!(in_folds > 0, "{direction} {cause}: nothing folded, {alone} one by one");
        assert_eq!(alone + in_folds, STORM, "{direction} {cause}: {alone} one by one + {in_folds} folded in {kind:?}");
        for r in kind {
            assert_eq!((r["report_type"].as_str(), r["origin"].as_str(), r["max_rate"].as_u64()), (Some("reset"), Some(if direction == "sent" { "stack" } else { "peer" }), Some(50)), "{r}");
            assert!(r["first_ts"].as_str().unwrap() <= r["last_ts"].as_str().unwrap(), "{r}");
            assert!(r["since"].as_str().unwrap() <= r["ts"].as_str().unwrap(), "{r}");
            assert_eq!(r["other"], false, "{r}");
            if direction == "sent" {
                // The closed port's kind: its local port, the one client as peer, no owner.
                assert_eq!((r["lport"].as_u64(), r["rport"].is_null(), r["pid"].is_null()), (Some(9), true, true), "{r}");
                assert_eq!(r["raddr"], net.client_addr(Family::V4), "{r}");
            } else {
                // The client's kind: the service it called, not its ephemeral local ports.
                assert_eq!((r["lport"].is_null(), r["rport"].as_u64()), (true, Some(9)), "{r}");
                assert_eq!(r["raddr"], net.server_addr(Family::V4), "{r}");
            }
        }
    }
    // At most one record per kind per interval, plus the one at exit.
    let mut per_kind = std::collections::HashMap::new();
    for r in &folded {
        *per_kind.entry((r["direction"].to_string(), r["cause"].to_string(), r["pid"].to_string(), r["lport"].to_string(), r["rport"].to_string(), r["netns"].to_string())).or_insert(0u32) += 1;
    }
    assert!(per_kind.values().all(|&n| f64::from(n) <= seconds.ceil() + 1.0), "{per_kind:?} in {seconds:.1} s");
    // The summary counts every reset and says how many were folded.
    let folded_total: u64 = folded.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    let total = summary_number(&stderr, " resets/aborts");
    assert_eq!(total, one_by_one as u64 + folded_total, "{stderr}");
    let line = format!("folded: {folded_total} of them over --max-rate 50/s, written as {} folded records", folded.len());
    assert!(stderr.contains(&line), "no `{line}` in: {stderr}");
    // Past the rate the kernel side counted most of the storm itself: far fewer events crossed
    // the ring buffer than there were resets.
    let read = summary_number(&stderr, " events read");
    assert!(read < total / 2, "{read} events read for {total} resets: {stderr}");
    let in_kernel = summary_number(&stderr, " of them (refusals, SO_LINGER 0 aborts and peer resets");
    assert!(in_kernel > 0 && in_kernel <= folded_total, "{in_kernel} counted in the kernel, {folded_total} folded: {stderr}");
}

/// A storm does not hide a rare reset of another kind. While a port's refusals fold past
/// --max-rate, in the agent and in the kernel, connections aborted with unread data each give
/// their two reports whole: the server's abort with its owner, and the reset its client received
/// in ESTABLISHED (a kind the kernel side counts too) with the abort as its peer's cause.
#[test]
fn a_rare_reset_during_a_storm_is_written_whole_not_folded() {
    require_root();
    let net = Net::new(84);
    let addr = net.server_addr(Family::V4);
    let tracer = Tracer::start(&["--max-rate", "50"]);
    let (server, clients) = std::thread::scope(|s| {
        let storm = s.spawn(|| refused(&net, Family::V4, 150_000));
        std::thread::sleep(Duration::from_millis(700));
        let server = Stim::spawn(&net.server, &["listen", &addr, "8080", "unread-close"]);
        server.expect_line("ready", T);
        let clients: Vec<u64> = (0..3)
            .map(|_| {
                let c = Stim::spawn(&net.client, &["connect", &addr, "8080", "--send", "10"]);
                c.expect_line("errno", T);
                std::thread::sleep(Duration::from_millis(300));
                c.pid()
            })
            .collect();
        assert!(!storm.is_finished(), "the storm ended before the aborts did: make it longer");
        storm.join().expect("storm");
        (server, clients)
    });
    let (reports, stderr) = tracer.stop();
    assert_eq!(lost_total(&stderr), 0, "{stderr}");
    let ours: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    // The storm folded around the aborts.
    let storm: Vec<&&Value> = ours.iter().filter(|r| r["type"] == "folded" && (is_kind(r, "sent", "no_listener") || is_kind(r, "received", "refused"))).collect();
    assert!(!storm.is_empty(), "nothing of the storm folded: {stderr}");
    let first = storm.iter().map(|r| r["first_ts"].as_str().unwrap()).min().unwrap();
    let last = storm.iter().map(|r| r["last_ts"].as_str().unwrap()).max().unwrap();
    for pid in clients {
        let received: Vec<&&Value> = ours.iter().filter(|r| is_kind(r, "received", "peer_reset") && r["pid"].as_u64() == Some(pid)).collect();
        let [r] = received.as_slice() else { panic!("client {pid}: {received:?}") };
        assert_eq!((r["type"].as_str(), r["peer_cause"].as_str()), (Some("reset"), Some("app_abort_unread")), "{r}");
        let sent: Vec<&&Value> = ours.iter().filter(|s| is_kind(s, "sent", "app_abort_unread") && s["rport"] == r["lport"]).collect();
        let [s] = sent.as_slice() else { panic!("server's abort for client {pid}: {sent:?}") };
        assert_eq!((s["type"].as_str(), s["pid"].as_u64()), (Some("reset"), Some(server.pid())), "{s}");
        // (RFC 3339 UTC strings of equal length order like the times they name.)
        for one in [r, s] {
            let ts = one["ts"].as_str().unwrap();
            assert!(first < ts && ts < last, "not amid the storm's folded reports ({first} to {last}): {one}");
        }
    }
}

/// An abort storm past --max-rate: a server that closes every connection with SO_LINGER 0, and a
/// client that connects over and over. Both ends' resets are judged as one alone would be (the
/// server's abort by the process that closed, the client's RST as its peer's, naming that abort)
/// and counted exactly; with the BTF-typed programs the kernel side counts most of them itself.
#[test]
fn an_abort_storm_past_max_rate_is_folded_and_every_reset_counted() {
    abort_storm(75, "linger0", &[], "ESTABLISHED");
}

/// The same with a client that shuts its sending side down first (an HTTP/1.0 client, `nc -N`),
/// and a server that aborts once it has read that FIN, in CLOSE_WAIT: the client receives the
/// RST in FIN_WAIT1 (the ACK of its FIN still delayed) or FIN_WAIT2, and not one is taken for a
/// forgery, whether the server's RST was counted in the kernel or not.
#[test]
fn an_abort_storm_on_half_closed_connections_is_never_injected() {
    abort_storm(76, "linger0-at-fin", &["--half-close"], "FIN_WAIT");
}

/// Run an abort storm of `STORM` connections, the server in `server_mode`, the client with
/// `options`, and check both ends' reports: the received ones reported one by one each in a
/// state starting with `received_in` (and some are); besides the storm's two kinds, no other.
fn abort_storm(subnet: u8, server_mode: &str, options: &[&str], received_in: &str) {
    require_root();
    let net = Net::new(subnet);
    let tracer = Tracer::start(&["--max-rate", "50"]);
    let server = Stim::spawn(&net.server, &["listen", &net.server_addr(Family::V4), "8080", server_mode]);
    server.expect_line("ready", T);
    let (server_addr, storm) = (net.server_addr(Family::V4), STORM.to_string());
    let mut args = vec!["connect", &server_addr, "8080", "--repeat", &storm, "--until-reset"];
    args.extend(options);
    let client = Stim::spawn(&net.client, &args);
    assert_eq!(client.expect_line("reset", Duration::from_secs(60)), format!("reset {STORM}"));
    let (reports, stderr) = tracer.stop_at_once(libc::SIGTERM);
    assert_eq!(lost_total(&stderr), 0, "a lost event would break the exact count: {stderr}");
    let ours: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    for (direction, cause, pid) in [("sent", "app_abort_linger0", server.pid()), ("received", "peer_reset", client.pid())] {
        let kind: Vec<&&Value> = ours.iter().filter(|r| is_kind(r, direction, cause)).collect();
        let alone = kind.iter().filter(|r| is_report(r)).count() as u64;
        let folded: u64 = kind.iter().filter(|r| r["type"] == "folded").map(|r| r["count"].as_u64().unwrap()).sum();
        assert!(folded > 0, "{direction} {cause}: nothing folded, {alone} one by one");
        assert_eq!(alone + folded, STORM, "{direction} {cause}: {alone} one by one + {folded} folded");
        for r in kind {
            assert_eq!(r["pid"].as_u64(), Some(pid), "{r}");
            if direction == "sent" {
                // The server's kind: its own port, the one client as peer.
                assert_eq!((r["lport"].as_u64(), r["raddr"].as_str()), (Some(8080), Some(&*net.client_addr(Family::V4))), "{r}");
            } else {
                // The client's kind: the service it called; every RST its peer's abort.
                assert_eq!((r["rport"].as_u64(), r["raddr"].as_str()), (Some(8080), Some(&*net.server_addr(Family::V4))), "{r}");
                if is_report(r) {
                    assert_eq!(r["peer_cause"], "app_abort_linger0", "{r}");
                    assert!(r["state"].as_str().is_some_and(|s| s.starts_with(received_in)), "{r}");
                }
            }
        }
    }
    assert!(ours.iter().any(|r| is_kind(r, "received", "peer_reset") && is_report(r)), "no reset received reported one by one");
    let expected = |r: &Value| [("sent", "app_abort_linger0"), ("received", "peer_reset")].iter().any(|(direction, cause)| is_kind(r, direction, cause));
    let unexpected: Vec<&&Value> = ours.iter().filter(|r| !expected(r)).collect();
    assert!(unexpected.is_empty(), "only the storm's kinds: {unexpected:?}");
    // Past the rate the typed programs count the server's aborts in the kernel: far fewer events
    // crossed the ring buffer than there were resets. (The classic ones, on kernels without BTF,
    // send every abort across.)
    if stderr.contains("BTF-typed tracepoints") {
        let read = summary_number(&stderr, " events read");
        assert!(read < STORM * 3 / 2, "{read} events read for {} resets: {stderr}", 2 * STORM);
        assert!(summary_number(&stderr, " of them (refusals, SO_LINGER 0 aborts and peer resets") > 0, "{stderr}");
    }
}

/// A storm of connects that a firewall answers with `reject with tcp reset` in front of a
/// listener of this host, past --max-rate: the kernel side counts most of the refusals itself,
/// and each is judged as one alone would be (injected: no stack here sent a RST), counted exactly.
#[test]
fn a_storm_of_forged_refusals_past_max_rate_is_counted_as_injected() {
    require_root();
    let net = Net::new(73);
    let tracer = Tracer::start(&["--max-rate", "50"]);
    let server = Stim::spawn(&net.server, &["listen", &net.server_addr(Family::V4), "8080", "hold"]);
    server.expect_line("ready", T);
    let _reject = net.server_filter("input", "tcp dport 8080 reject with tcp reset");
    refused_storm(&net, Family::V4, STORM as u32, "8080");
    let (reports, stderr) = tracer.stop_at_once(libc::SIGTERM);
    assert_eq!(lost_total(&stderr), 0, "{stderr}");
    let ours: Vec<&Value> = reports.iter().filter(|r| net.owns(r)).collect();
    assert!(ours.iter().all(|r| is_kind(r, "received", "injected")), "only the forged refusals: {ours:?}");
    let alone = ours.iter().filter(|r| is_report(r)).count() as u64;
    let folded: u64 = ours.iter().filter(|r| r["type"] == "folded").map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(alone + folded, STORM, "{alone} one by one + {folded} folded");
    assert!(folded > 0, "nothing folded");
    let read = summary_number(&stderr, " events read");
    assert!(read < STORM / 2, "{read} events read for {STORM} refusals: {stderr}");
}

/// A storm of connects to a loopback port nobody listens on in the client's namespace, while
/// another namespace (which holds a loopback address too) listens on that port: this host's own
/// stack refuses every SYN, counted in the kernel past --max-rate or not, so not one refusal is
/// called injected.
#[test]
fn a_storm_refused_by_this_hosts_own_stack_is_never_injected() {
    require_root();
    let net = Net::new(74);
    let tracer = Tracer::start(&["--max-rate", "50"]);
    let elsewhere = Stim::spawn(&net.server, &["listen", "0.0.0.0", "8081", "hold"]);
    elsewhere.expect_line("ready", T);
    let c = Stim::spawn(&net.client, &["connect", "127.0.0.1", "8081", "--repeat", &STORM.to_string()]);
    assert_eq!(c.expect_line("refused", T), format!("refused {STORM}"));
    let (reports, stderr) = tracer.stop_at_once(libc::SIGTERM);
    assert_eq!(lost_total(&stderr), 0, "{stderr}");
    let received: Vec<&Value> = reports.iter().filter(|r| net.owns(r) && r["direction"] == "received").collect();
    assert!(received.iter().all(|r| r["cause"] == "refused"), "refused, never injected: {received:?}");
    let alone = received.iter().filter(|r| is_report(r)).count() as u64;
    let folded: u64 = received.iter().filter(|r| r["type"] == "folded").map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(alone + folded, STORM, "{alone} one by one + {folded} folded");
    assert!(received.iter().filter(|r| is_report(r)).all(|r| r["peer_cause"] == "no_listener"), "{received:?}");
}

#[test]
fn max_rate_0_reports_every_reset_one_by_one() {
    require_root();
    let net = Net::new(71);
    let tracer = Tracer::start(&["--max-rate", "0"]);
    refused(&net, Family::V4, STORM as u32);
    let (reports, stderr) = tracer.stop();
    assert_eq!(lost_total(&stderr), 0, "{stderr}");
    assert!(reports.iter().all(is_report), "nothing folded: {:?}", reports.iter().find(|r| !is_report(r)));
    for (direction, cause) in STORM_KINDS {
        let n = reports.iter().filter(|r| net.owns(r) && is_kind(r, direction, cause)).count() as u64;
        assert_eq!(n, STORM, "{direction} {cause}");
    }
    assert!(!stderr.contains("folded:"), "{stderr}");
}

/// Filters apply before folding (only the kept kind is reported or folded), and the metrics
/// count every reset and every folded report while rsttrace runs.
#[test]
fn metrics_count_folded_reports_and_filters_come_first() {
    require_root();
    let net = Net::new(72);
    let port = metrics_port(1);
    let started = Instant::now();
    let tracer = Tracer::start(&["--max-rate", "50", "--metrics", &port.to_string(), "--direction", "sent", "--cause", "no_listener", "-L", "19"]);
    refused_storm(&net, Family::V4, STORM as u32, "19");
    // Folded records go out once their second is over.
    std::thread::sleep(Duration::from_secs(2));
    let body = scrape(port);
    let (reports, stderr) = tracer.stop();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(lost_total(&stderr), 0, "{stderr}");
    assert!(reports.iter().all(|r| net.owns(r) && is_kind(r, "sent", "no_listener") && r["lport"] == 19), "only the filtered kind: {reports:?}");
    let one_by_one = reports.iter().filter(|r| is_report(r)).count() as u64;
    let folded: u64 = reports.iter().filter(|r| r["type"] == "folded").map(|r| r["count"].as_u64().unwrap()).sum();
    assert!(one_by_one as f64 <= 50.0 + 50.0 * seconds, "{one_by_one} in {seconds:.1} s");
    assert_eq!(one_by_one + folded, STORM);
    let resets = metric(&body, "rsttrace_resets_total{direction=\"sent\",cause=\"no_listener\",origin=\"stack\",comm=\"-\",unit=\"-\",container=\"-\"}");
    assert_eq!(resets, STORM, "every reset counted, folded or not");
    assert_eq!(metric(&body, "rsttrace_reports_folded_total"), folded, "{body}");
    assert!(folded > 0);
}
