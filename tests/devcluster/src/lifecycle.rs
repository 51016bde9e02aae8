//! `up` and `down` as library calls (the CLI and the test library share them): `up` starts a
//! detached supervisor and waits for it to report ready; `down` stops it. Both are safe to
//! repeat and to call after a crash.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::binaries::{Binaries, BinariesError};
use crate::process;
use crate::state::{ClusterEnv, DaemonStatus, PodCidr, PodCidrError, StateLayout};

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    PodCidr(#[from] PodCidrError),
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    #[error("starting the supervisor {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("{component} failed: {message}\n--- last lines of {log} ---\n{tail}")]
    Failed {
        component: String,
        message: String,
        log: PathBuf,
        tail: String,
    },
    #[error("cluster not ready after {0:?}; see {1}")]
    Timeout(Duration, PathBuf),
    #[error("locking the state dir: {0}")]
    Lock(nix::Error),
    #[error("the state dir cannot be under {0}: the node mounts its own there")]
    HiddenStateDir(&'static str),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> UpError + '_ {
    move |source| UpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub state_dir: PathBuf,
    pub pod_cidr: String,
    pub pod_egress: bool,
    /// Enforce NetworkPolicy on the node (off: pods reach each other whatever the policies say).
    pub network_policy: bool,
    /// Directory holding etcd and the kube-* binaries; none: the versioned build cache.
    pub bin_dir: Option<PathBuf>,
    /// Client request rate of the controller-manager, scheduler and kubelet; none: theirs.
    pub api_qps: Option<u32>,
    /// The `devcluster` executable that runs the supervisor (`devcluster daemon`).
    pub exe: PathBuf,
    pub timeout: Duration,
}

/// Holds an exclusive lock on the state dir for the duration of `up`/`down`, so two test
/// processes starting the shared cluster at once do not both start it.
struct StateLock(#[allow(dead_code)] Flock<File>);

async fn lock(layout: &StateLayout) -> Result<StateLock, UpError> {
    let path = layout.lock_file();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let locked = tokio::task::spawn_blocking(move || {
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e)
    })
    .await
    .map_err(|e| UpError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    locked.map(StateLock).map_err(UpError::Lock)
}

/// Absolute form of a path, creating nothing.
fn absolute(p: &Path) -> Result<PathBuf, UpError> {
    std::path::absolute(p).map_err(io(p))
}

/// The pid of this state dir's supervisor, if it is running.
pub fn running_daemon(layout: &StateLayout) -> Option<u32> {
    let pid = process::read_pidfile(&layout.daemon_pidfile())?;
    let needle = layout.root().to_string_lossy();
    (process::alive(pid)
        && process::cmdline_contains(pid, &needle)
        && process::cmdline_contains(pid, "daemon"))
    .then_some(pid)
}

/// Starts the cluster of `opts.state_dir` (or finds it running) and returns once it is ready.
pub async fn up(opts: &UpOptions) -> Result<ClusterEnv, UpError> {
    let pod_cidr = PodCidr::parse(&opts.pod_cidr)?;
    let root = absolute(&opts.state_dir)?;
    // the node's mount namespace has its own /run, /var/lib and /var/log (node/sandbox.rs)
    if let Some(hidden) = ["/run", "/var/lib", "/var/log"]
        .into_iter()
        .find(|d| root.starts_with(d))
    {
        return Err(UpError::HiddenStateDir(hidden));
    }
    let layout = StateLayout::new(&root);
    std::fs::create_dir_all(layout.logs_dir()).map_err(io(&layout.logs_dir()))?;
    let _lock = lock(&layout).await?;

    if let Some(pid) = running_daemon(&layout) {
        tracing::info!(pid, "devcluster already running");
        return wait_ready(&layout, pid, opts.timeout).await;
    }

    // Whatever a killed supervisor left: processes, node namespaces/mounts, stale files. The
    // cluster's data (etcd, volumes) is not kept: every start is a clean cluster.
    let killed = process::kill_leftovers(&layout.pids_dir(), &root).await;
    if !killed.is_empty() {
        eprintln!(
            "devcluster: removed leftovers of a previous run: {}",
            killed.join(", ")
        );
    }
    crate::node::cleanup_leftovers(&root);
    forget_run(&layout);
    let volumes = layout.volumes_dir();
    if volumes.exists() {
        std::fs::remove_dir_all(&volumes).map_err(io(&volumes))?;
    }

    // found (or built, printing what build.sh does) here in the foreground, not in the
    // detached supervisor, so a user sees the build
    let bin_dir = opts.bin_dir.as_deref().map(absolute).transpose()?;
    Binaries::locate_or_build(bin_dir.as_deref())?;

    let log_path = layout.log(crate::daemon::DAEMON_COMPONENT);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(&log_path))?;
    let log2 = log.try_clone().map_err(io(&log_path))?;
    let mut cmd = std::process::Command::new(&opts.exe);
    cmd.arg("daemon")
        .arg("--state-dir")
        .arg(&root)
        .arg("--pod-cidr")
        .arg(pod_cidr.to_string());
    if let Some(dir) = &bin_dir {
        cmd.arg("--bin-dir").arg(dir);
    }
    if opts.pod_egress {
        cmd.arg("--pod-egress");
    }
    if !opts.network_policy {
        cmd.arg("--no-network-policy");
    }
    if let Some(qps) = opts.api_qps {
        cmd.arg("--api-qps").arg(qps.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    // SAFETY: setsid is async-signal-safe. Its own session: the supervisor outlives `up`
    // and the terminal or test harness that ran it.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| UpError::Spawn {
        exe: opts.exe.clone(),
        source,
    })?;
    let pid = child.id();
    // reap it when it ends, so a long-lived caller (a test process) is not left a zombie
    std::thread::spawn(move || child.wait());
    wait_ready(&layout, pid, opts.timeout).await
}

async fn wait_ready(
    layout: &StateLayout,
    pid: u32,
    timeout: Duration,
) -> Result<ClusterEnv, UpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match DaemonStatus::read(layout) {
            Some(DaemonStatus::Ready) => {
                if let Some(env) = ClusterEnv::read(layout) {
                    return Ok(env);
                }
            }
            Some(DaemonStatus::Failed { component, message }) => {
                return Err(failed(layout, &component, message));
            }
            _ => {}
        }
        if !process::alive(pid) {
            return Err(match DaemonStatus::read(layout) {
                Some(DaemonStatus::Failed { component, message }) => {
                    failed(layout, &component, message)
                }
                _ => failed(
                    layout,
                    crate::daemon::DAEMON_COMPONENT,
                    "supervisor exited".into(),
                ),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            return Err(UpError::Timeout(
                timeout,
                layout.log(crate::daemon::DAEMON_COMPONENT),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes what says a cluster runs here (its env file, status, daemon pid).
fn forget_run(layout: &StateLayout) {
    for f in [
        layout.cluster_env(),
        layout.status_file(),
        layout.daemon_pidfile(),
        layout.control_socket(),
    ] {
        let _ = std::fs::remove_file(f);
    }
}

fn failed(layout: &StateLayout, component: &str, message: String) -> UpError {
    let log = layout.log(component);
    UpError::Failed {
        component: component.into(),
        message,
        tail: process::tail(&log, 30),
        log,
    }
}

/// Stops the cluster of `state_dir` and removes what it left; fine to call when it is not
/// running. Returns whether a running supervisor was stopped.
pub async fn down(state_dir: &Path) -> Result<bool, UpError> {
    let root = absolute(state_dir)?;
    let layout = StateLayout::new(&root);
    if !root.exists() {
        return Ok(false);
    }
    let _lock = lock(&layout).await?;
    let was_running = match running_daemon(&layout) {
        Some(pid) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            // the node stops its parts, then kills what is left in its cgroups
            if !process::wait_gone(pid, Duration::from_secs(90)).await {
                tracing::warn!(pid, "supervisor did not stop; killing it");
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                process::wait_gone(pid, Duration::from_secs(5)).await;
            }
            true
        }
        None => false,
    };
    process::kill_leftovers(&layout.pids_dir(), &root).await;
    crate::node::cleanup_leftovers(&root);
    forget_run(&layout);
    Ok(was_running)
}
