//! The chart's Prometheus objects as data: the metric names its alert rules and dashboard use,
//! the metric names a `/metrics` page exposes, and the PrometheusRule as a file `promtool check
//! rules` reads.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{ChartError, find, of_kind};

/// Metric names in a PromQL expression: every `wa_…` identifier outside quotes (all the
/// project's metrics carry the `wa_` prefix; labels and functions never do).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            // a label value, not a name
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("wa_") {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The series names a Prometheus text/OpenMetrics page declares: samples, plus what each
/// `# TYPE` family yields even before its first sample (a counter `x` is scraped as `x_total`,
/// a histogram as `x_bucket`/`x_sum`/`x_count`). prometheus_client leaves a labelled Family
/// with no label set yet off the page entirely, so rules must use families present from the
/// start (`wa_operator_reconciles_total{result="error"}`, not the errors-by-kind family).
pub fn exposed_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Every PromQL expression of the rendered PrometheusRule and dashboard ConfigMap, each with
/// where it comes from (`alert NAME` / `panel TITLE`).
pub fn expressions(objects: &[Value]) -> Result<Vec<(String, String)>, ChartError> {
    let mut out = Vec::new();
    for rule in of_kind(objects, "PrometheusRule") {
        for group in rule["spec"]["groups"].as_array().into_iter().flatten() {
            for r in group["rules"].as_array().into_iter().flatten() {
                let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
                let expr = r["expr"].as_str().unwrap_or_default();
                out.push((format!("alert {name}"), expr.to_string()));
            }
        }
    }
    for dashboard in dashboards(objects)? {
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                out.push((format!("panel {title}"), expr.to_string()));
            }
        }
    }
    Ok(out)
}

/// The Grafana dashboards (JSON) in the rendered ConfigMaps labelled for the Grafana sidecar.
pub fn dashboards(objects: &[Value]) -> Result<Vec<Value>, ChartError> {
    let mut out = Vec::new();
    for cm in of_kind(objects, "ConfigMap") {
        if cm["metadata"]["labels"]["grafana_dashboard"] != "1" {
            continue;
        }
        for (key, text) in cm["data"].as_object().into_iter().flatten() {
            let json: Value = serde_json::from_str(text.as_str().unwrap_or_default())
                .map_err(|e| ChartError::Yaml(format!("dashboard {key}: {e}")))?;
            out.push(json);
        }
    }
    Ok(out)
}

/// The PrometheusRule's `spec` (its `groups`) as the rule file promtool reads.
pub fn rule_file(objects: &[Value]) -> String {
    let rule = find(objects, "PrometheusRule", "");
    // JSON is YAML: promtool reads it as a rule file.
    serde_json::to_string_pretty(&rule["spec"]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_expressions() {
        let n = metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(wa_hub_push_latency_seconds_bucket[5m]))) \
             / on(pod) wa_operator_leader{namespace=\"wa_x\"}",
        );
        assert_eq!(
            n.into_iter().collect::<Vec<_>>(),
            ["wa_hub_push_latency_seconds_bucket", "wa_operator_leader"]
        );
    }

    #[test]
    fn families_without_samples_count_as_exposed() {
        let page = "# HELP wa_operator_reconcile_errors Failed.\n# TYPE wa_operator_reconcile_errors counter\n\
                    # TYPE wa_hub_push_latency_seconds histogram\nwa_hub_push_latency_seconds_sum 0.0\n\
                    # TYPE wa_session_connected gauge\nwa_session_connected 1\n# EOF\n";
        let n = exposed_names(page);
        for name in [
            "wa_operator_reconcile_errors_total",
            "wa_hub_push_latency_seconds_bucket",
            "wa_hub_push_latency_seconds_count",
            "wa_session_connected",
        ] {
            assert!(n.contains(name), "{name} in {n:?}");
        }
        assert!(!n.contains("wa_operator_reconcile_errors"));
    }
}
