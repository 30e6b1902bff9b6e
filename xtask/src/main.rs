//! Project tasks: `setup` installs what a fresh machine lacks, `run` builds and starts rsttrace,
//! `test` runs every test, `package` and `image` build the .deb and the container image. Each
//! runs `setup` first; it takes seconds when nothing is missing.
use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod cpio;
mod image;
mod netns;
mod package;
mod probe;
mod release;
mod soak;
mod vm;

/// The nightly toolchain that compiles the eBPF crate (preinstalled on this project's machines).
const NIGHTLY: &str = "nightly";
/// bpf-linker loads the nightly's own libLLVM; 0.10.0 (feature rust-llvm-22) matches LLVM 22.
const BPF_LINKER: &str = "0.10.0";
const LLVM_MAJOR: &str = "22";
const CARGO_FUZZ: &str = "0.13.2";
/// The fuzz targets (rsttrace/fuzz): arbitrary bytes must never panic the parsers.
const FUZZ_TARGETS: [&str; 4] = ["tracefs_format", "decode_event", "correlate_files", "kernel_folds"];
/// Seconds per fuzz target in `cargo xtask test`; `cargo xtask fuzz` runs longer.
const FUZZ_SECONDS_IN_TEST: u32 = 20;
/// Debian packages the tasks and tests use. bpftool: checking that no program is left attached;
/// prometheus, with promtool: the fleet test runs the dashboard's and the rules' queries;
/// dpkg-dev (dpkg-shlibdeps) and binutils (strip, objdump): the package; systemd
/// (systemd-analyze): checking the installed unit; podman: the image.
const DEBIAN_PACKAGES: [&str; 8] = ["iproute2", "nftables", "bpftool", "prometheus", "dpkg-dev", "binutils", "systemd", "podman"];

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly rust-src component, bpf-linker and the Debian packages.
    Setup,
    /// Build in release mode and run rsttrace live (root); arguments go to rsttrace.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build and run every test: unit tests, the end-to-end suites against this kernel, the
    /// fleet view against a real Prometheus, the package and the image (root), then a short
    /// fuzzing run of each fuzz target and the kernel matrix.
    Test,
    /// Measure rsttrace's cost on a host whose every core is busy, side by side with no tracer,
    /// empty programs on its hooks and the bpftrace one-liner (root); writes bench/results.md.
    /// Not part of the test run.
    Bench {
        /// Every part once and briefly (a few minutes), for working on the bench; writes
        /// target/bench-short.md and leaves bench/results.md alone.
        #[arg(long)]
        short: bool,
    },
    /// Run a mix of reset scenarios under rsttrace for N minutes and check that its RSS is flat.
    Soak {
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
    /// Run the end-to-end suite on Debian's 6.1 and 6.12 kernels under qemu (root), and on this
    /// host's kernel when `--kernel all`; prints one line per kernel and `N/M kernels passed`.
    VmTest {
        #[arg(long, default_value = "all", value_parser = ["6.1", "6.12", "all"])]
        kernel: String,
    },
    /// Fuzz the format parser and the event decoder for longer.
    Fuzz {
        #[arg(long, default_value_t = 300)]
        seconds: u32,
    },
    /// Build the Debian package (release binary, systemd unit, docs, dashboard, alert rules);
    /// prints the .deb's path (target/debian/rsttrace_VERSION_ARCH.deb).
    Package,
    /// Build the container image (static musl binary, FROM scratch) with podman, tagged
    /// localhost/rsttrace:VERSION and :latest; prints the versioned name.
    Image,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    std::env::set_current_dir(workspace_root()).context("cannot enter the workspace")?;
    setup()?;
    match cli.task {
        Task::Setup => Ok(()),
        Task::Run { args } => {
            cmd("cargo", &["build", "--release", "--package", "rsttrace"])?;
            let status = Command::new("target/release/rsttrace").args(&args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test => test(),
        Task::Fuzz { seconds } => fuzz(seconds),
        Task::Soak { minutes } => soak::soak(minutes),
        Task::Bench { short } => bench::bench(if short { bench::Plan::SHORT } else { bench::Plan::FULL }),
        Task::VmTest { kernel } => vm_test(&kernel),
        Task::Package => built(&package::package()?.display()),
        Task::Image => built(&image::image()?),
    }
}

/// Name what was built on stdout, alone, for scripts (and the tests) to pick up; the logs go to
/// stderr.
fn built(what: &dyn std::fmt::Display) -> Result<()> {
    println!("{what}");
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Run a step; what it prints goes to stderr, so that stdout carries only what a task built.
pub(crate) fn cmd(program: &str, args: &[&str]) -> Result<()> {
    cmd_env(program, args, &[])
}

/// `cmd`, with these environment variables set.
fn cmd_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("xtask: {}{program} {}", shown.concat(), args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub(crate) fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn setup() -> Result<()> {
    let version = output("rustc", &[&format!("+{NIGHTLY}"), "-vV"]).with_context(|| {
        format!("the `{NIGHTLY}` Rust toolchain is missing (these machines ship it; install one with LLVM {LLVM_MAJOR}: `rustup toolchain install nightly-2026-05-20`)")
    })?;
    if !version.lines().any(|l| l.starts_with(&format!("LLVM version: {LLVM_MAJOR}."))) {
        bail!("`{NIGHTLY}` does not use LLVM {LLVM_MAJOR}, which bpf-linker {BPF_LINKER} needs:\n{version}");
    }
    let components = output("rustup", &["component", "list", "--installed", "--toolchain", NIGHTLY]).unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        cmd("rustup", &["component", "add", "rust-src", "--toolchain", NIGHTLY])?;
    }
    let fuzz = output("cargo", &["fuzz", "--version"]).unwrap_or_default();
    if !fuzz.contains(CARGO_FUZZ) {
        cmd("cargo", &["install", &format!("cargo-fuzz@{CARGO_FUZZ}"), "--locked", "--force"])?;
    }
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets.lines().any(|t| t.trim() == image::STATIC_TARGET) {
        cmd("rustup", &["target", "add", image::STATIC_TARGET])?;
    }
    let linker = output("bpf-linker", &["--version"]).unwrap_or_default();
    if !linker.contains(BPF_LINKER) {
        cmd("cargo", &[&format!("+{NIGHTLY}"), "install", &format!("bpf-linker@{BPF_LINKER}"), "--locked", "--force"])?;
    }
    install_debian(&DEBIAN_PACKAGES)
}

/// Install the Debian packages that are not installed yet (nothing to do: no apt at all).
pub(crate) fn install_debian(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !output("dpkg-query", &["-W", "-f=${Status}", p]).is_some_and(|s| s.contains("install ok installed")))
        .collect();
    if !missing.is_empty() {
        cmd("apt-get", &["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        let status = Command::new("apt-get").args(&args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
        if !status.success() {
            bail!("installing Debian packages {missing:?} failed");
        }
    }
    Ok(())
}

fn test() -> Result<()> {
    require_root("cargo xtask test")?;
    cmd("cargo", &["build", "--package", "rsttrace"])?;
    cmd("cargo", &["test", "--", "--test-threads=1"])?;
    // The suite above ran the BTF-typed programs (every kernel here has BTF); once more with the
    // classic tracepoints that replace them on kernels without.
    cmd_env("cargo", &["test", "--package", "rsttrace-tests", "--test", "e2e", "--", "--test-threads=1"], &[("RSTTRACE_HOOKS", "classic")])?;
    fuzz(FUZZ_SECONDS_IN_TEST)?;
    // The host's run above is the matrix's third kernel.
    let host = vm::Outcome { kernel: host_kernel(), passed: true, detail: "every suite, natively".into() };
    let mut outcomes = vm::run_guests(&vm::Kernel::ALL, &vm::Suite::build()?)?;
    outcomes.push(host);
    vm::report(&outcomes)
}

fn vm_test(which: &str) -> Result<()> {
    require_root("cargo xtask vm-test")?;
    let suite = vm::Suite::build()?;
    let kernels: Vec<vm::Kernel> = vm::Kernel::ALL.into_iter().filter(|k| which == "all" || k.name() == which).collect();
    let mut outcomes = vm::run_guests(&kernels, &suite)?;
    if which == "all" {
        let status = Command::new(suite.e2e()).arg("--test-threads=1").status().context("cannot run the e2e suite")?;
        let detail = if status.success() { "e2e suite, natively".to_string() } else { format!("e2e suite failed natively ({status})") };
        outcomes.push(vm::Outcome { kernel: host_kernel(), passed: status.success(), detail });
    }
    vm::report(&outcomes)
}

fn host_kernel() -> String {
    output("uname", &["-r"]).map(|r| r.trim().to_string()).unwrap_or_else(|| "host".into())
}

fn require_root(task: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{task} loads BPF programs and creates network namespaces: run it as root");
    }
    Ok(())
}

fn fuzz(seconds: u32) -> Result<()> {
    let limit = format!("-max_total_time={seconds}");
    for target in FUZZ_TARGETS {
        // The target's corpus first (libFuzzer adds to it), then its committed seeds, if any: a
        // fresh checkout starts from real inputs, not from nothing.
        let corpus = format!("fuzz/corpus/{target}");
        std::fs::create_dir_all(Path::new("rsttrace").join(&corpus))?;
        let seeds = format!("fuzz/seeds/{target}");
        let mut dirs = vec![corpus];
        if Path::new("rsttrace").join(&seeds).is_dir() {
            dirs.push(seeds);
        }
        let status = Command::new("cargo")
            .current_dir("rsttrace")
            .args([&format!("+{NIGHTLY}"), "fuzz", "run", target])
            .args(&dirs)
            .args(["--", &limit])
            .status()
            .context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {target} found a crash (see rsttrace/fuzz/artifacts/{target})");
        }
        eprintln!("xtask: fuzz target {target}: no crash in {seconds}s");
    }
    Ok(())
}


