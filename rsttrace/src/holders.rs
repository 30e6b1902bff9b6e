//! Which process holds a socket's file, asked of the kernel. Past its start the agent keeps no
//! privilege, and with none it may not read other processes' `/proc/PID/fd` (a process with
//! capabilities, or of another user, is closed to it): the kernel side's `socket_holders`, an
//! iterator over every task's open files loaded and linked at start, answers instead. Each read
//! of a new instance of it walks every task's files in the kernel once and returns the holders
//! of the socket files put in its `WANTED_FILES` map. (Creating an instance and updating that
//! map need no capability.)
use std::{
    io::Read as _,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use aya::{
    maps::{HashMap, MapData},
    programs::Iter,
    Btf, Ebpf,
};
use rsttrace_common::{HeldSocket, HolderFields, WANTED_FILES};

pub struct SocketHolders {
    link: OwnedFd,
    wanted: HashMap<MapData, u64, u8>,
}

impl SocketHolders {
    /// Load and link the iterator (privileged: at start); why not, where it cannot be.
    pub fn load(ebpf: &mut Ebpf, btf: &Btf, fields: &HolderFields) -> Result<Self, String> {
        if !fields.complete() {
            return Err("BTF does not name the file, inode and task fields it reads".into());
        }
        let prog: &mut Iter = ebpf
            .program_mut("socket_holders")
            .ok_or("program socket_holders missing")?
            .try_into()
            .map_err(|e| format!("socket_holders: {e}"))?;
        prog.load("task_file", btf).map_err(|e| match e {
            // Its error, not the whole verifier log aya's message carries.
            aya::programs::ProgramError::LoadError { io_error, .. } => format!("the kernel refused socket_holders: {io_error}"),
            other => format!("loading socket_holders: {other}"),
        })?;
        let link = link_iterator(prog.fd().map_err(|e| e.to_string())?.as_fd())?;
        let map = ebpf.take_map("WANTED_FILES").ok_or("map WANTED_FILES missing")?;
        let wanted = HashMap::try_from(map).map_err(|e| format!("WANTED_FILES: {e}"))?;
        Ok(Self { link, wanted })
    }

    /// The processes holding the socket files with inodes `inodes` (the first
    /// [`WANTED_FILES`]): one walk of every task's files, in the kernel.
    pub fn find(&mut self, inodes: &[u64]) -> std::io::Result<Vec<HeldSocket>> {
        let inodes = &inodes[..inodes.len().min(WANTED_FILES as usize)];
        let mut inserted = 0;
        let mut found = Ok(());
        for inode in inodes {
            if let Err(e) = self.wanted.insert(inode, 1, 0) {
                found = Err(std::io::Error::other(e));
                break;
            }
            inserted += 1;
        }
        let found = found.and_then(|()| self.walk());
        // Whatever happened: a wanted inode left behind would fill the map for good.
        for inode in &inodes[..inserted] {
            let _ = self.wanted.remove(inode);
        }
        found
    }

    fn walk(&self) -> std::io::Result<Vec<HeldSocket>> {
        let mut file = std::fs::File::from(iterator_instance(self.link.as_fd())?);
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                // The kernel pauses a walk that visited a million files without writing: the
                // next read goes on from there.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(bytes.chunks_exact(std::mem::size_of::<HeldSocket>()).map(held_socket).collect())
    }
}

fn held_socket(bytes: &[u8]) -> HeldSocket {
    let inode = u64::from_ne_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let tgid = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
    HeldSocket { inode, tgid, _pad: 0 }
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `bpf(cmd, attr)` with a zeroed 64-byte attribute whose first words are `words`; the new
/// descriptor it returns.
fn bpf_fd(cmd: libc::c_long, words: &[u32]) -> std::io::Result<OwnedFd> {
    let mut attr = [0u32; 16];
    attr[..words.len()].copy_from_slice(words);
    // SAFETY: `attr` is a valid, zero-padded `union bpf_attr` prefix of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(&attr) as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_LINK_CREATE` for an iterator: `{ prog_fd, target_fd: 0, attach_type }`.
fn link_iterator(prog: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    bpf_fd(BPF_LINK_CREATE, &[prog.as_raw_fd() as u32, 0, BPF_TRACE_ITER]).map_err(|e| format!("linking socket_holders: {e}"))
}

/// `BPF_ITER_CREATE`: `{ link_fd }`; reading the descriptor runs the iterator.
fn iterator_instance(link: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    bpf_fd(BPF_ITER_CREATE, &[link.as_raw_fd() as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_socket_is_read_as_the_kernel_side_writes_it() {
        let written = HeldSocket { inode: 0x1122_3344_5566_7788, tgid: 4242, _pad: 0 };
        // SAFETY: a plain `#[repr(C)]` value viewed as its bytes.
        let bytes: [u8; 16] = unsafe { std::mem::transmute(written) };
        assert_eq!(held_socket(&bytes), written);
    }
}
