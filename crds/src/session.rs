use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A WhatsApp Web session of one tenant, run by the operator as (at most) one pod.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "whatsapp.leadmaster.io",
    version = "v1alpha1",
    kind = "WhatsAppSession",
    plural = "whatsappsessions",
    shortname = "wa",
    // `kubectl get whatsapp` lists sessions. Not in `all`: `kubectl delete all --all` would
    // then delete sessions, and deleting one logs its phone out (deletionPolicy Logout).
    category = "whatsapp",
    namespaced,
    status = "WhatsAppSessionStatus",
    derive = "PartialEq",
    doc = "A WhatsApp Web session of one tenant, run as at most one pod with its login kept on a volume",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "QR", type_ = "string", json_path = ".status.qrStatus"),
    printcolumn(name = "Phone", type_ = "string", json_path = ".status.phoneNumber"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the session pod is ready (the Ready condition)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.tenant",
    // Child names are derived from the CR name (StatefulSet pods add "-0", and a StatefulSet
    // name longer than 52 characters breaks its pods' controller-revision-hash label).
    validation = Rule::new("self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label of at most 52 characters (lowercase letters, digits and '-')")
)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppSessionSpec {
    /// The customer this session belongs to; drives authorization in the hub. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenant is immutable"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("tenant must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 1, max = 63))]
    pub tenant: String,

    /// Optional human-readable name shown by UIs instead of the session's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// `Running` (default): a pod runs the session; unlinked, it shows QR codes at once.
    /// `Stopped`: no pod, the saved login and data are kept. The hub sets `Running` when a user
    /// asks for a QR.
    #[serde(default)]
    pub desired_state: DesiredState,

    /// A request for a fresh round of QR codes (RFC 3339 time, set by the hub); the agent acts
    /// on each new value once and records it in `status.handled.qrRequestedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub qr_requested_at: Option<Time>,

    /// A request to log out of WhatsApp and wipe the saved login (RFC 3339 time); the agent
    /// acts on each new value once and records it in `status.handled.logoutRequestedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub logout_requested_at: Option<Time>,

    /// What happens to the login and data when the CR is deleted: `Logout` (default) logs out
    /// then deletes the data, `Retain` keeps the PVC, `Delete` deletes the data without logout.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The PersistentVolumeClaim holding the Chromium profile (the saved login), created by
    /// the operator as `wa-<name>-data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// CPU and memory of the session container; unset, the operator's defaults apply.
    /// `claims` is refused (session pods use no dynamic resource allocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schemas::resources")]
    pub resources: Option<ResourceRequirements>,

    /// Optional egress proxy for this session's Chromium (all WhatsApp Web traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,

    /// Link with an 8-character pairing code typed on the phone instead of scanning a QR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingSpec>,

    /// Sending messages through this session (the hub's `POST …/messages`): how fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<MessagingSpec>,
}

/// Whether the session should have a pod.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

/// What deleting the CR does to the login and the data.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    #[default]
    Logout,
    Retain,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the profile volume as a Kubernetes quantity (default 1Gi, at most 1Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::storage_size())]
    #[schemars(length(max = 64))]
    pub size: Option<String>,
    /// StorageClass of the profile volume (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy URL: http://, https:// or socks5:// host and an explicit port, without
    /// credentials. The host is a DNS name or a unicast IP address; loopback, unspecified,
    /// link-local (cloud metadata) and multicast addresses and `localhost` are refused.
    #[x_kube(validation = crate::rules::proxy_url_shape())]
    #[x_kube(validation = crate::rules::proxy_url_host())]
    #[schemars(length(max = 256))]
    pub url: String,
    /// A Secret in the session's namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A Secret in the session's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret (in the session's namespace).
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingSpec {
    /// The phone number to link, digits only with country code (e.g. 5491122334455).
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{8,15}$')").message("phoneNumber must be 8 to 15 digits, country code included, no '+' or spaces"))]
    pub phone_number: String,
}

/// How fast the session sends. WhatsApp bans numbers that send in bursts, so the agent spaces
/// sends out (with a random jitter) and queues what comes faster; a send that would wait too
/// long is refused with 429 and `Retry-After`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagingSpec {
    /// Messages per minute on average (1–60; default 10, one every 6 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::int_between("sendRatePerMinute", 1, crate::rules::MAX_SEND_RATE_PER_MINUTE))]
    pub send_rate_per_minute: Option<u32>,
    /// Messages that may go back to back before the average applies (1–10; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::int_between("sendBurst", 1, crate::rules::MAX_SEND_BURST))]
    pub send_burst: Option<u32>,
}

impl MessagingSpec {
    /// Default average rate: a human-paced sender; a mass sender asks for more explicitly.
    pub const DEFAULT_RATE_PER_MINUTE: u32 = 10;
    pub const DEFAULT_BURST: u32 = 3;

    pub fn rate_per_minute(spec: Option<&Self>) -> u32 {
        spec.and_then(|m| m.send_rate_per_minute)
            .unwrap_or(Self::DEFAULT_RATE_PER_MINUTE)
    }

    pub fn burst(spec: Option<&Self>) -> u32 {
        spec.and_then(|m| m.send_burst)
            .unwrap_or(Self::DEFAULT_BURST)
    }
}

/// Observed state. The agent writes the WhatsApp fields and the `Authenticated` condition; the
/// operator writes `Ready`/`Progressing`, `observedGeneration`, `podName` and `restarts`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppSessionStatus {
    /// The WhatsApp session's state: `init` (agent starting), `qr_required` (waiting for a
    /// scan or pairing code), `connecting` (scanned, or restoring a saved login),
    /// `connected`, `disconnected` (logged out or unlinked), `error` (see `lastError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionState>,
    /// The QR code's state: `none`, `generated` (one is shown in `qr`), `expired` (WhatsApp
    /// Web stopped offering new ones: request a new round), `used` (scanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_status: Option<QrStatus>,
    /// The raw QR string while one is shown (render it as a QR code to scan it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
    /// When the current QR was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub qr_generated_at: Option<Time>,
    /// When the current QR stops being valid (about 20 s after the previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub qr_expires_at: Option<Time>,
    /// The 8-character code to type on the phone, when `spec.pairing` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
    /// The linked account's phone number (digits, country code included) once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// The linked account's WhatsApp profile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
    /// When the session last became connected; cleared while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub connected_at: Option<Time>,
    /// When the agent last wrote this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub updated_at: Option<Time>,
    /// The last error the agent met (kept until the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The request values (from the spec) the agent has acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<Handled>,
    /// Ready and Progressing (operator), Authenticated (agent); one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schemas::conditions")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The metadata.generation the operator last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The session's pod, while one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Restarts of the session container in the current pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i32>,
}

/// The WhatsApp session's state (see `status.status`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Init,
    QrRequired,
    Connecting,
    Connected,
    Disconnected,
    Error,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::QrRequired => "qr_required",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Error => "error",
        }
    }
}

/// The QR code's state (see `status.qrStatus`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QrStatus {
    None,
    Generated,
    Expired,
    Used,
}

impl QrStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Generated => "generated",
            Self::Expired => "expired",
            Self::Used => "used",
        }
    }
}

/// The last error the agent met.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct LastError {
    /// A stable code: AUTH_FAILURE, BROWSER_CRASHED, PROFILE_CORRUPT, CONFLICT,
    /// LOGGED_OUT_REMOTELY, TIMEOUT (agents may add codes).
    pub code: String,
    /// What happened, for humans.
    pub message: String,
    /// When it happened.
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub at: Time,
}

/// The request values (from the spec) that the agent has acted on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Handled {
    /// The last `spec.qrRequestedAt` the agent started a QR round for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub qr_requested_at: Option<Time>,
    /// The last `spec.logoutRequestedAt` the agent logged out for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::time_before_limit())]
    pub logout_requested_at: Option<Time>,
}

impl WhatsAppSession {
    /// The condition of the given type, if present.
    pub fn condition(&self, kind: crate::ConditionType) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == kind.as_str())
    }
}
