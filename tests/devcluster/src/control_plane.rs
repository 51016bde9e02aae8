//! Starting the real control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on free loopback ports, each waited for before the next depends on it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::binaries::Binaries;
use crate::health;
use crate::pki::{self, Pki};
use crate::process::{Component, ProcessError};
use crate::state::StateLayout;

/// A start failure, naming the component whose log explains it.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct StartError {
    pub component: String,
    pub message: String,
}

impl StartError {
    pub fn new(component: &str, message: impl std::fmt::Display) -> Self {
        Self {
            component: component.into(),
            message: message.to_string(),
        }
    }
}

impl From<ProcessError> for StartError {
    fn from(e: ProcessError) -> Self {
        let component = match &e {
            ProcessError::Spawn { component, .. } => component.clone(),
            ProcessError::Io { .. } => "daemon".into(),
        };
        Self {
            component,
            message: e.to_string(),
        }
    }
}

/// The Services' ClusterIP range (the `kubernetes` Service is its first address, kube-dns
/// 10.0.0.10).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// How long each component may take to become ready before `up` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The running control plane, in start order.
pub struct ControlPlane {
    pub components: Vec<Component>,
    pub api_port: u16,
}

impl ControlPlane {
    /// Stops the components in reverse start order (scheduler and controller-manager before
    /// the API server, the API server before etcd).
    pub async fn stop(&mut self) {
        while let Some(mut c) = self.components.pop() {
            tracing::info!(component = %c.name, "stopping");
            c.stop(Duration::from_secs(10)).await;
        }
    }
}

/// A port that was free a moment ago. The kernel hands out ephemeral ports in sequence, so
/// two clusters starting at once will not get the same one.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn port(component: &str) -> Result<u16, StartError> {
    free_port().map_err(|e| StartError::new(component, format!("finding a free port: {e}")))
}

/// Starts everything up to a ready API server; the caller (the supervisor) then starts the
/// node agent and the provisioner with the returned admin client.
pub async fn start(
    layout: &StateLayout,
    bins: &Binaries,
    pki: &Pki,
    host_ip: Ipv4Addr,
    api_qps: Option<u32>,
    cp: &mut ControlPlane,
) -> Result<kube::Client, StartError> {
    // phase timings in the daemon log, for tests/devcluster/bench/devcluster-start.sh
    let t0 = std::time::Instant::now();
    let etcd_url = start_etcd(layout, bins, cp).await?;
    tracing::info!(secs = t0.elapsed().as_secs_f64(), "etcd healthy");

    let api_port = port("kube-apiserver")?;
    cp.api_port = api_port;
    let server = format!("https://127.0.0.1:{api_port}");
    let mut apiserver = spawn(
        layout,
        "kube-apiserver",
        &bins.kube_apiserver,
        &apiserver_args(layout, pki, host_ip, &etcd_url, api_port),
    )?;
    // written while the API server starts
    let kubeconfigs = write_kubeconfigs(layout, pki, &server)?;
    let client = admin_client(&layout.kubeconfig())
        .await
        .map_err(|e| StartError::new("kube-apiserver", e))?;
    wait_ready(&mut apiserver, "/readyz not ok after 60 s", || {
        health::readyz(&client)
    })
    .await?;
    tracing::info!(secs = t0.elapsed().as_secs_f64(), "kube-apiserver ready");
    cp.components.push(apiserver);

    cp.components.push(spawn(
        layout,
        "kube-controller-manager",
        &bins.kube_controller_manager,
        &controller_manager_args(pki, &kubeconfigs.controller_manager, api_qps),
    )?);
    cp.components.push(spawn(
        layout,
        "kube-scheduler",
        &bins.kube_scheduler,
        &scheduler_args(&kubeconfigs.scheduler, api_qps),
    )?);
    Ok(client)
}

/// Starts etcd on fresh data and waits until it is healthy; returns its client URL.
async fn start_etcd(
    layout: &StateLayout,
    bins: &Binaries,
    cp: &mut ControlPlane,
) -> Result<String, StartError> {
    // Fresh data every time: tests always start from a clean cluster.
    let etcd_dir = layout.etcd_dir();
    if etcd_dir.exists() {
        std::fs::remove_dir_all(&etcd_dir)
            .map_err(|e| StartError::new("etcd", format!("wiping {}: {e}", etcd_dir.display())))?;
    }
    let (client_port, peer_port) = (port("etcd")?, port("etcd")?);
    let client_url = format!("http://127.0.0.1:{client_port}");
    let mut etcd = spawn(
        layout,
        "etcd",
        &bins.etcd,
        &etcd_args(&etcd_dir, &client_url, peer_port),
    )?;
    let health = format!("127.0.0.1:{client_port}");
    wait_ready(&mut etcd, "not healthy after 60 s", || {
        health::etcd_healthy(&health)
    })
    .await?;
    cp.components.push(etcd);
    Ok(client_url)
}

fn etcd_args(data_dir: &Path, client_url: &str, peer_port: u16) -> Vec<String> {
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=devcluster".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=devcluster={peer_url}"),
        // fsync off: the data is throwaway and fsync dominates start-up on slow disks
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

/// kube-apiserver on loopback; it advertises the bridge address, where pods reach it through
/// the node agent's forward.
fn apiserver_args(
    layout: &StateLayout,
    pki: &Pki,
    host_ip: Ipv4Addr,
    etcd_url: &str,
    api_port: u16,
) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let server = format!("https://127.0.0.1:{api_port}");
    vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--advertise-address={host_ip}"),
        format!("--cert-dir={}", s(&layout.pki_dir())),
        format!("--tls-cert-file={}", s(&pki.apiserver.cert_path)),
        format!("--tls-private-key-file={}", s(&pki.apiserver.key_path)),
        format!("--client-ca-file={}", s(&pki.ca_crt)),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--service-account-issuer={server}"),
        format!("--service-account-key-file={}", s(&pki.sa_pub)),
        format!("--service-account-signing-key-file={}", s(&pki.sa_key)),
        // `kubectl logs`: the node agent's kubelet port, at the node's InternalIP, verified
        // against the cluster CA (node/kubelet.rs)
        format!(
            "--kubelet-client-certificate={}",
            s(&pki.apiserver_kubelet_client.cert_path)
        ),
        format!(
            "--kubelet-client-key={}",
            s(&pki.apiserver_kubelet_client.key_path)
        ),
        format!("--kubelet-certificate-authority={}", s(&pki.ca_crt)),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

/// The kubeconfigs of the controller-manager and the scheduler (the admin's is at
/// [`StateLayout::kubeconfig`]).
struct ComponentKubeconfigs {
    controller_manager: PathBuf,
    scheduler: PathBuf,
}

/// Writes the kubeconfigs: admin (users, the supervisor, the node agent) and one per component.
fn write_kubeconfigs(
    layout: &StateLayout,
    pki: &Pki,
    server: &str,
) -> Result<ComponentKubeconfigs, StartError> {
    let write = |path: &Path, user: &str, pair: &pki::CertPair| {
        pki::write_kubeconfig(path, &pki::kubeconfig(server, &pki.ca_pem, user, pair))
            .map_err(|e| StartError::new("daemon", e))
    };
    write(&layout.kubeconfig(), "admin", &pki.admin)?;
    let kubeconfigs = ComponentKubeconfigs {
        controller_manager: layout.component_kubeconfig("kube-controller-manager"),
        scheduler: layout.component_kubeconfig("kube-scheduler"),
    };
    write(
        &kubeconfigs.controller_manager,
        "system:kube-controller-manager",
        &pki.controller_manager,
    )?;
    write(
        &kubeconfigs.scheduler,
        "system:kube-scheduler",
        &pki.scheduler,
    )?;
    Ok(kubeconfigs)
}

/// Controllers needing a cloud provider or node CIDR allocation are off; everything else
/// (GC, namespace, ServiceAccount, token, StatefulSet, PV binder, endpoints, ...) runs.
fn controller_manager_args(pki: &Pki, kubeconfig: &Path, api_qps: Option<u32>) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let mut args = vec![
        format!("--kubeconfig={}", s(kubeconfig)),
        format!("--authentication-kubeconfig={}", s(kubeconfig)),
        format!("--authorization-kubeconfig={}", s(kubeconfig)),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--controllers=*,-cloud-node-lifecycle-controller,-node-ipam-controller,-node-route-controller,-service-lb-controller".into(),
        "--use-service-account-credentials=true".into(),
        format!("--root-ca-file={}", s(&pki.ca_crt)),
        format!("--service-account-private-key-file={}", s(&pki.sa_key)),
        format!("--cluster-signing-cert-file={}", s(&pki.ca_crt)),
        format!("--cluster-signing-key-file={}", s(&pki.ca_key)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--v=1".into(),
    ];
    args.extend(client_rate_args(api_qps));
    args
}

fn scheduler_args(kubeconfig: &Path, api_qps: Option<u32>) -> Vec<String> {
    let kc = kubeconfig.display();
    let mut args = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--v=1".into(),
    ];
    args.extend(client_rate_args(api_qps));
    args
}

/// The burst allowed with a client request rate `qps` (`devcluster up --api-qps`): twice the
/// rate, as the kubelet's and the scheduler's own defaults (50/100) are.
pub fn api_burst(qps: u32) -> u32 {
    qps.saturating_mul(2)
}

/// `--kube-api-qps`/`--kube-api-burst` of the controller-manager and the scheduler; nothing
/// keeps their own defaults.
fn client_rate_args(api_qps: Option<u32>) -> Vec<String> {
    api_qps
        .map(|q| {
            vec![
                format!("--kube-api-qps={q}"),
                format!("--kube-api-burst={}", api_burst(q)),
            ]
        })
        .unwrap_or_default()
}

/// Starts one part of the cluster (control plane or node) with its log and pidfile in `layout`.
pub(crate) fn spawn(
    layout: &StateLayout,
    name: &str,
    program: &Path,
    args: &[String],
) -> Result<Component, StartError> {
    tracing::info!(component = name, program = %program.display(), "starting");
    Ok(Component::spawn(
        name,
        program,
        args,
        &layout.log(name),
        &layout.pidfile(name),
    )?)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("client: {0}")]
    Kube(#[from] kube::Error),
}

/// An admin client from a kubeconfig file.
pub async fn admin_client(kubeconfig: &Path) -> Result<kube::Client, ClientError> {
    Ok(kube::Client::try_from(admin_config(kubeconfig).await?)?)
}

/// The client configuration of a kubeconfig file.
pub async fn admin_config(kubeconfig: &Path) -> Result<kube::Config, ClientError> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.connect_timeout = Some(Duration::from_secs(5));
    Ok(config)
}

/// Polls `probe` until the component is ready, failing when it exits first or after
/// [`READY_TIMEOUT`] (`not_ready` says what was missing then).
async fn wait_ready<F, Fut>(
    component: &mut Component,
    not_ready: &str,
    mut probe: F,
) -> Result<(), StartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = component.exited() {
            return Err(StartError::new(
                &component.name,
                format!("exited during start-up ({status})"),
            ));
        }
        if probe().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::new(&component.name, not_ready));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::client_rate_args;

    #[test]
    fn client_rate_is_the_components_own_unless_asked_for() {
        assert!(client_rate_args(None).is_empty());
        assert_eq!(
            client_rate_args(Some(100)),
            ["--kube-api-qps=100", "--kube-api-burst=200"]
        );
    }
}
