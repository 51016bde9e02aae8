//! The committed `crds/whatsappsession.yaml` must be exactly what `crdgen` generates, so the
//! Helm chart and `kubectl apply` never install a stale schema.
use kube::CustomResourceExt;

#[test]
fn committed_crd_yaml_matches_generated() {
    let generated = serde_saphyr::to_string(&crds::WhatsAppSession::crd()).expect("serialize CRD");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/whatsappsession.yaml");
    let committed = std::fs::read_to_string(path).expect("read crds/whatsappsession.yaml");
    assert!(
        committed == generated,
        "crds/whatsappsession.yaml is stale: run `make crds` (cargo run -p crds --bin crdgen > crds/whatsappsession.yaml)"
    );
}

#[test]
fn crd_has_contract_names_and_columns() {
    let crd = crds::WhatsAppSession::crd();
    assert_eq!(crd.spec.group, "whatsapp.leadmaster.io");
    assert_eq!(crd.spec.names.plural, "whatsappsessions");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["wa".to_string()][..])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Tenant", "Status", "QR", "Phone", "Age"]);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}
