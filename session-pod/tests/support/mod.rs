//! Test harness: the real agent binary as a host process against the devcluster API, real
//! Chromium, and the fake WhatsApp Web (in-process) with fast timings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crds::{WhatsAppSession, WhatsAppSessionSpec, WhatsAppSessionStatus};
use devcluster::testing::{TestCluster, free_port, sessions, wait_for_value};
use fake_whatsapp::{FakeWhatsApp, Generation, Timings};
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::process::{Child, Command};

pub const PHONE: &str = "5491122334455";

pub async fn cluster() -> &'static TestCluster {
    let c = devcluster::testing::cluster().await;
    sessions::install_crd(&c.client()).await;
    c
}

/// The fake (newest generation) with QRs of `first`/`next` and `max` per round.
pub async fn fake(first: Duration, next: Duration, max: u32) -> FakeWhatsApp {
    fake_in(Generation::default(), first, next, max).await
}

/// The fake serving generation `g` of WhatsApp Web, with QRs of `first`/`next` and `max` per round.
pub async fn fake_in(g: Generation, first: Duration, next: Duration, max: u32) -> FakeWhatsApp {
    let mut t = Timings::fast(next, max);
    t.first_qr = first;
    FakeWhatsApp::start_generation("127.0.0.1:0".parse().expect("addr"), t, g)
        .await
        .expect("fake starts")
}

pub async fn create_session(c: &TestCluster, ns: &str, name: &str) -> Api<WhatsAppSession> {
    create_session_with(c, ns, name, WhatsAppSessionSpec::default()).await
}

/// Creates the CR with `spec` (tenant `acme` when empty).
pub async fn create_session_with(
    c: &TestCluster,
    ns: &str,
    name: &str,
    spec: WhatsAppSessionSpec,
) -> Api<WhatsAppSession> {
    let api: Api<WhatsAppSession> = Api::namespaced(c.client(), ns);
    sessions::create(&api, name, serde_json::to_value(spec).expect("spec json")).await;
    api
}

pub async fn status(api: &Api<WhatsAppSession>, name: &str) -> WhatsAppSessionStatus {
    api.get(name)
        .await
        .expect("get CR")
        .status
        .unwrap_or_default()
}

/// Waits until the CR status satisfies `pred`, returning it.
pub async fn wait_status(
    api: &Api<WhatsAppSession>,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&WhatsAppSessionStatus) -> bool,
) -> WhatsAppSessionStatus {
    wait_for_value(what, timeout, || async {
        let s = api.get(name).await.ok()?.status?;
        pred(&s).then_some(s)
    })
    .await
}

/// Sets `spec.<field>` to now and returns the value as stored.
pub async fn request(
    api: &Api<WhatsAppSession>,
    name: &str,
    field: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({ "spec": { field: now } });
    let cr = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec");
    let spec = serde_json::to_value(&cr.spec).expect("spec json");
    serde_json::from_value(spec[field].clone()).expect("time")
}

/// Overwrites the agent's status with just `status: init` (as field manager wa-agent), so a
/// test can tell that a new agent published what follows.
pub async fn reset_status(api: &Api<WhatsAppSession>, name: &str) {
    let init = crds::WhatsAppSessionStatus {
        status: Some(crds::SessionState::Init),
        ..Default::default()
    };
    crds::SessionApply::status(name, init)
        .apply(api, crds::Writer::Agent)
        .await
        .expect("reset status");
}

pub async fn fake_post(fake_url: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{}", fake_url.trim_end_matches('/'), path))
        .json(&body)
        .send()
        .await
        .expect("fake control API")
}

pub async fn fake_devices(fake_url: &str) -> serde_json::Value {
    reqwest::get(format!("{}/_fake/devices", fake_url.trim_end_matches('/')))
        .await
        .expect("devices")
        .json()
        .await
        .expect("json")
}

pub async fn scan(fake_url: &str, qr: &str) {
    let r = fake_post(
        fake_url,
        "/_fake/scan",
        serde_json::json!({"qr": qr, "phone": PHONE, "pushName": "Ana"}),
    )
    .await;
    assert!(
        r.status().is_success(),
        "scan: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
}

/// A running `wa-session` host process.
pub struct Agent {
    pub child: Child,
    pub data_dir: PathBuf,
    pub http: String,
    pub log: PathBuf,
}

pub struct AgentOpts<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub url: &'a str,
    pub data_dir: &'a Path,
    pub kubeconfig: PathBuf,
    pub extra_env: Vec<(&'a str, String)>,
}

impl Agent {
    pub fn start(o: AgentOpts<'_>) -> Agent {
        Self::spawn(o, false)
    }

    /// As [`Self::start`], the agent leading a process group of its own, as a container's
    /// process does: [`Self::terminate_group`] then signals the group like the devcluster node
    /// (or `tini -g`) does when the pod is deleted.
    pub fn start_pod(o: AgentOpts<'_>) -> Agent {
        Self::spawn(o, true)
    }

    fn spawn(o: AgentOpts<'_>, own_group: bool) -> Agent {
        let port = free_port();
        let log = o.data_dir.with_extension(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wa-session"));
        cmd.env("WA_SESSION_NAME", o.name)
            .env("WA_SESSION_NAMESPACE", o.ns)
            .env("WA_URL", o.url)
            .env("WA_DATA_DIR", o.data_dir)
            .env("WA_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &o.kubeconfig)
            .env("WA_QR_FIRST_TTL", "3s")
            .env("WA_QR_NEXT_TTL", "2s")
            .env("WA_POLL_INTERVAL", "200ms")
            .env("WA_TAKEOVER_DELAY", "2s")
            .env("WA_CDP_TIMEOUT", "5s")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(file.try_clone().expect("dup")))
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        if let Ok(p) = std::env::var("CHROMIUM_PATH") {
            cmd.env("CHROMIUM_PATH", p);
        }
        for (k, v) in o.extra_env {
            cmd.env(k, v);
        }
        if own_group {
            cmd.process_group(0);
        }
        let child = cmd.spawn().expect("spawn wa-session");
        eprintln!("agent log: {}", log.display());
        Agent {
            child,
            data_dir: o.data_dir.to_path_buf(),
            http: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn profile(&self) -> PathBuf {
        self.data_dir.join("profile")
    }

    /// PIDs of Chromium processes using this agent's profile.
    pub fn chromium_pids(&self) -> Vec<u32> {
        chromium_pids(&self.profile())
    }

    /// kill -9 the agent and its Chromium (as a node failure would).
    pub async fn kill9(mut self) {
        let pids = self.chromium_pids();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        devcluster::testing::wait_for_named("Chromium killed", Duration::from_secs(10), || {
            let left = chromium_pids(&self.profile());
            async move { left.is_empty() }
        })
        .await;
    }

    /// SIGTERM, then the exit status (panics if it takes longer than `within`).
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("agent exits in time")
            .expect("wait")
    }

    /// SIGTERM to the agent's whole process group (started with [`Self::start_pod`]), then the
    /// exit status (panics if it takes longer than `within`).
    pub async fn terminate_group(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status();
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("agent exits in time")
            .expect("wait")
    }

    /// Waits for the agent to exit on its own (panics if it takes longer than `within`).
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("agent exits in time")
            .expect("wait")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An agent for session `name` in `ns` on WhatsApp Web at `url`, with an empty profile in a
/// temporary dir; the dir is returned first so that, bound in that order, it outlives the agent.
pub fn start_on_empty_profile(
    c: &TestCluster,
    ns: &str,
    name: &str,
    url: &str,
    extra_env: Vec<(&'static str, String)>,
) -> (tempfile::TempDir, Agent) {
    let tmp = tempfile::tempdir().expect("tmp");
    let agent = Agent::start(AgentOpts {
        ns,
        name,
        url,
        data_dir: &tmp.path().join("data"),
        kubeconfig: c.kubeconfig(),
        extra_env,
    });
    (tmp, agent)
}

/// An agent killed by `kill_on_drop` (SIGKILL) leaves its Chromium behind on a host (in a pod
/// the container's end takes it along), so a finished test kills that Chromium itself.
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let pids: Vec<String> = self.chromium_pids().iter().map(u32::to_string).collect();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .args(&pids)
                .status();
        }
    }
}

pub fn chromium_pids(profile: &Path) -> Vec<u32> {
    let needle = format!("--user-data-dir={}", profile.display());
    let mut all: Vec<(u32, u32)> = Vec::new();
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // ppid is the 2nd field after the parenthesised command name.
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')').and_then(|(_, rest)| {
                    rest.split_whitespace().nth(1).and_then(|p| p.parse().ok())
                })
            })
            .unwrap_or(0);
        all.push((pid, ppid));
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    // Children (renderers, utilities) whose command lines may not name the profile.
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        for (pid, ppid) in &all {
            if *ppid == parent && !pids.contains(pid) {
                pids.push(*pid);
            }
        }
        i += 1;
    }
    pids
}

/// A `kB` field of `/proc/<pid>/smaps_rollup` (e.g. `Pss`), summed over `pids`.
pub fn smaps_kb(pids: &[u32], field: &str) -> u64 {
    let prefix = format!("{field}:");
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Proportional set size (kB): shared pages divided among the processes mapping them, so
/// Chromium's binary, mapped by each of its processes, counts once across the tree (but also
/// gets split with any other Chromium on the host).
pub fn pss_kb(pids: &[u32]) -> u64 {
    smaps_kb(pids, "Pss")
}

/// Unique set size (kB): pages only one process maps; what killing the tree would free.
pub fn uss_kb(pids: &[u32]) -> u64 {
    smaps_kb(pids, "Private_Clean") + smaps_kb(pids, "Private_Dirty")
}

/// The command line of a process, one argument per element.
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a Chromium process is: `browser`, or its `--type=` (`renderer`, `utility:<service>`,
/// ...). Chromium's child processes rewrite their command line as one space-separated
/// string, so this looks for the switches in the joined text.
pub fn chromium_kind(pid: u32) -> String {
    let text = cmdline(pid).join(" ");
    let switch = |name: &str| {
        text.split(' ')
            .find_map(|a| a.strip_prefix(name))
            .map(str::to_string)
    };
    match (switch("--type="), switch("--utility-sub-type=")) {
        (Some(t), Some(sub)) => format!("{t}:{sub}"),
        (Some(t), None) => t,
        (None, _) => "browser".into(),
    }
}

/// Resident memory (kB) of the given processes.
pub fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}
