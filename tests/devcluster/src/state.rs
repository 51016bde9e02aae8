//! The layout of a devcluster state dir and the small files in it that `up`, `down`, the
//! supervisor and the test library exchange.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Paths inside a state dir. Everything devcluster creates lives under it.
#[derive(Debug, Clone)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The admin kubeconfig (CN=admin, O=system:masters).
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// `KUBECONFIG=...` and `HOST_IP=...` lines, present only while the cluster is ready.
    pub fn cluster_env(&self) -> PathBuf {
        self.root.join("cluster.env")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// One pidfile per control-plane process, so a later `up`/`down` can kill what a killed
    /// supervisor left behind.
    pub fn pids_dir(&self) -> PathBuf {
        self.root.join("pids")
    }
    pub fn pidfile(&self, component: &str) -> PathBuf {
        self.pids_dir().join(format!("{component}.pid"))
    }
    pub fn daemon_pidfile(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }
    /// The supervisor's control socket (`devcluster restart`, control.rs); present while the
    /// cluster is ready.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// The supervisor's progress (see [`DaemonStatus`]).
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// Serialises concurrent `up`/`down` calls on one state dir.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("up.lock")
    }
    pub fn etcd_dir(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// Directories backing the PersistentVolumes of the `devcluster-local` StorageClass.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn component_kubeconfig(&self, component: &str) -> PathBuf {
        self.pki_dir().join(format!("{component}.kubeconfig"))
    }
}

/// What a ready cluster tells its users (docs/design.md §6): the admin kubeconfig, the host's
/// address on the pod network, the node's address and the registry its images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEnv {
    pub kubeconfig: PathBuf,
    pub host_ip: Ipv4Addr,
    pub node_ip: Option<Ipv4Addr>,
    /// `host:port` of the registry (plain HTTP).
    pub registry: Option<String>,
    /// What enforces NetworkPolicy on the node (`kube-router`), or `off`.
    pub network_policy: Option<String>,
}

impl ClusterEnv {
    /// The `cluster.env` text; also what `up` prints.
    pub fn render(&self) -> String {
        let mut s = format!(
            "KUBECONFIG={}\nHOST_IP={}\n",
            self.kubeconfig.display(),
            self.host_ip
        );
        if let Some(ip) = self.node_ip {
            s.push_str(&format!("NODE_IP={ip}\n"));
        }
        if let Some(r) = &self.registry {
            s.push_str(&format!("REGISTRY={r}\n"));
        }
        if let Some(np) = &self.network_policy {
            s.push_str(&format!("NETWORK_POLICY={np}\n"));
        }
        s
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut kubeconfig = None;
        let mut host_ip = None;
        let mut node_ip = None;
        let mut registry = None;
        let mut network_policy = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("KUBECONFIG", v)) => kubeconfig = Some(PathBuf::from(v.trim())),
                Some(("HOST_IP", v)) => host_ip = v.trim().parse().ok(),
                Some(("NODE_IP", v)) => node_ip = v.trim().parse().ok(),
                Some(("REGISTRY", v)) => registry = Some(v.trim().to_string()),
                Some(("NETWORK_POLICY", v)) => network_policy = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Some(Self {
            kubeconfig: kubeconfig?,
            host_ip: host_ip?,
            node_ip,
            registry,
            network_policy,
        })
    }

    pub fn read(layout: &StateLayout) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(layout.cluster_env()).ok()?)
    }
}

/// Progress of the supervisor, written to `status.json` and polled by `up`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum DaemonStatus {
    Starting,
    Ready,
    /// `component` names the log under `logs/` whose tail explains the failure.
    Failed {
        component: String,
        message: String,
    },
}

impl DaemonStatus {
    pub fn read(layout: &StateLayout) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(layout.status_file()).ok()?).ok()
    }

    pub fn write(&self, layout: &StateLayout) -> std::io::Result<()> {
        let tmp = layout.status_file().with_extension("json.tmp");
        let text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        // rename keeps readers from seeing a half-written file
        std::fs::rename(tmp, layout.status_file())
    }
}

/// A pod CIDR such as `10.244.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid pod CIDR {0:?}: expected an IPv4 network like 10.244.0.0/24 with prefix 8..=30")]
pub struct PodCidrError(pub String);

impl PodCidr {
    pub fn parse(text: &str) -> Result<Self, PodCidrError> {
        let err = || PodCidrError(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if !(8..=30).contains(&prefix) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The host's address on the pod bridge: the first address of the network.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The address plan of a kubelet node (realnode): the first /30 of the network links the
    /// host (its first address, [`Self::host_ip`]) with the node's network namespace (the
    /// second, the Node's InternalIP); pods get the upper half behind the node's CNI bridge.
    pub fn node_plan(&self) -> NodePlan {
        let base = u32::from(self.network);
        let half = 1u32 << (32 - self.prefix - 1);
        NodePlan {
            host_ip: self.host_ip(),
            node_ip: Ipv4Addr::from(base + 2),
            link_prefix: 30,
            pods: PodCidr {
                network: Ipv4Addr::from(base + half),
                prefix: self.prefix + 1,
            },
        }
    }
}

/// Where things are on a kubelet node's network (see [`PodCidr::node_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePlan {
    pub host_ip: Ipv4Addr,
    pub node_ip: Ipv4Addr,
    pub link_prefix: u8,
    /// The node's pod subnet (the CNI bridge's gateway is its first address).
    pub pods: PodCidr,
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidr_host_ip_is_first_address() {
        let c = PodCidr::parse("10.244.1.0/24").unwrap();
        assert_eq!(c.host_ip(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(
            PodCidr::parse("10.244.1.7/24").unwrap().to_string(),
            "10.244.1.0/24"
        );
        assert!(PodCidr::parse("10.244.1.0").is_err());
        assert!(PodCidr::parse("10.244.1.0/31").is_err());
    }

    #[test]
    fn node_plan_splits_the_pod_cidr() {
        let plan = PodCidr::parse("10.244.3.0/24").unwrap().node_plan();
        assert_eq!(plan.host_ip, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(plan.node_ip, Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(plan.pods.to_string(), "10.244.3.128/25");
        assert_eq!(plan.pods.host_ip(), Ipv4Addr::new(10, 244, 3, 129));
    }

    #[test]
    fn cluster_env_round_trips() {
        let env = ClusterEnv {
            kubeconfig: "/s/kubeconfig".into(),
            host_ip: Ipv4Addr::new(10, 244, 0, 1),
            node_ip: None,
            registry: None,
            network_policy: None,
        };
        assert_eq!(
            env.render(),
            "KUBECONFIG=/s/kubeconfig\nHOST_IP=10.244.0.1\n"
        );
        assert_eq!(ClusterEnv::parse(&env.render()), Some(env.clone()));
        let real = ClusterEnv {
            node_ip: Some(Ipv4Addr::new(10, 244, 0, 2)),
            registry: Some("10.244.0.1:5000".into()),
            network_policy: Some("kube-router".into()),
            ..env
        };
        assert!(real.render().ends_with(
            "NODE_IP=10.244.0.2\nREGISTRY=10.244.0.1:5000\nNETWORK_POLICY=kube-router\n"
        ));
        assert_eq!(ClusterEnv::parse(&real.render()), Some(real));
    }

    #[test]
    fn status_is_tagged_json() {
        let s = DaemonStatus::Failed {
            component: "etcd".into(),
            message: "x".into(),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"state":"failed","component":"etcd","message":"x"}"#
        );
        assert_eq!(serde_json::from_str::<DaemonStatus>(&text).unwrap(), s);
    }
}
