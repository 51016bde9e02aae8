//! Hand-written OpenAPI schemas for the two fields whose Rust types come from k8s-openapi, whose
//! generated schemas say too little (`Condition` has none of the validations upstream CRDs get
//! from `metav1.Condition`'s markers) or too much (`ResourceRequirements` documents `claims`,
//! which a session pod cannot use, and repeats a page of `Quantity` internals twice).
use kube::core::Rule;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

use crate::rules;

/// Kubernetes' quantity grammar (`resource.Quantity`), as controller-gen emits it for
/// int-or-string quantities: a typo such as `1 Gi` is refused at admission instead of failing
/// every StatefulSet apply later.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

fn schema(value: Value) -> Schema {
    match value {
        Value::Object(map) => Schema::from(map),
        // Only called with object literals below.
        _ => Schema::default(),
    }
}

/// A CEL rule as the schema's `x-kubernetes-validations` entry.
fn rule(r: Rule) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// A requests or limits map: only the resource names a session container uses, each value a
/// non-negative quantity within its bound (crate::rules), and for limits a memory limit
/// Chromium can start in.
fn quantities(what: &str, limits: bool) -> Value {
    let mut rules = vec![
        rule(rules::resource_names()),
        rule(rules::resources_not_negative()),
    ];
    rules.extend(rules::resources_at_most().into_iter().map(rule));
    if limits {
        rules.push(rule(rules::memory_limit_at_least()));
    }
    json!({
        "type": "object",
        "description": what,
        "maxProperties": rules::RESOURCE_LIMITS.len(),
        "additionalProperties": {
            "description": "A Kubernetes quantity, e.g. 500m (CPU) or 512Mi (memory).",
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "x-kubernetes-int-or-string": true,
        },
        "x-kubernetes-validations": rules,
    })
}

/// `spec.resources`: requests and limits of the session container. `claims` stays in the schema
/// (an unknown field would be silently pruned) only to be refused with a message: a claim names
/// an entry of the pod's `resourceClaims`, which the operator never sets, so the StatefulSet
/// would be rejected on every reconcile.
pub fn resources(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "nullable": true,
        "description": "CPU and memory of the session container (Chromium and the agent). Unset: the operator's defaults (flags --default-cpu-request, --default-memory-request, --default-cpu-limit, --default-memory-limit). Set: replaces the defaults entirely.",
        "properties": {
            "requests": quantities("Minimum resources the scheduler reserves for the session container, by resource name: cpu (at most 32), memory (at most 64Gi), ephemeral-storage (at most 100Gi); none negative, none above its limit. Defaults to limits when only limits are set.", false),
            "limits": quantities("Maximum resources of the session container, by resource name: cpu (at most 32), memory (128Mi to 64Gi), ephemeral-storage (at most 100Gi). Past the memory limit the container is OOM-killed and restarted, and restores its login from the volume without a QR.", true),
            "claims": {
                "type": "array",
                "description": "Not supported: session pods use no dynamic resource allocation (DRA) claims. Always refused.",
                "items": {
                    "type": "object",
                    "description": "A DRA claim reference (refused).",
                    "x-kubernetes-preserve-unknown-fields": true,
                },
            },
        },
        "x-kubernetes-validations": std::iter::once(json!({
            "rule": "!has(self.claims)",
            "message": "resources.claims is not supported: session pods have no resourceClaims (dynamic resource allocation); use requests and limits only",
        }))
        .chain(rules::requests_within_limits().into_iter().map(rule))
        .collect::<Vec<_>>(),
    }))
}

/// `status.conditions`: `metav1.Condition` with the validations upstream types get from its
/// kubebuilder markers (type/reason patterns and lengths, status enum), so a writer's typo is
/// refused instead of confusing `kubectl wait --for=condition=...`.
pub fn conditions(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "array",
        "description": "Ready (the session pod is ready; operator), Progressing (the pod is being created or replaced; operator) and Authenticated (a WhatsApp account is linked; agent). One entry per type.",
        "maxItems": 16,
        "items": {
            "type": "object",
            "description": "One aspect of the session's state (metav1.Condition).",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "type": {
                    "type": "string",
                    "description": "Ready, Progressing or Authenticated (CamelCase, optionally prefixed by a DNS subdomain and '/').",
                    "maxLength": 316,
                    "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
                },
                "status": {
                    "type": "string",
                    "description": "True, False or Unknown.",
                    "enum": ["True", "False", "Unknown"],
                },
                "reason": {
                    "type": "string",
                    "description": "Why the condition has its status, as a CamelCase identifier (e.g. PodReady, Stopped, Linked, AgentStopped).",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                },
                "message": {
                    "type": "string",
                    "description": "Human-readable details (may be empty).",
                    "maxLength": 32768,
                },
                "lastTransitionTime": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When status last changed (rewriting the same status keeps it).",
                    "x-kubernetes-validations": [rule(rules::time_before_limit())],
                },
                "observedGeneration": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0,
                    "description": "The metadata.generation the condition was computed from.",
                },
            },
        },
    }))
}
