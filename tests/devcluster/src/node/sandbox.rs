//! The node's place on the machine, so that several clusters share it and `down` leaves it as
//! found:
//! - a network namespace `dc-<hash>-node` linked to the host by a veth pair (host side
//!   `dc-<hash>`, node side `eth0`), the host routing the node's pod subnet to it: the
//!   kubelet, kube-proxy's iptables rules, CoreDNS and the CNI bridge live there;
//! - a private mount namespace, held by a `sleep` process, in which `/run`, `/var/lib` and
//!   `/var/log` are the state dir's (containerd's socket path, the kubelet's fixed
//!   `/var/lib/kubelet/...` paths, `/var/log/pods`): nothing is written to the host's;
//! - a cgroup `/dc-<hash>` in every hierarchy: the node's own processes in `node/`, the pods
//!   in `kubepods/` (the kubelet's cgroupRoot). Removing the node kills every process in it
//!   (container shims and pod processes included) and removes the cgroups;
//! - the global sysctls the kubelet sets (`vm.overcommit_memory`, `kernel.panic`,
//!   `kernel.panic_on_oops`), recorded before the first node of the machine starts and
//!   restored when the last one goes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::state::NodePlan;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, SandboxError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SandboxError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SandboxError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FNV-1a: a stable hash (std's hashers are not guaranteed stable across releases).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// `dc-<8 hex>`: the prefix of a cluster's names on the machine, from its state dir.
pub fn cluster_prefix(state_dir: &Path) -> String {
    let abs = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    format!("dc-{:08x}", fnv1a(abs.to_string_lossy().as_bytes()))
}

/// The names of one node's namespace, link and cgroup, from the cluster prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub netns: String,
    pub host_link: String,
    /// The node side before it moves into the namespace and becomes `eth0`.
    pub node_link: String,
    /// `/dc-<hash>`: the kubelet's cgroupRoot.
    pub cgroup: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        let hash = prefix.trim_start_matches("dc-");
        Self {
            netns: format!("{prefix}-node"),
            host_link: prefix.to_string(),
            node_link: format!("dcn-{hash}"),
            cgroup: format!("/{prefix}"),
        }
    }
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }
}

/// Creates the node's network namespace and link (removing leftovers of the same name).
pub fn create_network(names: &Names, plan: &NodePlan) -> Result<(), SandboxError> {
    remove_network(names);
    let ns = names.netns.as_str();
    let host_cidr = format!("{}/{}", plan.host_ip, plan.link_prefix);
    let node_cidr = format!("{}/{}", plan.node_ip, plan.link_prefix);
    let host_ip = plan.host_ip.to_string();
    let pods = plan.pods.to_string();
    let node_ip = plan.node_ip.to_string();
    run("ip", &["netns", "add", ns])?;
    run(
        "ip",
        &[
            "link",
            "add",
            &names.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &names.node_link,
            "netns",
            ns,
        ],
    )?;
    run("ip", &["addr", "add", &host_cidr, "dev", &names.host_link])?;
    run("ip", &["link", "set", &names.host_link, "up"])?;
    run(
        "ip",
        &["-n", ns, "link", "set", &names.node_link, "name", "eth0"],
    )?;
    run("ip", &["-n", ns, "addr", "add", &node_cidr, "dev", "eth0"])?;
    run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
    run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    run(
        "ip",
        &["-n", ns, "route", "add", "default", "via", &host_ip],
    )?;
    run("ip", &["route", "add", &pods, "via", &node_ip])?;
    // The node routes between its pods and the host; bridged pod traffic goes through
    // iptables so a pod reaching a Service backed by a pod on the same bridge is un-NATed.
    let netns_arg = format!("--net={}", names.netns_path().display());
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.bridge.bridge-nf-call-iptables=1",
    ] {
        run("nsenter", &[&netns_arg, "--", "sysctl", "-q", "-w", kv])?;
    }
    Ok(())
}

/// Removes the namespace (and with it the node's iptables rules and the pod bridge) and the
/// link; quiet when they are gone.
pub fn remove_network(names: &Names) {
    let _ = run("ip", &["link", "del", &names.host_link]);
    let _ = run("ip", &["netns", "del", &names.netns]);
}

/// The command line that runs `program args` inside the node (its network and mount
/// namespaces, through the holder process).
pub fn in_node(holder: u32, program: &Path, args: &[String]) -> Vec<String> {
    let mut v = vec![
        "--target".to_string(),
        holder.to_string(),
        "--mount".into(),
        "--net".into(),
        "--".into(),
    ];
    v.push(program.display().to_string());
    v.extend(args.iter().cloned());
    v
}

/// The holder of the node's mount namespace: `sleep` in the node's network namespace and a
/// new private mount namespace (program and arguments for `Component::spawn`).
pub fn holder_command(names: &Names) -> (PathBuf, Vec<String>) {
    (
        PathBuf::from("nsenter"),
        vec![
            format!("--net={}", names.netns_path().display()),
            "--".into(),
            "unshare".into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "--".into(),
            "sleep".into(),
            "infinity".into(),
        ],
    )
}

/// Inside the holder's mount namespace: a tmpfs on `/run`, and the state dir's `var-lib` and
/// `var-log` on `/var/lib` and `/var/log`.
pub fn mount_node_paths(holder: u32, node_dir: &Path) -> Result<(), SandboxError> {
    let t = holder.to_string();
    let mut args_of = Vec::new();
    args_of.push(vec![
        "-t".to_string(),
        "tmpfs".into(),
        "-o".into(),
        "mode=755,size=256m".into(),
        "tmpfs".into(),
        "/run".into(),
    ]);
    for (dir, target) in [("var-lib", "/var/lib"), ("var-log", "/var/log")] {
        let src = node_dir.join(dir);
        std::fs::create_dir_all(&src).map_err(io(&src))?;
        args_of.push(vec![
            "--bind".into(),
            src.display().to_string(),
            target.into(),
        ]);
    }
    for args in args_of {
        let mut full = vec!["--target", &t, "--mount", "--", "mount"];
        full.extend(args.iter().map(String::as_str));
        run("nsenter", &full)?;
    }
    Ok(())
}

/// Mount points of the cgroup hierarchies (v1 controllers, and the unified v2 one).
fn cgroup_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Creates `<root>/node` in every hierarchy (cpuset ones get their parent's cpus and mems, as
/// a new v1 cpuset starts empty) and moves `pid` into it.
pub fn create_cgroups(names: &Names, pid: u32) -> Result<(), SandboxError> {
    let rel = names.cgroup.trim_start_matches('/');
    for mount in cgroup_mounts() {
        let root = mount.join(rel);
        let node = root.join("node");
        std::fs::create_dir_all(&node).map_err(io(&node))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(mount.join(file)) {
                for dir in [&root, &node] {
                    let p = dir.join(file);
                    if std::fs::read_to_string(&p)
                        .map(|c| c.trim().is_empty())
                        .unwrap_or(false)
                    {
                        std::fs::write(&p, v.trim()).map_err(io(&p))?;
                    }
                }
            }
        }
    }
    join_node_cgroup(names, pid)
}

/// Moves `pid` into the node's `node` cgroups. Every node part is moved right after it is
/// spawned (nsenter enters namespaces, not cgroups), before it forks: containerd's shims then
/// start inside, so removing the node finds them.
pub fn join_node_cgroup(names: &Names, pid: u32) -> Result<(), SandboxError> {
    let rel = names.cgroup.trim_start_matches('/');
    for mount in cgroup_mounts() {
        let procs = mount.join(rel).join("node").join("cgroup.procs");
        // the unified hierarchy of a hybrid system may refuse (controllers elsewhere): the v1
        // hierarchies are the ones that count
        if let Err(e) = std::fs::write(&procs, pid.to_string())
            && mount.file_name().is_some_and(|n| n != "unified")
        {
            return Err(SandboxError::Io {
                path: procs,
                source: e,
            });
        }
    }
    Ok(())
}

/// Every process in the node's cgroups (node parts, shims, pods), read from each hierarchy.
fn processes(names: &Names) -> Vec<i32> {
    let rel = names.cgroup.trim_start_matches('/');
    let mut pids = Vec::new();
    for mount in cgroup_mounts() {
        collect_procs(&mount.join(rel), &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_procs(&entry.path(), out);
        }
    }
}

/// Kills every process of the node (SIGKILL, repeated until none is left or 10 s passed) and
/// removes its cgroups, deepest first. Returns how many processes were killed.
pub fn kill_and_remove_cgroups(names: &Names) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killed = std::collections::BTreeSet::new();
    loop {
        let pids = processes(names);
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rel = names.cgroup.trim_start_matches('/');
    for mount in cgroup_mounts() {
        remove_tree(&mount.join(rel));
    }
    killed.len()
}

/// rmdir of a cgroup tree, children first (cgroup directories hold only pseudo-files).
fn remove_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path());
        }
    }
    // a cgroup whose last process has just died may be busy for a moment
    for _ in 0..20 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// The global sysctls the kubelet changes (`protectKernelDefaults: false`).
const KUBELET_SYSCTLS: [&str; 3] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];

/// Other devcluster nodes running on this machine (their network namespaces).
fn other_nodes(names: &Names) -> bool {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("dc-") && n.ends_with("-node") && n != names.netns
        })
}

/// Before the kubelet starts: when this is the machine's only node, records the sysctls'
/// values in `record` (the machine as found).
pub fn record_sysctls(names: &Names, record: &Path) -> Result<(), SandboxError> {
    if other_nodes(names) {
        return Ok(());
    }
    let mut text = String::new();
    for key in KUBELET_SYSCTLS {
        let p = Path::new("/proc/sys").join(key);
        let v = std::fs::read_to_string(&p).map_err(io(&p))?;
        text.push_str(&format!("{key}={}\n", v.trim()));
    }
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(record, text).map_err(io(record))
}

/// After the node is gone: when no other node runs, puts the recorded values back and
/// removes the record.
pub fn restore_sysctls(names: &Names, record: &Path) {
    if other_nodes(names) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(record) else {
        return;
    };
    for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
        if KUBELET_SYSCTLS.contains(&key) {
            let p = Path::new("/proc/sys").join(key);
            if let Err(e) = std::fs::write(&p, value) {
                tracing::warn!(path = %p.display(), error = %e, "restoring a sysctl");
            }
        }
    }
    let _ = std::fs::remove_file(record);
}

/// The node's address as seen from the host, for messages.
pub fn describe(plan: &NodePlan) -> String {
    format!(
        "node {} (host side {}), pods {}",
        plan.node_ip, plan.host_ip, plan.pods
    )
}

/// The first nameserver of the host's resolv.conf (CoreDNS's upstream when pods may leave
/// the machine).
pub fn host_nameserver() -> Option<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .find(|a| a.parse::<Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_a_stable_hash_of_the_state_dir() {
        let p = cluster_prefix(Path::new("/nonexistent/state/test"));
        assert_eq!(p.len(), 11);
        assert_eq!(p, cluster_prefix(Path::new("/nonexistent/state/test")));
        assert_ne!(p, cluster_prefix(Path::new("/nonexistent/state/other")));
    }

    #[test]
    fn names_fit_linux_interface_names() {
        let n = Names::new("dc-0123abcd");
        assert_eq!(n.netns, "dc-0123abcd-node");
        assert_eq!(n.cgroup, "/dc-0123abcd");
        assert!(n.host_link.len() <= 15 && n.node_link.len() <= 15);
        assert_ne!(n.host_link, n.node_link);
    }

    #[test]
    fn commands_enter_the_holders_namespaces() {
        let v = in_node(42, Path::new("/bin/kubelet"), &["--v=1".into()]);
        assert_eq!(
            v,
            [
                "--target",
                "42",
                "--mount",
                "--net",
                "--",
                "/bin/kubelet",
                "--v=1"
            ]
        );
    }
}
