//! Reading a running rsttrace from outside: its CPU time, its memory and its metrics endpoint.
use std::{
    collections::HashSet,
    io::{Read, Write},
    net::TcpStream,
};

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`), in KiB; 0 when gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))))
        .unwrap_or(0)
}

/// CPU time a running process has used so far, in seconds, to the nanosecond: the sum of its
/// threads' scheduler run times (`/proc/PID/task/*/schedstat`). `/proc/PID/stat` counts in clock
/// ticks, 10 ms here: coarser than what an idle agent uses in a bench run.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// Reap the child `pid` and return the CPU time it used in all, in seconds: its threads' run
/// times as `wait4` totals them (microseconds; the same sum `cpu_secs` reads while it runs).
/// `signal_again`: send SIGINT again at that interval while it has not exited (bpftrace has been
/// seen to miss one now and then, and the bench then waited for ever).
pub fn reap_with_cpu(pid: u32, signal_again: Option<std::time::Duration>) -> std::io::Result<f64> {
    let mut status = 0;
    // SAFETY: wait4 on our own child, into a zeroed rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut signalled = std::time::Instant::now();
    loop {
        let flags = if signal_again.is_some() { libc::WNOHANG } else { 0 };
        // SAFETY: as above.
        match unsafe { libc::wait4(pid as i32, &mut status, flags, &mut usage) } {
            reaped if reaped == pid as i32 => break,
            0 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if signal_again.is_some_and(|every| signalled.elapsed() >= every) {
                    // SAFETY: signalling our own child, not yet reaped.
                    unsafe { libc::kill(pid as i32, libc::SIGINT) };
                    signalled = std::time::Instant::now();
                }
            }
            _ => return Err(std::io::Error::last_os_error()),
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// The BPF programs a process holds open, by id (from the `prog_id` lines of its fdinfo: its
/// program and link descriptors).
pub fn program_ids(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return HashSet::new() };
    fds.filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .flat_map(|info| info.lines().filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok()).collect::<Vec<u64>>())
        .collect()
}

/// One metric from http://127.0.0.1:PORT/metrics, summed over its label sets; 0 when unreachable.
pub fn metric(port: u16, name: &str) -> u64 {
    let Ok(mut http) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let _ = http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = http.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
