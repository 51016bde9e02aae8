//! kube-score and kubeconform, independent of this project, on what it deploys: the rendered
//! chart (default values and examples/values-production.yaml) and the objects the operator's
//! own builders make for the example sessions (examples/session*.yaml) under the operator
//! configuration that chart renders. Every finding must be accepted, with its reason, in
//! tests/chart/lint-allow.yaml; an acceptance that matches nothing fails too.
//!
//! (Polaris and kube-linter are not run: their Go modules are not served by the module proxy
//! here; see docs/chart.md.)

use std::path::{Path, PathBuf};

use chart_tests::linters::{self, Allowed, Finding};
use chart_tests::*;
use serde_json::Value;

/// The operator's flags as the chart renders them: the container's args, plus the environment
/// variables the chart sets for session placement, turned into their flags (the process
/// environment of this test must not leak into the Config).
fn operator_config(objects: &[Value]) -> operator::config::Config {
    use clap::Parser;
    let container =
        &find(objects, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0];
    let mut args = vec!["wa-operator".to_string()];
    args.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let flag_of_env = [
        ("WA_SESSION_NODE_SELECTOR", "--session-node-selector"),
        ("WA_SESSION_TOLERATIONS", "--session-tolerations"),
        ("WA_SESSION_AFFINITY", "--session-affinity"),
        ("WA_SESSION_PRIORITY_CLASS", "--session-priority-class"),
        (
            "WA_SESSION_IMAGE_PULL_SECRETS",
            "--session-image-pull-secrets",
        ),
    ];
    for e in container["env"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (e["name"].as_str(), e["value"].as_str()) else {
            continue;
        };
        if let Some((_, flag)) = flag_of_env.iter().find(|(n, _)| *n == name) {
            args.push(format!("{flag}={value}"));
        }
    }
    operator::config::Config::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The children of every example session, as the operator builds them, with the chart's
/// NetworkPolicy of `namespace` (so kube-score sees the session pods' policy), as a YAML stream.
fn children_of_examples(objects: &[Value], namespace: &str) -> String {
    use operator::children;
    let settings = children::Settings::from_config(&operator_config(objects));
    let mut docs = Vec::new();
    for file in [
        "examples/session.yaml",
        "examples/session-proxy-pairing.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for v in values
            .into_iter()
            .filter(|v| v["kind"] == "WhatsAppSession")
        {
            let mut session: crds::WhatsAppSession = serde_json::from_value(v).unwrap();
            session.metadata.namespace = Some(namespace.into());
            session.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
            // k8s-openapi writes apiVersion and kind
            let to_json = |r: Result<String, serde_json::Error>| r.unwrap();
            docs.push(to_json(serde_json::to_string(
                &children::service_account(&session).unwrap(),
            )));
            docs.push(to_json(serde_json::to_string(
                &children::role(&session).unwrap(),
            )));
            docs.push(to_json(serde_json::to_string(
                &children::role_binding(&session).unwrap(),
            )));
            docs.push(to_json(serde_json::to_string(
                &children::pvc(&session, &settings).unwrap(),
            )));
            docs.push(to_json(serde_json::to_string(
                &children::statefulset(&session, &settings).unwrap(),
            )));
        }
    }
    docs.extend(
        of_kind(objects, "NetworkPolicy")
            .into_iter()
            .filter(|np| np["metadata"]["namespace"] == namespace)
            .filter(|np| {
                np["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-sessions"))
            })
            .map(|np| np.to_string()),
    );
    // JSON is YAML: one document per child
    docs.join("\n---\n")
}

/// The manifests linted: (label, YAML), written to `dir` as files.
fn manifests(helm: &Path, dir: &Path) -> Vec<(String, PathBuf)> {
    let prod = repo_root().join("examples/values-production.yaml");
    let prod = prod.to_str().unwrap();
    // sessions in a namespace the chart puts its session NetworkPolicy in: the release's by
    // default, a tenant's (sessionNamespaces.names) in production
    let variants: [(&str, Vec<&str>, Vec<&str>, &str); 2] = [
        (
            "defaults",
            vec![],
            vec!["--include-crds"],
            "whatsapp-system",
        ),
        ("production", vec![], vec!["-f", prod], "acme"),
    ];
    let mut out = Vec::new();
    for (label, sets, extra, session_ns) in variants {
        let yaml = run_ok(helm, &template_args("whatsapp-system", &sets, &extra), &[]).unwrap();
        let objects = parse_objects(&yaml).unwrap();
        let chart = dir.join(format!("chart-{label}.yaml"));
        std::fs::write(&chart, &yaml).unwrap();
        out.push((format!("chart ({label})"), chart));
        let kids = dir.join(format!("children-{label}.yaml"));
        let children = children_of_examples(&objects, session_ns);
        assert!(
            children.contains("\"NetworkPolicy\""),
            "{label}: no session policy in {session_ns}"
        );
        std::fs::write(&kids, children).unwrap();
        out.push((format!("session children ({label})"), kids));
    }
    out
}

fn allowed(tool: &str) -> Vec<Allowed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lint-allow.yaml");
    linters::allow_list(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .into_iter()
        .filter(|a| a.tool == tool)
        .collect()
}

fn assert_all_accepted(tool: &str, findings: &[(String, Finding)]) {
    let allowed = allowed(tool);
    let all: Vec<Finding> = findings.iter().map(|(_, f)| f.clone()).collect();
    let bad: Vec<String> = findings
        .iter()
        .filter(|(_, f)| !allowed.iter().any(|a| a.accepts(f)))
        .map(|(label, f)| format!("  {label}: {f}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{tool} findings not accepted in tests/chart/lint-allow.yaml (fix them, or accept each with its reason):\n{}",
        bad.join("\n")
    );
    let stale: Vec<String> = linters::unused(&allowed, &all)
        .iter()
        .map(|a| format!("  {} {}", a.check, a.object))
        .collect();
    assert!(
        stale.is_empty(),
        "tests/chart/lint-allow.yaml accepts {tool} findings that no longer occur (remove them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn kube_score_accepts_the_chart_and_the_session_children() {
    let test = "kube_score_accepts_the_chart_and_the_session_children";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let Some(bin) = tool_or_skip(test, "kube-score", "KUBE_SCORE_VERSION", "kube-score") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut findings = Vec::new();
    for (label, file) in manifests(&helm, dir.path()) {
        for f in linters::kube_score(&bin, &file, &kube_version()).unwrap() {
            findings.push((label.clone(), f));
        }
    }
    // The linter ran on real objects: these are findings it must make on any chart like this
    // one (sessions' NetworkPolicy selects pods the operator creates, not the chart).
    assert!(
        findings
            .iter()
            .any(|(_, f)| f.check == "networkpolicy-targets-pod"),
        "kube-score found nothing at all: did it read the files? {findings:?}"
    );
    assert_all_accepted("kube-score", &findings);
}

#[tokio::test]
async fn kubeconform_validates_against_the_cluster_schemas() {
    let test = "kubeconform_validates_against_the_cluster_schemas";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let Some(bin) = tool_or_skip(test, "kubeconform", "KUBECONFORM_VERSION", "kubeconform") else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let out = cluster.kubectl(&["get", "--raw", "/openapi/v2"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let openapi: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    let written = linters::write_schemas(&openapi, &schemas).unwrap();
    for kind in [
        "deployment-apps-v1.json",
        "statefulset-apps-v1.json",
        "networkpolicy-networking-v1.json",
    ] {
        assert!(written.contains(kind), "no schema {kind}");
    }
    let mut findings = Vec::new();
    for (label, file) in manifests(&helm, dir.path()) {
        for f in linters::kubeconform(&bin, &schemas, &file).unwrap() {
            findings.push((label.clone(), f));
        }
    }
    // Mutation check of the strict schemas: an unknown field in a pod spec is refused.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n  nodeSelectr: {a: b}\n",
    )
    .unwrap();
    let refused = linters::kubeconform(&bin, &schemas, &bad).unwrap();
    assert!(
        refused
            .iter()
            .any(|f| f.check == "invalid" && f.message.contains("nodeSelectr")),
        "{refused:?}"
    );
    assert_all_accepted("kubeconform", &findings);
}
