//! The supervisor (`devcluster daemon`), started detached by `up`: starts the control plane,
//! the storage provisioner and the node, reports progress in `status.json`, and on SIGTERM
//! (from `down`) stops everything in reverse order and cleans up. While ready it answers
//! `devcluster restart` on its control socket (control.rs): a requested restart of a part is
//! not a failure; any other exit of a part still stops the whole cluster.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::{Api, Client};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::binaries::Binaries;
use crate::control::{self, Order};
use crate::control_plane::{self, ControlPlane, StartError};
use crate::node::{self, RealNode, RealNodeConfig};
use crate::state::{ClusterEnv, DaemonStatus, PodCidr, StateLayout};
use crate::{egress, pki, provisioner};

pub const NODE_NAME: &str = "devcluster-node";
/// The log of the supervisor itself (and of the provisioner inside it).
pub const DAEMON_COMPONENT: &str = "daemon";

pub struct DaemonOptions {
    pub layout: StateLayout,
    pub pod_cidr: PodCidr,
    pub pod_egress: bool,
    /// Enforce NetworkPolicy on the node (kube-router's firewall controller).
    pub network_policy: bool,
    pub bin_dir: Option<PathBuf>,
    /// Client request rate of the controller-manager, scheduler and kubelet; none: theirs.
    pub api_qps: Option<u32>,
}

/// Runs the supervisor to completion; returns the process exit code.
pub async fn run(opts: DaemonOptions) -> i32 {
    let layout = opts.layout.clone();
    let stop = CancellationToken::new();
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        match signal(kind) {
            Ok(mut sig) => {
                let stop = stop.clone();
                tokio::spawn(async move {
                    sig.recv().await;
                    tracing::info!("stop requested");
                    stop.cancel();
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle a stop signal"),
        }
    }
    if let Err(e) = std::fs::write(layout.daemon_pidfile(), std::process::id().to_string()) {
        tracing::error!(error = %e, "writing the daemon pidfile");
    }
    let _ = DaemonStatus::Starting.write(&layout);

    let mut cp = ControlPlane {
        components: Vec::new(),
        api_port: 0,
    };
    let node_stop = CancellationToken::new();
    let mut background = Vec::new();
    let started = tokio::select! {
        r = start(&opts, &mut cp, &node_stop, &mut background) => r,
        _ = stop.cancelled() => Err(StartError::new(DAEMON_COMPONENT, "stopped during start-up")),
    };
    let code = match started {
        Ok(Started {
            mut node_task,
            registry,
            client,
            node_orders,
        }) => {
            let env = ClusterEnv {
                kubeconfig: layout.kubeconfig(),
                host_ip: opts.pod_cidr.host_ip(),
                node_ip: Some(opts.pod_cidr.node_plan().node_ip),
                registry: Some(registry),
                network_policy: Some(
                    if opts.network_policy {
                        node::NETWORK_POLICY_IMPL
                    } else {
                        "off"
                    }
                    .into(),
                ),
            };
            // restart requests: the socket's task hands each to the supervision loop; bound
            // before the cluster is said ready, so a caller `up` has answered finds it
            let (orders_tx, mut orders) = mpsc::channel::<Order>(1);
            match control::listen(&layout) {
                Ok(listener) => {
                    let probes = control::Probes {
                        client,
                        etcd: etcd_address(&cp).unwrap_or_default(),
                    };
                    background.push(tokio::spawn(control::serve(
                        listener,
                        orders_tx,
                        probes,
                        node_stop.clone(),
                    )));
                }
                // the cluster works without it (a unix socket path is limited to 107 bytes)
                Err(e) => tracing::warn!(
                    error = %e,
                    socket = %layout.control_socket().display(),
                    "devcluster restart unavailable: cannot bind the control socket"
                ),
            }
            let ready = std::fs::write(layout.cluster_env(), env.render())
                .and_then(|()| DaemonStatus::Ready.write(&layout));
            match ready {
                Ok(()) => {
                    tracing::info!(kubeconfig = %layout.kubeconfig().display(), "cluster ready");
                    supervise(&stop, &mut cp, &mut node_task, &mut orders, &node_orders).await
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing cluster.env");
                    1
                }
            }
            .max(shutdown_node(&node_stop, node_task).await)
        }
        Err(e) => {
            tracing::error!(component = %e.component, error = %e.message, "start failed");
            let _ = DaemonStatus::Failed {
                component: e.component.clone(),
                message: e.message.clone(),
            }
            .write(&layout);
            node_stop.cancel();
            1
        }
    };
    for task in background {
        task.abort();
    }
    let _ = std::fs::remove_file(layout.cluster_env());
    let _ = std::fs::remove_file(layout.control_socket());
    cp.stop().await;
    if opts.pod_egress {
        egress::disable(&opts.pod_cidr);
    }
    node::cleanup_leftovers(layout.root());
    // a failed status stays for `up` to report; a clean stop leaves nothing behind
    if code == 0 {
        let _ = std::fs::remove_file(layout.status_file());
    }
    let _ = std::fs::remove_file(layout.daemon_pidfile());
    tracing::info!(code, "supervisor exiting");
    code
}

/// The node's supervision: ends with why a part died, or Ok on a stop request.
type NodeTask = tokio::task::JoinHandle<Result<(), String>>;

/// A started cluster, as the supervision needs it.
struct Started {
    node_task: NodeTask,
    /// The registry's `host:port`.
    registry: String,
    client: Client,
    /// Restarts of the node's parts, for the node's task.
    node_orders: mpsc::Sender<Order>,
}

/// etcd's client address (`127.0.0.1:port`), from its command line.
fn etcd_address(cp: &ControlPlane) -> Option<String> {
    let etcd = cp.components.iter().find(|c| c.name == "etcd")?;
    etcd.spec().args.iter().find_map(|a| {
        a.strip_prefix("--listen-client-urls=http://")
            .map(str::to_string)
    })
}

/// Starts the control plane and the node.
async fn start(
    opts: &DaemonOptions,
    cp: &mut ControlPlane,
    node_stop: &CancellationToken,
    background: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Started, StartError> {
    let layout = &opts.layout;
    let daemon_err = |e: &dyn std::fmt::Display| StartError::new(DAEMON_COMPONENT, e);
    for dir in [layout.pids_dir(), layout.pki_dir(), layout.volumes_dir()] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| daemon_err(&format!("{}: {e}", dir.display())))?;
    }
    let bins = Binaries::locate_or_build(opts.bin_dir.as_deref()).map_err(|e| daemon_err(&e))?;
    let host_ip = opts.pod_cidr.host_ip();
    let plan = opts.pod_cidr.node_plan();
    // the API server reaches the kubelet port at the Node's InternalIP
    let pki =
        pki::generate(&layout.pki_dir(), host_ip, &[plan.node_ip]).map_err(|e| daemon_err(&e))?;
    let client = control_plane::start(layout, &bins, &pki, host_ip, opts.api_qps, cp).await?;

    provisioner::ensure_storage_class_with_retry(&client)
        .await
        .map_err(|e| daemon_err(&e))?;
    background.push(tokio::spawn(provisioner::run(
        client.clone(),
        layout.volumes_dir(),
        node_stop.clone(),
    )));
    if opts.pod_egress {
        egress::enable(&opts.pod_cidr).map_err(|e| daemon_err(&e))?;
    }

    let prefix = node::sandbox::cluster_prefix(layout.root());
    let node_bins = Binaries::node_in_cache().map_err(|e| daemon_err(&e))?;
    if let Some(p) = node_bins.first_missing(opts.network_policy) {
        return Err(daemon_err(&format!(
            "{} missing: run tests/devcluster/control-plane/build.sh all",
            p.display()
        )));
    }
    node::sandbox::create_network(&node::sandbox::Names::new(&prefix), &plan)
        .map_err(|e| StartError::new(node::COMPONENT, e))?;
    // the node and its pods reach the API server (on loopback) at the host's link address
    if let Some(listener) = node::apiproxy::bind(host_ip, cp.api_port).await {
        let target = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, cp.api_port));
        background.push(tokio::spawn(node::apiproxy::forward(
            listener,
            target,
            node_stop.clone(),
        )));
    }
    let cfg = RealNodeConfig {
        layout,
        plan,
        prefix: prefix.clone(),
        pki: &pki,
        api_server: format!("https://{host_ip}:{}", cp.api_port),
        pod_egress: opts.pod_egress,
        network_policy: opts.network_policy,
        api_qps: opts.api_qps,
        bins: node_bins,
    };
    let mut started = Vec::new();
    let registry = match RealNode::start(&cfg, &client, &mut started).await {
        Ok(r) => r,
        Err(e) => {
            RealNode::new(started, &prefix).stop().await;
            return Err(e);
        }
    };
    let real = RealNode::new(started, &prefix).with_bins(cfg.bins.clone());
    let (node_orders, orders) = mpsc::channel(1);
    let mut node_task = tokio::spawn(run_real_node(real, node_stop.clone(), orders));
    wait_ready(&client, cp, &mut node_task).await?;
    Ok(Started {
        node_task,
        registry,
        client,
        node_orders,
    })
}

/// What woke a supervision loop.
enum Event {
    Stop,
    Exited(String, String),
    Restart(Order),
}

/// Supervises the node's parts until a stop request or the first to die unasked, then stops
/// the node (its pods with it). Restarts its parts when asked (control.rs).
async fn run_real_node(
    mut real: RealNode,
    stop: CancellationToken,
    mut orders: mpsc::Receiver<Order>,
) -> Result<(), String> {
    let failure = loop {
        // the select ends (dropping its borrow of the parts) before a restart touches them
        let event = tokio::select! {
            _ = stop.cancelled() => Event::Stop,
            (name, status) = crate::process::first_exit(&mut real.components) => Event::Exited(name, status),
            Some(order) = orders.recv() => Event::Restart(order),
        };
        match event {
            Event::Stop => break None,
            Event::Exited(name, status) => {
                break Some(format!(
                    "{name} exited unexpectedly ({status}); see logs/{name}.log"
                ));
            }
            Event::Restart(order) => {
                let r = real.restart(&order.component, order.kill).await;
                let _ = order.done.send(r);
            }
        }
    };
    real.stop().await;
    match failure {
        None => Ok(()),
        Some(m) => Err(m),
    }
}

/// Ready means: the `default` namespace and its ServiceAccount exist (so pods can be
/// created) and the node is Ready (so they can run).
async fn wait_ready(
    client: &Client,
    cp: &mut ControlPlane,
    node_task: &mut NodeTask,
) -> Result<(), StartError> {
    let t0 = tokio::time::Instant::now();
    let deadline = t0 + Duration::from_secs(90);
    let mut last_wait = "";
    loop {
        for c in cp.components.iter_mut() {
            if let Some(status) = c.exited() {
                return Err(StartError::new(
                    &c.name,
                    format!("exited during start-up ({status})"),
                ));
            }
        }
        if node_task.is_finished() {
            let why = match node_task.await {
                Ok(Ok(())) => "the node stopped during start-up".to_string(),
                Ok(Err(e)) => format!("the node failed: {e}"),
                Err(e) => format!("the node's supervision panicked: {e}"),
            };
            return Err(StartError::new(DAEMON_COMPONENT, why));
        }
        let ns = Api::<Namespace>::all(client.clone())
            .get_opt("default")
            .await
            .ok()
            .flatten()
            .is_some();
        // Created by us rather than waited for from kube-controller-manager (accounts.rs).
        let sa = ns
            && crate::accounts::ensure_default(client, "default")
                .await
                .is_ok();
        let node_ready = sa && node_is_ready(client).await;
        if node_ready {
            tracing::info!(
                secs = t0.elapsed().as_secs_f64(),
                "namespace, ServiceAccount and node ready"
            );
            return Ok(());
        }
        let waiting_for = if !ns {
            "the default namespace"
        } else if !sa {
            "the default ServiceAccount"
        } else {
            "node devcluster-node to be Ready (kubelet)"
        };
        if waiting_for != last_wait {
            tracing::info!(
                secs = t0.elapsed().as_secs_f64(),
                "waiting for {waiting_for}"
            );
            last_wait = waiting_for;
        }
        if tokio::time::Instant::now() >= deadline {
            let component = if !ns || !sa {
                "kube-apiserver"
            } else {
                DAEMON_COMPONENT
            };
            return Err(StartError::new(
                component,
                format!("timed out waiting for {waiting_for}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn node_is_ready(client: &Client) -> bool {
    let Ok(Some(node)) = Api::<Node>::all(client.clone()).get_opt(NODE_NAME).await else {
        return false;
    };
    node.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits for a stop request or for a part to die unasked; returns the exit code. Restarts
/// the control plane's parts when asked and hands the node's to the node's task.
async fn supervise(
    stop: &CancellationToken,
    cp: &mut ControlPlane,
    node_task: &mut NodeTask,
    orders: &mut mpsc::Receiver<Order>,
    node_orders: &mpsc::Sender<Order>,
) -> i32 {
    let layout_failed = |component: &str, message: String| (component.to_string(), message);
    let failure = loop {
        let event = tokio::select! {
            _ = stop.cancelled() => Event::Stop,
            (name, status) = crate::process::first_exit(&mut cp.components) => Event::Exited(name, status),
            r = &mut *node_task => {
                break Some(layout_failed(DAEMON_COMPONENT, match r {
                    Ok(Ok(())) => "the node stopped unexpectedly".into(),
                    Ok(Err(e)) => format!("the node failed: {e}"),
                    Err(e) => format!("the node's supervision panicked: {e}"),
                }));
            }
            Some(order) = orders.recv() => Event::Restart(order),
        };
        match event {
            Event::Stop => break None,
            Event::Exited(name, status) => {
                break Some(layout_failed(
                    &name,
                    format!("exited unexpectedly ({status})"),
                ));
            }
            Event::Restart(order) if control::is_node_part(&order.component) => {
                if let Err(mpsc::error::SendError(order)) = node_orders.send(order).await {
                    let _ = order.done.send(Err("the node is stopping".into()));
                }
            }
            Event::Restart(order) => {
                let r = control::restart_in(&mut cp.components, &order.component, order.kill)
                    .await
                    .map(|(_, restarted)| restarted);
                let _ = order.done.send(r);
            }
        }
    };
    match failure {
        None => 0,
        Some((component, message)) => {
            tracing::error!(%component, %message, "cluster part died; stopping everything");
            1
        }
    }
}

/// Stops the node (kubelet first, then everything left in its cgroups) before the control
/// plane goes.
async fn shutdown_node(node_stop: &CancellationToken, node_task: NodeTask) -> i32 {
    node_stop.cancel();
    if node_task.is_finished() {
        return 0;
    }
    match tokio::time::timeout(Duration::from_secs(60), node_task).await {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "the node stopped with an error");
            0
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the node's supervision panicked");
            0
        }
        Err(_) => {
            tracing::warn!("the node did not stop within 60 s");
            0
        }
    }
}
