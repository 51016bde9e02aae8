//! Command line and environment configuration of `wa-operator`.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{Affinity, Toleration};

use crate::placement::{Json, parse_json};

/// The session agent image matching this operator release.
pub const DEFAULT_SESSION_IMAGE: &str =
    concat!("ghcr.io/leadmaster/wa-session:", env!("CARGO_PKG_VERSION"));

/// wa-operator: runs one WhatsApp Web session pod per WhatsAppSession resource.
///
/// Every flag can also be given by the environment variable shown in brackets.
#[derive(Parser, Debug, Clone)]
#[command(name = "wa-operator", version, about, long_about = None)]
pub struct Config {
    /// Container image of the session agent.
    #[arg(long, env = "WA_SESSION_IMAGE", default_value = DEFAULT_SESSION_IMAGE)]
    pub session_image: String,

    /// imagePullPolicy of the session container (Always, IfNotPresent, Never); unset = Kubernetes default.
    #[arg(long, env = "WA_SESSION_IMAGE_PULL_POLICY")]
    pub session_image_pull_policy: Option<String>,

    /// WhatsApp Web URL passed to every session agent as WA_URL.
    #[arg(long, env = "WA_URL", default_value = "https://web.whatsapp.com/")]
    pub whatsapp_url: String,

    /// The only caller of the session agents' message API, as the API server names it
    /// (`system:serviceaccount:<namespace>:<name>` of the hub), passed to every agent as
    /// `WA_MESSAGES_CALLER`. Unset: the agents refuse every caller.
    #[arg(long, env = "WA_MESSAGES_CALLER")]
    pub messages_caller: Option<String>,

    /// The audience of the token the hub presents to the agents (`WA_MESSAGES_AUDIENCE`).
    #[arg(
        long,
        env = "WA_MESSAGES_AUDIENCE",
        default_value = "whatsapp.leadmaster.io/messages"
    )]
    pub messages_audience: String,

    /// Namespace to watch; empty or unset = all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the HTTP server with /metrics and /healthz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// StorageClass for session PVCs whose spec.storage has none; unset = the cluster default.
    #[arg(long, env = "WA_DEFAULT_STORAGE_CLASS")]
    pub default_storage_class: Option<String>,

    /// Default CPU request of a session container (when spec.resources is unset).
    #[arg(long, env = "WA_DEFAULT_CPU_REQUEST", default_value = "100m")]
    pub default_cpu_request: String,

    /// Default CPU limit of a session container; empty = none.
    #[arg(long, env = "WA_DEFAULT_CPU_LIMIT", default_value = "1")]
    pub default_cpu_limit: String,

    /// Default memory request of a session container.
    #[arg(long, env = "WA_DEFAULT_MEMORY_REQUEST", default_value = "256Mi")]
    pub default_memory_request: String,

    /// Default memory limit of a session container; empty = none.
    #[arg(long, env = "WA_DEFAULT_MEMORY_LIMIT", default_value = "1Gi")]
    pub default_memory_limit: String,

    /// How long deletion under deletionPolicy Logout waits for the agent to confirm the logout
    /// (status.handled.logoutRequestedAt) before deleting the data anyway, e.g. 60s, 2m.
    #[arg(long, env = "WA_LOGOUT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub logout_timeout: Duration,

    /// ConfigMap (in the session's namespace) with page-driver overrides, mounted read-only at
    /// /etc/wa-driver and passed to agents as WA_DRIVER_DIR. Unset = none.
    #[arg(long, env = "WA_DRIVER_CONFIGMAP")]
    pub driver_configmap: Option<String>,

    /// Run only while holding the Lease (safe with several replicas). `--leader-election=false` disables it.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease; defaults to POD_NAMESPACE, then the kubeconfig's namespace.
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "whatsapp-operator")]
    pub lease_name: String,

    /// Seconds a Lease stays valid without renewal (how long a failover can take).
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Identity in the Lease; defaults to POD_NAME, then the hostname.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// UID of the operator's own Pod (downward API `metadata.uid`). With POD_NAME it makes the
    /// Pod the owner of the Lease while this replica holds it, so the garbage collector removes
    /// the Lease with the Pod even when the operator cannot (`helm uninstall` deletes the RBAC
    /// before the Pod gets SIGTERM; SIGKILL).
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,

    /// nodeSelector of every session pod, a JSON object (`{"disktype":"ssd"}`); empty = none.
    #[arg(long, env = "WA_SESSION_NODE_SELECTOR", value_parser = parse_json::<BTreeMap<String, String>>)]
    pub session_node_selector: Option<Json<BTreeMap<String, String>>>,

    /// Tolerations of every session pod, a JSON array of core/v1 Toleration; empty = none.
    #[arg(long, env = "WA_SESSION_TOLERATIONS", value_parser = parse_json::<Vec<Toleration>>)]
    pub session_tolerations: Option<Json<Vec<Toleration>>>,

    /// Affinity of every session pod, a JSON core/v1 Affinity; empty = none.
    #[arg(long, env = "WA_SESSION_AFFINITY", value_parser = parse_json::<Affinity>)]
    pub session_affinity: Option<Json<Affinity>>,

    /// priorityClassName of every session pod; empty = the cluster default.
    #[arg(long, env = "WA_SESSION_PRIORITY_CLASS")]
    pub session_priority_class: Option<String>,

    /// Image pull Secrets of every session pod, comma-separated names; each must exist in the
    /// session's namespace. Session pods run under a ServiceAccount of their own, so the
    /// namespace default ServiceAccount's pull secrets do not reach them.
    #[arg(long, env = "WA_SESSION_IMAGE_PULL_SECRETS")]
    pub session_image_pull_secrets: Option<String>,

    /// Maximum number of sessions reconciled at the same time (0 = unlimited).
    #[arg(long, env = "WA_RECONCILE_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

impl Config {
    /// The watched namespace, `None` meaning all namespaces.
    pub fn watch_namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let timeout = |t: &str| {
            Config::try_parse_from(["wa-operator", &format!("--logout-timeout={t}")])
                .map(|c| c.logout_timeout)
        };
        assert_eq!(timeout("60s").ok(), Some(Duration::from_secs(60)));
        assert_eq!(timeout("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(timeout("500ms").ok(), Some(Duration::from_millis(500)));
        assert!(timeout("5x").is_err());
        assert!(timeout("s").is_err());
        // humantime, like kubectl's Go durations: a number needs its unit.
        assert!(timeout("60").is_err());
    }

    #[test]
    fn defaults_follow_design() {
        let cfg = Config::try_parse_from(["wa-operator"]).expect("defaults parse");
        assert_eq!(cfg.whatsapp_url, "https://web.whatsapp.com/");
        assert!(
            cfg.session_image
                .starts_with("ghcr.io/leadmaster/wa-session:")
        );
        assert_eq!(cfg.watch_namespace(), None);
        assert!(cfg.leader_election);
        let cfg =
            Config::try_parse_from(["wa-operator", "--leader-election=false", "--namespace", "x"])
                .expect("parse");
        assert!(!cfg.leader_election);
        assert_eq!(cfg.watch_namespace(), Some("x"));
    }

    #[test]
    fn session_placement_flags_parse() {
        let cfg = Config::try_parse_from([
            "wa-operator",
            r#"--session-node-selector={"pool":"wa"}"#,
            r#"--session-tolerations=[{"key":"wa","operator":"Exists"}]"#,
            "--session-affinity=",
            "--session-priority-class=wa-sessions",
            "--session-image-pull-secrets=regcred",
        ])
        .expect("parse");
        assert_eq!(cfg.session_node_selector.expect("selector").0["pool"], "wa");
        assert_eq!(cfg.session_tolerations.expect("tolerations").0.len(), 1);
        assert_eq!(cfg.session_affinity, Some(Json(Affinity::default())));
        assert!(
            Config::try_parse_from(["wa-operator", "--session-tolerations={not json"]).is_err()
        );
    }
}
