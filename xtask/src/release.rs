//! Release builds of rsttrace for the package and the image: the binary (the kernel programs
//! are embedded in it by rsttrace/build.rs), stripped into a staging tree, and the version and
//! target directory cargo reports.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{ensure, Context, Result};

/// What cargo says about the workspace.
pub struct Workspace {
    /// rsttrace's version, from its Cargo.toml.
    pub version: String,
    /// Where cargo builds (CARGO_TARGET_DIR when set).
    pub target_dir: PathBuf,
}

pub fn workspace() -> Result<Workspace> {
    let out = Command::new("cargo").args(["metadata", "--no-deps", "--format-version", "1"]).output().context("cannot run cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("cargo metadata: not JSON")?;
    let version = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "rsttrace")
        .and_then(|p| p["version"].as_str())
        .context("cargo metadata names no rsttrace package")?;
    let target_dir = meta["target_directory"].as_str().context("cargo metadata names no target directory")?;
    Ok(Workspace { version: version.to_string(), target_dir: target_dir.into() })
}

/// Build rsttrace in release mode, for `target` or else the host, and return the executable
/// cargo built.
pub fn build(target: Option<&str>) -> Result<PathBuf> {
    let mut args = vec!["build", "--release", "--package", "rsttrace", "--bin", "rsttrace", "--message-format=json-render-diagnostics"];
    args.extend(target.iter().flat_map(|t| ["--target", *t]));
    eprintln!("xtask: cargo {}", args.join(" "));
    let out = Command::new("cargo").args(&args).stderr(Stdio::inherit()).output().context("cannot run cargo build")?;
    ensure!(out.status.success(), "building rsttrace for {} failed", target.unwrap_or("the host"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "rsttrace")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo did not name the rsttrace executable")
}

/// Copy `binary` to `dest` without its symbol tables (a quarter smaller here; the embedded
/// kernel object is data and stays whole), mode 0755.
pub fn install_stripped(binary: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("strip")
        .args(["--strip-unneeded", "-o"])
        .arg(dest)
        .arg(binary)
        .status()
        .context("cannot run strip (binutils)")?;
    ensure!(status.success(), "strip {} failed", binary.display());
    set_mode(dest, 0o755)
}

/// Set `path`'s permission bits exactly, whatever the umask made of them.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// An empty directory at `path`, whatever an earlier run left there.
pub fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("cannot clear {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}
