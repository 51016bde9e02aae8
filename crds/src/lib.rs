//! The `WhatsAppSession` custom resource (`whatsapp.leadmaster.io/v1alpha1`), shared by the
//! operator, the session agent and the hub. The contract is `docs/design.md` §2.
//!
//! Every optional field is skipped when `None` so that each writer's server-side-apply patch
//! carries only the fields it owns (operator, agent and hub use different field managers).

pub mod agent_status;
mod apply;
mod conditions;
pub mod rules;
mod schemas;
mod session;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
pub mod watch;

pub use apply::{SessionApply, SpecRequests, Writer};
pub use conditions::{ConditionStatus, ConditionType, set_condition};
pub use session::*;
pub use time::{now, whole_seconds};

/// The domains WhatsApp Web loads from, subdomains included (web., static., mmg., pps.): all a
/// session's browser may contact besides WhatsApp Web's configured URL (the operator's Chromium
/// policy, the agent's egress PAC).
pub const WHATSAPP_DOMAINS: [&str; 2] = ["whatsapp.com", "whatsapp.net"];

/// Field managers, one per writer, for server-side apply (chosen through [`Writer`]).
pub mod managers {
    /// The operator: children, finalizer, `conditions` Ready/Progressing, bookkeeping status.
    pub const OPERATOR: &str = "whatsapp-operator";
    /// The operator's logout request when a session with `deletionPolicy: Logout` is deleted.
    pub const OPERATOR_FINALIZER: &str = "whatsapp-operator-finalizer";
    /// The session agent: QR, state, `Authenticated` condition, `handled`.
    pub const AGENT: &str = "wa-agent";
    /// The hub: `spec.desiredState`, `spec.qrRequestedAt`, `spec.logoutRequestedAt`.
    pub const HUB: &str = "whatsapp-hub";
    /// The `kubectl whatsapp` plugin: the same spec requests as the hub.
    pub const KUBECTL: &str = "kubectl-whatsapp";
}

/// Labels put on every child object of a session (docs/design.md §2).
pub mod labels {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const NAME_VALUE: &str = "whatsapp-session";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "whatsapp-operator";
    pub const TENANT: &str = "whatsapp.leadmaster.io/tenant";

    /// A namespace label key `tenant.whatsapp.leadmaster.io/<tenant>` (value ignored): the
    /// namespace may hold sessions of that tenant. Only cluster admins can label namespaces;
    /// admission (the chart's ValidatingAdmissionPolicy) and the hub both require it
    /// (docs/design.md §2 "Tenants and namespaces").
    pub const TENANT_CLAIM_PREFIX: &str = "tenant.whatsapp.leadmaster.io/";

    /// The claim label key of `tenant` on a namespace.
    pub fn tenant_claim(tenant: &str) -> String {
        format!("{TENANT_CLAIM_PREFIX}{tenant}")
    }
}

/// Known `status.lastError.code` values (the field is a free string so agents can add codes
/// without a CRD change).
pub mod error_codes {
    pub const AUTH_FAILURE: &str = "AUTH_FAILURE";
    pub const BROWSER_CRASHED: &str = "BROWSER_CRASHED";
    pub const PROFILE_CORRUPT: &str = "PROFILE_CORRUPT";
    pub const CONFLICT: &str = "CONFLICT";
    pub const LOGGED_OUT_REMOTELY: &str = "LOGGED_OUT_REMOTELY";
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The profile had lost the login and the agent put its last-good backup back.
    pub const PROFILE_RESTORED: &str = "PROFILE_RESTORED";
    /// Neither the profile nor its backup restored the login: a new login is needed.
    pub const LOGIN_LOST: &str = "LOGIN_LOST";
    /// The page is linked but the agent cannot attach to its message events (a module of
    /// WhatsApp Web missing or renamed): incoming messages are not received.
    pub const MESSAGES_NOT_RECEIVED: &str = "MESSAGES_NOT_RECEIVED";
}
