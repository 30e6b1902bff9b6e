//! The Debian package as an administrator meets it: `cargo xtask package` builds it, dpkg
//! installs it, the installed binary runs, the installed unit passes `systemd-analyze verify`,
//! and a purge leaves nothing behind. Installs on this host: root, and no rsttrace package
//! installed beforehand (the test would remove it), or it fails saying so.
use std::{collections::HashMap, path::Path, process::Command};

use rsttrace_tests::{require_root, run, xtask};

const UNIT: &str = "/lib/systemd/system/rsttrace.service";
/// The unit's LogsDirectory, which a purge removes.
const LOGS: &str = "/var/log/rsttrace";
/// What the package installs.
const FILES: [&str; 7] = [
    "/usr/bin/rsttrace",
    UNIT,
    "/usr/share/doc/rsttrace/README.md",
    "/usr/share/doc/rsttrace/causes.md",
    "/usr/share/doc/rsttrace/correlate.md",
    "/usr/share/rsttrace/grafana/rsttrace.json",
    "/usr/share/rsttrace/prometheus/rsttrace-rules.yml",
];
/// Directories only the package creates: gone after a purge.
const OWN_DIRS: [&str; 2] = ["/usr/share/doc/rsttrace", "/usr/share/rsttrace"];
/// The workspace's version, which rsttrace's Cargo.toml takes.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// dpkg's status line for rsttrace (`install ok installed`), or None when dpkg knows none.
fn package_status() -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", "rsttrace"]).output().expect("dpkg-query");
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !status.is_empty()).then_some(status)
}

/// Purges the package when the test ends, also when it fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "rsttrace"]).output();
    }
}

fn stdout(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The control fields of a .deb.
fn control_fields(deb: &str) -> HashMap<String, String> {
    stdout("dpkg-deb", &["--field", deb])
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// A dotted version as numbers, for comparing (`2.34` → [2, 34]).
fn numbers(version: &str) -> Vec<u32> {
    version.split('.').map(|n| n.parse().unwrap_or_else(|_| panic!("not a dotted version: {version}"))).collect()
}

/// The newest GLIBC_x.y symbol version `binary` references.
fn glibc_needed(binary: &str) -> Vec<u32> {
    stdout("objdump", &["-p", binary])
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(numbers)
        .max()
        .expect("the binary references no GLIBC_ version")
}

#[test]
fn deb_installs_runs_verifies_and_purges_without_a_trace() {
    require_root();
    let before = package_status();
    assert!(before.as_deref().is_none_or(|s| s.ends_with("not-installed")), "an rsttrace package is on this host already ({before:?}): this test would remove it");
    assert!(!Path::new(LOGS).exists(), "{LOGS} exists: the purge this test makes would delete it");

    let deb = xtask("package");
    let arch = stdout("dpkg", &["--print-architecture"]).trim().to_string();
    let name = Path::new(&deb).file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name, format!("rsttrace_{VERSION}_{arch}.deb"));
    let fields = control_fields(&deb);
    assert_eq!(fields["Package"], "rsttrace");
    assert_eq!(fields["Version"], VERSION);
    assert_eq!(fields["Architecture"], arch);
    assert!(fields["Maintainer"].contains('<') && fields["Maintainer"].ends_with('>'), "{fields:?}");
    assert!(fields["Description"].len() > 10, "{fields:?}");
    let libc = fields["Depends"]
        .split(", ")
        .find_map(|d| d.strip_prefix("libc6 (>= ").and_then(|v| v.strip_suffix(')')))
        .unwrap_or_else(|| panic!("Depends names no libc6 version: {}", fields["Depends"]));

    let _installed = Installed;
    run("dpkg", &["-i", &deb]);
    assert_eq!(package_status().as_deref(), Some("install ok installed"));
    for file in FILES {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    assert_eq!(stdout("/usr/bin/rsttrace", &["--version"]).trim(), format!("rsttrace {VERSION}"));
    let needed = glibc_needed("/usr/bin/rsttrace");
    assert!(numbers(libc) >= needed, "Depends: libc6 (>= {libc}), but the binary needs GLIBC_{needed:?}");

    let verify = Command::new("systemd-analyze").args(["verify", UNIT]).output().expect("systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success(), "systemd-analyze verify {UNIT}:\n{said}");
    let about_the_unit: Vec<&str> = said.lines().filter(|l| l.contains("rsttrace")).collect();
    assert!(about_the_unit.is_empty(), "systemd-analyze verify warns about the unit:\n{}", about_the_unit.join("\n"));

    // What the service would have written: a purge removes it with the package.
    std::fs::create_dir_all(LOGS).unwrap();
    std::fs::write(format!("{LOGS}/resets.json"), "{}\n").unwrap();
    run("dpkg", &["--purge", "rsttrace"]);
    assert_eq!(package_status().filter(|s| !s.ends_with("not-installed")), None, "dpkg still knows the package after the purge");
    for path in FILES.iter().chain(&OWN_DIRS).chain(&[LOGS]) {
        assert!(!Path::new(path).exists(), "{path} is still there after the purge");
    }
}
