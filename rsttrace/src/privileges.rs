//! Privileges: say exactly which capability is missing before touching the kernel, and give
//! every capability up once the programs are attached (reading the ring buffer and maps through
//! the file descriptors already held needs none).
use std::{fs, io};

use anyhow::bail;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of this process, from /proc/self/status.
fn effective() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// What loading needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, which covers both), plus
/// CAP_SYS_ADMIN when tracefs still has to be mounted.
pub fn check(must_mount_tracefs: bool) -> anyhow::Result<()> {
    let caps = effective();
    let admin = has(caps, CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !admin && !has(caps, CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !admin && !has(caps, CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    if must_mount_tracefs && !admin {
        missing.push("CAP_SYS_ADMIN (to mount tracefs; or mount it first: mount -t tracefs nodev /sys/kernel/tracing)");
    }
    if !missing.is_empty() {
        bail!("missing {}: run as root (sudo rsttrace) or grant them", missing.join(" and "));
    }
    Ok(())
}

/// Drop every capability (effective, permitted, inheritable) for the rest of the run.
pub fn drop_all() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset with a valid v3 header and two data words, as the ABI requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn remaining() -> u64 {
    effective()
}
