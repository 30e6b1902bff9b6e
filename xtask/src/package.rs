//! `cargo xtask package`: a Debian package, built with dpkg-deb from a staged tree: the release
//! binary, the systemd unit, the docs, the Grafana dashboard and the Prometheus rules.
//!
//! The tree is staged as a Debian source tree would have it (`debian/rsttrace/`, with a
//! `debian/control` naming the package beside it) so that dpkg-shlibdeps can work out which
//! libc6 the binary needs, as it does for Debian's own packages.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context, Result};

use crate::{
    cmd, output,
    release::{self, fresh_dir, set_mode},
};

/// No public address exists for the project yet; `.invalid` can never be mistaken for one.
const MAINTAINER: &str = "rsttrace maintainers <maintainers@rsttrace.invalid>";
const SUMMARY: &str = "where every TCP reset on this host came from";
const DESCRIPTION: &str = "\
rsttrace watches the kernel's TCP tracepoints with eBPF and says, for every
reset on the host: sent or received, which process owned the socket, what the
connection was doing, and the cause. It prints a live table or JSON lines and
serves Prometheus metrics. A systemd unit (not enabled on install), a Grafana
dashboard and Prometheus alert rules come with it.";

/// Files of the workspace and where the package installs them (all mode 0644).
const FILES: [(&str, &str); 6] = [
    ("deploy/rsttrace.service", "lib/systemd/system/rsttrace.service"),
    ("README.md", "usr/share/doc/rsttrace/README.md"),
    ("docs/causes.md", "usr/share/doc/rsttrace/causes.md"),
    ("docs/correlate.md", "usr/share/doc/rsttrace/correlate.md"),
    ("deploy/grafana/rsttrace.json", "usr/share/rsttrace/grafana/rsttrace.json"),
    ("deploy/prometheus/rsttrace-rules.yml", "usr/share/rsttrace/prometheus/rsttrace-rules.yml"),
];

/// Maintainer scripts. They only tell a running systemd about the unit, stop the service before
/// its binary goes, and remove its logs on purge: enabling it is the administrator's call.
const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
";
const PRERM: &str = "#!/bin/sh
set -e
# A running rsttrace keeps its programs attached after its binary is gone: stop it first.
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop rsttrace.service || true
fi
";
const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
# The unit's LogsDirectory: its JSON lines.
if [ \"$1\" = purge ]; then
    rm -rf /var/log/rsttrace
fi
";

/// Build the package; returns the path of the .deb (`target/debian/rsttrace_VERSION_ARCH.deb`).
pub fn package() -> Result<PathBuf> {
    let workspace = release::workspace()?;
    let binary = release::build(None)?;
    let arch = output("dpkg", &["--print-architecture"]).context("cannot run dpkg --print-architecture")?.trim().to_string();
    let out_dir = workspace.target_dir.join("debian");
    let source = out_dir.join("source");
    fresh_dir(&source)?;
    let root = source.join("debian/rsttrace");

    stage(&root.join("usr/bin/rsttrace"), |dest| release::install_stripped(&binary, dest), 0o755)?;
    for (from, to) in FILES {
        stage(&root.join(to), |dest| std::fs::copy(from, dest).map(drop).with_context(|| format!("cannot copy {from}")), 0o644)?;
    }
    for (name, script) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        stage(&root.join("DEBIAN").join(name), |dest| Ok(std::fs::write(dest, script)?), 0o755)?;
    }
    // dpkg-shlibdeps reads the package list from debian/control of the source tree.
    std::fs::write(source.join("debian/control"), "Source: rsttrace\n\nPackage: rsttrace\nArchitecture: any\n")?;
    let depends = shared_library_depends(&source)?;
    let control = format!(
        "Package: rsttrace\nVersion: {}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\nInstalled-Size: {}\nDepends: {depends}\nSection: net\nPriority: optional\nDescription: {SUMMARY}\n{}\n",
        workspace.version,
        installed_kib(&root)?,
        DESCRIPTION.lines().map(|l| format!(" {l}")).collect::<Vec<_>>().join("\n"),
    );
    stage(&root.join("DEBIAN/control"), |dest| Ok(std::fs::write(dest, &control)?), 0o644)?;
    directories_0755(&root)?;

    let deb = out_dir.join(format!("rsttrace_{}_{arch}.deb", workspace.version));
    cmd("dpkg-deb", &["--root-owner-group", "--build", path_str(&root)?, path_str(&deb)?])?;
    Ok(deb)
}

/// Create `dest`'s directory, `write` the file, and give it `mode`.
fn stage(dest: &Path, write: impl FnOnce(&Path) -> Result<()>, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dest.parent().unwrap())?;
    write(dest)?;
    set_mode(dest, mode)
}

/// The `Depends` value dpkg-shlibdeps finds for the staged binary (e.g. `libc6 (>= 2.34)`).
fn shared_library_depends(source: &Path) -> Result<String> {
    let out = Command::new("dpkg-shlibdeps")
        .current_dir(source)
        .args(["-O", "-edebian/rsttrace/usr/bin/rsttrace"])
        .output()
        .context("cannot run dpkg-shlibdeps (dpkg-dev)")?;
    ensure!(out.status.success(), "dpkg-shlibdeps failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let depends = stdout.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")).context("dpkg-shlibdeps printed no shlibs:Depends")?;
    Ok(depends.trim().to_string())
}

/// The staged files' size in KiB, each rounded up: Installed-Size, the disk space apt says the
/// package takes.
fn installed_kib(dir: &Path) -> Result<u64> {
    let mut kib = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == "DEBIAN" {
            continue;
        }
        let meta = entry.metadata()?;
        kib += if meta.is_dir() { installed_kib(&entry.path())? } else { meta.len().div_ceil(1024) };
    }
    Ok(kib)
}

/// Every directory of the tree 0755, whatever the umask gave them.
fn directories_0755(dir: &Path) -> Result<()> {
    set_mode(dir, 0o755)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            directories_0755(&entry.path())?;
        }
    }
    Ok(())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}
