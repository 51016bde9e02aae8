//! Swapping the cluster-wide CRD for the first release's, as the upgrade tests do.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

pub const CRD_NAME: &str = "whatsappsessions.whatsapp.leadmaster.io";
/// The first release's CRD (`git show 411c26f:crds/whatsappsession.yaml`).
pub const OLD_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crds/tests/fixtures/whatsappsession-0.1.0.yaml"
);
pub const CHART_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/whatsapp-operator/crds/whatsappsession.yaml"
);

/// Puts the current CRD back (server-side apply, forced) when the test ends, however it ends.
/// For the tests that swap the cluster-wide CRD: each is a test binary of its own (cargo runs
/// test binaries one after another), so no other test sees the swap half done.
pub struct RestoreCurrentCrd(pub PathBuf);
impl Drop for RestoreCurrentCrd {
    fn drop(&mut self) {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.0)
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=whatsapp-tests",
                "-f",
                CHART_CRD,
            ])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("restoring the current CRD failed: {out:?}");
        }
    }
}

/// What `helm install` of the first release leaves: [`OLD_CRD`] written by the field manager
/// "helm" with a plain (non-apply) request, so "helm" owns `.spec.versions`. Here a replace of
/// the CRD the other tests applied: deleting it instead would delete every session in the
/// cluster, and hang on any whose finalizer no operator removes.
pub async fn install_old_crd_as_helm(client: &Client) {
    let yaml = std::fs::read_to_string(OLD_CRD).expect("read the old CRD");
    let mut old: CustomResourceDefinition =
        serde_saphyr::from_str(&yaml).expect("parse the old CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PostParams {
        field_manager: Some("helm".into()),
        ..Default::default()
    };
    match crds.get_opt(CRD_NAME).await.expect("read the CRD") {
        Some(current) => {
            old.metadata.resource_version = current.metadata.resource_version;
            crds.replace(CRD_NAME, &pp, &old)
                .await
                .expect("replace the CRD with the old one");
        }
        None => {
            crds.create(&pp, &old).await.expect("create the old CRD");
        }
    }
}
