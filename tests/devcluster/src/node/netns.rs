//! Pod networking: one bridge per cluster holding the host address (first address of the pod
//! CIDR), and per pod a network namespace with a veth pair into that bridge, an IP from the
//! CIDR, `lo` up and a default route via the host address. Names derive from a hash of the
//! state dir so several devclusters can share a machine. Uses the `ip` command.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::NodeError;

/// FNV-1a: a stable hash (std's hashers are not guaranteed stable across releases).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// `dc-<8 hex>`: the bridge name and the prefix of this cluster's netns names.
pub fn cluster_prefix(state_dir: &Path) -> String {
    let abs = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    format!("dc-{:08x}", fnv1a(abs.to_string_lossy().as_bytes()))
}

/// The short form of a pod uid used in names (first 8 hex digits).
pub fn uid_short(uid: &str) -> String {
    uid.chars().filter(char::is_ascii_hexdigit).take(8).collect()
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<String, NodeError> {
    let out = Command::new("ip").args(args).output().map_err(|e| NodeError::Command {
        command: format!("ip {}", args.join(" ")),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(NodeError::Command {
            command: format!("ip {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `a.b.c.d/len` into (network address, prefix length).
pub fn parse_cidr(cidr: &str) -> Result<(u32, u8), NodeError> {
    let bad = || NodeError::PodCidr(cidr.to_string());
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=29).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - len);
    Ok((u32::from(addr) & mask, len))
}

/// The cluster's pod network.
pub struct PodNetwork {
    pub bridge: String,
    pub host_ip: Ipv4Addr,
    network: u32,
    prefix_len: u8,
    allocated: Mutex<BTreeSet<u32>>,
}

/// A pod's network namespace.
#[derive(Clone, Debug)]
pub struct PodNetns {
    pub name: String,
    pub ip: Ipv4Addr,
}

impl PodNetns {
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl PodNetwork {
    pub fn new(state_dir: &Path, pod_cidr: &str, host_ip: Ipv4Addr) -> Result<Self, NodeError> {
        let (network, prefix_len) = parse_cidr(pod_cidr)?;
        let mut allocated = BTreeSet::new();
        allocated.insert(u32::from(host_ip));
        Ok(PodNetwork { bridge: cluster_prefix(state_dir), host_ip, network, prefix_len, allocated: Mutex::new(allocated) })
    }

    /// Creates the bridge with the host address (idempotent).
    pub fn ensure_bridge(&self) -> Result<(), NodeError> {
        if ip(&["link", "show", &self.bridge]).is_err() {
            ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        }
        let cidr = format!("{}/{}", self.host_ip, self.prefix_len);
        let addrs = ip(&["-4", "addr", "show", "dev", &self.bridge])?;
        if !addrs.contains(&format!("inet {cidr} ")) {
            ip(&["addr", "add", &cidr, "dev", &self.bridge])?;
        }
        ip(&["link", "set", &self.bridge, "up"])?;
        Ok(())
    }

    fn allocate(&self) -> Option<Ipv4Addr> {
        let mut allocated = self.allocated.lock().unwrap_or_else(|p| p.into_inner());
        let size = 1u32 << (32 - self.prefix_len);
        // Skip the network address (offset 0) and the broadcast address (size - 1).
        let ip = (1..size - 1).map(|o| self.network + o).find(|a| !allocated.contains(a))?;
        allocated.insert(ip);
        Some(Ipv4Addr::from(ip))
    }

    fn release(&self, ip: Ipv4Addr) {
        self.allocated.lock().unwrap_or_else(|p| p.into_inner()).remove(&u32::from(ip));
    }

    /// Creates the pod's netns `<prefix>-<uid short>` with its own IP. A leftover netns of the
    /// same name (a restarted agent) is replaced.
    pub fn create_pod_netns(&self, uid: &str) -> Result<PodNetns, NodeError> {
        let short = uid_short(uid);
        let name = format!("{}-{short}", self.bridge);
        // Host-side veth: at most 15 characters, unique per cluster and pod.
        let veth = format!("v{:04x}{short}", fnv1a(self.bridge.as_bytes()) & 0xffff);
        delete_netns(&name);
        let _ = ip(&["link", "del", &veth]);
        let pod_ip = self.allocate().ok_or_else(|| NodeError::Command {
            command: "allocate pod IP".into(),
            message: "the pod CIDR is exhausted".into(),
        })?;
        let result = (|| {
            ip(&["netns", "add", &name])?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name])?;
            ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
            let cidr = format!("{pod_ip}/{}", self.prefix_len);
            ip(&["-n", &name, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            ip(&["-n", &name, "route", "add", "default", "via", &self.host_ip.to_string()])?;
            Ok(())
        })();
        if let Err(e) = result {
            delete_netns(&name);
            self.release(pod_ip);
            return Err(e);
        }
        Ok(PodNetns { name, ip: pod_ip })
    }

    /// Kills what still runs in the pod's netns, deletes it and frees its IP.
    pub fn delete_pod_netns(&self, netns: &PodNetns) {
        delete_netns(&netns.name);
        self.release(netns.ip);
    }
}

/// Kills every process still inside the netns, then deletes it (its veth goes with it).
pub fn delete_netns(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = ip(&["netns", "del", name]);
}

/// Every netns of this cluster, and the bridge: removed.
pub fn cleanup(state_dir: &Path) {
    let prefix = cluster_prefix(state_dir);
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&format!("{prefix}-")) {
                delete_netns(name);
            }
        }
    }
    let _ = ip(&["link", "del", &prefix]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_allocation() {
        assert_eq!(parse_cidr("10.244.2.0/24").unwrap(), (u32::from(Ipv4Addr::new(10, 244, 2, 0)), 24));
        assert!(parse_cidr("10.244.2.0").is_err());
        let net = PodNetwork::new(Path::new("/nonexistent/x"), "10.244.2.0/29", Ipv4Addr::new(10, 244, 2, 1)).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| net.allocate()).collect();
        // .0 network, .1 host, .7 broadcast are never handed out.
        assert_eq!(got, (2..=6).map(|i| Ipv4Addr::new(10, 244, 2, i)).collect::<Vec<_>>());
        net.release(Ipv4Addr::new(10, 244, 2, 4));
        assert_eq!(net.allocate(), Some(Ipv4Addr::new(10, 244, 2, 4)));
    }

    #[test]
    fn names_fit_linux_limits() {
        let p = cluster_prefix(Path::new("/root/.cache/whatsapp-operator/state/test"));
        assert_eq!(p.len(), 11);
        assert_eq!(uid_short("0a1b2c3d-4e5f-6789-abcd-ef0123456789"), "0a1b2c3d");
    }
}
