//! Where session pods run and what they pull with: nodeSelector, tolerations, affinity, priority
//! class and image pull secrets, configured once on the operator (flags or environment, which the
//! Helm chart sets from its `session.*` values).
//!
//! They cannot come from the namespace: a session pod runs under the ServiceAccount the operator
//! creates for it, so the pull secrets of the namespace's `default` ServiceAccount never apply,
//! and nothing else in Kubernetes gives pods of a namespace a node, a priority or a toleration.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, PodSpec, Toleration};
use serde::de::DeserializeOwned;

/// The pod-level placement of every session pod. Empty fields leave the pod spec's defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub affinity: Option<Affinity>,
    pub priority_class_name: Option<String>,
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// A flag holding JSON (`--session-tolerations='[{"key":"k","operator":"Exists"}]'`). A newtype,
/// because clap reads a bare `Vec` field as a repeated flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Json<T>(pub T);

/// clap's value parser for [`Json`]: an empty value (what the chart passes for an unset value)
/// is `T::default()`.
pub fn parse_json<T: DeserializeOwned + Default>(text: &str) -> Result<Json<T>, String> {
    if text.trim().is_empty() {
        return Ok(Json(T::default()));
    }
    serde_json::from_str(text)
        .map(Json)
        .map_err(|e| format!("not valid JSON for this flag: {e}"))
}

/// `a,b` → the names, blanks dropped.
pub fn pull_secret_names(text: &str) -> Vec<LocalObjectReference> {
    text.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| LocalObjectReference { name: n.into() })
        .collect()
}

impl Placement {
    /// Sets this placement on `pod`. Empty values are left unset (not empty lists), so the
    /// pod spec the operator applies stays the same as before for an operator without them.
    pub fn apply(&self, pod: &mut PodSpec) {
        pod.node_selector = self.node_selector.clone().filter(|m| !m.is_empty());
        pod.tolerations = self.tolerations.clone().filter(|t| !t.is_empty());
        pod.affinity = self.affinity.clone().filter(|a| a != &Affinity::default());
        pod.priority_class_name = self.priority_class_name.clone().filter(|p| !p.is_empty());
        pod.image_pull_secrets = self.image_pull_secrets.clone().filter(|s| !s.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flags_parse_and_empty_means_unset() {
        let t: Json<Vec<Toleration>> = parse_json(
            r#"[{"key":"dedicated","operator":"Equal","value":"wa","effect":"NoSchedule"}]"#,
        )
        .expect("tolerations");
        assert_eq!(t.0[0].key.as_deref(), Some("dedicated"));
        assert_eq!(t.0[0].effect.as_deref(), Some("NoSchedule"));
        let empty: Json<Vec<Toleration>> = parse_json("").expect("empty");
        assert!(empty.0.is_empty());
        let err = parse_json::<BTreeMap<String, String>>("{disktype: ssd}").unwrap_err();
        assert!(err.contains("JSON"), "{err}");
    }

    #[test]
    fn pull_secrets_are_a_comma_list() {
        let names: Vec<String> = pull_secret_names(" regcred, ,other ")
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["regcred", "other"]);
        assert!(pull_secret_names("").is_empty());
    }

    #[test]
    fn empty_placement_leaves_the_pod_spec_alone() {
        let mut pod = PodSpec::default();
        Placement {
            node_selector: Some(BTreeMap::new()),
            tolerations: Some(vec![]),
            affinity: Some(Affinity::default()),
            priority_class_name: Some(String::new()),
            image_pull_secrets: Some(vec![]),
        }
        .apply(&mut pod);
        assert_eq!(pod, PodSpec::default());
    }
}
