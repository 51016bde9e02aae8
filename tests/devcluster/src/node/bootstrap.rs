//! API objects a kubelet node needs that a kubeadm cluster would create: the API server's
//! access to the kubelet API (logs, exec, port-forward), CoreDNS's and the NetworkPolicy
//! controller's read access, and the `kube-dns` Service in front of CoreDNS.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;

use crate::state::NodePlan;

use super::config::CLUSTER_DNS_IP;

const MANAGER: &str = "devcluster";

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..Default::default()
    }
}

fn binding(name: &str, role: &str, user: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            ..Default::default()
        }]),
    }
}

fn read_rule(group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["list".into(), "watch".into()],
        ..Default::default()
    }
}

pub async fn apply_all(client: &Client, plan: &NodePlan) -> Result<(), kube::Error> {
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    // without it `kubectl logs/exec` are "Forbidden ... nodes/proxy"
    apply(
        &crbs,
        &binding(
            "devcluster:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            "kube-apiserver-kubelet-client",
        ),
    )
    .await?;
    let role = ClusterRole {
        metadata: meta("system:coredns", None),
        rules: Some(vec![
            read_rule("", &["endpoints", "services", "pods", "namespaces"]),
            read_rule("discovery.k8s.io", &["endpointslices"]),
        ]),
        ..Default::default()
    };
    apply(&Api::<ClusterRole>::all(client.clone()), &role).await?;
    apply(
        &crbs,
        &binding("system:coredns", "system:coredns", "system:coredns"),
    )
    .await?;
    // what kube-router's informers watch (its firewall reads the Node it runs on by name)
    let role = ClusterRole {
        metadata: meta("system:kube-router", None),
        rules: Some(vec![
            read_rule(
                "",
                &["pods", "namespaces", "services", "endpoints", "nodes"],
            ),
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["nodes".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            },
            read_rule("discovery.k8s.io", &["endpointslices"]),
            read_rule("networking.k8s.io", &["networkpolicies"]),
        ]),
        ..Default::default()
    };
    apply(&Api::<ClusterRole>::all(client.clone()), &role).await?;
    apply(
        &crbs,
        &binding(
            "system:kube-router",
            "system:kube-router",
            "system:kube-router",
        ),
    )
    .await?;

    let ports = [("dns", "UDP"), ("dns-tcp", "TCP")];
    let labels = BTreeMap::from([("k8s-app".to_string(), "kube-dns".to_string())]);
    let svc = Service {
        metadata: ObjectMeta {
            labels: Some(labels),
            ..meta("kube-dns", Some("kube-system"))
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(CLUSTER_DNS_IP.to_string()),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto)| ServicePort {
                        name: Some((*name).into()),
                        port: 53,
                        protocol: Some((*proto).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    apply(
        &Api::<Service>::namespaced(client.clone(), "kube-system"),
        &svc,
    )
    .await?;
    // No selector: CoreDNS runs on the node itself, so its endpoint is the node's address.
    let slice_labels = BTreeMap::from([
        (
            "kubernetes.io/service-name".to_string(),
            "kube-dns".to_string(),
        ),
        (
            "endpointslice.kubernetes.io/managed-by".to_string(),
            "devcluster.local".to_string(),
        ),
    ]);
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(slice_labels),
            ..meta("kube-dns-node", Some("kube-system"))
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![plan.node_ip.to_string()],
            ..Default::default()
        }],
        ports: Some(
            ports
                .iter()
                .map(|(name, proto)| EndpointPort {
                    name: Some((*name).into()),
                    port: Some(53),
                    protocol: Some((*proto).into()),
                    ..Default::default()
                })
                .collect(),
        ),
    };
    apply(
        &Api::<EndpointSlice>::namespaced(client.clone(), "kube-system"),
        &slice,
    )
    .await?;
    Ok(())
}
