//! `cargo xtask vm-test`: the end-to-end scenarios on the kernels production hosts run, each
//! booted under qemu with the suite as the guest's init, the host kernel counting as one more.
//!
//! The guest is built from nothing but Debian packages and this workspace's own binaries: the
//! kernel package's `vmlinuz` and the modules the scenarios load (veth, nf_tables' reject), a
//! static busybox for the shell, and rsttrace, the e2e test binary, `rststim`, `ip` and `nft`
//! with the shared libraries they link. Results come back over the serial console.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::{cmd, cpio::Archive, install_debian, output};

/// What building and booting a guest needs from Debian.
const PACKAGES: [&str; 5] = ["qemu-system-x86", "busybox-static", "kmod", "xz-utils", "binutils"];
/// Modules the scenarios load; their dependencies come along (`modprobe --show-depends`):
/// nftables' reject and (for a NAT in a namespace) its NAT chains and expression.
const MODULES: [&str; 5] = ["veth", "nf_tables", "nft_reject_inet", "nft_chain_nat", "nft_nat"];
/// `tcp_diag` (with `inet_diag`) lets `ss -K` destroy sockets; built in on some kernels, so
/// taken only where the package has it as a module.
const OPTIONAL_MODULES: [&str; 1] = ["tcp_diag"];
/// Where downloaded kernels and built guests are kept between runs.
const CACHE: &str = "target/vm";
/// A whole suite under TCG takes minutes; this bounds a guest that hangs.
const GUEST_LIMIT: Duration = Duration::from_secs(25 * 60);
/// The lines the guest's init prints around the suite, for the host to find in the console.
const BEGIN: &str = "rsttrace-vm: begin";
const STATUS: &str = "rsttrace-vm: status ";

/// The guest's /init: mount what the suite needs, load the modules, run the suite, power off.
const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 1 > /proc/sys/kernel/printk
for m in /modules/*.ko; do insmod "$m" || echo "rsttrace-vm: insmod $m failed"; done
ip link set lo up
echo "rsttrace-vm: kernel $(uname -r)"
/suite/rsttrace --summary -d 1 2>&1 | grep -v 'traced\|tracing TCP' | sed 's/^/rsttrace-vm: /'
echo "rsttrace-vm: begin"
cd /suite
RSTTRACE_BIN=/suite/rsttrace ./deps/e2e --test-threads=1
echo "rsttrace-vm: status $?"
poweroff -f
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Debian 12's kernel (also Amazon Linux 2023's series): no `reason`, no socket-less event.
    V6_1,
    /// Debian 12's second kernel series (and newer distributions'): every reset carries a
    /// reason and fires `tcp_send_reset`, socket or not.
    V6_12,
}

impl Kernel {
    pub const ALL: [Kernel; 2] = [Kernel::V6_1, Kernel::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }

    /// The meta-package that depends on the newest kernel of the series.
    fn meta_package(self) -> &'static str {
        match self {
            Kernel::V6_1 => "linux-image-cloud-amd64",
            Kernel::V6_12 => "linux-image-6.12-cloud-amd64",
        }
    }
}

/// The outcome of one kernel's suite.
pub struct Outcome {
    pub kernel: String,
    pub passed: bool,
    pub detail: String,
}

impl Outcome {
    /// A rerun's outcome; where it failed too, the first failure's detail follows its own.
    fn or_first_failure(self, first: Outcome) -> Outcome {
        if self.passed {
            self
        } else {
            Outcome { detail: format!("{}; first run: {}", self.detail, first.detail), ..self }
        }
    }

    pub fn line(&self) -> String {
        format!("{:<24} {}  {}", self.kernel, if self.passed { "passed" } else { "FAILED" }, self.detail)
    }
}

/// Print one line per kernel and `N/M kernels passed`; an error unless all passed.
pub fn report(outcomes: &[Outcome]) -> Result<()> {
    eprintln!();
    for o in outcomes {
        eprintln!("{}", o.line());
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    eprintln!("{passed}/{} kernels passed", outcomes.len());
    ensure!(passed == outcomes.len(), "{} of {} kernels failed the end-to-end suite", outcomes.len() - passed, outcomes.len());
    Ok(())
}

/// The e2e suite, built for the host (debug, as `cargo xtask test` builds it), ready to copy.
pub struct Suite {
    rsttrace: PathBuf,
    e2e: PathBuf,
    rststim: PathBuf,
}

impl Suite {
    pub fn build() -> Result<Suite> {
        cmd("cargo", &["build", "--package", "rsttrace", "--package", "rsttrace-tests", "--bin", "rsttrace", "--bin", "rststim"])?;
        let out = Command::new("cargo")
            .args(["test", "--package", "rsttrace-tests", "--test", "e2e", "--no-run", "--message-format=json"])
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run cargo test --no-run")?;
        ensure!(out.status.success(), "building the e2e test binary failed");
        let e2e = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| (v["target"]["name"] == "e2e").then(|| v["executable"].as_str().map(PathBuf::from)).flatten())
            .context("cargo did not name the e2e test binary")?;
        Ok(Suite { rsttrace: "target/debug/rsttrace".into(), e2e, rststim: "target/debug/rststim".into() })
    }
}

impl Suite {
    pub fn e2e(&self) -> &Path {
        &self.e2e
    }
}

/// Fetch, build and boot each kernel's guest in turn.
pub fn run_guests(kernels: &[Kernel], suite: &Suite) -> Result<Vec<Outcome>> {
    install_debian(&PACKAGES)?;
    let mut outcomes = Vec::new();
    for &kernel in kernels {
        let outcome = match prepare(kernel, suite) {
            Ok(guest) => boot_past_emulation_crashes(&guest),
            Err(e) => Outcome { kernel: kernel.name().into(), passed: false, detail: format!("guest not built: {e:#}") },
        };
        eprintln!("xtask: {}", outcome.line());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Boots after the first of a guest whose own kernel crashed outside BPF.
const REBOOTS_AFTER_A_PANIC: usize = 2;

/// Boot `guest`, and again (up to [`REBOOTS_AFTER_A_PANIC`] times) while its own kernel crashes
/// in code no BPF program ran in. Seen under TCG: an int3 left by live text patching, in
/// ip_forward as a test added a firewall, and at the tracepoints in inet_sk_state_store and
/// tcp_v4_destroy_sock as rsttrace attached while connections closed (up to two boots in a row
/// on 6.12). It says nothing of rsttrace; the line says why the guest booted again. A panic
/// with BPF in its trace is a failure at once.
fn boot_past_emulation_crashes(guest: &Guest) -> Outcome {
    let (first, mut panic) = boot(guest);
    let mut last = None;
    let mut crashes = Vec::new();
    while let Some(crash) = panic.take().filter(|_| crashes.len() < REBOOTS_AFTER_A_PANIC) {
        // Each crashed boot's console stays, beside the rerun's.
        let log = guest.log.with_extension(format!("panic{}.log", crashes.len() + 1));
        let _ = std::fs::rename(&guest.log, &log);
        eprintln!("xtask: {}: the guest kernel panicked outside BPF ({crash}; console in {}); booting it once more", guest.release, log.display());
        crashes.push(format!("{crash}; console in {}", log.display()));
        let (again, next) = boot(guest);
        last = Some(again);
        panic = next;
    }
    match last {
        None => first,
        // The last boot's outcome, with the first's failure where it failed too.
        Some(last) => {
            let outcome = last.or_first_failure(first);
            Outcome { detail: format!("{} (booted again after guest kernel panics outside BPF: {})", outcome.detail, crashes.join("; ")), ..outcome }
        }
    }
}

struct Guest {
    release: String,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    log: PathBuf,
}

/// Download (once) and unpack the kernel package, then build its initramfs around the suite.
fn prepare(kernel: Kernel, suite: &Suite) -> Result<Guest> {
    let cache = Path::new(CACHE);
    std::fs::create_dir_all(cache)?;
    let package = kernel_package(kernel)?;
    let root = cache.join(&package);
    if !root.join("boot").exists() {
        let debs = cache.join("debs");
        std::fs::create_dir_all(&debs)?;
        let download = || Command::new("apt-get").args(["-o", "APT::Sandbox::User=root", "download", &package]).current_dir(&debs).status();
        // Stale package lists name a kernel the archive has since dropped: refresh once.
        if !download().context("cannot run apt-get")?.success() {
            cmd("apt-get", &["update", "-q"])?;
            ensure!(download()?.success(), "apt-get download {package} failed");
        }
        let deb = std::fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{package}_"))))
            .context("downloaded package not found")?;
        cmd("dpkg", &["-x", &deb.to_string_lossy(), &root.to_string_lossy()])?;
    }
    let release = std::fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("kernel package without lib/modules")?;
    let mut archive = Archive::default();
    archive.file("/init", INIT.as_bytes(), 0o755);
    archive.file("/bin/busybox", &std::fs::read("/bin/busybox")?, 0o755);
    archive.symlink("/bin/sh", "busybox");
    for dir in ["/proc", "/sys", "/dev", "/etc", "/var/run"] {
        archive.dir(dir);
    }
    for (i, module) in module_files(&root, &release)?.iter().enumerate() {
        let name = module.file_name().unwrap().to_string_lossy();
        let bytes = if name.ends_with(".xz") {
            Command::new("xz").arg("-dc").arg(module).output().context("cannot run xz")?.stdout
        } else {
            std::fs::read(module)?
        };
        archive.file(&format!("/modules/{i:02}-{}.ko", name.split(".ko").next().unwrap()), &bytes, 0o644);
    }
    let programs = [
        (suite.rsttrace.clone(), "/suite/rsttrace".to_string()),
        (suite.rststim.clone(), "/suite/rststim".to_string()),
        (suite.e2e.clone(), "/suite/deps/e2e".to_string()),
        (which("ip")?, "/usr/local/bin/ip".to_string()),
        (which("nft")?, "/usr/local/bin/nft".to_string()),
        (which("ss")?, "/usr/local/bin/ss".to_string()),
    ];
    let mut libraries = std::collections::BTreeSet::new();
    for (host, guest) in &programs {
        archive.file(guest, &stripped(host)?, 0o755);
        libraries.extend(shared_libraries(host)?);
    }
    for lib in libraries {
        let path = lib.to_string_lossy().into_owned();
        archive.file(&path, &std::fs::read(&lib).with_context(|| path.clone())?, 0o755);
    }
    let initramfs = cache.join(format!("{release}.cpio"));
    std::fs::write(&initramfs, archive.finish())?;
    Ok(Guest {
        vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
        log: cache.join(format!("{release}.log")),
        initramfs,
        release,
    })
}

/// The exact package the series' meta-package points at today.
fn kernel_package(kernel: Kernel) -> Result<String> {
    let meta = kernel.meta_package();
    let deps = output("apt-cache", &["depends", meta]).with_context(|| format!("apt-cache knows no {meta}"))?;
    let prefix = format!("linux-image-{}", kernel.name());
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with(&prefix) && p.chars().nth(prefix.len()).is_some_and(|c| c == '.' || c == '-'))
        .map(str::to_string)
        .with_context(|| format!("{meta} does not depend on a {} kernel", kernel.name()))
}

/// The module files to load, dependencies first, each once.
fn module_files(root: &Path, release: &str) -> Result<Vec<PathBuf>> {
    let base = root.to_string_lossy();
    cmd("depmod", &["-b", &base, release])?;
    let mut files: Vec<PathBuf> = Vec::new();
    let required = MODULES.iter().map(|m| (m, true));
    for (module, required) in required.chain(OPTIONAL_MODULES.iter().map(|m| (m, false))) {
        let Some(deps) = output("modprobe", &["-d", &base, "-S", release, "--show-depends", module]) else {
            ensure!(!required, "kernel {release} has no module {module}");
            continue;
        };
        for path in deps.lines().filter_map(|l| l.strip_prefix("insmod ")).map(|l| PathBuf::from(l.trim())) {
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

fn which(program: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("{program} is not installed")
}

/// The binary without debug sections: the debug test binaries shrink to a fraction.
fn stripped(path: &Path) -> Result<Vec<u8>> {
    let copy = Path::new(CACHE).join("stripped");
    let out = Command::new("objcopy").arg("--strip-debug").arg(path).arg(&copy).output().context("cannot run objcopy")?;
    ensure!(out.status.success(), "objcopy {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    Ok(std::fs::read(&copy)?)
}

/// The dynamic loader and every shared library `path` links, by `ldd`.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let out = output("ldd", &[&path.to_string_lossy()]).with_context(|| format!("ldd {}", path.display()))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

/// Whether qemu can use KVM here; these machines' CPUs expose no virtualisation, so TCG.
fn kvm_usable() -> bool {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Path::new("/dev/kvm").exists() && flags.lines().any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")))
}

/// Boot the guest, relay its console, and read the suite's status from it.
/// For a guest kernel's oops (its console lines from `Oops:` or `BUG:` on) in which no BPF
/// program took part: its first line and the faulting function.
fn panic_outside_bpf(oops: &[String]) -> Option<String> {
    let first = oops.first()?;
    if oops.iter().any(|l| l.contains("bpf")) {
        return None;
    }
    let first = first.splitn(2, "] ").nth(1).unwrap_or(first).to_string();
    Some(match oops.iter().find_map(|l| l.split("RIP: 0010:").nth(1)) {
        Some(rip) => format!("{first} at {rip}"),
        None => first,
    })
}

/// Boot the guest and run the suite; with its outcome, where the guest's kernel panicked and
/// no BPF program took part in the oops, the oops's first line and faulting function.
fn boot(guest: &Guest) -> (Outcome, Option<String>) {
    let fail = |detail: String| Outcome { kernel: guest.release.clone(), passed: false, detail };
    let accel: &[&str] = if kvm_usable() { &["-accel", "kvm", "-cpu", "host"] } else { &["-accel", "tcg", "-cpu", "max"] };
    eprintln!("xtask: booting {} under qemu ({})", guest.release, accel[1]);
    let spawned = Command::new("qemu-system-x86_64")
        .args(accel)
        .args(["-m", "2048", "-smp", "2", "-nographic", "-no-reboot", "-kernel"])
        .arg(&guest.vmlinuz)
        .arg("-initrd")
        .arg(&guest.initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut qemu = match spawned {
        Ok(child) => child,
        Err(e) => return (fail(format!("cannot start qemu: {e}")), None),
    };
    let (tx, lines) = mpsc::channel();
    let console = qemu.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(console).split(b'\n').map_while(Result::ok) {
            let _ = tx.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string());
        }
    });
    let mut log = std::fs::File::create(&guest.log).ok();
    let started = Instant::now();
    let mut summary = String::new();
    let mut status = None;
    let mut begun = false;
    // After the status line only the power-off is left: do not wait the whole limit for it.
    let mut status_at: Option<Instant> = None;
    // The oops's lines, from `Oops:` on, and whether the kernel then panicked.
    let mut oops: Vec<String> = Vec::new();
    let mut panicked = false;
    while started.elapsed() < GUEST_LIMIT && status_at.is_none_or(|at| at.elapsed() < Duration::from_secs(30)) {
        match lines.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => {
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                eprintln!("  [{}] {line}", guest.release);
                begun |= line.contains(BEGIN);
                if line.starts_with("test result:") {
                    summary = line.clone();
                }
                if line.contains("Oops:") || line.contains("BUG:") || !oops.is_empty() {
                    oops.push(line.clone());
                }
                panicked |= line.contains("Kernel panic - not syncing");
                if let Some(code) = line.strip_prefix(STATUS) {
                    status = code.trim().parse::<i32>().ok();
                    status_at = Some(Instant::now());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let took = format!("{:.0} s", started.elapsed().as_secs_f64());
    let panic_outside_bpf = if panicked { panic_outside_bpf(&oops) } else { None };
    let outcome = match status {
        Some(0) => Outcome { kernel: guest.release.clone(), passed: true, detail: format!("{summary} ({took})") },
        Some(code) => fail(format!("suite exited {code}: {summary} ({took}; console in {})", guest.log.display())),
        None if !begun => fail(format!("the guest never started the suite ({took}; console in {})", guest.log.display())),
        None if panicked => fail(format!("the guest kernel panicked ({took}; console in {})", guest.log.display())),
        None => fail(format!("no result within {} min ({took}; console in {})", GUEST_LIMIT.as_secs() / 60, guest.log.display())),
    };
    (outcome, panic_outside_bpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_guest_oops_outside_bpf_is_named_and_one_in_bpf_is_not() {
        // As the 6.12 guest printed it under TCG.
        let outside = lines(
            "[  227.624370] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
             [  227.625807] RIP: 0010:ip_forward+0x4fe/0x600\n\
             [  227.627423] Call Trace:\n\
             [  227.627500]  ip_rcv+0x4e/0xe0\n\
             [  227.630706] Kernel panic - not syncing: Fatal exception in interrupt",
        );
        assert_eq!(panic_outside_bpf(&outside).as_deref(), Some("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI at ip_forward+0x4fe/0x600"));
        let inside = lines(
            "[  12.000000] BUG: unable to handle page fault for address: 0000000000000010\n\
             [  12.000100] RIP: 0010:bpf_prog_6deef7357e7b4530_tcp_send_reset+0x2a/0x1000\n\
             [  12.000200]  bpf_trace_run3+0x8c/0x110",
        );
        assert_eq!(panic_outside_bpf(&inside), None);
        assert_eq!(panic_outside_bpf(&[]), None);
    }
}
