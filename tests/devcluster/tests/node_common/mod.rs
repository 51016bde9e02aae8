//! The test pods of the node identity tests: containers of devcluster's test pod image and
//! waiting for them (the HTTP they answer: `devcluster_testing::http_get`).

use std::time::Duration;

use devcluster_testing::wait_for_value;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Value, json};

/// The user test pods run as (non-root, no /etc/passwd entry needed).
pub const TEST_UID: i64 = 65534;

/// The spec of a test-pod container (`image`: `TestCluster::test_pod_image`) listening on
/// `port`, with a readiness probe.
pub fn test_container(name: &str, image: &str, port: u16) -> Value {
    json!({
        "name": name,
        "image": image,
        "env": [{"name": "PORT", "value": port.to_string()}],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
        "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    })
}

/// A pod spec running one test-pod container as a non-root user.
pub fn test_pod_spec(image: &str, port: u16) -> Value {
    json!({
        "securityContext": {"runAsUser": TEST_UID, "runAsGroup": TEST_UID, "fsGroup": TEST_UID},
        "terminationGracePeriodSeconds": 5,
        "containers": [test_container("app", image, port)],
    })
}

pub fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": spec,
    }))
    .expect("valid pod")
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the pod is Ready and returns it.
pub async fn wait_ready(api: &Api<Pod>, name: &str) -> Pod {
    wait_for_value(
        &format!("pod {name} Ready"),
        Duration::from_secs(90),
        || async { api.get_opt(name).await.ok().flatten().filter(is_ready) },
    )
    .await
}

pub fn pod_ip(p: &Pod) -> std::net::IpAddr {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .expect("pod IP")
        .parse()
        .expect("IP")
}
