//! The independent linters run on the rendered chart and on the operator's children
//! (tests/linters.rs): kube-score and kubeconform, built from their Go modules
//! (`tests/devcluster/control-plane/build.sh chart-tools`). Findings are compared with the
//! commented allow-list `tests/chart/lint-allow.yaml`: anything not accepted there fails.
//!
//! kubeconform validates against JSON schemas, which it normally downloads; here they are
//! written from the OpenAPI document of the devcluster's own API server (the Kubernetes version
//! the project runs), strict like kubeconform's `-strict` schemas (no unknown fields).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::{ChartError, run};

/// One finding of a linter on one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub tool: String,
    /// kube-score's check id; kubeconform's status (`invalid`, `error`).
    pub check: String,
    /// `Kind/name`.
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.tool, self.check, self.object, self.message
        )
    }
}

/// One accepted finding of `lint-allow.yaml`: `object` is a `Kind/name` pattern where `*`
/// matches any run of characters.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub tool: String,
    pub check: String,
    pub object: String,
}

/// Reads the allow-list (a YAML list of `{tool, check, object, why}`; `why` is required so
/// every acceptance says its reason).
pub fn allow_list(text: &str) -> Result<Vec<Allowed>, ChartError> {
    let entries: Vec<Value> =
        serde_saphyr::from_str(text).map_err(|e| ChartError::Yaml(e.to_string()))?;
    entries
        .iter()
        .map(|e| {
            let field = |k: &str| {
                e[k].as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(String::from)
                    .ok_or_else(|| ChartError::Yaml(format!("allow-list entry without {k}: {e}")))
            };
            field("why")?;
            Ok(Allowed {
                tool: field("tool")?,
                check: field("check")?,
                object: field("object")?,
            })
        })
        .collect()
}

/// `*` globbing (nothing else is special).
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

impl Allowed {
    pub fn accepts(&self, f: &Finding) -> bool {
        self.tool == f.tool && self.check == f.check && glob(&self.object, &f.object)
    }
}

/// The findings no allow-list entry accepts, and the entries that accepted nothing in any of
/// `all` (stale acceptances are errors too, so the list stays short and true).
pub fn unaccepted<'a>(findings: &'a [Finding], allowed: &[Allowed]) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| !allowed.iter().any(|a| a.accepts(f)))
        .collect()
}

pub fn unused<'a>(allowed: &'a [Allowed], all: &[Finding]) -> Vec<&'a Allowed> {
    allowed
        .iter()
        .filter(|a| !all.iter().any(|f| a.accepts(f)))
        .collect()
}

/// kube-score's JSON report (`score -o json`) as findings: every check neither OK (grade 10)
/// nor skipped.
pub fn kube_score_findings(report: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    for obj in report.as_array().into_iter().flatten() {
        let object = format!(
            "{}/{}",
            obj["type_meta"]["kind"].as_str().unwrap_or("?"),
            obj["object_meta"]["name"].as_str().unwrap_or("?")
        );
        for c in obj["checks"].as_array().into_iter().flatten() {
            if c["skipped"] == true || c["grade"].as_i64() == Some(10) {
                continue;
            }
            let comments: Vec<String> = c["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} {}",
                        m["path"].as_str().unwrap_or_default(),
                        m["summary"].as_str().unwrap_or_default()
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            out.push(Finding {
                tool: "kube-score".into(),
                check: c["check"]["id"].as_str().unwrap_or("?").into(),
                object: object.clone(),
                message: comments.join("; "),
            });
        }
    }
    out
}

/// Runs kube-score on a manifest file.
pub fn kube_score(bin: &Path, file: &Path, kube_version: &str) -> Result<Vec<Finding>, ChartError> {
    let minor: String = kube_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let args = vec![
        "score".into(),
        "-o".into(),
        "json".into(),
        "--kubernetes-version".into(),
        format!("v{minor}"),
        file.display().to_string(),
    ];
    // exits 1 when it has critical findings: the report says which
    let out = run(bin, &args, &[])?;
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| ChartError::Failed {
        program: bin.display().to_string(),
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: format!("{e}: {}", String::from_utf8_lossy(&out.stderr)),
    })?;
    Ok(kube_score_findings(&report))
}

/// Runs kubeconform (strict, schemas from `schema_dir`) on a manifest file; every resource not
/// `statusValid` is a finding, including a missing schema.
pub fn kubeconform(bin: &Path, schema_dir: &Path, file: &Path) -> Result<Vec<Finding>, ChartError> {
    let args = vec![
        "-strict".into(),
        "-output".into(),
        "json".into(),
        "-schema-location".into(),
        format!(
            "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            schema_dir.display()
        ),
        file.display().to_string(),
    ];
    let out = run(bin, &args, &[])?;
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| ChartError::Failed {
        program: bin.display().to_string(),
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: format!("{e}: {}", String::from_utf8_lossy(&out.stderr)),
    })?;
    Ok(report["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] != "statusValid")
        .map(|r| Finding {
            tool: "kubeconform".into(),
            check: r["status"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches("status")
                .to_lowercase(),
            object: format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            ),
            message: r["msg"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

/// kubeconform's file name suffix of an apiVersion: `-apps-v1`, `-v1`, `-networking-v1`.
pub fn kind_suffix(group: &str, version: &str) -> String {
    let first = group.split('.').next().unwrap_or_default().to_lowercase();
    if first.is_empty() {
        format!("-{version}")
    } else {
        format!("-{first}-{version}")
    }
}

/// Writes one JSON schema per kind of an OpenAPI v2 document into `dir`
/// (`{kind}{suffix}.json`, lowercase, kubeconform's default naming) and returns the names.
/// Each schema is the kind's definition plus the definitions it reaches, made strict.
pub fn write_schemas(openapi: &Value, dir: &Path) -> Result<BTreeSet<String>, ChartError> {
    let defs = openapi["definitions"]
        .as_object()
        .ok_or_else(|| ChartError::Yaml("OpenAPI document without definitions".into()))?;
    let strict: Map<String, Value> = defs
        .iter()
        .map(|(k, v)| (k.clone(), strictify(v, k)))
        .collect();
    let mut written = BTreeSet::new();
    for (name, def) in defs {
        let Some(gvks) = def["x-kubernetes-group-version-kind"].as_array() else {
            continue;
        };
        // kinds that are not objects of their own (e.g. DeleteOptions, listed under every
        // group) have several; a real kind has one
        let [gvk] = gvks.as_slice() else { continue };
        let (Some(kind), Some(version)) = (gvk["kind"].as_str(), gvk["version"].as_str()) else {
            continue;
        };
        let group = gvk["group"].as_str().unwrap_or_default();
        let mut reached = BTreeSet::new();
        collect_refs(&strict[name], &strict, &mut reached);
        let definitions: Map<String, Value> = reached
            .iter()
            .filter_map(|r| Some((r.clone(), strict.get(r)?.clone())))
            .collect();
        let mut schema = strict[name].clone();
        schema["definitions"] = Value::Object(definitions);
        let file = format!(
            "{}{}.json",
            kind.to_lowercase(),
            kind_suffix(group, version)
        );
        std::fs::write(dir.join(&file), schema.to_string()).map_err(|e| ChartError::Spawn {
            program: format!("write {file}"),
            source: e,
        })?;
        written.insert(file);
    }
    Ok(written)
}

fn collect_refs(v: &Value, defs: &Map<String, Value>, seen: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix("#/definitions/")
                && seen.insert(name.to_string())
                && let Some(d) = defs.get(name)
            {
                collect_refs(d, defs, seen);
            }
            m.values().for_each(|x| collect_refs(x, defs, seen));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, defs, seen)),
        _ => {}
    }
}

/// A definition made strict and JSON-Schema-correct: objects with a fixed set of fields refuse
/// others; int-or-string and quantities accept numbers (YAML's `port: 8080`, `cpu: 1`).
fn strictify(v: &Value, name: &str) -> Value {
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
        || name == "io.k8s.apimachinery.pkg.api.resource.Quantity"
    {
        return json!({"oneOf": [{"type": "string"}, {"type": "number"}]});
    }
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out: Map<String, Value> =
                    m.iter().map(|(k, x)| (k.clone(), walk(x))).collect();
                if out.get("format").and_then(Value::as_str) == Some("int-or-string") {
                    return json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
                }
                if out.contains_key("properties")
                    && !out.contains_key("additionalProperties")
                    && !out.contains_key("x-kubernetes-preserve-unknown-fields")
                {
                    out.insert("additionalProperties".into(), Value::Bool(false));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    walk(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            "Deployment/*-hub",
            "Deployment/wa-whatsapp-operator-hub"
        ));
        assert!(!glob("Deployment/*-hub", "Deployment/wa-hub-x"));
        assert!(glob("*", "anything"));
        assert!(glob("Pod/a", "Pod/a") && !glob("Pod/a", "Pod/ab"));
    }

    #[test]
    fn suffixes_follow_kubeconform() {
        assert_eq!(kind_suffix("apps", "v1"), "-apps-v1");
        assert_eq!(kind_suffix("", "v1"), "-v1");
        assert_eq!(kind_suffix("networking.k8s.io", "v1"), "-networking-v1");
    }

    #[test]
    fn kube_score_report_to_findings() {
        let report = json!([{"type_meta": {"kind": "Deployment"}, "object_meta": {"name": "hub"}, "checks": [
            {"check": {"id": "a"}, "grade": 10, "skipped": false},
            {"check": {"id": "b"}, "grade": 1, "skipped": false, "comments": [{"path": "hub", "summary": "bad"}]},
            {"check": {"id": "c"}, "grade": 1, "skipped": true}]}]);
        let f = kube_score_findings(&report);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].check.as_str(), f[0].object.as_str()),
            ("b", "Deployment/hub")
        );
        let allowed =
            allow_list("- {tool: kube-score, check: b, object: 'Deployment/*', why: x}").unwrap();
        assert!(unaccepted(&f, &allowed).is_empty());
        assert!(
            allow_list("- {tool: kube-score, check: b, object: x}").is_err(),
            "why is required"
        );
    }

    #[test]
    fn schemas_are_strict_and_reach_their_refs() {
        let openapi = json!({"definitions": {
            "io.k8s.api.core.v1.Thing": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Thing"}],
                "properties": {"port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}, "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.Spec"}}},
            "io.k8s.api.core.v1.Spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
            "io.k8s.api.core.v1.Unrelated": {"type": "object"}}});
        let dir = tempfile::tempdir().unwrap();
        let names = write_schemas(&openapi, dir.path()).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["thing-v1.json"]);
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("thing-v1.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(s["additionalProperties"], false);
        let defs = s["definitions"].as_object().unwrap();
        assert!(
            defs.contains_key("io.k8s.api.core.v1.Spec")
                && !defs.contains_key("io.k8s.api.core.v1.Unrelated")
        );
        assert!(defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"].is_array());
    }
}
