//! The configuration files of the node's parts, as pure functions of the node's facts (unit
//! tested here; the supervisor only writes them).

use std::net::Ipv4Addr;
use std::path::Path;

use crate::control_plane::api_burst;
use crate::state::NodePlan;

/// The ClusterIP of the `kube-dns` Service (the tenth address of the service range, as on
/// kubeadm clusters).
pub const CLUSTER_DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// containerd's socket: at the default path, because the kubelet's cAdvisor looks for it
/// there whatever the endpoint flag says (the node's private mount namespace holds it).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// containerd 2.x (config version 3): image content kept under `root` between runs of the
/// same state dir, runtime state on the namespace's tmpfs, registry hosts from `certs_d`.
pub fn containerd_toml(
    root: &Path,
    certs_d: &Path,
    cni_conf_dir: &Path,
    sandbox_image: &str,
) -> String {
    format!(
        r#"version = 3
root = '{root}'
state = '/run/containerd'

[plugins.'io.containerd.server.v1.grpc']
  address = '{CONTAINERD_SOCKET}'

[plugins.'io.containerd.server.v1.ttrpc']
  address = '{CONTAINERD_SOCKET}.ttrpc'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{sandbox_image}'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '{certs_d}'

[plugins.'io.containerd.cri.v1.runtime']
  # root here lacks CAP_SYS_RESOURCE: the sandbox's default oom_score_adj of -998 makes runc
  # fail ("can't get final child's PID from pipe: EOF"); clamp to containerd's own score
  restrict_oom_score_adj = true
  # pod network namespaces on the node's tmpfs, not in the host's /run/netns
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_BIN_DIR}']
    conf_dir = '{cni}'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
"#,
        root = root.display(),
        certs_d = certs_d.display(),
        cni = cni_conf_dir.display(),
    )
}

/// A registry served over plain HTTP (containerd's `hosts.toml` for `host:port`).
pub fn registry_hosts_toml(registry: &str) -> String {
    format!(
        "server = 'http://{registry}'\n\n[host.'http://{registry}']\n  capabilities = ['pull', 'resolve']\n"
    )
}

/// The pod network: a bridge with the node as gateway, addresses from the node's half of the
/// pod CIDR, port mappings (hostPort).
pub fn cni_conflist(plan: &NodePlan, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "devcluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": plan.pods.to_string(), "gateway": plan.pods.host_ip().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir.display().to_string(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string()
}

/// What the kubelet is told; paths are the supervisor's.
pub struct KubeletFiles<'a> {
    pub ca_crt: &'a Path,
    pub tls_cert: &'a Path,
    pub tls_key: &'a Path,
    pub resolv_conf: &'a Path,
    pub volume_plugin_dir: &'a Path,
    /// The node's cgroup (every v1 hierarchy), under which `kubepods` goes.
    pub cgroup_root: &'a str,
}

/// As many pods as the node's pod subnet has addresses for (less the network, the bridge's
/// gateway and the broadcast address): the kubelet's default of 110 would hold a bench with a
/// wide pod CIDR (`--pod-cidr 10.246.0.0/21`: 1021 pods) below what the network gives it.
pub fn max_pods(plan: &NodePlan) -> u32 {
    (1u32 << (32 - u32::from(plan.pods.prefix))).saturating_sub(3)
}

pub fn kubelet_config(plan: &NodePlan, f: &KubeletFiles<'_>, api_qps: Option<u32>) -> String {
    let rate = api_qps
        .map(|q| format!("kubeAPIQPS: {q}\nkubeAPIBurst: {}\n", api_burst(q)))
        .unwrap_or_default();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this machine: cgroup v1 hierarchies (kubelet 1.36 refuses them unless told), swap, no systemd
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {tls_cert}
tlsPrivateKeyFile: {tls_key}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS: [{CLUSTER_DNS_IP}]
resolvConf: {resolv}
volumePluginDir: {plugins}
# the node shares the machine's disk with everything else: evict only when it is really full
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
shutdownGracePeriod: 0s
maxPods: {max_pods}
{rate}"#,
        max_pods = max_pods(plan),
        cgroup_root = f.cgroup_root,
        node_ip = plan.node_ip,
        tls_cert = f.tls_cert.display(),
        tls_key = f.tls_key.display(),
        ca = f.ca_crt.display(),
        resolv = f.resolv_conf.display(),
        plugins = f.volume_plugin_dir.display(),
    )
}

/// kube-proxy in iptables mode inside the node's network namespace; it leaves the machine's
/// global conntrack sysctls alone (maxPerCore 0, timeouts 0).
pub fn kube_proxy_config(plan: &NodePlan, kubeconfig: &Path, node_name: &str) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kc}
mode: iptables
hostnameOverride: {node_name}
clusterCIDR: {pods}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kc = kubeconfig.display(),
        pods = plan.pods,
    )
}

/// kube-router as a NetworkPolicy controller only (no routing, no service proxy, no CNI
/// config: the bridge plugin stays), in the node's network namespace, where it keeps its
/// iptables chains and ipsets. Bridged pod traffic reaches them through
/// `bridge-nf-call-iptables` (sandbox.rs). Its health port stays on the node's loopback.
pub fn kube_router_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--hostname-override={}", crate::daemon::NODE_NAME),
        "--run-firewall=true".into(),
        "--run-router=false".into(),
        "--run-service-proxy=false".into(),
        "--run-loadbalancer=false".into(),
        "--enable-cni=false".into(),
        "--enable-ipv6=false".into(),
        format!(
            "--service-cluster-ip-range={}",
            crate::control_plane::SERVICE_CIDR
        ),
        "--health-port=0".into(),
        "--v=1".into(),
    ]
}

/// CoreDNS serving the cluster domain on the node address (behind the `kube-dns` Service);
/// other names are forwarded to `upstream` when pods may leave the machine, else refused.
pub fn corefile(plan: &NodePlan, kubeconfig: &Path, upstream: Option<&str>) -> String {
    let forward = upstream
        .map(|u| format!("    forward . {u}\n"))
        .unwrap_or_default();
    format!(
        r#".:53 {{
    bind {node_ip}
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kc} devcluster
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
{forward}    cache 30
}}
"#,
        node_ip = plan.node_ip,
        kc = kubeconfig.display(),
    )
}

/// The distribution registry (Debian's docker-registry): plain HTTP on the host's node-link
/// address, content in a directory shared by every cluster of the machine (pushes after the
/// first send only new layers).
pub fn registry_config(addr: &str, storage: &Path) -> String {
    format!(
        r#"version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
"#,
        storage = storage.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PodCidr;

    fn plan() -> NodePlan {
        PodCidr::parse("10.244.7.0/24").unwrap().node_plan()
    }

    #[test]
    fn containerd_config_restricts_oom_score_and_pins_the_sandbox_image() {
        let t = containerd_toml(
            Path::new("/s/ctd"),
            Path::new("/s/certs.d"),
            Path::new("/s/cni"),
            "10.244.7.1:5000/pause:3.10",
        );
        assert!(t.starts_with("version = 3\n"));
        assert!(t.contains("restrict_oom_score_adj = true"));
        assert!(t.contains("sandbox = '10.244.7.1:5000/pause:3.10'"));
        assert!(t.contains("config_path = '/s/certs.d'"));
        assert!(t.contains("conf_dir = '/s/cni'"));
        assert!(t.contains("address = '/run/containerd/containerd.sock'"));
    }

    #[test]
    fn kube_router_only_enforces_network_policy() {
        let args = kube_router_args(Path::new("/s/kube-router.kubeconfig"));
        for a in [
            "--kubeconfig=/s/kube-router.kubeconfig",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            "--service-cluster-ip-range=10.0.0.0/24",
        ] {
            assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
        }
    }

    #[test]
    fn cni_gives_pods_the_upper_half_with_the_node_as_gateway() {
        let v: serde_json::Value =
            serde_json::from_str(&cni_conflist(&plan(), Path::new("/s/ipam"))).unwrap();
        let range = &v["plugins"][0]["ipam"]["ranges"][0][0];
        assert_eq!(range["subnet"], "10.244.7.128/25");
        assert_eq!(range["gateway"], "10.244.7.129");
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/s/ipam");
    }

    #[test]
    fn kubelet_serves_on_the_node_address_and_accepts_cgroup_v1() {
        let f = KubeletFiles {
            ca_crt: Path::new("/p/ca.crt"),
            tls_cert: Path::new("/p/kubelet.crt"),
            tls_key: Path::new("/p/kubelet.key"),
            resolv_conf: Path::new("/s/resolv.conf"),
            volume_plugin_dir: Path::new("/s/plugins"),
            cgroup_root: "/dc-0000abcd",
        };
        let c = kubelet_config(&plan(), &f, None);
        assert!(c.contains("address: 10.244.7.2\n"));
        assert!(c.contains("failCgroupV1: false"));
        assert!(c.contains("cgroupRoot: /dc-0000abcd"));
        assert!(c.contains("clusterDNS: [10.0.0.10]"));
        assert!(c.contains("anonymous:\n    enabled: false"));
        assert!(c.contains("maxPods: 125\n"));
        // the kubelet's own client rate unless one is asked for
        assert!(!c.contains("kubeAPIQPS"));
        let fast = kubelet_config(&plan(), &f, Some(100));
        assert!(fast.contains("kubeAPIQPS: 100\nkubeAPIBurst: 200\n"));
        serde_saphyr::from_str::<serde_json::Value>(&fast).expect("valid YAML");
    }

    #[test]
    fn max_pods_follows_the_pod_subnet() {
        assert_eq!(max_pods(&plan()), 125);
        let wide = PodCidr::parse("10.246.0.0/21").unwrap().node_plan();
        assert_eq!(wide.pods.to_string(), "10.246.4.0/22");
        assert_eq!(max_pods(&wide), 1021);
    }

    #[test]
    fn coredns_forwards_only_when_pods_may_leave_the_machine() {
        let kc = Path::new("/p/coredns.kubeconfig");
        assert!(!corefile(&plan(), kc, None).contains("forward"));
        assert!(corefile(&plan(), kc, Some("10.255.255.53")).contains("forward . 10.255.255.53"));
        assert!(corefile(&plan(), kc, None).contains("bind 10.244.7.2"));
    }

    #[test]
    fn registry_hosts_use_plain_http() {
        assert!(
            registry_hosts_toml("10.244.7.1:5000").starts_with("server = 'http://10.244.7.1:5000'")
        );
    }
}
