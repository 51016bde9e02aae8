//! The test library: one devcluster shared by every test of a run, a fresh namespace per test.
//!
//! ```no_run
//! # async fn t() {
//! let cluster = devcluster::testing::cluster().await;
//! let ns = cluster.namespace("my-test").await;
//! let client = cluster.client();
//! # }
//! ```
//!
//! With `DEVCLUSTER_STATE_DIR` set (as `make test` does) the library connects to that
//! running cluster. Without it, it starts one in `~/.cache/whatsapp-operator/state/cargo-test`
//! (pod CIDR 10.244.254.0/24, apart from `make test`'s 10.244.0.0/24 so both can run) or reuses
//! it if it is already running, so a plain
//! `cargo test --release -p <crate>` works too; `devcluster down --state-dir` that dir when done.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::Rng;
use tokio::sync::OnceCell;

pub mod sessions;

use crate::binaries::cache_dir;
use crate::lifecycle::{self, UpOptions};
use crate::state::{ClusterEnv, StateLayout};

/// A running devcluster as seen by a test.
pub struct TestCluster {
    state_dir: PathBuf,
    env: ClusterEnv,
    config: kube::Config,
    /// The test pod image, once built and pushed (kubelet node).
    test_image: OnceCell<String>,
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

async fn with_config(state_dir: PathBuf, env: ClusterEnv) -> TestCluster {
    let config = crate::control_plane::admin_config(&env.kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("reading {}: {e}", env.kubeconfig.display()));
    TestCluster {
        state_dir,
        env,
        config,
        test_image: OnceCell::new(),
    }
}

/// A cluster of the test's own, never the run's shared one: for a test that restarts or stops
/// the cluster's parts, which would disturb every other test. Whatever a crashed earlier run
/// left in `state_dir` is taken down first; take this one down with [`TestCluster::down`].
/// `state_dir` and `pod_cidr` are the test's (each its own, so such tests can run side by
/// side); `env_prefix` lets a run move them: `<env_prefix>_STATE` and `<env_prefix>_POD_CIDR`.
pub async fn own_cluster(env_prefix: &str, state_dir: PathBuf, pod_cidr: &str) -> TestCluster {
    let state_dir = std::env::var_os(format!("{env_prefix}_STATE"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(state_dir);
    let pod_cidr = std::env::var(format!("{env_prefix}_POD_CIDR"))
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| pod_cidr.to_string());
    let _ = lifecycle::down(&state_dir).await;
    std::fs::create_dir_all(&state_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
    let opts = UpOptions {
        state_dir: state_dir.clone(),
        pod_cidr,
        pod_egress: false,
        bin_dir: std::env::var_os("DEVCLUSTER_BIN_DIR").map(PathBuf::from),
        exe: devcluster_exe(&release_dir()),
        timeout: Duration::from_secs(180),
    };
    let env = lifecycle::up(&opts).await.unwrap_or_else(|e| {
        panic!(
            "devcluster up --state-dir {} failed: {e}",
            state_dir.display()
        )
    });
    with_config(state_dir, env).await
}

/// A test's own state dir in the cache, `<cache>/state/<name>` (for [`own_cluster`]).
pub fn own_state_dir(name: &str) -> PathBuf {
    cache_dir().join("state").join(name)
}

/// Starts (or reuses) the cluster in `<cache>/state/<name>`.
async fn start(name: &str, pod_cidr: &str) -> (PathBuf, ClusterEnv) {
    let state_dir = cache_dir().join("state").join(name);
    let bin_dir = release_dir();
    let exe = devcluster_exe(&bin_dir);
    std::fs::create_dir_all(&state_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
    let opts = UpOptions {
        state_dir: state_dir.clone(),
        pod_cidr: pod_cidr.into(),
        pod_egress: false,
        bin_dir: std::env::var_os("DEVCLUSTER_BIN_DIR").map(PathBuf::from),
        exe,
        timeout: Duration::from_secs(300),
    };
    match lifecycle::up(&opts).await {
        Ok(env) => (state_dir, env),
        Err(e) => panic!(
            "devcluster up --state-dir {} failed: {e}",
            state_dir.display()
        ),
    }
}

/// Where the project's release binaries are: `$WA_BIN_DIR`, `$CARGO_TARGET_DIR/release`, or
/// the directory of the running test binary's profile (`target/release/deps/..`).
fn release_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WA_BIN_DIR").filter(|v| !v.is_empty()) {
        return d.into();
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("release");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release"))
        })
}

/// The `devcluster` binary: `$DEVCLUSTER_BIN`, else in `bin_dir`, else built with cargo.
fn devcluster_exe(bin_dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("DEVCLUSTER_BIN").filter(|v| !v.is_empty()) {
        return p.into();
    }
    let exe = bin_dir.join("devcluster");
    if !exe.is_file() || !bin_dir.join("devcluster-testpod").is_file() {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        eprintln!(
            "devcluster: building the devcluster binaries (cargo build --release --manifest-path {manifest} --bins)"
        );
        let status =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--release", "--bins", "--manifest-path", manifest])
                .status()
                .unwrap_or_else(|e| panic!("running cargo: {e}"));
        assert!(status.success(), "building devcluster failed");
    }
    assert!(
        exe.is_file(),
        "{} not found; set DEVCLUSTER_BIN",
        exe.display()
    );
    exe
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
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/images/build.sh");
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
        if let Err(e) = crate::accounts::ensure_default(&client, &name).await {
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

    /// `devcluster down` of a cluster from [`own_cluster`].
    pub async fn down(&self) {
        let _ = lifecycle::down(&self.state_dir).await;
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

/// A TCP port free on 127.0.0.1 right now, for a process a test starts (the control plane's
/// own [`crate::control_plane::free_port`], panicking instead of returning the error).
pub fn free_port() -> u16 {
    crate::control_plane::free_port().unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// Polls `condition` every 200 ms until it is true; panics after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_named("condition", timeout, condition).await
}

/// Like [`wait_for`], naming what is awaited in the panic message.
pub async fn wait_for_named<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if condition().await {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `probe` every 200 ms until it returns `Some`; panics after `timeout`.
pub async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
