//! devcluster: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from the official Go modules) started on loopback, plus a node — a real
//! kubelet with containerd (`--node kubelet`) or a node agent that runs the pods bound to it as
//! local processes (`--node process`) — and a hostpath storage provisioner.
//! See DESIGN.md §7 and docs/devcluster.md.

pub mod accounts;
pub mod binaries;
pub mod control_plane;
pub mod daemon;
pub mod egress;
pub mod lifecycle;
pub mod node;
pub mod pki;
pub mod process;
pub mod provisioner;
pub mod realnode;
pub mod state;
pub mod testing;
