//! Chart tests that need no cluster: lint, the CRD copy, the values schema and what the
//! templates render (security contexts, RBAC, NetworkPolicy, Secret, Ingress).

use chart_tests::*;
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn helm_lint_strict_is_clean() {
    let Some(helm) = helm_or_skip("helm_lint_strict_is_clean") else {
        return;
    };
    let chart = chart_dir().display().to_string();
    let prod = repo_root()
        .join("examples/values-production.yaml")
        .display()
        .to_string();
    let variants: Vec<Vec<String>> = vec![
        vec![],
        vec!["-f".into(), prod],
        vec![
            "--set".into(),
            "operator.watchNamespace=tenants,hub.watchNamespace=tenants".into(),
        ],
        vec![
            "--set".into(),
            "hub.enabled=false,networkPolicy.enabled=false".into(),
        ],
    ];
    for extra in variants {
        // lint renders without a cluster: the chart wants a JWT key then (hub-secret.yaml)
        let mut args = vec![
            "lint".into(),
            "--strict".into(),
            "--kube-version".into(),
            kube_version(),
            chart.clone(),
            "--set".into(),
            format!("hub.auth.jwtSecret={TEST_JWT_SECRET}"),
        ];
        args.extend(extra.iter().cloned());
        let out = run_ok(&helm, &args, &[]).unwrap_or_else(|e| panic!("helm lint {extra:?}: {e}"));
        assert!(
            out.contains("0 chart(s) failed"),
            "helm lint {extra:?}:\n{out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint {extra:?}:\n{out}"
        );
    }
}

/// The chart's kubeVersion floor is where the CRD's `selectableFields` (the `spec.tenant` field
/// selector) are GA: 1.32. Below it, Helm refuses the chart instead of installing a CRD whose
/// field selector the API server drops.
#[test]
fn kube_version_floor_is_where_selectable_fields_are_ga() {
    let Some(helm) = helm_or_skip("kube_version_floor_is_where_selectable_fields_are_ga") else {
        return;
    };
    let crd = std::fs::read_to_string(chart_dir().join("crds/whatsappsession.yaml")).unwrap();
    assert!(
        crd.contains("selectableFields:"),
        "the CRD no longer uses selectableFields: revisit kubeVersion"
    );
    let template = |version: &str| {
        let mut args = template_args("wa-system", &[], &[]);
        let at = args.iter().position(|a| a == "--kube-version").unwrap() + 1;
        args[at] = version.into();
        run(&helm, &args, &[]).unwrap()
    };
    let old = template("1.31.9");
    assert!(
        !old.status.success()
            && String::from_utf8_lossy(&old.stderr).contains("incompatible with Kubernetes"),
        "{old:?}"
    );
    for ok in ["1.32.0", &kube_version()] {
        let out = template(ok);
        assert!(
            out.status.success(),
            "{ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The chart's CRD must be the generated one (`make crds`): Helm installs it from crds/.
#[test]
fn crd_copy_matches_generated_crd() {
    let generated = std::fs::read_to_string(repo_root().join("crds/whatsappsession.yaml")).unwrap();
    let copy = std::fs::read_to_string(chart_dir().join("crds/whatsappsession.yaml")).unwrap();
    assert!(
        generated == copy,
        "charts/whatsapp-operator/crds/whatsappsession.yaml differs from crds/whatsappsession.yaml: \
         cp crds/whatsappsession.yaml charts/whatsapp-operator/crds/"
    );
}

#[test]
fn values_schema_rejects_invalid_values() {
    let Some(helm) = helm_or_skip("values_schema_rejects_invalid_values") else {
        return;
    };
    // Each bad value must be refused, naming the offending key.
    let bad = [
        ("operator.replicas=-1", "replicas"),
        ("hub.service.type=Magic", "type"),
        ("operator.replicaz=2", "replicaz"),
        ("session.whatsappUrl=ftp://x", "whatsappUrl"),
        ("operator.logoutTimeout=soon", "logoutTimeout"),
        ("hub.service.nodePort=80", "nodePort"),
        ("hub.auth.jwtSecret=short", "jwtSecret"),
        ("networkPolicy.apiServer.cidrs[0]=not-a-cidr", "cidrs"),
        (
            "hub.auth.users[0].username=a,hub.auth.users[0].passwordHash=plaintext,hub.auth.users[0].role=user",
            "passwordHash",
        ),
        (
            "hub.auth.users[0].username=a,hub.auth.users[0].passwordHash=$argon2id$x,hub.auth.users[0].role=root",
            "role",
        ),
    ];
    for (set, key) in bad {
        let out = run(&helm, &template_args("wa-system", &[set], &[]), &[]).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            err.contains("schema") && err.contains(key),
            "--set {set}: error does not name {key}:\n{err}"
        );
    }
    // And the good ones pass.
    let objs = render(
        &helm,
        "wa-system",
        &[
            "hub.service.type=NodePort",
            "hub.service.nodePort=30080",
            "operator.logoutTimeout=2m",
            "session.defaultResources.memoryLimit=2Gi",
        ],
        &[],
    )
    .unwrap();
    let args = strings(
        &find(&objs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(
        args.contains(&"--logout-timeout=2m".to_string())
            && args.contains(&"--default-memory-limit=2Gi".to_string()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--default-cpu")),
        "unset defaults are the operator's: {args:?}"
    );
    let out = run(
        &helm,
        &template_args(
            "wa-system",
            &["session.defaultResources.memoryLimit=lots"],
            &[],
        ),
        &[],
    )
    .unwrap();
    assert!(!out.status.success());
}

#[test]
fn two_operator_replicas_need_leader_election() {
    let Some(helm) = helm_or_skip("two_operator_replicas_need_leader_election") else {
        return;
    };
    let out = run(
        &helm,
        &template_args(
            "wa-system",
            &[
                "operator.replicas=2",
                "operator.leaderElection.enabled=false",
            ],
            &[],
        ),
        &[],
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaderElection"));

    let objs = render(&helm, "wa-system", &["operator.replicas=2"], &[]).unwrap();
    let dep = find(&objs, "Deployment", "-operator");
    assert_eq!(dep["spec"]["replicas"], 2);
    let args = strings(&dep["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--leader-election=true".to_string()),
        "{args:?}"
    );
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.iter().any(|e| e["name"] == "POD_NAMESPACE"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"));
    // The Lease rights exist only in the release namespace.
    let role = find(&objs, "Role", "-leader-election");
    assert_eq!(role["metadata"]["namespace"], "wa-system");
    assert_eq!(role["rules"][0]["resources"][0], "leases");
}

/// Every pod the chart creates passes Pod Security `restricted` and runs the image's own
/// entrypoint (devcluster and the images both rely on `args` only).
#[test]
fn pods_are_restricted_and_use_the_image_entrypoint() {
    let Some(helm) = helm_or_skip("pods_are_restricted_and_use_the_image_entrypoint") else {
        return;
    };
    let objs = render(&helm, "wa-system", &[], &[]).unwrap();
    let deps = of_kind(&objs, "Deployment");
    assert_eq!(deps.len(), 2);
    for dep in deps {
        let name = dep["metadata"]["name"].as_str().unwrap();
        let pod = &dep["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        // Non-root must still read its Secret volumes (mode 0440, group fsGroup).
        assert_eq!(
            pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsGroup"],
            "{name}"
        );
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"], "{name}");
            assert!(
                c.get("command").is_none(),
                "{name} overrides the entrypoint"
            );
            let image = c["image"].as_str().unwrap();
            assert!(
                image.starts_with("ghcr.io/leadmaster/wa-") && image.ends_with(":0.1.0"),
                "{name}: {image}"
            );
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{name} has no memory limit"
            );
        }
    }
    let op = find(&objs, "Deployment", "-operator");
    let args = strings(&op["spec"]["template"]["spec"]["containers"][0]["args"]);
    for want in [
        "--session-image=ghcr.io/leadmaster/wa-session:0.1.0",
        "--whatsapp-url=https://web.whatsapp.com/",
        "--metrics-addr=0.0.0.0:8080",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "operator args {args:?} lack {want}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "all namespaces by default: {args:?}"
    );
    let hub = find(&objs, "Deployment", "-hub");
    let c = &hub["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&c["args"]);
    for want in [
        "--listen=0.0.0.0:8080",
        "--users-file=/etc/wa-hub/auth/users.yaml",
        "--jwt-secret-file=/etc/wa-hub/auth/jwt-secret",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "hub args {args:?} lack {want}"
        );
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
}

fn rules(role: &Value) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}

fn allows(
    rules: &[(Vec<String>, Vec<String>, Vec<String>)],
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    rules.iter().any(|(g, r, v)| {
        g.iter().any(|x| x == group)
            && r.iter().any(|x| x == resource)
            && v.iter().any(|x| x == verb)
    })
}

#[test]
fn rbac_is_least_privilege() {
    let Some(helm) = helm_or_skip("rbac_is_least_privilege") else {
        return;
    };
    let objs = render(&helm, "wa-system", &[], &[]).unwrap();
    let op = rules(find(&objs, "ClusterRole", "-operator"));
    for (groups, resources, verbs) in &op {
        for x in groups.iter().chain(resources).chain(verbs) {
            assert_ne!(x, "*", "wildcard in operator rules");
        }
        for v in ["escalate", "bind", "impersonate"] {
            assert!(!verbs.iter().any(|x| x == v), "operator may {v}");
        }
        assert!(
            !resources
                .iter()
                .any(|r| r == "secrets" || r == "configmaps"),
            "operator reads {resources:?}"
        );
        assert!(
            !resources.iter().any(|r| r == "pods")
                || verbs
                    .iter()
                    .all(|v| ["get", "list", "watch"].contains(&v.as_str()))
        );
    }
    let g = "whatsapp.leadmaster.io";
    // What each session's Role grants, the operator must hold (no escalate verb).
    for verb in ["get", "list", "watch"] {
        assert!(
            allows(&op, g, "whatsappsessions", verb),
            "operator lacks {verb} whatsappsessions"
        );
    }
    for verb in ["get", "patch"] {
        assert!(
            allows(&op, g, "whatsappsessions/status", verb),
            "operator lacks {verb} status"
        );
    }
    assert!(allows(&op, g, "whatsappsessions/finalizers", "update"));
    // Server-side apply of each child kind needs create + patch, and .owns() needs watch.
    for (group, res) in [
        ("apps", "statefulsets"),
        ("", "persistentvolumeclaims"),
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        for verb in ["create", "patch", "list", "watch"] {
            assert!(allows(&op, group, res, verb), "operator lacks {verb} {res}");
        }
    }
    assert!(allows(&op, "", "persistentvolumeclaims", "delete"));
    // Only PVCs are deleted by the operator (deletionPolicy); other children go by garbage
    // collection, and everything is written by server-side apply (no update).
    for (_, resources, verbs) in &op {
        assert!(
            !verbs.iter().any(|v| v == "update")
                || resources == &vec!["whatsappsessions/finalizers".to_string()],
            "{resources:?}: {verbs:?}"
        );
        assert!(
            !verbs.iter().any(|v| v == "delete")
                || resources == &vec!["persistentvolumeclaims".to_string()],
            "{resources:?}: {verbs:?}"
        );
    }
    assert!(allows(&op, "events.k8s.io", "events", "create"));

    let hub = rules(find(&objs, "ClusterRole", "-hub"));
    assert_eq!(
        hub,
        vec![
            (
                vec![g.to_string()],
                vec!["whatsappsessions".to_string()],
                ["get", "list", "watch", "patch"].map(String::from).to_vec()
            ),
            // a session's pod by name, to reach its agent's message API: get only
            (
                vec![String::new()],
                vec!["pods".to_string()],
                vec!["get".to_string()]
            ),
        ]
    );

    // Session agents check the hub's token (TokenReview, cluster-scoped): create only, bound
    // to the ServiceAccounts of the session namespaces, nobody else.
    assert_eq!(
        rules(find(&objs, "ClusterRole", "-session-tokenreview")),
        vec![(
            vec!["authentication.k8s.io".to_string()],
            vec!["tokenreviews".to_string()],
            vec!["create".to_string()]
        )]
    );
    assert_eq!(
        find(&objs, "ClusterRoleBinding", "-session-tokenreview")["subjects"],
        serde_json::json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
            "name": "system:serviceaccounts:wa-system"}])
    );

    // The hub reads namespaces' labels (tenant claims), nothing else of them.
    assert_eq!(
        rules(find(&objs, "ClusterRole", "-hub-namespaces")),
        vec![(
            vec![String::new()],
            vec!["namespaces".to_string()],
            ["get", "list", "watch"].map(String::from).to_vec()
        )]
    );

    // Bindings point at the chart's ServiceAccounts in the release namespace.
    for (binding, account) in [
        ("-operator", "-operator"),
        ("-hub", "-hub"),
        ("-hub-namespaces", "-hub"),
    ] {
        let b = find(&objs, "ClusterRoleBinding", binding);
        assert_eq!(b["subjects"][0]["namespace"], "wa-system");
        assert_eq!(
            b["subjects"][0]["name"],
            find(&objs, "ServiceAccount", account)["metadata"]["name"]
        );
    }
}

#[test]
fn watch_namespace_turns_cluster_roles_into_roles() {
    let Some(helm) = helm_or_skip("watch_namespace_turns_cluster_roles_into_roles") else {
        return;
    };
    let objs = render(
        &helm,
        "wa-system",
        &[
            "operator.watchNamespace=tenants",
            "hub.watchNamespace=tenants",
        ],
        &[],
    )
    .unwrap();
    // Cluster-wide, only what cannot be namespaced: the hub reads the served namespace's
    // labels (its tenant claims), that namespace only; the session agents review tokens.
    let cluster_roles = of_kind(&objs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 2, "{cluster_roles:#?}");
    assert_eq!(
        find(&objs, "ClusterRole", "-hub-namespaces")["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"],
            "verbs": ["get", "list", "watch"], "resourceNames": ["tenants"]}])
    );
    assert_eq!(
        find(&objs, "ClusterRoleBinding", "-session-tokenreview")["subjects"][1]["name"],
        "system:serviceaccounts:tenants"
    );
    assert_eq!(of_kind(&objs, "ClusterRoleBinding").len(), 2);
    for suffix in ["-operator", "-hub"] {
        assert_eq!(
            find(&objs, "Role", suffix)["metadata"]["namespace"],
            "tenants"
        );
        assert_eq!(
            find(&objs, "RoleBinding", suffix)["metadata"]["namespace"],
            "tenants"
        );
    }
    let args = strings(
        &find(&objs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(args.contains(&"--namespace=tenants".to_string()));
    // The watched namespace gets the session NetworkPolicy too.
    let nss: Vec<_> = session_policies(&objs)
        .iter()
        .map(|n| n["metadata"]["namespace"].clone())
        .collect();
    assert_eq!(nss, vec![Value::from("wa-system"), Value::from("tenants")]);
}

#[test]
fn session_network_policy() {
    let Some(helm) = helm_or_skip("session_network_policy") else {
        return;
    };
    let objs = render(
        &helm,
        "wa-system",
        &["sessionNamespaces.names={acme,globex}"],
        &[],
    )
    .unwrap();
    let nps = session_policies(&objs);
    assert_eq!(nps.len(), 3, "release namespace + 2 tenant namespaces");
    let np = nps[0];
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "whatsapp-session"
    );
    assert_eq!(
        strings(&np["spec"]["policyTypes"]),
        vec!["Ingress", "Egress"]
    );
    assert_eq!(
        np["spec"]["ingress"],
        serde_json::json!([{
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "wa-system"}},
                "podSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "whatsapp-operator",
                    "app.kubernetes.io/instance": "wa",
                    "app.kubernetes.io/component": "hub",
                }},
            }],
            "ports": [{"protocol": "TCP", "port": 8081}],
        }]),
        "sessions accept the release's hub on `messages` only"
    );
    // without the hub, no connections at all
    let objs = render(&helm, "wa-system", &["hub.enabled=false"], &[]).unwrap();
    assert_eq!(
        session_policies(&objs)[0]["spec"]["ingress"],
        serde_json::json!([])
    );
    let egress = np["spec"]["egress"].as_array().unwrap();
    let internet = egress
        .iter()
        .find(|r| r["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0")
        .expect("internet rule");
    assert!(strings(&internet["to"][0]["ipBlock"]["except"]).contains(&"10.0.0.0/8".to_string()));
    let ports: Vec<_> = internet["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].clone())
        .collect();
    assert_eq!(ports, vec![Value::from(443), Value::from(80)]);
    assert!(egress.iter().any(|r| {
        r["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["port"] == 53))
    }));

    // With a proxy, the internet rule is replaced by the proxy's address only.
    let objs = render(
        &helm,
        "wa-system",
        &[
            "networkPolicy.proxy.cidrs={10.1.2.3/32}",
            "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
        ],
        &[],
    )
    .unwrap();
    let egress = session_policies(&objs)[0]["spec"]["egress"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        !egress
            .iter()
            .any(|r| r["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"),
        "{egress:?}"
    );
    assert!(
        egress.iter().any(
            |r| r["to"][0]["ipBlock"]["cidr"] == "10.1.2.3/32" && r["ports"][0]["port"] == 3128
        )
    );
    assert!(
        egress.iter().any(
            |r| r["to"][0]["ipBlock"]["cidr"] == "10.0.0.10/32" && r["ports"][0]["port"] == 443
        )
    );

    // Scraping session metrics is opt-in, on 8080 only.
    let objs = render(
        &helm,
        "wa-system",
        &["networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"],
        &[],
    )
    .unwrap();
    let ingress = &session_policies(&objs)[0]["spec"]["ingress"];
    assert_eq!(ingress[1]["ports"][0]["port"], 8080);
    assert_eq!(
        ingress[1]["from"][0]["namespaceSelector"]["matchLabels"]["name"],
        "monitoring"
    );
}

#[test]
fn created_session_namespaces_are_restricted_and_kept() {
    let Some(helm) = helm_or_skip("created_session_namespaces_are_restricted_and_kept") else {
        return;
    };
    let objs = render(
        &helm,
        "wa-system",
        &[
            "sessionNamespaces.create=true",
            "sessionNamespaces.names={acme}",
        ],
        &[],
    )
    .unwrap();
    let ns = find(&objs, "Namespace", "acme");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(
        ns["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}

/// `sessionNamespaces.names`: a string is a tenant's own namespace, an object names its tenants;
/// created namespaces carry the claim label of each (README "Security model").
#[test]
fn created_session_namespaces_carry_their_tenant_claims() {
    let Some(helm) = helm_or_skip("created_session_namespaces_carry_their_tenant_claims") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "sessionNamespaces:\n  create: true\n  names:\n    - acme\n    - {name: shared, tenants: [globex, initech]}\n    - {name: own}\n    - {name: none, tenants: []}\n",
    )
    .unwrap();
    let objs = render(&helm, "wa-system", &[], &["-f", values.to_str().unwrap()]).unwrap();
    let claims = |ns: &str| -> Vec<String> {
        let labels = find(&objs, "Namespace", ns)["metadata"]["labels"]
            .as_object()
            .unwrap()
            .clone();
        labels
            .iter()
            .filter_map(|(k, v)| {
                let tenant = k.strip_prefix("tenant.whatsapp.leadmaster.io/")?;
                assert_eq!(v, "", "{ns}: {k}");
                Some(tenant.to_string())
            })
            .collect()
    };
    assert_eq!(claims("acme"), ["acme"]);
    assert_eq!(claims("shared"), ["globex", "initech"]);
    assert_eq!(claims("own"), ["own"]);
    assert!(claims("none").is_empty());
    // every entry, string or object, also gets the session NetworkPolicy
    let policies: Vec<&str> = session_policies(&objs)
        .iter()
        .filter_map(|p| p["metadata"]["namespace"].as_str())
        .collect();
    for ns in ["wa-system", "acme", "shared", "own", "none"] {
        assert!(policies.contains(&ns), "{ns}: {policies:?}");
    }
    // Not created: no Namespace objects (the admin labels them), the policy still renders.
    let objs = render(&helm, "wa-system", &["sessionNamespaces.names={acme}"], &[]).unwrap();
    assert!(of_kind(&objs, "Namespace").is_empty());
    // A typo in an entry is refused by the schema.
    let out = run(
        &helm,
        &template_args(
            "wa-system",
            &[
                "sessionNamespaces.names[0].name=x",
                "sessionNamespaces.names[0].tenant=x",
            ],
            &[],
        ),
        &[],
    )
    .unwrap();
    assert!(
        !out.status.success(),
        "an unknown key in an entry was accepted"
    );
}

/// The tenant-claims policy (templates/tenant-claims.yaml): on by default, CREATE only, fails
/// closed, denies; scoped to the watched namespaces when both binaries watch one; off by value.
#[test]
fn tenant_claims_policy() {
    let Some(helm) = helm_or_skip("tenant_claims_policy") else {
        return;
    };
    let objs = render(&helm, "wa-system", &[], &[]).unwrap();
    let vap = find(&objs, "ValidatingAdmissionPolicy", "-tenant-claims");
    let spec = &vap["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);
    assert_eq!(strings(&rule["resources"]), ["whatsappsessions"]);
    assert_eq!(strings(&rule["apiGroups"]), ["whatsapp.leadmaster.io"]);
    assert_eq!(
        spec["variables"][0]["expression"],
        "'tenant.whatsapp.leadmaster.io/' + object.spec.tenant"
    );
    let validation = &spec["validations"][0];
    assert!(
        validation["expression"]
            .as_str()
            .unwrap()
            .contains("variables.label in namespaceObject.metadata.labels"),
        "{validation}"
    );
    assert!(validation["messageExpression"].is_string());
    let binding = find(&objs, "ValidatingAdmissionPolicyBinding", "-tenant-claims");
    assert_eq!(binding["spec"]["policyName"], vap["metadata"]["name"]);
    assert_eq!(strings(&binding["spec"]["validationActions"]), ["Deny"]);
    assert!(
        binding["spec"]["matchResources"].is_null(),
        "watching every namespace: the policy covers every namespace"
    );

    let scoped = |sets: &[&str]| {
        let objs = render(&helm, "wa-system", sets, &[]).unwrap();
        let b = find(&objs, "ValidatingAdmissionPolicyBinding", "-tenant-claims").clone();
        b["spec"]["matchResources"]["namespaceSelector"].clone()
    };
    let sel = scoped(&["operator.watchNamespace=t1", "hub.watchNamespace=t2"]);
    assert_eq!(
        sel["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["t1", "t2"]})
    );
    let sel = scoped(&["operator.watchNamespace=t1", "hub.enabled=false"]);
    assert_eq!(strings(&sel["matchExpressions"][0]["values"]), ["t1"]);
    let sel = scoped(&["operator.watchNamespace=t1", "hub.watchNamespace=t1"]);
    assert_eq!(strings(&sel["matchExpressions"][0]["values"]), ["t1"]);
    // the hub watching every namespace serves sessions from all of them
    assert!(scoped(&["operator.watchNamespace=t1"]).is_null());

    let objs = render(
        &helm,
        "wa-system",
        &["tenantClaims.admissionPolicy=false"],
        &[],
    )
    .unwrap();
    assert!(of_kind(&objs, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&objs, "ValidatingAdmissionPolicyBinding").is_empty());
}

#[test]
fn hub_auth_secret_and_ingress() {
    let Some(helm) = helm_or_skip("hub_auth_secret_and_ingress") else {
        return;
    };
    // Written as a values file: argon2 hashes contain commas, which --set splits on.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "hub:\n  auth:\n    users:\n      - {{username: acme, passwordHash: '{hash}', tenants: [acme], role: user}}\n  \
             ingress:\n    enabled: true\n    host: wa.example.com\n    annotations: {{extra: 'yes'}}\n"
        ),
    )
    .unwrap();
    let objs = render(&helm, "wa-system", &[], &["-f", values.to_str().unwrap()]).unwrap();
    let secret = find(&objs, "Secret", "-hub-auth");
    let b64 = |k: &str| secret["data"][k].as_str().unwrap().to_string();
    let users = decode_base64(&b64("users.yaml"));
    let users: Value = serde_saphyr::from_str(&users).unwrap();
    assert_eq!(
        users,
        serde_json::json!({"users": [{"username": "acme", "passwordHash": hash, "tenants": ["acme"], "role": "user"}]})
    );
    // The given key (template_args' TEST_JWT_SECRET): without a cluster the chart never
    // invents one (tests/hardening.rs); stability across upgrades of a generated key is checked
    // against a live release in tests/install.rs.
    assert_eq!(decode_base64(&b64("jwt-secret")), TEST_JWT_SECRET);
    let ing = find(&objs, "Ingress", "-hub");
    let ann = &ing["metadata"]["annotations"];
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
    assert_eq!(ann["extra"], "yes");
    assert_eq!(ing["spec"]["rules"][0]["host"], "wa.example.com");

    // An existing Secret replaces the generated one.
    let objs = render(&helm, "wa-system", &["hub.auth.existingSecret=mine"], &[]).unwrap();
    assert!(of_kind(&objs, "Secret").is_empty());
    let vols = &find(&objs, "Deployment", "-hub")["spec"]["template"]["spec"]["volumes"];
    assert_eq!(vols[0]["secret"]["secretName"], "mine");
}

fn decode_base64(s: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64"),
    )
    .expect("utf-8")
}

/// The session pods' NetworkPolicies (one per session namespace), in render order.
fn session_policies(objs: &[Value]) -> Vec<&Value> {
    of_kind(objs, "NetworkPolicy")
        .into_iter()
        .filter(|np| {
            np["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-sessions"))
        })
        .collect()
}
