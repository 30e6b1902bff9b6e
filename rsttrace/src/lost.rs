//! What the kernel side could not deliver, counted so that a loss is never silent: events that
//! found the ring buffer full (counted by the programs themselves), items submitted that the
//! agent never read (checked at exit), and runs of our programs the kernel skipped. The kernel
//! runs no BPF program inside another on the same CPU: a tracepoint
//! hit while one runs there (a timer's reset in a softirq that interrupted it; for classic
//! tracepoints and kprobes, any program of the kind, or a bpf() system call holding that CPU's
//! guard, the agent's own map reads included) is dropped and only counted in the program's
//! `recursion_misses`: for raw and BTF-typed tracepoints since Linux 5.12, for classic
//! tracepoints and kprobes only since 6.7. Before that, a classic program's skipped runs stay
//! uncounted (`tcp_send_reset`'s on every kernel, the others' where the typed programs are not
//! used).
use std::{
    os::fd::{AsFd, AsRawFd},
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::ProgramFd,
    Ebpf,
};
use rsttrace_common::{Submitted, LOST_SLOT};

use crate::loader::LoadError;

/// The programs that send events. (A skipped run of the others loses an owner update or a
/// hop-count sample, not a report.)
const EVENT_PROGRAMS: &[&str] = &[
    "tcp_send_reset",
    "tcp_send_reset_counting",
    "send_reset_typed",
    "send_reset_kprobe",
    "tcp_receive_reset",
    "receive_reset_typed",
    "inet_sock_set_state",
    "set_state_typed",
    "inet_sk_error_report",
    "error_report_typed",
];

/// Reading every program's count is a system call each: at most this often while tracing.
const SKIPPED_EVERY: Duration = Duration::from_millis(250);

pub struct LostCounter {
    ring_full: PerCpuArray<MapData, u64>,
    submitted: PerCpuArray<MapData, Submitted>,
    /// Submitted items the agent never read, as [`Self::check_read`] found at exit.
    unread: u64,
    /// Our own copies of the event programs' descriptors, with their names: they outlive the
    /// attachments, so the count can still be read after detaching, when the final drain runs.
    programs: Vec<(&'static str, ProgramFd)>,
    /// Each program's skipped runs as last read (in `programs`' order), and when.
    skipped: Mutex<(Vec<u64>, Option<Instant>)>,
}

/// Events lost so far, by way: what a `lost` record, stderr and the metrics say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Events that found the ring buffer full.
    pub ring_full: u64,
    /// Runs the kernel skipped, by program (only those with any).
    pub skipped: Vec<(&'static str, u64)>,
    /// Items submitted that the agent never read (known at exit).
    pub unread: u64,
}

impl Loss {
    pub fn total(&self) -> u64 {
        self.ring_full + self.skipped_runs() + self.unread
    }

    pub fn skipped_runs(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }

    /// The ways, for stderr: "0 found the ring buffer full, 1 program runs the kernel skipped:
    /// set_state_typed 1 (it runs no BPF program inside another on a CPU)".
    pub fn explained(&self) -> String {
        let by_program: Vec<String> = self.skipped.iter().map(|(name, n)| format!("{name} {n}")).collect();
        let by_program = if by_program.is_empty() { String::new() } else { format!(": {}", by_program.join(", ")) };
        let unread = if self.unread > 0 { format!(", {} submitted by the kernel but never read", self.unread) } else { String::new() };
        format!(
            "{} found the ring buffer full, {} program runs the kernel skipped{by_program} \
             (it runs no BPF program inside another on a CPU){unread}",
            self.ring_full,
            self.skipped_runs()
        )
    }
}

impl LostCounter {
    /// Takes the ring-full counter out of `ebpf`; call once every program is attached.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        let map = ebpf.take_map("LOST").ok_or(LoadError::Map("LOST"))?;
        let ring_full = PerCpuArray::try_from(map).map_err(|_| LoadError::Map("LOST"))?;
        let map = ebpf.take_map("SUBMITTED").ok_or(LoadError::Map("SUBMITTED"))?;
        let submitted = PerCpuArray::try_from(map).map_err(|_| LoadError::Map("SUBMITTED"))?;
        let programs: Vec<(&'static str, ProgramFd)> = ebpf
            .programs()
            .filter_map(|(name, p)| {
                let name = EVENT_PROGRAMS.iter().find(|n| **n == name)?;
                Some((*name, p.fd().ok()?.try_clone().ok()?))
            })
            .collect();
        let skipped = Mutex::new((vec![0; programs.len()], None));
        Ok(Self { ring_full, submitted, unread: 0, programs, skipped })
    }

    /// Events lost so far, every way; the skipped runs as of at most [`SKIPPED_EVERY`] ago
    /// (`now`: read this instant, as at exit).
    pub fn total(&self, now: bool) -> u64 {
        self.loss(now).total()
    }

    /// Events lost so far, by way (`now` as for [`Self::total`]).
    pub fn loss(&self, now: bool) -> Loss {
        let skipped = self.skipped(now);
        let skipped = self.programs.iter().zip(skipped).filter(|(_, n)| *n > 0).map(|((name, _), n)| (*name, n)).collect();
        Loss { ring_full: self.ring_full(), skipped, unread: self.unread }
    }

    /// At exit, with every program detached and the ring buffer drained: the items the kernel
    /// submitted that were not among the `read` ones are lost (the ring buffer delivers each
    /// submitted item once, in order, so none should be). Returns how many.
    pub fn check_read(&mut self, read: u64) -> u64 {
        let submitted: u64 = self.submitted.get(&0, 0).map(|per_cpu| per_cpu.iter().map(|s| s.total).sum()).unwrap_or(read);
        self.unread = submitted.saturating_sub(read);
        self.unread
    }

    /// Events that found the ring buffer full.
    fn ring_full(&self) -> u64 {
        self.ring_full.get(&LOST_SLOT, 0).map(|per_cpu| per_cpu.iter().sum()).unwrap_or(0)
    }

    /// Runs the kernel skipped, per program. (Counted as events lost though a skipped run may
    /// have had nothing to send: the judge must doubt, not conclude.)
    fn skipped(&self, now: bool) -> Vec<u64> {
        let mut last = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        if now || !last.1.is_some_and(|at| at.elapsed() < SKIPPED_EVERY) {
            for ((_, program), count) in self.programs.iter().zip(last.0.iter_mut()) {
                // Never less than before: a count that could not be read this time is not a
                // recovery.
                *count = recursion_misses(program).unwrap_or(0).max(*count);
            }
            last.1 = Some(Instant::now());
        }
        last.0.clone()
    }
}

/// The start of the kernel's `struct bpf_prog_info` (include/uapi/linux/bpf.h), up to the
/// count we read; the kernel fills as much as we ask for.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    type_: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD`'s argument.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The program's `recursion_misses`; `None` where the kernel cannot tell (before 5.12 it
/// reports a shorter structure and the field stays 0, which reads as none skipped).
fn recursion_misses(program: &ProgramFd) -> Option<u64> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoByFd {
        bpf_fd: program.as_fd().as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    // SAFETY: `attr` and the buffer it points at live across the call and have the sizes given.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &mut attr as *mut InfoByFd, std::mem::size_of::<InfoByFd>() as u32) };
    (rc == 0).then_some(info.recursion_misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program named is one of the object's (a renamed program would go uncounted).
    #[test]
    fn every_event_program_is_in_the_object() {
        let object = aya_obj::Object::parse(crate::loader::OBJECT).expect("the BPF object parses");
        for name in EVENT_PROGRAMS {
            assert!(object.programs.contains_key(*name), "{name} is not a program of the object");
        }
    }

    /// The fields sit where include/uapi/linux/bpf.h puts them.
    #[test]
    fn the_misses_count_is_at_the_kernels_offset() {
        assert_eq!(std::mem::offset_of!(ProgInfoHead, recursion_misses), 208);
        assert_eq!(std::mem::offset_of!(ProgInfoHead, run_time_ns), 192);
    }
}
