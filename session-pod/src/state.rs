//! The session's state machine: page observations in, the agent's part of the CR status out
//! (docs/design.md §2 lifecycle). Pure logic, no I/O, so every transition is unit-tested.

use std::time::Duration;

use crds::{Handled, LastError, QrStatus, SessionState, WhatsAppSessionStatus, error_codes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

use crate::driver::{PageState, Snapshot};

/// Exactly the status fields the agent owns (field manager `wa-agent`), without `updatedAt`
/// (which only moves when one of these changes) and the `Authenticated` condition (derived).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentStatus {
    pub status: SessionState,
    pub qr_status: QrStatus,
    pub qr: Option<String>,
    pub qr_generated_at: Option<Time>,
    pub qr_expires_at: Option<Time>,
    pub pairing_code: Option<String>,
    pub phone_number: Option<String>,
    pub push_name: Option<String>,
    pub connected_at: Option<Time>,
    pub last_error: Option<LastError>,
    pub handled: Handled,
    /// The agent that held the session stopped (SIGTERM: pod deleted, rolling upgrade, node
    /// drain, `desiredState: Stopped`) and no browser holds it until an agent runs again.
    /// Shown as the `Authenticated` condition's reason [`AGENT_STOPPED`], which is how it is
    /// read back from the CR.
    pub agent_stopped: bool,
}

/// Condition reason of a session whose agent stopped (see [`AgentStatus::agent_stopped`]).
pub const AGENT_STOPPED: &str = "AgentStopped";

impl Default for AgentStatus {
    fn default() -> Self {
        Self {
            status: SessionState::Init,
            qr_status: QrStatus::None,
            qr: None,
            qr_generated_at: None,
            qr_expires_at: None,
            pairing_code: None,
            phone_number: None,
            push_name: None,
            connected_at: None,
            last_error: None,
            handled: Handled::default(),
            agent_stopped: false,
        }
    }
}

impl AgentStatus {
    /// The agent's fields as currently stored in the CR (None if the agent never wrote).
    pub fn from_cr(s: &WhatsAppSessionStatus) -> Option<Self> {
        Some(Self {
            status: s.status?,
            qr_status: s.qr_status.unwrap_or(QrStatus::None),
            qr: s.qr.clone(),
            qr_generated_at: s.qr_generated_at.clone(),
            qr_expires_at: s.qr_expires_at.clone(),
            pairing_code: s.pairing_code.clone(),
            phone_number: s.phone_number.clone(),
            push_name: s.push_name.clone(),
            connected_at: s.connected_at.clone(),
            last_error: s.last_error.clone(),
            handled: s.handled.clone().unwrap_or_default(),
            agent_stopped: s.conditions.iter().any(|c| {
                c.type_ == crds::ConditionType::Authenticated.as_str() && c.reason == AGENT_STOPPED
            }),
        })
    }

    pub fn authenticated(&self) -> bool {
        self.status == SessionState::Connected
    }

    /// Condition reason (CamelCase, as Kubernetes requires) and message for `Authenticated`.
    pub fn condition_reason(&self) -> (&'static str, &'static str) {
        if self.agent_stopped {
            return (
                AGENT_STOPPED,
                "the session agent stopped (pod deleted or replaced, or desiredState Stopped); the next agent restores the saved login",
            );
        }
        match self.status {
            SessionState::Init => ("Starting", "the session agent is starting WhatsApp Web"),
            SessionState::QrRequired => ("QrRequired", "waiting for a QR scan or pairing code"),
            SessionState::Connecting => ("Connecting", "linking or restoring the WhatsApp login"),
            SessionState::Connected => ("Linked", "the WhatsApp account is linked"),
            SessionState::Disconnected => ("Disconnected", "no WhatsApp account is linked"),
            SessionState::Error => ("Error", "WhatsApp Web reported an error; see lastError"),
        }
    }
}

/// What the session loop must do after an observation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// A new QR, or the session just became connected: publish without coalescing (the
    /// first is time-limited, the second ends a login or a restore someone is waiting on).
    pub urgent: bool,
    /// The account was opened elsewhere: take over after the configured delay.
    pub conflict: bool,
    /// The page logged out (by us or from the phone).
    pub logged_out: bool,
    /// A QR is offered and a pairing code was asked for but not fetched yet.
    pub want_pairing_code: bool,
}

#[derive(Debug)]
pub struct Machine {
    pub status: AgentStatus,
    qr_first_ttl: Duration,
    qr_next_ttl: Duration,
    /// QRs shown in the current round (the first one lives longer).
    qrs_in_round: u32,
    /// The page reached CONNECTED since this browser was launched.
    seen_connected: bool,
    /// A pairing code is wanted (spec.pairing) and not fetched yet in this round.
    pub pairing_wanted: bool,
}

fn after(now: Time, d: Duration) -> Time {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
    Time(now.0.checked_add(d).unwrap_or(now.0))
}

impl Machine {
    pub fn new(initial: AgentStatus, qr_first_ttl: Duration, qr_next_ttl: Duration) -> Self {
        Self {
            status: initial,
            qr_first_ttl,
            qr_next_ttl,
            qrs_in_round: 0,
            seen_connected: false,
            pairing_wanted: false,
        }
    }

    /// A browser is (re)launched: observations start over.
    pub fn browser_started(&mut self) {
        self.seen_connected = false;
        // This agent holds the session from now on.
        self.status.agent_stopped = false;
        self.qrs_in_round = 0;
        if matches!(
            self.status.status,
            SessionState::Disconnected | SessionState::Error
        ) {
            self.status.status = SessionState::Init;
        }
        // A QR from a previous browser can no longer be scanned.
        self.clear_qr(QrStatus::None);
    }

    /// A fresh QR round (a new browser or `refreshQR`).
    pub fn new_round(&mut self) {
        self.qrs_in_round = 0;
    }

    fn clear_qr(&mut self, qr_status: QrStatus) {
        if self.status.qr_status != QrStatus::Used || qr_status != QrStatus::None {
            self.status.qr_status = qr_status;
        }
        self.status.qr = None;
        self.status.qr_generated_at = None;
        self.status.qr_expires_at = None;
    }

    fn clear_account(&mut self) {
        self.status.phone_number = None;
        self.status.push_name = None;
        self.status.connected_at = None;
    }

    pub fn set_error(&mut self, code: &str, message: impl Into<String>, at: Time) {
        let message = message.into();
        // Same problem again: keep the original time so the status does not churn.
        if let Some(old) = &self.status.last_error
            && old.code == code
            && old.message == message
        {
            return;
        }
        self.status.last_error = Some(LastError {
            code: code.to_string(),
            message,
            at,
        });
    }

    pub fn observe(&mut self, snap: &Snapshot, at: Time) -> Effects {
        let mut fx = Effects::default();
        let state = snap.page_state();
        let was_connected = self.seen_connected;
        if snap.logged_out
            || (was_connected && matches!(state, PageState::Unpaired | PageState::UnpairedIdle))
        {
            fx.logged_out = true;
            return fx;
        }
        match state {
            PageState::Loading => {}
            PageState::Opening => {
                if self.status.qr_status == QrStatus::Generated {
                    // The shown QR was scanned.
                    self.clear_qr(QrStatus::Used);
                }
                if self.status.status != SessionState::Connected || !was_connected {
                    self.status.status = SessionState::Connecting;
                }
                self.status.pairing_code = None;
            }
            PageState::Unpaired => {
                self.status.status = SessionState::QrRequired;
                self.clear_account();
                if let Some(qr) = &snap.qr
                    && self.status.qr.as_ref() != Some(qr)
                {
                    self.qrs_in_round += 1;
                    let ttl = if self.qrs_in_round == 1 {
                        self.qr_first_ttl
                    } else {
                        self.qr_next_ttl
                    };
                    self.status.qr = Some(qr.clone());
                    self.status.qr_status = QrStatus::Generated;
                    self.status.qr_generated_at = Some(at.clone());
                    self.status.qr_expires_at = Some(after(at, ttl));
                    fx.urgent = true;
                }
                fx.want_pairing_code = self.pairing_wanted;
            }
            PageState::UnpairedIdle => {
                self.status.status = SessionState::QrRequired;
                self.clear_account();
                self.clear_qr(QrStatus::Expired);
                self.status.pairing_code = None;
            }
            PageState::Connected => {
                self.seen_connected = true;
                if self.status.status != SessionState::Connected {
                    fx.urgent = true;
                }
                if self.status.status != SessionState::Connected
                    || self.status.connected_at.is_none()
                {
                    self.status.connected_at = Some(at.clone());
                }
                self.status.status = SessionState::Connected;
                self.clear_qr(QrStatus::Used);
                self.status.qr_status = QrStatus::Used;
                self.status.pairing_code = None;
                self.pairing_wanted = false;
                if snap.phone.is_some() {
                    self.status.phone_number = snap.phone.clone();
                }
                if snap.push_name.is_some() {
                    self.status.push_name = snap.push_name.clone();
                }
                self.status.last_error = None;
            }
            PageState::Conflict => {
                self.set_error(
                    error_codes::CONFLICT,
                    "the WhatsApp account was opened in another browser",
                    at,
                );
                fx.conflict = true;
            }
            PageState::Timeout => {
                self.set_error(
                    error_codes::TIMEOUT,
                    "WhatsApp Web cannot reach the phone or the server",
                    at,
                );
            }
            PageState::Blocked(code) => {
                self.status.status = SessionState::Error;
                self.set_error(&code, format!("WhatsApp Web reports {code}"), at);
            }
        }
        fx
    }

    /// The agent stops (SIGTERM) and its browser closes: from now until the next agent has
    /// restored the login, nothing holds the session. A linked (or restoring) session is
    /// `connecting`, with the account kept (the saved login is still there) and no
    /// `connectedAt`; a QR on screen can no longer be scanned and is withdrawn. A session
    /// with nothing to hold (`init`, `disconnected`, `error`) is left as it is.
    pub fn agent_stopping(&mut self) {
        match self.status.status {
            SessionState::Connected | SessionState::Connecting => {
                self.status.status = SessionState::Connecting;
                self.status.connected_at = None;
            }
            SessionState::QrRequired => {
                self.clear_qr(QrStatus::None);
                self.status.pairing_code = None;
            }
            SessionState::Init | SessionState::Disconnected | SessionState::Error => return,
        }
        self.seen_connected = false;
        self.status.agent_stopped = true;
    }

    /// Logged out (our request or from the phone): nothing linked, idle until a QR request.
    pub fn disconnected(&mut self, error: Option<(&str, &str)>, at: Time) {
        self.status.agent_stopped = false;
        self.status.status = SessionState::Disconnected;
        self.clear_qr(QrStatus::None);
        self.status.qr_status = QrStatus::None;
        self.status.pairing_code = None;
        self.clear_account();
        self.seen_connected = false;
        if let Some((code, message)) = error {
            self.set_error(code, message, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn snap(state: &str, qr: Option<&str>) -> Snapshot {
        Snapshot {
            loaded: true,
            state: Some(state.into()),
            qr: qr.map(Into::into),
            ..Default::default()
        }
    }

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + s).expect("ts"))
    }

    fn machine() -> Machine {
        Machine::new(
            AgentStatus::default(),
            Duration::from_secs(60),
            Duration::from_secs(20),
        )
    }

    #[test]
    fn qr_after_qr_then_expired_then_scan_and_connect() {
        let mut m = machine();
        m.browser_started();
        assert_eq!(m.observe(&snap("OPENING", None), t(0)), Effects::default());
        let fx = m.observe(&snap("UNPAIRED", Some("r1,k")), t(1));
        assert!(fx.urgent);
        assert_eq!(m.status.status, SessionState::QrRequired);
        assert_eq!(m.status.qr_status, QrStatus::Generated);
        assert_eq!(m.status.qr_expires_at, Some(t(61)));
        // Same QR again: nothing new.
        assert!(!m.observe(&snap("UNPAIRED", Some("r1,k")), t(2)).urgent);
        let fx = m.observe(&snap("UNPAIRED", Some("r2,k")), t(3));
        assert!(fx.urgent);
        assert_eq!(m.status.qr_expires_at, Some(t(23)));
        m.observe(&snap("UNPAIRED_IDLE", Some("r2,k")), t(30));
        assert_eq!(m.status.qr_status, QrStatus::Expired);
        assert_eq!(m.status.qr, None);
        // A fresh round: the first QR lives long again.
        m.new_round();
        m.observe(&snap("UNPAIRED", Some("r3,k")), t(40));
        assert_eq!(m.status.qr_expires_at, Some(t(100)));
        m.observe(&snap("PAIRING", None), t(41));
        assert_eq!(m.status.status, SessionState::Connecting);
        assert_eq!(m.status.qr_status, QrStatus::Used);
        let mut c = snap("CONNECTED", None);
        c.phone = Some("5491122334455".into());
        c.push_name = Some("Ana".into());
        assert!(
            m.observe(&c, t(42)).urgent,
            "becoming connected is published at once"
        );
        assert_eq!(m.status.status, SessionState::Connected);
        assert_eq!(m.status.phone_number.as_deref(), Some("5491122334455"));
        assert_eq!(m.status.connected_at, Some(t(42)));
        assert!(m.status.authenticated());
        // connectedAt does not move while connected.
        assert!(!m.observe(&c, t(50)).urgent);
        assert_eq!(m.status.connected_at, Some(t(42)));
    }

    #[test]
    fn unlink_after_connected_is_a_logout() {
        let mut m = machine();
        m.browser_started();
        m.observe(&snap("CONNECTED", None), t(0));
        assert!(m.observe(&snap("UNPAIRED", Some("r,k")), t(1)).logged_out);
        m.disconnected(Some((error_codes::LOGGED_OUT_REMOTELY, "unlinked")), t(2));
        assert_eq!(m.status.status, SessionState::Disconnected);
        assert_eq!(
            m.status.last_error.as_ref().map(|e| e.code.as_str()),
            Some("LOGGED_OUT_REMOTELY")
        );
        assert!(!m.status.authenticated());
    }

    #[test]
    fn conflict_sets_error_and_asks_for_takeover_then_clears() {
        let mut m = machine();
        m.browser_started();
        m.observe(&snap("CONNECTED", None), t(0));
        let fx = m.observe(&snap("CONFLICT", None), t(1));
        assert!(fx.conflict);
        assert_eq!(
            m.status.last_error.as_ref().map(|e| e.at.clone()),
            Some(t(1))
        );
        m.observe(&snap("CONFLICT", None), t(2));
        assert_eq!(
            m.status.last_error.as_ref().map(|e| e.at.clone()),
            Some(t(1)),
            "same error keeps its time"
        );
        m.observe(&snap("CONNECTED", None), t(3));
        assert_eq!(m.status.last_error, None);
        assert_eq!(m.status.connected_at, Some(t(0)));
    }

    #[test]
    fn restore_goes_through_connecting_without_qr() {
        let mut m = Machine::new(
            AgentStatus {
                status: SessionState::Connected,
                qr_status: QrStatus::Used,
                ..Default::default()
            },
            Duration::from_secs(60),
            Duration::from_secs(20),
        );
        m.browser_started();
        m.observe(&snap("OPENING", None), t(0));
        assert_eq!(m.status.status, SessionState::Connecting);
        assert_eq!(m.status.qr_status, QrStatus::Used);
        m.observe(&snap("CONNECTED", None), t(1));
        assert_eq!(m.status.status, SessionState::Connected);
        assert_eq!(m.status.qr, None);
    }

    #[test]
    fn status_round_trips_through_the_cr() {
        let mut m = machine();
        m.observe(&snap("UNPAIRED", Some("r1,k")), t(1));
        m.status.handled.qr_requested_at = Some(t(0));
        let cr = WhatsAppSessionStatus {
            status: Some(m.status.status),
            qr_status: Some(m.status.qr_status),
            qr: m.status.qr.clone(),
            qr_generated_at: m.status.qr_generated_at.clone(),
            qr_expires_at: m.status.qr_expires_at.clone(),
            handled: Some(m.status.handled.clone()),
            ..Default::default()
        };
        assert_eq!(AgentStatus::from_cr(&cr), Some(m.status.clone()));
    }

    fn connected_machine() -> Machine {
        let mut m = machine();
        m.browser_started();
        let mut c = snap("CONNECTED", None);
        c.phone = Some("5491122334455".into());
        c.push_name = Some("Ana".into());
        m.observe(&c, t(0));
        m
    }

    #[test]
    fn a_stopping_agent_no_longer_reports_connected() {
        let mut m = connected_machine();
        m.agent_stopping();
        assert_eq!(m.status.status, SessionState::Connecting);
        assert!(!m.status.authenticated());
        assert_eq!(m.status.condition_reason().0, AGENT_STOPPED);
        assert_eq!(
            m.status.connected_at, None,
            "not connected since then any more"
        );
        assert_eq!(
            m.status.phone_number.as_deref(),
            Some("5491122334455"),
            "the account is still linked"
        );
        assert_eq!(m.status.qr_status, QrStatus::Used);
        assert_eq!(m.status.last_error, None, "stopping is not an error");
        // Stopping twice changes nothing.
        let once = m.status.clone();
        m.agent_stopping();
        assert_eq!(m.status, once);
    }

    #[test]
    fn the_next_agent_restores_from_agent_stopped() {
        let mut m = connected_machine();
        m.agent_stopping();
        // What the next agent reads back from the CR (status and its Authenticated condition).
        let (body, _) = crate::publisher::apply_body("s1", &m.status, None, t(1));
        let cr: WhatsAppSessionStatus =
            serde_json::from_value(body["status"].clone()).expect("status");
        let read = AgentStatus::from_cr(&cr).expect("agent fields");
        assert_eq!(
            read, m.status,
            "agentStopped round-trips through the condition"
        );
        let mut next = Machine::new(read, Duration::from_secs(60), Duration::from_secs(20));
        next.browser_started();
        assert_eq!(next.status.status, SessionState::Connecting);
        assert!(
            !next.status.agent_stopped,
            "the new agent holds the session"
        );
        assert_eq!(next.status.condition_reason().0, "Connecting");
        next.observe(&snap("OPENING", None), t(2));
        let fx = next.observe(&snap("CONNECTED", None), t(3));
        assert!(fx.urgent);
        assert_eq!(next.status.status, SessionState::Connected);
        assert_eq!(next.status.connected_at, Some(t(3)));
        assert_eq!(next.status.qr, None);
    }

    #[test]
    fn stopping_withdraws_a_shown_qr_and_leaves_idle_states_alone() {
        let mut m = machine();
        m.browser_started();
        m.observe(&snap("UNPAIRED", Some("r1,k")), t(1));
        m.agent_stopping();
        assert_eq!(m.status.status, SessionState::QrRequired);
        assert_eq!(m.status.qr, None, "nobody can scan it any more");
        assert_eq!(m.status.qr_status, QrStatus::None);
        assert_eq!(m.status.qr_expires_at, None);
        assert_eq!(m.status.condition_reason().0, AGENT_STOPPED);
        m.browser_started();
        assert_eq!(m.status.condition_reason().0, "QrRequired");

        let mut idle = machine();
        idle.disconnected(None, t(0));
        let before = idle.status.clone();
        idle.agent_stopping();
        assert_eq!(idle.status, before, "logged out stays logged out");
        let mut init = machine();
        init.agent_stopping();
        assert_eq!(init.status, AgentStatus::default());
    }
}
