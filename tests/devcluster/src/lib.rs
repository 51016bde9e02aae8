//! devcluster: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from the official Go modules) started on loopback, a real node (the
//! kubelet with containerd, kube-proxy and CoreDNS) with a local image registry, and a hostpath
//! storage provisioner.
//! See docs/design.md §7 and docs/devcluster.md.

pub mod accounts;
pub mod binaries;
pub mod control;
pub mod control_plane;
pub mod daemon;
pub mod egress;
pub mod health;
pub mod lifecycle;
pub mod node;
pub mod pki;
pub mod process;
pub mod provisioner;
pub mod state;
