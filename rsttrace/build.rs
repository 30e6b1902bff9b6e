//! Compiles the kernel programs (`rsttrace-ebpf`) for the BPF target and hands the object to
//! `src/loader.rs`, which embeds it. Needs the nightly toolchain with `rust-src` and
//! `bpf-linker`: `cargo xtask setup` installs both.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    for dir in ["rsttrace-ebpf/src", "rsttrace-common/src"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("rsttrace-ebpf/Cargo.toml").display());
    // A separate target directory: the outer cargo holds the lock on the main one.
    let target_dir = workspace.join("target/ebpf");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(&workspace)
        .args(["+nightly", "build", "--release", "--package", "rsttrace-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir);
    // Do not leak the host build's compiler settings into the BPF build.
    for var in [
        "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "CARGO_MAKEFLAGS",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("cannot run cargo for the eBPF build");
    if !status.success() {
        panic!(
            "building rsttrace-ebpf failed ({status}); run `cargo xtask setup` to install the \
             nightly rust-src component and bpf-linker"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/rsttrace-ebpf");
    println!("cargo:rustc-env=RSTTRACE_EBPF_OBJECT={}", object.display());
}
