//! Which process holds a socket's file. Past its start the agent keeps no privilege, and with
//! none it may not read other processes' `/proc/PID/fd`: this iterator over every task's open
//! files, loaded and linked at start, runs in the kernel whenever the agent reads a new instance
//! of it, and writes a [`HeldSocket`] for each open socket file whose inode the agent put in
//! `WANTED_FILES` (the files of sockets that reset with no owner on record: a connection a
//! forking server's child holds before using it, one older than rsttrace).
use core::{
    ffi::c_void,
    ptr::{addr_of, read_volatile},
};

use aya_ebpf::{helpers::generated::bpf_seq_write, macros::map, maps::HashMap};
use rsttrace_common::{HeldSocket, HolderFields, WANTED_FILES as WANTED_MAX};

#[map]
pub static WANTED_FILES: HashMap<u64, u8> = HashMap::with_max_entries(WANTED_MAX, 0);

/// Offsets from BTF, set at load (a plain static, each field read on its own: see `typed.rs`).
#[unsafe(no_mangle)]
pub static HOLDER_FIELDS: HolderFields = HolderFields::UNKNOWN;

macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a plain read of a static.
        unsafe { read_volatile(addr_of!(HOLDER_FIELDS.$field)) as usize }
    };
}

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// `iter/task_file`: its context is `struct bpf_iter__task_file { meta, task, fd, file }`, one
/// 8-byte slot each; `task` and `file` are null once the walk is over.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn socket_holders(ctx: *mut c_void) -> i32 {
    let slots = ctx as *const u64;
    // SAFETY: the context's slots, at the offsets the kernel's context type gives them; every
    // pointer read is one the verifier typed from BTF and checks against it.
    unsafe {
        let meta = read_volatile(slots) as *const u8;
        let task = read_volatile(slots.add(1)) as *const u8;
        let file = read_volatile(slots.add(3)) as *const u8;
        if task.is_null() || file.is_null() {
            return 0;
        }
        let inode = read_volatile(file.add(offset!(file_inode)) as *const *const u8);
        if inode.is_null() || read_volatile(inode.add(offset!(inode_mode)) as *const u16) & S_IFMT != S_IFSOCK {
            return 0;
        }
        let ino = read_volatile(inode.add(offset!(inode_ino)) as *const u64);
        if WANTED_FILES.get(&ino).is_none() {
            return 0;
        }
        let held = HeldSocket { inode: ino, tgid: read_volatile(task.add(offset!(task_tgid)) as *const u32), _pad: 0 };
        // `meta->seq`, the first field: where the reader's output goes.
        let seq = read_volatile(meta as *const *mut c_void);
        bpf_seq_write(seq.cast(), (&held as *const HeldSocket).cast(), core::mem::size_of::<HeldSocket>() as u32);
    }
    0
}
