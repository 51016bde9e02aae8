//! Finding the control-plane binaries: an explicit directory, or the versioned build cache
//! that `control-plane/build.sh` fills (building it when missing).

use std::path::{Path, PathBuf};

/// The pinned versions, embedded so a built devcluster looks in the right cache dirs.
const VERSIONS_ENV: &str = include_str!("../control-plane/versions.env");
/// The build script, known at compile time: devcluster runs from a checkout.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/control-plane/build.sh");

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error(
        "{0} not found in {1} (set --bin-dir / DEVCLUSTER_BIN_DIR to a directory holding etcd, kube-apiserver, kube-controller-manager and kube-scheduler)"
    )]
    Missing(String, PathBuf),
    #[error("running {script}: {source}")]
    Spawn {
        script: String,
        source: std::io::Error,
    },
    #[error("{script} failed ({status}); see its output above")]
    Build {
        script: String,
        status: std::process::ExitStatus,
    },
    #[error("versions.env lacks {0}")]
    Version(&'static str),
}

#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
}

/// The programs of a kubelet node (realnode).
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    /// containerd, containerd-shim-runc-v2 (found by containerd on its PATH) and ctr.
    pub containerd_dir: PathBuf,
    pub coredns: PathBuf,
    /// The NetworkPolicy controller (kube-router, firewall only).
    pub kube_router: PathBuf,
}

impl NodeBinaries {
    pub fn containerd(&self) -> PathBuf {
        self.containerd_dir.join("containerd")
    }
    pub fn ctr(&self) -> PathBuf {
        self.containerd_dir.join("ctr")
    }
    /// The first program the node needs that is not built (kube-router only when it enforces
    /// NetworkPolicy).
    pub fn first_missing(&self, network_policy: bool) -> Option<PathBuf> {
        [
            self.kubelet.clone(),
            self.kube_proxy.clone(),
            self.containerd(),
            self.coredns.clone(),
        ]
        .into_iter()
        .chain(network_policy.then(|| self.kube_router.clone()))
        .find(|p| !p.is_file())
    }
}

/// A value of `versions.env`.
pub fn version(key: &'static str) -> Result<&'static str, BinariesError> {
    VERSIONS_ENV
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .ok_or(BinariesError::Version(key))
}

/// `$WA_CACHE_DIR`, else `~/.cache/whatsapp-operator`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WA_CACHE_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("whatsapp-operator")
}

impl Binaries {
    /// All four in one directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kube_scheduler: dir.join("kube-scheduler"),
        }
    }

    /// The build cache of the pinned versions.
    pub fn in_cache() -> Result<Self, BinariesError> {
        let cache = cache_dir();
        let k8s = cache.join(format!("k8s-{}", version("K8S_VERSION")?));
        let etcd = cache.join(format!("etcd-{}", version("ETCD_VERSION")?));
        Ok(Self {
            etcd: etcd.join("etcd"),
            ..Self::in_dir(&k8s)
        })
    }

    /// The node's programs, built by `build.sh all` with the control plane.
    pub fn node_in_cache() -> Result<NodeBinaries, BinariesError> {
        let cache = cache_dir();
        let k8s = cache.join(format!("k8s-{}", version("K8S_VERSION")?));
        Ok(NodeBinaries {
            kubelet: k8s.join("kubelet"),
            kube_proxy: k8s.join("kube-proxy"),
            containerd_dir: cache.join(format!("containerd-{}", version("CONTAINERD_VERSION")?)),
            coredns: cache
                .join(format!("coredns-{}", version("COREDNS_VERSION")?))
                .join("coredns"),
            kube_router: cache
                .join(format!("kube-router-{}", version("KUBE_ROUTER_VERSION")?))
                .join("kube-router"),
        })
    }

    fn first_missing(&self) -> Option<&Path> {
        [
            &self.etcd,
            &self.kube_apiserver,
            &self.kube_controller_manager,
            &self.kube_scheduler,
        ]
        .into_iter()
        .find(|p| !p.is_file())
        .map(PathBuf::as_path)
    }

    /// `bin_dir` when given (must be complete), else the cache — built by `build.sh` when
    /// incomplete, which prints its progress to stderr.
    pub fn locate_or_build(bin_dir: Option<&Path>) -> Result<Self, BinariesError> {
        if let Some(dir) = bin_dir {
            let b = Self::in_dir(dir);
            return match b.first_missing() {
                Some(p) => Err(BinariesError::Missing(p.display().to_string(), dir.into())),
                None => Ok(b),
            };
        }
        let b = Self::in_cache()?;
        if b.first_missing().is_none() {
            return Ok(b);
        }
        eprintln!(
            "devcluster: control-plane binaries missing in {}; building them with {BUILD_SCRIPT} all \
             (Go module proxy; a cold build takes minutes)",
            cache_dir().display()
        );
        let status = std::process::Command::new("bash")
            .arg(BUILD_SCRIPT)
            .arg("all")
            // build.sh prints the directories on stdout; keep our stdout for KUBECONFIG=...
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|source| BinariesError::Spawn {
                script: BUILD_SCRIPT.into(),
                source,
            })?;
        if !status.success() {
            return Err(BinariesError::Build {
                script: BUILD_SCRIPT.into(),
                status,
            });
        }
        match b.first_missing() {
            Some(p) => Err(BinariesError::Missing(p.display().to_string(), cache_dir())),
            None => Ok(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pinned_versions() {
        assert!(version("K8S_VERSION").unwrap().starts_with("v1."));
        assert!(version("ETCD_VERSION").unwrap().starts_with("v3."));
        assert!(version("NOPE").is_err());
    }
}
