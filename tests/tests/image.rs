//! The container image as a registry would receive it: `cargo xtask image` builds it, `podman
//! save` exports it as an OCI archive, and the test reads the archive itself: one layer with
//! the rsttrace binary alone, an entrypoint that runs it, a static binary, and `--version` from
//! the binary taken out of the layer (`podman run` is refused on these machines, so the binary
//! runs outside a container). Also: the DaemonSet names the image the task builds.
use std::path::{Path, PathBuf};

use rsttrace_tests::{elf, require_root, run, temp_dir::TempDir, workspace_root, xtask};
use serde_json::Value;

/// The workspace's version, which rsttrace's Cargo.toml takes.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const IMAGE: &str = "localhost/rsttrace";
const BINARY: &str = "usr/bin/rsttrace";

fn stdout(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// An unpacked OCI image layout: content-addressed blobs named by the index.
struct OciLayout(PathBuf);

impl OciLayout {
    fn blob(&self, descriptor: &Value) -> PathBuf {
        let digest = descriptor["digest"].as_str().unwrap_or_else(|| panic!("no digest in {descriptor}"));
        self.0.join("blobs").join(digest.replace(':', "/"))
    }
}

#[test]
fn image_holds_one_static_binary_that_runs() {
    require_root();
    let name = xtask("image");
    assert_eq!(name, format!("{IMAGE}:{VERSION}"));
    let id = |reference: &str| stdout("podman", &["image", "inspect", "--format", "{{.Id}}", reference]);
    assert_eq!(id(&name), id(&format!("{IMAGE}:latest")), ":latest is the same image");

    let dir = TempDir::new("image");
    let archive = dir.join("image.tar");
    run("podman", &["save", "--format", "oci-archive", "--output", archive.to_str().unwrap(), &name]);
    let layout = OciLayout(dir.join("oci"));
    std::fs::create_dir(&layout.0).unwrap();
    run("tar", &["-xf", archive.to_str().unwrap(), "-C", layout.0.to_str().unwrap()]);
    let index = json(&layout.0.join("index.json"));
    let manifest = json(&layout.blob(&index["manifests"][0]));
    let config = json(&layout.blob(&manifest["config"]));
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")), "{config}");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!([format!("/{BINARY}")]), "{config}");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "FROM scratch and one COPY: {manifest}");

    let layer = layout.blob(&layers[0]);
    let listing = stdout("tar", &["-tf", layer.to_str().unwrap()]);
    let files: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    assert_eq!(files, [BINARY], "the layer holds the binary and nothing else");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    run("tar", &["-xf", layer.to_str().unwrap(), "-C", rootfs.to_str().unwrap()]);
    let binary = rootfs.join(BINARY);
    let linking = elf::linking(&std::fs::read(&binary).unwrap()).unwrap();
    assert!(linking.is_static(), "a scratch image has no libc for it: {linking:?}");
    assert_eq!(stdout(binary.to_str().unwrap(), &["--version"]).trim(), format!("rsttrace {VERSION}"));
}

#[test]
fn daemonset_runs_the_image_the_task_builds() {
    let manifest = std::fs::read_to_string(workspace_root().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    let images: Vec<&str> = manifest.lines().filter_map(|l| l.trim().strip_prefix("image: ")).map(|i| i.split_whitespace().next().unwrap_or("")).collect();
    assert_eq!(images, [format!("{IMAGE}:{VERSION}")], "deploy/kubernetes/daemonset.yaml");
}
