//! Which workload a socket belongs to: the cgroup v2 directory it was created in (the kernel side
//! ships its id), and what that path says of the systemd unit, the container and the pod.
//!
//! A cgroup v2 directory's inode number is the id the kernel reports for it, so an id is resolved
//! by walking the cgroup2 mount once and indexing every directory by inode; an id not found
//! triggers another walk, at most once a second, so a storm of resets from a new container costs
//! one walk. A cgroup that disappears keeps its last known name. A container's names (its pod's,
//! its own) come from its runtime's state (`runtime_names.rs`), read when its cgroup is indexed.
use crate::runtime_names::{ContainerNames, RuntimeState};
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Where a socket's cgroup sits and what it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// The cgroup v2 path, from the hierarchy's root (`/system.slice/nginx.service`).
    pub cgroup: String,
    /// The innermost systemd service or scope (`nginx.service`, `docker-<id>.scope`).
    pub unit: Option<String>,
    /// The container's id (64 hex digits) under docker, containerd/CRI, cri-o or podman.
    pub container_id: Option<String>,
    /// The Kubernetes pod's uid, from a kubepods cgroup.
    pub pod_uid: Option<String>,
    /// What the container runtime calls the container and its pod, where its state says.
    pub names: ContainerNames,
}

impl Workload {
    /// What a cgroup path says, in the layouts of systemd, docker, containerd (CRI), cri-o,
    /// podman and the kubelet (systemd and cgroupfs drivers).
    pub fn from_path(cgroup: &str) -> Self {
        let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
        let unit = parts.iter().rev().find(|p| p.ends_with(".service") || p.ends_with(".scope")).map(|p| p.to_string());
        let container_id = parts.iter().rev().find_map(|p| container_id(p));
        let pod_uid = parts.iter().find_map(|p| pod_uid(p));
        Self { cgroup: cgroup.to_string(), unit, container_id, pod_uid, names: ContainerNames::default() }
    }

    /// A short name for the table: the container (`pod/container` in a pod, else its name, else
    /// its id's first 12 digits), else the unit, else the cgroup's last part.
    pub fn label(&self) -> String {
        match (&self.names.pod, &self.names.container, &self.container_id) {
            (Some(pod), Some(container), _) => return format!("{pod}/{container}"),
            (None, Some(container), _) => return container.clone(),
            (_, None, Some(id)) => return id[..12].to_string(),
            _ => {}
        }
        if let Some(unit) = &self.unit {
            return unit.clone();
        }
        self.cgroup.rsplit('/').find(|p| !p.is_empty()).unwrap_or("/").to_string()
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`
/// (systemd driver), or a bare `<id>` directory (cgroupfs driver: `/docker/<id>`,
/// `/kubepods/burstable/pod<uid>/<id>`).
fn container_id(part: &str) -> Option<String> {
    if is_container_id(part) {
        return Some(part.to_string());
    }
    let scope = part.strip_suffix(".scope")?;
    let id = scope.rsplit('-').next()?;
    is_container_id(id).then(|| id.to_string())
}

/// `kubepods-burstable-pod<uid with _>.slice` (systemd driver) or `pod<uid>` (cgroupfs).
fn pod_uid(part: &str) -> Option<String> {
    let name = part.strip_suffix(".slice").unwrap_or(part);
    let at = name.rfind("pod")?;
    if at > 0 && !name[..at].ends_with('-') {
        return None;
    }
    let uid = name[at + 3..].replace('_', "-");
    let looks_like_uid = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    looks_like_uid.then_some(uid)
}

/// How often an unknown cgroup id may send the resolver walking the hierarchy again...
const REWALK_EVERY: Duration = Duration::from_secs(1);
/// ...and how often one above every id the last walk found: cgroup ids only grow, so that one
/// was made since (a container started a moment ago), not removed before it could be seen.
const REWALK_NEWER_EVERY: Duration = Duration::from_millis(100);

/// cgroup id → workload, cached.
pub struct Workloads {
    root: Option<PathBuf>,
    runtimes: RuntimeState,
    known: HashMap<u64, Arc<Workload>>,
    walked: Option<Instant>,
    /// The highest id the last walk found.
    highest: u64,
}

impl Workloads {
    /// Over the cgroup2 hierarchy mounted on this host (none: every id stays unresolved), with
    /// the container runtimes' state under `runtime_root`.
    pub fn new(runtime_root: PathBuf) -> Self {
        Self::at(cgroup2_mount(), RuntimeState::at(runtime_root))
    }

    pub fn at(root: Option<PathBuf>, runtimes: RuntimeState) -> Self {
        Self { root, runtimes, known: HashMap::new(), walked: None, highest: 0 }
    }

    /// The workload of cgroup `id`; `None` for 0 (unknown) or an id the hierarchy does not hold.
    pub fn resolve(&mut self, id: u64) -> Option<Arc<Workload>> {
        if id == 0 {
            return None;
        }
        if let Some(w) = self.known.get(&id) {
            return Some(w.clone());
        }
        let wait = if id > self.highest { REWALK_NEWER_EVERY } else { REWALK_EVERY };
        if self.walked.is_some_and(|at| at.elapsed() < wait) {
            return None;
        }
        self.walk();
        self.known.get(&id).cloned()
    }

    /// Index every directory of the hierarchy by inode; entries of removed cgroups stay.
    fn walk(&mut self) {
        self.walked = Some(Instant::now());
        let Some(root) = self.root.clone() else { return };
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            if let Ok(meta) = std::fs::metadata(&dir) {
                if !self.known.contains_key(&meta.ino()) {
                    let mut workload = Workload::from_path(&relative(&root, &dir));
                    if let Some(id) = &workload.container_id {
                        workload.names = self.runtimes.names(id);
                    }
                    self.known.insert(meta.ino(), Arc::new(workload));
                }
                self.highest = self.highest.max(meta.ino());
            }
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
}


fn relative(root: &Path, dir: &Path) -> String {
    match dir.strip_prefix(root) {
        Ok(rest) if rest.as_os_str().is_empty() => "/".to_string(),
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => dir.display().to_string(),
    }
}

/// The cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c01db0b339c6d1a7b3c6a25fd6c8f2bb79b6f55d0c4d0cd77b0a1b7c2e6a1f9";
    const POD: &str = "0b3a2f1e-5c7d-4e2a-9b1c-6d8e7f0a1b2c";

    #[test]
    fn paths_name_their_unit_container_and_pod() {
        let w = Workload::from_path("/system.slice/nginx.service");
        assert_eq!((w.unit.as_deref(), w.container_id.as_deref(), w.pod_uid.as_deref()), (Some("nginx.service"), None, None));
        assert_eq!(w.label(), "nginx.service");
        for (path, unit) in [
            (format!("/system.slice/docker-{ID}.scope"), Some(format!("docker-{ID}.scope"))),
            (format!("/docker/{ID}"), None),
            (format!("/machine.slice/libpod-{ID}.scope"), Some(format!("libpod-{ID}.scope"))),
            (format!("/system.slice/crio-{ID}.scope"), Some(format!("crio-{ID}.scope"))),
        ] {
            let w = Workload::from_path(&path);
            assert_eq!((w.container_id.as_deref(), w.unit.clone(), w.pod_uid.as_deref()), (Some(ID), unit, None), "{path}");
            assert_eq!(w.label(), &ID[..12]);
        }
        let pod_slice = POD.replace('-', "_");
        for path in [
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_slice}.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/besteffort/pod{POD}/{ID}"),
            format!("/kubepods.slice/kubepods-pod{pod_slice}.slice/crio-{ID}.scope"),
        ] {
            let w = Workload::from_path(&path);
            assert_eq!((w.container_id.as_deref(), w.pod_uid.as_deref()), (Some(ID), Some(POD)), "{path}");
        }
        // A user session, the root, and names that only look alike.
        assert_eq!(Workload::from_path("/user.slice/user-1000.slice/session-3.scope").unit.as_deref(), Some("session-3.scope"));
        assert_eq!(Workload::from_path("/").label(), "/");
        let w = Workload::from_path("/system.slice/ipod-sync.service/docker-1234.scope");
        assert_eq!((w.container_id, w.pod_uid), (None, None));
    }

    /// The table names a container by what its runtime calls it, where that is known.
    #[test]
    fn labels_prefer_the_runtimes_names() {
        let mut w = Workload::from_path(&format!("/system.slice/docker-{ID}.scope"));
        w.names.container = Some("checkout".into());
        assert_eq!(w.label(), "checkout");
        w.names.pod = Some("shop-7c9d".into());
        assert_eq!(w.label(), "shop-7c9d/checkout");
    }

    #[test]
    fn ids_resolve_by_inode_and_unknown_ones_rewalk_at_most_once_a_second_newer_ones_sooner() {
        let root = std::env::temp_dir().join(format!("rsttrace-workloads-{}", std::process::id()));
        let unit = root.join("system.slice/app.service");
        std::fs::create_dir_all(&unit).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut w = Workloads::at(Some(root.clone()), RuntimeState::at(root.join("no-runtime")));
        assert_eq!(w.resolve(ino(&unit)).unwrap().cgroup, "/system.slice/app.service");
        assert_eq!(w.resolve(0), None);
        // A cgroup made after the walk is found only once the resolver may walk again: at once
        // for an id above the walk's highest (cgroupfs ids grow; this test's file system's need
        // not, so the highest is set by hand), after a second for one below it.
        let late = root.join("system.slice/late.service");
        std::fs::create_dir(&late).unwrap();
        w.highest = u64::MAX;
        assert_eq!(w.resolve(ino(&late)), None);
        w.walked = Some(Instant::now() - REWALK_EVERY);
        assert_eq!(w.resolve(ino(&late)).unwrap().unit.as_deref(), Some("late.service"));
        let newer = root.join("system.slice/newer.service");
        std::fs::create_dir(&newer).unwrap();
        w.highest = 0;
        assert_eq!(w.resolve(ino(&newer)), None, "a walk just ran");
        w.walked = Some(Instant::now() - REWALK_NEWER_EVERY);
        assert_eq!(w.resolve(ino(&newer)).unwrap().unit.as_deref(), Some("newer.service"));
        // Gone from the hierarchy, still named.
        let gone = ino(&unit);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(w.resolve(gone).unwrap().unit.as_deref(), Some("app.service"));
    }
}
