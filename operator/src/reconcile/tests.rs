//! The reconcile against a mocked API server ([`crate::fixtures`]): every request it makes,
//! in order, and what it does with the answers.
use std::sync::Arc;
use std::time::Duration;

use crds::{WhatsAppSession, WhatsAppSessionStatus, Writer};
use http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMetaExt;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::reconcile;
use crate::caches::Writers;
use crate::fixtures::*;

const NS: &str = "ns1";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns1/events";

fn status_path(name: &str) -> String {
    format!("{}/status", path_of::<WhatsAppSession>(NS, name))
}

/// The four children applied together, in any order: each must be the operator's forced
/// apply; the PersistentVolumeClaim's answer is `pvc`'s, the others are stored. Returns what
/// was stored.
async fn children_applied(
    api: &mut ApiServerVerifier,
    pvc: impl FnOnce(Received) -> Option<Value>,
) -> Vec<Value> {
    let mut applies = api.next_n(4).await;
    let mut paths: Vec<_> = applies.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    let mut expected = vec![
        path_of::<ServiceAccount>(NS, "wa-s1"),
        path_of::<Role>(NS, "wa-s1"),
        path_of::<RoleBinding>(NS, "wa-s1"),
        path_of::<PersistentVolumeClaim>(NS, "wa-s1-data"),
    ];
    expected.sort();
    assert_eq!(paths, expected);
    let pvc_at = applies
        .iter()
        .position(|r| r.body["kind"] == "PersistentVolumeClaim")
        .expect("the PVC");
    let pvc_apply = applies.remove(pvc_at);
    let mut stored_children = Vec::new();
    for r in applies {
        assert!(r.is_apply_by(Writer::Operator), "{}", r.query);
        assert!(r.query.contains("force=true"), "{}", r.query);
        let child = stored(&r.body, "1");
        r.ok(&child);
        stored_children.push(child);
    }
    assert!(pvc_apply.is_apply_by(Writer::Operator));
    stored_children.extend(pvc(pvc_apply));
    stored_children
}

fn store_pvc(r: Received) -> Option<Value> {
    let child = stored(&r.body, "1");
    r.ok(&child);
    Some(child)
}

/// The StatefulSet applied and stored.
async fn statefulset_applied(api: &mut ApiServerVerifier) -> Value {
    let r = api
        .expect(Method::PATCH, &path_of::<StatefulSet>(NS, "wa-s1"))
        .await;
    assert!(r.is_apply_by(Writer::Operator));
    let sts = stored(&r.body, "1");
    r.ok(&sts);
    sts
}

async fn no_pod(api: &mut ApiServerVerifier) {
    api.expect(Method::GET, &path_of::<Pod>(NS, "wa-s1-0"))
        .await
        .fail(StatusCode::NOT_FOUND, "pods \"wa-s1-0\" not found");
}

/// The operator's status written; returns it.
async fn status_written(api: &mut ApiServerVerifier, session: &WhatsAppSession) -> Value {
    let r = api.expect(Method::PATCH, &status_path("s1")).await;
    assert!(r.is_apply_by(Writer::Operator), "{}", r.query);
    let status = r.body["status"].clone();
    r.ok(&serde_json::to_value(session).expect("json"));
    status
}

#[tokio::test]
async fn a_new_session_gets_its_children_and_its_status() {
    let (ctx, mut api) = test_context();
    let session = WhatsAppSession::test("s1").finalized();
    let answered = session.clone();
    let (result, status) = run_against(reconcile(Arc::new(session), ctx), async move {
        children_applied(&mut api, store_pvc).await;
        statefulset_applied(&mut api).await;
        no_pod(&mut api).await;
        status_written(&mut api, &answered).await
    })
    .await;
    assert_eq!(
        result.expect("reconciled"),
        Action::requeue(Duration::from_secs(300))
    );
    assert_eq!(status["observedGeneration"], 1);
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .expect("a Ready condition");
    assert_eq!(ready["status"], "False");
}

/// The metadata-only cache entry of a stored child.
fn partial<K>(stored: &Value) -> kube::core::PartialObjectMeta<K> {
    let meta: ObjectMeta = serde_json::from_value(stored["metadata"].clone()).expect("metadata");
    meta.into_response_partial::<K>()
}

fn typed<K: DeserializeOwned>(stored: &Value) -> K {
    serde_json::from_value(stored.clone()).expect("a stored child")
}

/// The watches' view of the children as the API server stored them.
fn cache_children(caches: &mut Writers, stored: &[Value]) {
    for child in stored {
        match child["kind"].as_str() {
            Some("ServiceAccount") => caches
                .service_accounts
                .apply_watcher_event(&watcher::Event::Apply(partial(child))),
            Some("Role") => caches
                .roles
                .apply_watcher_event(&watcher::Event::Apply(partial(child))),
            Some("RoleBinding") => caches
                .role_bindings
                .apply_watcher_event(&watcher::Event::Apply(partial(child))),
            Some("PersistentVolumeClaim") => caches
                .pvcs
                .apply_watcher_event(&watcher::Event::Apply(partial(child))),
            Some("StatefulSet") => caches
                .statefulsets
                .apply_watcher_event(&watcher::Event::Apply(typed(child))),
            other => panic!("not a child: {other:?}"),
        }
    }
}

#[tokio::test]
async fn children_unchanged_since_our_apply_are_not_applied_again() {
    let (ctx, mut api, mut caches) = test_context_with_caches().await;
    let session = WhatsAppSession::test("s1").finalized();
    let answered = session.clone();
    // The caches know no child yet: all are applied; the pod comes from the cache (none).
    let (result, (stored_children, status, api)) = run_against(
        reconcile(Arc::new(session.clone()), ctx.clone()),
        async move {
            let mut stored_children = children_applied(&mut api, store_pvc).await;
            stored_children.push(statefulset_applied(&mut api).await);
            let status = status_written(&mut api, &answered).await;
            (stored_children, status, api)
        },
    )
    .await;
    result.expect("reconciled");
    // The watches show the children as the applies left them, the CR its status: nothing to
    // send — any request fails the reconcile, as the mocked API server is gone.
    cache_children(&mut caches, &stored_children);
    let status: WhatsAppSessionStatus = serde_json::from_value(status).expect("status");
    let session = session.with_status(status);
    drop(api);
    let result = tokio::time::timeout(Duration::from_secs(1), reconcile(Arc::new(session), ctx))
        .await
        .expect("in time");
    assert_eq!(
        result.expect("reconciled without a request"),
        Action::requeue(Duration::from_secs(300))
    );
}

/// The four children applied, the PVC refused with `code`; then a Warning Event (returned).
async fn pvc_refused_then_event(
    api: &mut ApiServerVerifier,
    code: StatusCode,
    message: &'static str,
) -> Value {
    children_applied(api, |r| {
        r.fail(code, message);
        None
    })
    .await;
    let event = api.expect(Method::POST, EVENTS).await;
    let body = event.body.clone();
    event.ok(&body);
    body
}

#[tokio::test]
async fn a_rejected_storage_change_is_an_event_not_a_failure() {
    let (ctx, mut api) = test_context();
    let session = WhatsAppSession::test("s1").finalized();
    let answered = session.clone();
    let (result, event) = run_against(reconcile(Arc::new(session), ctx), async move {
        let event = pvc_refused_then_event(
            &mut api,
            StatusCode::UNPROCESSABLE_ENTITY,
            "PersistentVolumeClaim \"wa-s1-data\" is invalid: spec: Forbidden: spec is immutable",
        )
        .await;
        statefulset_applied(&mut api).await;
        no_pod(&mut api).await;
        status_written(&mut api, &answered).await;
        event
    })
    .await;
    result.expect("the reconcile goes on");
    assert_eq!(event["reason"], "StorageChangeRejected");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "s1");
    assert_eq!(event["related"]["kind"], "PersistentVolumeClaim");
    assert_eq!(event["related"]["name"], "wa-s1-data");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(
            "the API server refused (422): PersistentVolumeClaim \"wa-s1-data\" is invalid"
        ) && note.ends_with("(applying PersistentVolumeClaim wa-s1-data)"),
        "{note}"
    );
}

#[tokio::test]
async fn a_refused_child_fails_the_reconcile_with_an_event_naming_it() {
    let (ctx, mut api) = test_context();
    let session = WhatsAppSession::test("s1").finalized();
    let (result, event) = run_against(reconcile(Arc::new(session), ctx), async move {
        pvc_refused_then_event(
            &mut api,
            StatusCode::FORBIDDEN,
            "persistentvolumeclaims \"wa-s1-data\" is forbidden: exceeded quota: no-pvc",
        )
        .await
    })
    .await;
    let error = result.expect_err("refused");
    assert_eq!(error.metric_label(), "finalizer");
    assert_eq!(event["reason"], "ReconcileFailed");
    assert_eq!(event["action"], "Reconcile");
    assert_eq!(event["related"]["kind"], "PersistentVolumeClaim");
    assert_eq!(
        event["note"],
        "the API server refused (403): persistentvolumeclaims \"wa-s1-data\" is forbidden: \
         exceeded quota: no-pvc (applying PersistentVolumeClaim wa-s1-data)"
    );
}

#[tokio::test]
async fn a_new_agents_word_wins_over_the_stand_in() {
    let (ctx, mut api) = test_context();
    let session = WhatsAppSession::test("s1")
        .finalized()
        .with_status(connected_agent());
    let answered = session.clone();
    let (result, stand_in) = run_against(reconcile(Arc::new(session), ctx), async move {
        children_applied(&mut api, store_pvc).await;
        statefulset_applied(&mut api).await;
        no_pod(&mut api).await;
        // No pod, and the CR says connected: decided again on a fresh read, then written as
        // the agent on condition that the CR is unchanged — and it changed (409).
        no_pod(&mut api).await;
        let stand_in = api.expect(Method::PATCH, &status_path("s1")).await;
        assert!(stand_in.is_apply_by(Writer::Agent), "{}", stand_in.query);
        let body = stand_in.body.clone();
        stand_in.fail(StatusCode::CONFLICT, "the object has been modified");
        // No AgentStopped Event: the operator's own status follows.
        status_written(&mut api, &answered).await;
        body
    })
    .await;
    result.expect("a conflict is not a failure");
    assert_eq!(stand_in["metadata"]["resourceVersion"], "100");
    assert_eq!(stand_in["status"]["status"], "connecting");
}
