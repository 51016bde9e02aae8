//! Restart on OOM: when any process of the agent's container is killed for exceeding the
//! container's memory limit, the agent ends the container at once, so the kubelet restarts it
//! and the session restores from the profile — the behaviour of cgroup v2 nodes, where the
//! kubelet sets `memory.oom.group` and the kernel kills the whole container.
//!
//! Why the agent has to do it (docs/session-agent.md, "Memory limit"): on cgroup v1 the kernel
//! kills only the task with the highest badness (`rss + oom_score_adj × limit / 1000`), and that
//! is Chromium's renderer: Chromium sets its renderer's `oom_score_adj` to 300 itself, and the
//! renderer holds most of the memory. The agent would survive, relaunch Chromium
//! (`BROWSER_CRASHED`) and the container would never be restarted: no `OOMKilled`, no restart
//! count, nothing for an operator to see. Raising the agent's own `oom_score_adj` to 1000 does not
//! change that (at most `1000 × limit / 1000` = the limit, less than a renderer at 300 that holds
//! more than 70 % of the limit). So the agent watches the container's OOM-kill counter instead.
//!
//! Only a container with a memory limit is watched (outside a pod, or without a limit, nothing
//! is). The counter is read every [`POLL`]: cgroup v2 `memory.events`, v1
//! `memory/memory.oom_control` (`oom_kill N`, the container's own kills on v1).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the counter is read.
pub const POLL: Duration = Duration::from_millis(500);

/// Where the container's memory cgroup is mounted in a container (runc, crun).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The counter of a limited memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    /// `memory.events` (v2) or `memory.oom_control` (v1).
    pub file: PathBuf,
    /// The memory limit in bytes.
    pub limit: u64,
}

impl OomCounter {
    /// The counter under `root` (v2 first, then v1), if its cgroup has a memory limit.
    pub fn find(root: &Path) -> Option<Self> {
        [
            ("memory.events", "memory.max"),
            ("memory/memory.oom_control", "memory/memory.limit_in_bytes"),
        ]
        .into_iter()
        .find_map(|(events, limit)| {
            let file = root.join(events);
            oom_kills(&std::fs::read_to_string(&file).ok()?)?;
            let limit = memory_limit(&std::fs::read_to_string(root.join(limit)).ok()?)?;
            Some(OomCounter { file, limit })
        })
    }

    /// OOM kills so far (`None` when the file cannot be read).
    pub fn read(&self) -> Option<u64> {
        oom_kills(&std::fs::read_to_string(&self.file).ok()?)
    }
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
pub fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// A memory limit in bytes; `None` for none (v2 `max`, v1's page-counter maximum).
pub fn memory_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&b| b < 1 << 60)
}

/// Starts the watch (a thread of its own, so a stalled async runtime does not delay it). When
/// the counter moves, logs it and ends the agent with SIGKILL: tini, the container's PID 1,
/// then exits 137 and the kernel kills the rest of the container (Chromium) with it, as an OOM
/// kill of the whole container would.
pub fn watch_container() {
    let Some(counter) = OomCounter::find(Path::new(CGROUP_ROOT)) else {
        tracing::debug!("no memory limit on this cgroup: not watching for OOM kills");
        return;
    };
    let Some(baseline) = counter.read() else {
        return;
    };
    tracing::info!(file = %counter.file.display(), limit_bytes = counter.limit, oom_kills = baseline, "watching the container for OOM kills");
    let spawned = std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                let Some(now) = counter.read() else { continue };
                if now > baseline {
                    end_container(now - baseline, counter.limit);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the OOM watch");
    }
}

fn end_container(kills: u64, limit: u64) -> ! {
    tracing::error!(
        oom_kills = kills,
        limit_bytes = limit,
        "a process of this container was killed for exceeding its memory limit: ending the container (SIGKILL) so that it is restarted"
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counter_of_either_cgroup_version() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!((oom_kills(v1), oom_kills(v2)), (Some(3), Some(1)));
        assert_eq!(oom_kills("oom_group_kill 4\n"), None);
        assert_eq!(memory_limit("671088640\n"), Some(671088640));
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(
            memory_limit("9223372036854771712\n"),
            None,
            "v1 without a limit"
        );
    }

    #[test]
    fn only_a_limited_cgroup_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, t: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        write(
            "memory/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(OomCounter::find(dir.path()), None);
        write("memory/memory.limit_in_bytes", "671088640\n");
        let c = OomCounter::find(dir.path()).expect("v1 counter");
        assert_eq!((c.limit, c.read()), (671088640, Some(0)));
        write(
            "memory/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert_eq!(c.read(), Some(1));
        // v2 is preferred when both are there
        write("memory.events", "oom 0\noom_kill 0\n");
        write("memory.max", "max\n");
        assert_eq!(
            OomCounter::find(dir.path()).map(|c| c.file),
            Some(dir.path().join("memory/memory.oom_control"))
        );
        write("memory.max", "1073741824\n");
        assert_eq!(
            OomCounter::find(dir.path()).map(|c| c.file),
            Some(dir.path().join("memory.events"))
        );
    }
}
