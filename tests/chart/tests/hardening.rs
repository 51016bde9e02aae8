//! What a reviewer of the chart asks for beyond "it installs" (issue 13 item 1), rendered without
//! a cluster: disruption budgets and spreading of replicated parts, session pods' placement and
//! pulls reaching the operator, images by digest and through one registry, a JWT key that never
//! changes silently, `helm test`, the README generated from the values' comments, the chart's
//! metadata and the labels of pod templates.

use chart_tests::*;
use serde_json::Value;

fn env_of(container: &Value) -> std::collections::BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn pod_spec<'a>(objs: &'a [Value], suffix: &str) -> &'a Value {
    &find(objs, "Deployment", suffix)["spec"]["template"]["spec"]
}

#[test]
fn replicated_parts_get_a_disruption_budget_and_soft_anti_affinity() {
    let Some(helm) =
        helm_or_skip("replicated_parts_get_a_disruption_budget_and_soft_anti_affinity")
    else {
        return;
    };
    // One replica each: nothing to keep available, no budget (a budget of one replica would
    // block every node drain), no anti-affinity.
    let single = render(&helm, "wa-system", &[], &[]).unwrap();
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());
    assert!(pod_spec(&single, "-hub")["affinity"].is_null());

    let objs = render(
        &helm,
        "wa-system",
        &["operator.replicas=2", "hub.replicas=3"],
        &[],
    )
    .unwrap();
    for (suffix, component) in [("-operator", "operator"), ("-hub", "hub")] {
        let pdb = find(&objs, "PodDisruptionBudget", suffix);
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        let selector = &pdb["spec"]["selector"]["matchLabels"];
        // the budget selects exactly the Deployment's pods
        assert_eq!(
            selector,
            &find(&objs, "Deployment", suffix)["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(selector["app.kubernetes.io/component"], component);
        let anti = &pod_spec(&objs, suffix)["affinity"]["podAntiAffinity"];
        assert!(
            anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null(),
            "soft, so a one-node cluster still runs every replica"
        );
        let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(&term["labelSelector"]["matchLabels"], selector);
    }

    // Given scheduling values win, and topology spread constraints get the selector labels.
    let objs = render(
        &helm,
        "wa-system",
        &[
            "hub.replicas=2",
            "hub.podDisruptionBudget.enabled=false",
            "hub.nodeSelector.pool=web",
            "hub.tolerations[0].key=web,hub.tolerations[0].operator=Exists",
            "hub.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
            "hub.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=zone",
            "hub.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=Exists",
            "hub.topologySpreadConstraints[0].maxSkew=1",
            "hub.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "hub.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "hub.priorityClassName=important",
        ],
        &[],
    )
    .unwrap();
    assert!(of_kind(&objs, "PodDisruptionBudget").is_empty());
    let hub = pod_spec(&objs, "-hub");
    assert_eq!(hub["nodeSelector"]["pool"], "web");
    assert_eq!(hub["tolerations"][0]["key"], "web");
    assert!(hub["affinity"]["podAntiAffinity"].is_null());
    assert!(hub["affinity"]["nodeAffinity"].is_object());
    assert_eq!(hub["priorityClassName"], "important");
    let tsc = &hub["topologySpreadConstraints"][0];
    assert_eq!(tsc["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "hub"
    );
}

#[test]
fn session_placement_and_pull_secrets_reach_the_operator() {
    let Some(helm) = helm_or_skip("session_placement_and_pull_secrets_reach_the_operator") else {
        return;
    };
    let objs = render(
        &helm,
        "wa-system",
        &[
            "session.nodeSelector.pool=whatsapp",
            "session.tolerations[0].key=dedicated,session.tolerations[0].operator=Equal,session.tolerations[0].value=wa,session.tolerations[0].effect=NoSchedule",
            "session.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
            "session.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
            "session.priorityClassName=wa-sessions",
            "session.imagePullSecrets[0].name=regcred,session.imagePullSecrets[1].name=mirror",
        ],
        &[],
    )
    .unwrap();
    let op = &pod_spec(&objs, "-operator")["containers"][0];
    let env = env_of(op);
    // The values the operator reads (operator/src/config.rs), as the JSON it parses.
    let json =
        |k: &str| serde_json::from_str::<Value>(&env[k]).unwrap_or_else(|e| panic!("{k}: {e}"));
    assert_eq!(
        json("WA_SESSION_NODE_SELECTOR"),
        serde_json::json!({"pool": "whatsapp"})
    );
    assert_eq!(
        json("WA_SESSION_TOLERATIONS"),
        serde_json::json!([{"key": "dedicated", "operator": "Equal", "value": "wa", "effect": "NoSchedule"}])
    );
    assert_eq!(
        json("WA_SESSION_AFFINITY")["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "pool"
    );
    assert_eq!(env["WA_SESSION_PRIORITY_CLASS"], "wa-sessions");
    assert_eq!(env["WA_SESSION_IMAGE_PULL_SECRETS"], "regcred,mirror");
    // The session pull secrets are the sessions': the operator's own pod pulls with its own.
    assert!(pod_spec(&objs, "-operator")["imagePullSecrets"].is_null());

    // Unset values set nothing, so the operator's pod specs stay as they were.
    let plain = render(&helm, "wa-system", &[], &[]).unwrap();
    let env = env_of(&pod_spec(&plain, "-operator")["containers"][0]);
    assert!(!env.keys().any(|k| k.starts_with("WA_SESSION_")), "{env:?}");
}

#[test]
fn images_by_digest_and_through_one_registry() {
    let Some(helm) = helm_or_skip("images_by_digest_and_through_one_registry") else {
        return;
    };
    let image = |objs: &[Value], suffix: &str| {
        pod_spec(objs, suffix)["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let session_image = |objs: &[Value]| {
        pod_spec(objs, "-operator")["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|a| {
                a.as_str()?
                    .strip_prefix("--session-image=")
                    .map(String::from)
            })
            .unwrap()
    };
    let objs = render(&helm, "wa-system", &[], &[]).unwrap();
    assert_eq!(
        image(&objs, "-operator"),
        "ghcr.io/leadmaster/wa-operator:0.1.0"
    );
    assert_eq!(image(&objs, "-hub"), "ghcr.io/leadmaster/wa-hub:0.1.0");
    assert_eq!(session_image(&objs), "ghcr.io/leadmaster/wa-session:0.1.0");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let objs = render(
        &helm,
        "wa-system",
        &[
            "global.imageRegistry=mirror.example.com:5000",
            &format!("operator.image.digest={digest}"),
            &format!("session.image.digest={digest}"),
            "session.image.tag=0.1.0",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        image(&objs, "-operator"),
        format!("mirror.example.com:5000/leadmaster/wa-operator@{digest}")
    );
    assert_eq!(
        image(&objs, "-hub"),
        "mirror.example.com:5000/leadmaster/wa-hub:0.1.0"
    );
    assert_eq!(
        session_image(&objs),
        format!("mirror.example.com:5000/leadmaster/wa-session:0.1.0@{digest}")
    );
    // A repository naming its own registry (what the tests push to) is used as is.
    let objs = render(
        &helm,
        "wa-system",
        &[
            "global.imageRegistry=mirror.example.com",
            "hub.image.repository=10.0.0.1:5000/x/wa-hub",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(image(&objs, "-hub"), "10.0.0.1:5000/x/wa-hub:0.1.0");
    // The schema refuses a digest that is not one.
    let out = run(
        &helm,
        &template_args("wa-system", &["hub.image.digest=latest"], &[]),
        &[],
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest"));
}

#[test]
fn jwt_key_is_never_invented_where_the_chart_cannot_read_the_cluster() {
    let Some(helm) =
        helm_or_skip("jwt_key_is_never_invented_where_the_chart_cannot_read_the_cluster")
    else {
        return;
    };
    // `helm template` (what Argo CD runs) cannot look up the live Secret: a generated key would
    // differ on every render and log every user out, so rendering fails and says what to set.
    let out = run(
        &helm,
        &template_args("wa-system", &["hub.auth.jwtSecret="], &[]),
        &[],
    )
    .unwrap();
    assert!(!out.status.success(), "rendered without a JWT key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hub.auth.existingSecret") && err.contains("hub.auth.jwtSecret"),
        "{err}"
    );
    // With an existing Secret or without the hub, nothing is asked.
    for sets in [
        &["hub.auth.jwtSecret=", "hub.auth.existingSecret=mine"][..],
        &["hub.auth.jwtSecret=", "hub.enabled=false"][..],
    ] {
        render(&helm, "wa-system", sets, &[]).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    }
    // A given key renders the same Secret every time (GitOps renders must be stable).
    let a = run_ok(&helm, &template_args("wa-system", &[], &[]), &[]).unwrap();
    let b = run_ok(&helm, &template_args("wa-system", &[], &[]), &[]).unwrap();
    assert_eq!(a, b, "two renders of the same values differ");
}

#[test]
fn helm_test_pod_checks_the_operator_and_hub_through_their_services() {
    let Some(helm) =
        helm_or_skip("helm_test_pod_checks_the_operator_and_hub_through_their_services")
    else {
        return;
    };
    let objs = render(&helm, "wa-system", &[], &[]).unwrap();
    let pod = find(&objs, "Pod", "-test-health");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let script = pod["spec"]["containers"][0]["args"][0].as_str().unwrap();
    let hub_svc = find(&objs, "Service", "-hub")["metadata"]["name"]
        .as_str()
        .unwrap();
    let op_svc = find(&objs, "Service", "-operator-metrics")["metadata"]["name"]
        .as_str()
        .unwrap();
    assert!(
        script.contains(&format!("get {hub_svc}.wa-system.svc 80 /health")),
        "{script}"
    );
    assert!(
        script.contains(&format!("get {op_svc}.wa-system.svc 8080 /healthz")),
        "{script}"
    );
    // restricted like every other pod
    let sc = &pod["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    // without the hub only the operator is asked
    let objs = render(&helm, "wa-system", &["hub.enabled=false"], &[]).unwrap();
    let script = find(&objs, "Pod", "-test-health")["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !script.contains("/health\n") && script.contains("/healthz"),
        "{script}"
    );
}

#[test]
fn pod_templates_carry_version_and_chart_labels() {
    let Some(helm) = helm_or_skip("pod_templates_carry_version_and_chart_labels") else {
        return;
    };
    let objs = render(&helm, "wa-system", &["hub.podLabels.team=chat"], &[]).unwrap();
    for suffix in ["-operator", "-hub"] {
        let d = find(&objs, "Deployment", suffix);
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/version"], "0.1.0", "{suffix}");
        assert_eq!(
            labels["helm.sh/chart"], "whatsapp-operator-0.1.0",
            "{suffix}"
        );
        // the selector stays the stable subset
        for (k, v) in d["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v);
        }
    }
    assert_eq!(
        find(&objs, "Deployment", "-hub")["spec"]["template"]["metadata"]["labels"]["team"],
        "chat"
    );
}

#[test]
fn chart_metadata_for_artifact_hub() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: Value = serde_saphyr::from_str(&text).unwrap();
    assert!(
        chart["icon"]
            .as_str()
            .is_some_and(|i| i.starts_with("https://"))
    );
    assert!(chart["maintainers"][0]["name"].is_string());
    let ann = &chart["annotations"];
    assert_eq!(ann["artifacthub.io/license"], "Apache-2.0");
    assert_eq!(ann["artifacthub.io/operator"], "true");
    assert!(ann["artifacthub.io/operatorCapabilities"].is_string());
    let yaml = |k: &str| -> Value {
        serde_saphyr::from_str(ann[k].as_str().unwrap_or_else(|| panic!("{k}")))
            .unwrap_or_else(|e| panic!("{k}: {e}"))
    };
    // the images Artifact Hub lists are the ones the chart deploys by default
    let images: Vec<String> = yaml("artifacthub.io/images")
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap().to_string())
        .collect();
    let app = chart["appVersion"].as_str().unwrap();
    for name in ["wa-operator", "wa-hub", "wa-session"] {
        assert!(
            images.contains(&format!("ghcr.io/leadmaster/{name}:{app}")),
            "{images:?}"
        );
    }
    assert!(yaml("artifacthub.io/links").as_array().unwrap().len() >= 2);
    assert_eq!(yaml("artifacthub.io/crds")[0]["kind"], "WhatsAppSession");
    // the CRD example is a valid session as the example file has it
    let example = &yaml("artifacthub.io/crdsExamples")[0];
    assert_eq!(example["kind"], "WhatsAppSession");
    assert!(example["spec"]["tenant"].is_string());
    assert!(chart_dir().join("icon.svg").is_file());
}

#[test]
fn chart_readme_is_generated_from_the_values_comments() {
    let test = "chart_readme_is_generated_from_the_values_comments";
    if tool_or_skip(test, "helm-docs", "HELM_DOCS_VERSION", "helm-docs").is_none() {
        return;
    }
    let script = repo_root().join("tests/scripts/chart-readme.sh");
    let generated = run_ok(
        std::path::Path::new("bash"),
        &[script.display().to_string(), "--check".into()],
        &[],
    )
    .unwrap();
    let committed = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    assert!(
        generated.trim_end() == committed.trim_end(),
        "charts/whatsapp-operator/README.md is stale: run tests/scripts/chart-readme.sh"
    );
    // every value is documented (helm-docs leaves the description empty otherwise)
    let undocumented: Vec<&str> = committed
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Name") && !l.starts_with("| ----"))
        .filter(|l| l.split('|').nth(4).is_some_and(|d| d.trim().is_empty()))
        .filter(|l| l.split('|').count() > 5)
        .collect();
    assert!(
        undocumented.is_empty(),
        "values without a `# --` comment:\n{}",
        undocumented.join("\n")
    );
    for key in [
        "global.imageRegistry",
        "session.tolerations",
        "metrics.prometheusRule.enabled",
        "hub.auth.jwtSecret",
    ] {
        assert!(
            committed.contains(&format!("| {key} |")),
            "{key} not in the README"
        );
    }
}
