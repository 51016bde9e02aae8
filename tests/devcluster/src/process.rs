//! Child processes of the supervisor (etcd, kube-apiserver, ...): spawned so that they die
//! with it, recorded in pidfiles so a later `up`/`down` can remove what a killed supervisor
//! left, and stopped with SIGTERM then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("starting {component} ({program}): {source}")]
    Spawn {
        component: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a component was started, kept so `devcluster restart` can start it again the same way.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

/// A running control-plane process.
pub struct Component {
    pub name: String,
    child: tokio::process::Child,
    pidfile: PathBuf,
    spec: SpawnSpec,
}

impl Component {
    /// Starts `program args`, output appended to `log`, pid written to `pidfile`. The child
    /// gets SIGKILL when the supervisor dies, so a killed supervisor leaves no control plane.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        pidfile: &Path,
    ) -> Result<Self, ProcessError> {
        Self::spawn_spec(SpawnSpec {
            name: name.into(),
            program: program.into(),
            args: args.to_vec(),
            log: log.into(),
            pidfile: pidfile.into(),
        })
    }

    /// Starts the process again from the spec it was first started with (same program,
    /// arguments, log and pidfile); the caller has stopped the old one.
    pub fn respawn(&self) -> Result<Self, ProcessError> {
        Self::spawn_spec(self.spec.clone())
    }

    /// The program and arguments this component runs with.
    pub fn spec(&self) -> &SpawnSpec {
        &self.spec
    }

    fn spawn_spec(spec: SpawnSpec) -> Result<Self, ProcessError> {
        let (name, program, args, log, pidfile) = (
            spec.name.as_str(),
            spec.program.as_path(),
            spec.args.as_slice(),
            spec.log.as_path(),
            spec.pidfile.as_path(),
        );
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ProcessError::Io {
                path: path.clone(),
                source,
            }
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(log))?;
        let err = out.try_clone().map_err(io(log))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                // PDEATHSIG fires when the forking *thread* exits; the supervisor spawns from
                // tokio worker threads, which live as long as the supervisor.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // the supervisor may have died before prctl took effect
                if libc::getppid() as u32 != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            component: name.into(),
            program: program.into(),
            source,
        })?;
        if let Some(pid) = child.id() {
            std::fs::write(pidfile, pid.to_string()).map_err(io(pidfile))?;
        }
        Ok(Self {
            name: name.into(),
            child,
            pidfile: pidfile.into(),
            spec: spec.clone(),
        })
    }

    /// The process id while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(description)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Waits until the process exits (for supervision).
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; removes the pidfile.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(component = %self.name, "did not stop after SIGTERM; killing");
                let _ = self.child.kill().await;
            }
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }

    /// SIGKILL at once (what a crash is) and reap it; removes the pidfile.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

/// The first of `components` to exit: its name and exit status (for supervision; the
/// components are never empty there, and `select_all` needs at least one).
pub async fn first_exit(components: &mut [Component]) -> (String, String) {
    let exits = components.iter_mut().map(|c| {
        Box::pin(async move {
            let status = c.wait().await;
            (c.name.clone(), status)
        })
    });
    futures::future::select_all(exits).await.0
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state letter follows the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Whether `pid`'s command line mentions `needle` (guards against a reused pid).
pub fn cmdline_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .contains(needle)
        })
        .unwrap_or(false)
}

pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kills (SIGKILL) every process recorded in a pidfile of `dir` whose command line mentions
/// `state_dir`, waits for it to go, and removes the pidfiles. Returns the components killed.
pub async fn kill_leftovers(dir: &Path, state_dir: &Path) -> Vec<String> {
    let needle = state_dir.to_string_lossy().to_string();
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(pid) = read_pidfile(&path)
            && alive(pid)
            && cmdline_contains(pid, &needle)
        {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(5)).await;
            killed.push(
                path.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default(),
            );
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Polls until `pid` is gone or `timeout` passes; true when gone.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The last `lines` lines of a log file (for failure reports).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_bogus_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn tail_returns_last_lines() {
        let p = std::env::temp_dir().join(format!("devcluster-tail-{}", std::process::id()));
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        std::fs::remove_file(p).unwrap();
    }
}
