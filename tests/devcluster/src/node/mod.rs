//! The node: containerd, the kubelet, kube-proxy and CoreDNS of the pinned releases (built
//! from Go modules by `control-plane/build.sh`), runc and the CNI plugins from Debian, each in
//! the node's own namespaces and cgroups on this machine (sandbox.rs), plus the distribution
//! registry the node pulls images from. Pods are containers from images.
//!
//! Files under `STATE/node/`: `etc/` (every configuration file), `containerd/` (image
//! content, kept between runs of the same state dir so a restart pulls nothing), `var-lib/`
//! and `var-log/` (the node's `/var/lib` and `/var/log`, fresh each start).

pub mod apiproxy;
mod bootstrap;
pub mod config;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binaries::{NodeBinaries, cache_dir};
use crate::control_plane::{StartError, free_port, spawn};
use crate::health;
use crate::pki::{self, Pki};
use crate::process::Component;
use crate::state::{NodePlan, StateLayout};

use sandbox::Names;

/// The component name of the node's failures (its parts log to `logs/<part>.log`).
pub const COMPONENT: &str = "node";
/// What enforces NetworkPolicy on the node (cluster.env `NETWORK_POLICY`).
pub const NETWORK_POLICY_IMPL: &str = "kube-router";
/// The pause image's repository and tag in the registry (built by tests/images/build.sh).
pub const PAUSE_IMAGE: &str = "wa-base/pause:3.10";

pub struct RealNodeConfig<'a> {
    pub layout: &'a StateLayout,
    pub plan: NodePlan,
    /// The cluster's name prefix (`dc-<hash of the state dir>`).
    pub prefix: String,
    pub pki: &'a Pki,
    /// The API server as the node reaches it (the forwarder on the host's link address).
    pub api_server: String,
    pub pod_egress: bool,
    /// Run kube-router's firewall controller, which enforces NetworkPolicy.
    pub network_policy: bool,
    /// The kubelet's `kubeAPIQPS` (burst twice that); none: the kubelet's default.
    pub api_qps: Option<u32>,
    pub bins: NodeBinaries,
}

/// The running node's processes, in start order.
pub struct RealNode {
    pub components: Vec<Component>,
    names: Names,
    bins: Option<NodeBinaries>,
}

fn dir(layout: &StateLayout) -> PathBuf {
    layout.root().join("node")
}

/// Where the machine's sysctls are recorded while any node runs (machine-wide, see sandbox).
fn sysctl_record() -> PathBuf {
    cache_dir().join("node-sysctls.orig")
}

fn err(e: impl std::fmt::Display) -> StartError {
    StartError::new(COMPONENT, e)
}

fn write(path: &Path, text: &str) -> Result<(), StartError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// A node part: `program args` inside the node's namespaces and its `node` cgroup.
fn spawn_in_node(
    layout: &StateLayout,
    names: &Names,
    holder: u32,
    name: &str,
    program: &Path,
    args: &[String],
) -> Result<Component, StartError> {
    let args = sandbox::in_node(holder, program, args);
    let mut c = spawn(layout, name, Path::new("nsenter"), &args)?;
    if let Some(pid) = c.pid() {
        sandbox::join_node_cgroup(names, pid).map_err(|e| StartError::new(name, e))?;
    }
    Ok(c)
}

impl RealNode {
    /// Starts the registry and the node; returns once every part runs (the node's Ready
    /// condition is the supervisor's to wait for). On error, what was started is in
    /// `started` for the caller to stop.
    pub async fn start(
        cfg: &RealNodeConfig<'_>,
        client: &kube::Client,
        started: &mut Vec<Component>,
    ) -> Result<String, StartError> {
        let names = Names::new(&cfg.prefix);
        let root = dir(cfg.layout);
        let etc = root.join("etc");
        for fresh in [root.join("var-lib"), root.join("var-log"), etc.clone()] {
            if fresh.exists() {
                std::fs::remove_dir_all(&fresh)
                    .map_err(|e| err(format!("{}: {e}", fresh.display())))?;
            }
        }
        let registry = start_registry(cfg, &etc, started).await?;
        bootstrap::apply_all(client, &cfg.plan)
            .await
            .map_err(|e| err(format!("bootstrap objects: {e}")))?;
        let holder = start_sandbox(cfg.layout, &names, &root, started)?;
        let files = write_configs(cfg, &names, &root, &registry)?;
        start_containerd(cfg, &names, holder, &files.containerd, started).await?;
        sandbox::record_sysctls(&names, &sysctl_record()).map_err(err)?;
        start_kubernetes_parts(cfg, &names, holder, &files, started)?;
        if cfg.network_policy {
            start_network_policy(cfg, &names, holder, &files, client, started).await?;
        }
        tracing::info!(node = %sandbox::describe(&cfg.plan), %registry, "node parts started");
        Ok(registry)
    }

    pub fn new(components: Vec<Component>, prefix: &str) -> Self {
        Self {
            components,
            names: Names::new(prefix),
            bins: None,
        }
    }

    /// With the node's programs, for [`RealNode::restart`] to probe containerd.
    pub fn with_bins(mut self, bins: NodeBinaries) -> Self {
        self.bins = Some(bins);
        self
    }

    /// Restarts one node part (`devcluster restart`, control.rs): stopped, started again from
    /// the same spec inside the node's namespaces (the holder still runs, so the spec's
    /// `nsenter --target` still names them), moved into the node's cgroup like at start.
    /// Pods keep running: their containers belong to the shims, not to containerd or the
    /// kubelet, as on a real node. containerd is waited for until its socket answers (the
    /// kubelet's next call must find it), so the supervision pauses for at most 30 s.
    pub async fn restart(
        &mut self,
        name: &str,
        kill: bool,
    ) -> Result<crate::control::Restarted, String> {
        let (c, restarted) = crate::control::restart_in(&mut self.components, name, kill).await?;
        if let Some(pid) = c.pid() {
            sandbox::join_node_cgroup(&self.names, pid).map_err(|e| e.to_string())?;
        }
        if name == "containerd" {
            let holder = self
                .components
                .iter_mut()
                .find(|c| c.name == "node-sandbox")
                .and_then(Component::pid)
                .ok_or("the node's namespace holder is gone")?;
            let bins = self
                .bins
                .clone()
                .ok_or("the node's programs are not known")?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !containerd_answers(holder, &bins).await {
                if let Some(c) = self.components.iter_mut().find(|c| c.name == name)
                    && let Some(status) = c.exited()
                {
                    return Err(format!("containerd exited after the restart ({status})"));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err("containerd's socket not answering after 30 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(restarted)
    }

    /// Stops the node's parts (kubelet first), then everything left in its cgroups (pods,
    /// shims), its network and mounts.
    pub async fn stop(mut self) {
        while let Some(mut c) = self.components.pop() {
            tracing::info!(component = %c.name, "stopping");
            c.stop(Duration::from_secs(10)).await;
        }
        let names = self.names.clone();
        let _ = tokio::task::spawn_blocking(move || remove(&names)).await;
    }
}

fn remove(names: &Names) {
    let killed = sandbox::kill_and_remove_cgroups(names);
    if killed > 0 {
        tracing::info!(killed, "node processes killed");
    }
    sandbox::remove_network(names);
    sandbox::restore_sysctls(names, &sysctl_record());
}

/// What a killed supervisor's node left (processes in its cgroups, namespace, link,
/// sysctls); quiet when there is nothing.
pub fn cleanup_leftovers(state_dir: &Path) {
    remove(&Names::new(&sandbox::cluster_prefix(state_dir)));
}

/// The image registry, on the host's link address: reachable from the host (pushes) and from
/// the node (pulls), nowhere else. Returns its `host:port` once it serves.
async fn start_registry(
    cfg: &RealNodeConfig<'_>,
    etc: &Path,
    started: &mut Vec<Component>,
) -> Result<String, StartError> {
    let registry = format!("{}:{}", cfg.plan.host_ip, free_port().map_err(err)?);
    let storage = cache_dir().join("registry");
    std::fs::create_dir_all(&storage).map_err(|e| err(format!("{}: {e}", storage.display())))?;
    let reg_cfg = etc.join("registry.yml");
    write(&reg_cfg, &config::registry_config(&registry, &storage))?;
    started.push(spawn(
        cfg.layout,
        "registry",
        Path::new("docker-registry"),
        &["serve".into(), path(&reg_cfg)],
    )?);
    wait_started(
        "registry",
        &format!("http://{registry}/v2/ not answering"),
        started,
        || health::registry_serves(&registry),
    )
    .await?;
    Ok(registry)
}

/// The holder of the node's namespaces, then its cgroups and mounts; returns the holder's pid.
fn start_sandbox(
    layout: &StateLayout,
    names: &Names,
    root: &Path,
    started: &mut Vec<Component>,
) -> Result<u32, StartError> {
    let (prog, args) = sandbox::holder_command(names);
    started.push(spawn(layout, "node-sandbox", &prog, &args)?);
    let holder = started
        .last_mut()
        .and_then(Component::pid)
        .ok_or_else(|| err("node-sandbox exited at once"))?;
    sandbox::create_cgroups(names, holder).map_err(err)?;
    sandbox::mount_node_paths(holder, root).map_err(err)?;
    Ok(holder)
}

/// The configuration files the node's parts start with, under `node/etc/`.
struct NodeFiles {
    containerd: PathBuf,
    kubelet: PathBuf,
    kubelet_kubeconfig: PathBuf,
    kube_proxy: PathBuf,
    corefile: PathBuf,
    kube_router_kubeconfig: PathBuf,
}

/// Writes every configuration file of the node: kubeconfigs, CNI, containerd (with the
/// registry's hosts), resolv.conf, the kubelet's, kube-proxy's and CoreDNS's.
fn write_configs(
    cfg: &RealNodeConfig<'_>,
    names: &Names,
    root: &Path,
    registry: &str,
) -> Result<NodeFiles, StartError> {
    let plan = &cfg.plan;
    let etc = root.join("etc");
    let kc = |name: &str, user: &str, pair: &pki::CertPair| -> Result<PathBuf, StartError> {
        let p = etc.join(format!("{name}.kubeconfig"));
        pki::write_kubeconfig(
            &p,
            &pki::kubeconfig(&cfg.api_server, &cfg.pki.ca_pem, user, pair),
        )
        .map_err(err)?;
        Ok(p)
    };
    let kubelet_kubeconfig = kc("kubelet", "kubelet", &cfg.pki.node)?;
    let proxy_kc = kc("kube-proxy", "kube-proxy", &cfg.pki.kube_proxy)?;
    let coredns_kc = kc("coredns", "coredns", &cfg.pki.coredns)?;
    let kube_router_kubeconfig = kc("kube-router", "kube-router", &cfg.pki.kube_router)?;
    let containerd = write_containerd_files(plan, root, registry)?;
    let upstream = if cfg.pod_egress {
        sandbox::host_nameserver()
    } else {
        None
    };
    // pods with dnsPolicy Default get the node's resolv.conf: the host's when they may
    // leave the machine, else none
    let resolv = etc.join("resolv.conf");
    write(
        &resolv,
        &upstream
            .as_ref()
            .map(|u| format!("nameserver {u}\n"))
            .unwrap_or_default(),
    )?;
    let kubelet = etc.join("kubelet.yaml");
    let files = config::KubeletFiles {
        ca_crt: &cfg.pki.ca_crt,
        tls_cert: &cfg.pki.kubelet.cert_path,
        tls_key: &cfg.pki.kubelet.key_path,
        resolv_conf: &resolv,
        volume_plugin_dir: &root.join("var-lib").join("volume-plugins"),
        cgroup_root: &names.cgroup,
    };
    write(&kubelet, &config::kubelet_config(plan, &files, cfg.api_qps))?;
    let kube_proxy = etc.join("kube-proxy.yaml");
    write(
        &kube_proxy,
        &config::kube_proxy_config(plan, &proxy_kc, crate::daemon::NODE_NAME),
    )?;
    let corefile = etc.join("Corefile");
    write(
        &corefile,
        &config::corefile(plan, &coredns_kc, upstream.as_deref()),
    )?;
    Ok(NodeFiles {
        containerd,
        kubelet,
        kubelet_kubeconfig,
        kube_proxy,
        corefile,
        kube_router_kubeconfig,
    })
}

/// containerd's configuration with what it reads: the CNI network and the registry's hosts
/// (pulls over plain HTTP); returns the configuration file.
fn write_containerd_files(
    plan: &NodePlan,
    root: &Path,
    registry: &str,
) -> Result<PathBuf, StartError> {
    let etc = root.join("etc");
    let cni_dir = etc.join("cni");
    write(
        &cni_dir.join("10-devcluster.conflist"),
        &config::cni_conflist(plan, &root.join("var-lib").join("cni")),
    )?;
    let certs_d = etc.join("certs.d");
    write(
        &certs_d.join(registry).join("hosts.toml"),
        &config::registry_hosts_toml(registry),
    )?;
    let containerd = etc.join("containerd.toml");
    let sandbox_image = format!("{registry}/{PAUSE_IMAGE}");
    write(
        &containerd,
        &config::containerd_toml(&root.join("containerd"), &certs_d, &cni_dir, &sandbox_image),
    )?;
    Ok(containerd)
}

/// containerd (shims and runc found on its PATH), ready when its socket answers.
async fn start_containerd(
    cfg: &RealNodeConfig<'_>,
    names: &Names,
    holder: u32,
    config_file: &Path,
    started: &mut Vec<Component>,
) -> Result<(), StartError> {
    let path_env = format!(
        "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        cfg.bins.containerd_dir.display()
    );
    let args = vec![
        path_env,
        path(&cfg.bins.containerd()),
        "--config".into(),
        path(config_file),
    ];
    started.push(spawn_in_node(
        cfg.layout,
        names,
        holder,
        "containerd",
        Path::new("/usr/bin/env"),
        &args,
    )?);
    wait_started("containerd", "socket not answering", started, || {
        containerd_answers(holder, &cfg.bins)
    })
    .await
}

/// The kubelet, kube-proxy and CoreDNS, inside the node.
fn start_kubernetes_parts(
    cfg: &RealNodeConfig<'_>,
    names: &Names,
    holder: u32,
    files: &NodeFiles,
    started: &mut Vec<Component>,
) -> Result<(), StartError> {
    let kubelet_args = vec![
        format!("--config={}", path(&files.kubelet)),
        format!("--kubeconfig={}", path(&files.kubelet_kubeconfig)),
        format!("--hostname-override={}", crate::daemon::NODE_NAME),
        format!("--node-ip={}", cfg.plan.node_ip),
        "--v=1".into(),
    ];
    let parts: [(&str, &Path, Vec<String>); 3] = [
        ("kubelet", &cfg.bins.kubelet, kubelet_args),
        (
            "kube-proxy",
            &cfg.bins.kube_proxy,
            vec![
                format!("--config={}", path(&files.kube_proxy)),
                "--v=1".into(),
            ],
        ),
        (
            "coredns",
            &cfg.bins.coredns,
            vec!["-conf".into(), path(&files.corefile)],
        ),
    ];
    for (name, program, args) in parts {
        started.push(spawn_in_node(
            cfg.layout, names, holder, name, program, &args,
        )?);
    }
    Ok(())
}

/// kube-router's firewall controller, inside the node, once the kubelet has registered the
/// Node: kube-router reads its own Node at start and exits when there is none yet.
async fn start_network_policy(
    cfg: &RealNodeConfig<'_>,
    names: &Names,
    holder: u32,
    files: &NodeFiles,
    client: &kube::Client,
    started: &mut Vec<Component>,
) -> Result<(), StartError> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    wait_started(
        "kube-router",
        "the kubelet has not registered the Node",
        started,
        || async { matches!(nodes.get_opt(crate::daemon::NODE_NAME).await, Ok(Some(_))) },
    )
    .await?;
    started.push(spawn_in_node(
        cfg.layout,
        names,
        holder,
        "kube-router",
        &cfg.bins.kube_router,
        &config::kube_router_args(&files.kube_router_kubeconfig),
    )?);
    Ok(())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn check_alive(started: &mut [Component]) -> Result<(), StartError> {
    for c in started.iter_mut() {
        if let Some(status) = c.exited() {
            return Err(StartError::new(
                &c.name,
                format!("exited during start-up ({status})"),
            ));
        }
    }
    Ok(())
}

/// Polls `probe` every 100 ms until it holds, failing when a part started so far exits or
/// after 30 s (`what` names it then).
async fn wait_started<F, Fut>(
    component: &str,
    what: &str,
    started: &mut [Component],
    mut probe: F,
) -> Result<(), StartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        check_alive(started)?;
        if probe().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::new(component, format!("{what} after 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// containerd answers on its socket (`ctr version` inside the node).
async fn containerd_answers(holder: u32, bins: &NodeBinaries) -> bool {
    let args = sandbox::in_node(
        holder,
        &bins.ctr(),
        &[
            "--address".into(),
            config::CONTAINERD_SOCKET.into(),
            "version".into(),
        ],
    );
    tokio::process::Command::new("nsenter")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}
