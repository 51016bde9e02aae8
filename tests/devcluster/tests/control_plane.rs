//! The control plane of devcluster: real API server version, node readiness, the storage
//! provisioner, garbage collection and ServiceAccount tokens. Each test uses its own namespace.

use std::time::Duration;

use devcluster_testing::{cluster, wait_for_named, wait_for_value};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn version_is_the_pinned_release() {
    let c = cluster().await;
    let info = c.client().apiserver_version().await.expect("/version");
    let pinned = devcluster::binaries::version("K8S_VERSION").unwrap();
    assert_eq!(info.git_version, pinned);
    assert_eq!(pinned, "v1.36.3");
}

#[tokio::test]
async fn kubectl_shows_the_node_ready() {
    let c = cluster().await;
    let out = c
        .kubectl(&["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#])
        .await;
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l == "devcluster-node=True"),
        "nodes: {text}"
    );
}

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn default_class_pvc_binds_to_a_directory_removed_with_the_claim() {
    let c = cluster().await;
    let ns = c.namespace("pvc").await;
    let client = c.client();
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    // no storageClassName: the default class (devcluster-local) is filled in by admission
    pvcs.create(&PostParams::default(), &claim("data"))
        .await
        .unwrap();
    let pv_name = wait_for_value("PVC data to be Bound", WAIT, || async {
        let pvc = pvcs.get("data").await.ok()?;
        let bound = pvc.status.as_ref()?.phase.as_deref() == Some("Bound");
        bound.then(|| pvc.spec?.volume_name).flatten()
    })
    .await;
    let pvc = pvcs.get("data").await.unwrap();
    assert_eq!(
        pvc.spec.unwrap().storage_class_name.as_deref(),
        Some("devcluster-local")
    );
    let dir = c.state_dir().join("volumes").join(&pv_name);
    assert!(dir.is_dir(), "{} missing", dir.display());
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let spec = pv.spec.unwrap();
    assert_eq!(spec.host_path.unwrap().path, dir.display().to_string());
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );

    std::fs::write(dir.join("file"), "kept until the claim goes").unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    wait_for_named("the volume directory to be removed", WAIT, || async {
        !dir.exists()
    })
    .await;
    let pvs = Api::<PersistentVolume>::all(client);
    wait_for_named("the released PV to be deleted", WAIT, || async {
        matches!(pvs.get_opt(&pv_name).await, Ok(None))
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_children() {
    let c = cluster().await;
    let ns = c.namespace("gc").await;
    let cms = Api::<ConfigMap>::namespaced(c.client(), &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let child = ConfigMap {
        metadata: ObjectMeta {
            name: Some("child".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.uid().unwrap(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &child).await.unwrap();
    // an unowned bystander must survive
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("bystander".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    cms.delete("owner", &dp).await.unwrap();
    wait_for_named(
        "the child ConfigMap to be garbage-collected",
        WAIT,
        || async { matches!(cms.get_opt("child").await, Ok(None)) },
    )
    .await;
    assert!(cms.get_opt("bystander").await.unwrap().is_some());
}

#[tokio::test]
async fn token_request_authenticates_as_the_service_account() {
    let c = cluster().await;
    let ns = c.namespace("token").await;
    let client = c.client();
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("robot".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let tr: TokenRequest = sas
        .create_subresource("token", "robot", &PostParams::default(), &req)
        .await
        .unwrap();
    let token = tr.status.expect("TokenRequest status").token;
    assert!(!token.is_empty());

    // a client holding only the token (no client certificate)
    let dir = std::env::temp_dir().join(format!("devcluster-token-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();
    let mut config = devcluster::control_plane::admin_config(&c.kubeconfig())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.display().to_string()),
        ..Default::default()
    };
    let robot = kube::Client::try_from(config).unwrap();

    let review = Api::<SelfSubjectReview>::all(robot.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    assert_eq!(
        user.as_deref(),
        Some(format!("system:serviceaccount:{ns}:robot").as_str())
    );

    // RBAC is on: a ServiceAccount without bindings may not read secrets
    let err = Api::<Secret>::namespaced(robot, &ns)
        .list(&Default::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}
