//! Pods act as their ServiceAccount (a real bound token, the cluster CA, in-cluster config),
//! and keep PVC data across pod deletion.

mod node_common;

use std::net::SocketAddr;
use std::time::Duration;

use devcluster_testing::{cluster, http_get, wait_for_value};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use node_common::*;
use serde_json::json;

fn create<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

#[tokio::test]
async fn pod_authenticates_as_its_service_account_and_rbac_applies() {
    let c = cluster().await;
    let image = c.test_pod_image().await;
    let ns = c.namespace("node-sa").await;
    let client = c.client();
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&pp, &create(json!({"metadata": {"name": "reader"}})))
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &create(json!({"metadata": {"name": "pod-reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &create(json!({
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        })))
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &create(json!({"metadata": {"name": "creds"}, "stringData": {"user": "alice", "password": "s3cret"}})))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &create(
                json!({"metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "7"}}),
            ),
        )
        .await
        .unwrap();

    let mut spec = test_pod_spec(&image, 8080);
    spec["serviceAccountName"] = json!("reader");
    spec["volumes"] = json!([
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}},
        {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "sub/mode.txt"}]}},
    ]);
    spec["containers"][0]["volumeMounts"] = json!([
        {"name": "creds", "mountPath": "/tmp/devcluster-test-creds", "readOnly": true},
        {"name": "settings", "mountPath": "/tmp/devcluster-test-settings"},
    ]);
    spec["containers"][0]["env"].as_array_mut().unwrap().extend([
        json!({"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        json!({"name": "MY_SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}),
        json!({"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}),
    ]);
    spec["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&pp, &pod("sa", spec)).await.unwrap();
    let p = wait_ready(&pods, "sa").await;
    let addr = SocketAddr::new(pod_ip(&p), 8080);

    // The API server sees the pod's own ServiceAccount: allowed by its Role ...
    let (code, body) = http_get(addr, &format!("/kube?path=/api/v1/namespaces/{ns}/pods"))
        .await
        .expect("answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"sa\""), "lists its own pod");
    // ... refused what the Role does not allow.
    let (code, body) = http_get(addr, &format!("/kube?path=/api/v1/namespaces/{ns}/secrets"))
        .await
        .expect("answers");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(&format!("system:serviceaccount:{ns}:reader")),
        "{body}"
    );

    let read = |path: String| async move {
        http_get(addr, &format!("/read?path={path}"))
            .await
            .expect("answers")
    };
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(read(format!("{sa_dir}/namespace")).await.1, ns);
    assert!(
        read(format!("{sa_dir}/ca.crt"))
            .await
            .1
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(
        read("/tmp/devcluster-test-creds/password".into()).await.1,
        "s3cret"
    );
    assert_eq!(
        read("/tmp/devcluster-test-settings/sub/mode.txt".into())
            .await
            .1,
        "fast"
    );
    // A read-only mount refuses writes.
    assert_ne!(
        http_get(addr, "/write?path=/tmp/devcluster-test-creds/x&data=1")
            .await
            .map(|r| r.0),
        Some(200)
    );

    let env: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&http_get(addr, "/env").await.unwrap().1).unwrap();
    assert_eq!(env.get("MY_NS"), Some(&ns));
    assert_eq!(env.get("MY_IP"), Some(&pod_ip(&p).to_string()));
    assert_eq!(env.get("MY_SA").map(String::as_str), Some("reader"));
    assert_eq!(env.get("DB_USER").map(String::as_str), Some("alice"));
    assert_eq!(env.get("CFG_level").map(String::as_str), Some("7"));
}

#[tokio::test]
async fn statefulset_volume_keeps_a_file_across_pod_deletion() {
    let c = cluster().await;
    let image = c.test_pod_image().await;
    let ns = c.namespace("node-sts").await;
    let client = c.client();
    let mut pod_spec = test_pod_spec(&image, 8080);
    pod_spec["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/tmp/devcluster-test-data"}]);
    let sts: StatefulSet = create(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}},
            }],
        }
    }));
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let first = wait_ready(&pods, "db-0").await;
    let addr = SocketAddr::new(pod_ip(&first), 8080);
    let (code, body) = http_get(
        addr,
        "/write?path=/tmp/devcluster-test-data/kept&data=hello",
    )
    .await
    .expect("answers");
    assert_eq!(code, 200, "{body}");

    pods.delete("db-0", &Default::default()).await.unwrap();
    let old_uid = first.metadata.uid.clone();
    let second = wait_for_value(
        "db-0 recreated and Ready",
        Duration::from_secs(120),
        || async {
            pods.get_opt("db-0")
                .await
                .ok()
                .flatten()
                .filter(|p| p.metadata.uid != old_uid && is_ready(p))
        },
    )
    .await;
    let (code, body) = http_get(
        SocketAddr::new(pod_ip(&second), 8080),
        "/read?path=/tmp/devcluster-test-data/kept",
    )
    .await
    .expect("answers");
    assert_eq!((code, body.as_str()), (200, "hello"));
}
