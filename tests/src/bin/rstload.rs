//! rstload: the benchmark's load generator. Runs inside a network namespace (or the current
//! one with `-`), for a fixed time, as fast as one core allows, and prints `ops N` at the end.
//!
//! `rstload NETNS storm ADDR PORT SECS`        connect to a closed port (each answered by a RST)
//! `rstload NETNS serve-abort ADDR PORT`       accept and close with SO_LINGER 0 (abort storm)
//! `rstload NETNS serve-echo ADDR PORT`        accept, echo one message, close gracefully
//! `rstload NETNS connect ADDR PORT SECS`      connect, send, read until the server ends it
//! `rstload NETNS rate ADDR PORT SECS PER_SEC` like storm, paced to PER_SEC connects a second
use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use socket2::SockRef;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: rstload NETNS storm|serve-abort|serve-echo|connect|rate ADDR PORT [SECS [PER_SEC]]");
        std::process::exit(2);
    }
    if args[0] != "-" {
        let file = std::fs::File::open(format!("/run/netns/{}", args[0])).expect("open netns");
        // SAFETY: valid fd for a network namespace.
        assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    }
    let addr = SocketAddr::new(args[2].parse::<IpAddr>().expect("address"), args[3].parse().expect("port"));
    let secs = |i: usize| Duration::from_secs_f64(args.get(i).map_or(10.0, |s| s.parse().expect("seconds")));
    let ops = match args[1].as_str() {
        "storm" => storm(addr, secs(4), None),
        "rate" => storm(addr, secs(4), Some(args[5].parse().expect("rate"))),
        "connect" => churn(addr, secs(4)),
        "serve-abort" | "serve-echo" => serve(addr, args[1] == "serve-abort"),
        other => panic!("unknown mode {other}"),
    };
    println!("ops {ops}");
}

fn storm(addr: SocketAddr, time: Duration, per_sec: Option<u64>) -> u64 {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < time {
        if let Some(rate) = per_sec {
            let due = Duration::from_secs_f64(ops as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if TcpStream::connect(addr).is_err() {
            ops += 1;
        }
    }
    ops
}

fn churn(addr: SocketAddr, time: Duration) -> u64 {
    let start = Instant::now();
    let mut ops = 0u64;
    let mut buf = [0u8; 64];
    while start.elapsed() < time {
        let Ok(mut s) = TcpStream::connect(addr) else { continue };
        if s.write_all(b"ping").is_ok() {
            // Until the server ends it: an echo then FIN, or a RST.
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            ops += 1;
        }
    }
    ops
}

fn serve(addr: SocketAddr, abort: bool) -> u64 {
    let listener = TcpListener::bind(addr).expect("bind");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut ops = 0u64;
    let mut buf = [0u8; 64];
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let n = s.read(&mut buf).unwrap_or(0);
        if abort {
            SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        } else {
            let _ = s.write_all(&buf[..n]);
        }
        ops += 1;
    }
    ops
}
