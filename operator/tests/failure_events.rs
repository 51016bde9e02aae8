//! Issue 14: failures show where operators look. A session whose child the API server refuses
//! gets a readable Warning Event, repeated failures do not multiply it, and every line logged
//! within a reconcile names the session (its tracing span). Real `wa-operator`, real control
//! plane; the refusal comes from a real ResourceQuota.

mod support;

use crds::WhatsAppSession;
use crds::testing::{READY_TIMEOUT, create as create_session};
use devcluster_testing::operator::Operator;
use devcluster_testing::{events_for, wait_for_named, wait_for_value};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::setup;

async fn failure_events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    events_for(client, ns, name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ReconcileFailed"))
        .collect()
}

#[tokio::test]
async fn a_refused_child_gives_one_readable_warning_not_a_storm() {
    let (cluster, client, ns) = setup("op-warn").await;
    // No PVC may be created in this namespace: the session's storage is refused (403).
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-pvc"},
        "spec": {"hard": {"persistentvolumeclaims": "0"}},
    }))
    .expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create quota");
    // Until the quota controller has counted usage the refusal reads differently; wait for it
    // so the message asserted below is the one users would see.
    wait_for_named("the quota's usage to be counted", READY_TIMEOUT, || async {
        quotas
            .get_opt("no-pvc")
            .await
            .ok()
            .flatten()
            .and_then(|q| q.status?.used)
            .is_some_and(|u| u.contains_key("persistentvolumeclaims"))
    })
    .await;

    let op = Operator::start(cluster, &ns, &[]).await;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &ns);
    create_session(&api, "stuck", json!({})).await;

    let first_at = std::time::Instant::now();
    let first = wait_for_value("a ReconcileFailed warning", READY_TIMEOUT, || async {
        failure_events(&client, &ns, "stuck").await.pop()
    })
    .await;
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.action.as_deref(), Some("Reconcile"));
    assert_eq!(
        first.reporting_controller.as_deref(),
        Some("whatsapp-operator")
    );
    let note = first.note.clone().unwrap_or_default();
    assert!(
        note.starts_with("the API server refused (403): persistentvolumeclaims")
            && note.contains("exceeded quota: no-pvc"),
        "not readable: {note}"
    );
    assert!(
        !note.contains("ErrorResponse") && !note.contains("Status {"),
        "{note}"
    );

    // A failure loop: every spec change reconciles at once (no back-off), and each fails.
    let errors = || async {
        op.metric_sum("wa_operator_reconcile_errors_total")
            .await
            .unwrap_or(0.0)
    };
    let before = errors().await;
    for i in 0..5 {
        let seen = errors().await;
        api.patch(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": format!("try {i}")}})),
        )
        .await
        .expect("patch spec");
        wait_for_named("one more failed reconcile", READY_TIMEOUT, || async {
            errors().await > seen
        })
        .await;
    }
    let failures = errors().await - before;
    assert!(failures >= 5.0, "{failures}");

    // Still that one Event; at most one more publish per minute (normally all of this takes a
    // few seconds, so none), which kube's Recorder counts in the same Event's series.
    let events = failure_events(&client, &ns, "stuck").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].metadata.name, first.metadata.name);
    let published = events[0].series.as_ref().map_or(1, |s| s.count);
    let allowed = 1 + first_at.elapsed().as_secs() / 60;
    assert!(
        u64::try_from(published).is_ok_and(|p| p <= allowed),
        "{published} warnings for {failures} failures in {:?}",
        first_at.elapsed()
    );

    // The suppressed ones are still in the log, in the reconcile span naming the session.
    let log = op.log_text();
    let suppressed: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "warning event suppressed (published recently)")
        .collect();
    assert!(suppressed.len() >= 5, "{log}");
    for line in &suppressed {
        assert_eq!(line["span"]["name"], "reconcile", "{line}");
        assert_eq!(line["span"]["session"], "stuck", "{line}");
        assert_eq!(line["span"]["namespace"], ns.as_str(), "{line}");
        assert_eq!(line["reason"], "ReconcileFailed", "{line}");
    }

    // Lift the quota: the next reconcile creates the storage, so the quota was the only cause.
    quotas
        .delete("no-pvc", &DeleteParams::default())
        .await
        .expect("delete quota");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let (api, pvcs) = (&api, &pvcs);
    let mut attempt = 0;
    wait_for_named("the session's PVC", READY_TIMEOUT, || {
        attempt += 1;
        async move {
            // a spec change reconciles now rather than after the back-off
            let _ = api
                .patch(
                    "stuck",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"displayName": format!("fixed {attempt}")}})),
                )
                .await;
            pvcs.list(&ListParams::default())
                .await
                .is_ok_and(|l| !l.items.is_empty())
        }
    })
    .await;
}
