//! `devcluster restart`: a running supervisor restarts one of its components on request (what
//! a crash, an upgrade or `systemctl restart` does to a real cluster's part), for the soak's
//! faults and for tests.
//!
//! The channel is a unix socket in the state dir (`STATE/control.sock`, mode 0600 like the
//! rest of the state dir's secrets): one JSON request line, one JSON reply line. A socket
//! rather than a request file and a signal because the caller needs an answer (the component
//! is back, or why not) and a socket gives one on the same connection: no polling for a reply
//! file, no stale request left behind by a killed caller, concurrent callers cannot overwrite
//! each other's request, and a supervisor that is not running is a plain "connection refused".
//!
//! The supervisor stops the component (SIGTERM, SIGKILL after [`STOP_GRACE`]; `kill`: SIGKILL
//! at once) and starts it from the spawn spec it was started with, without ever treating that
//! exit as a failure; an exit nobody asked for still stops the whole cluster. The reply comes
//! once the component is back (see [`wait_back`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::state::StateLayout;

/// The components `devcluster restart` accepts.
pub const RESTARTABLE: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "containerd",
];

/// How long a component has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a restarted component has to be back before the restart is reported failed.
pub const BACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `component` runs inside the node (its supervision is the node's task).
pub fn is_node_part(component: &str) -> bool {
    matches!(component, "kubelet" | "containerd")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub restart: String,
    /// SIGKILL at once instead of SIGTERM first.
    #[serde(default)]
    pub kill: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    /// From the request to the old process gone.
    #[serde(default)]
    pub stop_secs: f64,
    /// From the new process started to the component back.
    #[serde(default)]
    pub back_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "no running devcluster in {} ({}: {source}); start it with devcluster up --state-dir {}",
        .state_dir.display(),
        .socket.display(),
        .state_dir.display()
    )]
    NotRunning {
        state_dir: PathBuf,
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the supervisor: {0}")]
    Io(#[from] std::io::Error),
    #[error("the supervisor's reply: {0}")]
    Protocol(String),
    #[error("no reply from the supervisor within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

/// Asks the supervisor of `state_dir` to restart `component`; returns once it is back.
pub async fn restart(state_dir: &Path, component: &str, kill: bool) -> Result<Reply, ControlError> {
    let layout = StateLayout::new(state_dir);
    let socket = layout.control_socket();
    let stream = UnixStream::connect(&socket)
        .await
        .map_err(|source| ControlError::NotRunning {
            state_dir: state_dir.to_path_buf(),
            socket: socket.clone(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let req = Request {
        restart: component.into(),
        kill,
    };
    let mut line =
        serde_json::to_string(&req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    // the supervisor may take STOP_GRACE to stop it and BACK_TIMEOUT to see it back
    let bound = STOP_GRACE + BACK_TIMEOUT + Duration::from_secs(30);
    let mut answer = String::new();
    let n = tokio::time::timeout(bound, BufReader::new(read).read_line(&mut answer))
        .await
        .map_err(|_| ControlError::Timeout(bound))??;
    if n == 0 {
        return Err(ControlError::Protocol(
            "the supervisor closed the connection without a reply (did the cluster stop? see logs/daemon.log)".into(),
        ));
    }
    let reply: Reply =
        serde_json::from_str(answer.trim()).map_err(|e| ControlError::Protocol(e.to_string()))?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(ControlError::Failed(reply.message))
    }
}

/// A restart as the supervisor's loop receives it.
pub struct Order {
    pub component: String,
    pub kill: bool,
    /// When the old process is gone and the new one started: that moment; or why not.
    pub done: oneshot::Sender<Result<Restarted, String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Restarted {
    /// When the old process was gone (anything the component reports later is the new one's).
    pub stopped_at: SystemTime,
    pub stop_secs: f64,
}

/// What [`wait_back`] needs to judge a component back.
#[derive(Clone)]
pub struct Probes {
    pub client: Client,
    /// etcd's client address (`127.0.0.1:port`).
    pub etcd: String,
}

/// Binds the control socket, replacing one a killed supervisor left.
pub fn listen(layout: &StateLayout) -> std::io::Result<UnixListener> {
    let path = layout.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers restart requests until `stop`; one restart at a time (a second caller waits), so
/// two faults never overlap on one cluster.
pub async fn serve(
    listener: UnixListener,
    orders: mpsc::Sender<Order>,
    probes: Probes,
    stop: CancellationToken,
) {
    let one_at_a_time = std::sync::Arc::new(Mutex::new(()));
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept");
                    continue;
                }
            },
        };
        let (orders, probes, stop, lock) = (
            orders.clone(),
            probes.clone(),
            stop.clone(),
            one_at_a_time.clone(),
        );
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                BufReader::new(read).read_line(&mut line),
            )
            .await;
            let reply = match read {
                Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Request>(line.trim()) {
                    Ok(req) => {
                        let _one = lock.lock().await;
                        handle(req, &orders, &probes, &stop).await
                    }
                    Err(e) => failed(format!("bad request: {e}")),
                },
                _ => return,
            };
            if let Ok(mut text) = serde_json::to_string(&reply) {
                text.push('\n');
                let _ = write.write_all(text.as_bytes()).await;
            }
        });
    }
}

fn failed(message: String) -> Reply {
    Reply {
        ok: false,
        message,
        stop_secs: 0.0,
        back_secs: 0.0,
    }
}

async fn handle(
    req: Request,
    orders: &mpsc::Sender<Order>,
    probes: &Probes,
    stop: &CancellationToken,
) -> Reply {
    let component = req.restart;
    if !RESTARTABLE.contains(&component.as_str()) {
        return failed(format!(
            "cannot restart {component:?}: one of {}",
            RESTARTABLE.join(", ")
        ));
    }
    let how = if req.kill { "SIGKILL" } else { "SIGTERM" };
    tracing::info!(%component, how, "restart requested");
    let (done, result) = oneshot::channel();
    let order = Order {
        component: component.clone(),
        kill: req.kill,
        done,
    };
    if orders.send(order).await.is_err() {
        return failed("the supervisor is stopping".into());
    }
    let restarted = match result.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(format!("restarting {component}: {e}")),
        Err(_) => {
            return failed(format!(
                "the supervisor stopped while restarting {component}"
            ));
        }
    };
    let t0 = tokio::time::Instant::now();
    let back = tokio::select! {
        _ = stop.cancelled() => Err("the cluster is stopping (a part died; see logs/daemon.log)".to_string()),
        r = tokio::time::timeout(BACK_TIMEOUT, wait_back(&component, probes, restarted.stopped_at)) => {
            r.map_err(|_| format!("{component} not back after {BACK_TIMEOUT:?}; see logs/{component}.log"))
        }
    };
    let back_secs = t0.elapsed().as_secs_f64();
    match back {
        Ok(what) => {
            tracing::info!(%component, how, stop_secs = restarted.stop_secs, back_secs, "restarted");
            Reply {
                ok: true,
                message: format!(
                    "{component} restarted ({how}): stopped in {:.1} s, back after {back_secs:.1} s ({what})",
                    restarted.stop_secs
                ),
                stop_secs: restarted.stop_secs,
                back_secs,
            }
        }
        Err(e) => {
            tracing::warn!(%component, error = %e, "restart: not back");
            failed(e)
        }
    }
}

/// Polls until the restarted component does its job again; returns what was checked.
/// etcd: its `/health` and the API server's `/readyz` (which checks etcd); kube-apiserver:
/// `/readyz`; kubelet: the node's Lease renewed after the old kubelet was gone and the node
/// Ready; containerd: the node Ready (its socket answered before the reply); the controller
/// manager and the scheduler serve no health endpoint here (`--secure-port=0`): started is
/// back, and the supervisor watches them as before.
pub async fn wait_back(component: &str, probes: &Probes, stopped_at: SystemTime) -> &'static str {
    let stopped_ms = stopped_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    loop {
        let (ok, what) = match component {
            "etcd" => (
                crate::health::etcd_healthy(&probes.etcd).await
                    && crate::health::readyz(&probes.client).await,
                "etcd /health and kube-apiserver /readyz ok",
            ),
            "kube-apiserver" => (crate::health::readyz(&probes.client).await, "/readyz ok"),
            "kubelet" => (
                lease_renewed_after(&probes.client, stopped_ms).await
                    && crate::daemon::node_is_ready(&probes.client).await,
                "node Lease renewed by the new kubelet, node Ready",
            ),
            "containerd" => (
                crate::daemon::node_is_ready(&probes.client).await,
                "containerd socket answers, node Ready",
            ),
            _ => (true, "running"),
        };
        if ok {
            return what;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the node's Lease (kube-node-lease) was renewed after `after_ms` (Unix ms).
async fn lease_renewed_after(client: &Client, after_ms: i64) -> bool {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let Ok(Some(lease)) = leases.get_opt(crate::daemon::NODE_NAME).await else {
        return false;
    };
    lease
        .spec
        .and_then(|s| s.renew_time)
        .is_some_and(|t| t.0.as_millisecond() > after_ms)
}

/// Restarts `name` among `components` in place: stop (SIGTERM then SIGKILL after
/// [`STOP_GRACE`], or SIGKILL at once) and start from the same spec. The supervision loops
/// call this between two waits, so the exit is never taken for a failure.
pub async fn restart_in<'a>(
    components: &'a mut [crate::process::Component],
    name: &str,
    kill: bool,
) -> Result<(&'a mut crate::process::Component, Restarted), String> {
    let c = components
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("{name} is not running here"))?;
    let t0 = std::time::Instant::now();
    if kill {
        c.kill().await;
    } else {
        c.stop(STOP_GRACE).await;
    }
    let stopped_at = SystemTime::now();
    let stop_secs = t0.elapsed().as_secs_f64();
    let fresh = c.respawn().map_err(|e| e.to_string())?;
    *c = fresh;
    tracing::info!(component = name, pid = ?c.pid(), stop_secs, "started again");
    Ok((
        c,
        Restarted {
            stopped_at,
            stop_secs,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Component;

    #[tokio::test]
    async fn no_supervisor_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let r = restart(dir.path(), "etcd", false).await;
        assert!(matches!(r, Err(ControlError::NotRunning { .. })), "{r:?}");
    }

    /// A restart is stop + the same command line again, the new process supervised in place
    /// of the old one.
    #[tokio::test]
    async fn restart_in_replaces_the_process_with_the_same_command() {
        let dir = tempfile::tempdir().unwrap();
        let spawn = |name: &str| {
            Component::spawn(
                name,
                Path::new("sleep"),
                &["1000".into()],
                &dir.path().join(format!("{name}.log")),
                &dir.path().join(format!("{name}.pid")),
            )
            .unwrap()
        };
        let mut parts = vec![spawn("a"), spawn("b")];
        let old = parts[1].pid().unwrap();
        for kill in [false, true] {
            let before = parts[1].pid().unwrap();
            let (c, r) = restart_in(&mut parts, "b", kill).await.unwrap();
            let new = c.pid().unwrap();
            assert_ne!(new, before);
            assert!(r.stopped_at <= SystemTime::now());
            assert!(!crate::process::alive(before));
            assert!(crate::process::alive(new));
            assert_eq!(c.spec().args, vec!["1000".to_string()]);
            assert_eq!(
                crate::process::read_pidfile(&dir.path().join("b.pid")),
                Some(new)
            );
        }
        assert_ne!(parts[1].pid(), Some(old));
        assert!(parts[0].exited().is_none() && parts[1].exited().is_none());
        assert!(restart_in(&mut parts, "c", false).await.is_err());
        for p in parts.iter_mut() {
            p.kill().await;
        }
    }
}
