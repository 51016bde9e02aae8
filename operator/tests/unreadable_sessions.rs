//! A WhatsAppSession the Rust types cannot read, next to readable ones (issue 28). Users meet
//! it the way this test makes it: stored under an older CRD that admitted more — the first
//! release's took `qrRequestedAt: 9999-12-31T23:59:59Z`, past the last time k8s-openapi's
//! `Time` reads — then the CRD upgraded as the README says, which refuses such a value in new
//! writes but keeps what is stored.
//!
//! The real operator and the real hub keep serving every other session (from their first list
//! and again after a restart, i.e. from a fresh list), and both report the unreadable one: a
//! WARN line naming it and the field, a gauge, and from the operator a Warning Event
//! `Unparsable` on it. Fixed, it is reconciled and served like the others. Before issue 28 the
//! hub's typed list failed as a whole: its view never synced (`/health` 503) and it served
//! nothing at all.
//!
//! A test binary of its own: it swaps the cluster-wide CRD (see crd_upgrade.rs); the current
//! CRD is put back even when an assertion fails.
#[path = "support/crd.rs"]
mod crd;

use crd::{RestoreCurrentCrd, install_old_crd_as_helm};
use crds::testing::{GONE_TIMEOUT, READY_TIMEOUT, condition, manifest as session_manifest};
use devcluster_testing::metrics::metric_value;
use devcluster_testing::operator::Operator;
use devcluster_testing::{
    TestCluster, events_for, free_port, http, http_get, wait_for_named, wait_for_value,
};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crds::WhatsAppSession;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const BAD_TIME: &str = "9999-12-31T23:59:59Z";
const PASSWORD: &str = "unreadable-test-password";

/// The real `wa-hub` (the release build's), serving `ns`, logging to a file.
struct Hub {
    child: tokio::process::Child,
    port: u16,
    metrics_port: u16,
    log: PathBuf,
    users: PathBuf,
    secret: PathBuf,
    ns: String,
    kubeconfig: PathBuf,
}

impl Hub {
    async fn start(cluster: &TestCluster, ns: &str, dir: &std::path::Path) -> Hub {
        let program = devcluster_testing::release_program("wa-hub");
        let hash = {
            let mut child = tokio::process::Command::new(&program)
                .arg("hash-password")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("wa-hub hash-password");
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(PASSWORD.as_bytes()).await.expect("write");
            drop(stdin);
            let out = child.wait_with_output().await.expect("hash-password");
            assert!(out.status.success(), "wa-hub hash-password: {out:?}");
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .trim()
                .to_string()
        };
        let users = dir.join("users.yaml");
        std::fs::write(
            &users,
            format!("users:\n  - {{username: admin, passwordHash: '{hash}', tenants: [], role: admin}}\n"),
        )
        .expect("users file");
        let secret = dir.join("jwt-secret");
        std::fs::write(&secret, "unreadable-test-secret-0123456789abcdef0123\n").expect("secret");
        Self::spawn(
            cluster.kubeconfig(),
            ns,
            users,
            secret,
            dir.join("wa-hub.log"),
        )
        .await
    }

    async fn spawn(
        kubeconfig: PathBuf,
        ns: &str,
        users: PathBuf,
        secret: PathBuf,
        log: PathBuf,
    ) -> Hub {
        let (port, metrics_port) = (free_port(), free_port());
        let file = std::fs::File::create(&log).expect("hub log");
        let child = tokio::process::Command::new(devcluster_testing::release_program("wa-hub"))
            .args(["--namespace", ns, "--users-file"])
            .arg(&users)
            .arg("--jwt-secret-file")
            .arg(&secret)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("HUB_STATIC_DIR")
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wa-hub");
        eprintln!("wa-hub for {ns}: log {}", log.display());
        Hub {
            child,
            port,
            metrics_port,
            log,
            users,
            secret,
            ns: ns.to_string(),
            kubeconfig,
        }
    }

    /// SIGTERM, then the same hub again (a fresh list of the sessions).
    async fn restart(self) -> Hub {
        let Hub {
            mut child,
            users,
            secret,
            ns,
            kubeconfig,
            log,
            ..
        } = self;
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        let log = log.with_extension("2.log");
        Self::spawn(kubeconfig, &ns, users, secret, log).await
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn health(&self) -> Option<u16> {
        http_get(format!("127.0.0.1:{}", self.port), "/health")
            .await
            .map(|(c, _)| c)
    }

    async fn token(&self) -> String {
        let body = json!({"username": "admin", "password": PASSWORD}).to_string();
        let (code, answer) = wait_for_value("a hub login", Duration::from_secs(30), || async {
            http(
                "POST",
                format!("127.0.0.1:{}", self.port),
                "/api/auth/login",
                &[],
                Some(&body),
            )
            .await
        })
        .await;
        assert_eq!(code, 200, "login: {answer}");
        let v: Value = serde_json::from_str(&answer).expect("login JSON");
        v["token"].as_str().expect("token").to_string()
    }

    /// The instance ids the hub lists for an admin.
    async fn listed(&self, token: &str) -> Option<Vec<String>> {
        let auth = format!("Bearer {token}");
        let (code, body) = http(
            "GET",
            format!("127.0.0.1:{}", self.port),
            "/api/session-manager/sessions",
            &[("Authorization", &auth)],
            None,
        )
        .await?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let mut ids: Vec<String> = v
            .as_array()?
            .iter()
            .filter_map(|s| s["instance_id"].as_str().map(String::from))
            .collect();
        ids.sort();
        Some(ids)
    }

    async fn get_session(&self, token: &str, id: &str) -> Option<u16> {
        let auth = format!("Bearer {token}");
        http(
            "GET",
            format!("127.0.0.1:{}", self.port),
            &format!("/api/session-manager/sessions/{id}"),
            &[("Authorization", &auth)],
            None,
        )
        .await
        .map(|(c, _)| c)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(format!("127.0.0.1:{}", self.metrics_port), "/metrics").await?;
        metric_value(&text, name)
    }
}

/// A session as a DynamicObject, so a spec the typed struct cannot hold is sent as written.
fn dynamic(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(session_manifest(name, spec)).expect("session object")
}

/// Whether the served CRD admits `qrRequestedAt: 9999-…` (dry run): the old one does, the
/// current one refuses it with its message.
async fn far_future_time_admitted(api: &Api<DynamicObject>) -> Result<(), String> {
    let probe = dynamic(
        "time-probe",
        json!({"tenant": "acme", "qrRequestedAt": BAD_TIME}),
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&dry, &probe).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

/// The session's readable parts: whether the operator took it (its finalizer) and reconciled
/// it (Ready False, reason Stopped, at its generation).
async fn reconciled(api: &Api<WhatsAppSession>, name: &str) -> bool {
    let Ok(Some(s)) = api.get_opt(name).await else {
        return false;
    };
    let observed = s.status.as_ref().and_then(|st| st.observed_generation);
    s.finalizers()
        .iter()
        .any(|f| f == "whatsapp.leadmaster.io/cleanup")
        && condition(&s, "Ready") == Some(("False".into(), "Stopped".into()))
        && observed == s.metadata.generation
}

/// What both binaries must show while `bad` is unreadable: the others served, `bad` reported.
async fn check_reported(client: &kube::Client, ns: &str, op: &Operator, hub: &Hub, goods: &[&str]) {
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), ns);
    for good in goods {
        wait_for_named(&format!("{good} reconciled"), READY_TIMEOUT, || {
            reconciled(&api, good)
        })
        .await;
    }
    wait_for_named(
        "the operator's gauge wa_operator_unparsable_sessions 1",
        READY_TIMEOUT,
        || async { op.metric("wa_operator_unparsable_sessions").await == Some(1.0) },
    )
    .await;
    let line = wait_for_value(
        "the operator's WARN line naming bad and its field",
        READY_TIMEOUT,
        || async { unparsable_line(&op.log_text()) },
    )
    .await;
    assert_eq!(line["level"], "WARN", "{line}");
    // the object and the field, never its value
    assert!(!line.to_string().contains("9999-12-31"), "{line}");

    // The hub is live and serves the others; `bad` is not there, and counted.
    wait_for_named("the hub's /health 200", READY_TIMEOUT, || async {
        hub.health().await == Some(200)
    })
    .await;
    let token = hub.token().await;
    let mut want: Vec<String> = goods.iter().map(|g| g.to_string()).collect();
    want.sort();
    wait_for_named(
        &format!("the hub lists {want:?}"),
        READY_TIMEOUT,
        || async { hub.listed(&token).await.as_ref() == Some(&want) },
    )
    .await;
    assert_eq!(hub.get_session(&token, "bad").await, Some(404));
    wait_for_named(
        "the hub's gauge wa_hub_unparsable_sessions 1",
        READY_TIMEOUT,
        || async { hub.metric("wa_hub_unparsable_sessions").await == Some(1.0) },
    )
    .await;
    let line = wait_for_value(
        "the hub's WARN line naming bad and its field",
        READY_TIMEOUT,
        || async { unparsable_line(&hub.log_text()) },
    )
    .await;
    assert!(!line.to_string().contains("9999-12-31"), "{line}");
}

/// The JSON log line reporting `bad` as unreadable at `spec.qrRequestedAt` (the operator
/// flattens the event's fields into the line, the hub keeps them under `fields`).
fn unparsable_line(log: &str) -> Option<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            let f = if v["fields"].is_object() {
                &v["fields"]
            } else {
                v
            };
            f["name"] == "bad"
                && f["path"] == "spec.qrRequestedAt"
                && f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot be read"))
        })
}

#[tokio::test]
async fn an_unreadable_session_is_reported_and_the_others_are_still_served() {
    let cluster = devcluster_testing::cluster().await;
    let client = cluster.client();
    let _restore = RestoreCurrentCrd(cluster.kubeconfig());
    let ns = cluster.namespace("unreadable").await;
    // The namespace may hold tenant acme's sessions (README "Security model").
    let out = cluster
        .kubectl(&[
            "label",
            "namespace",
            &ns,
            "tenant.whatsapp.leadmaster.io/acme=",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    let dyn_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &crds::watch::api_resource());
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);

    // 1. Under the first release's CRD: two readable sessions and one the types cannot read.
    install_old_crd_as_helm(&client).await;
    wait_for_value(
        "the old CRD to be served (a 9999 time admitted)",
        READY_TIMEOUT,
        || async { far_future_time_admitted(&dyn_api).await.ok() },
    )
    .await;
    let stopped = json!({"tenant": "acme", "desiredState": "Stopped", "deletionPolicy": "Delete"});
    let mut bad_spec = stopped.clone();
    bad_spec["qrRequestedAt"] = json!(BAD_TIME);
    for (name, spec) in [
        ("good-1", &stopped),
        ("bad", &bad_spec),
        ("good-2", &stopped),
    ] {
        dyn_api
            .create(&PostParams::default(), &dynamic(name, spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("create {name} under the old CRD: {e}"));
    }

    // 2. The CRD upgrade: new writes of such a time are refused, the stored one stays.
    crds::testing::install_crd(&client).await;
    let refusal = wait_for_value(
        "the current CRD to be served (a 9999 time refused)",
        READY_TIMEOUT,
        || async { far_future_time_admitted(&dyn_api).await.err() },
    )
    .await;
    assert!(
        refusal.contains("must be a time before 2100-01-01T00:00:00Z"),
        "{refusal}"
    );
    assert_eq!(
        dyn_api.get("bad").await.expect("bad is stored").data["spec"]["qrRequestedAt"],
        BAD_TIME
    );

    // 3. The operator and the hub, as after an upgrade.
    let dir = tempfile_dir(&ns);
    let op = Operator::start(cluster, &ns, &[]).await;
    let hub = Hub::start(cluster, &ns, &dir).await;
    check_reported(&client, &ns, &op, &hub, &["good-1", "good-2"]).await;
    let event = wait_for_value(
        "a Warning Event Unparsable on bad",
        READY_TIMEOUT,
        || async {
            events_for(&client, &ns, "bad")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Unparsable"))
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.clone().unwrap_or_default();
    assert!(note.contains("spec.qrRequestedAt"), "{note}");
    assert!(!note.contains("9999-12-31"), "{note}");
    let bad = dyn_api.get("bad").await.expect("bad");
    assert!(
        bad.finalizers().is_empty(),
        "the operator must not act on what it cannot read: {:?}",
        bad.finalizers()
    );

    // 4. Restarted (a fresh list each): the same.
    let mut op = op;
    let status = op.terminate().await;
    assert!(status.success(), "operator exit: {status:?}");
    let op = Operator::start_as(cluster, &ns, "op-2", &[]).await;
    let hub = hub.restart().await;
    api.patch(
        "good-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"displayName": "Ventas"}})),
    )
    .await
    .expect("edit good-1");
    check_reported(&client, &ns, &op, &hub, &["good-1", "good-2"]).await;

    // 5. Fixed: reconciled and served like the others, no longer counted.
    api.patch(
        "bad",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"qrRequestedAt": "2026-01-01T00:00:00Z"}})),
    )
    .await
    .expect("fix bad (the new value is admitted; the others are unchanged)");
    wait_for_named("bad reconciled once fixed", READY_TIMEOUT, || {
        reconciled(&api, "bad")
    })
    .await;
    let token = hub.token().await;
    wait_for_named("the hub lists all three", READY_TIMEOUT, || async {
        hub.listed(&token).await == Some(vec!["bad".into(), "good-1".into(), "good-2".into()])
    })
    .await;
    wait_for_named("both gauges 0", READY_TIMEOUT, || async {
        op.metric("wa_operator_unparsable_sessions").await == Some(0.0)
            && hub.metric("wa_hub_unparsable_sessions").await == Some(0.0)
    })
    .await;

    for name in ["good-1", "good-2", "bad"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_for_named("the sessions to be gone", GONE_TIMEOUT, || async {
        dyn_api
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
    drop(hub);
}

/// A directory for the hub's files and log, kept after the test for debugging.
fn tempfile_dir(ns: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-unreadable-{ns}"));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}
