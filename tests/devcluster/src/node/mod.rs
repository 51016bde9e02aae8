//! The node agent: registers Node `devcluster-node` and runs the pods bound to it as local
//! processes, each pod in its own network and mount namespace (DESIGN.md §7).

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Everything the node agent needs from the control-plane side.
pub struct NodeConfig {
    /// Admin client for the cluster.
    pub client: kube::Client,
    pub node_name: String,
    /// devcluster state dir; the node agent keeps its files under `state_dir/node/`.
    pub state_dir: PathBuf,
    /// The images file (DESIGN.md §7 format).
    pub images_file: PathBuf,
    /// Pod CIDR, e.g. 10.244.0.0/24; the host side of the bridge is its first address.
    pub pod_cidr: String,
    pub host_ip: Ipv4Addr,
    /// kube-apiserver's secure port on 127.0.0.1; pods reach it at `host_ip:api_port`.
    pub api_port: u16,
    /// The cluster CA certificate (PEM) given to pods as `ca.crt`.
    pub ca_crt: PathBuf,
}
