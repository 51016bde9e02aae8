//! The Chromium process: started in a process group of its own that dies with the agent, and
//! killed with that whole group when its guard is dropped, so no path out of a launch or a
//! browser's life leaves a Chromium behind on the profile.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, Command};

use crate::config::Config;
use crate::error::{Error, Result};

use super::command_line::chromium_args;

/// Chromium's browser process, leader of its own process group. Dropping it kills the group.
pub(super) struct Chromium {
    child: Child,
    /// The browser process's PID, which is its process group's ID, until the group is killed.
    group: Option<Pid>,
}

impl Chromium {
    /// Starts Chromium with the agent's flags and `--remote-debugging-port=0`, in a process
    /// group of its own. A signal meant for the agent's group — the devcluster node and
    /// `tini -g` send SIGTERM to the container's whole process group, a terminal's Ctrl-C goes
    /// to the foreground group — then reaches only the agent, which closes Chromium in order
    /// ([`super::BrowserSession::close`]). In the agent's group, Chromium's renderer and storage
    /// service would get SIGTERM too and die at once, cutting the CDP connection and possibly
    /// the last writes to the profile. `PR_SET_PDEATHSIG` makes Chromium die with the agent's
    /// thread that started it (a tokio worker thread, which lives as long as the runtime:
    /// nothing in the agent or its dependencies calls `block_in_place`, which would retire it),
    /// so a SIGKILLed agent does not leave a browser behind on the profile; in a pod the
    /// container's end takes the rest of the group along.
    pub(super) fn spawn(
        cfg: &Config,
        profile_dir: &Path,
        start_page: Option<&str>,
    ) -> Result<Self> {
        let mut cmd = Command::new(&cfg.chromium_path);
        cmd.args(chromium_args(cfg))
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            // After "--": a URL is never read as a switch.
            .args(start_page.map(|url| ["--", url]).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec; prctl(2) is
        // async-signal-safe and touches no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Launch(format!("{}: {e}", cfg.chromium_path.display())))?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        Ok(Self { child, group })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(super) fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// How the browser process ended, if it has.
    pub(super) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the browser process to exit.
    pub(super) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends the browser process SIGTERM, which Chromium handles as a clean shutdown; usable
    /// while its exit is awaited.
    pub(super) fn terminator(&self) -> impl Fn() + use<> {
        let pid = self.group;
        move || {
            if let Some(pid) = pid {
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
    }

    /// SIGKILL to the whole process group (a renderer stuck in JavaScript would not notice its
    /// browser process dying, and children that outlived the browser process go too), then
    /// reaps the browser process.
    pub(super) async fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// SIGKILL to the process group, once.
    fn kill_group(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for Chromium {
    /// The browser process is reaped in the background (`kill_on_drop`).
    fn drop(&mut self) {
        self.kill_group();
    }
}
