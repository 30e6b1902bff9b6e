//! The names a container runtime gives a container, read from the state it keeps on the host for
//! every running container, never from its API (no socket, no credentials, nothing to hang on):
//!
//! - containerd, Kubernetes' usual runtime: the OCI bundle of each task,
//!   `/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`, whose
//!   annotations its CRI plugin fills with the pod's name and namespace and the container's name
//!   (`io.kubernetes.cri.sandbox-name`, `…sandbox-namespace`, `…container-name`);
//! - CRI-O: `/run/containers/storage/overlay-containers/<id>/userdata/config.json`, whose
//!   annotations carry the kubelet's labels (`io.kubernetes.pod.name`, `…pod.namespace`,
//!   `…container.name`), also inside its `io.kubernetes.cri-o.Labels` annotation;
//! - Docker: `/var/lib/docker/containers/<id>/config.v2.json`, its `Name` (and, under
//!   cri-dockerd, the same kubelet labels in `Config.Labels`).
//!
//! A container none of them knows (podman keeps its names in a database; a container already
//! gone) has no names: the report's fields are null and nothing else changes. Looked up once per
//! container, when its cgroup is first resolved.
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What the runtime calls a container; each `None` when it does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerNames {
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub container: Option<String>,
}

/// Annotation or label keys, containerd's CRI plugin's first, then the kubelet's own labels.
const POD: [&str; 2] = ["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
const POD_NAMESPACE: [&str; 2] = ["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"];
const CONTAINER: [&str; 2] = ["io.kubernetes.cri.container-name", "io.kubernetes.container.name"];

/// Where containerd keeps its runtime v2 task bundles, one directory per namespace.
const CONTAINERD_TASKS: &str = "run/containerd/io.containerd.runtime.v2.task";
const CRIO_CONTAINERS: &str = "run/containers/storage/overlay-containers";
const DOCKER_CONTAINERS: &str = "var/lib/docker/containers";

/// The runtimes' state under a root directory (`/` on a host; a container mounting the host's
/// directories elsewhere, or a test, names another).
pub struct RuntimeState {
    root: PathBuf,
}

impl RuntimeState {
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The names of container `id` (64 hex digits), from whichever runtime keeps it.
    /// Each runtime's state is asked in turn until one names it: Docker runs its containers
    /// through containerd (namespace `moby`), whose bundle then exists without names.
    pub fn names(&self, id: &str) -> ContainerNames {
        let bundles = [self.containerd_bundle(id), self.read_json(&self.root.join(CRIO_CONTAINERS).join(id).join("userdata/config.json"))];
        for spec in bundles.iter().flatten() {
            let names = from_annotations(&spec["annotations"]);
            if names != ContainerNames::default() {
                return names;
            }
        }
        if let Some(config) = self.read_json(&self.root.join(DOCKER_CONTAINERS).join(id).join("config.v2.json")) {
            let mut names = from_annotations(&config["Config"]["Labels"]);
            if names.container.is_none() {
                names.container = config["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty());
            }
            return names;
        }
        ContainerNames::default()
    }

    /// The task's OCI spec in whichever containerd namespace holds it (`k8s.io`, `moby`, …).
    fn containerd_bundle(&self, id: &str) -> Option<Value> {
        let namespaces = std::fs::read_dir(self.root.join(CONTAINERD_TASKS)).ok()?;
        namespaces.flatten().find_map(|ns| self.read_json(&ns.path().join(id).join("config.json")))
    }

    fn read_json(&self, path: &Path) -> Option<Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// The names in an annotation (or label) map; CRI-O's labels also come as one JSON annotation.
fn from_annotations(map: &Value) -> ContainerNames {
    let crio_labels: Option<Value> = map["io.kubernetes.cri-o.Labels"].as_str().and_then(|s| serde_json::from_str(s).ok());
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| map[*k].as_str().or_else(|| crio_labels.as_ref().and_then(|l| l[*k].as_str())))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    ContainerNames { pod: get(&POD), pod_namespace: get(&POD_NAMESPACE), container: get(&CONTAINER) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn write(root: &Path, relative: &str, body: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rsttrace-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn names(pod: &str, namespace: &str, container: &str) -> ContainerNames {
        ContainerNames { pod: Some(pod.into()), pod_namespace: Some(namespace.into()), container: Some(container.into()) }
    }

    #[test]
    fn containerd_cri_annotations_name_the_pod_and_container() {
        let root = scratch("containerd");
        write(
            &root,
            &format!("{CONTAINERD_TASKS}/k8s.io/{ID}/config.json"),
            r#"{"ociVersion":"1.1.0","annotations":{"io.kubernetes.cri.container-type":"container",
               "io.kubernetes.cri.sandbox-name":"web-7d4b9c-x2x9z","io.kubernetes.cri.sandbox-namespace":"shop",
               "io.kubernetes.cri.container-name":"nginx"}}"#,
        );
        assert_eq!(RuntimeState::at(root.clone()).names(ID), names("web-7d4b9c-x2x9z", "shop", "nginx"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn crio_labels_name_the_pod_and_container_top_level_or_in_its_labels_annotation() {
        let root = scratch("crio");
        let labels = r#"{\"io.kubernetes.pod.name\":\"api-0\",\"io.kubernetes.pod.namespace\":\"prod\",\"io.kubernetes.container.name\":\"server\"}"#;
        write(
            &root,
            &format!("{CRIO_CONTAINERS}/{ID}/userdata/config.json"),
            &format!(r#"{{"annotations":{{"io.kubernetes.pod.name":"api-0","io.kubernetes.cri-o.Labels":"{labels}"}}}}"#),
        );
        assert_eq!(RuntimeState::at(root.clone()).names(ID), names("api-0", "prod", "server"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn docker_names_the_container_and_a_pod_only_through_kubelet_labels() {
        let root = scratch("docker");
        write(&root, &format!("{DOCKER_CONTAINERS}/{ID}/config.v2.json"), r#"{"Name":"/shop-db","Config":{"Labels":{}}}"#);
        // Docker 20.10+ runs the container through containerd: a bundle without names.
        write(&root, &format!("{CONTAINERD_TASKS}/moby/{ID}/config.json"), r#"{"ociVersion":"1.1.0","annotations":{}}"#);
        let state = RuntimeState::at(root.clone());
        assert_eq!(state.names(ID), ContainerNames { container: Some("shop-db".into()), ..ContainerNames::default() });
        assert_eq!(state.names(&ID.replace('0', "f")), ContainerNames::default(), "a container no runtime keeps");
        write(&root, &format!("{DOCKER_CONTAINERS}/{ID}/config.v2.json"), "not json");
        assert_eq!(state.names(ID), ContainerNames::default(), "unreadable state is no names, not an error");
        std::fs::remove_dir_all(root).unwrap();
    }
}
