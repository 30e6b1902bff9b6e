//! rststim: provokes one kind of TCP ending from inside a network namespace.
//!
//! `rststim NETNS listen ADDR PORT MODE` or `rststim NETNS connect ADDR PORT [OPTIONS]`.
//! It prints `ready` once listening or connected and, for a client (and a server that reads or
//! streams), `errno N` when the connection ended with an error. `--wait-go` makes it read one
//! line from stdin before acting, so a test can change the network in between. Every run ends
//! within `DEADLINE`. `rststim NETNS forge-rst ADDR PORT` plays a device in the path (forge.rs).
use std::{
    io::{BufRead, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

// Not src/bin/forge.rs: cargo would take that for a program of its own.
#[path = "rststim/forge.rs"]
mod forge;

const DEADLINE: Duration = Duration::from_secs(30);
/// Bytes a bulk transfer sends: enough to move the sequence space further than the ISN clock
/// (one tick per 64 ns, 15.6 M per second) advances in the seconds a test takes.
const BULK: usize = 100 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: rststim NETNS listen|connect ADDR PORT [MODE|OPTIONS]");
        std::process::exit(2);
    }
    enter_netns(&args[0]);
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("rststim: deadline reached");
        std::process::exit(3);
    });
    let addr = SocketAddr::new(args[2].parse::<IpAddr>().expect("address"), args[3].parse().expect("port"));
    match args[1].as_str() {
        "listen" => listen(addr, args.get(4).map_or("hold", String::as_str)),
        "connect" => connect(addr, &args[4..]),
        "forge" => forge(addr, args.get(4).map_or("bad-ack", String::as_str)),
        "stray-rst" => stray(addr, args.get(4).expect("source address").parse().expect("source address"), TCP_RST),
        "stray-ack" => stray(addr, args.get(4).expect("source address").parse().expect("source address"), TCP_ACK),
        "forge-rst" => forge::forge_rst(addr),
        other => panic!("unknown command {other}"),
    }
}

fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: valid fd for a network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Fork: the child carries on with every socket (see `--hand-over`). The parent exits at once,
/// or, given `stay` (the socket `fd`), closes its copy of it and lives until 3 s after the child
/// is done, as a launcher that passed a connection on and keeps running does.
fn hand_over(stay: Option<RawFd>) {
    // SAFETY: the child only goes on with this thread's work; the deadline thread stays
    // behind, so the child arms its own deadline.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            // SAFETY: no preconditions.
            unsafe { libc::alarm(DEADLINE.as_secs() as u32) };
            println!("holder {}", std::process::id());
            std::io::stdout().flush().unwrap();
        }
        child => {
            if let Some(fd) = stay {
                // SAFETY: this process's copy of the socket, not used again; then wait for
                // our own child.
                unsafe {
                    libc::close(fd);
                    libc::waitpid(child, std::ptr::null_mut(), 0);
                }
                std::thread::sleep(Duration::from_secs(3));
            }
            // SAFETY: leaves without running this process's destructors twice.
            unsafe { libc::_exit(0) }
        }
    }
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

fn wait_go() {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
}

fn wait_readable(s: &TcpStream) {
    let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10_000) };
}

fn set_int(fd: i32, level: i32, opt: i32, value: i32) {
    // SAFETY: pointer to a live i32 of the given size.
    let rc = unsafe { libc::setsockopt(fd, level, opt, (&value as *const i32).cast(), 4) };
    assert_eq!(rc, 0, "setsockopt {opt}: {}", std::io::Error::last_os_error());
}

fn linger0_close(s: TcpStream) {
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

/// Server modes: what to do with each accepted connection. `+reuseport` after a mode listens
/// with SO_REUSEPORT, as a member of a group sharing the port; `+v6only` an IPv6 socket with
/// IPV6_V6ONLY, which takes no IPv4.
fn listen(addr: SocketAddr, mode: &str) {
    let mut flags = mode.split('+');
    let mode = flags.next().unwrap_or_default();
    let flags: Vec<&str> = flags.collect();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    for flag in flags {
        match flag {
            "reuseport" => set_int(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1),
            "v6only" => socket.set_only_v6(true).unwrap(),
            other => panic!("unknown listen flag {other}"),
        }
    }
    socket.bind(&addr.into()).unwrap();
    if mode == "overflow" {
        // Backlog 2 and never accept. TCP_DEFER_ACCEPT keeps a handshake pending until data
        // arrives, so a test can get SYNs in while the queue has room and complete them when it
        // has none. (Backlog 0 would answer every SYN with a cookie instead.)
        set_int(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 10);
        socket.listen(2).unwrap();
        ready();
        std::thread::sleep(DEADLINE);
        return;
    }
    if mode == "close-listener-on-go" {
        // Never accept: handshakes wait in the accept queue until the test says go, then the
        // listening socket is closed under them (a server restarting without draining).
        socket.listen(16).unwrap();
        ready();
        wait_go();
        drop(socket);
        println!("closed");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(DEADLINE);
        return;
    }
    if mode == "stall-answer-on-go" {
        // A small receive buffer, never read: a client that writes much soon faces a zero window.
        socket.set_recv_buffer_size(4096).unwrap();
    }
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    ready();
    loop {
        let (mut s, _) = listener.accept().unwrap();
        match mode {
            // Keep it open and drain what arrives; never close first.
            "hold" => {
                std::thread::spawn(move || hold(s));
            }
            // A forking server (inetd, sshd, a prefork server): a child holds each connection and
            // is busy elsewhere (starting up: sleeps); the parent closes its copy.
            "fork-hold" => in_a_child(&listener, s, |_s| std::thread::sleep(Duration::from_secs(5))),
            // The same, but the child waits in recv() and closes the connection the moment it
            // fails (a server told ECONNRESET), then lives on a while (its name stays readable).
            "fork-read-close" => in_a_child(&listener, s, |mut s| {
                read_until_the_end(&mut s);
                drop(s);
                println!("closed");
                std::io::stdout().flush().unwrap();
                std::thread::sleep(Duration::from_secs(3));
            }),
            // Answer the first request, then keep the connection open (keep-alive) and drain.
            "answer" => {
                wait_readable(&s);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                s.write_all(&[b'a'; 100]).unwrap();
                std::thread::spawn(move || hold(s));
            }
            // Greet in four segments, 10 ms apart (the client hears from this end, more than
            // once, before anything else happens), then hold.
            "greet" => {
                s.set_nodelay(true).unwrap();
                for _ in 0..4 {
                    s.write_all(&[b'g'; 100]).unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
                std::thread::spawn(move || hold(s));
            }
            // Stream to the client, paced (1 KiB every 10 ms) so that nothing queues up between
            // the hosts and every segment sent is received, until the connection fails.
            "stream" => loop {
                if let Err(e) = s.write_all(&[b's'; 1024]) {
                    report_error(&e);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            },
            // Close with data the application never read: the stack aborts.
            "unread-close" => {
                wait_readable(&s);
                std::thread::sleep(Duration::from_millis(50));
                drop(s);
            }
            // As unread-close, from a thread that names itself; then the process exits at once
            // (before rsttrace writes the report, so /proc cannot name it any more).
            "unread-close-in-a-named-thread" => {
                let worker = std::thread::spawn(move || {
                    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
                    unsafe { libc::prctl(libc::PR_SET_NAME, c"rstworker".as_ptr()) };
                    wait_readable(&s);
                    std::thread::sleep(Duration::from_millis(50));
                    drop(s);
                });
                worker.join().unwrap();
                std::process::exit(0);
            }
            // Read what came, then close abortively.
            "linger0" => {
                wait_readable(&s);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                linger0_close(s);
            }
            // Exit with status 3 once data came, the connection open and the data unread: the
            // kernel closes the socket in the process's exit.
            "exit-unread" => {
                wait_readable(&s);
                std::process::exit(3);
            }
            // Hold the connection with the data that came unread, until the test kills this.
            "hold-unread" => {
                wait_readable(&s);
                println!("unread");
                std::io::stdout().flush().unwrap();
                std::thread::sleep(DEADLINE);
            }
            // Read up to the client's FIN, then close abortively (from CLOSE_WAIT): the client
            // shut its side down first, and takes the RST in FIN_WAIT2.
            "linger0-at-fin" => {
                let mut buf = [0u8; 4096];
                while s.read(&mut buf).is_ok_and(|n| n > 0) {}
                linger0_close(s);
            }
            // Close at once (FIN) while the client keeps talking.
            "close-first" => drop(s),
            // Shut both directions down but keep the socket open while the client keeps talking.
            "shutdown-first" => {
                s.shutdown(std::net::Shutdown::Both).unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(DEADLINE);
                    drop(s);
                });
            }
            // Take everything the client sends, then close first (this end ends in TIME_WAIT).
            "drain-then-close" => {
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0usize;
                while total < BULK {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                drop(s);
            }
            // When the test says so (it may cut the client's segments off first), send some
            // data and close: with nothing acknowledged the socket retransmits as an orphan.
            "write-close-on-go" => {
                wait_go();
                s.write_all(&[b'w'; 4096]).unwrap();
                drop(s);
                println!("closed");
                std::io::stdout().flush().unwrap();
            }
            // Read nothing; when the test says so, answer and hold (the client may be gone).
            "stall-answer-on-go" => {
                wait_go();
                s.write_all(b"late answer").unwrap();
                println!("answered");
                std::io::stdout().flush().unwrap();
                hold(s);
            }
            // Abort only when the test says so (it may hide the RST first).
            "linger0-on-go" => {
                wait_go();
                linger0_close(s);
                println!("closed");
                std::io::stdout().flush().unwrap();
            }
            other => panic!("unknown listen mode {other}"),
        }
    }
}

/// Hand connection `s` to a forked child, which closes its copy of the listener, prints its pid
/// (`child PID`), runs `child` and exits; the parent closes its copy of `s`.
fn in_a_child(listener: &TcpListener, s: TcpStream, child: impl FnOnce(TcpStream)) {
    // SAFETY: the child only prints, reads, sleeps and exits: it takes no lock another of the
    // parent's threads (the deadline's, asleep) could hold.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: closes this process's copy of the listener, left to the parent.
            unsafe { libc::close(listener.as_raw_fd()) };
            let mut out = std::io::stdout();
            let _ = writeln!(out, "child {}", std::process::id()).and_then(|()| out.flush());
            child(s);
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        _ => drop(s),
    }
}

/// Drain what arrives and say how the connection ended, keeping the socket until the deadline.
fn hold(mut s: TcpStream) {
    read_until_the_end(&mut s);
    std::thread::sleep(DEADLINE);
}

/// Read until the connection ends, and say how: `eof` or `errno N`.
fn read_until_the_end(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                println!("eof");
                return;
            }
            Ok(_) => {}
            Err(e) => return report_error(&e),
        }
    }
}

#[derive(Default)]
struct ClientOptions {
    send: usize,
    wait_go: bool,
    keepalive: Option<(u64, u64, u32)>,
    user_timeout_ms: Option<u32>,
    /// `--connect-timeout MS`: give the connect up after MS (the socket closed while it still
    /// connects, as an application's connect timeout does), printing `gave up`.
    connect_timeout_ms: Option<u64>,
    syncnt: Option<i32>,
    linger0: bool,
    linger2_abort: bool,
    /// `--close-at-once`: close right after connecting (with `--linger2-abort`, in FIN_WAIT1:
    /// the stack resets the orphan when the server acknowledges the FIN).
    close_at_once: bool,
    /// After `--send`, wait for the server's answer before going on.
    await_answer: bool,
    /// `--give-up-after MS`, with `--await-answer`: wait MS more after the answer's first bytes
    /// before going on, as a proxy whose server timeout fires on a stalled response does.
    give_up_after_ms: Option<u64>,
    race: bool,
    /// Race over another address of the same service (happy eyeballs: its other family).
    race_with: Option<IpAddr>,
    /// `--race-port`: the second connection goes to this port of the server.
    race_port: Option<u16>,
    send_after_ms: Option<u64>,
    disconnect: bool,
    reuse_port_after_bulk: bool,
    repeat: u32,
    /// `--until-reset`, with `--repeat`: each connection sends a byte and reads until the
    /// server resets it (an abort storm); `reset N` counts those.
    until_reset: bool,
    /// `--half-close`, with `--until-reset`: shut the sending side down after the byte (FIN), as
    /// an HTTP/1.0 client or `nc -N` does, so the RST comes in FIN_WAIT1 or FIN_WAIT2.
    half_close: bool,
    /// `--local-port`: connect from this port (SO_REUSEADDR), the same 4-tuple every run.
    local_port: Option<u16>,
    /// `--fill-close`: write until the send buffer is full (the server reads nothing), then
    /// close: the socket lives on as an orphan with data it cannot send.
    fill_close: bool,
    /// `--hand-over`: once connected, the socket passes to a forked child and the connecting
    /// process exits, as a launcher handing a connection to a worker does; the child, which
    /// prints `holder PID`, goes on as the client.
    hand_over: bool,
    /// `--hand-over-and-stay`: the same, but the connecting process closes its copy of the
    /// socket and lives on until 3 s after the child ends.
    hand_over_and_stay: bool,
    /// `--rename NAME`: once connected, the process names itself NAME (PR_SET_NAME), as a
    /// server setting its process title does, and lives on 4 s after the connection ends.
    rename: Option<String>,
    /// `--reconnect-from ADDR`: once the server closed the first connection (it closes first:
    /// its end stays in TIME_WAIT), connect again from ADDR, which the test's NAT maps to the
    /// first connection's address and port, as another client behind the same NAT: over and
    /// over, until a SYN is answered by that TIME_WAIT (see `reconnect_through_nat`).
    reconnect_from: Option<IpAddr>,
}

fn parse_client(args: &[String]) -> ClientOptions {
    let mut o = ClientOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("option value").clone();
        match a.as_str() {
            "--send" => o.send = value().parse().unwrap(),
            "--wait-go" => o.wait_go = true,
            "--keepalive" => {
                let v: Vec<u64> = value().split(',').map(|x| x.parse().unwrap()).collect();
                o.keepalive = Some((v[0], v[1], v[2] as u32));
            }
            "--user-timeout" => o.user_timeout_ms = Some(value().parse().unwrap()),
            "--syncnt" => o.syncnt = Some(value().parse().unwrap()),
            "--connect-timeout" => o.connect_timeout_ms = Some(value().parse().unwrap()),
            "--linger0" => o.linger0 = true,
            "--linger2-abort" => o.linger2_abort = true,
            "--close-at-once" => o.close_at_once = true,
            "--await-answer" => o.await_answer = true,
            "--give-up-after" => o.give_up_after_ms = Some(value().parse().unwrap()),
            "--race" => o.race = true,
            "--race-with" => {
                o.race = true;
                o.race_with = Some(value().parse().expect("--race-with address"));
            }
            "--race-port" => {
                o.race = true;
                o.race_port = Some(value().parse().expect("--race-port port"));
            }
            "--send-after" => o.send_after_ms = Some(value().parse().unwrap()),
            "--disconnect" => o.disconnect = true,
            "--reuse-after-bulk" => o.reuse_port_after_bulk = true,
            "--repeat" => o.repeat = value().parse().unwrap(),
            "--until-reset" => o.until_reset = true,
            "--half-close" => o.half_close = true,
            "--fill-close" => o.fill_close = true,
            "--hand-over" => o.hand_over = true,
            "--hand-over-and-stay" => o.hand_over_and_stay = true,
            "--rename" => o.rename = Some(value()),
            // One connection's port: not with --race's second one.
            "--local-port" => o.local_port = Some(value().parse().expect("--local-port port")),
            "--reconnect-from" => o.reconnect_from = Some(value().parse().expect("--reconnect-from address")),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(!(o.race && o.local_port.is_some()), "--local-port takes one connection's port: not with --race");
    o
}

fn open(addr: SocketAddr, o: &ClientOptions) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    let fd = socket.as_raw_fd();
    if let Some((idle, intvl, cnt)) = o.keepalive {
        let ka = TcpKeepalive::new()
            .with_time(Duration::from_secs(idle))
            .with_interval(Duration::from_secs(intvl))
            .with_retries(cnt);
        socket.set_tcp_keepalive(&ka)?;
    }
    if let Some(ms) = o.user_timeout_ms {
        socket.set_tcp_user_timeout(Some(Duration::from_millis(ms as u64)))?;
    }
    if let Some(n) = o.syncnt {
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_SYNCNT, n);
    }
    if o.linger2_abort {
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_LINGER2, -1);
    }
    if let Some(port) = o.local_port {
        socket.set_reuse_address(true)?;
        let any: IpAddr = if addr.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        socket.bind(&SocketAddr::new(any, port).into())?;
    }
    match o.connect_timeout_ms {
        Some(ms) => socket.connect_timeout(&addr.into(), Duration::from_millis(ms))?,
        None => socket.connect(&addr.into())?,
    }
    Ok(socket.into())
}

/// Connect to `addr` from `from` until a SYN meets the server's TIME_WAIT of the connection
/// before, which the NAT gave the same 4-tuple: unless the SYN's sequence happens to lie past
/// that connection's (half the time, timestamps off), the TIME_WAIT answers with an ACK for the
/// old connection, this end resets it and sends its SYN again, which then connects. Every
/// connection the server accepts it closes first, leaving a TIME_WAIT for the next try.
fn reconnect_through_nat(addr: SocketAddr, from: IpAddr) {
    /// Long enough for the NAT's own record of the last connection to expire (the test sets
    /// conntrack's TIME_WAIT timeout to 1 s): until then it would not hand its port out again.
    const NAT_FORGETS: Duration = Duration::from_millis(1500);
    for attempt in 1..=12 {
        std::thread::sleep(NAT_FORGETS);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        if let Err(e) = socket.connect(&addr.into()) {
            return report_error(&e);
        }
        // The SYN went out again: the first one met the TIME_WAIT.
        let met = syn_retransmitted(socket.as_raw_fd());
        let mut s: TcpStream = socket.into();
        read_until_the_end(&mut s);
        drop(s);
        if met {
            println!("time-wait: met on attempt {attempt}");
            std::io::stdout().flush().unwrap();
            return;
        }
    }
    println!("time-wait: never met in 12 attempts");
    std::io::stdout().flush().unwrap();
}

/// The connected socket `fd` sent a segment again: for one just connected, its SYN.
fn syn_retransmitted(fd: RawFd) -> bool {
    // SAFETY: a zeroed plain C struct, filled by the kernel up to `len`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len) };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_total_retrans > 0
}

/// An abort storm: connect, send a byte, and read until the server resets the connection, over
/// and over. Only ECONNRESET counts; anything else is named, as in the refused storm.
fn reset_storm(addr: SocketAddr, o: &ClientOptions) {
    let mut reset = 0;
    let mut other = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..o.repeat {
        let ended = open(addr, o).and_then(|mut s| -> std::io::Result<()> {
            s.write_all(b"x")?;
            if o.half_close {
                // Fails (ENOTCONN) when the server's RST came first; the read below reports it.
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            let mut buf = [0u8; 64];
            loop {
                if s.read(&mut buf)? == 0 {
                    return Err(std::io::Error::other("eof"));
                }
            }
        });
        match ended {
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => reset += 1,
            Err(e) => *other.entry(e.to_string()).or_default() += 1,
            Ok(()) => {}
        }
    }
    if other.is_empty() {
        println!("reset {reset}");
    } else {
        let other: Vec<String> = other.iter().map(|(what, n)| format!("{what} ({n}x)")).collect();
        println!("reset {reset}, then also: {}", other.join(", "));
    }
}

fn report_error(e: &std::io::Error) {
    println!("errno {}", e.raw_os_error().unwrap_or(0));
    std::io::stdout().flush().unwrap();
}

fn connect(addr: SocketAddr, args: &[String]) {
    let o = parse_client(args);
    // A renamed client lives on a moment after its connection ends: its name stays readable.
    let lives_on = o.rename.is_some();
    client(addr, o);
    if lives_on {
        std::thread::sleep(Duration::from_secs(4));
    }
}

fn client(addr: SocketAddr, o: ClientOptions) {
    if o.repeat > 0 && o.until_reset {
        return reset_storm(addr, &o);
    }
    if o.repeat > 0 {
        // A reset storm: connect to a closed port over and over, as fast as it answers. Only
        // ECONNREFUSED (a RST) counts; any other failure is named, so a test that expects n
        // refusals fails saying what happened instead.
        let mut refused = 0;
        let mut other = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..o.repeat {
            match open(addr, &o) {
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => refused += 1,
                Err(e) => *other.entry(e.to_string()).or_default() += 1,
                Ok(_) => *other.entry("connected".into()).or_default() += 1,
            }
        }
        if other.is_empty() {
            println!("refused {refused}");
        } else {
            let other: Vec<String> = other.iter().map(|(what, n)| format!("{what} ({n}x)")).collect();
            println!("refused {refused}, then also: {}", other.join(", "));
        }
        return;
    }
    let mut s = match open(addr, &o) {
        Ok(s) => s,
        // socket2's own timeout, no errno: the socket is closed, still connecting.
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut && e.raw_os_error().is_none() => {
            println!("gave up");
            std::io::stdout().flush().unwrap();
            return;
        }
        Err(e) => return report_error(&e),
    };
    let sibling = o.race.then(|| open(SocketAddr::new(o.race_with.unwrap_or(addr.ip()), o.race_port.unwrap_or(addr.port())), &o).expect("second connection"));
    if o.hand_over || o.hand_over_and_stay {
        hand_over(o.hand_over_and_stay.then(|| s.as_raw_fd()));
    }
    if let Some(name) = &o.rename {
        let name = std::ffi::CString::new(name.as_str()).expect("--rename name");
        // SAFETY: a NUL-terminated name; PR_SET_NAME takes at most 16 bytes of it.
        let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        assert_eq!(rc, 0, "PR_SET_NAME: {}", std::io::Error::last_os_error());
    }
    ready();
    if o.wait_go {
        wait_go();
    }
    if let Some(sibling) = sibling {
        // Happy-eyeballs style: keep the second connection, abort the first at once. With
        // `--send`, the first carries a request before it is aborted: no race's spare, that.
        if o.send > 0 {
            s.write_all(&vec![b'x'; o.send]).expect("request on the first connection");
        }
        linger0_close(s);
        std::thread::sleep(Duration::from_millis(300));
        drop(sibling);
        return;
    }
    if o.send > 0 {
        if let Err(e) = s.write_all(&vec![b'x'; o.send]) {
            return report_error(&e);
        }
    }
    if o.await_answer {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {}
            Ok(_) => return println!("eof"),
            Err(e) => return report_error(&e),
        }
        if let Some(ms) = o.give_up_after_ms {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
    if let Some(from) = o.reconnect_from {
        read_until_the_end(&mut s);
        drop(s);
        return reconnect_through_nat(addr, from);
    }
    if o.reuse_port_after_bulk {
        // Send BULK bytes, let the server close first, then connect again from the same port.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..BULK / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
        let mut buf = [0u8; 16];
        while !matches!(s.read(&mut buf), Ok(0) | Err(_)) {}
        let local = s.local_addr().unwrap();
        drop(s);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        // Our FIN must be acknowledged first (LAST_ACK holds the port; only the server's side
        // goes to TIME_WAIT): quick natively, up to seconds in a slow emulated guest.
        let mut tries = 0;
        while let Err(e) = socket.bind(&local.into()) {
            tries += 1;
            assert!(e.kind() == std::io::ErrorKind::AddrInUse && tries < 100, "bind {local}: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // With --wait-go, again before reconnecting: the server's TIME_WAIT is older than what
        // starts meanwhile (a tracer).
        if o.wait_go {
            println!("time-wait");
            std::io::stdout().flush().unwrap();
            wait_go();
        }
        match socket.connect(&addr.into()) {
            Ok(()) => println!("reconnected"),
            Err(e) => report_error(&e),
        }
        std::io::stdout().flush().unwrap();
        return;
    }
    if o.disconnect {
        // connect(AF_UNSPEC): the kernel resets the connection but the socket stays ours.
        std::thread::sleep(Duration::from_millis(100));
        let unspec = libc::sockaddr { sa_family: libc::AF_UNSPEC as u16, sa_data: [0; 14] };
        // SAFETY: valid sockaddr of the given length.
        let rc = unsafe { libc::connect(s.as_raw_fd(), &unspec, std::mem::size_of::<libc::sockaddr>() as u32) };
        assert_eq!(rc, 0, "disconnect: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(500));
        return;
    }
    if o.fill_close {
        s.set_nonblocking(true).unwrap();
        let chunk = [b'f'; 4096];
        loop {
            match s.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return report_error(&e),
            }
        }
        // Let what the window takes be acknowledged, so the rest waits on a closed window.
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        println!("closed");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        return;
    }
    if o.close_at_once {
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
        return;
    }
    if o.linger2_abort {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        return;
    }
    if let Some(ms) = o.send_after_ms {
        std::thread::sleep(Duration::from_millis(ms));
        for _ in 0..3 {
            if let Err(e) = s.write_all(b"more") {
                return report_error(&e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // After --send-after's writes: an abort once the peer has seen a few segments.
    if o.linger0 {
        return linger0_close(s);
    }
    // Wait for the connection to end, and say how.
    read_until_the_end(&mut s);
}

/// Answer the first SYN to `addr` with a forged segment, through a raw socket: `bad-ack` sends a
/// bare ACK for data never sent, `paws` a SYN-ACK whose timestamp echo the client never sent.
/// Run where nothing listens on `addr` and the stack's own RST is filtered out.
fn forge(addr: SocketAddr, mode: &str) {
    let fd = raw_tcp_socket(addr);
    ready();
    let mut buf = [0u8; 2048];
    let (peer, tcp) = loop {
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        // SAFETY: buffers valid for their lengths.
        let n = unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, (&mut from as *mut libc::sockaddr_storage).cast(), &mut len) };
        assert!(n > 0, "recvfrom: {}", std::io::Error::last_os_error());
        // IPv4 raw sockets see the IP header, IPv6 ones only the payload.
        let start = if addr.is_ipv4() { ((buf[0] & 0x0f) as usize) * 4 } else { 0 };
        let tcp = buf[start..n as usize].to_vec();
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let is_syn = tcp[13] & 0x12 == 0x02;
        if dport == addr.port() && is_syn {
            let peer_ip = match addr {
                SocketAddr::V4(_) => IpAddr::from(<[u8; 4]>::try_from(&buf[12..16]).unwrap()),
                SocketAddr::V6(_) => {
                    // SAFETY: the kernel filled a sockaddr_in6 for an AF_INET6 socket.
                    let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&from as *const libc::sockaddr_storage).cast()) };
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
            };
            break (SocketAddr::new(peer_ip, u16::from_be_bytes([tcp[0], tcp[1]])), tcp);
        }
    };
    let isn = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let (ack, flags, options): (u32, u8, Vec<u8>) = match mode {
        // Acknowledges 1000 bytes the client never sent.
        "bad-ack" => (isn.wrapping_add(1001), 0x10, vec![]),
        // A proper SYN-ACK, but echoing a timestamp from far outside the client's window.
        "paws" => (isn.wrapping_add(1), 0x12, vec![1, 1, 8, 10, 0, 0, 0, 1, 0x0f, 0xff, 0xff, 0xff]),
        other => panic!("unknown forge mode {other}"),
    };
    let mut seg = tcp_header(addr.port(), peer.port(), 0x1234_5678, ack, flags, 65535, &options);
    send_segment(fd, addr.ip(), peer.ip(), &mut seg);
    println!("forged");
    std::io::stdout().flush().unwrap();
}

/// Send one segment from `src`, port `STRAY_PORT`, to `addr`, for no connection at all. A RST
/// is what a host receives when a peer resets a connection it already forgot; the stack must not
/// answer it. A bare ACK to a listener is answered with a RST (the listener has no such
/// connection).
const STRAY_PORT: u16 = 40404;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

fn stray(addr: SocketAddr, src: IpAddr, flags: u8) {
    let fd = raw_tcp_socket(addr);
    let ack_seq: u32 = if flags & TCP_ACK != 0 { 0x5eed_0bad } else { 0 };
    let mut seg = tcp_header(STRAY_PORT, addr.port(), 0x0bad_5eed, ack_seq, flags, 0xffff, &[]);
    send_segment(fd, src, addr.ip(), &mut seg);
    println!("sent");
    std::io::stdout().flush().unwrap();
}

/// A raw TCP socket of `addr`'s family: IPv4 ones receive the IP header, IPv6 ones do not.
fn raw_tcp_socket(addr: SocketAddr) -> i32 {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    fd
}

/// A TCP header (with `options`, a multiple of 4 bytes), its checksum left to [`send_segment`].
fn tcp_header(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, window: u16, options: &[u8]) -> Vec<u8> {
    let mut seg = Vec::with_capacity(20 + options.len());
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&seq.to_be_bytes());
    seg.extend_from_slice(&ack.to_be_bytes());
    seg.push((((20 + options.len()) / 4) as u8) << 4);
    seg.push(flags);
    seg.extend_from_slice(&window.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]);
    seg.extend_from_slice(options);
    seg
}

/// Fill in the segment's checksum and send it from `src` to `dst` (the kernel adds the IP header,
/// with this host's default TTL / hop limit). The source goes in a packet-info message, so the IP
/// header carries the address the checksum covers, also where it is not this host's own (a
/// forger's socket, with IP_TRANSPARENT).
fn send_segment(fd: i32, src: IpAddr, dst: IpAddr, seg: &mut [u8]) {
    let sum = checksum(src, dst, seg);
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
    let dest: socket2::SockAddr = SocketAddr::new(dst, 0).into();
    let mut iov = libc::iovec { iov_base: seg.as_mut_ptr().cast(), iov_len: seg.len() };
    // u64s: aligned for a cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = dest.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = dest.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    match src {
        IpAddr::V4(a) => {
            let addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) };
            let info = libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: addr, ipi_addr: libc::in_addr { s_addr: 0 } };
            put_cmsg(&mut msg, &mut control, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
        }
        IpAddr::V6(a) => {
            let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: a.octets() }, ipi6_ifindex: 0 };
            put_cmsg(&mut msg, &mut control, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
        }
    }
    // SAFETY: msg and everything it points to are valid.
    let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
    assert_eq!(sent as usize, seg.len(), "sendmsg: {}", std::io::Error::last_os_error());
}

/// Make `value` the one control message of `msg`, in `control`.
fn put_cmsg<T>(msg: &mut libc::msghdr, control: &mut [u64; 8], level: i32, kind: i32, value: T) {
    let size = std::mem::size_of::<T>() as u32;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(size) } as usize;
    assert!(space <= std::mem::size_of_val(control), "control message of {space} bytes");
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control holds `space` bytes: room for one header and `value`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), value);
    }
}

/// TCP checksum over the pseudo-header and segment.
fn checksum(src: IpAddr, dst: IpAddr, seg: &[u8]) -> u16 {
    let mut data = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            data.extend_from_slice(&s.octets());
            data.extend_from_slice(&d.octets());
            data.extend_from_slice(&[0, 6]);
            data.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            data.extend_from_slice(&s.octets());
            data.extend_from_slice(&d.octets());
            data.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            data.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("mixed families"),
    }
    data.extend_from_slice(seg);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]) as u32).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
