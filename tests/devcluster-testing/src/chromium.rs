//! Finding the Chromium processes of an agent on this host, by the profile they use.

use std::path::Path;

/// PIDs of the Chromium processes using `profile` (`--user-data-dir`), with their children
/// (renderers, utilities) whose command lines may not name it.
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

/// `kill -9` of `pids` (nothing when empty).
pub fn kill9(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .status();
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
