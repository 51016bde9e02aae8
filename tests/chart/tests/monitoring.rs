//! The Prometheus Operator integration, rendered (no cluster): ServiceMonitors and PodMonitor
//! point at ports that exist and that the public Service and Ingress never expose, the
//! PrometheusRule passes `promtool check rules` (promtool built from the Prometheus Go module),
//! the dashboard's queries parse as PromQL, and both use only `wa_*` metrics. That those names
//! are in the binaries' real /metrics is checked on running pods in tests/install.rs.

use chart_tests::monitoring::{dashboards, expressions, metric_names, rule_file};
use chart_tests::*;
use serde_json::{Value, json};

const ALL_ON: [&str; 4] = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.podMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
];

fn ports(service: &Value) -> Vec<String> {
    service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn monitors_scrape_metrics_ports_the_public_side_never_exposes() {
    let Some(helm) = helm_or_skip("monitors_scrape_metrics_ports_the_public_side_never_exposes")
    else {
        return;
    };
    // Off by default: the monitoring.coreos.com CRDs may not exist in the cluster.
    let off = render(&helm, "wa-system", &[], &[]).unwrap();
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(of_kind(&off, kind).is_empty(), "{kind} rendered by default");
    }
    let mut sets = ALL_ON.to_vec();
    sets.extend(["hub.ingress.enabled=true", "metrics.labels.release=kps"]);
    let objs = render(&helm, "wa-system", &sets, &[]).unwrap();

    for (suffix, component) in [("-operator", "operator"), ("-hub", "hub")] {
        let sm = find(&objs, "ServiceMonitor", suffix);
        assert_eq!(sm["metadata"]["labels"]["release"], "kps");
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
        // the Services it selects: exactly one has the metrics port, and the pods behind it
        // declare that port
        let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
        let selected: Vec<&Value> = of_kind(&objs, "Service")
            .into_iter()
            .filter(|s| {
                selector
                    .iter()
                    .all(|(k, v)| &s["metadata"]["labels"][k] == v)
            })
            .collect();
        let with_metrics: Vec<_> = selected
            .iter()
            .filter(|s| ports(s).contains(&"metrics".to_string()))
            .collect();
        assert_eq!(with_metrics.len(), 1, "{component}: {selected:?}");
        let pod = &find(&objs, "Deployment", suffix)["spec"]["template"]["spec"];
        assert!(
            pod["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "metrics"),
            "{component} pod has no metrics port"
        );
    }
    // The hub's public Service and its Ingress carry only http.
    let public = find(&objs, "Service", "-hub");
    assert_eq!(ports(public), ["http"]);
    let ing = find(&objs, "Ingress", "-hub");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": public["metadata"]["name"], "port": {"name": "http"}})
    );
    let hub = &find(&objs, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        hub["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HUB_METRICS_ADDR" && e["value"] == "0.0.0.0:9090")
    );

    // Session agents: the PodMonitor selects the pods the operator labels, on their metrics port,
    // in every namespace (or the watched one).
    let pm = find(&objs, "PodMonitor", "-sessions");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "whatsapp-session"
    );
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(pm["spec"]["namespaceSelector"]["any"], true);
    let objs = render(
        &helm,
        "wa-system",
        &[
            "metrics.podMonitor.enabled=true",
            "operator.watchNamespace=acme",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        find(&objs, "PodMonitor", "-sessions")["spec"]["namespaceSelector"]["matchNames"],
        json!(["acme"])
    );
}

#[test]
fn session_network_policy_lets_prometheus_scrape() {
    let Some(helm) = helm_or_skip("session_network_policy_lets_prometheus_scrape") else {
        return;
    };
    let prod = repo_root().join("examples/values-production.yaml");
    let objs = render(&helm, "wa-system", &[], &["-f", prod.to_str().unwrap()]).unwrap();
    let np = of_kind(&objs, "NetworkPolicy")
        .into_iter()
        .find(|np| np["metadata"]["namespace"] == "acme")
        .expect("a session policy in the tenant namespace acme");
    // the agent's metrics port (8080, named `metrics` on the container), and only it (the
    // other rule lets the hub in on `messages`)
    let rule = np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"] == json!([{"protocol": "TCP", "port": 8080}]))
        .expect("a rule for the metrics port");
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
}

/// promtool, or a printed reason to skip.
fn promtool(test: &str) -> Option<std::path::PathBuf> {
    tool_or_skip(test, "promtool", "PROMETHEUS_VERSION", "promtool")
}

#[test]
fn alert_rules_pass_promtool_and_the_dashboard_queries_parse() {
    let test = "alert_rules_pass_promtool_and_the_dashboard_queries_parse";
    let Some(helm) = helm_or_skip(test) else {
        return;
    };
    let Some(promtool) = promtool(test) else {
        return;
    };
    let objs = render(&helm, "wa-system", &ALL_ON, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rule_file(&objs)).unwrap();
    let out = run(
        &promtool,
        &["check".into(), "rules".into(), rules.display().to_string()],
        &[],
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");

    // The alerts an on-call person needs, each with a summary and a description.
    let rule = find(&objs, "PrometheusRule", "");
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    for name in [
        "WhatsAppSessionNotConnected",
        "WhatsAppSessionNotReceiving",
        "WhatsAppSessionRestarting",
        "WhatsAppOperatorReconcileErrors",
        "WhatsAppSessionUnreadable",
        "WhatsAppOperatorNotLeading",
        "WhatsAppHubWatchDown",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    for a in &alerts {
        assert!(
            a["annotations"]["summary"].is_string() && a["annotations"]["description"].is_string()
        );
        assert!(a["labels"]["severity"].is_string());
    }
    let not_connected = alerts
        .iter()
        .find(|a| a["alert"] == "WhatsAppSessionNotConnected")
        .unwrap();
    assert_eq!(not_connected["for"], "15m");
    let not_receiving = alerts
        .iter()
        .find(|a| a["alert"] == "WhatsAppSessionNotReceiving")
        .unwrap();
    assert_eq!(not_receiving["for"], "5m");
    assert_eq!(
        not_receiving["expr"],
        "max by (namespace, pod) (wa_session_message_listeners) == 0"
    );
    // Prometheus' own templating survives Helm's
    assert!(
        not_connected["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.pod }}")
    );

    // The dashboard's queries, as recording rules, so promtool parses every one of them
    // (Grafana's $__rate_interval stands in for a range).
    let dashboards = dashboards(&objs).unwrap();
    assert_eq!(dashboards.len(), 1);
    assert!(dashboards[0]["panels"].as_array().unwrap().len() >= 10);
    let records: Vec<Value> = expressions(&objs)
        .unwrap()
        .into_iter()
        .filter(|(from, _)| from.starts_with("panel"))
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr.replace("$__rate_interval", "5m")}))
        .collect();
    let file = dir.path().join("dashboard.yaml");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": records}]}).to_string(),
    )
    .unwrap();
    let out = run(
        &promtool,
        &["check".into(), "rules".into(), file.display().to_string()],
        &[],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "dashboard queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // every query names at least one of the project's metrics
    for (from, expr) in expressions(&objs).unwrap() {
        assert!(!metric_names(&expr).is_empty(), "{from}: {expr}");
    }

    // A mutation check: a broken expression is refused by promtool.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "groups: [{name: x, rules: [{alert: X, expr: 'sum(wa_x'}]}]",
    )
    .unwrap();
    let out = run(
        &promtool,
        &["check".into(), "rules".into(), broken.display().to_string()],
        &[],
    )
    .unwrap();
    assert!(!out.status.success());
}

#[test]
fn alert_thresholds_come_from_values() {
    let Some(helm) = helm_or_skip("alert_thresholds_come_from_values") else {
        return;
    };
    let objs = render(
        &helm,
        "wa-system",
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.notConnectedFor=30m",
            "metrics.prometheusRule.restarts=5",
            "metrics.prometheusRule.restartsWindow=2h",
            "metrics.prometheusRule.additionalLabels.team=chat",
            "hub.enabled=false",
        ],
        &[],
    )
    .unwrap();
    let rules = find(&objs, "PrometheusRule", "")["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .clone();
    let by = |n: &str| rules.iter().find(|r| r["alert"] == n).unwrap().clone();
    assert_eq!(by("WhatsAppSessionNotConnected")["for"], "30m");
    let restarting = by("WhatsAppSessionRestarting");
    assert!(
        restarting["expr"].as_str().unwrap().contains("[2h])) >= 5"),
        "{restarting}"
    );
    assert_eq!(restarting["labels"]["team"], "chat");
    // no hub, no hub alert
    assert!(!rules.iter().any(|r| r["alert"] == "WhatsAppHubWatchDown"));
}
