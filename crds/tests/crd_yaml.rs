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
    assert_eq!(columns, ["Tenant", "Status", "QR", "Phone", "Ready", "Age"]);
    let ready = &version
        .additional_printer_columns
        .as_ref()
        .expect("columns")[4];
    assert_eq!(
        ready.json_path,
        ".status.conditions[?(@.type==\"Ready\")].status"
    );
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}

/// Every property of the schema, as (dotted path, schema), depth first; array items and map
/// values are walked under their parent's path.
fn properties(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, sub) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.push((p.clone(), sub.clone()));
            properties(&p, sub, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = schema.get(key).filter(|s| s.is_object()) {
            properties(path, sub, out);
        }
    }
}

/// `kubectl explain` reads these descriptions: each field says what it is for, in this
/// project's words, not Go internals of the type it happens to use.
#[test]
fn every_field_has_its_own_description() {
    let crd = serde_json::to_value(crds::WhatsAppSession::crd()).expect("crd json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut all = Vec::new();
    properties("", schema, &mut all);
    assert!(all.len() >= 45, "only {} properties found", all.len());
    let boilerplate = [
        "Time is a wrapper",
        "Quantity is a fixed-point",
        "Auto-generated",
        "Condition contains details",
        "More info: https://kubernetes.io",
    ];
    let mut bad = Vec::new();
    for (path, sub) in &all {
        match sub.get("description").and_then(|d| d.as_str()) {
            None | Some("") => bad.push(format!("{path}: no description")),
            Some(d) if boilerplate.iter().any(|b| d.contains(b)) => {
                bad.push(format!("{path}: generic description {d:?}"))
            }
            Some(_) => {}
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn conditions_carry_the_metav1_condition_validations() {
    let crd = serde_json::to_value(crds::WhatsAppSession::crd()).expect("crd json");
    let conds = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["conditions"];
    assert_eq!(conds["x-kubernetes-list-type"], "map");
    assert_eq!(
        conds["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let item = &conds["items"]["properties"];
    assert_eq!(
        item["status"]["enum"],
        serde_json::json!(["True", "False", "Unknown"])
    );
    assert_eq!(item["type"]["maxLength"], 316);
    assert_eq!(item["reason"]["maxLength"], 1024);
    assert_eq!(item["reason"]["minLength"], 1);
    assert_eq!(item["message"]["maxLength"], 32768);
    assert_eq!(item["observedGeneration"]["minimum"].as_f64(), Some(0.0));
    // The reasons the operator and the agent write match the pattern (checked through the real
    // API server in the operator's tests; here the pattern itself is the upstream one).
    assert_eq!(
        item["reason"]["pattern"],
        "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    );
}

#[test]
fn category_whatsapp_and_not_all() {
    let crd = crds::WhatsAppSession::crd();
    // `all` would let `kubectl delete all --all` delete sessions, logging phones out.
    assert_eq!(
        crd.spec.names.categories.as_deref(),
        Some(&["whatsapp".to_string()][..])
    );
}

/// Every time field is bounded below what k8s-openapi's `Time` reads (crds::rules::TIME_LIMIT),
/// a field added later included: one unreadable time makes the whole session unreadable.
#[test]
fn every_time_field_is_bounded() {
    let crd = serde_json::to_value(crds::WhatsAppSession::crd()).expect("crd json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut all = Vec::new();
    properties("", schema, &mut all);
    let times: Vec<_> = all
        .iter()
        .filter(|(_, s)| s["format"] == "date-time")
        .collect();
    assert!(times.len() >= 10, "only {} time fields", times.len());
    let rule = format!("self < timestamp('{}')", crds::rules::TIME_LIMIT);
    for (path, s) in times {
        let rules = s["x-kubernetes-validations"].as_array();
        assert!(
            rules.is_some_and(|r| r.iter().any(|v| v["rule"] == rule.as_str())),
            "{path} has no bound: {s}"
        );
    }
}
