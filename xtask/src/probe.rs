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

/// User and system CPU time of a process (a zombie's too, until it is reaped), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are fields 14 and 15 of /proc/PID/stat; after the ")" that ends the
    // command name (which may hold spaces) they are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
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
