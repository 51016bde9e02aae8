//! The project's custom resource in tests, shared by the operator, agent and hub suites:
//! installing the committed WhatsAppSession CRD and creating sessions.
//!
//! ```no_run
//! # async fn t() {
//! use devcluster::testing::{self, sessions};
//! let cluster = testing::cluster().await;
//! let client = cluster.client();
//! sessions::install_crd(&client).await;
//! let ns = cluster.namespace("my-test").await;
//! let api = kube::Api::namespaced(client, &ns);
//! let s = sessions::create(&api, "s1", serde_json::json!({"displayName": "Ventas"})).await;
//! # }
//! ```

use std::time::Duration;

use crds::WhatsAppSession;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::wait_for_value;

/// The committed CRD (`crdgen` output).
pub const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crds/whatsappsession.yaml"
);
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
    wait_for_value(
        &format!("CRD {name} Established"),
        Duration::from_secs(60),
        || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        },
    )
    .await;
    // Metadata only: a typed list fails as a whole on one object the types cannot read (a
    // test of exactly that, operator/tests/unreadable_sessions.rs, may have one in the cluster).
    let sessions: Api<WhatsAppSession> = Api::all(client.clone());
    wait_for_value(
        "the WhatsAppSession resource to serve",
        Duration::from_secs(60),
        || async {
            sessions
                .list_metadata(&ListParams::default().limit(1))
                .await
                .ok()
                .map(|_| ())
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
    let key = crds::labels::tenant_claim(tenant);
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
