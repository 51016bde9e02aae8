//! Builders of the objects a session owns. Pure functions of the CR and the operator settings,
//! so the same inputs always give the same objects: re-applying them with server-side apply is
//! a no-op on the API server (no new resourceVersion, no watch event, no reconcile loop).
use std::collections::BTreeMap;

use crds::{DesiredState, WhatsAppSession, labels};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, ServiceAccount,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::placement::{Placement, pull_secret_names};

/// Where the PVC is mounted in the session container.
pub const DATA_DIR: &str = "/data";
/// Where the optional page-driver ConfigMap is mounted.
pub const DRIVER_DIR: &str = "/etc/wa-driver";
/// The session container's HTTP port (probes and the agent's `/metrics`).
pub const HTTP_PORT: i32 = 8080;
/// Its name: `metrics`, like the operator's and the hub's metrics ports, so one PodMonitor
/// port name and one NetworkPolicy port fit all three.
pub const HTTP_PORT_NAME: &str = "metrics";
/// The agent's message API (only the hub calls it), apart from the probes and `/metrics` so a
/// NetworkPolicy or a scrape config can tell them apart.
pub const MESSAGES_PORT: i32 = 8081;
pub const MESSAGES_PORT_NAME: &str = "messages";
/// Uid/gid the session agent runs as.
pub const SESSION_UID: i64 = 1000;
/// Chromium flushes its profile (cookies, IndexedDB with the login) on SIGTERM; give it time.
pub const TERMINATION_GRACE_SECONDS: i64 = 45;
/// Default PVC size when `spec.storage.size` is unset.
pub const DEFAULT_STORAGE_SIZE: &str = "1Gi";
/// The session agent's container in the session pod.
pub const CONTAINER_NAME: &str = "session";

/// What the builders need from the operator's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub whatsapp_url: String,
    pub default_storage_class: Option<String>,
    pub default_resources: ResourceRequirements,
    pub driver_configmap: Option<String>,
    /// nodeSelector, tolerations, affinity, priority class and pull secrets of session pods.
    pub placement: Placement,
    /// Who may call the agents' message API, and the audience of its token.
    pub messages_caller: Option<String>,
    pub messages_audience: String,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Self {
        let quantities = |pairs: [(&str, &str); 2]| {
            let map: BTreeMap<String, Quantity> = pairs
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        Settings {
            image: cfg.session_image.clone(),
            image_pull_policy: cfg
                .session_image_pull_policy
                .clone()
                .filter(|p| !p.is_empty()),
            whatsapp_url: cfg.whatsapp_url.clone(),
            default_storage_class: cfg.default_storage_class.clone().filter(|c| !c.is_empty()),
            default_resources: ResourceRequirements {
                requests: quantities([
                    ("cpu", &cfg.default_cpu_request),
                    ("memory", &cfg.default_memory_request),
                ]),
                limits: quantities([
                    ("cpu", &cfg.default_cpu_limit),
                    ("memory", &cfg.default_memory_limit),
                ]),
                ..Default::default()
            },
            driver_configmap: cfg.driver_configmap.clone().filter(|c| !c.is_empty()),
            placement: Placement {
                node_selector: cfg.session_node_selector.clone().map(|j| j.0),
                tolerations: cfg.session_tolerations.clone().map(|j| j.0),
                affinity: cfg.session_affinity.clone().map(|j| j.0),
                priority_class_name: cfg.session_priority_class.clone(),
                image_pull_secrets: cfg
                    .session_image_pull_secrets
                    .as_deref()
                    .map(pull_secret_names),
            },
            messages_caller: cfg.messages_caller.clone().filter(|c| !c.is_empty()),
            messages_audience: cfg.messages_audience.clone(),
        }
    }
}

/// Names of a session's children.
pub fn object_name(session: &str) -> String {
    format!("wa-{session}")
}
pub fn pvc_name(session: &str) -> String {
    format!("wa-{session}-data")
}
/// The only pod a session's StatefulSet can have.
pub fn pod_name(session: &str) -> String {
    format!("wa-{session}-0")
}

/// The labels put on every child (docs/design.md §2).
pub fn child_labels(session: &WhatsAppSession) -> BTreeMap<String, String> {
    let mut l = selector_labels(session);
    l.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    l.insert(labels::TENANT.into(), session.spec.tenant.clone());
    l
}

/// The subset used as the StatefulSet selector (immutable, so it must not include anything that
/// could ever change).
pub fn selector_labels(session: &WhatsAppSession) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), labels::NAME_VALUE.to_string()),
        (labels::INSTANCE.to_string(), session.name_any()),
    ])
}

fn owner_ref(session: &WhatsAppSession) -> Result<OwnerReference> {
    // controller: true is what makes `.owns()` map child events back to the session and lets
    // the garbage collector delete the children with it. blockOwnerDeletion: a foreground
    // deletion of the session (`kubectl delete --cascade=foreground`) waits until its pod is
    // gone, so nothing still runs the session once the CR is gone; setting it needs `update`
    // on whatsappsessions/finalizers where OwnerReferencesPermissionEnforcement runs, which
    // the chart's operator role grants.
    let owner = session
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner
    })
}

fn meta(session: &WhatsAppSession, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: session.namespace(),
        labels: Some(child_labels(session)),
        owner_references: Some(vec![owner_ref(session)?]),
        ..Default::default()
    })
}

pub fn service_account(session: &WhatsAppSession) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        metadata: meta(session, object_name(&session.name_any()))?,
        // Off by default: only the session pod, which opts in explicitly, gets a (projected,
        // audience-bound, expiring) token for this account.
        automount_service_account_token: Some(false),
        ..Default::default()
    })
}

pub fn role(session: &WhatsAppSession) -> Result<Role> {
    let name = session.name_any();
    let rule = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![WhatsAppSession::group(&()).into_owned()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: Some(vec![name.clone()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    let plural = WhatsAppSession::plural(&()).into_owned();
    Ok(Role {
        metadata: meta(session, object_name(&name))?,
        // Least privilege: its own CR only (list/watch need a metadata.name field selector to
        // pass the resourceNames check), and patch of its own status — never spec, never
        // another session, nothing else in the namespace.
        rules: Some(vec![
            rule(&plural, &["get", "list", "watch"]),
            rule(&format!("{plural}/status"), &["get", "patch"]),
        ]),
    })
}

pub fn role_binding(session: &WhatsAppSession) -> Result<RoleBinding> {
    let name = object_name(&session.name_any());
    Ok(RoleBinding {
        metadata: meta(session, name.clone())?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: session.namespace(),
            ..Default::default()
        }]),
    })
}

pub fn pvc(session: &WhatsAppSession, settings: &Settings) -> Result<PersistentVolumeClaim> {
    let storage = session.spec.storage.clone().unwrap_or_default();
    let size = storage
        .size
        .unwrap_or_else(|| DEFAULT_STORAGE_SIZE.to_string());
    Ok(PersistentVolumeClaim {
        metadata: meta(session, pvc_name(&session.name_any()))?,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage
                .storage_class_name
                .or_else(|| settings.default_storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The session agent's environment (docs/design.md §6), plus the proxy settings:
/// `WA_PROXY_URL`, and `WA_PROXY_USERNAME`/`WA_PROXY_PASSWORD` read from the credentials Secret
/// (keys `username`, `password`) so the secret never appears in the pod spec or the CR.
pub fn session_env(session: &WhatsAppSession, settings: &Settings) -> Vec<EnvVar> {
    let mut vars = vec![
        env("WA_SESSION_NAME", session.name_any()),
        env_from_field("WA_SESSION_NAMESPACE", "metadata.namespace"),
        env("WA_URL", settings.whatsapp_url.clone()),
        env("WA_DATA_DIR", DATA_DIR),
        env("WA_MESSAGES_ADDR", format!("0.0.0.0:{MESSAGES_PORT}")),
        env("WA_MESSAGES_AUDIENCE", settings.messages_audience.clone()),
        // The root filesystem is read-only; Chromium and friends write caches under $HOME.
        env("HOME", "/tmp"),
    ];
    if let Some(caller) = &settings.messages_caller {
        vars.push(env("WA_MESSAGES_CALLER", caller.clone()));
    }
    if settings.driver_configmap.is_some() {
        vars.push(env("WA_DRIVER_DIR", DRIVER_DIR));
    }
    if let Some(proxy) = &session.spec.proxy {
        vars.push(env("WA_PROXY_URL", proxy.url.clone()));
        if let Some(secret) = &proxy.credentials_secret_ref {
            vars.push(env_from_secret(
                "WA_PROXY_USERNAME",
                &secret.name,
                "username",
            ));
            vars.push(env_from_secret(
                "WA_PROXY_PASSWORD",
                &secret.name,
                "password",
            ));
        }
    }
    vars
}

fn http_probe(path: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String(HTTP_PORT_NAME.into()),
        ..Default::default()
    }
}

fn quantity(text: &str) -> Quantity {
    Quantity(text.to_string())
}

pub fn statefulset(session: &WhatsAppSession, settings: &Settings) -> Result<StatefulSet> {
    let name = session.name_any();
    let replicas = match session.spec.desired_state {
        DesiredState::Running => 1,
        DesiredState::Stopped => 0,
    };
    let mut volumes = vec![
        Volume {
            name: "data".into(),
            // The standalone PVC (not a volumeClaimTemplate) so that deletionPolicy, not the
            // StatefulSet, decides what happens to the saved login.
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc_name(&name),
                read_only: None,
            }),
            ..Default::default()
        },
        Volume {
            // Chromium's shared memory; the container default (64Mi) makes tabs crash.
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(quantity("256Mi")),
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(quantity("512Mi")),
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "dshm".into(),
            mount_path: "/dev/shm".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    if let Some(cm) = &settings.driver_configmap {
        volumes.push(Volume {
            name: "driver".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "driver".into(),
            mount_path: DRIVER_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        env: Some(session_env(session, settings)),
        ports: Some(vec![
            ContainerPort {
                name: Some(HTTP_PORT_NAME.into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(MESSAGES_PORT_NAME.into()),
                container_port: MESSAGES_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(http_probe("/readyz")),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        // Generous: a busy Chromium can stall for a while, and a restart costs a WhatsApp
        // reconnect, so only a hung agent (2+ minutes) is killed.
        liveness_probe: Some(Probe {
            http_get: Some(http_probe("/livez")),
            initial_delay_seconds: Some(30),
            period_seconds: Some(20),
            timeout_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        resources: Some(
            session
                .spec
                .resources
                .clone()
                .unwrap_or_else(|| settings.default_resources.clone()),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let pod_labels = child_labels(session);
    let mut pod_spec = PodSpec {
        service_account_name: Some(object_name(&name)),
        // The account has automount off; this pod opts in and gets the projected,
        // bound token it needs to patch its own status.
        automount_service_account_token: Some(true),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SESSION_UID),
            run_as_group: Some(SESSION_UID),
            fs_group: Some(SESSION_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    };
    settings.placement.apply(&mut pod_spec);
    Ok(StatefulSet {
        metadata: meta(session, object_name(&name))?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            // Never two pods on one profile: a StatefulSet pod has a fixed identity (`wa-<name>-0`)
            // and the controller creates its replacement only after the old pod object is gone
            // (terminated, not just terminating), and with OrderedReady it never runs pods in
            // parallel; a Deployment, by contrast, surges a new pod while the old one still runs.
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(session)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SessionFixture;
    use crds::{ProxySpec, SecretRef, StorageSpec};

    fn settings() -> Settings {
        use clap::Parser;
        Settings::from_config(
            &Config::try_parse_from(["wa-operator", "--session-image", "img:1"]).expect("cfg"),
        )
    }

    fn session(name: &str) -> WhatsAppSession {
        WhatsAppSession::test(name)
    }

    fn assert_child_meta(meta: &ObjectMeta) {
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels[labels::NAME], "whatsapp-session");
        assert_eq!(labels[labels::INSTANCE], "s1");
        assert_eq!(labels[labels::MANAGED_BY], "whatsapp-operator");
        assert_eq!(labels[labels::TENANT], "acme");
        let owners = meta.owner_references.as_ref().expect("owners");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].controller, Some(true));
        // a foreground deletion of the session waits for its children (see owner_ref)
        assert_eq!(owners[0].block_owner_deletion, Some(true));
        assert_eq!(owners[0].kind, "WhatsAppSession");
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(meta.namespace.as_deref(), Some("ns1"));
    }

    #[test]
    fn every_child_has_labels_and_controller_owner() {
        let s = session("s1");
        let st = settings();
        assert_child_meta(&service_account(&s).unwrap().metadata);
        assert_child_meta(&role(&s).unwrap().metadata);
        assert_child_meta(&role_binding(&s).unwrap().metadata);
        assert_child_meta(&pvc(&s, &st).unwrap().metadata);
        assert_child_meta(&statefulset(&s, &st).unwrap().metadata);
    }

    #[test]
    fn children_need_a_uid() {
        let s = session("s1").without_uid();
        assert!(matches!(role(&s), Err(Error::MissingField(_))));
    }

    #[test]
    fn role_is_limited_to_own_session() {
        let r = role(&session("s1")).unwrap();
        let rules = r.rules.unwrap();
        assert_eq!(rules.len(), 2);
        for rule in &rules {
            assert_eq!(
                rule.resource_names.as_deref(),
                Some(&["s1".to_string()][..])
            );
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&["whatsapp.leadmaster.io".to_string()][..])
            );
            assert!(
                !rule
                    .verbs
                    .iter()
                    .any(|v| v == "*" || v == "update" || v == "delete")
            );
        }
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["whatsappsessions".to_string()][..])
        );
        assert_eq!(
            rules[1].resources.as_deref(),
            Some(&["whatsappsessions/status".to_string()][..])
        );
        assert_eq!(rules[1].verbs, ["get", "patch"]);
        let rb = role_binding(&session("s1")).unwrap();
        assert_eq!(rb.role_ref.name, "wa-s1");
        assert_eq!(rb.subjects.unwrap()[0].name, "wa-s1");
        assert_eq!(
            service_account(&session("s1"))
                .unwrap()
                .automount_service_account_token,
            Some(false)
        );
    }

    #[test]
    fn pvc_uses_spec_then_defaults() {
        let s = session("s1");
        let mut st = settings();
        let p = pvc(&s, &st).unwrap().spec.unwrap();
        assert_eq!(
            p.resources.unwrap().requests.unwrap()["storage"],
            quantity("1Gi")
        );
        assert_eq!(p.storage_class_name, None);
        st.default_storage_class = Some("fast".into());
        assert_eq!(
            pvc(&s, &st)
                .unwrap()
                .spec
                .unwrap()
                .storage_class_name
                .as_deref(),
            Some("fast")
        );
        let mut s2 = session("s1");
        s2.spec.storage = Some(StorageSpec {
            size: Some("5Gi".into()),
            storage_class_name: Some("slow".into()),
        });
        let p = pvc(&s2, &st).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("wa-s1-data"));
        let p = p.spec.unwrap();
        assert_eq!(p.storage_class_name.as_deref(), Some("slow"));
        assert_eq!(
            p.resources.unwrap().requests.unwrap()["storage"],
            quantity("5Gi")
        );
    }

    #[test]
    fn statefulset_runs_one_hardened_pod_on_the_pvc() {
        let s = session("s1");
        let sts = statefulset(&s, &settings()).unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("wa-s1"));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        assert!(spec.volume_claim_templates.is_none());
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("wa-s1"));
        assert!(pod.termination_grace_period_seconds.unwrap() >= 30);
        let psc = pod.security_context.unwrap();
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (Some(1000), Some(1000), Some(1000))
        );
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        let csc = c.security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/livez")
        );
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        // the message API has its own port, not the probes' and /metrics'
        assert_eq!(ports, [(Some("metrics"), 8080), (Some("messages"), 8081)]);
        let mounts = c.volume_mounts.as_ref().unwrap();
        let data = mounts.iter().find(|m| m.mount_path == "/data").unwrap();
        let vols = pod.volumes.unwrap();
        let data_vol = vols.iter().find(|v| v.name == data.name).unwrap();
        assert_eq!(
            data_vol
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "wa-s1-data"
        );
        let shm = mounts.iter().find(|m| m.mount_path == "/dev/shm").unwrap();
        let shm_vol = vols
            .iter()
            .find(|v| v.name == shm.name)
            .unwrap()
            .empty_dir
            .clone()
            .unwrap();
        assert_eq!(shm_vol.medium.as_deref(), Some("Memory"));
        let env: BTreeMap<_, _> = c
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        assert_eq!(env["WA_SESSION_NAME"].value.as_deref(), Some("s1"));
        assert_eq!(
            env["WA_URL"].value.as_deref(),
            Some("https://web.whatsapp.com/")
        );
        assert_eq!(env["WA_DATA_DIR"].value.as_deref(), Some("/data"));
        assert!(env["WA_SESSION_NAMESPACE"].value_from.is_some());
        assert!(!env.contains_key("WA_DRIVER_DIR"));
        assert_eq!(
            env["WA_MESSAGES_ADDR"].value.as_deref(),
            Some("0.0.0.0:8081")
        );
        assert_eq!(
            env["WA_MESSAGES_AUDIENCE"].value.as_deref(),
            Some("whatsapp.leadmaster.io/messages")
        );
        // no hub named: the agent refuses every caller
        assert!(!env.contains_key("WA_MESSAGES_CALLER"));
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["memory"],
            quantity("256Mi")
        );
    }

    #[test]
    fn stopped_means_zero_replicas() {
        let s = session("s1").stopped();
        assert_eq!(
            statefulset(&s, &settings()).unwrap().spec.unwrap().replicas,
            Some(0)
        );
    }

    #[test]
    fn proxy_credentials_come_from_the_secret() {
        let mut s = session("s1");
        s.spec.proxy = Some(ProxySpec {
            url: "http://proxy:3128".into(),
            credentials_secret_ref: Some(SecretRef {
                name: "creds".into(),
            }),
        });
        let env = session_env(&s, &settings());
        let user = env.iter().find(|e| e.name == "WA_PROXY_USERNAME").unwrap();
        assert!(user.value.is_none());
        let sel = user
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("creds", "username"));
        assert!(
            env.iter().any(
                |e| e.name == "WA_PROXY_URL" && e.value.as_deref() == Some("http://proxy:3128")
            )
        );
    }

    #[test]
    fn the_hub_is_named_to_the_agent() {
        use clap::Parser;
        let st = Settings::from_config(
            &Config::try_parse_from([
                "wa-operator",
                "--messages-caller",
                "system:serviceaccount:wa-system:wa-hub",
                "--messages-audience",
                "aud",
            ])
            .expect("cfg"),
        );
        let env = session_env(&session("s1"), &st);
        let value = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            value("WA_MESSAGES_CALLER").as_deref(),
            Some("system:serviceaccount:wa-system:wa-hub")
        );
        assert_eq!(value("WA_MESSAGES_AUDIENCE").as_deref(), Some("aud"));
    }

    #[test]
    fn driver_configmap_is_mounted() {
        let mut st = settings();
        st.driver_configmap = Some("drv".into());
        let sts = statefulset(&session("s1"), &st).unwrap();
        let pod = sts.spec.unwrap().template.spec.unwrap();
        assert!(
            pod.volumes
                .unwrap()
                .iter()
                .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == "drv"))
        );
        let env = pod.containers[0].env.clone().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "WA_DRIVER_DIR" && e.value.as_deref() == Some(DRIVER_DIR))
        );
    }

    #[test]
    fn placement_reaches_the_session_pod() {
        use clap::Parser;
        let st = Settings::from_config(
            &Config::try_parse_from([
                "wa-operator",
                r#"--session-node-selector={"pool":"wa"}"#,
                r#"--session-tolerations=[{"key":"wa","operator":"Exists","effect":"NoSchedule"}]"#,
                r#"--session-affinity={"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}}]}}"#,
                "--session-priority-class=wa-sessions",
                "--session-image-pull-secrets=regcred,mirror",
            ])
            .expect("cfg"),
        );
        let pod = statefulset(&session("s1"), &st)
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.node_selector.unwrap()["pool"], "wa");
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("wa"));
        assert!(pod.affinity.unwrap().node_affinity.is_some());
        assert_eq!(pod.priority_class_name.as_deref(), Some("wa-sessions"));
        let secrets: Vec<String> = pod
            .image_pull_secrets
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(secrets, ["regcred", "mirror"]);
        // without the flags nothing is set
        let plain = statefulset(&session("s1"), &settings()).unwrap();
        let pod = plain.spec.unwrap().template.spec.unwrap();
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        assert!(pod.affinity.is_none() && pod.image_pull_secrets.is_none());
    }

    #[test]
    fn builders_are_deterministic() {
        let s = session("s1");
        let st = settings();
        assert_eq!(statefulset(&s, &st).unwrap(), statefulset(&s, &st).unwrap());
    }
}
