//! rststim: provokes one kind of TCP ending from inside a network namespace.
//!
//! `rststim NETNS listen ADDR PORT MODE` or `rststim NETNS connect ADDR PORT [OPTIONS]`.
//! It prints `ready` once listening or connected and, for a client, `errno N` when the
//! connection ended with an error. `--wait-go` makes it read one line from stdin before acting,
//! so a test can change the network in between. Every run ends within `DEADLINE`.
use std::{
    io::{BufRead, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

const DEADLINE: Duration = Duration::from_secs(30);

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
        other => panic!("unknown command {other}"),
    }
}

fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: valid fd for a network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
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

/// Server modes: what to do with each accepted connection.
fn listen(addr: SocketAddr, mode: &str) {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
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
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    ready();
    loop {
        let (mut s, _) = listener.accept().unwrap();
        match mode {
            // Keep it open and drain what arrives; never close first.
            "hold" => {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    std::thread::sleep(DEADLINE);
                });
            }
            // Close with data the application never read: the stack aborts.
            "unread-close" => {
                wait_readable(&s);
                std::thread::sleep(Duration::from_millis(50));
                drop(s);
            }
            // Read what came, then close abortively.
            "linger0" => {
                wait_readable(&s);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                linger0_close(s);
            }
            // Close at once (FIN) while the client keeps talking.
            "close-first" => drop(s),
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

#[derive(Default)]
struct ClientOptions {
    send: usize,
    wait_go: bool,
    keepalive: Option<(u64, u64, u32)>,
    user_timeout_ms: Option<u32>,
    syncnt: Option<i32>,
    linger0: bool,
    linger2_abort: bool,
    race: bool,
    send_after_ms: Option<u64>,
    disconnect: bool,
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
            "--linger0" => o.linger0 = true,
            "--linger2-abort" => o.linger2_abort = true,
            "--race" => o.race = true,
            "--send-after" => o.send_after_ms = Some(value().parse().unwrap()),
            "--disconnect" => o.disconnect = true,
            other => panic!("unknown option {other}"),
        }
    }
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
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

fn report_error(e: &std::io::Error) {
    println!("errno {}", e.raw_os_error().unwrap_or(0));
    std::io::stdout().flush().unwrap();
}

fn connect(addr: SocketAddr, args: &[String]) {
    let o = parse_client(args);
    let mut s = match open(addr, &o) {
        Ok(s) => s,
        Err(e) => return report_error(&e),
    };
    let sibling = o.race.then(|| open(addr, &o).expect("second connection"));
    ready();
    if o.wait_go {
        wait_go();
    }
    if let Some(sibling) = sibling {
        // Happy-eyeballs style: keep the second connection, abort the first at once.
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
    if o.linger0 {
        return linger0_close(s);
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
    // Wait for the connection to end, and say how.
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
