//! A container's environment: `KUBERNETES_SERVICE_HOST/PORT`, `envFrom`, `env` with
//! `valueFrom` (fieldRef, secretKeyRef, configMapKeyRef) and `$(VAR)` references.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

use super::NodeError;
use super::volumes::field_ref;

/// Where the API server is, as pods see it.
pub struct ApiEndpoint {
    pub host: String,
    pub port: u16,
}

fn config_error(message: String) -> NodeError {
    NodeError::Command { command: "container environment".into(), message }
}

async fn secret(client: &kube::Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, NodeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s| {
        s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect()
    }))
}

async fn config_map(client: &kube::Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, NodeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|c| c.data.unwrap_or_default()))
}

/// Expands `$(VAR)` from variables defined earlier; `$$(VAR)` escapes to `$(VAR)`.
pub fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn set(vars: &mut Vec<(String, String)>, k: String, v: String) {
    vars.retain(|(n, _)| *n != k);
    vars.push((k, v));
}

/// Builds the environment of `c` in pod `pod`.
pub async fn build(client: &kube::Client, pod: &Pod, c: &Container, api: &ApiEndpoint, pod_ip: &str, host_ip: &str, home: &str) -> Result<Vec<(String, String)>, NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOSTNAME".into(), pod.metadata.name.clone().unwrap_or_default()),
        ("HOME".into(), home.to_string()),
        ("KUBERNETES_SERVICE_HOST".into(), api.host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), api.port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), api.port.to_string()),
        ("KUBERNETES_PORT".into(), format!("tcp://{}:{}", api.host, api.port)),
    ];
    for from in c.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            match secret(client, ns, &s.name).await? {
                Some(d) => d,
                None if s.optional.unwrap_or(false) => BTreeMap::new(),
                None => return Err(config_error(format!("secret {:?} not found", s.name))),
            }
        } else if let Some(cm) = &from.config_map_ref {
            match config_map(client, ns, &cm.name).await? {
                Some(d) => d,
                None if cm.optional.unwrap_or(false) => BTreeMap::new(),
                None => return Err(config_error(format!("configmap {:?} not found", cm.name))),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            set(&mut vars, format!("{prefix}{k}"), v);
        }
    }
    for e in c.env.as_deref().unwrap_or_default() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_ref(pod, &f.field_path, Some(pod_ip), host_ip)
                    .ok_or_else(|| config_error(format!("env {}: unsupported fieldRef {:?}", e.name, f.field_path)))?
            } else if let Some(s) = &from.secret_key_ref {
                let optional = s.optional.unwrap_or(false);
                match secret(client, ns, &s.name).await?.and_then(|d| d.get(&s.key).cloned()) {
                    Some(v) => v,
                    None if optional => continue,
                    None => return Err(config_error(format!("env {}: secret {:?} key {:?} not found", e.name, s.name, s.key))),
                }
            } else if let Some(cm) = &from.config_map_key_ref {
                let optional = cm.optional.unwrap_or(false);
                match config_map(client, ns, &cm.name).await?.and_then(|d| d.get(&cm.key).cloned()) {
                    Some(v) => v,
                    None if optional => continue,
                    None => return Err(config_error(format!("env {}: configmap {:?} key {:?} not found", e.name, cm.name, cm.key))),
                }
            } else {
                // resourceFieldRef: no resource accounting on devcluster.
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or_default(), &vars)
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references() {
        let vars = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("a$b", &vars), "a$b");
    }
}
