//! The operator against a real control plane (devcluster), run as the real `wa-operator`
//! binary with the devcluster test program standing in for the session agent.
mod support;

use crds::testing::{
    GONE_TIMEOUT, READY_TIMEOUT, condition, create as create_session, manifest as session_manifest,
    session_pods, set_desired_state, wait_ready,
};
use devcluster_testing::operator::Operator;
use devcluster_testing::{events_for, http_get, wait_for_named, wait_for_value};
use std::time::{Duration, Instant};
use support::setup;

use crds::WhatsAppSession;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

fn assert_child<K: Resource>(child: &K, session: &WhatsAppSession) {
    let meta = child.meta();
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("whatsapp-session"),
        "{:?}",
        meta.name
    );
    assert_eq!(
        labels.get("app.kubernetes.io/instance"),
        session.meta().name.as_ref()
    );
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("whatsapp-operator")
    );
    assert_eq!(
        labels.get("whatsapp.leadmaster.io/tenant"),
        Some(&session.spec.tenant)
    );
    let owners = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{:?}", meta.name);
    assert_eq!(owners[0].kind, "WhatsAppSession");
    assert_eq!(Some(&owners[0].uid), session.meta().uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    // a foreground deletion of the session waits for its children (see owner_ref)
    assert_eq!(owners[0].block_owner_deletion, Some(true));
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

async fn wait_child<K>(client: &Client, ns: &str, name: &str) -> K
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    wait_for_value(&format!("{} {name}", K::kind(&())), READY_TIMEOUT, || {
        get::<K>(client, ns, name)
    })
    .await
}

#[tokio::test]
async fn apply_gives_children_ready_pod_then_stop_and_start() {
    let (cluster, client, ns) = setup("op-life").await;
    let _op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    let created = create_session(&api, "s1", json!({ "displayName": "Ventas" })).await;

    assert_child(
        &wait_child::<ServiceAccount>(&client, &ns, "wa-s1").await,
        &created,
    );
    assert_child(&wait_child::<Role>(&client, &ns, "wa-s1").await, &created);
    assert_child(
        &wait_child::<RoleBinding>(&client, &ns, "wa-s1").await,
        &created,
    );
    let pvc = wait_child::<PersistentVolumeClaim>(&client, &ns, "wa-s1-data").await;
    assert_child(&pvc, &created);
    let sts = wait_child::<StatefulSet>(&client, &ns, "wa-s1").await;
    assert_child(&sts, &created);
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(1));

    let ready = wait_ready(&api, "s1").await;
    let status = ready.status.clone().expect("status");
    assert_eq!(status.pod_name.as_deref(), Some("wa-s1-0"));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(
        condition(&ready, "Progressing").map(|c| c.0),
        Some("False".into())
    );

    // The pod runs as uid 1000 under its own ServiceAccount, with the agent's environment, and
    // can write its profile volume.
    let pods = session_pods(&client, &ns, "s1").await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    assert_eq!(
        pod.spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("wa-s1")
    );
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod ip");
    let (code, env) = http_get(format!("{ip}:8080"), "/env")
        .await
        .expect("GET /env from the pod");
    assert_eq!(code, 200);
    let env: serde_json::Value = serde_json::from_str(&env).expect("env json");
    assert_eq!(env["WA_SESSION_NAME"], "s1");
    assert_eq!(env["WA_SESSION_NAMESPACE"], ns.as_str());
    assert_eq!(env["WA_DATA_DIR"], "/data");
    assert_eq!(env["WA_URL"], "https://web.whatsapp.com/");
    let (_, proc_status) = http_get(format!("{ip}:8080"), "/read?path=/proc/self/status")
        .await
        .expect("read /proc/self/status");
    let uid_line = proc_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "1000"),
        "{uid_line}"
    );
    let (code, body) = http_get(format!("{ip}:8080"), "/write?path=/data/probe&data=profile")
        .await
        .expect("write /data");
    assert_eq!(code, 200, "{body}");

    // kubectl get wa shows the contract's columns.
    let out = cluster.kubectl(&["get", "wa", "-n", &ns]).await;
    let header = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in ["NAME", "TENANT", "STATUS", "QR", "PHONE", "AGE"] {
        assert!(
            header.contains(col),
            "kubectl get wa header {header:?} lacks {col}"
        );
    }

    // Stopped: no pod, the data stays.
    set_desired_state(&api, "s1", "Stopped").await;
    wait_for_named("no pod for a Stopped session", READY_TIMEOUT, || async {
        session_pods(&client, &ns, "s1").await.is_empty()
    })
    .await;
    // the session pods are watched: a reconcile may see the pod while it terminates, and the
    // one after its deletion clears podName
    wait_for_value(
        "Ready=False/Stopped and no podName",
        READY_TIMEOUT,
        || async {
            let s = api.get("s1").await.ok()?;
            let no_pod = s.status.as_ref().is_some_and(|st| st.pod_name.is_none());
            (condition(&s, "Ready") == Some(("False".into(), "Stopped".into())) && no_pod)
                .then_some(s)
        },
    )
    .await;
    let sts = get::<StatefulSet>(&client, &ns, "wa-s1")
        .await
        .expect("sts kept");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(0));
    let kept = get::<PersistentVolumeClaim>(&client, &ns, "wa-s1-data")
        .await
        .expect("PVC kept");
    assert_eq!(kept.uid(), pvc.uid());

    // Running again: the same PVC, the profile written before is still there.
    set_desired_state(&api, "s1", "Running").await;
    wait_ready(&api, "s1").await;
    let pods = session_pods(&client, &ns, "s1").await;
    assert_eq!(pods.len(), 1);
    let ip = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod ip");
    let (code, body) = http_get(format!("{ip}:8080"), "/read?path=/data/probe")
        .await
        .expect("read /data");
    assert_eq!((code, body.as_str()), (200, "profile"));
}

#[tokio::test]
async fn deleted_and_edited_children_are_restored() {
    let (cluster, client, ns) = setup("op-restore").await;
    let _op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    let session = create_session(&api, "s2", json!({})).await;
    wait_ready(&api, "s2").await;

    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    let old = roles.get("wa-s2").await.expect("role");
    roles
        .delete("wa-s2", &DeleteParams::default())
        .await
        .expect("delete role");
    let new = wait_for_value("Role wa-s2 recreated", READY_TIMEOUT, || async {
        roles
            .get_opt("wa-s2")
            .await
            .ok()
            .flatten()
            .filter(|r| r.uid() != old.uid())
    })
    .await;
    assert_child(&new, &session);

    // A hand edit (another field manager) is taken back.
    roles
        .patch(
            "wa-s2",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }] }),
            ),
        )
        .await
        .expect("edit role");
    wait_for_named("Role rules reverted", READY_TIMEOUT, || async {
        roles
            .get("wa-s2")
            .await
            .ok()
            .and_then(|r| r.rules)
            .is_some_and(|rules| {
                rules.len() == 2
                    && rules
                        .iter()
                        .all(|r| r.resource_names.as_deref() == Some(&["s2".to_string()][..]))
            })
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sas.patch(
        "wa-s2",
        &PatchParams::default(),
        &Patch::Merge(
            json!({ "metadata": { "labels": { "whatsapp.leadmaster.io/tenant": null } } }),
        ),
    )
    .await
    .expect("edit sa labels");
    wait_for_named("ServiceAccount label restored", READY_TIMEOUT, || async {
        sas.get("wa-s2")
            .await
            .ok()
            .is_some_and(|sa| sa.labels().get("whatsapp.leadmaster.io/tenant").is_some())
    })
    .await;

    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    stss.patch(
        "wa-s2",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
    )
    .await
    .expect("scale by hand");
    wait_for_named("replicas reverted to 1", READY_TIMEOUT, || async {
        stss.get("wa-s2")
            .await
            .ok()
            .and_then(|s| s.spec)
            .and_then(|s| s.replicas)
            == Some(1)
    })
    .await;

    let old = stss.get("wa-s2").await.expect("sts");
    stss.delete("wa-s2", &DeleteParams::foreground())
        .await
        .expect("delete sts");
    wait_for_value("StatefulSet wa-s2 recreated", READY_TIMEOUT, || async {
        stss.get_opt("wa-s2")
            .await
            .ok()
            .flatten()
            .filter(|s| s.uid() != old.uid())
    })
    .await;
    wait_ready(&api, "s2").await;
    wait_for_named("exactly one pod for s2", READY_TIMEOUT, || async {
        let pods = session_pods(&client, &ns, "s2").await;
        pods.len() == 1 && pods[0].metadata.deletion_timestamp.is_none()
    })
    .await;
}

#[tokio::test]
async fn deletion_policies() {
    let (cluster, client, ns) = setup("op-delete").await;
    let _op = Operator::start(cluster, &ns, &["--logout-timeout", "6s"]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for (name, policy) in [
        ("keep", "Retain"),
        ("wipe", "Delete"),
        ("bye", "Logout"),
        ("mute", "Logout"),
    ] {
        create_session(&api, name, json!({ "deletionPolicy": policy })).await;
    }
    for name in ["keep", "wipe", "bye", "mute"] {
        wait_ready(&api, name).await;
    }
    let started = Instant::now();
    for name in ["keep", "wipe", "bye", "mute"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete session");
    }

    // Logout: the operator asks the agent (spec.logoutRequestedAt) and waits; the test plays
    // the agent and confirms in status.handled.
    let requested = wait_for_value("spec.logoutRequestedAt on bye", READY_TIMEOUT, || async {
        api.get("bye").await.ok()?.spec.logout_requested_at
    })
    .await;
    assert!(
        api.get_opt("bye").await.expect("get").is_some(),
        "the CR must wait for the agent"
    );
    let status = json!({
        "apiVersion": "whatsapp.leadmaster.io/v1alpha1",
        "kind": "WhatsAppSession",
        "status": { "handled": { "logoutRequestedAt": requested } },
    });
    api.patch_status(
        "bye",
        &PatchParams::apply(crds::managers::AGENT).force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("agent confirms logout");
    wait_for_named("bye deleted", GONE_TIMEOUT, || async {
        matches!(api.get_opt("bye").await, Ok(None))
    })
    .await;
    wait_for_named("bye's PVC deleted", GONE_TIMEOUT, || async {
        matches!(pvcs.get_opt("wa-bye-data").await, Ok(None))
    })
    .await;
    assert!(
        events_for(&client, &ns, "bye")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("LogoutRequested"))
    );

    // Logout without an answer: deleted after the timeout, with a Warning event.
    wait_for_named("mute deleted", GONE_TIMEOUT, || async {
        matches!(api.get_opt("mute").await, Ok(None))
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "mute went before the logout timeout"
    );
    wait_for_named("mute's PVC deleted", GONE_TIMEOUT, || async {
        matches!(pvcs.get_opt("wa-mute-data").await, Ok(None))
    })
    .await;
    assert!(
        events_for(&client, &ns, "mute")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("LogoutTimedOut"))
    );

    // Delete: the data goes.
    wait_for_named("wipe deleted", GONE_TIMEOUT, || async {
        matches!(api.get_opt("wipe").await, Ok(None))
    })
    .await;
    wait_for_named("wipe's PVC deleted", GONE_TIMEOUT, || async {
        matches!(pvcs.get_opt("wa-wipe-data").await, Ok(None))
    })
    .await;

    // Retain: the PVC stays, without an owner, while the rest is garbage collected.
    wait_for_named("keep deleted", GONE_TIMEOUT, || async {
        matches!(api.get_opt("keep").await, Ok(None))
    })
    .await;
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for_named("keep's StatefulSet collected", GONE_TIMEOUT, || async {
        matches!(stss.get_opt("wa-keep").await, Ok(None))
    })
    .await;
    let pvc = pvcs.get("wa-keep-data").await.expect("retained PVC");
    assert!(pvc.metadata.deletion_timestamp.is_none());
    assert!(
        pvc.owner_references().is_empty(),
        "{:?}",
        pvc.owner_references()
    );
}

#[tokio::test]
async fn invalid_sessions_are_refused_with_readable_messages() {
    let (_cluster, client, ns) = setup("op-invalid").await;
    let ar = ApiResource::erase::<WhatsAppSession>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let try_create = |name: &str, spec: serde_json::Value| {
        let api = api.clone();
        let obj: DynamicObject =
            serde_json::from_value(session_manifest(name, spec)).expect("object");
        async move { api.create(&PostParams::default(), &obj).await }
    };
    let refused = |r: Result<DynamicObject, kube::Error>| match r {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            e.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let cases = [
        (
            "no-tenant",
            json!({ "displayName": "x" }),
            "spec.tenant: Required value",
        ),
        (
            "bad-enum",
            json!({ "tenant": "acme", "desiredState": "Paused" }),
            "Unsupported value: \"Paused\"",
        ),
        (
            "bad-policy",
            json!({ "tenant": "acme", "deletionPolicy": "Shred" }),
            "Unsupported value: \"Shred\"",
        ),
        (
            "bad-phone",
            json!({ "tenant": "acme", "pairing": { "phoneNumber": "+54 9 11 2233" } }),
            "phoneNumber must be 8 to 15 digits",
        ),
        (
            "bad-size",
            json!({ "tenant": "acme", "storage": { "size": "lots" } }),
            "size must be a positive quantity",
        ),
        (
            "bad-tenant",
            json!({ "tenant": "Acme Corp" }),
            "tenant must be a DNS label",
        ),
        (
            &"n".repeat(53),
            json!({ "tenant": "acme" }),
            "metadata.name must be a DNS label of at most 52 characters",
        ),
        // Accepted before issue 13, then every reconcile failed: the StatefulSet was rejected.
        (
            "claims",
            json!({ "tenant": "acme", "resources": { "claims": [{ "name": "gpu" }] } }),
            "resources.claims is not supported",
        ),
        (
            "bad-quantity",
            json!({ "tenant": "acme", "resources": { "limits": { "memory": "1 Gi" } } }),
            "spec.resources.limits.memory: Invalid value",
        ),
        // Issue 28: what a session cannot run, refused where the user makes the mistake
        // instead of failing every reconcile (or binding an absurd volume).
        (
            "negative-cpu",
            json!({ "tenant": "acme", "resources": { "requests": { "cpu": "-1" } } }),
            "resource quantities must not be negative",
        ),
        (
            "request-over-limit",
            json!({ "tenant": "acme", "resources": {
                "requests": { "cpu": "2", "memory": "2Gi" }, "limits": { "cpu": "2", "memory": "1Gi" } } }),
            "requests.memory must not exceed limits.memory",
        ),
        (
            "memory-1ei",
            json!({ "tenant": "acme", "resources": { "limits": { "memory": "1Ei" } } }),
            "memory must be at most 64Gi",
        ),
        (
            // an integer, as YAML gives `cpu: 33`
            "cpu-33",
            json!({ "tenant": "acme", "resources": { "requests": { "cpu": 33 } } }),
            "cpu must be at most 32",
        ),
        (
            "gpu",
            json!({ "tenant": "acme", "resources": { "limits": { "nvidia.com/gpu": "1" } } }),
            "spec.resources.limits: Invalid value: unsupported resource name",
        ),
        (
            "memory-in-bytes",
            json!({ "tenant": "acme", "resources": { "limits": { "memory": "512" } } }),
            "memory limit must be at least 128Mi",
        ),
        (
            "storage-unbounded",
            json!({ "tenant": "acme", "storage": { "size": "999999999999999Ei" } }),
            "size must be a positive quantity of at most 1Ti",
        ),
        (
            "qr-year-9999",
            json!({ "tenant": "acme", "qrRequestedAt": "9999-12-31T23:59:59Z" }),
            "spec.qrRequestedAt: Invalid value: \"9999-12-31T23:59:59Z\": must be a time before 2100-01-01T00:00:00Z",
        ),
        (
            "logout-at-the-bound",
            json!({ "tenant": "acme", "logoutRequestedAt": "2100-01-01T00:00:00Z" }),
            "spec.logoutRequestedAt: Invalid value: \"2100-01-01T00:00:00Z\": must be a time before",
        ),
        // Issue 24: a send rate WhatsApp would ban, or none at all.
        (
            "rate-zero",
            json!({ "tenant": "acme", "messaging": { "sendRatePerMinute": 0 } }),
            "sendRatePerMinute must be between 1 and 60",
        ),
        (
            "rate-61",
            json!({ "tenant": "acme", "messaging": { "sendRatePerMinute": 61 } }),
            "sendRatePerMinute must be between 1 and 60",
        ),
        (
            "burst-11",
            json!({ "tenant": "acme", "messaging": { "sendBurst": 11 } }),
            "sendBurst must be between 1 and 10",
        ),
    ];
    let mut cases: Vec<(String, serde_json::Value, &str)> = cases
        .into_iter()
        .map(|(n, spec, m)| (n.to_string(), spec, m))
        .collect();
    // Proxies: an explicit port, and never an address of the pod itself or of the node's
    // link-local services (cloud metadata), however it is written.
    let port = "with an explicit port (1-65535)";
    let host = "proxy host must be a DNS name or a unicast IP address";
    for (i, (url, expected)) in [
        ("http://proxy.example", port),
        ("http://proxy.example:0", port),
        ("http://proxy.example:70000", port),
        ("http://user:pw@proxy.example:3128", port),
        ("http://169.254.169.254:80", host),
        ("http://127.0.0.1:3128", host),
        ("http://0.0.0.0:3128", host),
        ("http://[::1]:3128", host),
        ("http://[::]:3128", host),
        ("http://[fe80::1]:3128", host),
        ("http://[::ffff:169.254.169.254]:80", host),
        ("http://224.0.0.1:3128", host),
        ("http://localhost:3128", host),
        ("socks5://proxy.localhost:1080", host),
        ("http://metadata.google.internal:80", host),
        // numbers Chromium reads as IPv4 addresses: 127.0.0.1 and 169.254.169.254
        ("http://2130706433:3128", host),
        ("http://0xa9fea9fe:80", host),
        ("http://0x7f.1:3128", host),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push((
            format!("proxy-{i}"),
            json!({ "tenant": "acme", "proxy": { "url": url } }),
            expected,
        ));
    }
    for (name, spec, expected) in cases {
        let message = refused(try_create(&name, spec.clone()).await);
        assert!(
            message.contains(expected),
            "{name} {spec}: {message:?} should contain {expected:?}"
        );
    }
    // The bounds themselves are accepted, as are proxies on private and IPv6 addresses and
    // in-cluster names (they are what a cluster's proxy usually is).
    for (name, spec) in [
        (
            "at-the-bounds",
            json!({ "tenant": "acme", "desiredState": "Stopped",
                "resources": {
                    "requests": { "cpu": 32, "memory": "64Gi", "ephemeral-storage": "100Gi" },
                    "limits": { "cpu": "32", "memory": "64Gi", "ephemeral-storage": "100Gi" } },
                "storage": { "size": "1Ti" },
                "qrRequestedAt": "2099-12-31T23:59:59Z", "logoutRequestedAt": "2099-12-31T23:59:59Z",
                "proxy": { "url": "http://10.0.0.5:3128" },
                "messaging": { "sendRatePerMinute": 60, "sendBurst": 10 } }),
        ),
        (
            "smallest-limit",
            json!({ "tenant": "acme", "desiredState": "Stopped",
                "resources": { "requests": { "cpu": "0", "memory": "0" }, "limits": { "memory": "128Mi" } },
                "proxy": { "url": "socks5://proxy.tenants.svc.cluster.local:1080/" },
                "messaging": { "sendRatePerMinute": 1, "sendBurst": 1 } }),
        ),
        (
            "proxy-v6",
            json!({ "tenant": "acme", "desiredState": "Stopped",
                "proxy": { "url": "https://[2001:db8::1]:443" } }),
        ),
        (
            "proxy-public-name",
            json!({ "tenant": "acme", "desiredState": "Stopped",
                "proxy": { "url": "http://Proxy.Example.com:8080" } }),
        ),
    ] {
        try_create(name, spec.clone())
            .await
            .unwrap_or_else(|e| panic!("{name} {spec} must be accepted: {e}"));
    }
    try_create("ok", json!({ "tenant": "acme" }))
        .await
        .expect("a valid session is accepted");
    let message = refused(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "tenant": "other" } })),
        )
        .await,
    );
    assert!(message.contains("tenant is immutable"), "{message:?}");

    // Conditions get metav1.Condition's validations: a writer's typo is refused, not stored.
    let condition = |status: &str, reason: &str| {
        json!({ "status": { "conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }] } })
    };
    for (status, reason, expected) in [
        ("Yes", "PodReady", "Unsupported value: \"Yes\""),
        (
            "True",
            "pod ready",
            "status.conditions[0].reason: Invalid value",
        ),
        ("True", "", "status.conditions[0].reason"),
    ] {
        let message = refused(
            api.patch_status(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(condition(status, reason)),
            )
            .await,
        );
        assert!(message.contains(expected), "{status}/{reason}: {message:?}");
    }
    api.patch_status(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(condition("Unknown", "Starting")),
    )
    .await
    .expect("a valid condition is accepted");
    // Times in the status are bounded like the spec's: every writer puts "now" there, and a
    // time the types cannot read would make the whole session unreadable.
    for status in [
        json!({ "status": { "updatedAt": "9999-12-31T23:59:59Z" } }),
        json!({ "status": { "lastError": { "code": "X", "message": "", "at": "2100-01-01T00:00:00Z" } } }),
        json!({ "status": { "handled": { "qrRequestedAt": "2200-01-01T00:00:00Z" } } }),
        json!({ "status": { "conditions": [{
            "type": "Ready", "status": "True", "reason": "PodReady", "message": "",
            "lastTransitionTime": "9999-12-31T23:59:59Z" }] } }),
    ] {
        let message = refused(
            api.patch_status("ok", &PatchParams::default(), &Patch::Merge(status.clone()))
                .await,
        );
        assert!(
            message.contains("must be a time before 2100-01-01T00:00:00Z"),
            "{status}: {message:?}"
        );
    }
}

/// `kubectl explain` over the installed CRD reads as documentation: every field shows its own
/// description, none shows the Go internals of the type it happens to use.
#[tokio::test]
async fn kubectl_explain_documents_every_field() {
    let (cluster, _client, _ns) = setup("op-explain").await;
    let recursive = cluster
        .kubectl(&["explain", "whatsappsession.spec", "--recursive"])
        .await;
    let tree = String::from_utf8_lossy(&recursive.stdout);
    for field in [
        "tenant",
        "displayName",
        "desiredState",
        "qrRequestedAt",
        "logoutRequestedAt",
        "deletionPolicy",
        "storage",
        "storageClassName",
        "resources",
        "requests",
        "limits",
        "claims",
        "proxy",
        "credentialsSecretRef",
        "pairing",
        "phoneNumber",
    ] {
        assert!(
            tree.lines()
                .any(|l| l.trim_start().starts_with(&format!("{field}\t"))),
            "{field} missing from `kubectl explain whatsappsession.spec --recursive`:\n{tree}"
        );
    }
    let crd = serde_json::to_value(<WhatsAppSession as kube::CustomResourceExt>::crd())
        .expect("crd json");
    let mut fields = Vec::new();
    schema_fields(
        "",
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        &mut fields,
    );
    assert!(fields.len() >= 45, "{}", fields.len());
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (path, description) in fields {
        let out = cluster
            .kubectl(&["explain", &format!("whatsappsession.{path}")])
            .await;
        let text = String::from_utf8_lossy(&out.stdout);
        let shown = text
            .split_once("DESCRIPTION:")
            .map(|(_, d)| d.split("FIELDS:").next().unwrap_or(d))
            .map(squash)
            .unwrap_or_default();
        assert!(
            !description.is_empty() && shown.contains(&squash(&description)),
            "kubectl explain whatsappsession.{path} shows {shown:?}, not {description:?}"
        );
        for generic in ["Time is a wrapper", "Quantity is a fixed-point"] {
            assert!(!shown.contains(generic), "{path}: {shown}");
        }
    }
}

/// (path, description) of every property below `schema`, as `kubectl explain` addresses them.
fn schema_fields(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, String)>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, sub) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let d = sub
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("");
            out.push((p.clone(), d.to_string()));
            schema_fields(&p, sub, out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_fields(path, items, out);
    }
}

async fn can_i(
    cluster: &devcluster_testing::TestCluster,
    ns: &str,
    sa: &str,
    args: &[&str],
) -> bool {
    let who = format!("system:serviceaccount:{ns}:{sa}");
    let mut full = vec!["auth", "can-i", "--as", &who, "-n", ns];
    full.extend_from_slice(args);
    let out = cluster.kubectl(&full).await;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl {full:?}: {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

#[tokio::test]
async fn session_service_account_has_least_privilege() {
    let (cluster, client, ns) = setup("op-rbac").await;
    let _op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "one", json!({})).await;
    create_session(&api, "two", json!({})).await;
    wait_child::<RoleBinding>(&client, &ns, "wa-one").await;
    wait_child::<RoleBinding>(&client, &ns, "wa-two").await;
    let r = "whatsappsessions.whatsapp.leadmaster.io";
    let sa = "wa-one";
    assert!(
        can_i(
            cluster,
            &ns,
            sa,
            &["patch", &format!("{r}/one"), "--subresource=status"]
        )
        .await
    );
    assert!(can_i(cluster, &ns, sa, &["get", &format!("{r}/one")]).await);
    assert!(can_i(cluster, &ns, sa, &["watch", &format!("{r}/one")]).await);
    assert!(!can_i(cluster, &ns, sa, &["get", &format!("{r}/two")]).await);
    assert!(
        !can_i(
            cluster,
            &ns,
            sa,
            &["patch", &format!("{r}/two"), "--subresource=status"]
        )
        .await
    );
    assert!(
        !can_i(cluster, &ns, sa, &["patch", &format!("{r}/one")]).await,
        "spec is the hub's, not the agent's"
    );
    assert!(!can_i(cluster, &ns, sa, &["delete", &format!("{r}/one")]).await);
    assert!(!can_i(cluster, &ns, sa, &["get", "pods"]).await);
    assert!(!can_i(cluster, &ns, sa, &["get", "secrets"]).await);
    assert!(!can_i(cluster, &ns, sa, &["list", "secrets"]).await);

    // And from inside the pod, with its projected token: its own CR yes, the other one no.
    wait_ready(&api, "one").await;
    let pod = session_pods(&client, &ns, "one")
        .await
        .into_iter()
        .next()
        .expect("pod");
    let ip = pod.status.and_then(|s| s.pod_ip).expect("ip");
    let base = format!("/apis/whatsapp.leadmaster.io/v1alpha1/namespaces/{ns}/whatsappsessions");
    let (code, body) = http_get(format!("{ip}:8080"), &format!("/kube?path={base}/one"))
        .await
        .expect("kube get own");
    assert_eq!(code, 200, "{body}");
    let (code, _) = http_get(format!("{ip}:8080"), &format!("/kube?path={base}/two"))
        .await
        .expect("kube get other");
    assert_eq!(code, 403);
    let (code, _) = http_get(
        format!("{ip}:8080"),
        &format!("/kube?path=/api/v1/namespaces/{ns}/secrets"),
    )
    .await
    .expect("secrets");
    assert_eq!(code, 403);
}

#[tokio::test]
async fn operator_killed_mid_reconcile_converges_without_duplicate_pods() {
    let (cluster, client, ns) = setup("op-restart").await;
    let mut op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    let names = ["r1", "r2", "r3"];
    for n in names {
        create_session(&api, n, json!({})).await;
    }
    // Kill it as soon as it has started writing children.
    wait_child::<ServiceAccount>(&client, &ns, "wa-r1").await;
    op.kill().await;
    let _op2 = Operator::start(cluster, &ns, &[]).await;
    for n in names {
        wait_ready(&api, n).await;
    }
    for n in names {
        let pods = session_pods(&client, &ns, n).await;
        assert_eq!(
            pods.len(),
            1,
            "{n}: {:?}",
            pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        assert_eq!(pods[0].name_any(), format!("wa-{n}-0"));
    }
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        stss.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        names.len()
    );
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let (cluster, client, ns) = setup("op-leader").await;
    let flags = [
        "--leader-election=true",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        "6",
    ];
    let mut a = Operator::start_as(cluster, &ns, "op-a", &flags).await;
    let mut b = Operator::start_as(cluster, &ns, "op-b", &flags).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = wait_for_value("a Lease holder", READY_TIMEOUT, || async {
        leases
            .get_opt("whatsapp-operator")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    })
    .await;
    assert!(holder == "op-a" || holder == "op-b", "{holder}");
    let (leader, standby) = if holder == "op-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    wait_for_named("leader metric on the holder", READY_TIMEOUT, || async {
        leader.metric("wa_operator_leader").await == Some(1.0)
    })
    .await;
    assert_eq!(standby.metric("wa_operator_leader").await, Some(0.0));

    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "c1", json!({})).await;
    wait_ready(&api, "c1").await;
    let standby_text = standby.metrics().await.expect("standby metrics");
    assert!(
        !standby_text.contains("wa_operator_reconciles_total{"),
        "the standby reconciled: {standby_text}"
    );

    // The leader dies without releasing the Lease: the standby takes over after it expires.
    leader.kill().await;
    let new_holder = if holder == "op-a" { "op-b" } else { "op-a" };
    wait_for_named("the standby to take the Lease", READY_TIMEOUT, || async {
        leases
            .get_opt("whatsapp-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some(new_holder)
    })
    .await;
    create_session(&api, "c2", json!({})).await;
    wait_ready(&api, "c2").await;
    assert_eq!(standby.metric("wa_operator_leader").await, Some(1.0));
    assert_eq!(session_pods(&client, &ns, "c1").await.len(), 1);
}

#[tokio::test]
async fn sigterm_releases_the_lease_to_a_standby_and_the_last_replica_deletes_it() {
    let (cluster, client, ns) = setup("op-release").await;
    // A long lease: a take-over well within it can only come from the release, not from expiry.
    let flags = [
        "--leader-election=true",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        "60",
    ];
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        leases
            .get_opt("whatsapp-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let mut a = Operator::start_as(cluster, &ns, "op-a", &flags).await;
    wait_for_named("op-a to hold the Lease", READY_TIMEOUT, || async {
        holder().await.as_deref() == Some("op-a")
    })
    .await;
    let mut b = Operator::start_as(cluster, &ns, "op-b", &flags).await;
    wait_for_named("op-b to stand by", READY_TIMEOUT, || async {
        b.log_text().contains("standing by")
    })
    .await;

    let status = a.terminate().await;
    assert!(status.success(), "the leader exits 0 on SIGTERM: {status}");
    let released = Instant::now();
    wait_for_named(
        "op-b to take the released Lease (far sooner than its 60 s)",
        Duration::from_secs(20),
        || async { holder().await.as_deref() == Some("op-b") },
    )
    .await;
    eprintln!(
        "take-over {:.1} s after the leader exited",
        released.elapsed().as_secs_f64()
    );
    wait_for_named("leader metric on op-b", READY_TIMEOUT, || async {
        b.metric("wa_operator_leader").await == Some(1.0)
    })
    .await;
    // The new leader works: it reconciles a session.
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "after-release", json!({})).await;
    wait_child::<ServiceAccount>(&client, &ns, "wa-after-release").await;

    // The last replica leaves nothing behind (what `helm uninstall` needs).
    let status = b.terminate().await;
    assert!(status.success(), "{status}");
    let lease = leases
        .get_opt("whatsapp-operator")
        .await
        .expect("get lease");
    assert!(
        lease.is_none(),
        "the Lease is left after the last replica stopped: {lease:?}"
    );
    assert!(
        b.log_text().contains("released and deleted the Lease"),
        "{}",
        b.log_text()
    );
}

#[tokio::test]
async fn deleting_the_namespace_of_sessions_is_quiet() {
    let (cluster, client, ns) = setup("op-nsdel").await;
    let op = Operator::start(cluster, &ns, &["--logout-timeout=3s"]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "gone-logout", json!({})).await;
    create_session(&api, "gone-delete", json!({ "deletionPolicy": "Delete" })).await;
    create_session(&api, "gone-retain", json!({ "deletionPolicy": "Retain" })).await;
    for n in ["gone-logout", "gone-delete", "gone-retain"] {
        wait_ready(&api, n).await;
    }
    let errors_before = op
        .metric_sum("wa_operator_reconcile_errors_total")
        .await
        .expect("metrics");

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The namespace goes only after the operator removed its finalizers.
    wait_for_named("the namespace to be gone", GONE_TIMEOUT, || async {
        namespaces.get_opt(&ns).await.ok().flatten().is_none()
    })
    .await;
    // The operator's cache has seen the sessions go, so every reconcile of them has run.
    wait_for_named(
        "the operator's cache to be empty",
        READY_TIMEOUT,
        || async { op.metric_sum("wa_operator_sessions").await == Some(0.0) },
    )
    .await;
    let errors_after = op
        .metric_sum("wa_operator_reconcile_errors_total")
        .await
        .expect("metrics");
    let log = op.log_text();
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(
        errors_after, errors_before,
        "reconcile errors while the namespace went: {noisy:#?}"
    );
    assert!(
        noisy.is_empty(),
        "warnings or errors while the namespace went: {noisy:#?}"
    );
}

/// Whatever happens to the process, the Lease goes with the operator's Pod: `helm uninstall`
/// deletes the operator's RBAC before its Pod gets SIGTERM, so only the garbage collector can.
#[tokio::test]
async fn the_lease_is_owned_by_the_holders_pod_and_goes_with_it() {
    let (cluster, client, ns) = setup("op-leaseown").await;
    // A Pod object standing for the operator's own (the operator runs as a host process here).
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let image = cluster.test_pod_image().await;
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "wa-operator-0" },
        "spec": { "containers": [{ "name": "operator", "image": image }], "terminationGracePeriodSeconds": 1 },
    }))
    .expect("pod json");
    let uid = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
        .uid()
        .expect("uid");
    let flags = [
        "--leader-election=true",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        "60",
    ];
    let mut op =
        Operator::start_with_env(cluster, &ns, "wa-operator-0", &flags, &[("POD_UID", &uid)]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = wait_for_value("the Lease held by the operator", READY_TIMEOUT, || async {
        let l = leases.get_opt("whatsapp-operator").await.ok().flatten()?;
        (l.spec.as_ref()?.holder_identity.as_deref() == Some("wa-operator-0")).then_some(l)
    })
    .await;
    let owners = lease.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        ("Pod", "wa-operator-0", uid.as_str())
    );

    // No chance to release: the Lease is still there, held...
    op.kill().await;
    assert!(
        leases
            .get_opt("whatsapp-operator")
            .await
            .expect("get")
            .is_some()
    );
    // ...until its Pod is deleted.
    pods.delete("wa-operator-0", &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_for_named(
        "the garbage collector to delete the Lease with the Pod",
        GONE_TIMEOUT,
        || async { matches!(leases.get_opt("whatsapp-operator").await, Ok(None)) },
    )
    .await;
}

/// A session image the node cannot pull (not in the registry) leaves the pod waiting with
/// ErrImagePull/ImagePullBackOff, and the session's Ready condition says so, naming the image:
/// what a user reads in `kubectl describe wa` or `kubectl get wa` instead of a silent "not ready".
#[tokio::test]
async fn a_session_image_missing_from_the_registry_shows_in_ready() {
    let (cluster, client, ns) = setup("op-noimage").await;
    let missing = format!(
        "{}/leadmaster/wa-session:does-not-exist",
        cluster.registry().expect("registry")
    );
    let _op = Operator::start(cluster, &ns, &["--session-image", &missing]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "ghost", json!({})).await;
    let (reason, message) = wait_for_value(
        "Ready=False naming the image pull failure",
        READY_TIMEOUT,
        || async {
            let s = api.get_opt("ghost").await.ok().flatten()?;
            let c = s
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            let pulling =
                c.message.contains("ErrImagePull") || c.message.contains("ImagePullBackOff");
            (c.status == "False" && pulling).then_some((c.reason, c.message))
        },
    )
    .await;
    assert_eq!(reason, "PodNotReady");
    assert!(message.contains("does-not-exist"), "{message}");
}

/// An agent that dies without SIGTERM (`kill -9`, OOM) cannot say that nothing holds its
/// session any more: the operator, seeing the session container restarted after the agent's
/// last word, writes the stopped agent's status for it (docs/design.md §2), so the CR stops
/// claiming `connected`. The stand-in agent never writes, so what the CR shows afterwards is the
/// operator's doing.
#[tokio::test]
async fn an_agent_killed_without_a_word_is_not_left_connected() {
    use crds::{QrStatus, SessionApply, SessionState, WhatsAppSessionStatus, Writer, agent_status};
    let (cluster, client, ns) = setup("op-agent-killed").await;
    let _op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "k1", json!({})).await;
    wait_ready(&api, "k1").await;

    // What a linked agent writes (as the agent's field manager).
    let now = crds::now();
    let mut linked = WhatsAppSessionStatus {
        status: Some(SessionState::Connected),
        qr_status: Some(QrStatus::Used),
        phone_number: Some("5491100000000".into()),
        connected_at: Some(now.clone()),
        updated_at: Some(now.clone()),
        handled: Some(Default::default()),
        ..Default::default()
    };
    agent_status::sync_condition(&mut linked, false, false, now);
    SessionApply::status("k1", linked)
        .apply(&api, Writer::Agent)
        .await
        .expect("write the agent's status");

    // The agent dies without a word: the container exits as a SIGKILL does (137).
    let pod = session_pods(&client, &ns, "k1").await.pop().expect("pod");
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod ip");
    http_get(format!("{ip}:8080"), "/exit?code=137").await;

    let stopped = wait_for_value("the CR to stop saying connected", READY_TIMEOUT, || async {
        let s = api.get_opt("k1").await.ok().flatten()?;
        let st = s.status.clone()?;
        (st.status == Some(SessionState::Connecting)).then_some(s)
    })
    .await;
    let st = stopped.status.clone().expect("status");
    assert_eq!(st.connected_at, None, "no browser holds it");
    assert_eq!(
        st.phone_number.as_deref(),
        Some("5491100000000"),
        "the account is kept: the saved login is still there"
    );
    assert_eq!(
        condition(&stopped, "Authenticated"),
        Some(("Unknown".into(), agent_status::AGENT_STOPPED.into()))
    );
    // Written as the agent (its field manager owns the state), and said where operators look.
    let managers: Vec<String> = stopped
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == crds::managers::AGENT),
        "{managers:?}"
    );
    let events = wait_for_value("an AgentStopped event", READY_TIMEOUT, || async {
        let e = events_for(&client, &ns, "k1").await;
        e.iter()
            .any(|e| e.reason.as_deref() == Some("AgentStopped"))
            .then_some(e)
    })
    .await;
    assert!(
        events.iter().any(|e| e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("AgentStopped"))
    );
}
