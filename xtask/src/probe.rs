//! Reading a running rsttrace from outside: its memory and its metrics endpoint.
use std::{
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
