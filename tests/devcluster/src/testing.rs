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

use std::fs::{File, TryLockError};
use std::future::Future;
use std::io::Write;
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
    /// The locks of the [`Claim`] of a cluster of the test's own (none for the shared one).
    claim: Vec<File>,
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
        claim: Vec::new(),
    }
}

/// A cluster of the test's own, never the run's shared one: for a test that restarts or stops
/// the cluster's parts, which would disturb every other test. [`claim`]s its state dir and pod
/// CIDR, then [`Claim::up`]. Take it down with [`TestCluster::down`].
pub async fn own_cluster(env_prefix: &str, state_dir: PathBuf, pod_cidr: &str) -> TestCluster {
    claim(env_prefix, state_dir, pod_cidr).await.up().await
}

/// The state dir and pod CIDR of a test's own cluster, held by this test alone on this machine
/// (among the runs that share the cache, `WA_CACHE_DIR`: every checkout by default) until the claim, or the [`TestCluster`] it brought up, is dropped (at the latest when the
/// test process exits).
///
/// `state_dir` and `pod_cidr` are the test's (each its own, so such tests can run side by
/// side); `env_prefix` lets a run move them: `<env_prefix>_STATE` and `<env_prefix>_POD_CIDR`.
/// Every checkout on the machine (a CI clone, a worktree) names the same state dir in the
/// shared cache and the same CIDR, which two clusters cannot use at once: a second run of the
/// same test waits here (it says so) until the first is done, instead of taking down the
/// first's cluster. Sharing the state dir, rather than one per checkout, lets the next run
/// take down whatever a crashed run of any checkout left holding the CIDR.
pub struct Claim {
    state_dir: PathBuf,
    pod_cidr: String,
    /// Exclusive locks on `<state_dir>.lock` and `<cache>/locks/pod-cidr-<cidr>.lock`.
    locks: Vec<File>,
}

/// Claims a test's own state dir and pod CIDR (see [`Claim`]); waits while another run holds
/// either.
pub async fn claim(env_prefix: &str, state_dir: PathBuf, pod_cidr: &str) -> Claim {
    let state_dir = std::env::var_os(format!("{env_prefix}_STATE"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(state_dir);
    let pod_cidr = std::env::var(format!("{env_prefix}_POD_CIDR"))
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| pod_cidr.to_string());
    let mut state_lock = state_dir.clone().into_os_string();
    state_lock.push(".lock");
    let cidr_lock = cache_dir()
        .join("locks")
        .join(format!("pod-cidr-{}.lock", pod_cidr.replace('/', "-")));
    // Always the state dir's first, then the CIDR's, so that no two runs each hold what the
    // other waits for.
    let locks = vec![
        hold_lock(
            PathBuf::from(state_lock),
            &format!("state dir {}", state_dir.display()),
        )
        .await,
        hold_lock(cidr_lock, &format!("pod CIDR {pod_cidr}")).await,
    ];
    Claim {
        state_dir,
        pod_cidr,
        locks,
    }
}

impl Claim {
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Takes down whatever a crashed earlier run left in the state dir, then starts the cluster,
    /// which keeps the claim.
    pub async fn up(self) -> TestCluster {
        let Claim {
            state_dir,
            pod_cidr,
            locks,
        } = self;
        let _ = lifecycle::down(&state_dir).await;
        let env = up(&state_dir, pod_cidr, Duration::from_secs(180)).await;
        let mut cluster = with_config(state_dir, env).await;
        cluster.claim = locks;
        cluster
    }
}

/// An exclusive lock on `path` (created if missing), held as long as the returned file is
/// open. While another process holds it, says which (the holder writes its pid and checkout
/// into the file) and waits.
async fn hold_lock(path: PathBuf, what: &str) -> File {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            eprintln!(
                "devcluster: the {what} is in use by another test run ({}): waiting until it is done ({})",
                holder.trim(),
                path.display()
            );
            file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", path.display()))
                .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
            eprintln!("devcluster: the {what} is free; going on");
        }
        Err(TryLockError::Error(e)) => panic!("locking {}: {e}", path.display()),
    }
    // Only for the message of a run that waits: a failure to write it changes nothing else.
    let _ = file.set_len(0).and_then(|()| {
        writeln!(
            file,
            "pid {}, checkout {}",
            std::process::id(),
            checkout().display()
        )
    });
    file
}

/// The workspace this library was built in (`tests/devcluster` is two levels down).
fn checkout() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// A test's own state dir in the cache, `<cache>/state/<name>` (for [`own_cluster`]): the same
/// in every checkout (see [`Claim`]).
pub fn own_state_dir(name: &str) -> PathBuf {
    cache_dir().join("state").join(name)
}

/// Starts (or reuses) the cluster in `<cache>/state/<name>`.
async fn start(name: &str, pod_cidr: &str) -> (PathBuf, ClusterEnv) {
    let state_dir = cache_dir().join("state").join(name);
    let env = up(&state_dir, pod_cidr.into(), Duration::from_secs(300)).await;
    (state_dir, env)
}

/// `devcluster up` of a test cluster in `state_dir` (the components' own client rates, no
/// egress, this checkout's binaries), panicking with the reason when it does not come up.
async fn up(state_dir: &Path, pod_cidr: String, timeout: Duration) -> ClusterEnv {
    std::fs::create_dir_all(state_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
    let opts = UpOptions {
        state_dir: state_dir.to_path_buf(),
        pod_cidr,
        pod_egress: false,
        bin_dir: std::env::var_os("DEVCLUSTER_BIN_DIR").map(PathBuf::from),
        api_qps: None,
        exe: devcluster_exe(&release_dir()),
        timeout,
    };
    lifecycle::up(&opts).await.unwrap_or_else(|e| {
        panic!(
            "devcluster up --state-dir {} failed: {e}",
            state_dir.display()
        )
    })
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

/// A program of the project's release build (`make build`) in [`release_dir`], for a test
/// that runs another package's binary (the operator's tests run the hub); panics, naming the
/// build command, when it is not built.
pub fn release_program(name: &str) -> PathBuf {
    let p = release_dir().join(name);
    assert!(
        p.is_file(),
        "{} is not built: cargo build --release --workspace --bins (or set WA_BIN_DIR)",
        p.display()
    );
    p
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_of_a_lock_waits_until_the_first_is_released() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.lock");
        let first = hold_lock(path.clone(), "test lock").await;
        let holder = std::fs::read_to_string(&path).expect("the holder's note");
        assert!(
            holder.starts_with(&format!("pid {}, checkout /", std::process::id())),
            "{holder}"
        );
        let second = tokio::spawn(hold_lock(path.clone(), "test lock"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "the second waits while the first holds it"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second gets it once the first is gone")
            .expect("join");
        drop(second);
    }
}
