//! rstload: the benchmark's load generator. Runs inside a network namespace (or the current
//! one with `-`), for a fixed time, as fast as one core allows, and prints `ops N` (the
//! workload's unit: refused connects, connections or bytes) and `conns N` (connections
//! attempted to the end) when done. The bench runs one per core.
//!
//! `rstload NETNS storm ADDR PORT SECS`        connect to a closed port (each answered by a RST)
//! `rstload NETNS serve-abort ADDR PORT`       accept and close with SO_LINGER 0 (abort storm)
//! `rstload NETNS serve-echo ADDR PORT`        accept, echo one message, close gracefully
//! `rstload NETNS serve-sink ADDR PORT`        accept, read until the peer's FIN, close
//! `rstload NETNS connect ADDR PORT SECS`      connect, send, read until the server ends it
//! `rstload NETNS bulk ADDR PORT SECS`         one connection, write for SECS, close gracefully
//! `rstload NETNS rate ADDR PORT SECS PER_SEC` like storm, paced to PER_SEC connects a second
use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use socket2::SockRef;

/// Write and read size of the bulk transfer: a common application buffer.
const BULK_CHUNK: usize = 64 * 1024;

/// What a client did: its workload's unit, and the connections it attempted.
struct Done {
    ops: u64,
    conns: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: rstload NETNS storm|rate|connect|bulk|serve-abort|serve-echo|serve-sink ADDR PORT [SECS [PER_SEC]]");
        std::process::exit(2);
    }
    if args[0] != "-" {
        let file = std::fs::File::open(format!("/run/netns/{}", args[0])).expect("open netns");
        // SAFETY: valid fd for a network namespace.
        assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    }
    let addr = SocketAddr::new(args[2].parse::<IpAddr>().expect("address"), args[3].parse().expect("port"));
    let secs = |i: usize| Duration::from_secs_f64(args.get(i).map_or(10.0, |s| s.parse().expect("seconds")));
    let done = match args[1].as_str() {
        "storm" => storm(addr, secs(4), None),
        "rate" => storm(addr, secs(4), Some(args[5].parse().expect("rate"))),
        "connect" => churn(addr, secs(4)),
        "bulk" => bulk(addr, secs(4)),
        "serve-abort" => serve(addr, Serve::Abort),
        "serve-echo" => serve(addr, Serve::Echo),
        "serve-sink" => serve(addr, Serve::Sink),
        other => panic!("unknown mode {other}"),
    };
    println!("ops {}\nconns {}", done.ops, done.conns);
}

/// Counts refused connects only: another failure would be no reset to count.
fn storm(addr: SocketAddr, time: Duration, per_sec: Option<u64>) -> Done {
    let start = Instant::now();
    let mut done = Done { ops: 0, conns: 0 };
    while start.elapsed() < time {
        if let Some(rate) = per_sec {
            let due = Duration::from_secs_f64(done.conns as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        done.conns += 1;
        if TcpStream::connect(addr).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused) {
            done.ops += 1;
        }
    }
    done
}

fn churn(addr: SocketAddr, time: Duration) -> Done {
    let start = Instant::now();
    let mut done = Done { ops: 0, conns: 0 };
    let mut buf = [0u8; 64];
    while start.elapsed() < time {
        done.conns += 1;
        let Ok(mut s) = TcpStream::connect(addr) else { continue };
        if s.write_all(b"ping").is_ok() {
            // Until the server ends it: an echo then FIN, or a RST.
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            done.ops += 1;
        }
    }
    done
}

/// One connection for the whole time, then a graceful close: after the FIN, wait for the
/// server's, so that every byte counted was delivered.
fn bulk(addr: SocketAddr, time: Duration) -> Done {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("bulk connect");
    let chunk = vec![0x5au8; BULK_CHUNK];
    let mut bytes = 0u64;
    while start.elapsed() < time {
        s.write_all(&chunk).expect("bulk write");
        bytes += chunk.len() as u64;
    }
    s.shutdown(Shutdown::Write).expect("bulk shutdown");
    let mut buf = [0u8; 64];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    Done { ops: bytes, conns: 1 }
}

#[derive(Clone, Copy, PartialEq)]
enum Serve {
    Abort,
    Echo,
    Sink,
}

fn serve(addr: SocketAddr, how: Serve) -> Done {
    let listener = TcpListener::bind(addr).expect("bind");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut done = Done { ops: 0, conns: 0 };
    let mut buf = vec![0u8; BULK_CHUNK];
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        done.conns += 1;
        match how {
            Serve::Abort => {
                let _ = s.read(&mut buf);
                SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            }
            Serve::Echo => {
                let n = s.read(&mut buf).unwrap_or(0);
                let _ = s.write_all(&buf[..n]);
            }
            Serve::Sink => {
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    done.ops += n as u64;
                }
            }
        }
    }
    done
}
