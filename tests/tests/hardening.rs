//! End-to-end: failing clearly, stopping cleanly, and staying bounded under overload.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use rsttrace_tests::{ensure_tracefs, refused_storm, require_root, rsttrace_bin, summary_number, Family, Net, Stim, Tracer};
use serde_json::Value;

const HOST_FORMATS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rsttrace/testdata/kernels/6.18.44-host");

fn refused(net: &Net, f: Family, n: u32) {
    refused_storm(net, f, n, "9");
}

/// Run rsttrace to completion (`-d 1`); returns (exit code, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(rsttrace_bin()).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A stand-in tracefs with this kernel's format files (copies from testdata), minus or plus
/// whatever a test changes.
fn fake_tracefs(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rsttrace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for group in ["tcp", "sock"] {
        for entry in std::fs::read_dir(Path::new(HOST_FORMATS).join(group)).unwrap() {
            let path = entry.unwrap().path();
            let event = path.file_stem().unwrap().to_str().unwrap().to_string();
            let dir = root.join("events").join(group).join(&event);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&path, dir.join("format")).unwrap();
        }
    }
    root
}

fn one_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rsttrace: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{stderr}");
    errors[0]
}

#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    require_root();
    ensure_tracefs();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(rsttrace_bin())
        .args(["-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(one_line(&stderr).contains("missing CAP_BPF and CAP_PERFMON"), "{stderr}");
    // Only one of the two: say which.
    let out = Command::new("setpriv").args(["--bounding-set=-all,+bpf", "--inh-caps=-all"]).arg(rsttrace_bin()).args(["-d", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(one_line(&stderr).contains("missing CAP_PERFMON:"), "{stderr}");
}

#[test]
fn capabilities_bpf_and_perfmon_are_enough() {
    require_root();
    ensure_tracefs();
    let out = Command::new("setpriv")
        .args(["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all"])
        .arg(rsttrace_bin())
        .args(["-d", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("tracing TCP resets"), "{stderr}");
}

/// Bad flags say so in one line on stderr, nothing else, and exit 2 before anything is loaded.
#[test]
fn bad_flags_are_one_clear_line() {
    let cases: [(&[&str], &str); 5] = [
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["--max-rate", "abc"], "invalid value 'abc' for '--max-rate"),
        (&["--interval", "5"], "--summary"),
        (&["-w", "--json"], "'--wide' cannot be used with '--json'"),
        (&["correlate"], "<FILE>"),
    ];
    for (args, says) in cases {
        let (code, stderr) = run(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got:\n{stderr}");
        assert!(lines[0].starts_with("rsttrace: ") && lines[0].contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn tracefs_problems_are_one_clear_line() {
    require_root();
    let (code, stderr) = run(&["-d", "1", "--tracefs", "/nonexistent/tracing"], &[]);
    assert_eq!(code, 1);
    assert!(one_line(&stderr).contains("no tracefs at /nonexistent/tracing"), "{stderr}");

    let root = fake_tracefs("missing-core");
    std::fs::remove_dir_all(root.join("events/tcp/tcp_send_reset")).unwrap();
    let (code, stderr) = run(&["-d", "1"], &[("RSTTRACE_TRACEFS", root.to_str().unwrap())]);
    assert_eq!(code, 1);
    assert!(one_line(&stderr).contains("tracepoint tcp:tcp_send_reset does not exist on this kernel"), "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();

    let root = fake_tracefs("malformed");
    std::fs::write(root.join("events/tcp/tcp_receive_reset/format"), "name: tcp_receive_reset\nformat:\n\tfield:garbage\n").unwrap();
    let (code, stderr) = run(&["-d", "1", "--tracefs", root.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(one_line(&stderr).contains("malformed format file"), "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_missing_optional_tracepoint_degrades_and_says_what_is_lost() {
    require_root();
    let root = fake_tracefs("missing-optional");
    std::fs::remove_dir_all(root.join("events/sock/inet_sk_error_report")).unwrap();
    let (code, stderr) = run(&["-d", "1", "--tracefs", root.to_str().unwrap()], &[]);
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("tracepoints missing on this kernel: sock:inet_sk_error_report"), "{stderr}");
    assert!(stderr.contains("causes not visible: retransmit_timeout, syn_timeout"), "{stderr}");
    assert!(stderr.contains("tracing TCP resets"), "{stderr}");
}

#[test]
fn missing_btf_degrades_with_a_warning() {
    require_root();
    let (code, stderr) = run(&["-d", "1", "--btf", "/nonexistent/vmlinux"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("BTF incomplete (cannot read BTF from /nonexistent/vmlinux"), "{stderr}");
}

/// Ids of the loaded BPF programs with rsttrace's names (another rsttrace may be running too:
/// tests compare the ids before and after).
fn rsttrace_program_ids() -> std::collections::BTreeSet<String> {
    let out = Command::new("bpftool").args(["prog", "show"]).output().expect("bpftool (installed by setup)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // bpftool shows names cut to 15 characters.
        .filter(|l| {
            ["tcp_send_reset", "tcp_receive_res", "inet_sock_set_s", "tcp_destroy_soc", "set_state_typed", "destroy_sock_ty", "receive_reset_t", "error_report_ty", "send_reset_type"]
                .iter()
                .any(|p| l.contains(p))
        })
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect()
}

#[test]
fn sigterm_and_sigint_flush_summarize_and_detach() {
    require_root();
    let net = Net::new(60);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let before = rsttrace_program_ids();
        // Stop right away: the resets are still held for classification (150 ms) and must not
        // be lost. None may be out yet, or this would not test the drain: on a machine slow
        // enough for the connects to outlast the hold, try again (a few times at most).
        let (tracer, ours) = (0..5)
            .find_map(|_| {
                let mut tracer = Tracer::start(&[]);
                let ours: Vec<String> = rsttrace_program_ids().difference(&before).cloned().collect();
                refused(&net, Family::V4, 3);
                let early = tracer.printed_so_far().into_iter().filter(|r| net.owns(r)).count();
                (early == 0).then_some((tracer, ours))
            })
            .unwrap_or_else(|| panic!("signal {sig}: reports always came out before the signal, so the drain is untested"));
        assert!(ours.len() >= 4, "programs should be attached while tracing: {ours:?}");
        let (reports, stderr) = tracer.stop_at_once(sig);
        assert_eq!(reports.iter().filter(|r| net.owns(r)).count(), 6, "signal {sig}: {reports:?}");
        assert!(stderr.contains("resets/aborts"), "no summary after signal {sig}: {stderr}");
        // The kernel frees a BTF-typed program an RCU grace period after its link closed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let left = loop {
            let left: Vec<&String> = ours.iter().filter(|id| rsttrace_program_ids().contains(*id)).collect();
            if left.is_empty() || std::time::Instant::now() > deadline {
                break left;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(left.is_empty(), "programs left 5 s after signal {sig}: {left:?}");
    }
}

#[test]
fn sighup_reopens_the_output_file() {
    require_root();
    let net = Net::new(61);
    let dir = std::env::temp_dir().join(format!("rsttrace-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("resets.json");
    let tracer = Tracer::start(&["--output", file.to_str().unwrap()]);
    refused(&net, Family::V4, 1);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::rename(&file, dir.join("resets.json.old")).unwrap();
    tracer.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    refused(&net, Family::V6, 1);
    let (reports, _) = tracer.stop();
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let old = lines(&dir.join("resets.json.old"));
    let new = lines(&file);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(mode, 0o640);
    assert!(
        old.iter()
            .filter(|r| net.owns(r))
            .all(|r| r["family"] == "ipv4")
            && old.iter().any(|r| net.owns(r)),
        "{old:?}"
    );
    assert!(
        new.iter()
            .filter(|r| net.owns(r))
            .all(|r| r["family"] == "ipv6")
            && new.iter().any(|r| net.owns(r)),
        "{new:?}"
    );
    // The run's start record is in the old file, its end record in the new one.
    let trace_records = |file: &[Value]| file.iter().filter(|r| r["type"] == "trace").count();
    assert_eq!((trace_records(&old), trace_records(&new)), (1, 1));
    assert_eq!(old.len() + new.len(), reports.len() + 2);
}

#[test]
fn an_overflowing_ring_buffer_is_reported_never_silent() {
    require_root();
    let net = Net::new(62);
    let tracer = Tracer::start(&["--ring-buffer-kib", "4"]);
    // Stopped, the agent reads nothing: the buffer's few slots fill and every later event is
    // lost, whatever the host's speed (a running agent may well keep up with one process's
    // refused connects, woken for every event of so small a buffer).
    tracer.signal(libc::SIGSTOP);
    refused(&net, Family::V4, 1500);
    tracer.signal(libc::SIGCONT);
    let (reports, stderr) = tracer.stop();
    let lost: Vec<&Value> = reports.iter().filter(|r| r["type"] == "lost").collect();
    assert!(!lost.is_empty(), "a 4 KiB ring buffer under a storm must lose events: {stderr}");
    let total = lost.last().unwrap()["lost_total"].as_u64().unwrap();
    assert!(total > 0);
    assert!(stderr.contains(&format!("{total} events lost,")), "summary must count them: {stderr}");
    assert!(stderr.contains(&format!("{total} in total (")) && stderr.contains(" found the ring buffer full, "), "{stderr}");
}

/// A connection that never resets crosses the ring buffer zero times: a second of connections
/// opened, used and closed gracefully leaves the agent at most the listener's start and end (and
/// whatever else resets on the host meanwhile), where following each connection's story took
/// ten events a connection.
#[test]
fn connections_that_never_reset_send_the_agent_nothing() {
    require_root();
    let net = Net::new(63);
    let addr = net.server_addr(Family::V4);
    let tracer = Tracer::start(&[]);
    let server = Stim::load(&net.server, &["serve-echo", &addr, "8080"]);
    std::thread::sleep(Duration::from_millis(200));
    let client = Stim::load(&net.client, &["connect", &addr, "8080", "1"]);
    let conns: u64 = client.expect_line("ops", Duration::from_secs(30)).trim_start_matches("ops ").parse().unwrap();
    drop(server);
    let (reports, stderr) = tracer.stop();
    assert!(conns > 200, "the load ran: {conns} connections");
    let events = summary_number(&stderr, " events read");
    let resets = reports.iter().filter(|r| r["type"] == "reset").count() as u64;
    assert!(events <= 2 + 3 * resets, "{events} events for {conns} connections and {resets} resets on the host: {stderr}");
    assert!(!reports.iter().any(|r| net.owns(r)), "no reset in this test's namespaces: {reports:?}");
}
