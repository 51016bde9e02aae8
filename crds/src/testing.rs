//! The custom resource in the project's tests (feature `testing`), shared by the operator,
//! agent, hub and plugin suites: installing the committed WhatsAppSession CRD and creating
//! sessions as an admin sets them up.
//!
//! ```no_run
//! # async fn t(client: kube::Client, ns: &str) {
//! crds::testing::install_crd(&client).await;
//! let api = kube::Api::namespaced(client, ns);
//! let s = crds::testing::create(&api, "s1", serde_json::json!({"displayName": "Ventas"})).await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use serde_json::{Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{SessionApply, SessionState, WhatsAppSession, WhatsAppSessionStatus, Writer};

/// The committed CRD (`crdgen` output).
pub const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/whatsappsession.yaml");
/// How long the CRD may take to be Established, and then its resource to be served.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a session may take to become Ready (its pod scheduled, pulled, started).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a deleted session (or namespace) may take to be gone.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(120);
/// The tenant of a session whose test does not name one.
pub const TENANT: &str = "acme";

/// Installs the committed CRD (server-side apply, forced, so every suite and run converges on
/// the file as it is now) and waits until it is Established and its resource is served
/// (discovery catches up a moment after Established).
pub async fn install_crd(client: &Client) {
    let yaml = std::fs::read_to_string(CRD_FILE).unwrap_or_else(|e| panic!("read {CRD_FILE}: {e}"));
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("parse {CRD_FILE}: {e}"));
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    let mut body = serde_json::to_value(&crd).expect("CRD as JSON");
    body["apiVersion"] = json!("apiextensions.k8s.io/v1");
    body["kind"] = json!("CustomResourceDefinition");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("whatsapp-tests").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(CRD_TIMEOUT, established)
        .await
        .unwrap_or_else(|_| {
            panic!("timed out after {CRD_TIMEOUT:?} waiting for CRD {name} Established")
        })
        .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    // Metadata only: a typed list fails as a whole on one object the types cannot read (a
    // test of exactly that, operator/tests/unreadable_sessions.rs, may have one in the cluster).
    let sessions: Api<WhatsAppSession> = Api::all(client.clone());
    poll(
        "the WhatsAppSession resource to serve",
        CRD_TIMEOUT,
        || async {
            let served = sessions
                .list_metadata(&ListParams::default().limit(1))
                .await;
            served.ok().map(|_| ())
        },
    )
    .await;
}

/// The manifest of session `name` with exactly `spec` (unvalidated: tests of the API server's
/// refusals send it as it is).
pub fn manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "whatsapp.leadmaster.io/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// Creates session `name` with `spec` (JSON, as in a manifest) merged over
/// `{tenant: "acme"}`, in a namespace that claims that tenant ([`claim_tenant`]), as an admin
/// sets it up: the chart's admission policy and the hub both require the claim.
pub async fn create(api: &Api<WhatsAppSession>, name: &str, spec: Value) -> WhatsAppSession {
    let obj: WhatsAppSession = serde_json::from_value(manifest(name, with_default_tenant(spec)))
        .unwrap_or_else(|e| panic!("session {name}: {e}"));
    let ns = api.namespace().expect("sessions are namespaced");
    claim_tenant(&api.clone().into_client(), ns, &obj.spec.tenant).await;
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating session {name}: {e}"))
}

/// Labels namespace `ns` with the claim of `tenant` (`tenant.whatsapp.leadmaster.io/<tenant>`):
/// it may hold that tenant's sessions.
pub async fn claim_tenant(client: &Client, ns: &str, tenant: &str) {
    set_tenant_claim(client, ns, tenant, true).await;
}

/// Removes the claim of `tenant` from namespace `ns`.
pub async fn unclaim_tenant(client: &Client, ns: &str, tenant: &str) {
    set_tenant_claim(client, ns, tenant, false).await;
}

async fn set_tenant_claim(client: &Client, ns: &str, tenant: &str, on: bool) {
    let key = crate::labels::tenant_claim(tenant);
    let value = if on { json!("") } else { Value::Null };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { key: value } } })),
        )
        .await
        .unwrap_or_else(|e| panic!("labelling namespace {ns} for tenant {tenant}: {e}"));
}

/// Sets session `name`'s `spec.desiredState` (`Running` or `Stopped`) with a merge patch, as
/// `kubectl patch` or the hub's connect/disconnect do.
pub async fn set_desired_state(api: &Api<WhatsAppSession>, name: &str, state: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "desiredState": state } })),
    )
    .await
    .unwrap_or_else(|e| panic!("setting {name}'s desiredState to {state}: {e}"));
}

/// The status of session `name` (empty when it has none yet).
pub async fn status(api: &Api<WhatsAppSession>, name: &str) -> WhatsAppSessionStatus {
    api.get(name)
        .await
        .expect("get CR")
        .status
        .unwrap_or_default()
}

/// Polls session `name` every 200 ms until its status satisfies `pred`, returning it; panics
/// after `timeout`, naming `what` was awaited.
pub async fn wait_status(
    api: &Api<WhatsAppSession>,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&WhatsAppSessionStatus) -> bool,
) -> WhatsAppSessionStatus {
    poll(what, timeout, || async {
        let s = api.get(name).await.ok()?.status?;
        pred(&s).then_some(s)
    })
    .await
}

/// Sets session `name`'s `spec.<field>` (a request such as `qrRequestedAt`) to now and returns
/// the value as stored.
pub async fn request(api: &Api<WhatsAppSession>, name: &str, field: &str) -> Time {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": { field: now } });
    let cr = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec");
    let spec = serde_json::to_value(&cr.spec).expect("spec json");
    serde_json::from_value(spec[field].clone()).expect("time")
}

/// Overwrites the agent's status with just `status: init` (as field manager wa-agent), so a
/// test can tell that a new agent published what follows.
pub async fn reset_status(api: &Api<WhatsAppSession>, name: &str) {
    let init = WhatsAppSessionStatus {
        status: Some(SessionState::Init),
        ..Default::default()
    };
    SessionApply::status(name, init)
        .apply(api, Writer::Agent)
        .await
        .expect("reset status");
}

/// The status and reason of condition `type_` of session `s`.
pub fn condition(s: &WhatsAppSession, type_: &str) -> Option<(String, String)> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits (up to [`READY_TIMEOUT`]) until session `name` is Ready=True, returning it.
pub async fn wait_ready(api: &Api<WhatsAppSession>, name: &str) -> WhatsAppSession {
    poll(
        &format!("session {name} Ready=True"),
        READY_TIMEOUT,
        || async {
            let s = api.get_opt(name).await.ok().flatten()?;
            (condition(&s, "Ready")?.0 == "True").then_some(s)
        },
    )
    .await
}

/// Pods of session `name` in `ns` (by the instance label).
pub async fn session_pods(client: &Client, ns: &str, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("{}={name}", crate::labels::INSTANCE)))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Polls `probe` every 200 ms until it returns `Some`; panics after `timeout`, naming `what`
/// was awaited (as `devcluster_testing::wait_for_value`, which this crate cannot depend on).
async fn poll<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let every = Duration::from_millis(200);
    let mut probe = probe;
    let attempt = || {
        let next = probe();
        async move { next.await.ok_or(()) }
    };
    attempt
        .retry(
            ConstantBuilder::default()
                .with_delay(every)
                .with_max_times((timeout.as_millis() / every.as_millis()) as usize),
        )
        .await
        .unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// `spec` over `{tenant: "acme"}`; an empty tenant counts as none.
fn with_default_tenant(spec: Value) -> Value {
    let mut full = json!({ "tenant": TENANT });
    if let (Some(base), Value::Object(extra)) = (full.as_object_mut(), spec) {
        base.extend(
            extra
                .into_iter()
                .filter(|(k, v)| !(k == "tenant" && v == "")),
        );
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_applies_unless_the_spec_names_one() {
        assert_eq!(with_default_tenant(json!({}))["tenant"], TENANT);
        assert_eq!(with_default_tenant(json!({"tenant": ""}))["tenant"], TENANT);
        let own = with_default_tenant(json!({"tenant": "b", "displayName": "x"}));
        assert_eq!(own, json!({"tenant": "b", "displayName": "x"}));
    }

    #[test]
    fn the_committed_crd_file_exists() {
        assert!(std::path::Path::new(CRD_FILE).is_file(), "{CRD_FILE}");
    }
}
