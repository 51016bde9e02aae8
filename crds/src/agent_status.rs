//! The agent's part of the CR status: a projection of the shared [`WhatsAppSessionStatus`]
//! holding exactly the fields the agent owns (field manager `wa-agent`), and its
//! `Authenticated` condition, derived from the session state. Shared by the agent, which
//! writes it, and the operator, which writes a stopped agent's status when the agent could not
//! (killed, OOM, pod gone: [`stopped`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    ConditionStatus, ConditionType, Handled, QrStatus, SessionState, WhatsAppSessionStatus,
    set_condition,
};

/// Condition reason of a session whose agent stopped (SIGTERM: pod deleted, rolling upgrade,
/// node drain, `desiredState: Stopped`; or, written by the operator, killed without a word):
/// no browser holds it until an agent runs again. It is also how a stopped agent is read back
/// from the CR.
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
            .filter(|c| {
                c.type_ == ConditionType::Authenticated.as_str()
                    || c.type_ == ConditionType::Receiving.as_str()
            })
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

/// Condition reason of a linked session whose page's message listeners are attached.
pub const LISTENING: &str = "Listening";
/// Condition reason of a linked session whose agent cannot attach to the page's message
/// events: incoming messages are lost until a driver that knows the page is deployed.
pub const MESSAGE_LISTENERS_MISSING: &str = "MessageListenersMissing";

/// `Receiving`: True while the linked page's message listeners are attached, False while the
/// page is linked and they cannot attach (`detail` says why), Unknown while not linked
/// (`receiving` `None`). Written from the first time the agent looked at a linked page on.
pub fn sync_receiving(
    s: &mut WhatsAppSessionStatus,
    receiving: Option<&Result<(), String>>,
    at: Time,
) {
    let already = s
        .conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Receiving.as_str());
    let (status, reason, message) = match receiving {
        Some(Ok(())) => (
            ConditionStatus::True,
            LISTENING,
            "the agent listens to the linked page's messages".to_string(),
        ),
        Some(Err(detail)) => (
            ConditionStatus::False,
            MESSAGE_LISTENERS_MISSING,
            format!(
                "incoming messages are not received: the agent cannot attach to the page's message events ({detail})"
            ),
        ),
        None if already => (
            ConditionStatus::Unknown,
            "NotLinked",
            "no linked page to listen to".to_string(),
        ),
        None => return,
    };
    set_condition(
        &mut s.conditions,
        ConditionType::Receiving,
        status,
        reason,
        &message,
        None,
        at,
    );
}

/// What an agent's status becomes when the agent stops and its browser closes: from then until
/// the next agent has restored the login, nothing holds the session. A linked (or restoring)
/// session is `connecting`, with the account kept (the saved login is still there) and no
/// `connectedAt`; a QR on screen can no longer be scanned and is withdrawn. `None` for a
/// session with nothing to hold (`init`, `disconnected`, `error`), which is left as it is.
/// The `Authenticated` condition is left to the caller ([`sync_condition`] with
/// `agent_stopped`).
pub fn stopped(s: &WhatsAppSessionStatus) -> Option<WhatsAppSessionStatus> {
    let mut s = s.clone();
    match state_of(&s) {
        SessionState::Connected | SessionState::Connecting => {
            s.status = Some(SessionState::Connecting);
            s.connected_at = None;
        }
        SessionState::QrRequired => {
            // A scanned QR stays `used`; a shown or expired one is withdrawn.
            if s.qr_status != Some(QrStatus::Used) {
                s.qr_status = Some(QrStatus::None);
            }
            s.qr = None;
            s.qr_generated_at = None;
            s.qr_expires_at = None;
            s.pairing_code = None;
        }
        SessionState::Init | SessionState::Disconnected | SessionState::Error => return None,
    }
    Some(s)
}

/// Whether the agent's status claims something only a running agent can keep true: a linked
/// browser (`connected`) or a QR that can be scanned now.
pub fn needs_a_live_agent(s: &WhatsAppSessionStatus) -> bool {
    match state_of(s) {
        SessionState::Connected => true,
        SessionState::QrRequired => s.qr.is_some() || s.pairing_code.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("valid"))
    }

    fn connected() -> WhatsAppSessionStatus {
        let mut s = WhatsAppSessionStatus {
            status: Some(SessionState::Connected),
            qr_status: Some(QrStatus::Used),
            phone_number: Some("5491100000000".into()),
            connected_at: Some(at(100)),
            handled: Some(Handled::default()),
            ..Default::default()
        };
        sync_condition(&mut s, false, false, at(100));
        s
    }

    #[test]
    fn a_stopped_connected_session_is_connecting_with_its_account_kept() {
        let mut s = stopped(&connected()).expect("something to hold");
        sync_condition(&mut s, true, false, at(200));
        assert_eq!(s.status, Some(SessionState::Connecting));
        assert_eq!(s.connected_at, None);
        assert_eq!(s.phone_number.as_deref(), Some("5491100000000"));
        assert_eq!(s.qr_status, Some(QrStatus::Used));
        assert!(agent_stopped(&s));
        let c = &s.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", AGENT_STOPPED)
        );
        assert!(!needs_a_live_agent(&s));
    }

    #[test]
    fn a_stopped_agents_qr_is_withdrawn() {
        let shown = WhatsAppSessionStatus {
            status: Some(SessionState::QrRequired),
            qr_status: Some(QrStatus::Generated),
            qr: Some("2@abc".into()),
            qr_generated_at: Some(at(1)),
            qr_expires_at: Some(at(21)),
            ..Default::default()
        };
        assert!(needs_a_live_agent(&shown));
        let s = stopped(&shown).expect("a QR to withdraw");
        assert_eq!(s.qr_status, Some(QrStatus::None));
        assert_eq!(
            (s.qr, s.qr_generated_at, s.qr_expires_at),
            (None, None, None)
        );
        assert_eq!(s.status, Some(SessionState::QrRequired));
    }

    #[test]
    fn nothing_to_hold_is_left_as_it_is() {
        for state in [
            SessionState::Init,
            SessionState::Disconnected,
            SessionState::Error,
        ] {
            let s = WhatsAppSessionStatus {
                status: Some(state),
                ..Default::default()
            };
            assert_eq!(stopped(&s), None, "{state:?}");
            assert!(!needs_a_live_agent(&s), "{state:?}");
        }
        assert!(needs_a_live_agent(&connected()));
    }

    #[test]
    fn receiving_appears_on_the_first_look_and_turns_unknown_without_a_linked_page() {
        let mut s = connected();
        sync_receiving(&mut s, None, at(1));
        assert!(
            !s.conditions.iter().any(|c| c.type_ == "Receiving"),
            "not looked at yet: no condition"
        );
        let cond = |s: &WhatsAppSessionStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Receiving")
                .map(|c| {
                    (
                        c.status.clone(),
                        c.reason.clone(),
                        c.last_transition_time.clone(),
                    )
                })
        };
        sync_receiving(&mut s, Some(&Err("WAWebCollections gone".into())), at(2));
        let (status, reason, _) = cond(&s).expect("condition");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", MESSAGE_LISTENERS_MISSING)
        );
        sync_receiving(&mut s, Some(&Ok(())), at(3));
        sync_receiving(&mut s, Some(&Ok(())), at(4));
        assert_eq!(
            cond(&s),
            Some(("True".into(), LISTENING.into(), at(3))),
            "the transition time stays while the status does"
        );
        // The agent stopped (or the operator stands in for a dead one): nobody listens.
        let mut down = stopped(&s).expect("stoppable");
        sync_receiving(&mut down, None, at(5));
        assert_eq!(
            cond(&down),
            Some(("Unknown".into(), "NotLinked".into(), at(5)))
        );
        assert_eq!(
            agent_part(&down).map(|p| p.conditions.len()),
            Some(down.conditions.len())
        );
    }
}
