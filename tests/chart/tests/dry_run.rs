//! The rendered chart, validated by the API server itself: a server-side dry run of every
//! object (schema/OpenAPI validation, admission including Pod Security, RBAC object checks)
//! on the devcluster of `$DEVCLUSTER_STATE_DIR`.

use chart_tests::*;

async fn dry_run_apply(kubeconfig: &std::path::Path, yaml: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--dry-run=server",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .await
        .unwrap();
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn server_side_dry_run_accepts_the_rendered_chart() {
    let Some(helm) = helm_or_skip("server_side_dry_run_accepts_the_rendered_chart") else {
        return;
    };
    let cluster = devcluster_testing::cluster().await;
    let release_ns = cluster.namespace("chart-dry").await;
    let tenant_ns = cluster.namespace("chart-dry-tenant").await;
    // Pod Security `restricted` on the release namespace. Admission enforces it on pods only;
    // for Deployments it warns (`warn` label), so the warnings are checked below.
    let out = cluster
        .kubectl(&[
            "label",
            "namespace",
            &release_ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let prod = repo_root()
        .join("examples/values-production.yaml")
        .display()
        .to_string();
    let tenants = format!("sessionNamespaces.names={{{tenant_ns}}}");
    let variants: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["--include-crds"]),
        (
            vec![
                "hub.ingress.enabled=true",
                "hub.service.type=NodePort",
                tenants.as_str(),
            ],
            vec![],
        ),
        (
            vec![
                &tenants,
                "sessionNamespaces.create=false",
                "hub.auth.existingSecret=",
            ],
            vec!["-f", prod.as_str()],
        ),
        (
            vec![
                "operator.watchNamespace=default",
                "hub.watchNamespace=default",
            ],
            vec![],
        ),
    ];
    // (A mutation check: `hub.podSecurityContext.runAsNonRoot=false` makes this test fail.)
    for (sets, extra) in variants {
        let yaml = run_ok(&helm, &template_args(&release_ns, &sets, &extra), &[]).unwrap();
        // The Prometheus Operator's kinds (production values) need its CRDs, which the
        // devcluster does not have: tests/monitoring.rs checks those objects instead.
        let objects: Vec<_> = parse_objects(&yaml)
            .unwrap()
            .into_iter()
            .filter(|o| {
                !o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
            })
            .collect();
        // Without them, one JSON List (kubectl applies each item); otherwise helm's own YAML
        // (kubectl's client-side check refuses the CRD's `null` enum values once in JSON).
        let yaml = if objects.len() == parse_objects(&yaml).unwrap().len() {
            yaml
        } else {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
        };
        assert!(
            objects.len() >= 10,
            "{sets:?}: only {} objects rendered",
            objects.len()
        );
        let out = dry_run_apply(&cluster.kubeconfig(), &yaml).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dry run of {sets:?} {extra:?} refused:\n{}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("PodSecurity"),
            "{sets:?}: pods would violate Pod Security restricted:\n{stderr}"
        );
        // Every object went through the server (kubectl prints one line per object).
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            objects.len(),
            "{stdout}"
        );
    }
}
