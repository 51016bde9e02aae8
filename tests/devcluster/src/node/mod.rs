//! The node agent: registers Node `devcluster-node` and runs the pods bound to it as local
//! processes, each pod in its own network and mount namespace (DESIGN.md §7).
//!
//! Not enforced (accepted and ignored): capabilities, seccomp/AppArmor profiles, resource
//! requests/limits, `privileged`, `readOnlyRootFilesystem`, image pull policy.

pub(crate) mod apiproxy;
mod containers;
mod env;
mod images;
mod kubelet;
mod netns;
mod nodeport;
mod pod;
mod probes;
mod registration;
mod spawn;
mod volumes;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use images::Images;
pub use netns::cluster_prefix;
pub use registration::Capacity;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
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
    /// The kubelet port's serving certificate and key (PEM), for `kubectl logs`.
    pub kubelet_cert: PathBuf,
    pub kubelet_key: PathBuf,
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
    /// A part of a kubelet node (realnode) failed.
    #[error("{0}")]
    Part(String),
}

/// Runs the node agent until `shutdown` is cancelled: registers the node, then runs the pods
/// bound to it. On shutdown every pod process is stopped and the agent's network and mounts
/// are removed (the pod objects stay; a later agent starts them again).
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    cleanup_leftovers(&cfg.state_dir)?;
    let net = netns::PodNetwork::new(&cfg.state_dir, &cfg.pod_cidr, cfg.host_ip)?;
    net.ensure_bridge()?;
    std::fs::create_dir_all(cfg.state_dir.join("node").join("pods"))
        .map_err(|source| NodeError::Io { path: cfg.state_dir.join("node"), source })?;

    let kubelet_listener = kubelet::bind(cfg.host_ip).await?;
    let kubelet_port = kubelet_listener.local_addr().map(|a| a.port()).unwrap_or(0);
    registration::register(&cfg.client, &cfg.node_name, cfg.host_ip, &cfg.pod_cidr, kubelet_port).await?;
    registration::renew_lease(&cfg.client, &cfg.node_name).await?;
    tracing::info!(node = %cfg.node_name, "node registered");

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(registration::heartbeat(
        cfg.client.clone(),
        cfg.node_name.clone(),
        cfg.host_ip,
        kubelet_port,
        shutdown.clone(),
    )));
    let tls = kubelet::KubeletTls { ca_crt: cfg.ca_crt.clone(), cert: cfg.kubelet_cert.clone(), key: cfg.kubelet_key.clone() };
    let (client, dir, stop) = (cfg.client.clone(), cfg.state_dir.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = kubelet::serve(kubelet_listener, tls, client, dir, stop).await {
            tracing::warn!(error = %e, "kubelet port (kubectl logs) not served");
        }
    }));
    if let Some(listener) = apiproxy::bind(cfg.host_ip, cfg.api_port).await {
        let target = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, cfg.api_port));
        tasks.push(tokio::spawn(apiproxy::forward(listener, target, shutdown.clone())));
    }
    tasks.push(tokio::spawn(nodeport::run(cfg.client.clone(), shutdown.clone())));

    let agent = Arc::new(pod::Agent {
        client: cfg.client.clone(),
        node_name: cfg.node_name.clone(),
        state_dir: cfg.state_dir.clone(),
        host_ip: cfg.host_ip,
        api: env::ApiEndpoint { host: cfg.host_ip.to_string(), port: cfg.api_port },
        ca_crt: cfg.ca_crt.clone(),
        images: Images::new(cfg.images_file.clone()),
        images_file: cfg.images_file.clone(),
        net,
    });
    watch_pods(agent.clone(), shutdown.clone()).await;
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::task::spawn_blocking({
        let dir = cfg.state_dir.clone();
        move || cleanup_leftovers(&dir)
    })
    .await;
    Ok(())
}

struct Worker {
    tx: tokio::sync::watch::Sender<Pod>,
    gone: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// Starts a worker per pod bound to this node and feeds it the pod's updates.
async fn watch_pods(agent: Arc<pod::Agent>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut seen_in_relist: Option<std::collections::HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = stream.next() => e,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        workers.retain(|_, w| !w.handle.is_finished());
        match event {
            watcher::Event::Init => seen_in_relist = Some(Default::default()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let Some(uid) = p.metadata.uid.clone() else { continue };
                if let Some(seen) = seen_in_relist.as_mut() {
                    seen.insert(uid.clone());
                }
                if let Some(w) = workers.get(&uid) {
                    let _ = w.tx.send(p);
                    continue;
                }
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
                // Finished pods are not started again; but a terminating one is still cleaned up.
                if matches!(phase, "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none() {
                    continue;
                }
                let (tx, rx) = tokio::sync::watch::channel(p);
                let gone = CancellationToken::new();
                let handle = tokio::spawn(pod::run_pod(agent.clone(), rx, gone.clone(), shutdown.clone()));
                workers.insert(uid, Worker { tx, gone, handle });
            }
            watcher::Event::Delete(p) => {
                if let Some(w) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    w.gone.cancel();
                }
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down.
                if let Some(seen) = seen_in_relist.take() {
                    for (uid, w) in &workers {
                        if !seen.contains(uid) {
                            w.gone.cancel();
                        }
                    }
                }
            }
        }
    }
    for (_, w) in workers {
        let _ = w.handle.await;
    }
}

/// Start time of a process (field 22 of /proc/PID/stat): identifies it against pid reuse.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Removes whatever a previous (possibly killed) node agent of this state dir left behind:
/// pod processes (from their pidfiles, and anything left in the cluster's network
/// namespaces), mounts under `state_dir/node`, the network namespaces and the bridge.
/// Idempotent.
pub fn cleanup_leftovers(state_dir: &Path) -> Result<(), NodeError> {
    let pods = state_dir.join("node").join("pods");
    if let Ok(entries) = std::fs::read_dir(&pods) {
        for dir in entries.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                    continue;
                }
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let mut it = text.split_whitespace();
                    let pid = it.next().and_then(|p| p.parse::<u32>().ok());
                    let start = it.next().and_then(|s| s.parse::<u64>().ok());
                    // Only the very process we started: a reused pid has another start time.
                    if let (Some(pid), Some(start)) = (pid, start)
                        && process_start_time(pid) == Some(start)
                    {
                        spawn::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    netns::cleanup(state_dir);
    volumes::unmount_under(&state_dir.join("node"));
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
