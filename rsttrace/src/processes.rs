//! What `/proc` says about processes, for reports the kernel side could not complete: a
//! process's own name (the kernel names the thread that acted), and which process holds a
//! socket whose owner was never seen acting on it (a connection older than rsttrace that has
//! not been used since, a server thread still blocked in recv()).
//!
//! A socket's holder is found by its file's inode, which `/proc/PID/fd/N` shows as
//! `socket:[N]`. One walk indexes every socket on the host with its holder's name: one at start,
//! before rsttrace gives up its capabilities (so the sockets older than rsttrace are known even
//! when their holder closes them right after the reset, before it is reported). Later, without
//! capabilities, `/proc` shows only the processes that have none either: where the kernel has
//! the BTF for it, the kernel's own walk of every task's files answers instead
//! ([`SocketHolders`], for the unknown sockets of the events just read at once, for at most
//! [`KERNEL_WALK_BUDGET`] a second); elsewhere `/proc` is walked again on an unknown
//! socket, at most once a second, so a storm of such resets costs one. A holder that closes such
//! a socket before either walk is named by the kernel as it lets go ([`Processes::released`]).
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    decode::Release,
    event::{Comm, Task},
    holders::SocketHolders,
    judge::SocketFiles,
};

/// How long the kernel may spend walking every task's files for unknown sockets, each second
/// (a walk is a few ms on a host with 100k open files; it runs on the agent's loop).
const KERNEL_WALK_BUDGET: Duration = Duration::from_millis(50);
/// How often an unknown socket may send the resolver walking `/proc` again.
const REWALK_EVERY: Duration = Duration::from_secs(1);
/// How long a process name is trusted (a pid can be reused).
const NAME_TTL: Duration = Duration::from_secs(10);
/// How long a process seen alive is taken to be: a storm of resets on one process's sockets
/// reads its `/proc` entry once per this, not once per reset.
const ALIVE_TTL: Duration = Duration::from_millis(100);
/// Sockets indexed at most: past it the index starts over (socket inode numbers are not reused
/// soon, so old entries only cost memory).
const MAX_SOCKETS: usize = 1 << 20;

pub struct Processes {
    proc: PathBuf,
    names: HashMap<u32, (Comm, Instant)>,
    /// When each process was last found alive.
    alive: HashMap<u32, Instant>,
    holders: HashMap<u64, u32>,
    /// Socket file inode → the process that dropped its last reference (from the kernel side).
    released: HashMap<u64, u32>,
    walked: Option<Instant>,
    /// The kernel's walk, where it loaded; with the time it took in the current second.
    kernel: Option<SocketHolders>,
    kernel_walks: (Instant, Duration),
    kernel_failed: bool,
}

/// The judge asks for the holder of a socket nobody was seen using: found by its file.
impl SocketFiles for Processes {
    fn holder(&mut self, inode: u64) -> Option<Task> {
        let pid = Processes::holder(self, inode)?;
        Some(self.task(pid))
    }

    fn released_by(&mut self, inode: u64) -> Option<Task> {
        let pid = *self.released.get(&inode)?;
        Some(self.task(pid))
    }

    fn gone(&mut self, pid: u32) -> bool {
        Processes::gone(self, pid)
    }
}

impl Processes {
    pub fn new() -> Self {
        Self::at(PathBuf::from("/proc"))
    }

    pub fn at(proc: PathBuf) -> Self {
        Self { proc, names: HashMap::new(), alive: HashMap::new(), holders: HashMap::new(), released: HashMap::new(), walked: None, kernel: None, kernel_walks: (Instant::now(), Duration::ZERO), kernel_failed: false }
    }

    /// Find unknown sockets' holders through the kernel from now on.
    pub fn ask_the_kernel(&mut self, holders: SocketHolders) {
        self.kernel = Some(holders);
    }

    /// Look up, in one walk, the holders of those of `inodes` the index does not know (the
    /// sockets of the events just read). Only through the kernel: `/proc` is walked one socket
    /// at a time, by [`Self::holder`].
    pub fn find_holders(&mut self, inodes: impl Iterator<Item = u64>) {
        let Some(kernel) = self.kernel.as_mut() else { return };
        let mut unknown: Vec<u64> = inodes.filter(|i| *i != 0 && !self.holders.contains_key(i)).collect();
        if unknown.is_empty() {
            return;
        }
        let (since, spent) = &mut self.kernel_walks;
        if since.elapsed() >= Duration::from_secs(1) {
            (*since, *spent) = (Instant::now(), Duration::ZERO);
        }
        if *spent >= KERNEL_WALK_BUDGET {
            return; // their reports fall back to the listener's owner, if any
        }
        unknown.sort_unstable();
        unknown.dedup();
        let started = Instant::now();
        let found = kernel.find(&unknown);
        *spent += started.elapsed();
        match found {
            Ok(found) => {
                if self.holders.len() + found.len() > MAX_SOCKETS {
                    self.holders.clear();
                }
                for held in found {
                    self.holders.entry(held.inode).or_insert(held.tgid);
                }
            }
            // Said once: the owners of such sockets then come from their listeners only.
            Err(e) if !self.kernel_failed => {
                self.kernel_failed = true;
                eprintln!("rsttrace: finding sockets' holders in the kernel failed ({e}); unused sockets are named after their listener");
            }
            Err(_) => {}
        }
    }

    /// A socket nobody was seen acting on was let go of by `release`'s process: it held the
    /// file last (a walk that found a process sharing the file before is overruled). Not when
    /// that process is rsttrace: its walk holds each file a moment, and a holder closing the
    /// socket meanwhile leaves the last reference to the walk; the walk's finding stands.
    pub fn released(&mut self, release: &Release) {
        if release.inode == 0 || release.pid == 0 || release.pid == std::process::id() {
            return;
        }
        if self.holders.len() >= MAX_SOCKETS {
            self.holders.clear();
        }
        self.holders.insert(release.inode, release.pid);
        if self.released.len() >= MAX_SOCKETS {
            self.released.clear();
        }
        self.released.insert(release.inode, release.pid);
        // Named now: a process that closes the socket may exit before the report is written.
        if let Some(name) = release.process_comm {
            self.names.insert(release.pid, (name, Instant::now()));
        }
    }

    /// The name of process `pid` (its main thread's): read now, or, for a process gone since,
    /// as the last walk saw it.
    pub fn name(&mut self, pid: u32) -> Option<Comm> {
        if let Some((name, at)) = self.names.get(&pid) {
            if at.elapsed() < NAME_TTL {
                return Some(*name);
            }
        }
        match self.read_name(pid) {
            Some(name) => {
                self.names.insert(pid, (name, Instant::now()));
                Some(name)
            }
            None => self.names.get(&pid).map(|(name, _)| *name),
        }
    }

    /// The name of process `pid` as it is now (read at most [`ALIVE_TTL`] ago: a process may
    /// have renamed itself since [`Self::name`] last read it).
    pub fn current_name(&mut self, pid: u32) -> Option<Comm> {
        if let Some((name, _)) = self.names.get(&pid).filter(|(_, at)| at.elapsed() < ALIVE_TTL) {
            return Some(*name);
        }
        let name = self.read_name(pid)?;
        self.names.insert(pid, (name, Instant::now()));
        Some(name)
    }

    /// Process `pid` as a report names a holder: its main thread, by its name.
    fn task(&mut self, pid: u32) -> Task {
        let comm = self.name(pid).unwrap_or_else(|| "?".into());
        Task { pid, tid: pid, comm, cgroup: 0 }
    }

    /// Process `pid` has exited, or is a zombie (whose files are closed).
    pub fn gone(&mut self, pid: u32) -> bool {
        if self.alive.get(&pid).is_some_and(|at| at.elapsed() < ALIVE_TTL) {
            return false;
        }
        // `pid (comm) S ...`: the state follows the last parenthesis (a name may hold one).
        let stat = std::fs::read_to_string(self.proc.join(pid.to_string()).join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        let gone = matches!(state, None | Some('Z' | 'X'));
        if !gone {
            if self.alive.len() >= MAX_SOCKETS {
                self.alive.clear();
            }
            self.alive.insert(pid, Instant::now());
        }
        gone
    }

    fn read_name(&self, pid: u32) -> Option<Comm> {
        let raw = std::fs::read_to_string(self.proc.join(pid.to_string()).join("comm")).ok()?;
        Some(Comm::from(raw.trim_end_matches('\n')))
    }

    /// The process holding the socket whose file has inode `inode`.
    pub fn holder(&mut self, inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if let Some(pid) = self.holders.get(&inode) {
            return Some(*pid);
        }
        // The kernel was asked already, as the event was read (`find_holders`).
        if self.kernel.is_some() {
            return None;
        }
        if self.walked.is_some_and(|at| at.elapsed() < REWALK_EVERY) {
            return None;
        }
        self.walk();
        self.holders.get(&inode).copied()
    }

    /// Index every socket file descriptor on the host by inode (the first process found holds
    /// it: a forked child shares its parent's), and the names of the processes holding them.
    pub fn walk(&mut self) {
        self.walked = Some(Instant::now());
        if self.holders.len() > MAX_SOCKETS {
            self.holders.clear();
        }
        let Ok(procs) = std::fs::read_dir(&self.proc) else { return };
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            let mut holds_sockets = false;
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else { continue };
                let inode = target.to_str().and_then(|t| t.strip_prefix("socket:[")).and_then(|t| t.strip_suffix(']')).and_then(|n| n.parse().ok());
                if let Some(inode) = inode {
                    self.holders.entry(inode).or_insert(pid);
                    holds_sockets = true;
                }
            }
            if holds_sockets {
                if let Some(name) = self.read_name(pid) {
                    self.names.insert(pid, (name, Instant::now()));
                }
            }
        }
    }
}

impl Default for Processes {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsRawFd, unix::fs::MetadataExt};

    use super::*;

    #[test]
    fn a_release_names_the_holder_and_overrules_a_walk() {
        let mut p = Processes::at(PathBuf::from("/nonexistent"));
        p.holders.insert(4242, 10); // a walk found the parent, which shared the file
        p.released(&Release { inode: 4242, pid: 11, tid: 12, process_comm: Some(Comm::from("server")) });
        assert_eq!(p.holder(4242), Some(11));
        // Named as the kernel read it: the process may be gone, `/proc` never knew it here.
        assert_eq!(SocketFiles::holder(&mut p, 4242).map(|t| (t.pid, t.comm.as_str().to_string())), Some((11, "server".into())));
        p.released(&Release { inode: 0, pid: 13, tid: 13, process_comm: None });
        assert_eq!(p.holders.len(), 1);
        // rsttrace's own walk dropping the last reference, or the idle task: nobody's holder.
        p.released(&Release { inode: 4242, pid: std::process::id(), tid: std::process::id(), process_comm: None });
        p.released(&Release { inode: 4242, pid: 0, tid: 0, process_comm: None });
        assert_eq!(p.holder(4242), Some(11));
    }

    #[test]
    fn this_process_holds_its_own_socket_and_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap().ino();
        let mut p = Processes::new();
        assert_eq!(p.holder(inode), Some(std::process::id()));
        assert_eq!(p.holder(0), None);
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(p.name(std::process::id()).unwrap().as_str(), comm.trim_end());
        // An inode nobody holds is looked for again only after a second.
        assert_eq!(p.holder(u64::MAX), None);
        assert!(p.walked.unwrap().elapsed() < REWALK_EVERY);
    }

    #[test]
    fn a_process_is_gone_once_exited_or_a_zombie() {
        let proc = std::env::temp_dir().join(format!("rsttrace-gone-{}", std::process::id()));
        for (pid, stat) in [(10, "10 (a) S 1"), (11, "11 (zombie) Z 1"), (12, "12 (x) y) R 1")] {
            std::fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            std::fs::write(proc.join(pid.to_string()).join("stat"), stat).unwrap();
        }
        let mut p = Processes::at(proc.clone());
        assert_eq!([10, 11, 12, 13].map(|pid| p.gone(pid)), [false, true, false, true]);
        // A process seen alive a moment ago is not read again.
        std::fs::remove_dir_all(proc.join("10")).unwrap();
        assert!(!p.gone(10));
        p.alive.clear();
        assert!(p.gone(10));
        std::fs::remove_dir_all(&proc).unwrap();
        // This very process, through the real /proc.
        assert!(!Processes::new().gone(std::process::id()));
        // A name read a moment ago stands; an older one is read again (a rename since).
        let proc = std::env::temp_dir().join(format!("rsttrace-renamed-{}", std::process::id()));
        std::fs::create_dir_all(proc.join("20")).unwrap();
        std::fs::write(proc.join("20/comm"), "before\n").unwrap();
        let mut p = Processes::at(proc.clone());
        assert_eq!(p.name(20).unwrap().as_str(), "before");
        std::fs::write(proc.join("20/comm"), "after\n").unwrap();
        assert_eq!(p.current_name(20).unwrap().as_str(), "before");
        p.names.get_mut(&20).unwrap().1 -= ALIVE_TTL;
        assert_eq!(p.current_name(20).unwrap().as_str(), "after");
        std::fs::remove_dir_all(&proc).unwrap();
    }
}
