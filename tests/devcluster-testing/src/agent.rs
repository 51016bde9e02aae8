//! The session agent (`wa-session`) as a host process against the devcluster API, with real
//! Chromium: the one harness of the agent's and the plugin's suites.
//!
//! A suite names its binary and its settings once ([`AgentProgram`]); each test starts agents
//! from it with [`AgentOpts`].

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::chromium::{chromium_pids, kill9};
use crate::{TestCluster, free_port, wait_for_named};

/// How a suite runs the agent: the binary under test and the settings (`WA_*` environment,
/// such as fast QR lifetimes) every agent of the suite gets before a test's own.
pub struct AgentProgram {
    pub program: PathBuf,
    pub env: Vec<(&'static str, &'static str)>,
}

/// One agent of a test: session `ns/name` on WhatsApp Web at `url`, its data (profile,
/// backups) in `data_dir`, talking to the API with `kubeconfig` (in a pod it has its own
/// ServiceAccount; what it writes is the same), with `extra_env` over the suite's settings.
pub struct AgentOpts<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub url: &'a str,
    pub data_dir: &'a Path,
    pub kubeconfig: PathBuf,
    pub extra_env: Vec<(&'a str, String)>,
}

/// A running `wa-session` host process; killed with its Chromium when dropped.
pub struct Agent {
    pub child: Child,
    pub data_dir: PathBuf,
    /// Its HTTP server (health, metrics): `http://127.0.0.1:<port>`.
    pub http: String,
    pub log: PathBuf,
}

impl AgentProgram {
    pub fn start(&self, o: AgentOpts<'_>) -> Agent {
        self.spawn(o, false)
    }

    /// As [`Self::start`], the agent leading a process group of its own, as a container's
    /// process does: [`Agent::terminate_group`] then signals the group like the devcluster node
    /// (or `tini -g`) does when the pod is deleted.
    pub fn start_pod(&self, o: AgentOpts<'_>) -> Agent {
        self.spawn(o, true)
    }

    /// An agent for session `name` in `ns` on WhatsApp Web at `url`, with an empty profile in
    /// a temporary dir; the dir is returned first so that, bound in that order, it outlives
    /// the agent.
    pub fn start_on_empty_profile(
        &self,
        c: &TestCluster,
        ns: &str,
        name: &str,
        url: &str,
        extra_env: Vec<(&'static str, String)>,
    ) -> (tempfile::TempDir, Agent) {
        let tmp = tempfile::tempdir().expect("tmp");
        let agent = self.start(AgentOpts {
            ns,
            name,
            url,
            data_dir: &tmp.path().join("data"),
            kubeconfig: c.kubeconfig(),
            extra_env,
        });
        (tmp, agent)
    }

    fn spawn(&self, o: AgentOpts<'_>, own_group: bool) -> Agent {
        let port = free_port();
        let log = o.data_dir.with_extension(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(&self.program);
        cmd.env("WA_SESSION_NAME", o.name)
            .env("WA_SESSION_NAMESPACE", o.ns)
            .env("WA_URL", o.url)
            .env("WA_DATA_DIR", o.data_dir)
            .env("WA_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &o.kubeconfig)
            .env("WA_POLL_INTERVAL", "200ms")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().copied())
            .envs(o.extra_env)
            .stdout(Stdio::from(file.try_clone().expect("dup")))
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        if own_group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        eprintln!("agent log: {}", log.display());
        Agent {
            child,
            data_dir: o.data_dir.to_path_buf(),
            http: format!("http://127.0.0.1:{port}"),
            log,
        }
    }
}

impl Agent {
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
        kill9(&pids);
        wait_for_named("Chromium killed", Duration::from_secs(10), || {
            let left = chromium_pids(&self.profile());
            async move { left.is_empty() }
        })
        .await;
    }

    /// SIGTERM, then the exit status (panics if it takes longer than `within`).
    pub async fn terminate(self, within: Duration) -> ExitStatus {
        let pid = self.child.id().expect("running");
        self.signalled(&["-TERM", &pid.to_string()], within).await
    }

    /// SIGTERM to the agent's whole process group (started with [`AgentProgram::start_pod`]),
    /// then the exit status (panics if it takes longer than `within`).
    pub async fn terminate_group(self, within: Duration) -> ExitStatus {
        let pid = self.child.id().expect("running");
        self.signalled(&["-TERM", "--", &format!("-{pid}")], within)
            .await
    }

    async fn signalled(mut self, kill_args: &[&str], within: Duration) -> ExitStatus {
        let _ = std::process::Command::new("kill").args(kill_args).status();
        self.exited(within).await
    }

    /// Waits for the agent to exit on its own (panics if it takes longer than `within`).
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("agent exits in time")
            .expect("wait")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An agent killed by `kill_on_drop` (SIGKILL) leaves its Chromium behind on a host (in a pod
/// the container's end takes it along), so a finished test kills that Chromium itself.
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        kill9(&self.chromium_pids());
    }
}
