//! One pod's life on the node: network namespace, volumes, init containers in order, then the
//! containers with restarts per restartPolicy (exponential back-off), probes, graceful
//! termination on deletion, and the pod's status.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::containers::{ContainerState, State, Terminated};
use super::env::{self, ApiEndpoint};
use super::netns::{PodNetns, PodNetwork};
use super::spawn::{self, Launch};
use super::volumes::{self, PodVolumes, VolumeContext};
use super::{Images, probes};

/// What every pod worker shares: the agent's configuration and resources.
pub struct Agent {
    pub client: kube::Client,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub host_ip: Ipv4Addr,
    pub api: ApiEndpoint,
    pub ca_crt: PathBuf,
    pub images: Images,
    pub images_file: PathBuf,
    pub net: PodNetwork,
}

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without crashing starts over at the initial back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
const TOKEN_REFRESH: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Regular,
}

struct PodState {
    pod_ip: Option<Ipv4Addr>,
    start_time: Timestamp,
    init: Vec<ContainerState>,
    containers: Vec<ContainerState>,
    initialized: bool,
    /// An init container failed for good (restartPolicy Never).
    init_failed: bool,
    /// (type → (status, lastTransitionTime)).
    conditions: std::collections::BTreeMap<&'static str, (&'static str, Timestamp)>,
}

/// A running pod.
struct PodCtx {
    agent: Arc<Agent>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    pod_dir: PathBuf,
    netns: Mutex<Option<PodNetns>>,
    vols: Mutex<PodVolumes>,
    state: Mutex<PodState>,
    changed: Notify,
    /// Cancelled when the pod must stop (deletion, disappearance, agent shutdown).
    stop: CancellationToken,
    /// Grace period for the stop, in seconds.
    grace: Mutex<Option<i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PodCtx {
    fn update(&self, f: impl FnOnce(&mut PodState)) {
        f(&mut lock(&self.state));
        self.changed.notify_one();
    }

    fn set_container(&self, kind: Kind, idx: usize, f: impl FnOnce(&mut ContainerState)) {
        self.update(|s| {
            let list = if kind == Kind::Init { &mut s.init } else { &mut s.containers };
            if let Some(c) = list.get_mut(idx) {
                f(c);
            }
        });
    }

    fn pod_ip(&self) -> Option<Ipv4Addr> {
        lock(&self.netns).as_ref().map(|n| n.ip)
    }

    fn restart_policy(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
    }

    fn spec_container(&self, kind: Kind, idx: usize) -> Option<&Container> {
        let spec = self.pod.spec.as_ref()?;
        match kind {
            Kind::Init => spec.init_containers.as_ref()?.get(idx),
            Kind::Regular => spec.containers.get(idx),
        }
    }
}

/// The pod's directory: `state_dir/node/pods/<ns>_<pod>_<uid>`.
pub fn pod_dir(state_dir: &std::path::Path, ns: &str, name: &str, uid: &str) -> PathBuf {
    state_dir.join("node").join("pods").join(format!("{ns}_{name}_{uid}"))
}

/// Runs the pod until it is deleted (then deletes the object once its processes are gone),
/// disappears (`gone`), or the agent shuts down.
pub async fn run_pod(agent: Arc<Agent>, mut rx: watch::Receiver<Pod>, gone: CancellationToken, shutdown: CancellationToken) {
    let pod = rx.borrow().clone();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        delete_object(&api, &name, &uid).await;
        return;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let dir = pod_dir(&agent.state_dir, &ns, &name, &uid);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(pod = %name, namespace = %ns, error = %e, "cannot create pod dir");
        return;
    }
    let existing_scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
    let now = Timestamp::now();
    let mut conditions = std::collections::BTreeMap::new();
    conditions.insert("PodScheduled", ("True", existing_scheduled.unwrap_or(now)));
    let state = PodState {
        pod_ip: None,
        start_time: pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or(now, |t| t.0),
        init: spec.init_containers.as_deref().unwrap_or_default().iter().map(|c| ContainerState::new(&c.name, c.image.as_deref().unwrap_or_default())).collect(),
        containers: spec.containers.iter().map(|c| ContainerState::new(&c.name, c.image.as_deref().unwrap_or_default())).collect(),
        initialized: spec.init_containers.as_deref().unwrap_or_default().is_empty(),
        init_failed: false,
        conditions,
    };
    let ctx = Arc::new(PodCtx {
        agent: agent.clone(),
        pod,
        ns: ns.clone(),
        name: name.clone(),
        uid: uid.clone(),
        pod_dir: dir.clone(),
        netns: Mutex::new(None),
        vols: Mutex::new(PodVolumes::default()),
        state: Mutex::new(state),
        changed: Notify::new(),
        stop: CancellationToken::new(),
        grace: Mutex::new(None),
    });
    // The first status (Pending, containers creating) goes out at once.
    ctx.changed.notify_one();
    let status_task = tokio::spawn(status_writer(ctx.clone()));

    // Deletion, disappearance and shutdown all end in `stop`, with the grace period to use.
    let watcher_ctx = ctx.clone();
    let (gone2, shutdown2) = (gone.clone(), shutdown.clone());
    let stop_task = tokio::spawn(async move {
        let ctx = watcher_ctx;
        loop {
            tokio::select! {
                _ = gone2.cancelled() => { *lock(&ctx.grace) = Some(0); break; }
                _ = shutdown2.cancelled() => { *lock(&ctx.grace) = Some(2); break; }
                changed = rx.changed() => {
                    if changed.is_err() { *lock(&ctx.grace) = Some(0); break; }
                    let p = rx.borrow_and_update().clone();
                    if p.metadata.deletion_timestamp.is_some() {
                        let grace = p.metadata.deletion_grace_period_seconds
                            .or(p.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                            .unwrap_or(30);
                        *lock(&ctx.grace) = Some(grace);
                        break;
                    }
                }
            }
        }
        ctx.stop.cancel();
    });

    run_containers(&ctx).await;
    // Completed pods (restartPolicy Never/OnFailure) stay until deleted.
    ctx.stop.cancelled().await;
    stop_task.abort();

    // Everything has exited: release the pod's resources.
    volumes::unmount(&lock(&ctx.vols));
    if let Some(n) = lock(&ctx.netns).take() {
        agent.net.delete_pod_netns(&n);
    }
    let _ = std::fs::remove_dir_all(dir.join("volumes"));
    status_task.abort();
    if !gone.is_cancelled() && !shutdown.is_cancelled() {
        delete_object(&api, &name, &uid).await;
        tracing::info!(pod = %name, namespace = %ns, "pod terminated and deleted");
    }
}

async fn delete_object(api: &Api<Pod>, name: &str, uid: &str) {
    let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }), ..Default::default() };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "deleting terminated pod failed"),
    }
}

/// Waits `d` unless the pod stops first; false when stopped.
async fn sleep_or_stop(ctx: &PodCtx, d: Duration) -> bool {
    tokio::select! {
        _ = ctx.stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

fn waiting_all(ctx: &PodCtx, reason: &str, message: &str) {
    ctx.update(|s| {
        for c in s.init.iter_mut().chain(s.containers.iter_mut()) {
            if !c.ever_ran {
                c.state = State::Waiting { reason: reason.to_string(), message: Some(message.to_string()) };
            }
        }
    });
}

async fn run_containers(ctx: &Arc<PodCtx>) {
    // Sandbox: network namespace with the pod IP.
    let mut delay = Duration::from_secs(1);
    loop {
        let agent = ctx.agent.clone();
        let uid = ctx.uid.clone();
        match tokio::task::spawn_blocking(move || agent.net.create_pod_netns(&uid)).await {
            Ok(Ok(n)) => {
                let ip = n.ip;
                *lock(&ctx.netns) = Some(n);
                ctx.update(|s| {
                    s.pod_ip = Some(ip);
                    s.conditions.insert("PodReadyToStartContainers", ("True", Timestamp::now()));
                });
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(pod = %ctx.name, error = %e, "creating pod network failed");
                waiting_all(ctx, "ContainerCreating", &format!("pod network: {e}"));
            }
            Err(e) => tracing::warn!(pod = %ctx.name, error = %e, "creating pod network panicked"),
        }
        if !sleep_or_stop(ctx, delay).await {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    let pod_ip = ctx.pod_ip().map(|i| i.to_string());
    let host_ip = ctx.agent.host_ip.to_string();

    // Volumes: retried until everything they need exists (a PVC binds, a secret appears).
    let mut delay = Duration::from_secs(1);
    loop {
        let vctx = VolumeContext { client: &ctx.agent.client, ca_crt: &ctx.agent.ca_crt, pod_dir: &ctx.pod_dir };
        let mut vols = std::mem::take(&mut *lock(&ctx.vols));
        let r = volumes::prepare(&vctx, &ctx.pod, &mut vols, pod_ip.as_deref(), &host_ip).await;
        *lock(&ctx.vols) = vols;
        match r {
            Ok(()) => break,
            Err(e) => {
                tracing::info!(pod = %ctx.name, namespace = %ctx.ns, error = %e, "volumes not ready");
                waiting_all(ctx, "ContainerCreating", &format!("volumes: {e}"));
            }
        }
        if !sleep_or_stop(ctx, delay).await {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    let refresh_ctx = ctx.clone();
    let refresh = tokio::spawn(async move {
        let ctx = refresh_ctx;
        while sleep_or_stop(&ctx, TOKEN_REFRESH).await {
            let vctx = VolumeContext { client: &ctx.agent.client, ca_crt: &ctx.agent.ca_crt, pod_dir: &ctx.pod_dir };
            let vols = std::mem::take(&mut *lock(&ctx.vols));
            let ip = ctx.pod_ip().map(|i| i.to_string());
            if let Err(e) = volumes::refresh_tokens(&vctx, &ctx.pod, &vols, ip.as_deref(), &ctx.agent.host_ip.to_string()).await {
                tracing::warn!(pod = %ctx.name, error = %e, "token refresh failed");
            }
            *lock(&ctx.vols) = vols;
        }
    });

    let n_init = ctx.pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).map_or(0, Vec::len);
    for idx in 0..n_init {
        match run_container(ctx.clone(), Kind::Init, idx).await {
            Some(0) => {}
            Some(_) => {
                // Failed for good (restartPolicy Never).
                ctx.update(|s| s.init_failed = true);
                refresh.abort();
                return;
            }
            None => {
                refresh.abort();
                return;
            }
        }
    }
    ctx.update(|s| {
        s.initialized = true;
    });
    let n = ctx.pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let tasks: Vec<_> = (0..n).map(|idx| tokio::spawn(run_container(ctx.clone(), Kind::Regular, idx))).collect();
    for t in tasks {
        let _ = t.await;
    }
    refresh.abort();
}

enum Outcome {
    /// Could not start (image not in the file, bad config): (reason, message).
    NotStarted(String, String),
    Exited(Terminated),
    Stopped(Terminated),
}

/// Runs one container with the restart policy. Returns its final exit code (None when the pod
/// was stopped while it was still meant to run).
async fn run_container(ctx: Arc<PodCtx>, kind: Kind, idx: usize) -> Option<i32> {
    let policy = ctx.restart_policy().to_string();
    let mut backoff = BACKOFF_START;
    loop {
        if ctx.stop.is_cancelled() {
            return None;
        }
        let began = Instant::now();
        match run_once(&ctx, kind, idx).await {
            Outcome::NotStarted(reason, message) => {
                ctx.set_container(kind, idx, |c| c.state = State::Waiting { reason: reason.clone(), message: Some(message.clone()) });
                // Re-check soon: the images file may be edited, a secret created.
                if !sleep_or_stop(&ctx, Duration::from_secs(5)).await {
                    return None;
                }
            }
            Outcome::Stopped(t) => {
                ctx.set_container(kind, idx, |c| {
                    c.state = State::Terminated(t);
                    c.ready = false;
                    c.started = false;
                    c.finished = true;
                });
                return None;
            }
            Outcome::Exited(t) => {
                let code = t.exit_code;
                let restart = match (kind, policy.as_str()) {
                    (Kind::Init, "Never") => false,
                    (Kind::Init, _) => code != 0,
                    (_, "Never") => false,
                    (_, "OnFailure") => code != 0,
                    _ => true,
                };
                if !restart {
                    ctx.set_container(kind, idx, |c| {
                        c.state = State::Terminated(t);
                        c.ready = false;
                        c.started = false;
                        c.finished = true;
                    });
                    return Some(code);
                }
                if began.elapsed() > BACKOFF_RESET {
                    backoff = BACKOFF_START;
                }
                let name = ctx.spec_container(kind, idx).map(|c| c.name.clone()).unwrap_or_default();
                let message = format!("back-off {}s restarting failed container={name} pod={}_{}({})", backoff.as_secs(), ctx.name, ctx.ns, ctx.uid);
                ctx.set_container(kind, idx, |c| {
                    c.last = Some(t);
                    c.ready = false;
                    c.started = false;
                    c.state = State::Waiting { reason: "CrashLoopBackOff".into(), message: Some(message) };
                });
                if !sleep_or_stop(&ctx, backoff).await {
                    ctx.set_container(kind, idx, |c| c.finished = true);
                    return None;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                ctx.set_container(kind, idx, |c| c.restart_count += 1);
            }
        }
    }
}

fn now_term(code: i32, signal: Option<i32>, started: Timestamp, container_id: &str) -> Terminated {
    // As the kubelet reports it: a container stopped by a signal is an "Error" too.
    let reason = if code == 0 { "Completed" } else { "Error" };
    Terminated {
        exit_code: code,
        signal,
        reason: reason.to_string(),
        message: None,
        started_at: Some(started),
        finished_at: Timestamp::now(),
        container_id: Some(container_id.to_string()),
    }
}

async fn run_once(ctx: &Arc<PodCtx>, kind: Kind, idx: usize) -> Outcome {
    let Some(c) = ctx.spec_container(kind, idx).cloned() else {
        return Outcome::NotStarted("CreateContainerError".into(), "no such container".into());
    };
    let image = c.image.clone().unwrap_or_default();
    let entrypoint = match ctx.agent.images.entrypoint(&image) {
        Ok(Some(ep)) => ep,
        Ok(None) => {
            return Outcome::NotStarted(
                "ErrImagePull".into(),
                format!("image {image:?} is not in the devcluster images file {}", ctx.agent.images_file.display()),
            );
        }
        Err(e) => return Outcome::NotStarted("ErrImagePull".into(), format!("image {image:?}: {e}")),
    };
    let argv = super::images::argv(&entrypoint, c.command.as_deref(), c.args.as_deref());
    let Some(netns) = lock(&ctx.netns).clone() else {
        return Outcome::NotStarted("ContainerCreating".into(), "no pod network".into());
    };
    let pod_sc = ctx.pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let uid = sc.and_then(|s| s.run_as_user).or(pod_sc.and_then(|s| s.run_as_user)).map(|u| u as u32);
    let gid = sc.and_then(|s| s.run_as_group).or(pod_sc.and_then(|s| s.run_as_group)).map(|g| g as u32);
    let mut groups: Vec<u32> = pod_sc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default().into_iter().map(|g| g as u32).collect();
    if let Some(fs) = pod_sc.and_then(|s| s.fs_group) {
        groups.push(fs as u32);
    }
    // A user without a group gets gid = uid's default group 0 replaced by its own id, as
    // container runtimes do for numeric users without /etc/passwd entries: keep gid 0 only
    // when asked for.
    let gid = gid.or(uid.map(|_| 0));
    if c.security_context.as_ref().and_then(|s| s.run_as_non_root).or(pod_sc.and_then(|s| s.run_as_non_root)) == Some(true) && uid.unwrap_or(0) == 0 {
        return Outcome::NotStarted(
            "CreateContainerConfigError".into(),
            "container has runAsNonRoot and image will run as root (set runAsUser)".into(),
        );
    }
    let home = if uid.unwrap_or(0) == 0 { "/root" } else { "/tmp" };
    let pod_ip = netns.ip.to_string();
    let env = match env::build(&ctx.agent.client, &ctx.pod, &c, &ctx.agent.api, &pod_ip, &ctx.agent.host_ip.to_string(), home).await {
        Ok(e) => e,
        Err(e) => return Outcome::NotStarted("CreateContainerConfigError".into(), e.to_string()),
    };
    let argv: Vec<String> = argv.iter().map(|a| env::expand(a, &env)).collect();
    let mounts = match volumes::container_mounts(&c, &lock(&ctx.vols)) {
        Ok(m) => m,
        Err(e) => return Outcome::NotStarted("CreateContainerConfigError".into(), e.to_string()),
    };
    let launch = Launch {
        argv,
        env,
        working_dir: c.working_dir.as_ref().map(PathBuf::from),
        uid,
        gid,
        groups,
        netns: netns.path(),
        hostname: ctx.name.clone(),
        mounts,
        log_file: ctx.pod_dir.join(format!("{}.log", c.name)),
    };
    let mut child = match spawn::spawn(&launch) {
        Ok(ch) => ch,
        Err(e) => return Outcome::NotStarted("RunContainerError".into(), e.to_string()),
    };
    let Some(pid) = child.id() else {
        return Outcome::NotStarted("RunContainerError".into(), "process exited at once".into());
    };
    let pidfile = ctx.pod_dir.join(format!("{}.pid", c.name));
    let _ = std::fs::write(&pidfile, format!("{pid} {}", super::process_start_time(pid).unwrap_or_default()));
    let container_id = format!("devcluster://{}-{}-{pid}", super::netns::uid_short(&ctx.uid), c.name);
    let started = Timestamp::now();
    let image_id = format!("devcluster://{}", super::images::repository(&image));
    let has_startup = c.startup_probe.is_some();
    let has_readiness = c.readiness_probe.is_some();
    ctx.set_container(kind, idx, |s| {
        s.state = State::Running { started_at: started };
        s.container_id = Some(container_id.clone());
        s.image_id = image_id.clone();
        s.ever_ran = true;
        s.started = !has_startup;
        s.ready = kind == Kind::Regular && !has_startup && !has_readiness;
    });
    tracing::info!(pod = %ctx.name, namespace = %ctx.ns, container = %c.name, pid, "container started");

    let run = CancellationToken::new();
    let unhealthy = CancellationToken::new();
    let probe_task = if kind == Kind::Regular {
        Some(tokio::spawn(probe_loop(ctx.clone(), idx, c.clone(), IpAddr::V4(netns.ip), pid, run.clone(), unhealthy.clone())))
    } else {
        None
    };
    let status = tokio::select! {
        s = child.wait() => Ok(s),
        _ = ctx.stop.cancelled() => Err(true),
        _ = unhealthy.cancelled() => Err(false),
    };
    run.cancel();
    if let Some(t) = probe_task {
        t.abort();
    }
    let outcome = match status {
        Ok(s) => {
            // The leader exited; its children in the group go with it (a container ends with PID 1).
            spawn::signal_group(pid, Signal::SIGKILL);
            let (code, signal) = s.map(spawn::exit_code).unwrap_or((-1, None));
            Outcome::Exited(now_term(code, signal, started, &container_id))
        }
        Err(stopping) => {
            let grace = if stopping {
                lock(&ctx.grace).unwrap_or(30)
            } else {
                ctx.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30)
            };
            let (code, signal) = terminate(&mut child, pid, grace).await;
            let mut t = now_term(code, signal, started, &container_id);
            if !stopping {
                t.message = Some("container failed its liveness probe and was restarted".into());
                Outcome::Exited(t)
            } else {
                Outcome::Stopped(t)
            }
        }
    };
    let _ = std::fs::remove_file(&pidfile);
    tracing::info!(pod = %ctx.name, namespace = %ctx.ns, container = %c.name, "container exited");
    outcome
}

/// SIGTERM to the process group, SIGKILL after `grace` seconds.
async fn terminate(child: &mut tokio::process::Child, pid: u32, grace: i64) -> (i32, Option<i32>) {
    spawn::signal_group(pid, Signal::SIGTERM);
    let grace = Duration::from_secs(grace.max(0) as u64);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            spawn::signal_group(pid, Signal::SIGKILL);
            child.wait().await
        }
    };
    spawn::signal_group(pid, Signal::SIGKILL);
    status.map(spawn::exit_code).unwrap_or((137, Some(9)))
}

/// Startup, liveness and readiness probes of one container run.
async fn probe_loop(ctx: Arc<PodCtx>, idx: usize, c: Container, ip: IpAddr, pid: u32, run: CancellationToken, unhealthy: CancellationToken) {
    // Startup probe first: nothing else runs until it succeeds.
    if let Some(p) = &c.startup_probe {
        let t = probes::timing(p);
        if !sleep_run(&run, t.initial_delay).await {
            return;
        }
        let mut failures = 0;
        loop {
            if probes::check(p, &c, ip, Some(pid)).await {
                break;
            }
            failures += 1;
            if failures >= t.failure_threshold {
                tracing::info!(pod = %ctx.name, container = %c.name, "startup probe failed");
                unhealthy.cancel();
                return;
            }
            if !sleep_run(&run, t.period).await {
                return;
            }
        }
        let no_readiness = c.readiness_probe.is_none();
        ctx.set_container(Kind::Regular, idx, |s| {
            s.started = true;
            if no_readiness {
                s.ready = true;
            }
        });
    }
    let liveness = c.liveness_probe.clone().map(|p| (probes::timing(&p), p));
    let readiness = c.readiness_probe.clone().map(|p| (probes::timing(&p), p));
    let live_task = liveness.map(|(t, p)| {
        let (run, unhealthy, c, ctx) = (run.clone(), unhealthy.clone(), c.clone(), ctx.clone());
        tokio::spawn(async move {
            if !sleep_run(&run, t.initial_delay).await {
                return;
            }
            let mut failures = 0;
            loop {
                if probes::check(&p, &c, ip, Some(pid)).await {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= t.failure_threshold {
                        tracing::info!(pod = %ctx.name, container = %c.name, "liveness probe failed: restarting");
                        unhealthy.cancel();
                        return;
                    }
                }
                if !sleep_run(&run, t.period).await {
                    return;
                }
            }
        })
    });
    if let Some((t, p)) = readiness {
        if sleep_run(&run, t.initial_delay).await {
            let (mut ok, mut bad) = (0u32, 0u32);
            let mut ready = false;
            loop {
                if probes::check(&p, &c, ip, Some(pid)).await {
                    ok += 1;
                    bad = 0;
                    if !ready && ok >= t.success_threshold {
                        ready = true;
                        ctx.set_container(Kind::Regular, idx, |s| s.ready = true);
                    }
                } else {
                    bad += 1;
                    ok = 0;
                    if ready && bad >= t.failure_threshold {
                        ready = false;
                        ctx.set_container(Kind::Regular, idx, |s| s.ready = false);
                    }
                }
                if !sleep_run(&run, t.period).await {
                    break;
                }
            }
        }
    } else {
        run.cancelled().await;
    }
    if let Some(t) = live_task {
        t.abort();
    }
}

async fn sleep_run(run: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = run.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The pod's phase from its containers (as the kubelet computes it).
fn phase(s: &PodState, policy: &str) -> &'static str {
    if s.init_failed {
        return "Failed";
    }
    if !s.initialized {
        return "Pending";
    }
    let all_finished = !s.containers.is_empty() && s.containers.iter().all(|c| c.finished && c.exit_code().is_some());
    if all_finished && policy != "Always" {
        return if s.containers.iter().all(|c| c.exit_code() == Some(0)) { "Succeeded" } else { "Failed" };
    }
    if s.containers.iter().any(|c| c.is_running() || c.ever_ran) {
        return "Running";
    }
    "Pending"
}

fn set_condition(s: &mut PodState, type_: &'static str, status: &'static str) {
    match s.conditions.get(type_) {
        Some((old, _)) if *old == status => {}
        _ => {
            s.conditions.insert(type_, (status, Timestamp::now()));
        }
    }
}

fn compute_status(ctx: &PodCtx) -> Value {
    let mut s = lock(&ctx.state);
    let policy = ctx.restart_policy().to_string();
    let ph = phase(&s, &policy);
    let initialized = s.initialized;
    let containers_ready = s.containers.iter().all(|c| c.ready) && !s.containers.is_empty();
    set_condition(&mut s, "Initialized", if initialized { "True" } else { "False" });
    set_condition(&mut s, "ContainersReady", if containers_ready { "True" } else { "False" });
    set_condition(&mut s, "Ready", if containers_ready { "True" } else { "False" });
    let not_ready: Vec<&str> = s.containers.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
    let conditions: Vec<Value> = s
        .conditions
        .iter()
        .map(|(t, (st, at))| {
            let mut c = json!({ "type": t, "status": st, "lastTransitionTime": Time(*at) });
            if *st == "False" && (*t == "Ready" || *t == "ContainersReady") {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!(format!("containers with unready status: [{}]", not_ready.join(" ")));
            }
            if *st == "False" && *t == "Initialized" {
                c["reason"] = json!("ContainersNotInitialized");
            }
            c
        })
        .collect();
    let mut status = json!({
        "phase": ph,
        "hostIP": ctx.agent.host_ip.to_string(),
        "hostIPs": [{ "ip": ctx.agent.host_ip.to_string() }],
        "startTime": Time(s.start_time),
        "conditions": conditions,
        "containerStatuses": s.containers.iter().map(ContainerState::to_json).collect::<Vec<_>>(),
        // qosClass is left out: the API server computes it at creation and refuses changes.
    });
    if !s.init.is_empty() {
        status["initContainerStatuses"] = json!(s.init.iter().map(ContainerState::to_json).collect::<Vec<_>>());
    }
    if let Some(ip) = s.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{ "ip": ip.to_string() }]);
    }
    status
}

/// Writes the pod status whenever it changes (coalescing bursts), never an unchanged one.
async fn status_writer(ctx: Arc<PodCtx>) {
    let api: Api<Pod> = Api::namespaced(ctx.agent.client.clone(), &ctx.ns);
    let mut last: Option<Value> = None;
    let mut retry = false;
    loop {
        if retry {
            tokio::select! {
                _ = ctx.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        } else {
            ctx.changed.notified().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = compute_status(&ctx);
        if last.as_ref() == Some(&status) {
            retry = false;
            continue;
        }
        match api.patch_status(&ctx.name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await {
            Ok(_) => {
                last = Some(status);
                retry = false;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) => {
                tracing::warn!(pod = %ctx.name, error = %e, "pod status update failed");
                retry = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(containers: Vec<ContainerState>) -> PodState {
        PodState {
            pod_ip: None,
            start_time: Timestamp::now(),
            init: vec![],
            containers,
            initialized: true,
            init_failed: false,
            conditions: Default::default(),
        }
    }

    #[test]
    fn phases() {
        let mut c = ContainerState::new("a", "x");
        assert_eq!(phase(&state(vec![c.clone()]), "Always"), "Pending");
        c.state = State::Running { started_at: Timestamp::now() };
        c.ever_ran = true;
        assert_eq!(phase(&state(vec![c.clone()]), "Always"), "Running");
        c.state = State::Terminated(now_term(0, None, Timestamp::now(), "id"));
        c.finished = true;
        assert_eq!(phase(&state(vec![c.clone()]), "Never"), "Succeeded");
        c.state = State::Terminated(now_term(3, None, Timestamp::now(), "id"));
        assert_eq!(phase(&state(vec![c.clone()]), "Never"), "Failed");
        let mut s = state(vec![c]);
        s.initialized = false;
        assert_eq!(phase(&s, "Always"), "Pending");
    }
}
