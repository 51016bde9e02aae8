//! Starting the real control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on free loopback ports, each waited for before the next depends on it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binaries::Binaries;
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
    let s = |p: &Path| p.display().to_string();
    // phase timings in the daemon log, for tests/devcluster/bench/devcluster-start.sh
    let t0 = std::time::Instant::now();

    // etcd: fresh data every time (tests always start from a clean cluster); fsync off
    // because the data is throwaway and fsync dominates start-up on slow disks.
    let etcd_dir = layout.etcd_dir();
    if etcd_dir.exists() {
        std::fs::remove_dir_all(&etcd_dir)
            .map_err(|e| StartError::new("etcd", format!("wiping {}: {e}", s(&etcd_dir))))?;
    }
    let (client_port, peer_port) = (port("etcd")?, port("etcd")?);
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_args = vec![
        "--name=devcluster".into(),
        format!("--data-dir={}", s(&etcd_dir)),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=devcluster={peer_url}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ];
    let mut etcd = spawn(layout, "etcd", &bins.etcd, &etcd_args)?;
    wait_etcd(&mut etcd, client_port).await?;
    tracing::info!(secs = t0.elapsed().as_secs_f64(), "etcd healthy");
    cp.components.push(etcd);

    // kube-apiserver on loopback; it advertises the bridge address, where pods reach it
    // through the node agent's forward.
    let api_port = port("kube-apiserver")?;
    cp.api_port = api_port;
    let server = format!("https://127.0.0.1:{api_port}");
    let apiserver_args = vec![
        format!("--etcd-servers={client_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--advertise-address={host_ip}"),
        format!("--cert-dir={}", s(&layout.pki_dir())),
        format!("--tls-cert-file={}", s(&pki.apiserver.cert_path)),
        format!("--tls-private-key-file={}", s(&pki.apiserver.key_path)),
        format!("--client-ca-file={}", s(&pki.ca_crt)),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
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
    ];
    let mut apiserver = spawn(
        layout,
        "kube-apiserver",
        &bins.kube_apiserver,
        &apiserver_args,
    )?;

    // kubeconfigs: admin (users, the supervisor, the node agent) and one per component
    let admin_kc = pki::kubeconfig(&server, &pki.ca_pem, "admin", &pki.admin);
    let write = |path: &Path, text: &str| {
        pki::write_kubeconfig(path, text).map_err(|e| StartError::new("daemon", e))
    };
    write(&layout.kubeconfig(), &admin_kc)?;
    let cm_kc = layout.component_kubeconfig("kube-controller-manager");
    write(
        &cm_kc,
        &pki::kubeconfig(
            &server,
            &pki.ca_pem,
            "system:kube-controller-manager",
            &pki.controller_manager,
        ),
    )?;
    let sched_kc = layout.component_kubeconfig("kube-scheduler");
    write(
        &sched_kc,
        &pki::kubeconfig(
            &server,
            &pki.ca_pem,
            "system:kube-scheduler",
            &pki.scheduler,
        ),
    )?;

    let client = admin_client(&layout.kubeconfig())
        .await
        .map_err(|e| StartError::new("kube-apiserver", e))?;
    wait_readyz(&mut apiserver, &client).await?;
    tracing::info!(secs = t0.elapsed().as_secs_f64(), "kube-apiserver ready");
    cp.components.push(apiserver);

    // Controllers needing a cloud provider or node CIDR allocation are off; everything else
    // (GC, namespace, ServiceAccount, token, StatefulSet, PV binder, endpoints, ...) runs.
    let mut cm_args = vec![
        format!("--kubeconfig={}", s(&cm_kc)),
        format!("--authentication-kubeconfig={}", s(&cm_kc)),
        format!("--authorization-kubeconfig={}", s(&cm_kc)),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--controllers=*,-cloud-node-lifecycle-controller,-node-ipam-controller,-node-route-controller,-service-lb-controller".into(),
        "--use-service-account-credentials=true".into(),
        format!("--root-ca-file={}", s(&pki.ca_crt)),
        format!("--service-account-private-key-file={}", s(&pki.sa_key)),
        format!("--cluster-signing-cert-file={}", s(&pki.ca_crt)),
        format!("--cluster-signing-key-file={}", s(&pki.ca_key)),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--v=1".into(),
    ];
    cm_args.extend(client_rate_args(api_qps));
    let cm = spawn(
        layout,
        "kube-controller-manager",
        &bins.kube_controller_manager,
        &cm_args,
    )?;
    cp.components.push(cm);

    let mut sched_args = vec![
        format!("--kubeconfig={}", s(&sched_kc)),
        format!("--authentication-kubeconfig={}", s(&sched_kc)),
        format!("--authorization-kubeconfig={}", s(&sched_kc)),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--v=1".into(),
    ];
    sched_args.extend(client_rate_args(api_qps));
    let sched = spawn(layout, "kube-scheduler", &bins.kube_scheduler, &sched_args)?;
    cp.components.push(sched);
    Ok(client)
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

async fn wait_etcd(etcd: &mut Component, port: u16) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = etcd.exited() {
            return Err(StartError::new(
                "etcd",
                format!("exited during start-up ({status})"),
            ));
        }
        let health = plain_get(&format!("127.0.0.1:{port}"), "/health").await;
        if health.is_some_and(|r| r.contains(r#""health":"true""#)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::new("etcd", "not healthy after 60 s"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The whole response (status line, headers, body) to a plain HTTP/1.0 GET of `path` at
/// `host:port`, or None within 2 s (no HTTP client needed for a readiness probe).
pub async fn plain_get(host: &str, path: &str) -> Option<String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

async fn wait_readyz(apiserver: &mut Component, client: &kube::Client) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = apiserver.exited() {
            return Err(StartError::new(
                "kube-apiserver",
                format!("exited during start-up ({status})"),
            ));
        }
        if readyz(client).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::new(
                "kube-apiserver",
                "/readyz not ok after 60 s",
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the API server's `/readyz` answers `ok`.
pub async fn readyz(client: &kube::Client) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), client.request_text(req)).await, Ok(Ok(t)) if t.trim() == "ok")
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
