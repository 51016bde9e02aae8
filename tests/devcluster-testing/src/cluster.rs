//! The cluster of a test run and what a test does with it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use devcluster::binaries::cache_dir;
use devcluster::lifecycle::{self, UpOptions};
use devcluster::state::{ClusterEnv, StateLayout};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::Rng;
use tokio::sync::OnceCell;

use crate::binaries::{devcluster_exe, release_dir};
use crate::wait::wait_for_named;

/// A running devcluster as seen by a test.
pub struct TestCluster {
    state_dir: PathBuf,
    env: ClusterEnv,
    config: kube::Config,
    /// The test pod image, once built and pushed (kubelet node).
    test_image: OnceCell<String>,
    /// The locks of the [`crate::Claim`] of a cluster of the test's own (none for the shared one).
    pub(crate) claim: Vec<File>,
}

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// The cluster of this test run (see the module docs). Panics with the reason when there is
/// none and none can be started.
pub async fn cluster() -> &'static TestCluster {
    CLUSTER.get_or_init(connect_or_start).await
}

/// The cluster of `DEVCLUSTER_STATE_DIR`, when set (panics when it is set but not running).
fn run_cluster() -> Option<(PathBuf, ClusterEnv)> {
    let dir = PathBuf::from(std::env::var_os("DEVCLUSTER_STATE_DIR").filter(|v| !v.is_empty())?);
    let env = ClusterEnv::read(&StateLayout::new(&dir)).unwrap_or_else(|| {
        panic!(
            "DEVCLUSTER_STATE_DIR={} has no cluster.env: is the cluster running? (devcluster up --state-dir {0})",
            dir.display()
        )
    });
    Some((dir, env))
}

async fn connect_or_start() -> TestCluster {
    let (state_dir, env) = match run_cluster() {
        Some(found) => found,
        None => start("cargo-test", "10.244.254.0/24").await,
    };
    with_config(state_dir, env).await
}

pub(crate) async fn with_config(state_dir: PathBuf, env: ClusterEnv) -> TestCluster {
    let config = devcluster::control_plane::admin_config(&env.kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("reading {}: {e}", env.kubeconfig.display()));
    TestCluster {
        state_dir,
        env,
        config,
        test_image: OnceCell::new(),
        claim: Vec::new(),
    }
}

/// Starts (or reuses) the cluster in `<cache>/state/<name>`.
async fn start(name: &str, pod_cidr: &str) -> (PathBuf, ClusterEnv) {
    let state_dir = cache_dir().join("state").join(name);
    let env = up(&state_dir, pod_cidr.into(), Duration::from_secs(300)).await;
    (state_dir, env)
}

/// `devcluster up` of a test cluster in `state_dir` (the components' own client rates, no
/// egress, NetworkPolicy enforced unless `DEVCLUSTER_NO_NETWORK_POLICY` is `1`/`true`, this
/// checkout's binaries), panicking with the reason when it does not come up.
pub(crate) async fn up(state_dir: &Path, pod_cidr: String, timeout: Duration) -> ClusterEnv {
    std::fs::create_dir_all(state_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
    let opts = UpOptions {
        state_dir: state_dir.to_path_buf(),
        pod_cidr,
        pod_egress: false,
        network_policy: !std::env::var("DEVCLUSTER_NO_NETWORK_POLICY")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
        bin_dir: std::env::var_os("DEVCLUSTER_BIN_DIR").map(PathBuf::from),
        api_qps: None,
        exe: devcluster_exe(),
        timeout,
    };
    lifecycle::up(&opts).await.unwrap_or_else(|e| {
        panic!(
            "devcluster up --state-dir {} failed: {e}",
            state_dir.display()
        )
    })
}

impl TestCluster {
    /// A fresh client. Each call builds a new one because a client is tied to the tokio
    /// runtime it was created on, and every `#[tokio::test]` has its own runtime.
    pub fn client(&self) -> Client {
        Client::try_from(self.config.clone())
            .unwrap_or_else(|e| panic!("building a kube client: {e}"))
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.env.kubeconfig.clone()
    }

    /// The host's address on the node link: pods reach programs on the host there.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.env.host_ip
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// The node's address (the Node's InternalIP, where NodePorts are).
    pub fn node_ip(&self) -> Option<Ipv4Addr> {
        self.env.node_ip
    }

    /// The node's network namespace (`ip netns exec NAME …`), where its pods' connections
    /// are tracked.
    pub fn node_netns(&self) -> String {
        let prefix = devcluster::node::sandbox::cluster_prefix(&self.state_dir);
        devcluster::node::sandbox::Names::new(&prefix).netns
    }

    /// Whether the node enforces NetworkPolicy (cluster.env `NETWORK_POLICY` is not `off`).
    pub fn enforces_network_policy(&self) -> bool {
        self.env
            .network_policy
            .as_deref()
            .is_some_and(|np| np != "off")
    }

    /// `host:port` of the cluster's registry.
    pub fn registry(&self) -> Option<&str> {
        self.env.registry.as_deref()
    }

    /// The test pod's image (`devcluster-testpod`) in this cluster's registry, built and pushed
    /// once per test process (`tests/devcluster/images/build.sh`).
    pub async fn test_pod_image(&self) -> String {
        self.test_image
            .get_or_init(|| self.build_test_pod_image())
            .await
            .clone()
    }

    async fn build_test_pod_image(&self) -> String {
        let registry = self
            .registry()
            .expect("the cluster's registry (cluster.env REGISTRY)");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../devcluster/images/build.sh");
        let out = tokio::process::Command::new("bash")
            .arg(script)
            .args(["--registry", registry])
            .env("WA_BIN_DIR", release_dir())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        assert!(
            out.status.success(),
            "{script} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|l| l.strip_prefix("image="))
            .find(|i| i.contains("/devcluster/testpod:"))
            .unwrap_or_else(|| panic!("{script} printed no test pod image: {text}"))
            .to_string()
    }

    /// Creates namespace `<prefix>-<6 random chars>` and waits until its `default`
    /// ServiceAccount exists (pods are refused before that).
    pub async fn namespace(&self, prefix: &str) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = {
            let mut rng = rand::rng();
            (0..6)
                .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
                .collect()
        };
        let name = format!("{prefix}-{suffix}");
        let client = self.client();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [("devcluster.test/namespace".to_string(), "true".to_string())].into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        // Created here rather than waited for from kube-controller-manager (seconds on a
        // loaded machine); if creating fails, the controller's account is waited for.
        if let Err(e) = devcluster::accounts::ensure_default(&client, &name).await {
            eprintln!("creating ServiceAccount {name}/default: {e}; waiting for the controller");
        }
        let sas = Api::<ServiceAccount>::namespaced(client, &name);
        wait_for_named(
            &format!("ServiceAccount {name}/default"),
            Duration::from_secs(60),
            || async { matches!(sas.get_opt("default").await, Ok(Some(_))) },
        )
        .await;
        name
    }

    /// `devcluster down` of a cluster from [`crate::own_cluster`].
    pub async fn down(&self) {
        let _ = lifecycle::down(&self.state_dir).await;
    }

    /// `devcluster restart <component>` (`kill`: SIGKILL instead of SIGTERM), returning once
    /// the component is back; for a cluster of the test's own ([`crate::own_cluster`]).
    pub async fn restart(&self, component: &str, kill: bool) -> devcluster::control::Reply {
        devcluster::control::restart(&self.state_dir, component, kill)
            .await
            .unwrap_or_else(|e| panic!("devcluster restart {component}: {e}"))
    }

    /// Runs `kubectl` against this cluster.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.env.kubeconfig)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running kubectl: {e}"))
    }
}
