//! The agent's part of the CR status: a projection of the shared [`WhatsAppSessionStatus`]
//! holding exactly the fields the agent owns (field manager `wa-agent`), and its
//! `Authenticated` condition, derived from the session state.

use crds::{
    ConditionStatus, ConditionType, Handled, QrStatus, SessionState, WhatsAppSessionStatus,
    set_condition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Condition reason of a session whose agent stopped (SIGTERM: pod deleted, rolling upgrade,
/// node drain, `desiredState: Stopped`): no browser holds it until an agent runs again. It is
/// also how a stopped agent is read back from the CR.
pub const AGENT_STOPPED: &str = "AgentStopped";

/// Condition reason of a session connected on a login put back from the agent's backup
/// (the profile had lost it), until the next browser start.
pub const RESTORED_FROM_BACKUP: &str = "RestoredFromBackup";

/// The agent's fields of `s`, normalized as the agent writes them (`qrStatus` and `handled`
/// always present), without `updatedAt` (which only moves when one of them changes) and
/// without anything the operator owns. `None` if the agent never wrote (no `status`).
pub fn agent_part(s: &WhatsAppSessionStatus) -> Option<WhatsAppSessionStatus> {
    Some(WhatsAppSessionStatus {
        status: Some(s.status?),
        qr_status: Some(s.qr_status.unwrap_or(QrStatus::None)),
        qr: s.qr.clone(),
        qr_generated_at: s.qr_generated_at.clone(),
        qr_expires_at: s.qr_expires_at.clone(),
        pairing_code: s.pairing_code.clone(),
        phone_number: s.phone_number.clone(),
        push_name: s.push_name.clone(),
        connected_at: s.connected_at.clone(),
        last_error: s.last_error.clone(),
        handled: Some(s.handled.clone().unwrap_or_default()),
        conditions: s
            .conditions
            .iter()
            .filter(|c| c.type_ == ConditionType::Authenticated.as_str())
            .cloned()
            .collect(),
        updated_at: None,
        observed_generation: None,
        pod_name: None,
        restarts: None,
    })
}

/// The status of an agent that never wrote: `init`, no QR, nothing handled.
pub fn initial() -> WhatsAppSessionStatus {
    WhatsAppSessionStatus {
        status: Some(SessionState::Init),
        qr_status: Some(QrStatus::None),
        handled: Some(Handled::default()),
        ..Default::default()
    }
}

/// Whether the CR says the previous agent stopped (the condition's reason).
pub fn agent_stopped(s: &WhatsAppSessionStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Authenticated.as_str() && c.reason == AGENT_STOPPED)
}

/// The session state of the agent's status (`init` if unset).
pub fn state_of(s: &WhatsAppSessionStatus) -> SessionState {
    s.status.unwrap_or(SessionState::Init)
}

/// `Authenticated`: True when linked, False when known not to be (a QR is needed, logged out,
/// or WhatsApp Web reported an error), Unknown while nobody can tell: no agent holds the
/// session, the agent is starting, or a login is being linked or restored.
pub fn authenticated(
    state: SessionState,
    agent_stopped: bool,
    restored: bool,
) -> (ConditionStatus, &'static str, &'static str) {
    if agent_stopped {
        return (
            ConditionStatus::Unknown,
            AGENT_STOPPED,
            "the session agent stopped (pod deleted or replaced, or desiredState Stopped); the next agent restores the saved login",
        );
    }
    match state {
        SessionState::Init => (
            ConditionStatus::Unknown,
            "Starting",
            "the session agent is starting WhatsApp Web",
        ),
        SessionState::QrRequired => (
            ConditionStatus::False,
            "QrRequired",
            "waiting for a QR scan or pairing code",
        ),
        SessionState::Connecting => (
            ConditionStatus::Unknown,
            "Connecting",
            "linking or restoring the WhatsApp login",
        ),
        SessionState::Connected if restored => (
            ConditionStatus::True,
            RESTORED_FROM_BACKUP,
            "the WhatsApp account is linked; the profile had lost the login, which came back from the agent's last-good backup",
        ),
        SessionState::Connected => (
            ConditionStatus::True,
            "Linked",
            "the WhatsApp account is linked",
        ),
        SessionState::Disconnected => (
            ConditionStatus::False,
            "Disconnected",
            "no WhatsApp account is linked",
        ),
        SessionState::Error => (
            ConditionStatus::False,
            "Error",
            "WhatsApp Web reported an error; see lastError",
        ),
    }
}

/// Brings the `Authenticated` condition of `s` in line with its state (the transition time
/// moves only when the condition's status changes).
pub fn sync_condition(
    s: &mut WhatsAppSessionStatus,
    agent_stopped: bool,
    restored: bool,
    at: Time,
) {
    let (status, reason, message) = authenticated(state_of(s), agent_stopped, restored);
    set_condition(
        &mut s.conditions,
        ConditionType::Authenticated,
        status,
        reason,
        message,
        None,
        at,
    );
}
