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
    namespaced,
    status = "WhatsAppSessionStatus",
    derive = "PartialEq",
    doc = "A WhatsApp Web session of one tenant, run as at most one pod with its login kept on a volume",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "QR", type_ = "string", json_path = ".status.qrStatus"),
    printcolumn(name = "Phone", type_ = "string", json_path = ".status.phoneNumber"),
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

    /// Optional label for UIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// `Running` (default) or `Stopped` (no pod, data kept).
    #[serde(default)]
    pub desired_state: DesiredState,

    /// A request for a fresh QR; handled once per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_requested_at: Option<Time>,

    /// A request to log out of WhatsApp and wipe the saved login; handled once per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_requested_at: Option<Time>,

    /// What happens to the login and data when the CR is deleted: `Logout` (default) logs out
    /// then deletes the data, `Retain` keeps the PVC, `Delete` deletes the data without logout.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The volume holding the Chromium profile (the saved login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Resources of the session container; the operator has defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Optional per-session egress proxy for Chromium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,

    /// Log in with an 8-character pairing code instead of a QR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingSpec>,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

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
    /// Size of the profile volume as a Kubernetes quantity (default 1Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("size must be a positive quantity such as 1Gi or 500Mi"))]
    pub size: Option<String>,
    /// StorageClass of the profile volume (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy URL: http://, https:// or socks5:// host and port, without credentials.
    #[x_kube(validation = Rule::new("self.matches('^(http|https|socks5)://[^/@\\\\s]+(:[0-9]+)?/?$')").message("proxy url must look like http://host:port, https://host:port or socks5://host:port, without credentials"))]
    pub url: String,
    /// A Secret in the session's namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingSpec {
    /// The phone number to link, digits only with country code (e.g. 5491122334455).
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{8,15}$')").message("phoneNumber must be 8 to 15 digits, country code included, no '+' or spaces"))]
    pub phone_number: String,
}

/// Observed state. The agent writes the WhatsApp fields and the `Authenticated` condition; the
/// operator writes `Ready`/`Progressing`, `observedGeneration`, `podName` and `restarts`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppSessionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_status: Option<QrStatus>,
    /// The raw QR string while one is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_generated_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<Handled>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i32>,
}

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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct LastError {
    /// e.g. AUTH_FAILURE, BROWSER_CRASHED, PROFILE_CORRUPT, CONFLICT, LOGGED_OUT_REMOTELY, TIMEOUT
    pub code: String,
    pub message: String,
    pub at: Time,
}

/// The request values (from the spec) that the agent has acted on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Handled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_requested_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
