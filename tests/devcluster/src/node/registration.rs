//! Registers the Node object, keeps its status fresh and renews its heartbeat Lease in
//! `kube-node-lease`, the way a kubelet does, so the scheduler and the node lifecycle
//! controller see a healthy node.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::NodeError;

const MANAGER: &str = "devcluster-node";
/// How often the Lease is renewed and the Node status refreshed (kubelet: 10 s / 10 s).
const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;

/// What the node reports as its capacity.
#[derive(Clone, Debug)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

impl Capacity {
    /// The machine's own CPU count and memory; pods are limited by the /24 pod CIDR.
    pub fn of_this_machine() -> Self {
        let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().strip_suffix("kB"))
                    .map(|kb| format!("{}Ki", kb.trim()))
            })
            .unwrap_or_else(|| "8Gi".to_string());
        Capacity { cpu, memory, pods: "110".to_string() }
    }
}

/// Creates the Node if missing and sets its status to Ready.
pub async fn register(
    client: &kube::Client,
    node_name: &str,
    host_ip: Ipv4Addr,
    pod_cidr: &str,
    kubelet_port: u16,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": {
                "kubernetes.io/hostname": node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "node-role.kubernetes.io/devcluster": "",
            }
        },
        "spec": { "podCIDR": pod_cidr, "podCIDRs": [pod_cidr] }
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    update_status(client, node_name, host_ip, kubelet_port).await
}

/// Writes the node's status: Ready plus the pressure conditions a kubelet reports, capacity,
/// addresses, and the heartbeat time.
/// `kubelet_port`: where kube-apiserver fetches container logs (node/kubelet.rs).
pub async fn update_status(client: &kube::Client, node_name: &str, host_ip: Ipv4Addr, kubelet_port: u16) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Time(Timestamp::now());
    let cap = Capacity::of_this_machine();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    // Keep lastTransitionTime of conditions whose status did not change.
    let existing = nodes.get_status(node_name).await?;
    let old_conditions = existing.status.and_then(|s| s.conditions).unwrap_or_default();
    let mut conditions = vec![
        cond("Ready", "True", "KubeletReady", "devcluster node agent is posting ready status"),
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
        cond("NetworkUnavailable", "False", "RouteCreated", "pod bridge is up"),
    ];
    for c in &mut conditions {
        if let Some(old) = old_conditions
            .iter()
            .find(|o| Some(o.type_.as_str()) == c["type"].as_str() && Some(o.status.as_str()) == c["status"].as_str())
            && let Some(t) = &old.last_transition_time
        {
            c["lastTransitionTime"] = json!(t);
        }
    }
    let resources = json!({ "cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods, "ephemeral-storage": "100Gi" });
    let status = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                { "type": "InternalIP", "address": host_ip.to_string() },
                { "type": "Hostname", "address": node_name },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": kubelet_port } },
            "nodeInfo": {
                "machineID": "devcluster", "systemUUID": "devcluster", "bootID": "devcluster",
                "kernelVersion": kernel_version(), "osImage": "devcluster", "containerRuntimeVersion": "devcluster://local-process",
                "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
            }
        }
    });
    nodes.patch_status(node_name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &kube::Client, node_name: &str) -> Result<(), NodeError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: kube::api::ObjectMeta { name: Some(node_name.to_string()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(node_name.to_string()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let mut value = serde_json::to_value(&lease)?;
    value["apiVersion"] = json!("coordination.k8s.io/v1");
    value["kind"] = json!("Lease");
    leases.patch(node_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value)).await?;
    Ok(())
}

/// Registers the node, then renews the Lease and refreshes the status until shutdown.
/// Errors after registration are logged and retried: a slow API server must not stop the node.
pub async fn heartbeat(client: kube::Client, node_name: String, host_ip: Ipv4Addr, kubelet_port: u16, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew_lease(&client, &node_name).await {
            tracing::warn!(error = %e, "node lease renewal failed");
        }
        if let Err(e) = update_status(&client, &node_name, host_ip, kubelet_port).await {
            tracing::warn!(error = %e, "node status update failed");
        }
    }
}
