//! Upgrading the CRD under existing sessions, the way the README says (Helm never upgrades
//! `crds/`): from the first release's CRD (`crds/tests/fixtures/whatsappsession-0.1.0.yaml`,
//! `git show 411c26f:crds/whatsappsession.yaml`), installed as `helm install` leaves it, to the
//! current one with
//! `kubectl apply --server-side --force-conflicts -f charts/whatsapp-operator/crds/whatsappsession.yaml`.
//!
//! A test binary of its own: it swaps the cluster-wide CRD, which no other test may see half
//! done, and cargo runs test binaries one after another. The current CRD is put back even when
//! an assertion fails.
#[path = "support/crd.rs"]
mod crd;

use crd::{CHART_CRD, RestoreCurrentCrd, install_old_crd_as_helm};
use crds::WhatsAppSession;
use crds::testing::{
    GONE_TIMEOUT, READY_TIMEOUT, condition, manifest as session_manifest, set_desired_state,
    wait_ready,
};
use devcluster_testing::operator::Operator;
use devcluster_testing::{wait_for_named, wait_for_value};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// A session as a DynamicObject, so specs the typed struct would reshape are sent as written.
fn dynamic(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(session_manifest(name, spec)).expect("session object")
}

/// Whether the API server currently accepts `resources.claims` (the old CRD does; the current
/// one refuses it), probed with a dry-run create.
async fn claims_accepted(api: &Api<DynamicObject>) -> Result<(), String> {
    let probe = dynamic(
        "claims-probe",
        json!({"tenant": "acme", "resources": {"claims": [{"name": "gpu"}]}}),
    );
    match api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &probe,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

fn kubectl(cluster: &devcluster_testing::TestCluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .output()
        .expect("run kubectl")
}

#[tokio::test]
async fn crd_upgrade_from_the_first_release_keeps_sessions_and_the_operator_reconciles_them() {
    let cluster = devcluster_testing::cluster().await;
    let client = cluster.client();
    let _restore = RestoreCurrentCrd(cluster.kubeconfig());
    let ns = cluster.namespace("crd-upgrade").await;
    let ar = ApiResource::erase::<WhatsAppSession>(&());
    let dyn_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);

    // 1. The previous release: its CRD, an operator, a Stopped session using every spec field
    //    and a Running one with its pod.
    install_old_crd_as_helm(&client).await;
    wait_for_value(
        "the old CRD to be served (resources.claims accepted)",
        READY_TIMEOUT,
        || async { claims_accepted(&dyn_api).await.ok() },
    )
    .await;
    let _op = Operator::start(cluster, &ns, &[]).await;
    let full_spec = json!({
        "tenant": "acme",
        "displayName": "Ventas (Acme)",
        "desiredState": "Stopped",
        "deletionPolicy": "Delete",
        "storage": {"size": "1Gi"},
        "resources": {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}},
        "proxy": {"url": "http://proxy.example:3128", "credentialsSecretRef": {"name": "proxy"}},
        "pairing": {"phoneNumber": "5491122334455"},
    });
    dyn_api
        .create(&PostParams::default(), &dynamic("old-stopped", full_spec))
        .await
        .expect("create a Stopped session under the old CRD");
    dyn_api
        .create(
            &PostParams::default(),
            &dynamic(
                "old-running",
                json!({"tenant": "acme", "deletionPolicy": "Delete"}),
            ),
        )
        .await
        .expect("create a Running session under the old CRD");
    let running = wait_ready(&api, "old-running").await;
    let stopped = wait_for_value("old-stopped Ready=False Stopped", READY_TIMEOUT, || async {
        let s = api.get_opt("old-stopped").await.ok().flatten()?;
        (condition(&s, "Ready")? == ("False".into(), "Stopped".into())).then_some(s)
    })
    .await;

    // 2. The upgrade. A plain server-side apply conflicts with the fields "helm" owns, which
    //    is why the README says --force-conflicts.
    let plain = kubectl(cluster, &["apply", "--server-side", "-f", CHART_CRD]);
    assert!(
        !plain.status.success()
            && String::from_utf8_lossy(&plain.stderr).contains("conflict with \"helm\""),
        "a plain server-side apply over Helm's CRD: {plain:?}"
    );
    let upgrade = kubectl(
        cluster,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            CHART_CRD,
        ],
    );
    assert!(upgrade.status.success(), "upgrade: {upgrade:?}");
    let refusal = wait_for_value(
        "the current CRD to be served (resources.claims refused)",
        READY_TIMEOUT,
        || async { claims_accepted(&dyn_api).await.err() },
    )
    .await;
    assert!(
        refusal.contains("resources.claims is not supported"),
        "{refusal}"
    );

    // 3. The sessions are still there (same objects) and valid under the new schema: each, as
    //    stored, passes a dry-run create, which validates everything (no ratcheting).
    for before in [&stopped, &running] {
        let name = before.name_any();
        let after = api.get(&name).await.expect("session kept");
        assert_eq!(after.uid(), before.uid(), "{name} was replaced");
        assert_eq!(after.spec, before.spec, "{name}'s spec changed");
        let stored = dyn_api.get(&name).await.expect("read as stored");
        let copy = dynamic(&format!("{name}-copy"), stored.data["spec"].clone());
        dyn_api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &copy,
            )
            .await
            .unwrap_or_else(|e| panic!("{name}'s stored spec fails the new schema: {e}"));
    }

    // 4. The operator reconciles them under the new CRD: an edit of the Stopped one is observed
    //    (its conditions, now validated as metav1.Condition, rewritten), the Running one is
    //    stopped and started again and comes back Ready.
    api.patch(
        "old-stopped",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"displayName": "Ventas"}})),
    )
    .await
    .expect("edit the Stopped session");
    wait_for_named(
        "old-stopped observed at its new generation",
        READY_TIMEOUT,
        || async {
            let Ok(s) = api.get("old-stopped").await else {
                return false;
            };
            let observed = s.status.as_ref().and_then(|st| st.observed_generation);
            observed.is_some() && observed == s.metadata.generation
        },
    )
    .await;
    for state in ["Stopped", "Running"] {
        set_desired_state(&api, "old-running", state).await;
        let want = if state == "Running" { "True" } else { "False" };
        wait_for_named(
            &format!("old-running Ready={want} after {state}"),
            READY_TIMEOUT,
            || async {
                api.get("old-running")
                    .await
                    .ok()
                    .and_then(|s| condition(&s, "Ready"))
                    .is_some_and(|(status, _)| status == want)
            },
        )
        .await;
    }
    // The new Ready column shows it.
    let table = kubectl(cluster, &["get", "wa", "-n", &ns, "old-running"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines().next().is_some_and(|h| h.contains("READY"))
            && text.lines().nth(1).is_some_and(|l| l.contains("True")),
        "{text}"
    );

    for name in ["old-stopped", "old-running"] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_for_named("the sessions to be gone", GONE_TIMEOUT, || async {
        api.list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
}
